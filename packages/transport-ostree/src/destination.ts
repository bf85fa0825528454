/**
 * Writes an image into an OSTree repository in containers/image's layout:
 * - each layer, streamed into `ostree commit --tree=tar=` while it is decompressed, hashed and parsed
 *   (layer-stream.ts: the tree `applyLayer` would give, whiteouts kept as empty `.wh.` files, devices and
 *   fifos left out, hostile entries refused), committed with `docker.size`, `docker.uncompressed_size`,
 *   `docker.uncompressed_digest` and `tarsplit.output`;
 * - the config committed as the file `/content` with `docker.size`;
 * - the config and the manifest's tree streamed, at `commit`, into the last layer's `ostree commit` as
 *   further subdirectories (layer-stream.ts), each committed on its own: one `ostree` process per layer;
 * - at `commit`, the branches `ociimage/<blob hex>` set, then the image branch `ociimage/<encoded image>`
 *   (tree: `/manifest.json`, `/signature-N`; metadata `docker.manifest`, `docker.digest`, `signatures`) last.
 * Every commit is written to a staging repository in the work directory (the destination's `tmp/`, on
 * its file system); `commit` moves the objects into the destination and sets the branches. Until then
 * the destination is untouched: a failed or interrupted copy is undone by removing the work directory
 * (`close`, or the next copy when the process was killed).
 */
import { rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  abortError,
  type BlobInfo,
  type BlobToWrite,
  blobWriteStage,
  createDecompressor,
  type Digest,
  detectCompression,
  ErrorCodes,
  ExpansionGuard,
  GantryError,
  guessManifestMediaType,
  type ImageDestination,
  type ImageDestinationProperties,
  isGantryError,
  MediaTypes,
  makeOwnedTemporaryDirectory,
  manifestDigest,
  type OperationOptions,
  type PutBlobOptions,
  parseManifest,
  type ReusedBlob,
  removeAbandonedTemporaryFiles,
  type TransportContext,
  type TryReusingBlobOptions,
} from '@gantry/core/transport';
import { ChunkChannel } from './chunk-channel.js';
import { LayerStreamCommit, type LayerStreamResult } from './layer-stream.js';
import { lockRepository, type RepositoryLock } from './lock.js';
import { blobBranch, type OstreeImageReference } from './reference.js';
import { OstreeRepository, unpublish } from './repository.js';

/**
 * Decompresses a layer while it streams, whatever its compression (detected from its first bytes),
 * within core's expansion limit (`ExpansionGuard`: a bomb fails with `ERR_GANTRY_INVALID_LAYER`).
 */
async function* decompressed(
  source: AsyncIterable<Uint8Array>,
  description = 'layer',
): AsyncGenerator<Uint8Array> {
  const iterator = source[Symbol.asyncIterator]();
  const head: Uint8Array[] = [];
  let headLength = 0;
  let done = false;
  while (headLength < 8) {
    const next = await iterator.next();
    if (next.done) {
      done = true;
      break;
    }
    head.push(next.value);
    headLength += next.value.byteLength;
  }
  // One chunk (the usual case) is handed on as it is, not copied.
  const prefix = head.length === 1 ? head[0]! : Buffer.concat(head);
  const rest = async function* (): AsyncGenerator<Uint8Array> {
    if (prefix.byteLength > 0) yield prefix;
    if (done) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  };
  const compression = detectCompression(prefix);
  if (compression === 'none') {
    yield* rest();
    return;
  }
  const guard = new ExpansionGuard(description, ErrorCodes.InvalidLayer);
  const counted = async function* (): AsyncGenerator<Uint8Array> {
    for await (const chunk of rest()) {
      guard.compressed(chunk.byteLength);
      yield chunk;
    }
  };
  const decompressor = createDecompressor(compression);
  const feeding = pipeline(counted(), decompressor).catch((error: unknown) => {
    decompressor.destroy(error as Error);
  });
  try {
    for await (const chunk of decompressor) {
      guard.decompressed((chunk as Uint8Array).byteLength);
      yield chunk as Uint8Array;
    }
  } finally {
    decompressor.destroy();
  }
  await feeding;
}

