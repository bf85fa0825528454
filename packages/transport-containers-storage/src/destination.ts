/**
 * Writing an image into a containers/storage store, as containers/image's storage destination does.
 *
 * A layer's ID depends on its parent's (see ids.ts) and vfs and btrfs build a layer on a copy of its
 * parent, so layers go into the store in manifest order. When the copy pipeline gives each layer blob
 * its position and the config's DiffIDs (`PutBlobOptions.layerIndex` / `layerDiffIds`, as
 * containers/image's `LayerIndex`), the next layer in order is applied while its blob arrives: the stream
 * is decompressed straight into the driver's `applyDiff`, with no temporary file. A blob that arrives
 * before its parent is in the store is spooled (bytes as received, in a temporary directory) and applied,
 * in the background, as soon as its parent is: from its spool file while the blob still arrives when it
 * is not complete yet (growing-spool.ts; the layer completes only once the blob is verified). Without positions, every blob is spooled and the layers
 * are applied at `commit`. A layer the store already has (same chain ID) is reused without reading its
 * blob; a blob `tryReusingBlob` found in the store (by compressed or uncompressed digest) under another
 * parent is rebuilt from that layer's tar-split.
 *
 * Visibility: layers become records in layers.json as they are applied (flagged `incomplete`, with the
 * layers lock held, until their files and tar-split are complete, as containers/storage does); the image
 * record, its names and big data appear at once at the end of `commit` (images.json renamed into place
 * only once the write completing the last layer, left in flight meanwhile, is done: `HeldTail`). A failed
 * commit, and `close` without a commit, remove the layers this destination created that no image uses;
 * the spooled blobs are removed by `commit` once every layer is in the store, else by `close`.
 */
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Duplex, Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type BlobInfo,
  type BlobToWrite,
  blobWriteStage,
  type CommitOptions,
  createDecompressor,
  type DetectedCompression,
  type Digest,
  detectCompression,
  digestOf,
  ErrorCodes,
  ExpansionGuard,
  GantryError,
  type ImageDestination,
  type ImageDestinationProperties,
  isGantryError,
  type ManifestBlob,
  MediaTypes,
  makeOwnedTemporaryDirectory,
  manifestDigest,
  manifestMatchesDigest,
  type PutBlobOptions,
  parseImageConfig,
  parseManifest,
  type ReusedBlob,
  type TransportContext,
  type TryReusingBlobOptions,
} from '@gantry/core/transport';
import { startFileWriter } from '@gantry/layer-tree';
import type { ApplyDiffResult } from './drivers/driver.js';
import { GrowingSpool, ReadBufferRecycler } from './growing-spool.js';
import {
  encodedPart,
  goTimestamp,
  imageDigestBigDataKey,
  layerIdFor,
  manifestBigDataKey,
  signatureBigDataKey,
} from './ids.js';
import { openLayerDiff } from './layer-content.js';
import { ownChunks } from './own-chunks.js';
import type { ContainersStorageReference } from './reference.js';
import { beginsWithSmallFiles, smallFilesPrefixLength } from './small-files.js';
import {
  type ContainersStore,
  type ImageRecord,
  incompleteFlag,
  type LayerRecord,
  type LayerTable,
  layerCompressionCodes,
  setImageBigDataItems,
  sortedMaps,
} from './store.js';

interface SpooledBlob {
  path: string;
  size: number;
}

/** A blob being spooled that can be applied as it arrives. */
interface GrowingBlob {
  spool: GrowingSpool;
  /** The blob's digest when known in advance (for messages). */
  blob: Digest | undefined;
}

interface ReusedLayer {
  /** The layer found in the store with these contents. */
  layerId: string;
  diffId: string;
}

/** A layer of known position taken for in-order application: its blob complete, or still arriving. */
type ReadyLayer =
  | { index: number; digest: string; growing?: undefined }
  | { index: number; digest?: undefined; growing: GrowingBlob };

/**
 * The layers lock, still held after a layer was stored, with the incomplete record of the next layer in
 * order already saved (in the same layers.json write that completed the previous one): the next
 * `storeLayer` goes on with it instead of taking the lock and saving the record again.
 */
interface HeldLayers {
  table: LayerTable;
  release: () => void;
  /** The layer whose incomplete record is saved (synced once `pending` is done). */
  preparedId: string;
  /**
   * The layer after `preparedId` whose incomplete record is saved too (in `pending` or before), if any:
   * prepared ahead so that it can start as soon as `preparedId` is applied, while the write completing
   * `preparedId` is still being synced.
   */
  aheadId?: string;
  /**
   * The layers.json write (with the previous layer's tar-split) that completes the previous layer, still
   * in flight: `preparedId` did not have to wait for it (its record was synced before), but whoever
   * takes the lock over awaits it before its own writes and before releasing the lock.
   */
  pending?: Promise<void>;
  /** Set once a `storeLayer` took it over (it then releases the lock). */
  taken: boolean;
}

/**
 * The last layer of the image, stored while its completing write (tar-split + layers.json) is still
 * being synced, with the layers lock held: `commit` writes and syncs the image's big data and
 * images.json meanwhile and renames images.json into place only once this write is done (an image must
 * never name a layer that is not complete on disk). Whoever else needs the layers lock first finishes
 * it (`finishTail`).
 */
interface HeldTail {
  table: LayerTable;
  release: () => void;
  layerId: string;
  write: Promise<void>;
}

/** Chaining for `storeLayer`: the layers lock it starts with, and the layer that follows. */
interface LayerChain {
  held?: HeldLayers;
  /**
   * Called with the lock held once the layer is applied, before its record is completed: the next layer
   * when it can start at once (it is then prepared in the same layers.json write and the lock kept for
   * it). `prepared`: the ID of the next layer's incomplete record already in the table (saved ahead).
   */
  successor?: (table: LayerTable, prepared: string | undefined) => { id: string; parent: string } | undefined;
  /**
   * The layer after `id` (not taken): its incomplete record is saved ahead, in a write this chain makes
   * anyway, so that it can start without waiting for the write that completes `id`; when it does not
   * follow at once after all, the write completing `id` takes the record out again.
   */
  lookahead?: (id: string) => { id: string; parent: string } | undefined;
  /**
   * The layer is the image's last: when no other layer follows it in this chain, its completing write
   * is left in flight, the lock held, for `commit` (`HeldTail`).
   */
  last?: boolean;
}

/** What `storeLayer` records as the layer's compressed form (what was given to the store). */
interface GivenBlob {
  digest: string;
  size: number;
  /** containers/storage's compression code (0: none). */
  compression: number;
}

/** For `promise.then(failed(false), failed(true))`: whether a promise was rejected. */
function failed(value: boolean): () => boolean {
  return () => value;
}

/** Go's time.Time JSON text for a config `created` value: fraction without trailing zeros. */
function goTimeText(value: string): string {
  return value.replace(/\.(\d*?)0+(Z|[+-]\d\d:\d\d)$/, (_, digits: string, zone: string) =>
    digits ? `.${digits}${zone}` : zone,
  );
}

