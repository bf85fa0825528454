import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Digest, Digester, digestAlgorithm, digestOf, verifyingStage } from '../digest.js';
import { abortError, ErrorCodes, GantryError, isGantryError } from '../errors.js';
import { ExpansionGuard } from '../expansion-limit.js';
import { layerCompressionOf } from '../manifest/index.js';
import { OffThreadDigester, offThreadVerifyingStage } from '../off-thread-digester.js';
import type { BlobInfo, ImageDestination, ImageSource } from '../transport/contract.js';
import { allocatorTuningMinimumBlobBytes, tuneAllocatorForLargeBlobs } from './allocator.js';
import { holdPooledBuffer, releaseReadChunk, transientBuffers } from './buffer-pool.js';
import {
  type CompressionFormat,
  compressingBlockSize,
  compressingStage,
  createDecompressor,
  type DetectedCompression,
  defaultZstdLevel,
  detectCompression,
  diffIdStage,
  peekCompression,
  sniffLength,
  throughTransform,
} from './compression.js';
import { compressionSlots } from './compression-slots.js';
import { holdLentView, isLentView, releaseCompressedChunk, unholdLentView } from './lent-output-buffers.js';
import { type RetrySettings, withRetry } from './retry.js';
import type { CopiedBlobKind, CopyProgressEvent } from './types.js';
import { hasZstdChunkedAnnotations, isZstdChunkedAnnotation, zstdChunkedStage } from './zstd-chunked.js';

/** How often at most a 'blob-progress' event is emitted for one blob. */
export const progressIntervalMs = 100;

/** What the copy pipeline needs to copy blobs of one image. */
export interface BlobCopyContext {
  source: ImageSource;
  destination: ImageDestination;
  signal: AbortSignal | undefined;
  retry: RetrySettings;
  emit: (event: CopyProgressEvent) => void;
  /** `CopyOptions.tuneAllocatorForLargeBlobs`. */
  tuneAllocatorForLargeBlobs?: boolean;
}

/** What to do to a layer's compression. */
export interface LayerCompressionPlan {
  /** The destination's wish, already reduced to what may be done (see `copyLayer`). */
  desired: 'preserve' | 'compress' | 'decompress';
  /** Format for compressing; recompress compressed layers in another format when `recompress`. */
  format: CompressionFormat;
  /**
   * With `format: 'zstd'`: write zstd:chunked (see `zstdChunkedStage`); with `recompress`, zstd layers
   * without zstd:chunked annotations are recompressed too.
   */
  chunked?: boolean;
  /** Whether a layer compressed in another format than `format` is recompressed. */
  recompress: boolean;
  level?: number;
  /** With `desired: 'decompress'`: compressions kept as they are (`keptLayerCompressions`). */
  keep?: readonly ('gzip' | 'zstd')[];
}

/** The outcome of copying one layer. */
export interface CopiedLayer {
  /** The blob as stored at the destination. */
  info: BlobInfo;
  /** The compression of the stored blob; 'unknown' when the copy did not look at the bytes. */
  compression: DetectedCompression | 'unknown';
  /** Whether the stored blob has other bytes than the source's (compression changed). */
  changed: boolean;
  /** The uncompressed digest, when asked for. */
  diffId?: Digest;
  /** Annotations the manifest must give the changed layer (zstd:chunked's TOC position and digest). */
  annotations?: Record<string, string>;
  result: 'copied' | 'reused' | 'skipped';
}

/** Converts a failure into the Gantry abort error when the signal fired. */
export function normaliseAbort(error: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted && !(isGantryError(error) && error.code === ErrorCodes.Aborted))
    return abortError(signal);
  if (error instanceof Error && error.name === 'AbortError' && !isGantryError(error)) {
    return new GantryError(ErrorCodes.Aborted, error.message, { cause: error });
  }
  return error;
}

/** What {@link sourceStage} checks and reports of a blob's bytes as they come from the source. */
interface SourceStageOptions {
  /** The digest the bytes must have; undefined = only their size is checked. */
  expectedDigest: Digest | undefined;
  /** The size the bytes must have; -1 when unknown. */
  expectedSize: number;
  /** Names the blob in error messages. */
  description: string;
  /** Receives the first bytes (at least `sniffLength` unless the blob is shorter), to detect a compression. */
  onPrefix?: (prefix: Uint8Array) => void;
  /** Learns any failure of the stage (its checks' or the source's) before it is thrown on. */
  onFailure?: (error: unknown) => void;
  /**
   * Hash with an `OffThreadDigester` (on the thread pool where it can): `update` may then return a
   * promise to await before the next chunk, and the bytes are checked by `finishOffThread`.
   */
  offThread?: boolean;
  /**
   * Asked before each chunk is hashed and at the end: true once every byte the source's bytes lead to
   * is verified otherwise (a recompressed layer's decompressed bytes, against the config's DiffID), so
   * the bytes are no longer hashed and their digest is not checked (their size still is).
   */
  digestWaived?: () => boolean;
}

/**
 * The checks of a blob's bytes as they come from the source, doing in one pass what `verifyingStage` and
 * a progress counter would do in two: hashes the bytes (when a digest is expected), fails with
 * `ERR_GANTRY_SIZE_MISMATCH` as soon as more bytes than expected arrive, and at the end with
 * `ERR_GANTRY_DIGEST_MISMATCH` / `ERR_GANTRY_SIZE_MISMATCH`; emits throttled 'blob-progress' events and a
 * final one once the bytes are verified; hands the first bytes to `onPrefix` (looked at in place when the
 * first chunk is long enough). `update` and `finish` throw what they find (after telling `onFailure`).
 */
