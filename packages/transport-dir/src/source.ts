import { open, stat } from 'node:fs/promises';
import { addAbortSignal } from 'node:stream';
import {
  type BlobInfo,
  type BlobStream,
  type Digest,
  describeFileSystemError,
  ErrorCodes,
  errorCode,
  GantryError,
  guessManifestMediaType,
  type ImageSource,
  type ImageSourceProperties,
  type ManifestBlob,
  type OperationOptions,
  pooledFileStream,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core/transport';
import { blobFileName, manifestFileName, signatureFileName, topLevelManifestFileName } from './layout.js';
import type { DirImageReference } from './reference.js';
import { combineSignals, toGantryError } from './signals.js';

/** The largest manifest read, as containers/image (`iolimits.MaxManifestBodySize`, a registry's limit too). */
export const maximumManifestSize = 4 * 1024 * 1024;
/** The largest signature read, as containers/image (`iolimits.MaxSignatureBodySize`). */
export const maximumSignatureSize = 4 * 1024 * 1024;

/**
 * Reads a whole small file, refusing one larger than `limit` (checked before reading; a file that grows
 * while it is read is refused too) with `ERR_GANTRY_INVALID_LAYOUT` naming it, so a huge file cannot exhaust memory.
 */
async function readBoundedFile(
  file: string,
  limit: number,
  description: string,
  signal: AbortSignal | undefined,
): Promise<Uint8Array> {
  const handle = await open(file, 'r');
  try {
    const fileStat = await handle.stat();
    if (fileStat.size > limit) {
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `${description} ${file} is too large (${fileStat.size} bytes, at most ${limit} accepted)`,
      );
    }
    // Read to the end of the file (it may have grown since the stat) but never past the limit.
    const buffer = Buffer.allocUnsafe(Math.min(fileStat.size, limit) + 1);
    let length = 0;
    for (;;) {
      throwIfAborted(signal);
      if (length === buffer.length) {
        throw new GantryError(ErrorCodes.InvalidLayout, `${description} ${file} changed while it was read`);
      }
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return new Uint8Array(buffer.buffer, buffer.byteOffset, length);
  } finally {
    await handle.close();
  }
}

function isMissing(error: unknown): boolean {
  const code = errorCode(error);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * Reads an image from a `dir:` directory, as containers/image's directory source does:
 * - manifests are returned byte for byte; the layout records no MIME type, so the type is guessed from
 *   the bytes (`guessManifestMediaType`, as containers/image does), `''` when unrecognisable;
 * - blobs are streamed from `<encoded digest>` files, with the file's size;
 * - signatures are `signature-1`, `signature-2`, … (or `<encoded>.signature-N` for an instance), read in
 *   order until the first missing number.
 * Reads are independent, so `getBlob` may run concurrently.
 */
class DirImageSource implements ImageSource {
  readonly reference: DirImageReference;
  readonly properties: ImageSourceProperties = Object.freeze({ hasThreadSafeGetBlob: true });
  private readonly contextSignal: AbortSignal | undefined;
  private closed = false;

  constructor(reference: DirImageReference, context: TransportContext) {
    this.reference = reference;
    this.contextSignal = context.signal;
  }

  private begin(options: OperationOptions | undefined): AbortSignal | undefined {
    if (this.closed)
      throw new GantryError(ErrorCodes.Internal, `${this.reference}: image source used after close()`);
    const signal = combineSignals(this.contextSignal, options?.signal);
    throwIfAborted(signal);
    return signal;
  }

  async getManifest(instanceDigest?: Digest, options?: OperationOptions): Promise<ManifestBlob> {
    const signal = this.begin(options);
    const file = this.reference.filePath(manifestFileName(instanceDigest));
    try {
      const bytes = await readBoundedFile(file, maximumManifestSize, 'manifest', signal);
      return { bytes, mediaType: guessManifestMediaType(bytes) };
    } catch (error) {
      if (!signal?.aborted && isMissing(error)) {
        const what = instanceDigest === undefined ? 'manifest' : `manifest of instance ${instanceDigest}`;
        throw new GantryError(
          ErrorCodes.ImageNotFound,
          `${this.reference}: ${what} not found: ${describeFileSystemError(error)}`,
          { cause: error },
        );
      }
      throw toGantryError(error, signal, `${this.reference}: reading ${file}`);
    }
  }

  async getBlob(info: BlobInfo, options?: OperationOptions): Promise<BlobStream> {
    const signal = this.begin(options);
    const file = this.reference.filePath(blobFileName(info.digest));
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(file, 'r');
    } catch (error) {
      if (isMissing(error)) {
        throw new GantryError(
          ErrorCodes.BlobNotFound,
          `${this.reference}: blob ${info.digest} not found: ${describeFileSystemError(error)}`,
          { cause: error },
        );
      }
      throw toGantryError(error, signal, `${this.reference}: opening blob ${info.digest}`);
    }
    try {
      const fileStat = await handle.stat();
      if (!fileStat.isFile()) {
        throw new GantryError(
          ErrorCodes.InvalidLayout,
          `${this.reference}: blob ${info.digest}: ${file} is not a regular file`,
        );
      }
      throwIfAborted(signal);
      // Read into pooled buffers (`fileReadBuffers`) that a destination writing the chunks out gives back,
      // through the copy pipeline, to be read into again.
      const stream = pooledFileStream(handle);
      if (signal) addAbortSignal(signal, stream);
      return { stream, size: fileStat.size };
    } catch (error) {
      await handle.close();
      throw toGantryError(error, signal, `${this.reference}: reading blob ${info.digest}`);
    }
  }

  async getSignatures(instanceDigest?: Digest, options?: OperationOptions): Promise<Uint8Array[]> {
    const signal = this.begin(options);
    const signatures: Uint8Array[] = [];
    for (let index = 0; ; index++) {
      const file = this.reference.filePath(signatureFileName(index, instanceDigest));
      try {
        signatures.push(await readBoundedFile(file, maximumSignatureSize, 'signature', signal));
      } catch (error) {
        if (!signal?.aborted && isMissing(error)) break;
        throw toGantryError(error, signal, `${this.reference}: reading signature ${file}`);
      }
    }
    return signatures;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/**
 * Opens a `dir:` image for reading. Rejects with `ERR_GANTRY_IMAGE_NOT_FOUND` naming the path when the
 * directory or its `manifest.json` does not exist.
 */
export async function openDirImageSource(
  reference: DirImageReference,
  context: TransportContext,
): Promise<ImageSource> {
  throwIfAborted(context.signal);
  const manifestPath = reference.filePath(topLevelManifestFileName);
  try {
    await stat(manifestPath);
  } catch (error) {
    if (isMissing(error)) {
      throw new GantryError(
        ErrorCodes.ImageNotFound,
        `${reference}: image not found: ${describeFileSystemError(error)}`,
        { cause: error },
      );
    }
    throw toGantryError(error, context.signal, `${reference}: opening ${manifestPath}`);
  }
  return new DirImageSource(reference, context);
}