/** The first bytes of `source` (up to `length`) and an iterable yielding all of it. */
async function sniff(
  source: AsyncIterable<Uint8Array>,
  length: number,
): Promise<{ prefix: Uint8Array; stream: AsyncIterable<Uint8Array> }> {
  const iterator = source[Symbol.asyncIterator]();
  const head: Uint8Array[] = [];
  let size = 0;
  let ended = false;
  while (size < length) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    head.push(next.value);
    size += next.value.byteLength;
  }
  async function* replay(): AsyncGenerator<Uint8Array, void, undefined> {
    yield* head;
    if (ended) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return { prefix: Buffer.concat(head).subarray(0, length), stream: replay() };
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
function layerFailure(error: unknown, blob: string): unknown {
  if (!(error instanceof Error) || error.message.includes(blob)) return error;
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

/**
 * Feeds a layer blob's bytes to `apply`, decompressed when they are compressed, and reads the blob to its
 * end (whatever follows the tar's end is still part of the blob, and verified); returns the compression
 * found. A failure of the blob's stream (its verification included) fails the application; when the
 * application fails first, its error is the one reported (the pipeline would otherwise report the abort
 * its own teardown causes in the decompressor).
 *
 * `consumed`, when given, gets each chunk of `blob` once nothing reads it any more: gzip input once the
 * decompressor took all of it in (its transform callback). Chunks of other blobs are not handed back
 * (the tar reader keeps views of uncompressed input; other decompressors are not looked into).
 */
async function applyBlobContents(
  blob: AsyncIterable<Uint8Array>,
  description: string,
  apply: (contents: AsyncIterable<Uint8Array>) => Promise<ApplyDiffResult>,
  consumed?: (chunk: Uint8Array) => void,
): Promise<DetectedCompression> {
  const { prefix, stream: bytes } = await sniff(blob, 16);
  const compression = detectCompression(prefix);
  if (compression === 'none') {
    await apply(bytes);
    for await (const _ of bytes) {
      // discarded
    }
    return compression;
  }
  let applyFailure: { error: unknown } | undefined;
  // A decompression bomb stops at core's expansion limit (`ExpansionGuard`).
  const guard = new ExpansionGuard(description, ErrorCodes.InvalidLayer).stages();
  const decompressor = createDecompressor(compression);
  if (consumed !== undefined && compression === 'gzip') handBackConsumedInput(decompressor, consumed);
  try {
    await pipeline(
      Readable.from(bytes, { objectMode: false }),
      guard.input,
      decompressor,
      guard.output,
      async (decompressed: AsyncIterable<Uint8Array>) => {
        try {
          await apply(decompressed);
        } catch (error) {
          applyFailure ??= { error };
          throw error;
        }
      },
    );
  } catch (error) {
    throw applyFailure ? applyFailure.error : error;
  }
  return compression;
}

/**
 * `chunks`, each handed on only after a turn of the event loop (`setImmediate`) while `yields()` says so.
 *
 * Everything that moves a layer being applied along (the decompressor's calls coming back from the
 * thread pool, the tar reader, the file writes) and everything that takes a blob in (socket reads, the
 * HTTP client, the blob's digest, spool writes) share the main thread, the busiest thread of a pull. A
 * blob is otherwise taken in as fast as the registry sends it, while the layer being applied moves on
 * by a step or so per turn: in a pull of 3 × 16 MiB compressible + 64 MiB random layers, the first layer
 * (16 MiB) took 230–290 ms where the second one, alone after the downloads, took ~90 ms, and it ended
 * 10–25 ms after the 64 MiB blob was spooled, in every traced run; the next two layers only began then.
 * Taking one chunk per turn of a blob that is not needed yet leaves its other bytes in its socket (its
 * source is paused once `ownChunks` holds 1 MiB), so the layer being applied gets most of each turn; the
 * blob still arrives, one chunk per turn, and a turn with nothing else to do takes microseconds. Nothing
 * is paused outright, so no connection sits idle.
 */
export async function* yieldingChunks(
  chunks: AsyncIterable<Uint8Array>,
  yields: () => boolean,
): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const chunk of chunks) {
    if (yields()) await new Promise<void>((resolve) => setImmediate(resolve));
    yield chunk;
  }
}

/**
 * Has a node:zlib decompressor hand each input chunk to `consumed` once its transform callback ran: zlib
 * calls it only when all of the chunk's bytes went in (its remaining input is zero), and keeps no
 * reference to the chunk after that. A chunk whose transform fails is not handed back.
 */
function handBackConsumedInput(decompressor: Duplex, consumed: (chunk: Uint8Array) => void): void {
  const stage = decompressor as Transform;
  const transform = stage._transform;
  stage._transform = function (this: Transform, chunk: Uint8Array, encoding, callback) {
    transform.call(this, chunk, encoding, (error?: Error | null, data?: unknown) => {
      if (!error && chunk.byteLength > 0) consumed(chunk);
      callback(error, data);
    });
  };
}

export class ContainersStorageDestination implements ImageDestination {
  readonly properties: ImageDestinationProperties = {
    supportedManifestMimeTypes: [MediaTypes.OciManifest, MediaTypes.DockerManifest],
    desiredLayerCompression: 'preserve',
    acceptsForeignLayerURLs: false,
    mustMatchRuntimeOS: true,
    supportsSignatures: true,
    hasThreadSafePutBlob: true,
    ignoresEmbeddedDockerReference: true,
    wantsLayerDiffIds: true,
  };

  private readonly spooled = new Map<string, SpooledBlob>();
  private readonly configs = new Map<string, Uint8Array>();
  private readonly reused = new Map<string, ReusedLayer>();
  /** Layers put in the store from a blob given to `putBlob` (by blob digest). */
  private readonly appliedByDigest = new Map<string, ReusedLayer>();
  /** Layers this destination created, oldest first: removed again when unused after a failure or without commit. */
  private readonly createdLayers: string[] = [];
  private manifest: { bytes: Uint8Array; mediaType: string; digest: Digest } | undefined;
  private signatures: Uint8Array[] | undefined;
  private spoolDirectory: Promise<string> | undefined;
  /** The spool directory's removal, started by `commit` once every layer is in the store (awaited by `close`). */
  private spoolRemoval: Promise<void> | undefined;
  private closed = false;
  private committed = false;

  // Layers applied in order as they arrive (`PutBlobOptions.layerIndex` and `layerDiffIds`), as
  // containers/image's storage destination does: the layer at `appliedCount` is applied as soon as its
  // blob arrives (streamed straight into the driver) or, when it arrived earlier (spooled, or found in
  // the store), as soon as its parent is in the store.
  private orderedDiffIds: readonly Digest[] | undefined;
  private orderedLayerIds: string[] = [];
  /** How many leading layers of `orderedDiffIds` are in the store. */
  private appliedCount = 0;
  /** The layer being applied now (from a stream, a spooled blob or another layer), if any. */
  private busyIndex: number | undefined;
  /** Blobs that arrived for a layer not yet applicable (spooled, or reused from the store), by index. */
  private readonly waitingByIndex = new Map<number, string>();
  /** Blobs still arriving for a layer not yet applied, by index: applied from their spool when it is their turn. */
  private readonly growingByIndex = new Map<number, GrowingBlob>();
  private background: Promise<void> | undefined;
  private backgroundFailure: { error: unknown } | undefined;
  /** The last layer's completing write, in flight with the layers lock held (see `HeldTail`). */
  private tail: HeldTail | undefined;