export class SourceCheck {
  private readonly digester: Digester | undefined;
  private readonly offThreadDigester: OffThreadDigester | undefined;
  private size = 0;
  private lastEmit = 0;
  private prefix: Buffer | undefined;
  private prefixLength = 0;
  private prefixPending: boolean;

  constructor(
    private readonly context: Pick<BlobCopyContext, 'emit'>,
    private readonly blob: BlobInfo,
    private readonly kind: CopiedBlobKind,
    private readonly options: SourceStageOptions,
  ) {
    const { expectedDigest, onPrefix } = options;
    if (expectedDigest !== undefined) {
      if (options.offThread) this.offThreadDigester = new OffThreadDigester(digestAlgorithm(expectedDigest));
      else this.digester = new Digester(digestAlgorithm(expectedDigest));
    }
    this.prefixPending = onPrefix !== undefined;
  }

  /**
   * Checks and counts one chunk. With `offThread`, returns a promise when the caller must wait for the
   * hashing to catch up before the next chunk.
   */
  update(chunk: Uint8Array): Promise<void> | undefined {
    const { expectedSize, description, onPrefix } = this.options;
    let wait: Promise<void> | undefined;
    try {
      if (this.options.digestWaived?.() !== true) {
        this.digester?.update(chunk);
        // A chunk in a pooled buffer (a tar archive's entry read) is given back to its pool by the block
        // compressor once compressed: held until hashed, so that nothing reads into it before.
        wait = this.offThreadDigester?.update(chunk, holdPooledBuffer(chunk));
      }
      this.size += chunk.byteLength;
      if (expectedSize >= 0 && this.size > expectedSize) {
        throw new GantryError(
          ErrorCodes.SizeMismatch,
          `${description}: size mismatch: expected ${expectedSize} bytes, got more`,
        );
      }
    } catch (error) {
      this.options.onFailure?.(error);
      throw error;
    }
    if (this.prefixPending) {
      if (this.prefix === undefined && chunk.byteLength >= sniffLength) {
        this.prefixPending = false;
        onPrefix!(chunk);
      } else {
        this.prefix ??= Buffer.alloc(sniffLength);
        const taken = Math.min(chunk.byteLength, sniffLength - this.prefixLength);
        this.prefix.set(chunk.subarray(0, taken), this.prefixLength);
        this.prefixLength += taken;
        if (this.prefixLength === sniffLength) {
          this.prefixPending = false;
          onPrefix!(this.prefix);
        }
      }
    }
    const now = Date.now();
    if (now - this.lastEmit >= progressIntervalMs) {
      this.lastEmit = now;
      this.context.emit({
        type: 'blob-progress',
        blob: this.blob,
        kind: this.kind,
        bytes: this.size,
        total: this.blob.size,
      });
    }
    return wait;
  }

  /** `finish`, after waiting for the digest computed off this thread (`offThread`). */
  async finishOffThread(): Promise<void> {
    if (this.offThreadDigester !== undefined) {
      try {
        this.checkSize();
        // Awaited even when waived: no hashing of these bytes is left running on the thread pool.
        const actual = await this.offThreadDigester.digest();
        if (this.options.digestWaived?.() !== true) this.checkDigest(actual);
      } catch (error) {
        this.options.onFailure?.(error);
        throw error;
      }
    }
    this.finish();
  }

  /** Checks the size and digest of all the bytes (the source ended), then emits the final progress. */
  finish(): void {
    const { onPrefix } = this.options;
    try {
      if (this.prefixPending) {
        this.prefixPending = false;
        onPrefix!(this.prefix === undefined ? new Uint8Array(0) : this.prefix.subarray(0, this.prefixLength));
      }
      this.checkSize();
      if (this.digester !== undefined && this.options.digestWaived?.() !== true) {
        this.checkDigest(this.digester.digest());
      }
    } catch (error) {
      this.options.onFailure?.(error);
      throw error;
    }
    this.context.emit({
      type: 'blob-progress',
      blob: this.blob,
      kind: this.kind,
      bytes: this.size,
      total: this.blob.size,
    });
  }

  private checkSize(): void {
    const { expectedSize, description } = this.options;
    if (expectedSize >= 0 && this.size !== expectedSize) {
      throw new GantryError(
        ErrorCodes.SizeMismatch,
        `${description}: size mismatch: expected ${expectedSize} bytes, got ${this.size}`,
      );
    }
  }

  private checkDigest(actual: Digest): void {
    const { expectedDigest, description } = this.options;
    if (actual !== expectedDigest) {
      throw new GantryError(
        ErrorCodes.DigestMismatch,
        `${description}: digest mismatch: expected ${expectedDigest}, got ${actual}`,
      );
    }
  }
}

/**
 * The first stage of a blob copy: `SourceCheck` over the source's chunks, passed on unchanged. The bytes
 * are hashed off this thread (`OffThreadDigester`) while the later stages work on them; the stage ends
 * (and so the blob's stream) only once the digest is checked.
 */
function sourceStage(
  context: BlobCopyContext,
  blob: BlobInfo,
  kind: CopiedBlobKind,
  options: SourceStageOptions,
): Stage {
  return async function* checkSource(source) {
    const check = new SourceCheck(context, blob, kind, { ...options, offThread: true });
    try {
      for await (const chunk of source) {
        const wait = check.update(chunk);
        yield chunk;
        if (wait) await wait;
      }
    } catch (error) {
      // The source's own failure (the check's were told already).
      options.onFailure?.(error);
      throw error;
    }
    await check.finishOffThread();
  };
}

/** Bytes `checkedStream` buffers ahead of its consumer (a few socket reads). */
const checkedStreamHighWaterMark = 256 * 1024;

