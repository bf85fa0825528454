/**
 * Writing an image as a `docker save` archive, streamed while the copy runs.
 *
 * - The target may be a new path or an empty regular file: the archive is written to a temporary file next
 *   to it (`.<name>.gantry-<random>.tmp`) and renamed over it on `commit()`, so a failed or abandoned copy
 *   leaves nothing behind. A non-empty regular file is refused (as containers/image: docker-archive does
 *   not modify existing archives). Anything else that can be opened for writing (a FIFO, `/dev/stdout`, a
 *   character device) is written directly, without size checks; a failed copy then leaves a truncated
 *   stream, which readers reject.
 * - Layers must be uncompressed (`desiredLayerCompression: 'decompress'`); only Docker schema2 manifests
 *   are accepted (the pipeline converts); no signatures, no manifest lists.
 * - Blobs arrive before the manifest: each is written as it arrives (straight through when its digest and
 *   size are known, else spooled to a temporary file first, see `DockerArchiveWriter`). A blob whose stream
 *   fails mid-way (or fails verification) is completed with zeros and left unreferenced, so the destination
 *   stays usable and the pipeline may retry the blob (containers/image's writer would be corrupt instead).
 * - Tags: the reference's tag, plus `transportOptions['docker-archive'].additionalTags` (`--additional-tag`).
 */