  constructor(
    readonly reference: ContainersStorageReference,
    private readonly store: ContainersStore,
    private readonly context: TransportContext = {},
  ) {}

  private directory(): Promise<string> {
    // An owned name: the spool directories of a process killed mid-copy are removed by the next one.
    this.spoolDirectory ??= makeOwnedTemporaryDirectory(
      'containers-storage',
      this.context.temporaryDirectory ?? tmpdir(),
    );
    return this.spoolDirectory;
  }

  /**
   * The layer's index for in-order application, when the pipeline gave it with the config's DiffIDs (of
   * the same image as earlier calls); undefined otherwise (the layer is then put in the store at commit).
   */
  private orderedIndexOf(options: {
    layerIndex?: number;
    layerDiffIds?: readonly Digest[];
  }): number | undefined {
    const { layerIndex, layerDiffIds } = options;
    if (layerIndex === undefined || layerDiffIds === undefined) return undefined;
    if (!Number.isInteger(layerIndex) || layerIndex < 0 || layerIndex >= layerDiffIds.length)
      return undefined;
    if (this.orderedDiffIds === undefined) {
      if (!layerDiffIds.every((diffId) => /^sha256:[0-9a-f]{64}$/.test(diffId))) return undefined;
      this.orderedDiffIds = [...layerDiffIds];
      let parent: string | undefined;
      this.orderedLayerIds = this.orderedDiffIds.map((diffId) => {
        parent = layerIdFor(parent, diffId);
        return parent;
      });
    } else if (!sameDigests(this.orderedDiffIds, layerDiffIds)) {
      return undefined;
    }
    return layerIndex;
  }

  async putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo> {
    let result: { digest: Digest; size: number } | undefined;
    const onEnd = (value: { digest: Digest; size: number }) => {
      result = value;
    };
    if (options.isConfig) {
      const chunks: Uint8Array[] = [];
      await pipeline(
        stream,
        blobWriteStage(info.digest, onEnd),
        async (source: AsyncIterable<Uint8Array>) => {
          for await (const chunk of source) chunks.push(chunk);
        },
        options.signal ? { signal: options.signal } : {},
      );
      const bytes = Buffer.concat(chunks);
      this.checkSize(info, result!.size);
      this.configs.set(result!.digest, bytes);
      return {
        digest: result!.digest,
        size: result!.size,
        ...(info.mediaType ? { mediaType: info.mediaType } : {}),
      };
    }
    const index = this.orderedIndexOf(options);
    if (index !== undefined && index === this.appliedCount && this.busyIndex === undefined) {
      return this.putLayerStreaming(stream, info, index, options.signal, options.chunkWritten);
    }
    const directory = await this.directory();
    const path = join(directory, `blob-${this.spooled.size}-${Math.random().toString(36).slice(2)}`);
    // A layer of known position can be applied from its spool while the blob still arrives, as soon as
    // its parent is in the store (`advance`).
    const spool = new GrowingSpool(path);
    const growing = index !== undefined ? { spool, blob: info.digest } : undefined;
    if (index !== undefined && growing !== undefined) {
      this.growingByIndex.set(index, growing);
      this.advance();
    }
    try {
      // The stream's own chunks (`ownChunks`: not joined), each handed back once it is in the file; a
      // blob further ahead than the next layer lets the layer being applied go first (`yieldingChunks`).
      await pipeline(
        index !== undefined
          ? yieldingChunks(ownChunks(stream), () => this.yieldsToApplication(index))
          : ownChunks(stream),
        blobWriteStage(info.digest, onEnd),
        (source: AsyncIterable<Uint8Array>) => spool.write(source, options.chunkWritten),
        options.signal ? { signal: options.signal } : {},
      );
      this.checkSize(info, result!.size);
    } catch (error) {
      if (!stream.destroyed) stream.destroy();
      spool.fail(error);
      if (index !== undefined && this.growingByIndex.get(index) === growing)
        this.growingByIndex.delete(index);
      await rm(path, { force: true });
      throw error;
    }
    this.spooled.set(result!.digest, { path, size: result!.size });
    spool.finish({ digest: result!.digest, size: result!.size });
    if (index !== undefined) {
      if (this.growingByIndex.get(index) === growing) {
        // Not being applied from the spool yet: it waits as a complete blob.
        this.growingByIndex.delete(index);
        this.waitingByIndex.set(index, result!.digest);
      }
      this.advance();
    }
    return {
      digest: result!.digest,
      size: result!.size,
      ...(info.mediaType ? { mediaType: info.mediaType } : {}),
    };
  }

  /**
   * Applies the layer at `index` (whose parent is in the store) straight from the blob's stream:
   * decompressed on the way into the driver, its DiffID checked against the config's, the compressed
   * bytes verified by the pipeline before the stream ends. A layer the store already has is only read
   * through (the stream is still verified). The stream's chunks are read as they are (`ownChunks`) and
   * handed to `chunkWritten` once the decompressor took them in.
   */
  private async putLayerStreaming(
    stream: Readable,
    info: BlobToWrite,
    index: number,
    signal: AbortSignal | undefined,
    chunkWritten: ((chunk: Uint8Array) => void) | undefined,
  ): Promise<BlobInfo> {
    this.busyIndex = index;
    try {
      let written: { digest: Digest; size: number } | undefined;
      const onEnd = (value: { digest: Digest; size: number }) => {
        written = value;
      };
      const verified = (async function* (source: AsyncIterable<Uint8Array>) {
        yield* blobWriteStage(info.digest, onEnd)(source);
      })(ownChunks(stream));
      // The blob's first bytes, read while the layer's record is being saved: when the layer begins with
      // small files, layer-tree's file-writing worker is started meanwhile (small-files.ts).
      const head = sniff(verified, smallFilesPrefixLength);
      head.then(
        ({ prefix }) => {
          if (beginsWithSmallFiles(prefix)) startFileWriter();
        },
        // The stream's failure is reported by whoever reads it (below).
        () => undefined,
      );
      const diffId = this.orderedDiffIds![index]!;
      const id = this.orderedLayerIds[index]!;
      const parent = index > 0 ? this.orderedLayerIds[index - 1] : undefined;
      const description = `layer ${index} (blob ${info.digest ?? 'being compressed'})`;
      let consumed = false;
      let successor: ReadyLayer | undefined;
      let held: HeldLayers | undefined;
      try {
        held = await this.storeLayer(
          id,
          parent,
          diffId,
          description,
          signal,
          async (apply) => {
            consumed = true;
            const { stream: blob } = await head;
            const compression = await applyBlobContents(blob, description, apply, chunkWritten);
            if (written === undefined)
              throw new GantryError(ErrorCodes.Internal, `${description}: the blob was not read to its end`);
            this.checkSize(info, written.size);
            return {
              digest: written.digest,
              size: written.size,
              compression: layerCompressionCodes[compression],
            };
          },
          {
            successor: (table, prepared) => {
              successor = this.takeSuccessor(index, table, prepared);
              return successor && this.layerAt(successor.index);
            },
            lookahead: (after) => this.peekAfter(after),
            last: index === this.orderedDiffIds!.length - 1,
          },
        );
      } catch (error) {
        if (successor !== undefined) this.putBack(successor);
        stream.destroy();
        throw error;
      }
      if (!consumed) {
        // The store has this layer already: the blob is read (and verified) but not used.
        for await (const _ of (await head).stream) {
          // discarded
        }
        this.checkSize(info, written!.size);
      }
      this.appliedCount = index + 1;
      this.appliedByDigest.set(written!.digest, { layerId: id, diffId });
      if (successor !== undefined) {
        // The next layer goes on in the background with the lock still held.
        this.runInBackground(successor, held);
        successor = undefined;
      }
      return {
        digest: written!.digest,
        size: written!.size,
        ...(info.mediaType ? { mediaType: info.mediaType } : {}),
      };
    } finally {
      if (this.busyIndex === index) this.busyIndex = undefined;
      this.advance();
    }
  }