/**
 * `source`'s chunks, passed on unchanged (same buffers, no copy) as a byte stream after `check` saw each:
 * the stream ends only once `check.finish()` accepted all the bytes, and fails instead with what a check
 * threw, or with the source's error (a source closed before its end fails with `ERR_STREAM_PREMATURE_CLOSE`).
 * For a copy that changes nothing this replaces the async-generator stages: no promise per chunk, no
 * iterator layers between the source and the destination. Destroying the result destroys `source`.
 */
export function checkedStream(source: Readable, check: Pick<SourceCheck, 'update' | 'finish'>): Readable {
  let ended = false;
  const output = new Readable({
    highWaterMark: checkedStreamHighWaterMark,
    read() {
      if (source.isPaused()) source.resume();
    },
    destroy(error, callback) {
      detach();
      if (!ended) source.destroy();
      callback(error);
    },
  });
  const onData = (chunk: Uint8Array): void => {
    try {
      check.update(chunk);
    } catch (error) {
      output.destroy(error as Error);
      return;
    }
    if (!output.push(chunk)) source.pause();
  };
  const onEnd = (): void => {
    ended = true;
    try {
      check.finish();
    } catch (error) {
      output.destroy(error as Error);
      return;
    }
    output.push(null);
  };
  const onError = (error: Error): void => {
    output.destroy(error);
  };
  const onClose = (): void => {
    if (ended) return;
    const error = new Error('Premature close') as Error & { code: string };
    error.code = 'ERR_STREAM_PREMATURE_CLOSE';
    output.destroy(source.errored ?? error);
  };
  function detach(): void {
    source.off('data', onData);
    source.off('end', onEnd);
    source.off('close', onClose);
    // Late errors of a destroyed source are expected; keep a listener so they are not uncaught.
    source.off('error', onError);
    source.on('error', () => {});
  }
  source.on('data', onData);
  source.once('end', onEnd);
  source.on('error', onError);
  source.once('close', onClose);
  if (source.errored) output.destroy(source.errored as Error);
  else if (source.readableEnded) onEnd();
  else if (source.destroyed) onClose();
  return output;
}

/**
 * Pulls the first chunk of `source` (so that every earlier stage has started) and returns an iterable
 * yielding all of `source`, that chunk included.
 */
async function startIteration(source: AsyncIterable<Uint8Array>): Promise<AsyncIterable<Uint8Array>> {
  const iterator = source[Symbol.asyncIterator]();
  let first: IteratorResult<Uint8Array> | undefined = await iterator.next();
  async function* replay(): AsyncGenerator<Uint8Array, void, undefined> {
    let done = first?.done === true;
    try {
      if (done) return;
      const chunk = first!.value as Uint8Array;
      // Not kept for the rest of the stream.
      first = undefined;
      yield chunk;
      for (;;) {
        const next = await iterator.next();
        if (next.done) {
          done = true;
          return;
        }
        yield next.value;
      }
    } finally {
      if (!done) await iterator.return?.();
    }
  }
  return replay();
}