/**
 * Layers of at least this many compressed bytes are written by this process (`NativeTree`, where the
 * repository allows it); smaller ones, and layers of unknown size, by `ostree commit`. Measured: on
 * layers of large files the native writer takes the `ostree` process's work off the second core (its
 * SHA-256 is glib's, without the CPU's SHA instructions); on a layer of 20,000 tiny files (260 KiB
 * compressed) it cost more CPU and memory (peak 190 MiB against 126 MiB) than `ostree commit`.
 */
const nativeWriterFromBytes = 4 * 1024 * 1024;

/**
 * Whether a layer goes to the native writer: compressed (its media type says gzip or zstd: its
 * decompression is what the native writer's work runs beside; uncompressed layers were not measured)
 * and at least `nativeWriterFromBytes`.
 */
function nativeWriterFor(info: BlobToWrite): boolean {
  return info.size >= nativeWriterFromBytes && /gzip|zstd/.test(info.mediaType ?? '');
}

/** Layer bytes streamed into `ostree commit` between two background write-outs of the staging repository. */
const writeOutEveryBytes = 32 * 1024 * 1024;

/**
 * Passes a layer's decompressed bytes on, and every `writeOutEveryBytes` starts writing out what the
 * staging repository holds so far (`startWritingOut`): the disk writes the objects while the copy goes
 * on, instead of all of them at once before publishing.
 */
async function* writingOut(
  source: AsyncIterable<Uint8Array>,
  staging: OstreeRepository,
): AsyncGenerator<Uint8Array> {
  let sinceWriteOut = 0;
  for await (const chunk of source) {
    sinceWriteOut += chunk.byteLength;
    if (sinceWriteOut >= writeOutEveryBytes) {
      sinceWriteOut = 0;
      staging.startWritingOut();
    }
    yield chunk;
  }
}

interface WrittenBlob {
  /** The blob's commit: `ostree commit` may still be finishing it while the next blob streams in. */
  commit: Promise<string>;
  size: number;
}

/** A promise settled from outside (a blob's commit, known once its stream is ended). */
function deferred<T>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
} {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  promise.catch(() => undefined); // reported through `commitFailure` or `commit()`
  return { promise, resolve, reject };
}

/** The stream of the last layer written, left open so that the config and the manifest join it. */
interface OpenStream {
  stream: LayerStreamCommit;
  metadata: Map<string, string>;
  commit: ReturnType<typeof deferred<string>>;
}

/** Whether `error` (or one of its causes) is zlib's: the compressed data is corrupt or cut short. */
function isDecompressionError(error: unknown): boolean {
  for (let current: unknown = error, depth = 0; current instanceof Error && depth < 8; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('Z_')) return true;
    current = current.cause;
  }
  return false;
}

/**
 * The error of a layer that could not be applied, naming the blob (the tar reader and the decompressor
 * know neither): bad tar data and corrupt or truncated compressed data become `ERR_GANTRY_INVALID_LAYER`;
 * anything else (a full disk…) is returned as it is.
 */
function describeLayerFailure(error: unknown, digest: string, blob: string): unknown {
  if (!(error instanceof Error) || error.message.includes(digest)) return error;
  if (isDecompressionError(error)) {
    return new GantryError(
      ErrorCodes.InvalidLayer,
      `${blob}: the compressed data is corrupt or truncated: ${error.message}`,
      { cause: error },
    );
  }
  if (isGantryError(error) && error.code === ErrorCodes.InvalidLayer) {
    return new GantryError(ErrorCodes.InvalidLayer, `${blob}: ${error.message}`, { cause: error });
  }
  return error;
}