  /**
   * Whether the blob of the layer at `index`, being spooled, lets the layer being applied go first: it
   * is more than one place after that layer, so it is not needed before that layer and the next one are
   * in the store (see `yieldingChunks`).
   */
  private yieldsToApplication(index: number): boolean {
    return this.busyIndex !== undefined && index > this.busyIndex + 1;
  }

  /** Applies the next layer in order when its blob is waiting (spooled or found in the store), in the background. */
  private advance(): void {
    if (this.busyIndex !== undefined) return;
    const ready = this.takeReady(this.appliedCount);
    if (ready !== undefined) this.runInBackground(ready, undefined);
  }

  /**
   * The layer at `index` when its blob is there (complete, or arriving into a spool), taken out of the
   * waiting maps; undefined when it is not there, or the destination failed or was closed.
   */
  private takeReady(index: number): ReadyLayer | undefined {
    if (this.backgroundFailure !== undefined || this.closed || this.orderedDiffIds === undefined)
      return undefined;
    const digest = this.waitingByIndex.get(index);
    if (digest !== undefined) {
      this.waitingByIndex.delete(index);
      return { index, digest };
    }
    const growing = this.growingByIndex.get(index);
    if (growing !== undefined) {
      this.growingByIndex.delete(index);
      return { index, growing };
    }
    return undefined;
  }

  /**
   * The layer after `index`, taken when it can start as soon as layer `index` is stored: its blob is
   * there and the store does not have it yet (seen in `table`, under the lock).
   */
  private takeSuccessor(
    index: number,
    table: LayerTable,
    prepared: string | undefined,
  ): ReadyLayer | undefined {
    const next = index + 1;
    if (this.orderedDiffIds === undefined || next >= this.orderedDiffIds.length) return undefined;
    const nextId = this.orderedLayerIds[next]!;
    if (nextId !== prepared && table.byId(nextId)) return undefined;
    return this.takeReady(next);
  }

  /**
   * The layer after layer `id` in order, whether or not its blob is there yet (it usually is by the time
   * layer `id` is applied; when it is not, its prepared record goes again in the write completing `id`).
   */
  private peekAfter(id: string): { id: string; parent: string } | undefined {
    if (this.backgroundFailure !== undefined || this.closed || this.orderedDiffIds === undefined)
      return undefined;
    const next = this.orderedLayerIds.indexOf(id) + 1;
    if (next <= 0 || next >= this.orderedDiffIds.length) return undefined;
    return this.layerAt(next);
  }

  /** Gives back a layer taken by `takeReady` that was not applied. */
  private putBack(layer: ReadyLayer): void {
    if (layer.digest !== undefined) this.waitingByIndex.set(layer.index, layer.digest);
    else this.growingByIndex.set(layer.index, layer.growing);
  }

  /** The ID and parent of the layer at `index` (not the first). */
  private layerAt(index: number): { id: string; parent: string } {
    return { id: this.orderedLayerIds[index]!, parent: this.orderedLayerIds[index - 1]! };
  }

  /**
   * Applies `first` and then, while the next layer in order is there when one is stored, the next ones,
   * in the background: the layers lock stays held from one to the next, and each layers.json write that
   * completes a layer also saves the next one's incomplete record. `held`: the lock held for `first`.
   */
  private runInBackground(first: ReadyLayer, held: HeldLayers | undefined): void {
    this.busyIndex = first.index;
    const work = (async () => {
      let current: ReadyLayer | undefined = first;
      let holding = held;
      try {
        while (current !== undefined) {
          const layer: ReadyLayer = current;
          current = undefined;
          this.busyIndex = layer.index;
          let successor: ReadyLayer | undefined;
          const chain: LayerChain = {
            ...(holding ? { held: holding } : {}),
            successor: (table, prepared) => {
              successor = this.takeSuccessor(layer.index, table, prepared);
              return successor && this.layerAt(successor.index);
            },
            lookahead: (after) => this.peekAfter(after),
            last: layer.index === this.orderedDiffIds!.length - 1,
          };
          const parent = layer.index > 0 ? this.orderedLayerIds[layer.index - 1] : undefined;
          const diffId = this.orderedDiffIds![layer.index]!;
          try {
            const before = holding;
            holding = layer.growing
              ? await this.storeLayerFromGrowingSpool(
                  layer.index,
                  layer.growing,
                  diffId,
                  parent,
                  this.context.signal,
                  chain,
                )
              : await this.storeLayerFromBlob(
                  layer.index,
                  layer.digest,
                  diffId,
                  parent,
                  this.context.signal,
                  chain,
                );
            if (before !== undefined && !before.taken) await this.abandonHeld(before);
            this.appliedCount = layer.index + 1;
            current = successor;
          } catch (error) {
            if (holding !== undefined && !holding.taken) await this.abandonHeld(holding);
            holding = undefined;
            if (successor !== undefined) this.putBack(successor);
            // A blob whose download failed (broken off, or not the digest announced) is the copy's to retry
            // (putBlob again) or report; the layer was removed again by storeLayer. Anything else fails the
            // destination. (The application may fail on the bad bytes before the download is found bad.)
            if (layer.growing !== undefined) await layer.growing.spool.completed().catch(() => undefined);
            if (!layer.growing?.spool.failed) this.backgroundFailure = { error };
          }
        }
      } finally {
        if (holding !== undefined && !holding.taken) await this.abandonHeld(holding).catch(() => undefined);
        this.busyIndex = undefined;
      }
    })();
    this.background = work;
    void work.then(() => {
      if (this.background === work) this.background = undefined;
      this.advance();
    });
  }

  /** Removes the prepared (incomplete, never started) record of a held lock, and releases the lock. */
  private async abandonHeld(held: HeldLayers): Promise<void> {
    held.taken = true;
    try {
      // The write completing the previous layer first: writes go out in order. When it failed, that
      // layer is not complete on disk and goes too (whoever needs it then finds it missing).
      if (held.pending !== undefined && (await held.pending.then(failed(false), failed(true)))) {
        const parent = held.table.byId(held.preparedId)?.parent;
        if (parent !== undefined) await this.removeUnsavedLayer(held.table, parent);
      }
      this.forgetPrepared(held.table, held.preparedId);
      if (held.aheadId !== undefined) this.forgetPrepared(held.table, held.aheadId);
      await held.table.saveAsync();
    } finally {
      held.release();
    }
  }

  /**
   * Removes layer `id` (files, tar-split, record; the table is saved by the caller) after the write
   * that was to complete it failed.
   */
  private async removeUnsavedLayer(table: LayerTable, id: string): Promise<void> {
    await this.store.driver.removeLayer(id).catch(() => undefined);
    await rm(this.store.tarSplitPath(id), { force: true });
    const position = table.records.findIndex((record) => record.id === id);
    if (position >= 0) table.records.splice(position, 1);
  }