type Stage = (source: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array>;

/**
 * `source` decompressed, within the expansion limit (`ExpansionGuard`: a bomb fails with
 * `ERR_GANTRY_INVALID_LAYER`). Data the decompressor rejects fails with `ERR_GANTRY_DIGEST_MISMATCH` naming the
 * blob (such bytes cannot be the blob the manifest names); errors of the source pass unchanged.
 * `noteGarbage`: each input chunk once the decompressor took it and each output chunk once the next
 * stage is done with it are noted to `transientBuffers` (a layer decompressed for its destination).
 */
async function* decompressing(
  source: AsyncIterable<Uint8Array>,
  compression: Exclude<DetectedCompression, 'none'>,
  description: string,
  chunkSize?: number,
  pooledOutput = false,
  noteGarbage = false,
  inputDone?: (chunk: Uint8Array) => void,
  lentOutput = false,
): AsyncGenerator<Uint8Array, void, undefined> {
  let sourceFailure: unknown;
  const guard = new ExpansionGuard(description, ErrorCodes.InvalidLayer);
  async function* watched(): AsyncGenerator<Uint8Array, void, undefined> {
    try {
      for await (const chunk of source) {
        guard.compressed(chunk.byteLength);
        yield chunk;
        // A chunk handed on to `inputDone` is reused, not garbage.
        if (noteGarbage && !inputDone) transientBuffers.note(chunk.byteLength);
      }
    } catch (error) {
      sourceFailure = error;
      throw error;
    }
  }
  try {
    for await (const chunk of throughTransform(
      watched(),
      createDecompressor(compression, chunkSize, {
        pooledOutput,
        lentOutput,
        ...(inputDone ? { inputDone } : {}),
      }),
    )) {
      guard.decompressed(chunk.byteLength);
      yield chunk;
      // A lent view comes back to be written into again: not garbage.
      if (noteGarbage && !(lentOutput && isLentView(chunk))) transientBuffers.note(chunk.byteLength);
    }
  } catch (error) {
    // Anything but the source's own failure, an abort or a Gantry error is the decompressor's verdict.
    const isAbort = error instanceof Error && error.name === 'AbortError';
    if (error !== sourceFailure && !isAbort && !isGantryError(error)) {
      throw new GantryError(
        ErrorCodes.DigestMismatch,
        `${description}: corrupt ${compression} data (${(error as Error)?.message ?? String(error)}): these bytes are not the blob the manifest names`,
        { cause: error },
      );
    }
    throw error;
  }
}

/**
 * The compression slot a layer's compression stage holds. The layer's copy gives it back when its
 * pipeline ends, whatever happened: a stage whose consumer failed may never be resumed to run its own
 * `finally`, and a slot kept by it would stop every later compression of the process.
 */
interface CompressionSlotHolder {
  release?: () => void;
  ended?: boolean;
}

/**
 * The stage changing a layer's compression as `plan` says, deciding on the first bytes it sees.
 * `onDecision` learns the compression the output has, whether it differs from the input's, and
 * whether the output is made from decompressed bytes verified against `uncompressedDigest`.
 */
function compressionStage(
  plan: LayerCompressionPlan,
  onDecision: (output: DetectedCompression, changed: boolean, verifiedByDiffId?: boolean) => void,
  description: string,
  signal: AbortSignal | undefined,
  uncompressedDigest: Digest | undefined,
  sourceChunked: boolean,
  onAnnotations: (annotations: Record<string, string>) => void,
  slot: CompressionSlotHolder,
  lastSourceReader: boolean,
  sourceHashed: boolean,
): Stage {
  /** Compresses `input` to the plan's format once a compression slot is free (see CompressionSlots). */
  async function* compressed(input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array, void, undefined> {
    const acquired = await compressionSlots.acquire(signal);
    let released = false;
    // Given back once, by whichever comes first: this stage's end or the end of the layer's copy.
    const release = (): void => {
      if (released) return;
      released = true;
      acquired();
    };
    slot.release = release;
    // The copy of this layer already ended (failed) while this stage waited for the slot.
    if (slot.ended) {
      release();
      return;
    }
    try {
      if (plan.chunked && plan.format === 'zstd') {
        yield* zstdChunkedStage(plan.level ?? defaultZstdLevel, onAnnotations)(input);
      } else {
        yield* compressingStage(plan.format, plan.level)(input);
      }
    } finally {
      release();
    }
  }
  /** Whether a layer in `compression` is recompressed to the plan's format. */
  const recompressed = (compression: DetectedCompression): boolean =>
    plan.recompress && (compression !== plan.format || (plan.chunked === true && !sourceChunked));
  return async function* changeCompression(source) {
    const { compression, stream, peeked } = await peekCompression(source);
    if (keepsLayerCompression(plan, compression, sourceChunked)) {
      onDecision(compression, false);
      yield* stream;
      return;
    }
    // xz and bzip2 have no layer media type in Docker or OCI manifests: such layers are always
    // recompressed (or decompressed), as their readers (docker, podman) would not take them.
    const foreign = compression === 'xz' || compression === 'bzip2';
    if (plan.desired === 'compress' && compression === 'none') {
      onDecision(plan.format, true);
      yield* compressed(stream);
    } else if (
      plan.desired === 'compress' &&
      compression !== 'none' &&
      (recompressed(compression) || foreign)
    ) {
      onDecision(plan.format, true, uncompressedDigest !== undefined);
      // Decompressed in chunks of the compressor's block size: each chunk is a block, not copied. The
      // block compressor is their last reader (the DiffID check below only hashes them), so they come
      // from its buffer pool and go back to it once compressed.
      const blockSize =
        plan.chunked && plan.format === 'zstd' ? undefined : compressingBlockSize(plan.format);
      // Once the DiffID verifies the output, the source check hashes no more chunks: the decompressor
      // is then their last reader (`lastSourceReader`: nothing else reads them on the side), and the
      // buffers they were read into are read into again once decompressed (`releaseReadChunk`). Not
      // the buffers of the chunks peeked before this decision, which the check may still be hashing.
      const hashed = new WeakSet<ArrayBufferLike>(peeked.map((chunk) => chunk.buffer));
      const decompressed = decompressing(
        stream,
        compression,
        description,
        blockSize,
        blockSize !== undefined,
        false,
        lastSourceReader && uncompressedDigest !== undefined
          ? (chunk) => {
              if (!hashed.has(chunk.buffer)) releaseReadChunk(chunk);
            }
          : undefined,
      );
      // Recompressed bytes are new bytes: their contents are checked against the config's DiffID.
      const checked =
        uncompressedDigest === undefined
          ? decompressed
          : verifyingStage({
              expectedDigest: uncompressedDigest,
              description: `${description}: its uncompressed contents (DiffID in the image config)`,
            })(decompressed);
      // Decompressing and compressing again makes the most short-lived buffers: paced (see GarbagePacer).
      const endRecompression = transientBuffers.whileRecompressing();
      try {
        yield* compressed(checked);
      } finally {
        endRecompression();
      }
    } else if (
      (plan.desired === 'decompress' || foreign) &&
      compression !== 'none' &&
      !(plan.keep as readonly string[] | undefined)?.includes(compression)
    ) {
      onDecision('none', true);
      // Each compressed chunk read and each decompressed one written is garbage next: paced. When the
      // decompressor is the compressed chunks' last reader (the source check only counts them: the
      // output is verified against the DiffID, and no DiffID stage reads them on the side), the buffers
      // they were read into are read into again once zlib consumed them (`releaseReadChunk`).
      const endDecompression = transientBuffers.whileDecompressing();
      try {
        yield* decompressing(
          stream,
          compression,
          description,
          undefined,
          false,
          true,
          lastSourceReader && !sourceHashed ? releaseReadChunk : undefined,
          // gzip's output is lent view by view: the destination releases each view once written
          // (`releaseCompressedChunk`), the DiffID check holds each until hashed (`verifyOutput`).
          true,
        );
      } finally {
        endDecompression();
      }
    } else {
      onDecision(compression, false);
      yield* stream;
    }
  };
}

/**
 * Whether `compressionStage` passes a layer whose bytes are in `compression` on unchanged under `plan`
 * (`sourceChunked`: the layer has zstd:chunked annotations). The copy decides on it before choosing how
 * to stream the layer (see `streamLayer`), with the same answer the stage would give.
 */
export function keepsLayerCompression(
  plan: LayerCompressionPlan,
  compression: DetectedCompression,
  sourceChunked: boolean,
): boolean {
  const foreign = compression === 'xz' || compression === 'bzip2';
  if (plan.desired === 'compress') {
    if (compression === 'none' || foreign) return false;
    const recompressed =
      plan.recompress && (compression !== plan.format || (plan.chunked === true && !sourceChunked));
    return !recompressed;
  }
  if (plan.desired === 'decompress' || foreign) {
    return (
      compression === 'none' || (plan.keep as readonly string[] | undefined)?.includes(compression) === true
    );
  }
  return true;
}

/**
 * The first bytes of `stream`, at least `length` of them unless it ends sooner, read and put back
 * (`unshift`): whoever reads the stream next gets all of it from its first byte (and its end). A
 * failure of the stream while it is looked at is thrown.
 */
export async function peekStream(
  stream: Readable,
  length: number,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const state = (stream as unknown as { _readableState?: { ended?: boolean } })._readableState;
  const onAbort = (): void => {
    stream.destroy(abortError(signal!));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    while (size < length) {
      if (signal?.aborted) throw abortError(signal);
      if (stream.errored) throw stream.errored;
      const chunk = stream.read() as Uint8Array | string | null;
      if (chunk !== null) {
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        chunks.push(bytes);
        size += bytes.byteLength;
        continue;
      }
      // Ended (its 'end' not yet emitted: the bytes put back are read before it).
      if (state?.ended === true || stream.readableEnded) break;
      if (stream.destroyed) {
        const error = new Error('Premature close') as Error & { code: string };
        error.code = 'ERR_STREAM_PREMATURE_CLOSE';
        throw error;
      }
      await new Promise<void>((resolve) => {
        const done = (): void => {
          stream.off('readable', done);
          stream.off('error', done);
          stream.off('close', done);
          resolve();
        };
        stream.on('readable', done);
        stream.on('error', done);
        stream.on('close', done);
      });
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (!stream.destroyed) {
      for (let index = chunks.length - 1; index >= 0; index--) stream.unshift(chunks[index]);
    }
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
}

export interface CopyLayerRequest {
  /** The layer as the manifest (or `layerInfosForCopy`) describes it. */
  layer: BlobInfo;
  /** The layer's position in the manifest, passed to the destination (`PutBlobOptions.layerIndex`). */
  layerIndex?: number;
  /** The config's DiffIDs in manifest order, passed to the destination (`PutBlobOptions.layerDiffIds`). */
  layerDiffIds?: readonly Digest[];
  /** The compression change wanted; undefined = copy the bytes as they are. */
  plan: LayerCompressionPlan | undefined;
  /** Whether the DiffID must be computed. */
  needDiffId: boolean;
  /**
   * The layer's DiffID as the image config gives it (authenticated through the config's digest). When
   * the layer is written decompressed, the decompressed bytes are verified against it instead of the
   * compressed bytes against the layer digest: every byte written is still verified, and each is
   * hashed once instead of twice. The compressed stream's size is still checked.
   */
  expectedDiffId?: Digest;
  /** Whether the destination may substitute an equivalent blob. */
  canSubstitute: boolean;
  /**
   * The layer's DiffID from the image config, when known: a layer recompressed in another format is
   * verified against it after decompression (the new bytes have no digest to check otherwise).
   */
  uncompressedDigest?: Digest;
  /**
   * The compression the stored layer must have (an explicit `destinationCompression` the destination
   * compresses to): a destination blob in another compression is not reused, the layer is recompressed.
   */
  requiredCompression?: CompressionFormat;
  /**
   * Blobs known (blob-info cache) to hold this layer compressed as the plan wants: tried with
   * `tryReusingBlob` first, so a layer the destination already has in that form is not compressed again.
   */
  substitutes?: Array<{ digest: Digest; compression: CompressionFormat }>;
  /** Media type to announce to `putBlob` for a changed blob. */
  changedMediaType: (compression: DetectedCompression) => string | undefined;
}

/**
 * Copies one layer: `tryReusingBlob` first (unless the DiffID must be computed), else
 * getBlob → verify (digest and size of the source bytes, first) → progress → DiffID → compression change →
 * `putBlob` (which computes the digest of changed bytes). Retried as `context.retry` says.
 */
export async function copyLayer(context: BlobCopyContext, request: CopyLayerRequest): Promise<CopiedLayer> {
  const { layer } = request;
  const position = layerPosition(request);
  const kind = 'layer';
  context.emit({ type: 'blob-start', blob: layer, kind });
  // Schema1 layers have no media type and are gzip.
  const knownCompression = layer.mediaType === undefined ? 'gzip' : layerCompressionOf(layer.mediaType);
  // A layer to write as zstd:chunked is reused only when it is zstd:chunked already.
  const reusable =
    request.requiredCompression === undefined ||
    (knownCompression === request.requiredCompression &&
      (request.plan?.chunked !== true || hasZstdChunkedAnnotations(layer.annotations)));
  const result = await withRetry(async () => {
    if (!request.needDiffId && context.destination.tryReusingBlob) {
      for (const substitute of request.substitutes ?? []) {
        const mediaType = request.changedMediaType(substitute.compression);
        const reused = await context.destination.tryReusingBlob(
          { digest: substitute.digest, size: -1, ...(mediaType !== undefined ? { mediaType } : {}) },
          { isConfig: false, canSubstitute: false, signal: context.signal, ...position },
        );
        if (reused.reused && reused.blob.size >= 0) {
          const info: BlobInfo = { digest: substitute.digest, size: reused.blob.size };
          if (mediaType !== undefined) info.mediaType = mediaType;
          return {
            info,
            compression: substitute.compression,
            changed: true,
            result: 'reused',
          } satisfies CopiedLayer;
        }
      }
    }
    if (!request.needDiffId && reusable && context.destination.tryReusingBlob) {
      const reused = await context.destination.tryReusingBlob(layer, {
        isConfig: false,
        canSubstitute: request.canSubstitute,
        signal: context.signal,
        ...position,
      });
      if (reused.reused) {
        const changed = reused.blob.digest !== layer.digest;
        const info: BlobInfo = { ...layer, digest: reused.blob.digest, size: reused.blob.size };
        let compression: CopiedLayer['compression'] = 'unknown';
        if (changed) {
          // A substitute (e.g. another compression of the same layer): its media type tells its compression.
          info.mediaType = reused.blob.mediaType ?? layer.mediaType;
          if (reused.blob.mediaType !== undefined) compression = layerCompressionOf(reused.blob.mediaType);
          delete info.urls;
        }
        return { info, compression, changed, result: 'reused' } satisfies CopiedLayer;
      }
    }
    return await streamLayer(context, request);
  }, context.retry);
  context.emit({
    type: 'blob-done',
    blob: layer,
    kind,
    result: result.result,
    bytes: result.result === 'copied' ? result.info.size : 0,
  });
  return result;
}

/** The layer's `layerIndex` / `layerDiffIds` options for the destination, when the request has them. */
function layerPosition(request: CopyLayerRequest): { layerIndex?: number; layerDiffIds?: readonly Digest[] } {
  if (request.layerIndex === undefined) return {};
  return {
    layerIndex: request.layerIndex,
    ...(request.layerDiffIds !== undefined ? { layerDiffIds: request.layerDiffIds } : {}),
  };
}

async function streamLayer(context: BlobCopyContext, request: CopyLayerRequest): Promise<CopiedLayer> {
  const { layer } = request;
  if (context.tuneAllocatorForLargeBlobs && layer.size >= allocatorTuningMinimumBlobBytes)
    tuneAllocatorForLargeBlobs();
  const { stream, size: streamSize } = await context.source.getBlob(layer, { signal: context.signal });
  const expectedSize = layer.size >= 0 ? layer.size : streamSize;
  let verificationFailure: unknown;
  const guarded = (stage: Stage): Stage =>
    async function* (source) {
      try {
        yield* stage(source);
      } catch (error) {
        verificationFailure = error;
        throw error;
      }
    };
  // With the config's DiffID, a layer to decompress is verified after decompression (once changed, by
  // its DiffID; unchanged, i.e. stored uncompressed, by its digest): its source bytes are only counted.
  const verifyAfterDecompression =
    request.plan?.desired === 'decompress' &&
    request.expectedDiffId !== undefined &&
    digestAlgorithm(layer.digest) === 'sha256';
  let outputCompression: DetectedCompression = 'none';
  // A recompressed layer's decompressed bytes are verified against the config's DiffID: every byte
  // written is made from verified bytes, so its compressed source bytes need not be hashed as well.
  let recompressionVerified = false;
  const sourceBlob: BlobInfo = { ...layer, size: expectedSize };
  const sourceOptions: SourceStageOptions = {
    expectedDigest: verifyAfterDecompression ? undefined : layer.digest,
    expectedSize,
    description: `blob ${layer.digest}`,
    // Without a plan the bytes are copied as they are: their compression is only looked at.
    ...(request.plan
      ? {}
      : {
          onPrefix: (prefix: Uint8Array) => {
            outputCompression = detectCompression(prefix);
          },
        }),
    onFailure: (error) => {
      verificationFailure = error;
    },
    digestWaived: () => recompressionVerified,
  };
  const stages: Stage[] = [sourceStage(context, sourceBlob, 'layer', sourceOptions)];
  let diffId: Digest | undefined;
  // A layer written decompressed has the digest of what is written as its DiffID, and the destination
  // computes that digest: no decompression and hashing on the side. (Uncompressed source bytes have
  // their verified sha256 layer digest as DiffID.)
  const diffIdFromOutput =
    request.needDiffId &&
    request.plan?.desired === 'decompress' &&
    !request.plan.keep?.length &&
    digestAlgorithm(layer.digest) === 'sha256';
  if (request.needDiffId && !diffIdFromOutput) {
    stages.push(
      diffIdStage(
        (value) => {
          diffId = value;
        },
        // Uncompressed source bytes are verified against the layer digest: that digest is the DiffID.
        digestAlgorithm(layer.digest) === 'sha256' ? layer.digest : undefined,
      ),
    );
  }
  let changed = false;
  let chunkedAnnotations: Record<string, string> | undefined;
  const compressionSlot: CompressionSlotHolder = {};
  if (request.plan) {
    stages.push(
      compressionStage(
        request.plan,
        (output, isChanged, verifiedByDiffId) => {
          outputCompression = output;
          changed = isChanged;
          recompressionVerified = verifiedByDiffId === true;
        },
        `blob ${layer.digest}`,
        context.signal,
        request.uncompressedDigest,
        hasZstdChunkedAnnotations(layer.annotations),
        (annotations) => {
          chunkedAnnotations = annotations;
        },
        compressionSlot,
        // No DiffID stage reads the source's chunks on the side.
        !(request.needDiffId && !diffIdFromOutput),
        // The source check hashes them (else it only counts them: see `verifyAfterDecompression`).
        sourceOptions.expectedDigest !== undefined,
      ),
    );
  }
  if (verifyAfterDecompression) {
    stages.push(
      guarded(async function* verifyOutput(source) {
        // The compression stage decides on the first chunk: pulling it tells what the output must match.
        const started = await startIteration(source);
        // Decompressed output comes in fresh buffers: its DiffID is hashed on the thread pool.
        yield* (
          changed
            ? offThreadVerifyingStage({
                expectedDigest: request.expectedDiffId!,
                description: `layer ${layer.digest}: its uncompressed contents (DiffID in the image config)`,
                // A decompressor's output views lent for reuse are not written into again before hashed.
                hold: { start: holdLentView, end: unholdLentView },
              })
            : verifyingStage({
                expectedDigest: layer.digest,
                expectedSize,
                description: `blob ${layer.digest}`,
              })
        )(started);
      }),
    );
  }
  let stored: BlobInfo | undefined;
  try {
    // A plan that turns out to keep the layer's compression leaves the bytes as they are: decided on
    // the first bytes (put back), such a layer is copied like one without a plan, not through stages.
    let copiedAsItIs = stages.length === 1;
    if (request.plan !== undefined && stages.length === 2 && !verifyAfterDecompression) {
      let prefix: Uint8Array;
      try {
        prefix = await peekStream(stream, sniffLength, context.signal);
      } catch (error) {
        stream.destroy();
        throw error;
      }
      const compression = detectCompression(prefix);
      if (keepsLayerCompression(request.plan, compression, hasZstdChunkedAnnotations(layer.annotations))) {
        copiedAsItIs = true;
        outputCompression = compression;
      }
    }
    if (copiedAsItIs) {
      // The bytes are copied as they come: checked on their way to the destination, without stages.
      stored = await putCheckedBlob(
        context,
        stream,
        new SourceCheck(context, sourceBlob, 'layer', sourceOptions),
        { digest: layer.digest, size: expectedSize, mediaType: layer.mediaType },
        layerPosition(request),
      );
    } else
      await pipeline(
        stream,
        ...(stages as [Stage]),
        async (source: AsyncIterable<Uint8Array>) => {
          // Pulling the first chunk makes the compression stage decide what is written before putBlob is called.
          const started = await startIteration(source);
          const readable = Readable.from(started, { objectMode: false });
          stored = await context.destination.putBlob(
            readable,
            changed
              ? {
                  // Verified on the way in: the destination need not hash the bytes.
                  digest: verifyAfterDecompression ? request.expectedDiffId : undefined,
                  size: -1,
                  mediaType: request.changedMediaType(outputCompression),
                }
              : { digest: layer.digest, size: expectedSize, mediaType: layer.mediaType },
            {
              isConfig: false,
              signal: context.signal,
              ...layerPosition(request),
              // The destination is the last reader of the compressed blocks: the output buffers lent
              // with them are compressed into again once it wrote them (no other chunk is taken back).
              ...(changed ? { chunkWritten: releaseCompressedChunk } : {}),
            },
          );
        },
        context.signal ? { signal: context.signal } : {},
      );
  } catch (error) {
    throw normaliseAbort(verificationFailure ?? error, context.signal);
  } finally {
    compressionSlot.ended = true;
    compressionSlot.release?.();
  }
  if (verificationFailure) throw verificationFailure;
  if (!stored) throw new GantryError(ErrorCodes.Internal, `blob ${layer.digest}: destination stored nothing`);
  if (changed) {
    // The destination computed the digest of the new bytes (the contract's duty when `digest` is
    // undefined), as containers/image trusts its destinations: hashing them here too would only
    // cost another pass over every byte.
    if (!/^sha256:[0-9a-f]{64}$/.test(stored.digest) || stored.size < 0) {
      throw new GantryError(
        ErrorCodes.Internal,
        `blob ${layer.digest}: the destination reported no valid digest and size for the bytes it stored`,
      );
    }
    if (verifyAfterDecompression && stored.digest !== request.expectedDiffId) {
      throw new GantryError(
        ErrorCodes.Internal,
        `blob ${layer.digest}: destination stored it under another digest, ${stored.digest}`,
      );
    }
    if (diffIdFromOutput) {
      if (outputCompression !== 'none') {
        throw new GantryError(
          ErrorCodes.Internal,
          `blob ${layer.digest}: a layer to decompress was written compressed`,
        );
      }
      diffId = stored.digest;
    }
    const info: BlobInfo = {
      digest: stored.digest,
      size: stored.size,
      mediaType: request.changedMediaType(outputCompression) ?? layer.mediaType,
    };
    // Annotations describing the source's zstd:chunked bytes do not describe these.
    const kept = Object.entries(layer.annotations ?? {}).filter(([key]) => !isZstdChunkedAnnotation(key));
    if (kept.length > 0 || chunkedAnnotations !== undefined) {
      info.annotations = { ...Object.fromEntries(kept), ...chunkedAnnotations };
    }
    return {
      info,
      compression: outputCompression,
      changed: true,
      diffId,
      ...(chunkedAnnotations !== undefined ? { annotations: chunkedAnnotations } : {}),
      result: 'copied',
    };
  }
  if (stored.digest !== layer.digest) {
    throw new GantryError(
      ErrorCodes.Internal,
      `blob ${layer.digest}: destination stored it under another digest, ${stored.digest}`,
    );
  }
  // Not changed while decompressing: the source bytes were uncompressed, their verified digest is the DiffID.
  if (diffIdFromOutput) diffId = layer.digest;
  return {
    info: { ...layer, size: expectedSize >= 0 ? expectedSize : stored.size },
    compression: outputCompression,
    changed: false,
    diffId,
    result: 'copied',
  };
}

/**
 * The checked streams in flight for one copy context, all destroyed when its signal aborts: one abort
 * listener per context, not one per blob (many blobs in flight would each hold one on the same signal).
 */
const checkedStreamsInFlight = new WeakMap<BlobCopyContext, Set<Readable>>();

function checkedStreamsOf(context: BlobCopyContext, signal: AbortSignal): Set<Readable> {
  let streams = checkedStreamsInFlight.get(context);
  if (streams === undefined) {
    const created = new Set<Readable>();
    streams = created;
    checkedStreamsInFlight.set(context, created);
    signal.addEventListener(
      'abort',
      () => {
        for (const stream of created) stream.destroy(abortError(signal));
      },
      { once: true },
    );
  }
  return streams;
}

/** Resolves once a destroyed `stream` emitted 'close' (at once when it has or never will). */
function closeOf(stream: Readable): Promise<void> {
  const state = (stream as unknown as { _readableState?: { emitClose?: boolean } })._readableState;
  if (stream.closed || state?.emitClose === false) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once('close', () => resolve());
  });
}

/** `PutBlobOptions.chunkWritten` of the plain copy path: the chunk's read buffer may be read into again. */
function releaseChunk(chunk: Uint8Array): void {
  releaseReadChunk(chunk);
}

/**
 * `putBlob` of `stream` as it is, each chunk seen by `check` on its way (`checkedStream`): the destination
 * sees the end of the bytes only once they are verified. When the destination returns or fails without
 * reading everything, the source is destroyed. An abort of the context's signal destroys the stream.
 */
async function putCheckedBlob(
  context: BlobCopyContext,
  stream: Readable,
  check: SourceCheck,
  info: { digest: Digest; size: number; mediaType?: string },
  position: { layerIndex?: number; layerDiffIds?: readonly Digest[] },
): Promise<BlobInfo> {
  const checked = checkedStream(stream, check);
  // A destination may not have started reading (a layer waiting for the one before it) when a failure
  // or an abort destroys the stream: its 'error' then has no listener of the destination's. The error is
  // not lost: the copy takes it from `checked.errored` below and from the check's `onFailure`.
  checked.on('error', () => {});
  const signal = context.signal;
  const inFlight = signal === undefined ? undefined : checkedStreamsOf(context, signal);
  inFlight?.add(checked);
  try {
    if (signal?.aborted) throw abortError(signal);
    return await context.destination.putBlob(
      checked,
      info.mediaType === undefined ? { digest: info.digest, size: info.size } : info,
      // The destination is the chunks' last reader (the checks look at each before passing it on): the
      // buffers a source read them into may be read into again once it wrote them.
      { isConfig: false, signal, ...position, chunkWritten: releaseChunk },
    );
  } catch (error) {
    // The checks' and the source's failures name the problem better than the destination's report of them.
    throw (checked.errored as Error | null) ?? error;
  } finally {
    inFlight?.delete(checked);
    if (!checked.readableEnded) checked.destroy();
    // Like a pipeline's end: the source is done with and closed (its resources released) before the
    // next blob starts, whether or not it closed itself.
    if (!stream.destroyed) stream.destroy();
    await closeOf(stream);
  }
}

/**
 * Copies a small blob held in memory (an image config): `tryReusingBlob`, else `putBlob`. The bytes
 * were verified when read.
 */
export async function copyConfigBlob(
  context: BlobCopyContext,
  info: BlobInfo,
  bytes: Uint8Array,
): Promise<BlobInfo> {
  const kind = 'config';
  context.emit({ type: 'blob-start', blob: info, kind });
  const outcome = await withRetry(async () => {
    if (context.destination.tryReusingBlob) {
      const reused = await context.destination.tryReusingBlob(info, {
        isConfig: true,
        canSubstitute: false,
        signal: context.signal,
      });
      if (reused.reused) return { result: 'reused' as const, blob: reused.blob };
    }
    const stored = await context.destination.putBlob(
      Readable.from([bytes], { objectMode: false }),
      { digest: info.digest, size: bytes.byteLength, mediaType: info.mediaType },
      { isConfig: true, signal: context.signal },
    );
    return { result: 'copied' as const, blob: stored };
  }, context.retry);
  if (outcome.blob.digest !== info.digest) {
    throw new GantryError(
      ErrorCodes.Internal,
      `config ${info.digest}: destination stored it under another digest, ${outcome.blob.digest}`,
    );
  }
  if (outcome.result === 'copied') {
    context.emit({
      type: 'blob-progress',
      blob: info,
      kind,
      bytes: bytes.byteLength,
      total: bytes.byteLength,
    });
  }
  context.emit({
    type: 'blob-done',
    blob: info,
    kind,
    result: outcome.result,
    bytes: outcome.result === 'copied' ? bytes.byteLength : 0,
  });
  return { ...info, size: bytes.byteLength };
}

/**
 * Reads a small blob (an image config) into memory, refusing more than `limit` bytes, and checks its
 * size and digest. Not retried here: callers wrap it in their retry policy.
 */
export async function readSmallBlob(
  source: ImageSource,
  info: BlobInfo,
  limit: number,
  signal: AbortSignal | undefined,
): Promise<Uint8Array> {
  const { stream } = await source.getBlob(info, { signal });
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Uint8Array>) {
      size += chunk.byteLength;
      if (size > limit) {
        throw new GantryError(
          ErrorCodes.InvalidManifest,
          `config ${info.digest} is larger than ${limit} bytes`,
        );
      }
      chunks.push(chunk);
    }
  } finally {
    stream.destroy();
  }
  const bytes = Buffer.concat(chunks);
  if (info.size >= 0 && bytes.byteLength !== info.size) {
    throw new GantryError(
      ErrorCodes.SizeMismatch,
      `config ${info.digest}: size mismatch: expected ${info.size} bytes, got ${bytes.byteLength}`,
    );
  }
  const actual = digestOf(bytes, digestAlgorithm(info.digest));
  if (actual !== info.digest) {
    throw new GantryError(
      ErrorCodes.DigestMismatch,
      `config ${info.digest}: digest mismatch: expected ${info.digest}, got ${actual}`,
    );
  }
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