class OstreeImageDestination implements ImageDestination {
  readonly properties: ImageDestinationProperties = Object.freeze({
    // Other manifest types are converted to Docker schema2 by the copy pipeline.
    supportedManifestMimeTypes: [MediaTypes.DockerManifest],
    desiredLayerCompression: 'preserve' as const,
    acceptsForeignLayerURLs: false,
    mustMatchRuntimeOS: true,
    supportsSignatures: true,
    hasThreadSafePutBlob: false,
    ignoresEmbeddedDockerReference: false,
  });
  private readonly written = new Map<string, WrittenBlob>();
  private readonly reused = new Set<string>();
  private manifest: Uint8Array | undefined;
  private signatures: Uint8Array[] = [];
  private workDirectory: Promise<string> | undefined;
  private stagingRepository: Promise<OstreeRepository> | undefined;
  /** Blob commits not finished yet (each layer's `ostree commit` finishes while the next blob streams in). */
  private readonly pending = new Set<Promise<unknown>>();
  /**
   * The last layer's `ostree commit`, its tar not ended yet: the next layer ends it (and it finishes
   * while that layer streams in), or `commit()` appends the config and the manifest's tree to it, so
   * that they take no `ostree` process of their own.
   */
  private openStream: OpenStream | undefined;
  /** The config, committed by `commit()` (in the last layer's stream). */
  private config: { digest: string; bytes: Buffer; commit: ReturnType<typeof deferred<string>> } | undefined;
  private commitFailure: { error: unknown } | undefined;
  private closed = false;

  constructor(
    readonly reference: OstreeImageReference,
    private readonly repository: OstreeRepository,
    private readonly context: TransportContext,
    /** The repository lock, held shared until `close`: no prune removes this copy's commits meanwhile. */
    private readonly lock: RepositoryLock,
  ) {}

  /**
   * The work directory, in the repository's `tmp/`: on the repository's file system, so that the
   * staging repository's objects are moved into the destination by renaming them. Its name is
   * an owned one (`ownedTemporaryName`): what a Gantry process killed mid-copy left there is removed
   * here, never libostree's own entries (`staging-…`, `cache/`…) nor a live process's.
   */
  private work(): Promise<string> {
    this.workDirectory ??= (async () => {
      const temporary = join(this.repository.path, 'tmp');
      await mkdir(temporary, { recursive: true });
      await removeAbandonedTemporaryFiles(temporary);
      return makeOwnedTemporaryDirectory('ostree-work', temporary);
    })();
    return this.workDirectory;
  }

  /**
   * The staging repository, `repo/` in the work directory: every commit of this copy is written there
   * (same mode, same free-space reserve as the destination), and `commit` moves its objects into the
   * destination just before setting the branches. Until then the destination is untouched, and an
   * interrupted or failed copy is undone by removing the work directory.
   */
  private staging(): Promise<OstreeRepository> {
    this.stagingRepository ??= (async () =>
      OstreeRepository.createStaging(join(await this.work(), 'repo'), this.repository))();
    return this.stagingRepository;
  }