  /** Takes a prepared (incomplete, never started) record out of the table (saved by the caller). */
  private forgetPrepared(table: LayerTable, id: string): void {
    const position = table.records.findIndex((record) => record.id === id);
    if (position >= 0) table.records.splice(position, 1);
    const created = this.createdLayers.lastIndexOf(id);
    if (created >= 0) this.createdLayers.splice(created, 1);
  }

  /** Waits until no layer is being applied in the background. */
  private async settleBackground(): Promise<void> {
    while (this.background !== undefined) await this.background.then(() => undefined);
  }

  private checkSize(info: BlobToWrite, size: number): void {
    if (info.size >= 0 && info.size !== size) {
      throw new GantryError(
        ErrorCodes.SizeMismatch,
        `blob ${info.digest ?? ''}: size mismatch: expected ${info.size} bytes, got ${size}`,
      );
    }
  }

  async tryReusingBlob(info: BlobInfo, options: TryReusingBlobOptions): Promise<ReusedBlob> {
    if (options.isConfig) {
      const bytes = this.configs.get(info.digest);
      return bytes
        ? { reused: true, blob: { digest: info.digest, size: bytes.byteLength } }
        : { reused: false };
    }
    const index = this.orderedIndexOf(options);
    const spooled = this.spooled.get(info.digest);
    if (spooled) {
      if (index !== undefined) {
        this.waitingByIndex.set(index, info.digest);
        this.advance();
      }
      return { reused: true, blob: { digest: info.digest, size: spooled.size } };
    }
    // A hint only, read without the lock (layers.json is always replaced whole): the layer is looked up
    // again under the lock when it is used. (Taking the lock here would wait for a layer being applied.)
    const records = this.store.readLayersUnlocked().filter((layer) => layer.flags?.[incompleteFlag] !== true);
    let outcome: ReusedBlob = { reused: false };
    const byCompressed = records.find(
      (layer) => layer['compressed-diff-digest'] === info.digest && layer['diff-digest'],
    );
    if (byCompressed) {
      this.reused.set(info.digest, { layerId: byCompressed.id, diffId: byCompressed['diff-digest']! });
      const size = info.size >= 0 ? info.size : (byCompressed['compressed-size'] ?? -1);
      outcome = { reused: true, blob: { digest: info.digest, size } };
    } else {
      const byUncompressed = records.find((layer) => layer['diff-digest'] === info.digest);
      if (byUncompressed) {
        this.reused.set(info.digest, { layerId: byUncompressed.id, diffId: info.digest });
        const size = info.size >= 0 ? info.size : (byUncompressed['diff-size'] ?? -1);
        outcome = { reused: true, blob: { digest: info.digest, size } };
      }
    }
    if (outcome.reused && index !== undefined) {
      this.waitingByIndex.set(index, info.digest);
      this.advance();
    }
    return outcome;
  }

  async putManifest(manifest: Uint8Array, mediaType: string, instanceDigest?: Digest): Promise<void> {
    if (instanceDigest !== undefined) {
      throw new GantryError(
        ErrorCodes.UnsupportedManifestType,
        'containers-storage stores one image per destination, not a list of images',
      );
    }
    if (mediaType !== MediaTypes.OciManifest && mediaType !== MediaTypes.DockerManifest) {
      throw new GantryError(
        ErrorCodes.UnsupportedManifestType,
        `containers-storage: manifest type ${mediaType} is not supported here (OCI or Docker schema 2 images only)`,
      );
    }
    this.manifest = { bytes: Uint8Array.from(manifest), mediaType, digest: manifestDigest(manifest) };
  }