import { randomBytes } from 'node:crypto';
import { constants, createWriteStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import {
  type BlobInfo,
  type BlobToWrite,
  type Digest,
  type DockerReference,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageDestinationProperties,
  MediaTypes,
  type OperationOptions,
  type PutBlobOptions,
  parseDigest,
  parseNormalizedNamed,
  type ReusedBlob,
  type TransportContext,
  type TryReusingBlobOptions,
  tagNameOnly,
  throwIfAborted,
} from '@gantry/core';
import { createDockerArchiveWriter, type DockerArchiveWriter } from '@gantry/docker-save-format';
import type { DockerArchiveReference } from './reference.js';

/** Options read from `TransportContext.transportOptions['docker-archive']`. */
export interface DockerArchiveTransportOptions {
  /** More tags to record for the image (`--additional-tag`), e.g. `busybox:1.36`. */
  additionalTags?: string[];
}

/** Parses `additionalTags` like containers/image does for `--additional-tag`. */
export function parseAdditionalTags(context: TransportContext): DockerReference[] {
  const options = context.transportOptions?.['docker-archive'] as DockerArchiveTransportOptions | undefined;
  return (options?.additionalTags ?? []).map((text) => {
    let parsed: DockerReference;
    try {
      parsed = tagNameOnly(parseNormalizedNamed(text));
    } catch (error) {
      throw new GantryError(
        ErrorCodes.InvalidReference,
        `invalid additional tag "${text}": ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    if (parsed.digest !== undefined) {
      throw new GantryError(
        ErrorCodes.InvalidReference,
        `additional tag "${text}" must not contain a digest`,
      );
    }
    return parsed;
  });
}

const properties: ImageDestinationProperties = Object.freeze({
  supportedManifestMimeTypes: Object.freeze([MediaTypes.DockerManifest]),
  desiredLayerCompression: 'decompress',
  acceptsForeignLayerURLs: false,
  mustMatchRuntimeOS: false,
  supportsSignatures: false,
  hasThreadSafePutBlob: false,
  ignoresEmbeddedDockerReference: false,
});

class DockerArchiveImageDestination implements ImageDestination {
  readonly reference: DockerArchiveReference;
  readonly properties = properties;
  readonly #writer: DockerArchiveWriter;
  readonly #temporaryPath: string | undefined;
  readonly #repoTags: DockerReference[];
  readonly #contextSignal: AbortSignal | undefined;
  #manifestWritten = false;
  #committed = false;
  #closed = false;

  constructor(
    reference: DockerArchiveReference,
    output: Writable,
    temporaryPath: string | undefined,
    repoTags: DockerReference[],
    context: TransportContext,
  ) {
    this.reference = reference;
    this.#temporaryPath = temporaryPath;
    this.#repoTags = repoTags;
    this.#contextSignal = context.signal;
    this.#writer = createDockerArchiveWriter(output, {
      ...(context.signal ? { signal: context.signal } : {}),
      ...(context.temporaryDirectory ? { temporaryDirectory: context.temporaryDirectory } : {}),
    });
  }

  #begin(options: OperationOptions | undefined): AbortSignal | undefined {
    if (this.#closed || this.#committed) {
      throw new GantryError(
        ErrorCodes.Internal,
        'docker-archive image destination used after commit() or close()',
      );
    }
    const signals = [this.#contextSignal, options?.signal].filter((signal) => signal !== undefined);
    const signal = signals.length <= 1 ? signals[0] : AbortSignal.any(signals);
    throwIfAborted(signal);
    return signal;
  }

  async putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo> {
    const signal = this.#begin(options);
    const stored = await this.#writer.putBlob(
      stream,
      { ...(info.digest ? { digest: info.digest } : {}), size: info.size },
      { isConfig: options.isConfig, ...(signal ? { signal } : {}) },
    );
    return { ...stored, ...(info.mediaType ? { mediaType: info.mediaType } : {}) };
  }

  async tryReusingBlob(info: BlobInfo, options: TryReusingBlobOptions): Promise<ReusedBlob> {
    this.#begin(options);
    const existing = this.#writer.hasBlob(info.digest);
    return existing ? { reused: true, blob: { ...existing } } : { reused: false };
  }

  async putManifest(
    manifest: Uint8Array,
    mediaType: string,
    instanceDigest?: Digest,
    options?: OperationOptions,
  ): Promise<void> {
    this.#begin(options);
    if (instanceDigest !== undefined) {
      throw new GantryError(ErrorCodes.NotSupported, 'Manifest lists are not supported for docker tar files');
    }
    let parsed: {
      schemaVersion?: unknown;
      mediaType?: unknown;
      config?: { digest?: unknown };
      layers?: Array<{ digest?: unknown }>;
    };
    try {
      parsed = JSON.parse(Buffer.from(manifest).toString('utf8'));
    } catch (error) {
      throw new GantryError(ErrorCodes.InvalidManifest, `parsing manifest: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (parsed.schemaVersion !== 2 || parsed.mediaType !== MediaTypes.DockerManifest) {
      throw new GantryError(
        ErrorCodes.UnsupportedManifestType,
        `Unsupported manifest type ${mediaType || String(parsed.mediaType)}, need a Docker schema 2 manifest`,
      );
    }
    if (this.#manifestWritten) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        'a docker-archive: destination holds one image; a manifest was already written',
      );
    }
    let configDigest: Digest;
    let layerDigests: Digest[];
    try {
      configDigest = parseDigest(String(parsed.config?.digest));
      layerDigests = (parsed.layers ?? []).map((layer) => parseDigest(String(layer.digest)));
    } catch (error) {
      throw new GantryError(ErrorCodes.InvalidManifest, `invalid manifest: ${(error as Error).message}`, {
        cause: error,
      });
    }
    await this.#writer.addImage({ configDigest, layerDigests, repoTags: this.#repoTags });
    this.#manifestWritten = true;
  }

  async putSignatures(
    signatures: Uint8Array[],
    instanceDigest?: Digest,
    options?: OperationOptions,
  ): Promise<void> {
    this.#begin(options);
    if (instanceDigest !== undefined) {
      throw new GantryError(ErrorCodes.NotSupported, 'Manifest lists are not supported for docker tar files');
    }
    if (signatures.length > 0) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        'Storing signatures for docker tar files is not supported',
      );
    }
  }

  async commit(options?: OperationOptions): Promise<void> {
    this.#begin(options);
    if (!this.#manifestWritten) {
      throw new GantryError(ErrorCodes.Internal, 'docker-archive: commit() before putManifest()');
    }
    this.#committed = true;
    await this.#writer.finish();
    if (this.#temporaryPath) await rename(this.#temporaryPath, this.reference.path);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#committed) return;
    this.#writer.abort(
      new GantryError(ErrorCodes.Aborted, 'docker-archive destination closed without commit'),
    );
    if (this.#temporaryPath) await rm(this.#temporaryPath, { force: true });
  }
}

/**
 * Opens a destination writing the archive `reference.path` (see the module comment for the rules).
 * `ERR_GANTRY_INVALID_REFERENCE` for an `@N` reference or a bad additional tag; `ERR_GANTRY_NOT_SUPPORTED`
 * for a non-empty existing regular file or a directory.
 */
export async function openDockerArchiveImageDestination(
  reference: DockerArchiveReference,
  context: TransportContext,
): Promise<ImageDestination> {
  throwIfAborted(context.signal);
  if (reference.sourceIndex !== -1) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Destination reference must not contain a manifest index @${reference.sourceIndex}`,
    );
  }
  const repoTags = [...(reference.tag ? [reference.tag] : []), ...parseAdditionalTags(context)];
  const target = reference.path;
  let existing: Awaited<ReturnType<typeof stat>> | undefined;
  try {
    existing = await stat(target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (existing?.isDirectory()) {
    throw new GantryError(
      ErrorCodes.NotSupported,
      `docker-archive: ${target} is a directory, not an archive file`,
    );
  }
  if (existing?.isFile() && existing.size !== 0) {
    throw new GantryError(
      ErrorCodes.NotSupported,
      `docker-archive doesn't support modifying existing images: ${target} exists and is not empty`,
    );
  }
  if (existing && !existing.isFile()) {
    // A pipe or device: stream straight into it.
    const handle = await open(target, constants.O_WRONLY);
    const output = handle.createWriteStream();
    return new DockerArchiveImageDestination(
      reference,
      output as unknown as Writable,
      undefined,
      repoTags,
      context,
    );
  }
  const temporaryPath = path.join(
    path.dirname(target),
    `.${path.basename(target)}.gantry-${randomBytes(6).toString('hex')}.tmp`,
  );
  const output = createWriteStream(temporaryPath, { flags: 'wx', mode: 0o644 });
  await new Promise<void>((resolve, reject) => {
    output.once('open', () => resolve());
    output.once('error', reject);
  });
  return new DockerArchiveImageDestination(reference, output, temporaryPath, repoTags, context);
}