  private signal(options?: OperationOptions): AbortSignal | undefined {
    const signals = [this.context.signal, options?.signal].filter((s): s is AbortSignal => s !== undefined);
    return signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals);
  }

  private checkSize(info: BlobToWrite, size: number): void {
    if (info.size >= 0 && info.size !== size) {
      throw new GantryError(
        ErrorCodes.SizeMismatch,
        `blob ${info.digest ?? ''}: size mismatch: expected ${info.size} bytes, got ${size}`,
      );
    }
  }

  async putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo> {
    const signal = this.signal(options);
    this.failedCommit();
    let result: { digest: Digest; size: number } | undefined;
    const onEnd = (value: { digest: Digest; size: number }) => {
      result = value;
    };
    let commit: Promise<string>;
    if (options.isConfig) {
      const chunks: Uint8Array[] = [];
      await pipeline(
        stream,
        blobWriteStage(info.digest, onEnd),
        async (source: AsyncIterable<Uint8Array>) => {
          for await (const chunk of source) chunks.push(chunk);
        },
        signal ? { signal } : {},
      );
      this.checkSize(info, result!.size);
      this.config?.commit.reject(new GantryError(ErrorCodes.Internal, 'another config was written'));
      this.config = { digest: result!.digest, bytes: Buffer.concat(chunks), commit: deferred<string>() };
      commit = this.config.commit.promise;
    } else {
      this.endOpenStream();
      const staging = await this.staging();
      const layer = LayerStreamCommit.start(staging, {
        rootless: process.getuid?.() !== 0,
        signal: this.context.signal,
        ...(nativeWriterFor(info) ? {} : { writer: 'ostree' as const }),
      });
      let streamed: LayerStreamResult;
      try {
        streamed = await this.streamVerified(stream, info, layer, onEnd, signal);
        this.checkSize(info, result!.size);
      } catch (error) {
        await layer.abort();
        throw error;
      }
      const metadata = new Map([
        ['docker.size', String(result!.size)],
        ['docker.uncompressed_size', String(streamed.uncompressedSize)],
        ['docker.uncompressed_digest', streamed.uncompressedDigest],
        ['tarsplit.output', streamed.tarSplitGzip.toString('base64')],
      ]);
      // The blob is verified: its tar is ended by the next layer or by `commit()`.
      this.openStream = { stream: layer, metadata, commit: deferred<string>() };
      commit = this.openStream.commit.promise;
    }
    commit.catch((error: unknown) => {
      this.commitFailure ??= { error }; // reported by the next putBlob, or by commit()
    });
    this.pending.add(commit);
    commit.then(
      () => this.pending.delete(commit),
      () => this.pending.delete(commit),
    );
    this.written.set(result!.digest, { commit, size: result!.size });
    return {
      digest: result!.digest,
      size: result!.size,
      ...(info.mediaType ? { mediaType: info.mediaType } : {}),
    };
  }

  /**
   * Ends the open layer stream's tar: its `ostree commit` finishes in the background (while the next
   * layer streams in), then the layer's commit is written.
   */
  private endOpenStream(): void {
    const open = this.openStream;
    if (!open) return;
    this.openStream = undefined;
    const finishing = (async () => {
      const staging = await this.staging();
      const { layer } = await open.stream.finish();
      const commit = await staging.commitTree(layer!, open.metadata);
      staging.startWritingOut(); // the layer's objects, while the next layer streams in
      return commit;
    })();
    finishing.then(open.commit.resolve, open.commit.reject);
  }

  /** Throws the failure of a blob commit that ran in the background, if one has failed already. */
  private failedCommit(): void {
    if (this.commitFailure) throw this.commitFailure.error;
  }

  /**
   * Streams the blob through verification into the layer's `ostree commit` (decompressed, parsed, its
   * tar-split recorded). When the layer cannot be committed, the rest of the blob is still read and
   * verified, so a blob with the wrong digest is reported as such rather than as a bad tar.
   */
  private async streamVerified(
    stream: Readable,
    info: BlobToWrite,
    layer: LayerStreamCommit,
    onEnd: (value: { digest: Digest; size: number }) => void,
    signal: AbortSignal | undefined,
  ): Promise<LayerStreamResult> {
    const raw = new ChunkChannel(1 << 20);
    let layerFailure: { error: unknown } | undefined;
    let applied: LayerStreamResult | undefined;
    const staging = await this.staging();
    const applying = layer
      .consume(writingOut(decompressed(raw, `blob ${info.digest ?? '(digest not known yet)'}`), staging))
      .then(
        (value) => {
          applied = value;
        },
        (error: unknown) => {
          layerFailure = { error };
          // Nothing reads `raw` any more (`ostree` failed, or a hostile entry stopped the layer while
          // the blob was still coming): closing it releases a write waiting for room, and the sink
          // then reads and verifies the rest of the blob without keeping it.
          raw.close();
        },
      );
    const sink = new Writable({
      highWaterMark: 1 << 20,
      write(chunk: Buffer, _encoding, callback) {
        if (layerFailure !== undefined || raw.closed) return callback();
        raw.push(chunk).then(() => callback(), callback);
      },
      final(callback) {
        raw.end();
        applying.then(() => callback());
      },
    });
    try {
      await pipeline(stream, blobWriteStage(info.digest, onEnd), sink, signal ? { signal } : {});
    } catch (error) {
      raw.close();
      await applying;
      throw error;
    }
    if (layerFailure !== undefined) {
      throw info.digest === undefined
        ? layerFailure.error
        : describeLayerFailure(layerFailure.error, info.digest, `blob ${info.digest}`);
    }
    return applied!;
  }

  async tryReusingBlob(info: BlobInfo, options: TryReusingBlobOptions): Promise<ReusedBlob> {
    const written = this.written.get(info.digest);
    if (written) return { reused: true, blob: { digest: info.digest, size: written.size } };
    const branch = blobBranch(info.digest);
    const checksum = await this.repository.resolveBranch(branch);
    if (checksum === undefined) return { reused: false };
    const commit = await this.repository.readCommit(checksum, branch);
    const size = Number(commit.metadata.get('docker.size'));
    const isLayer =
      commit.metadata.has('docker.uncompressed_digest') &&
      commit.metadata.has('docker.uncompressed_size') &&
      commit.metadata.has('tarsplit.output');
    if (!Number.isSafeInteger(size) || (!options.isConfig && !isLayer)) return { reused: false };
    this.reused.add(info.digest);
    return { reused: true, blob: { digest: info.digest, size } };
  }

  async putManifest(manifest: Uint8Array, mediaType: string, instanceDigest?: Digest): Promise<void> {
    if (instanceDigest !== undefined) {
      throw new GantryError(ErrorCodes.NotSupported, 'Manifest lists are not supported by "ostree:"');
    }
    const type = mediaType || guessManifestMediaType(manifest);
    if (type !== MediaTypes.DockerManifest) {
      throw new GantryError(
        ErrorCodes.UnsupportedManifestType,
        `${this.reference}: manifest type ${type || '(unknown)'} is not supported: ostree: stores Docker schema2 manifests (${MediaTypes.DockerManifest})`,
      );
    }
    this.manifest = Uint8Array.from(manifest);
  }

  async putSignatures(signatures: Uint8Array[], instanceDigest?: Digest): Promise<void> {
    if (instanceDigest !== undefined) {
      throw new GantryError(ErrorCodes.NotSupported, 'Manifest lists are not supported by "ostree:"');
    }
    this.signatures = signatures.map((signature) => Uint8Array.from(signature));
  }

  async commit(options?: OperationOptions): Promise<void> {
    const signal = this.signal(options);
    if (!this.manifest)
      throw new GantryError(ErrorCodes.Internal, `${this.reference}: commit without a manifest`);
    const manifest = parseManifest(this.manifest);
    const manifestText = Buffer.from(this.manifest).toString('utf8');
    if (!Buffer.from(manifestText, 'utf8').equals(Buffer.from(this.manifest))) {
      throw new GantryError(ErrorCodes.InvalidManifest, `${this.reference}: the manifest is not valid UTF-8`);
    }
    const blobs = [
      ...manifest.layers.map((layer) => layer.digest),
      ...(manifest.config ? [manifest.config.digest] : []),
    ];
    const staging = await this.staging();
    // The config and the manifest's tree join the last layer's stream (or a stream of their own).
    const open = this.openStream;
    this.openStream = undefined;
    const stream =
      open?.stream ??
      LayerStreamCommit.start(staging, { rootless: process.getuid?.() !== 0, signal: this.context.signal });
    const config = this.config;
    this.config = undefined;
    let imageCommit: string;
    try {
      const umask = process.umask();
      // As the directories they were committed from: the config's made by `mkdtemp` (0700).
      if (config) await stream.appendDirectory('config', 0o700, [['content', config.bytes]]);
      await stream.appendDirectory('manifest', 0o755 & ~umask, [
        ['manifest.json', this.manifest],
        ...this.signatures.map((signature, index): [string, Uint8Array] => [
          `signature-${index + 1}`,
          signature,
        ]),
      ]);
      const trees = await stream.finish();
      if (open) open.commit.resolve(await staging.commitTree(trees.layer!, open.metadata));
      if (config) {
        config.commit.resolve(
          await staging.commitTree(
            trees.directories.get('config')!,
            new Map([['docker.size', String(config.bytes.length)]]),
          ),
        );
      }
      imageCommit = await staging.commitTree(
        trees.directories.get('manifest')!,
        new Map([
          ['docker.manifest', manifestText],
          ['signatures', String(this.signatures.length)],
          ['docker.digest', manifestDigest(this.manifest)],
        ]),
      );
    } catch (error) {
      await stream.abort();
      open?.commit.reject(error);
      config?.commit.reject(error);
      throw error;
    }
    const branches: [string, string][] = [];
    for (const digest of blobs) {
      const written = this.written.get(digest);
      if (written) branches.push([blobBranch(digest), await written.commit]);
      else if (!this.reused.has(digest)) {
        throw new GantryError(ErrorCodes.BlobNotFound, `${this.reference}: blob ${digest} was not written`);
      }
    }
    signal?.throwIfAborted();
    await this.publish(staging, branches, imageCommit, signal);
  }

  /**
   * Moves the staging repository's objects into the destination, then sets the blob branches and the
   * image branch, last. The objects move in one synchronous step; a signal that arrived meanwhile is
   * seen right after it, and the objects are moved back. Once the branches are being written, they
   * are all written (a few small files): the copy is then complete, whatever signal comes. Any failure
   * removes the branches written and moves the objects back, so the destination is as it was.
   */
  private async publish(
    staging: OstreeRepository,
    branches: [string, string][],
    imageCommit: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    signal?.throwIfAborted();
    await staging.syncBeforePublishing();
    signal?.throwIfAborted();
    const moved = staging.publishInto(this.repository);
    await new Promise((resolve) => setImmediate(resolve)); // a pending signal's handler runs here
    if (signal?.aborted) {
      unpublish(moved);
      throw abortError(signal);
    }
    const created: [string, string][] = [];
    try {
      // The blob branches together (their syncs overlap), the image branch last.
      const results = await Promise.allSettled(
        branches.map(async ([branch, commit]) => {
          const existed = (await this.repository.resolveBranch(branch)) !== undefined;
          await this.repository.setBranch(branch, commit);
          if (!existed) created.push([branch, commit]);
        }),
      );
      const failed = results.find((result) => result.status === 'rejected');
      if (failed) throw failed.reason;
      await this.repository.setBranch(this.reference.imageBranch, imageCommit);
    } catch (error) {
      for (const [branch, commit] of created) {
        await this.repository.removeBranchIfAt(branch, commit).catch(() => undefined);
      }
      unpublish(moved);
      throw error;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const open = this.openStream;
    this.openStream = undefined;
    if (open) {
      // Never ended: nothing of it is committed.
      await open.stream.abort();
      open.commit.reject(new GantryError(ErrorCodes.Aborted, `${this.reference}: closed before commit`));
    }
    this.config?.commit.reject(
      new GantryError(ErrorCodes.Aborted, `${this.reference}: closed before commit`),
    );
    this.config = undefined;
    // Nothing may still write into the work directory or the repository.
    await Promise.allSettled([...this.pending]);
    try {
      await (await this.stagingRepository?.catch(() => undefined))?.closeSyncHandle();
      if (this.workDirectory) {
        const directory = await this.workDirectory.catch(() => undefined);
        if (directory) rmSync(directory, { recursive: true, force: true });
      }
    } finally {
      this.lock.release();
    }
  }
}

export async function openOstreeImageDestination(
  reference: OstreeImageReference,
  context: TransportContext,
): Promise<ImageDestination> {
  const repository = await OstreeRepository.openOrCreate(reference.repository, { signal: context.signal });
  const lock = await lockRepository(repository.path, false, { signal: context.signal });
  return new OstreeImageDestination(reference, repository, context, lock);
}