  async putSignatures(signatures: Uint8Array[], instanceDigest?: Digest): Promise<void> {
    if (instanceDigest !== undefined) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        'containers-storage: signatures of list instances are not stored',
      );
    }
    this.signatures = signatures.map((signature) => Uint8Array.from(signature));
  }

  async commit(options: CommitOptions = {}): Promise<void> {
    const signal = options.signal ?? this.context.signal;
    if (!this.manifest)
      throw new GantryError(ErrorCodes.Internal, 'containers-storage: commit without a manifest');
    const topLevel = options.topLevelManifest;
    const { named } = this.reference;
    if (
      named?.digest &&
      named.digest !== this.manifest.digest &&
      !(topLevel !== undefined && manifestMatchesDigest(topLevel.bytes, named.digest))
    ) {
      throw new GantryError(
        ErrorCodes.DigestMismatch,
        `Manifest to be saved does not match expected digest ${named.digest}`,
      );
    }
    const manifest = parseManifest(this.manifest.bytes, this.manifest.mediaType);
    const configInfo = manifest.config;
    if (!configInfo)
      throw new GantryError(ErrorCodes.InvalidManifest, 'containers-storage: the manifest has no config');
    const configBytes = this.configs.get(configInfo.digest);
    if (!configBytes) {
      throw new GantryError(
        ErrorCodes.BlobNotFound,
        `containers-storage: config ${configInfo.digest} was not written`,
      );
    }
    const config = parseImageConfig(configBytes);
    const diffIds = config.rootfs?.diff_ids ?? [];
    const nonEmptyLayers = manifest.layers.filter((layer) => !layer.emptyLayer);
    if (diffIds.length !== nonEmptyLayers.length) {
      throw new GantryError(
        ErrorCodes.InvalidManifest,
        `containers-storage: the config lists ${diffIds.length} DiffIDs for ${nonEmptyLayers.length} layers`,
      );
    }

    try {
      // Layers applied in order while the blobs arrived count only if they were of this image.
      await this.settleBackground();
      if (this.backgroundFailure) throw this.backgroundFailure.error;
      const applied =
        this.orderedDiffIds !== undefined &&
        nonEmptyLayers.length === manifest.layers.length &&
        sameDigests(this.orderedDiffIds, diffIds)
          ? this.appliedCount
          : 0;
      // The last layer's write, left in flight, goes on while the image is written only when that layer
      // is the image's top layer; otherwise it is finished before any other layer is stored.
      if (this.tail !== undefined && (applied !== nonEmptyLayers.length || applied === 0))
        await this.finishTail();
      // Every layer is in the store: the spooled blobs are not read again, and go while the image is
      // written (instead of after it, in `close`).
      if (applied === nonEmptyLayers.length) this.spoolRemoval ??= this.removeSpoolDirectory();
      let parent: string | undefined;
      for (const [index, layer] of nonEmptyLayers.entries()) {
        if (index < applied) {
          parent = this.orderedLayerIds[index];
          continue;
        }
        parent = await this.commitLayer(index, layer, diffIds[index]!, parent, signal);
      }
      await this.commitImage(configInfo.digest, configBytes, config.created, parent, topLevel, signal);
      this.committed = true;
    } catch (error) {
      await this.finishTail().catch(() => undefined);
      await this.removeUnusedLayers(this.createdLayers).catch(() => undefined);
      throw error;
    }
  }

  /** Puts one layer in the store at commit (or finds it there); returns its layer ID. */
  private async commitLayer(
    index: number,
    layer: BlobInfo,
    expectedDiffId: string,
    parent: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<string> {
    const id = layerIdFor(parent, expectedDiffId);
    await this.storeLayerFromBlob(index, layer.digest, expectedDiffId, parent, signal);
    return id;
  }

  /**
   * Puts the layer at `index` on top of `parent` from its spool while the blob arrives: the blob's bytes
   * are decompressed into the driver as they are written; the layer is complete only once the blob is
   * (verified by `putBlob`), since the spool's reader ends only then.
   */
  private async storeLayerFromGrowingSpool(
    index: number,
    growing: GrowingBlob,
    expectedDiffId: string,
    parent: string | undefined,
    signal: AbortSignal | undefined,
    chain?: LayerChain,
  ): Promise<HeldLayers | undefined> {
    const description = `layer ${index} (blob ${growing.blob ?? 'being compressed'})`;
    const id = layerIdFor(parent, expectedDiffId);
    const held = await this.storeLayer(
      id,
      parent,
      expectedDiffId,
      description,
      signal,
      async (apply) => {
        const buffers = new ReadBufferRecycler();
        const compression = await applyBlobContents(
          growing.spool.read(signal, buffers),
          description,
          apply,
          (chunk) => buffers.giveBack(chunk),
        );
        // The reader ended: the blob is complete and verified.
        const blob = await growing.spool.completed();
        return { digest: blob.digest, size: blob.size, compression: layerCompressionCodes[compression] };
      },
      chain,
    );
    // (When the store had the layer already, its blob still has to arrive complete.)
    let blob: { digest: Digest; size: number };
    try {
      blob = await growing.spool.completed();
    } catch (error) {
      if (held !== undefined) await this.abandonHeld(held);
      throw error;
    }
    this.appliedByDigest.set(blob.digest, { layerId: id, diffId: expectedDiffId });
    return held;
  }

  /**
   * Puts the layer of blob `digest` on top of `parent`, from its spooled bytes or, for a blob found in
   * the store (`tryReusingBlob`) or applied earlier under another parent, rebuilt from that layer.
   */
  private async storeLayerFromBlob(
    index: number,
    digest: string,
    expectedDiffId: string,
    parent: string | undefined,
    signal: AbortSignal | undefined,
    chain?: LayerChain,
  ): Promise<HeldLayers | undefined> {
    const description = `layer ${index} (blob ${digest})`;
    const spooled = this.spooled.get(digest);
    const reused = spooled ? undefined : (this.reused.get(digest) ?? this.appliedByDigest.get(digest));
    if (reused && reused.diffId !== expectedDiffId) {
      throw new GantryError(
        ErrorCodes.DigestMismatch,
        `${description} does not match config's DiffID "${expectedDiffId}"`,
      );
    }
    if (!reused && !spooled) {
      throw new GantryError(
        ErrorCodes.BlobNotFound,
        `containers-storage: layer blob ${digest} was not written`,
      );
    }
    const id = layerIdFor(parent, expectedDiffId);
    return this.storeLayer(
      id,
      parent,
      expectedDiffId,
      description,
      signal,
      async (apply, table) => {
        if (spooled) {
          // Read into buffers used again once the decompressor took each in.
          const buffers = new ReadBufferRecycler();
          const file = GrowingSpool.ofFile(spooled.path, { digest, size: spooled.size });
          const compression = await applyBlobContents(
            file.read(signal, buffers),
            description,
            apply,
            (chunk) => buffers.giveBack(chunk),
          );
          return { digest, size: spooled.size, compression: layerCompressionCodes[compression] };
        }
        const source = table.byId(reused!.layerId);
        if (!source) {
          throw new GantryError(
            ErrorCodes.BlobNotFound,
            `containers-storage: layer ${reused!.layerId} disappeared`,
          );
        }
        const contents = await openLayerDiff(this.store, source);
        try {
          await apply(contents);
        } finally {
          contents.destroy();
        }
        if (source['compressed-diff-digest'] === digest && (source['compressed-size'] ?? 0) > 0) {
          return { digest, size: source['compressed-size']!, compression: source.compression ?? 0 };
        }
        return undefined;
      },
      chain,
    );
  }

  /**
   * Creates layer `id` on `parent` with the layers lock held, as containers/storage does: the record is
   * saved flagged `incomplete`, the driver applies the tar `produce` feeds it (its DiffID must be
   * `expectedDiffId`), and the record is completed in the layers.json write that also puts the layer's
   * tar-split in place (synced together, the tar-split renamed first). On failure everything of the layer
   * is removed. A layer the store already has is left as it is (`produce` is not called).
   *
   * Chaining (`chain`): when `chain.held` is given, the lock is already held with this layer's incomplete
   * record saved. When `chain.successor` names the next layer once this one is applied, the lock is
   * returned still held (`HeldLayers`) for the next `storeLayer`; otherwise the lock is released. The
   * next layer's incomplete record is saved ahead (`chain.lookahead`), in the write that saves this
   * layer's incomplete record (or completes the previous one): it is then on disk before this layer is
   * applied, and the next layer starts at once, while the write completing this one is still being
   * synced (`HeldLayers.pending`, awaited before the next write, which keeps them in order; when it
   * fails, this layer is removed with the next one). Otherwise the next layer's record goes into the
   * write that completes this one, awaited first. As with containers/storage, no layer directory exists
   * without an incomplete or complete record on disk.
   */
  private async storeLayer(
    id: string,
    parent: string | undefined,
    expectedDiffId: string,
    description: string,
    signal: AbortSignal | undefined,
    produce: (
      apply: (contents: AsyncIterable<Uint8Array>) => Promise<ApplyDiffResult>,
      table: LayerTable,
    ) => Promise<GivenBlob | undefined>,
    chain: LayerChain = {},
  ): Promise<HeldLayers | undefined> {
    // The lock is this process's to take: a write left in flight for commit is finished first.
    if (this.tail !== undefined) await this.finishTail();
    let held = chain.held;
    if (held !== undefined && held.preparedId !== id) {
      await this.abandonHeld(held);
      held = undefined;
    }
    if (held !== undefined) held.taken = true;
    const session = held
      ? { table: held.table, release: held.release }
      : await this.store
          .openLayers(true, signal ? { signal } : {})
          .then(({ table, lock }) => ({ table, release: () => lock.release() }));
    const { table } = session;
    /** The write completing the previous layer, still in flight (awaited before any other write). */
    let pending = held?.pending;
    /** The next layer's incomplete record, saved ahead (by this layer's writes or the previous layer's). */
    let ahead = held?.aheadId;
    let previousFailed = false;
    let handOver: HeldLayers | undefined;
    /** Set when the lock stays held for `commit` (`HeldTail`). */
    let keptForCommit = false;
    try {
      let record: LayerRecord;
      if (held !== undefined) {
        const prepared = table.byId(id);
        if (!prepared)
          throw new GantryError(ErrorCodes.Internal, `${description}: its prepared record disappeared`);
        record = prepared;
      } else {
        if (table.byId(id)) return undefined;
        if (parent !== undefined && !table.byId(parent)) {
          throw new GantryError(
            ErrorCodes.BlobNotFound,
            `containers-storage: parent layer ${parent} of ${description} is not in the store`,
          );
        }
        record = newIncompleteRecord(id, parent);
        table.records.push(record);
        this.createdLayers.push(id);
        ahead = this.prepareAhead(table, chain, id);
        await table.saveAsync();
      }
      let next: LayerRecord | undefined;
      let result: ApplyDiffResult | undefined;
      try {
        await this.store.driver.createLayer(id, parent);
        const given = await produce(async (contents) => {
          result = await this.store.driver.applyDiff(id, parent, contents, signal ? { signal } : {});
          return result;
        }, table);
        if (!result) throw new GantryError(ErrorCodes.Internal, `${description}: nothing was applied`);
        if (result.uncompressedDigest !== expectedDiffId) {
          throw new GantryError(
            ErrorCodes.DigestMismatch,
            `${description}: its contents have digest ${result.uncompressedDigest}, the config's DiffID is ${expectedDiffId}`,
          );
        }
        // The previous layer's record is complete on disk before this one's is (and its failure is ours).
        if (pending !== undefined) {
          const previous = pending;
          pending = undefined;
          await previous.catch((error: unknown) => {
            previousFailed = true;
            throw error;
          });
        }
        delete record.flags;
        // As containers/storage records a layer put from a stream: the digest and size of what was
        // given (the uncompressed tar when the layer was rebuilt from another one), and the compression
        // detected (0, uncompressed, is left out as Go's omitempty does).
        record['compressed-diff-digest'] = given?.digest ?? result.uncompressedDigest;
        record['compressed-size'] = given?.size ?? result.uncompressedSize;
        record['diff-digest'] = result.uncompressedDigest;
        record['diff-size'] = result.uncompressedSize;
        if (given?.compression) record.compression = given.compression;
        if (result.uids.length) record.uidset = result.uids;
        if (result.gids.length) record.gidset = result.gids;
        reorderLayerRecord(record);
        const successor = chain.successor?.(table, ahead);
        const tarSplit = [{ path: this.store.tarSplitPath(id), data: result.tarSplitGzip }];
        // The tar-split and layers.json synced together (on the thread pool: blobs still arriving go on
        // meanwhile); the tar-split is renamed into place first, so the layer is complete when its
        // record says so.
        if (successor !== undefined && successor.parent === id && successor.id === ahead) {
          // The next layer's record was synced before: it starts at once, while this write is synced
          // (the record of the one after it is prepared in this write).
          const nextAhead = this.prepareAhead(table, chain, successor.id);
          const save = table.saveAsync(tarSplit);
          // Awaited by whoever takes the lock over; not reported as unhandled meanwhile.
          save.catch(() => undefined);
          ahead = undefined;
          handOver = {
            table,
            release: session.release,
            preparedId: successor.id,
            ...(nextAhead !== undefined ? { aheadId: nextAhead } : {}),
            pending: save,
            taken: false,
          };
          return handOver;
        }
        if (ahead !== undefined) {
          // Prepared ahead, but not going on now: taken out again in this write.
          this.forgetPrepared(table, ahead);
          ahead = undefined;
        }
        if (successor === undefined && chain.last === true) {
          // The image's last layer: its write is synced while commit writes the image (`HeldTail`).
          const write = table.saveAsync(tarSplit);
          // Awaited by `finishTail`; not reported as unhandled meanwhile.
          write.catch(() => undefined);
          this.tail = { table, release: session.release, layerId: id, write };
          keptForCommit = true;
          return undefined;
        }
        let nextAhead: string | undefined;
        if (successor !== undefined && successor.parent === id) {
          next = newIncompleteRecord(successor.id, successor.parent);
          table.records.push(next);
          this.createdLayers.push(successor.id);
          nextAhead = this.prepareAhead(table, chain, successor.id);
        }
        try {
          await table.saveAsync(tarSplit);
        } catch (error) {
          if (nextAhead !== undefined) this.forgetPrepared(table, nextAhead);
          throw error;
        }
        if (next !== undefined)
          handOver = {
            table,
            release: session.release,
            preparedId: next.id,
            ...(nextAhead !== undefined ? { aheadId: nextAhead } : {}),
            taken: false,
          };
        return handOver;
      } catch (error) {
        // Writes go out in order: the previous layer's first.
        if (pending !== undefined) {
          if (await pending.then(failed(false), failed(true))) previousFailed = true;
          pending = undefined;
        }
        if (next !== undefined) {
          const position = table.records.indexOf(next);
          if (position >= 0) table.records.splice(position, 1);
          const created = this.createdLayers.lastIndexOf(next.id);
          if (created >= 0) this.createdLayers.splice(created, 1);
        }
        if (ahead !== undefined) this.forgetPrepared(table, ahead);
        await this.store.driver.removeLayer(id).catch(() => undefined);
        await rm(this.store.tarSplitPath(id), { force: true });
        const position = table.records.indexOf(record);
        if (position >= 0) table.records.splice(position, 1);
        // The write completing the parent failed: the parent is not complete on disk, and goes too.
        if (previousFailed && parent !== undefined) await this.removeUnsavedLayer(table, parent);
        table.save();
        this.createdLayers.splice(this.createdLayers.lastIndexOf(id), 1);
        throw layerFailure(error, description);
      }
    } catch (error) {
      if (
        pending !== undefined &&
        (await pending.then(failed(false), failed(true))) &&
        parent !== undefined
      ) {
        await this.removeUnsavedLayer(table, parent);
        table.save();
      }
      throw error;
    } finally {
      if (handOver === undefined && !keptForCommit) session.release();
    }
  }

  /**
   * Waits for the last layer's write left in flight (`HeldTail`) and releases the layers lock. When the
   * write failed, the layer is removed (its record is not complete on disk) and the error thrown.
   */
  private async finishTail(): Promise<void> {
    const tail = this.tail;
    if (tail === undefined) return;
    this.tail = undefined;
    try {
      await tail.write;
    } catch (error) {
      try {
        await this.removeUnsavedLayer(tail.table, tail.layerId);
        const created = this.createdLayers.lastIndexOf(tail.layerId);
        if (created >= 0) this.createdLayers.splice(created, 1);
        tail.table.save();
      } catch {
        // The write's failure is the one reported; an incomplete record is removed by the next writer.
      }
      throw error;
    } finally {
      tail.release();
    }
  }

  /**
   * Adds the incomplete record of the layer after `id` (`chain.lookahead`) to `table`, for the caller's
   * next write, when the store does not have that layer; returns its ID.
   */
  private prepareAhead(table: LayerTable, chain: LayerChain, id: string): string | undefined {
    const after = chain.lookahead?.(id);
    if (after === undefined || after.parent !== id || table.byId(after.id)) return undefined;
    table.records.push(newIncompleteRecord(after.id, after.parent));
    this.createdLayers.push(after.id);
    return after.id;
  }

  private async commitImage(
    configDigest: Digest,
    configBytes: Uint8Array,
    configCreated: string | undefined,
    topLayer: string | undefined,
    topLevel: ManifestBlob | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const intendedId = this.reference.id ?? encodedPart(configDigest);
    const manifestInfo = this.manifest!;
    const signatures = this.signatures ?? [];
    const signatureBlob = Buffer.concat(signatures);
    const sizes = signatures.map((signature) => signature.byteLength);
    const metadata = JSON.stringify({
      ...(sizes.length ? { 'signature-sizes': sizes } : {}),
      'signatures-sizes': { [manifestInfo.digest]: sizes },
    });
    const bigData: Array<{ key: string; data: Uint8Array; digest: string }> = [
      { key: configDigest, data: configBytes, digest: configDigest },
    ];
    // The list the image was chosen from, so that the image is found by the list's digest too.
    if (topLevel !== undefined && !Buffer.from(topLevel.bytes).equals(Buffer.from(manifestInfo.bytes))) {
      const listDigest = manifestDigest(topLevel.bytes);
      bigData.push({ key: manifestBigDataKey(listDigest), data: topLevel.bytes, digest: listDigest });
    }
    bigData.push(
      { key: manifestBigDataKey(manifestInfo.digest), data: manifestInfo.bytes, digest: manifestInfo.digest },
      { key: imageDigestBigDataKey, data: manifestInfo.bytes, digest: manifestInfo.digest },
    );
    if (signatureBlob.length) {
      bigData.push({ key: 'signatures', data: signatureBlob, digest: digestOf(signatureBlob) });
    }
    bigData.push({
      key: signatureBigDataKey(manifestInfo.digest),
      data: signatureBlob,
      digest: digestOf(signatureBlob),
    });
    // containers/storage gives a new image the digest of the first manifest stored with it (the list's,
    // when there is one) and keeps an image's digest once it has one.
    const firstManifestDigest = bigData.find((item) => item.key.startsWith(imageDigestBigDataKey))!.digest;
    const name = this.reference.named?.toString();
    // The top layer's completing write when it is still in flight (`HeldTail`): the image's files are
    // written and synced meanwhile, and images.json is renamed into place only once it is done.
    const tail = this.tail !== undefined && this.tail.layerId === topLayer ? this.tail : undefined;
    if (tail === undefined) await this.finishTail();
    const withLayers = async (action: (layers: LayerTable) => Promise<void>): Promise<void> => {
      if (tail === undefined) return this.store.withLayers(false, action, { signal });
      try {
        await action(tail.table);
      } finally {
        // Released (the layer removed when the write failed) whatever happened to the image.
        await this.finishTail();
      }
    };
    // Layers first, then images, as containers/storage orders its locks.
    await withLayers(async (layers) => {
      if (topLayer && !layers.byId(topLayer)) {
        throw new GantryError(
          ErrorCodes.Internal,
          `containers-storage: layer ${topLayer} vanished before the image was created`,
        );
      }
      await this.store.withImages(
        true,
        async (images) => {
          let image = images.byId(intendedId);
          if (image) {
            if ((image.layer ?? undefined) !== topLayer) {
              throw new GantryError(
                ErrorCodes.Internal,
                `image with ID "${intendedId}" already exists, but uses a different top layer`,
              );
            }
            image.metadata = metadata;
          } else {
            image = {
              id: intendedId,
              digest: firstManifestDigest,
              ...(topLayer ? { layer: topLayer } : {}),
              metadata,
              'big-data-names': [],
              'big-data-sizes': {},
              'big-data-digests': {},
              created: configCreated ? goTimeText(configCreated) : goTimestamp(),
            };
            images.records.push(image);
          }
          const files = setImageBigDataItems(this.store, image, bigData);
          image.digest ||= firstManifestDigest;
          if (name) addImageName(images.records, image, name);
          const position = images.records.indexOf(image);
          images.records[position] = sortedMaps(reorderImageRecord(image));
          // The big-data files and images.json synced together, images.json renamed last.
          await images.saveAsync(files, tail !== undefined ? { renameAfter: tail.write } : {});
        },
        { signal },
      );
    });
  }

  /** Removes layers this destination created that no image uses and that have no children. */
  private async removeUnusedLayers(created: string[]): Promise<void> {
    if (!created.length) return;
    await this.finishTail().catch(() => undefined);
    await this.store.withLayers(true, async (layers) => {
      const images = this.store.readImagesUnlocked();
      const used = new Set<string>();
      for (const image of images) {
        if (image.layer) used.add(image.layer);
        for (const mapped of image['mapped-layers'] ?? []) used.add(mapped);
      }
      let changed = false;
      for (const id of [...created].reverse()) {
        if (used.has(id)) continue;
        if (layers.records.some((layer) => layer.parent === id)) continue;
        const position = layers.records.findIndex((layer) => layer.id === id);
        if (position < 0) continue;
        await this.store.driver.removeLayer(id);
        await rm(this.store.tarSplitPath(id), { force: true });
        layers.records.splice(position, 1);
        changed = true;
      }
      if (changed) layers.save();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.settleBackground();
    await this.finishTail().catch(() => undefined);
    if (!this.committed) await this.removeUnusedLayers(this.createdLayers).catch(() => undefined);
    await (this.spoolRemoval ?? this.removeSpoolDirectory());
  }

  /** Removes the spool directory, if one was made (a failure is not reported: nothing is left to use it). */
  private async removeSpoolDirectory(): Promise<void> {
    if (this.spoolDirectory === undefined) return;
    const directory = await this.spoolDirectory.catch(() => undefined);
    if (directory) await rm(directory, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** A new layer's record, flagged incomplete until its files and tar-split are in place. */
function newIncompleteRecord(id: string, parent: string | undefined): LayerRecord {
  const record: LayerRecord = { id };
  if (parent) record.parent = parent;
  record.created = goTimestamp();
  record.flags = { [incompleteFlag]: true };
  return record;
}

/** Adds `name` to `image` (first in its names history) and takes it away from any other image, as podman re-tags. */
export function addImageName(images: ImageRecord[], image: ImageRecord, name: string): void {
  for (const other of images) {
    if (other !== image && other.names?.includes(name)) {
      other.names = other.names.filter((value) => value !== name);
      if (!other.names.length) delete other.names;
    }
  }
  const names = image.names ?? [];
  if (!names.includes(name)) names.push(name);
  image.names = names;
  image['names-history'] = [name, ...(image['names-history'] ?? []).filter((value) => value !== name)];
}

const imageFieldOrder = [
  'id',
  'digest',
  'names',
  'names-history',
  'layer',
  'mapped-layers',
  'metadata',
  'big-data-names',
  'big-data-sizes',
  'big-data-digests',
  'created',
  'flags',
];

const layerFieldOrder = [
  'id',
  'names',
  'parent',
  'metadata',
  'mountlabel',
  'created',
  'compressed-diff-digest',
  'compressed-size',
  'diff-digest',
  'toc-digest',
  'diff-size',
  'compression',
  'uidset',
  'gidset',
  'flags',
  'uidmap',
  'gidmap',
  'big-data-names',
];

function reorder<T extends Record<string, unknown>>(record: T, order: readonly string[]): T {
  const result: Record<string, unknown> = {};
  for (const key of order) if (record[key] !== undefined) result[key] = record[key];
  for (const [key, value] of Object.entries(record))
    if (!(key in result) && value !== undefined) result[key] = value;
  return result as T;
}

/** Puts an image record's fields in containers/storage's order (unknown fields last). */
export function reorderImageRecord(image: ImageRecord): ImageRecord {
  return reorder(image, imageFieldOrder);
}

/** Puts a layer record's fields in containers/storage's order, in place. */
function reorderLayerRecord(layer: LayerRecord): void {
  const ordered = reorder(layer, layerFieldOrder);
  for (const key of Object.keys(layer)) delete layer[key];
  Object.assign(layer, ordered);
}

function sameDigests(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, index) => value === b[index]);
}
