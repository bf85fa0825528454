import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  abortError,
  type BlobInfo,
  type BlobInfoCache,
  type BlobToWrite,
  type Digest,
  Digester,
  digestingStage,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageDestinationProperties,
  isGantryError,
  MediaTypes,
  manifestDigest,
  manifestMatchesDigest,
  type OperationOptions,
  type PutBlobOptions,
  type PutManifestOptions,
  type ReferrerDescriptor,
  type ReusedBlob,
  readableChunks,
  type TransportContext,
  type TryReusingBlobOptions,
  throwIfAborted,
} from '@gantry/core/transport';
import {
  ChunkReader,
  defaultUploadChunkBytes,
  isStreamedUploadRefusal,
  parseChunkMinLength,
  UploadedPieces,
  uploadChunkSize,
  uploadedBytesFromRange,
  writeConfirmingBytes,
} from './blob-upload.js';
import { combineSignals } from './image-source.js';
import { headerValue, referencedBlobDigests } from './manifests.js';
import type { DockerImageReference } from './reference.js';
import { ReferrersWriter } from './referrers.js';
import { registryAccessFor } from './registries.js';
import {
  maxTooManyRequestsRetries,
  RegistryClient,
  tooManyRequestsDelay,
  tooManyRequestsInitialDelayMs,
} from './registry-client.js';
import { responseError } from './registry-errors.js';
import { type ResumeWindow, sharedUploadResumeBudget, type UploadResumeBudget } from './resume-budget.js';
import {
  type SignatureStorageOptions,
  signatureStorageOptionsFrom,
  writeDockerSignatures,
} from './signatures.js';
import type { DockerTransportState } from './transport-state.js';

/**
 * The smallest piece written to the connection at once while streaming a blob: smaller chunks are
 * gathered up to it. Chunks at least this large (socket reads of a registry source, up to 64 KiB; file
 * reads and compressed blocks, 1 MiB) are written as they come. Gathering a registry source's chunks
 * into 1 MiB pieces would copy every byte into fresh buffers, which the garbage collector frees only
 * after tens of MiB: measured on a 16 × 16 MiB registry → registry copy (14 alternating runs each),
 * writing the chunks as they come uses the same CPU (a socket write per chunk, as skopeo's 32 KiB
 * writes, costs what that copy does) with ~4,000 fewer page faults and a peak of 131 MiB instead of 146.
 */
const streamPieceBytes = 16 * 1024;

/** How many times a streamed upload whose connection dropped is resumed before the upload fails. */
const maxUploadResumes = 3;

/**
 * The bytes of blobs read whole for a one-request upload (`wholeUploadMaxBytes`) that this process
 * holds at once; a blob that does not fit beside the others is streamed instead.
 */
export const wholeUploadBudgetBytes = 16 * 1024 * 1024;
let wholeUploadBytesHeld = 0;

/**
 * The most upload sessions a destination opens ahead (`tryReusingBlob` found no blob) that no upload
 * has taken yet; past it, no more are opened ahead.
 */
const maxSessionsOpenedAhead = 8;

/** How many times one chunk is resent after a 416 answer before the upload fails. */
const maxRangeRecoveries = 3;

/** Registries (per transport instance) seen refusing a streamed upload: later uploads use chunks. */
const registriesRefusingStreamedUploads = new WeakMap<DockerTransportState, Set<string>>();

/** An upload session opened by POST. */
interface UploadSession {
  location: URL;
  /** `OCI-Chunk-Min-Length` of the POST answer. */
  minimumChunkLength: number | undefined;
}

/** The `Location` of an upload answer, resolved against the request's URL; `current` without one. */
function nextLocation(response: Awaited<ReturnType<RegistryClient['request']>>, current: URL): URL {
  const location = headerValue(response.headers, 'location');
  return location === undefined ? current : new URL(location, current);
}

/**
 * The pieces a streamed upload sends, taken from the blob's chunks (`source`): a chunk of at least
 * `pieceBytes` bytes arriving with nothing gathered passes as it is (not copied); smaller ones are joined
 * into pieces of at least `pieceBytes` (the last may be smaller), so that a stream of small reads makes
 * fewer socket writes. On the way the bytes are counted and, when `expectedDigest` is undefined, hashed
 * (`blobWriteStage`'s rule: a named digest is the caller's to verify); `written` holds the digest and
 * size once the source ended cleanly, `failure` the source's error. `joined`, when given, learns each
 * piece made by joining chunks, with the chunks it copied (read by nobody after that), before the piece
 * is returned.
 *
 * One plain iterator, where a chain of async generators (failure capture, counting, gathering) cost a
 * promise and a generator resumption each per chunk, and each its own optimized code in a short-lived
 * process: registry → registry, 16 × 16 MiB, 12 alternating runs each, Gantry CPU 1.48 → 1.44 s (mean).
 */
export class UploadPieceSource implements AsyncIterableIterator<Uint8Array> {
  /** The digest and size of the whole blob, once the source ended cleanly. */
  written: { digest: Digest; size: number } | undefined;
  /** The source's error (`error`), once it failed. */
  readonly failure: { error?: unknown } = {};
  readonly #source: AsyncIterator<Uint8Array>;
  readonly #pieceBytes: number;
  readonly #expectedDigest: Digest | undefined;
  readonly #digester: Digester | undefined;
  readonly #joined: ((piece: Uint8Array, chunks: readonly Uint8Array[]) => void) | undefined;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #size = 0;
  #ended = false;

  constructor(
    source: AsyncIterator<Uint8Array>,
    pieceBytes: number,
    expectedDigest: Digest | undefined,
    joined?: (piece: Uint8Array, chunks: readonly Uint8Array[]) => void,
  ) {
    this.#source = source;
    this.#pieceBytes = pieceBytes;
    this.#expectedDigest = expectedDigest;
    this.#digester = expectedDigest === undefined ? new Digester() : undefined;
    this.#joined = joined;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<Uint8Array, undefined>> {
    for (;;) {
      if (this.#ended) return { done: true, value: undefined };
      let result: IteratorResult<Uint8Array>;
      try {
        result = await this.#source.next();
      } catch (error) {
        this.#ended = true;
        this.failure.error = error;
        throw error;
      }
      if (result.done) {
        this.#ended = true;
        this.written = {
          digest: this.#expectedDigest ?? this.#digester!.digest(),
          size: this.#size,
        };
        if (this.#pendingBytes > 0) return { done: false, value: this.#take() };
        return { done: true, value: undefined };
      }
      const chunk = result.value;
      this.#digester?.update(chunk);
      this.#size += chunk.byteLength;
      if (this.#pendingBytes === 0 && chunk.byteLength >= this.#pieceBytes)
        return { done: false, value: chunk };
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.byteLength;
      if (this.#pendingBytes >= this.#pieceBytes) return { done: false, value: this.#take() };
    }
  }

  /** The chunks gathered, as one piece (joined when there are several). */
  #take(): Uint8Array {
    const pending = this.#pending;
    this.#pending = [];
    const bytes = this.#pendingBytes;
    this.#pendingBytes = 0;
    if (pending.length === 1) return pending[0]!;
    const piece = Buffer.concat(pending, bytes);
    this.#joined?.(piece, pending);
    return piece;
  }
}

/** Manifest types a registry destination accepts, most preferred first (containers/image's list). */
export const dockerDestinationManifestMediaTypes: readonly string[] = [
  MediaTypes.OciManifest,
  MediaTypes.DockerManifest,
  MediaTypes.OciIndex,
  MediaTypes.DockerManifestList,
  MediaTypes.DockerSchema1Signed,
  MediaTypes.DockerSchema1,
];

/**
 * Writes an image to a registry repository.
 *
 * A registry has no transaction; this destination gets as close as the API allows:
 * - blobs are uploaded as they come (the pipeline uploads them all before any manifest, so no
 *   manifest ever names a missing blob);
 * - every manifest is PUT by digest in `putManifest` — the registry validates it there, so a refused
 *   manifest type fails `putManifest` and the pipeline can try another format — and is invisible to
 *   readers of the tag;
 * - the tag is set by `commit` (a second PUT of the same top-level manifest, by tag). A copy that
 *   fails or is closed without `commit` therefore never moves the tag; it leaves only untagged
 *   manifests and blobs, which the registry's garbage collection removes (`close` deletes nothing:
 *   the blobs may be shared with other images). When the pipeline says nothing but `commit` follows
 *   the top-level manifest (`lastBeforeCommit`: no signatures, no referrers), it is PUT once, by tag.
 *   (skopeo always PUTs by tag at once.)
 * - References by digest and `@@unknown-digest@@` references have no tag: `commit` has nothing to do.
 *
 * Blobs: `tryReusingBlob` tries a cross-repository mount from each repository of the same registry
 * where this process has seen the blob (a source's manifest or an earlier upload), then HEADs the blob
 * in the repository. A mount answered 201 means the blob is in the repository, mounted or already
 * there, so a registry → registry copy asks once per blob (skopeo HEADs the destination and the
 * source repository before each mount). When it finds no blob of known size, it POSTs the upload
 * session at once, for the upload that follows (`openSessionAhead`). `putBlob` streams: take that
 * session (or POST one), PATCH the bytes as they come (the digest is computed on the way unless
 * `info.digest` names it: the pipeline verifies those bytes, and the registry checks the digest at the
 * final PUT), PUT `?digest=` once the stream ended cleanly — so
 * a blob whose stream errors (e.g. the pipeline's digest verification) is never committed.
 *
 * Chunked uploads (OCI distribution spec, "Pushing a blob in chunks"): instead of one streamed PATCH,
 * PATCHes of a fixed size with `Content-Range` and `Content-Length`, each sent to the `Location` of
 * the previous answer, then the closing PUT `?digest=`; a 416 answer is resolved by reading the
 * session's `Range` and resending from there. One chunk at most is held in memory. Chunks are used
 * - always, with the context's `uploadChunkSize` (raised to the registry's minimum);
 * - when the POST answer carries `OCI-Chunk-Min-Length`: chunks of max(that, 8 MiB);
 * - when the registry refused a streamed PATCH (`isStreamedUploadRefusal`: 400, 411, 413, 415, 416,
 *   501). The first bytes of a streamed blob are kept while they fit in its share of the resume
 *   budget (8 MiB for an upload alone, less while several stream at once); when it refuses before more
 *   was read, the upload starts over in a new session, in chunks, losing nothing. When it
 *   refuses later, the blob fails with a retryable `ERR_GANTRY_TRANSIENT`. Either way every later
 *   upload to that registry (same transport instance) uses chunks of 8 MiB.
 *
 * A streamed upload hands each chunk of the blob stream back (`PutBlobOptions.chunkWritten`) once its
 * bytes left for the registry and the resume window no longer keeps it (`writeConfirmingBytes` says how
 * that is known), and the chunks a piece was joined from as soon as they are copied; a small blob sent
 * whole hands its chunks back once the registry answered. Chunked uploads hand nothing back.
 *
 * `--dest-precompute-digests` (the context's `precomputeDigests`): a blob whose digest the pipeline
 * does not know (it is compressing) is written to a file in the context's temporary directory while
 * hashed, then uploaded only when `tryReusingBlob` does not find it (containers/image's
 * DockerRegistryPushPrecomputeDigests); the file is removed in every case.
 */
export class DockerImageDestination implements ImageDestination {
  readonly reference: DockerImageReference;
  readonly properties: ImageDestinationProperties = {
    supportedManifestMimeTypes: dockerDestinationManifestMediaTypes,
    desiredLayerCompression: 'compress',
    acceptsForeignLayerURLs: true,
    mustMatchRuntimeOS: false,
    supportsSignatures: true,
    hasThreadSafePutBlob: true,
    ignoresEmbeddedDockerReference: false,
  };
  private readonly client: RegistryClient;
  private readonly contextSignal: AbortSignal | undefined;
  /** Where `--dest-precompute-digests` writes blobs (the context's; default the OS's). */
  private readonly temporaryDirectory: string | undefined;
  private closed = false;
  /** The top-level manifest to tag at `commit`, when the reference has a tag. */
  private pendingTag: { tag: string; manifest: Uint8Array; mediaType: string } | undefined;
  /** The digest of the top-level manifest written by `putManifest` (its signatures' subject). */
  private topLevelDigest: Digest | undefined;
  /** @internal Where signatures are stored (`openDockerImageDestination` sets it from the context). */
  signatureOptions: SignatureStorageOptions = {};
  /** Referrers written by `putReferrer`, whose tag indexes `commit` updates (see referrers.ts). */
  private referrers: ReferrersWriter | undefined;
  /**
   * Upload sessions opened ahead (see `openSessionAhead`), oldest first; undefined for a POST that
   * failed. The next upload takes the oldest; `close` cancels those left.
   */
  private readonly sessionsAhead: Promise<UploadSession | undefined>[] = [];

  /** @internal Use `reference.newImageDestination`. */
  constructor(
    reference: DockerImageReference,
    client: RegistryClient,
    contextSignal: AbortSignal | undefined,
    temporaryDirectory?: string,
  ) {
    this.reference = reference;
    this.client = client;
    this.contextSignal = contextSignal;
    this.temporaryDirectory = temporaryDirectory;
  }

  private get repository(): string {
    return this.reference.repository;
  }

  private get displayName(): string {
    return `${this.reference.registry}/${this.repository}`;
  }

  private assertOpen(): void {
    if (this.closed)
      throw new GantryError(ErrorCodes.Internal, `${this.reference}: image destination used after close`);
  }

  /** @internal The context's blob-info cache (`openDockerImageDestination` sets it): locations kept between runs. */
  blobInfoCache: BlobInfoCache | undefined;

  /** @internal What streamed uploads may keep for resuming, shared with the other uploads in flight. */
  resumeBudget: UploadResumeBudget = sharedUploadResumeBudget;

  private recordLocation(digest: string): void {
    this.reference.state.blobLocations.record(this.reference.registry, this.repository, digest);
    this.blobInfoCache?.recordKnownLocation(
      'docker',
      this.reference.registry,
      digest as Digest,
      this.repository,
    );
  }

  /** Repositories of this registry known (this process, or the blob-info cache) to hold `digest`. */
  private mountCandidates(digest: Digest): string[] {
    const known = this.reference.state.blobLocations.candidates(
      this.reference.registry,
      digest,
      this.repository,
    );
    const cached = (
      this.blobInfoCache?.candidateLocations('docker', this.reference.registry, digest) ?? []
    ).filter((repository) => repository !== this.repository);
    return [...new Set([...known, ...cached])];
  }

  /** HEADs a blob in this repository: its size when present, undefined when absent. */
  private async blobSize(digest: Digest, signal: AbortSignal | undefined): Promise<number | undefined> {
    const what = `checking whether blob ${digest} exists in ${this.displayName}`;
    const response = await this.client.request({
      method: 'HEAD',
      target: `/v2/${this.repository}/blobs/${digest}`,
      signal,
      what,
    });
    await response.body.dump();
    if (response.statusCode === 200) {
      const length = headerValue(response.headers, 'content-length');
      return length !== undefined && /^\d+$/.test(length) ? Number(length) : -1;
    }
    if (response.statusCode === 404) return undefined;
    throw await responseError(response, { what, credentialsSent: this.client.sentCredentials });
  }

  /** Cancels an upload session; failures are ignored (the registry purges stale uploads). */
  private async cancelUpload(location: URL): Promise<void> {
    try {
      const response = await this.client.request({
        method: 'DELETE',
        target: location,
        what: 'cancelling an upload',
      });
      await response.body.dump();
    } catch {
      // Best effort.
    }
  }

  /** Asks the registry to mount `digest` from `from`; true when it did (201). */
  private async tryMount(digest: Digest, from: string, signal: AbortSignal | undefined): Promise<boolean> {
    const what = `mounting blob ${digest} from ${from} into ${this.displayName}`;
    const query = new URLSearchParams({ mount: digest, from });
    let response: Awaited<ReturnType<RegistryClient['request']>>;
    try {
      response = await this.client.request({
        method: 'POST',
        target: `/v2/${this.repository}/blobs/uploads/?${query}`,
        extraScopes: [`repository:${from}:pull`],
        signal,
        what,
      });
    } catch (error) {
      if (signal?.aborted || (isGantryError(error) && error.code === ErrorCodes.Aborted)) throw error;
      return false;
    }
    await response.body.dump();
    if (response.statusCode === 201) return true;
    const location = headerValue(response.headers, 'location');
    // 202: the registry started a normal upload instead; it is not needed.
    if (response.statusCode === 202 && location !== undefined) {
      await this.cancelUpload(new URL(location, `${this.client.origin}/`));
    }
    return false;
  }

  async tryReusingBlob(info: BlobInfo, options: TryReusingBlobOptions): Promise<ReusedBlob> {
    this.assertOpen();
    const signal = combineSignals(this.contextSignal, options.signal);
    throwIfAborted(signal);
    const locations = this.reference.state.blobLocations;
    // This repository is known to hold the blob already (an earlier image of this process wrote or
    // mounted it here, as a sync does for a shared base layer): one HEAD confirms it, no mount.
    if (locations.holds(this.reference.registry, this.repository, info.digest)) {
      const size = await this.blobSize(info.digest, signal);
      if (size !== undefined) return { reused: true, blob: { ...info, size: size >= 0 ? size : info.size } };
    }
    for (const from of this.mountCandidates(info.digest)) {
      if (await this.tryMount(info.digest, from, signal)) {
        this.recordLocation(info.digest);
        const mountedSize = info.size >= 0 ? info.size : ((await this.blobSize(info.digest, signal)) ?? -1);
        return { reused: true, blob: { ...info, size: mountedSize } };
      }
      locations.forget(this.reference.registry, from, info.digest);
      this.blobInfoCache?.forgetLocation('docker', this.reference.registry, info.digest, from);
    }
    // A repository that had no tagged image when the caller started (a sync's destination tag list
    // said so) holds a small blob only if this process put it there, which `holds` above knew: its
    // upload is cheaper than a HEAD that answers 404. Larger blobs are still asked for, so those of an
    // interrupted earlier run are found.
    const { untaggedRepositories, wholeUploadMaxBytes } = this.client.options;
    if (
      info.size >= 0 &&
      info.size <= wholeUploadMaxBytes &&
      untaggedRepositories.has(this.reference.reference.name)
    ) {
      this.openSessionAhead(info);
      return { reused: false };
    }
    const size = await this.blobSize(info.digest, signal);
    if (size !== undefined) {
      this.recordLocation(info.digest);
      return { reused: true, blob: { ...info, size: size >= 0 ? size : info.size } };
    }
    this.openSessionAhead(info);
    return { reused: false };
  }

  /**
   * After `tryReusingBlob` found no blob of known size, its upload follows: the upload session is
   * POSTed now, while the pipeline opens the source, instead of after it (one round trip less before
   * the first byte is sent). Sessions are interchangeable until their closing PUT names a digest, so
   * the next upload of this destination takes the oldest (`takeSession`). A POST that fails is
   * forgotten: the upload POSTs again and reports that failure. A blob of unknown size (the
   * pipeline's other compressions of a layer, asked for one after another before one upload) opens
   * none; at most `maxSessionsOpenedAhead` wait untaken, and `close` cancels those left.
   */
  private openSessionAhead(info: BlobInfo): void {
    if (info.size < 0 || this.closed || this.sessionsAhead.length >= maxSessionsOpenedAhead) return;
    const what = `uploading blob ${info.digest} to ${this.displayName}`;
    this.sessionsAhead.push(this.startUpload(this.contextSignal, what).catch(() => undefined));
  }

  /**
   * An upload session: the oldest opened ahead whose POST succeeded, else a new one. Once taken, the
   * caller cancels it unless it commits it.
   */
  private async takeSession(signal: AbortSignal | undefined, what: string): Promise<UploadSession> {
    for (let ahead = this.sessionsAhead.shift(); ahead !== undefined; ahead = this.sessionsAhead.shift()) {
      const session = await ahead;
      if (session !== undefined) return session;
    }
    return await this.startUpload(signal, what);
  }

  async putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo> {
    this.assertOpen();
    const signal = combineSignals(this.contextSignal, options.signal);
    try {
      throwIfAborted(signal);
      if (info.digest === undefined && this.client.options.precomputeDigests) {
        return await this.putBlobPrecomputed(stream, info, options.isConfig, signal);
      }
      return await this.uploadBlob(stream, info, signal, options.chunkWritten);
    } catch (error) {
      stream.destroy();
      throw error;
    }
  }

  /**
   * `--dest-precompute-digests` for a blob of unknown digest: writes it to a temporary file while
   * hashing it, asks the registry for it (`tryReusingBlob`: HEAD, then mounts), and uploads the file
   * only when the registry lacks it. The file is removed in every case.
   */
  private async putBlobPrecomputed(
    stream: Readable,
    info: BlobToWrite,
    isConfig: boolean,
    signal: AbortSignal | undefined,
  ): Promise<BlobInfo> {
    const file = path.join(this.temporaryDirectory ?? os.tmpdir(), `gantry-blob-${randomUUID()}`);
    try {
      let spooled: { digest: Digest; size: number } | undefined;
      const output = createWriteStream(file, { flags: 'wx', mode: 0o600 });
      let writeError: unknown;
      output.on('error', (error) => {
        writeError = error;
      });
      try {
        await pipeline(
          stream,
          digestingStage((result) => {
            spooled = result;
          }),
          output,
          signal ? { signal } : {},
        );
      } catch (error) {
        if (writeError === undefined || error !== writeError || signal?.aborted) throw error;
        throw new GantryError(
          ErrorCodes.Internal,
          `precomputing the digest of a blob for ${this.displayName}: writing the temporary file ${file}: ${(error as Error).message}`,
          { cause: error },
        );
      }
      if (spooled === undefined) {
        throw new GantryError(ErrorCodes.Internal, `writing a blob to ${file}: the blob did not end`);
      }
      const blob: BlobInfo = { digest: spooled.digest, size: spooled.size };
      if (info.mediaType !== undefined) blob.mediaType = info.mediaType;
      if (info.size >= 0 && spooled.size !== info.size) {
        throw new GantryError(
          ErrorCodes.SizeMismatch,
          `uploading blob ${spooled.digest} to ${this.displayName}: size mismatch: expected ${info.size} bytes, got ${spooled.size}`,
        );
      }
      const reused = await this.tryReusingBlob(blob, {
        isConfig,
        canSubstitute: false,
        ...(signal ? { signal } : {}),
      });
      if (reused.reused) return blob;
      const spooledStream = createReadStream(file);
      try {
        return await this.uploadBlob(spooledStream, blob, signal);
      } finally {
        spooledStream.destroy();
      }
    } catch (error) {
      if (signal?.aborted) throw abortError(signal);
      throw error;
    } finally {
      await rm(file, { force: true });
    }
  }

  /** The registry-wide record that streamed uploads are refused (see the class comment). */
  private get streamingRefused(): boolean {
    return registriesRefusingStreamedUploads.get(this.reference.state)?.has(this.reference.registry) === true;
  }

  private rememberStreamingRefused(): void {
    let registries = registriesRefusingStreamedUploads.get(this.reference.state);
    if (registries === undefined) {
      registries = new Set();
      registriesRefusingStreamedUploads.set(this.reference.state, registries);
    }
    registries.add(this.reference.registry);
  }

  /** POSTs a new upload session: its location and the registry's minimum chunk size, if any. */
  private async startUpload(signal: AbortSignal | undefined, what: string): Promise<UploadSession> {
    const start = await this.client.requestExpecting(
      {
        method: 'POST',
        target: `/v2/${this.repository}/blobs/uploads/`,
        signal,
        what: `${what}: starting the upload`,
      },
      [202],
    );
    await start.body.dump();
    const startLocation = headerValue(start.headers, 'location');
    if (startLocation === undefined)
      throw new GantryError(ErrorCodes.Internal, `${what}: the registry gave no upload location`);
    return {
      location: new URL(startLocation, `${this.client.origin}/`),
      minimumChunkLength: parseChunkMinLength(headerValue(start.headers, 'oci-chunk-min-length')),
    };
  }

  private chunkSizeFor(session: UploadSession): number | undefined {
    return uploadChunkSize({
      forced: this.client.options.uploadChunkSize,
      registryMinimum: session.minimumChunkLength,
      streamingRefused: this.streamingRefused,
    });
  }

  /**
   * Uploads a blob: POST a session, send the bytes (one streamed PATCH, or chunks), PUT `?digest=`
   * once the stream ended cleanly (see the class comment). Without `info.digest` the bytes are hashed
   * on the way; with it they are only counted (the pipeline verifies them, the registry checks the
   * digest at the PUT).
   */
  private async uploadBlob(
    stream: Readable,
    info: BlobToWrite,
    signal: AbortSignal | undefined,
    chunkWritten?: (chunk: Uint8Array) => void,
  ): Promise<BlobInfo> {
    const { wholeUploadMaxBytes, uploadChunkSize } = this.client.options;
    if (
      info.digest !== undefined &&
      info.size >= 0 &&
      info.size <= wholeUploadMaxBytes &&
      uploadChunkSize === undefined &&
      wholeUploadBytesHeld + info.size <= wholeUploadBudgetBytes
    ) {
      wholeUploadBytesHeld += info.size;
      try {
        return await this.uploadWhole(stream, { ...info, digest: info.digest }, signal, chunkWritten);
      } finally {
        wholeUploadBytesHeld -= info.size;
      }
    }
    const description = info.digest ? `blob ${info.digest}` : 'a blob';
    const what = `uploading ${description} to ${this.displayName}`;
    // Pieces joined from small chunks are ours: the chunks they copied are handed back at once.
    const joinedPieces = new WeakSet<Uint8Array>();
    const pieces = new UploadedPieces(chunkWritten);
    // The stream's chunks as they come (its own iterator would join those buffered into copies).
    const iterator = new UploadPieceSource(
      readableChunks(stream)[Symbol.asyncIterator](),
      streamPieceBytes,
      info.digest,
      chunkWritten === undefined
        ? undefined
        : (piece, chunks) => {
            joinedPieces.add(piece);
            for (const chunk of chunks) chunkWritten(chunk);
          },
    );
    const { failure } = iterator;
    let session = await this.takeSession(signal, what);
    let committed = false;
    try {
      let location: URL;
      const chunkSize = this.chunkSizeFor(session);
      if (chunkSize !== undefined) {
        location = await this.uploadChunks(
          session.location,
          new ChunkReader([], () => iterator.next()),
          chunkSize,
          signal,
          what,
        );
      } else {
        const outcome = await this.uploadStreamed(
          session.location,
          iterator,
          { pieces, joinedPieces },
          failure,
          signal,
          what,
        );
        if (outcome.accepted) location = outcome.location;
        else {
          this.rememberStreamingRefused();
          if (outcome.replay === undefined) {
            throw new GantryError(
              ErrorCodes.Transient,
              `${what}: the registry refused a streamed upload after more bytes were sent than are kept for a replay (${outcome.error.message}); later uploads to ${this.reference.registry} use chunks, retrying (--retry-times) uploads this blob that way`,
              { cause: outcome.error, retryable: true },
            );
          }
          // Nothing is lost: every byte taken from the stream is held. Start over in chunks.
          await this.cancelUpload(session.location);
          session = await this.startUpload(signal, what);
          location = await this.uploadChunks(
            session.location,
            new ChunkReader(outcome.replay, () => iterator.next()),
            this.chunkSizeFor(session) ?? defaultUploadChunkBytes,
            signal,
            what,
          );
        }
      }
      if (failure.error !== undefined) throw failure.error;
      const { written } = iterator;
      if (written === undefined) {
        throw new GantryError(ErrorCodes.Internal, `${what}: the upload ended before the blob did`);
      }
      const { digest, size } = written;
      if (info.size >= 0 && size !== info.size) {
        throw new GantryError(
          ErrorCodes.SizeMismatch,
          `${what}: size mismatch: expected ${info.size} bytes, got ${size}`,
        );
      }
      const commitLocation = new URL(location);
      commitLocation.searchParams.append('digest', digest);
      const put = await this.client.requestExpecting(
        { method: 'PUT', target: commitLocation, signal, what: `${what}: committing the upload` },
        [201, 204],
      );
      await put.body.dump();
      committed = true;
      this.recordLocation(digest);
      const result: BlobInfo = { digest, size };
      if (info.mediaType !== undefined) result.mediaType = info.mediaType;
      return result;
    } catch (error) {
      throw failure.error ?? error;
    } finally {
      if (!committed) await this.cancelUpload(session.location);
    }
  }

  /**
   * Uploads a small blob of known digest and size in two requests (`wholeUploadMaxBytes`): POST a
   * session (while the blob is read), then, once the stream ended cleanly with the expected size,
   * PUT `?digest=` with all its bytes; the registry checks the digest. A stream that fails or has
   * another size is never sent, and its session is cancelled. The bytes are at hand, so a dropped
   * connection is answered by sending them again in a new session (at most `maxUploadResumes` times).
   */
  private async uploadWhole(
    stream: Readable,
    info: BlobToWrite & { digest: Digest },
    signal: AbortSignal | undefined,
    chunkWritten?: (chunk: Uint8Array) => void,
  ): Promise<BlobInfo> {
    const what = `uploading blob ${info.digest} to ${this.displayName}`;
    const starting = this.takeSession(signal, what);
    starting.catch(() => undefined);
    const pieces: Uint8Array[] = [];
    let size = 0;
    try {
      for await (const piece of readableChunks(stream)) {
        size += piece.byteLength;
        if (size > info.size) break;
        pieces.push(piece);
      }
      if (size !== info.size) {
        throw new GantryError(
          ErrorCodes.SizeMismatch,
          `${what}: size mismatch: expected ${info.size} bytes, got ${size > info.size ? 'more' : size}`,
        );
      }
    } catch (error) {
      const session = await starting.catch(() => undefined);
      if (session !== undefined) await this.cancelUpload(session.location);
      throw error;
    }
    let session = await starting;
    for (let resends = 0; ; resends++) {
      const commitLocation = new URL(session.location);
      commitLocation.searchParams.append('digest', info.digest);
      try {
        const put = await this.client.requestExpecting(
          {
            method: 'PUT',
            target: commitLocation,
            headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
            body: pieces,
            signal,
            what: `${what}: sending it`,
          },
          [201, 204],
        );
        await put.body.dump();
        // The registry read every byte: the pieces are read by nobody any more.
        if (chunkWritten !== undefined) for (const piece of pieces) chunkWritten(piece);
        break;
      } catch (error) {
        await this.cancelUpload(session.location);
        const dropped =
          isGantryError(error) && error.code === ErrorCodes.Transient && signal?.aborted !== true;
        if (!dropped || resends >= maxUploadResumes) throw error;
        session = await this.startUpload(signal, what);
      }
    }
    this.recordLocation(info.digest);
    const result: BlobInfo = { digest: info.digest, size };
    if (info.mediaType !== undefined) result.mediaType = info.mediaType;
    return result;
  }

  /**
   * Sends the whole stream in one PATCH without a length (chunked transfer encoding). What is kept in
   * memory is bounded by the upload's share of `resumeBudget` (its window: 8 MiB for an upload alone,
   * less while several stream at once; see resume-budget.ts). The first bytes taken from the stream are
   * kept while they fit in the window, so that a refusal (`isStreamedUploadRefusal`) answered before more
   * was read loses nothing: the caller then uploads those bytes and the rest in chunks. The location for
   * the next request when accepted.
   *
   * A connection dropped mid-upload is resumed, not restarted: the session's status (GET on the upload
   * URL) says how many bytes the registry kept, and a new streamed PATCH continues from that offset with
   * the bytes kept in memory since then (the last window's worth sent) and the rest of the
   * stream. At most `maxUploadResumes` times per blob; when the registry's offset lies outside the kept
   * bytes, the failure is returned as it was (retryable: `--retry-times` uploads the blob again).
   *
   * A 429 Too Many Requests answering the PATCH (a rate limit, which the client cannot replay for a
   * stream) is waited out as for any request (`Retry-After`, bounded; at most
   * `maxTooManyRequestsRetries` times), then the upload continues the same way from the offset the
   * session reports: the first bytes are all kept while they fit in the window, the last window's worth
   * otherwise. When the bytes from that offset are no longer at hand,
   * the blob fails with a retryable `ERR_GANTRY_TRANSIENT` (`--retry-times` uploads it again).
   */
  private async uploadStreamed(
    location: URL,
    iterator: AsyncIterator<Uint8Array>,
    taken: { pieces: UploadedPieces; joinedPieces: WeakSet<Uint8Array> },
    failure: { error?: unknown },
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<
    | { accepted: true; location: URL }
    | { accepted: false; error: GantryError; replay: Uint8Array[] | undefined }
  > {
    const window = this.resumeBudget.join();
    try {
      return await this.uploadStreamedWithin(window, location, iterator, taken, failure, signal, what);
    } finally {
      window.release();
    }
  }

  private async uploadStreamedWithin(
    window: ResumeWindow,
    location: URL,
    iterator: AsyncIterator<Uint8Array>,
    taken: { pieces: UploadedPieces; joinedPieces: WeakSet<Uint8Array> },
    failure: { error?: unknown },
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<
    | { accepted: true; location: URL }
    | { accepted: false; error: GantryError; replay: Uint8Array[] | undefined }
  > {
    // Every piece taken from the stream while they fit in this upload's share of the resume budget.
    let retained: Uint8Array[] | undefined = [];
    let retainedBytes = 0;
    // The most recent pieces taken from the stream (ending at `pulledBytes`), for resuming.
    const recent: Uint8Array[] = [];
    let recentBytes = 0;
    let pulledBytes = 0;
    let current = location;
    let resend: Uint8Array[] = [];
    // Where the body of the PATCH being sent starts in the stream.
    let resendOffset = 0;
    let inFlight: Promise<unknown> | undefined;
    // Pieces go back to the stream's owner (`chunkWritten`) once written and no longer kept: every
    // byte before `writtenTo` is known to have left this process on the PATCH being sent (or on an
    // earlier one), see `writeConfirmingBytes`; `recent` and `retained` keep pieces for resuming.
    const { pieces, joinedPieces } = taken;
    let writtenTo = 0;
    const releaseWritten = (): void => {
      const keptFrom = retained !== undefined ? 0 : pulledBytes - recentBytes;
      pieces.releaseBefore(Math.min(writtenTo, keptFrom));
    };
    const pull = (): Promise<IteratorResult<Uint8Array>> => {
      const next = iterator.next().then((result) => {
        if (!result.done) {
          // The share shrinks while more uploads stream at once: older pieces are let go then.
          const share = window.bytes();
          if (retained !== undefined) {
            retainedBytes += result.value.byteLength;
            if (retainedBytes <= share) retained.push(result.value);
            else retained = undefined;
          }
          pulledBytes += result.value.byteLength;
          recent.push(result.value);
          recentBytes += result.value.byteLength;
          while (recent.length > 1 && recentBytes - recent[0]!.byteLength >= share) {
            recentBytes -= recent.shift()!.byteLength;
          }
          pieces.taken(result.value, !joinedPieces.has(result.value));
          releaseWritten();
        }
        return result;
      });
      inFlight = next;
      return next;
    };
    let resumes = 0;
    let tooManyRequests = 0;
    let tooManyRequestsFallbackMs = tooManyRequestsInitialDelayMs;
    /**
     * Sets `resend` to the bytes taken from the stream from `offset` on: from `retained` while it holds
     * every byte taken, else from `recent`. False when those bytes are no longer all at hand.
     */
    const resendFrom = (offset: number): boolean => {
      const pieces = retained ?? recent;
      const start = retained !== undefined ? 0 : pulledBytes - recentBytes;
      if (offset < start || offset > pulledBytes) return false;
      resend = [];
      resendOffset = offset;
      let skip = offset - start;
      for (const piece of pieces) {
        if (skip >= piece.byteLength) {
          skip -= piece.byteLength;
          continue;
        }
        resend.push(skip > 0 ? piece.subarray(skip) : piece);
        skip = 0;
      }
      return true;
    };
    for (;;) {
      let detached = false;
      const replay = resend;
      resend = [];
      // The bytes from `resendOffset` on are sent (again) on this PATCH: none of them is written yet.
      writtenTo = Math.min(writtenTo, resendOffset);
      let sentTo = resendOffset;
      /** undici asks for the next piece: `piece` was handed to the socket, and maybe written. */
      const sent = (piece: Uint8Array): void => {
        sentTo += piece.byteLength;
        if (piece.byteLength >= writeConfirmingBytes && !detached) {
          writtenTo = sentTo;
          releaseWritten();
        }
      };
      const body = async function* (): AsyncGenerator<Uint8Array, void, undefined> {
        for (const piece of replay) {
          if (detached) return;
          yield piece;
          sent(piece);
        }
        while (!detached) {
          const result = await pull();
          if (result.done || detached) return;
          yield result.value;
          sent(result.value);
        }
      };
      let patch: Awaited<ReturnType<RegistryClient['request']>>;
      try {
        patch = await this.client.request({
          method: 'PATCH',
          target: current,
          headers: { 'content-type': 'application/octet-stream' },
          body: body(),
          signal,
          what,
        });
      } catch (error) {
        detached = true;
        if (failure.error !== undefined) throw failure.error;
        const dropped =
          isGantryError(error) && error.code === ErrorCodes.Transient && signal?.aborted !== true;
        if (!dropped || resumes >= maxUploadResumes) throw error;
        // Every piece taken from the stream must be in `recent` before the offset is compared.
        await inFlight?.catch(() => undefined);
        if (failure.error !== undefined) throw failure.error;
        let status: { location: URL; bytes: number };
        try {
          status = await this.uploadStatus(current, signal, what);
        } catch {
          throw error;
        }
        if (!resendFrom(status.bytes)) throw error;
        current = status.location;
        resumes++;
        continue;
      } finally {
        detached = true;
      }
      if (failure.error !== undefined) {
        await patch.body.dump().catch(() => undefined);
        throw failure.error;
      }
      if (patch.statusCode === 202 || patch.statusCode === 204) {
        await patch.body.dump();
        // The registry read the whole body: every piece was written, none is kept any more.
        pieces.releaseBefore(Number.POSITIVE_INFINITY);
        return { accepted: true, location: nextLocation(patch, current) };
      }
      if (patch.statusCode === 429 && tooManyRequests < maxTooManyRequestsRetries) {
        // Rate limited: wait as asked, then continue from the offset the session reports (the registry
        // may have kept none, or part, of what was sent), with the bytes kept since then.
        const delayMs = tooManyRequestsDelay(patch.headers['retry-after'], tooManyRequestsFallbackMs);
        tooManyRequests++;
        tooManyRequestsFallbackMs *= 2;
        await patch.body.dump();
        await inFlight?.catch(() => undefined);
        if (failure.error !== undefined) throw failure.error;
        try {
          await sleep(delayMs, undefined, signal ? { signal } : undefined);
        } catch (error) {
          if (signal?.aborted) throw abortError(signal);
          throw error;
        }
        const status = await this.uploadStatus(current, signal, what);
        if (!resendFrom(status.bytes)) {
          throw new GantryError(
            ErrorCodes.Transient,
            `${what}: the registry answered 429 Too Many Requests after ${pulledBytes} bytes were sent and kept ${status.bytes} of them; the bytes in between are no longer at hand, so retrying (--retry-times) uploads this blob again`,
            { retryable: true },
          );
        }
        current = status.location;
        continue;
      }
      const error = await responseError(patch, { what, credentialsSent: this.client.sentCredentials });
      // A refusal after a resume or a wait is an error, not a reason to replay.
      if (!isStreamedUploadRefusal(patch.statusCode) || resumes > 0 || tooManyRequests > 0) throw error;
      // A piece requested before the answer may still be on its way: wait for it, so it is kept.
      await inFlight?.catch(() => undefined);
      if (failure.error !== undefined) throw failure.error;
      return { accepted: false, error, replay: retained };
    }
  }

  /**
   * Sends the stream in PATCHes of `chunkSize` bytes (the last may be smaller), each with
   * `Content-Range` and `Content-Length`, following the `Location` of every answer. A 416 answer
   * (the registry has another offset) is resolved by asking the session's status and resending from
   * the registry's offset when it lies within the chunk at hand. The location for the closing PUT.
   */
  private async uploadChunks(
    location: URL,
    reader: ChunkReader,
    chunkSize: number,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<URL> {
    let current = location;
    let offset = 0;
    for (;;) {
      const chunk = await reader.read(chunkSize);
      if (chunk === undefined) return current;
      current = await this.uploadChunk(current, chunk, offset, signal, what);
      offset += chunk.byteLength;
    }
  }

  private async uploadChunk(
    location: URL,
    chunk: Uint8Array,
    offset: number,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<URL> {
    const last = offset + chunk.byteLength - 1;
    let current = location;
    let alreadySent = 0;
    for (let recoveries = 0; ; recoveries++) {
      const start = offset + alreadySent;
      const chunkWhat = `${what}: sending bytes ${start}-${last}`;
      let response: Awaited<ReturnType<RegistryClient['request']>>;
      try {
        response = await this.client.request({
          method: 'PATCH',
          target: current,
          headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${last}` },
          body: chunk.subarray(alreadySent),
          signal,
          what: chunkWhat,
        });
      } catch (error) {
        // A dropped connection: continue the chunk from the offset the registry reports.
        const dropped =
          isGantryError(error) && error.code === ErrorCodes.Transient && signal?.aborted !== true;
        if (!dropped || recoveries >= maxUploadResumes) throw error;
        let status: { location: URL; bytes: number };
        try {
          status = await this.uploadStatus(current, signal, what);
        } catch {
          throw error;
        }
        if (status.bytes < offset || status.bytes > last + 1) throw error;
        current = status.location;
        alreadySent = status.bytes - offset;
        if (alreadySent === chunk.byteLength) return current;
        continue;
      }
      if (response.statusCode === 202 || response.statusCode === 204) {
        await response.body.dump();
        return nextLocation(response, current);
      }
      if (response.statusCode !== 416 || recoveries >= maxRangeRecoveries) {
        throw await responseError(response, {
          what: chunkWhat,
          credentialsSent: this.client.sentCredentials,
        });
      }
      await response.body.dump();
      current = nextLocation(response, current);
      const status = await this.uploadStatus(current, signal, what);
      current = status.location;
      if (status.bytes < offset || status.bytes > last + 1) {
        throw new GantryError(
          ErrorCodes.Internal,
          `${chunkWhat}: the registry refused the range and holds ${status.bytes} bytes of the upload, outside the chunk being sent (${offset}-${last})`,
        );
      }
      alreadySent = status.bytes - offset;
      if (alreadySent === chunk.byteLength) return current;
    }
  }

  /** GETs an upload session's status: its location and how many bytes it holds. */
  private async uploadStatus(
    location: URL,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<{ location: URL; bytes: number }> {
    const statusWhat = `${what}: reading the upload's status`;
    const response = await this.client.requestExpecting(
      { method: 'GET', target: location, signal, what: statusWhat },
      [200, 204],
    );
    await response.body.dump();
    const bytes = uploadedBytesFromRange(headerValue(response.headers, 'range'));
    if (bytes === undefined) {
      throw new GantryError(ErrorCodes.Internal, `${statusWhat}: the registry gave no valid Range header`);
    }
    return { location: nextLocation(response, location), bytes };
  }

  async putManifest(
    manifest: Uint8Array,
    mediaType: string,
    instanceDigest?: Digest,
    options: PutManifestOptions = {},
  ): Promise<void> {
    this.assertOpen();
    const signal = combineSignals(this.contextSignal, options.signal);
    throwIfAborted(signal);
    let digest: Digest;
    if (instanceDigest !== undefined) digest = instanceDigest;
    else {
      digest = manifestDigest(manifest);
      const named = this.reference.reference.digest;
      if (named !== undefined && !manifestMatchesDigest(manifest, named)) {
        throw new GantryError(
          ErrorCodes.DigestMismatch,
          `${this.reference}: the manifest to write does not match the digest ${named} the reference names`,
        );
      }
      if (named !== undefined) digest = named;
      this.topLevelDigest = digest;
    }
    const tag = this.reference.reference.tag;
    const tagged =
      instanceDigest === undefined && tag !== undefined && this.reference.reference.digest === undefined;
    if (tagged && options.lastBeforeCommit) {
      // Only `commit` follows: one PUT by tag, as skopeo writes it, instead of by digest and then by tag.
      await this.putManifestAt(tag, manifest, mediaType, signal);
      this.pendingTag = undefined;
    } else {
      await this.putManifestAt(digest, manifest, mediaType, signal);
      if (tagged) this.pendingTag = { tag, manifest, mediaType };
    }
    for (const blobDigest of referencedBlobDigests(manifest)) this.recordLocation(blobDigest);
  }

  /** PUTs a manifest at a tag or digest with its MIME type. */
  private async putManifestAt(
    tagOrDigest: string,
    manifest: Uint8Array,
    mediaType: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const what = `writing manifest ${tagOrDigest} to ${this.displayName}`;
    const response = await this.client.requestExpecting(
      {
        method: 'PUT',
        target: `/v2/${this.repository}/manifests/${tagOrDigest}`,
        headers: { 'content-type': mediaType },
        body: manifest,
        signal,
        what,
      },
      [200, 201, 202, 204],
    );
    await response.body.dump();
  }

  /**
   * Stores signatures of the top-level manifest (written before by `putManifest`) or of an instance:
   * sigstore ones as sigstore attachments, the others in the registries.d lookaside (see signatures.ts).
   */
  async putSignatures(
    signatures: Uint8Array[],
    instanceDigest?: Digest,
    options: OperationOptions = {},
  ): Promise<void> {
    this.assertOpen();
    const signal = combineSignals(this.contextSignal, options.signal);
    throwIfAborted(signal);
    if (signatures.length === 0) return;
    const manifestDigest = instanceDigest ?? this.topLevelDigest;
    if (manifestDigest === undefined) {
      throw new GantryError(ErrorCodes.Internal, `${this.reference}: signatures written before the manifest`);
    }
    const location = { client: this.client, reference: this.reference.reference, manifestDigest, signal };
    await writeDockerSignatures({ ...location, options: this.signatureOptions }, signatures);
  }

  /**
   * Writes a referrer manifest by digest; on a registry without the referrers API (no `OCI-Subject`
   * answer) its subject's referrers tag index is updated at `commit` (`ReferrersWriter`).
   */
  async putReferrer(
    manifest: Uint8Array,
    referrer: ReferrerDescriptor,
    subject: Digest,
    options: OperationOptions = {},
  ): Promise<void> {
    this.assertOpen();
    const signal = combineSignals(this.contextSignal, options.signal);
    throwIfAborted(signal);
    this.referrers ??= new ReferrersWriter(this.client);
    await this.referrers.putReferrer(manifest, referrer, subject, signal);
    for (const blobDigest of referencedBlobDigests(manifest)) this.recordLocation(blobDigest);
  }

  /**
   * Updates the referrers tag indexes (`putReferrer`), then sets the tag to the top-level manifest
   * written by `putManifest` (see the class comment).
   */
  async commit(options: OperationOptions = {}): Promise<void> {
    this.assertOpen();
    const signal = combineSignals(this.contextSignal, options.signal);
    throwIfAborted(signal);
    await this.referrers?.commit(signal);
    const pending = this.pendingTag;
    if (pending === undefined) return;
    await this.putManifestAt(pending.tag, pending.manifest, pending.mediaType, signal);
    this.pendingTag = undefined;
  }

  /** Cancels the upload sessions opened ahead that no upload took (see `openSessionAhead`). */
  async close(): Promise<void> {
    this.closed = true;
    const left = this.sessionsAhead.splice(0);
    await Promise.all(
      left.map(async (opening) => {
        const session = await opening;
        if (session !== undefined) await this.cancelUpload(session.location);
      }),
    );
  }
}

/** Opens a destination: connects and authenticates for `pull,push` on the repository. */
export async function openDockerImageDestination(
  reference: DockerImageReference,
  context: TransportContext,
): Promise<DockerImageDestination> {
  const access = await registryAccessFor(context, reference.reference.name);
  const client = await RegistryClient.open(
    reference.state,
    {
      registry: reference.registry,
      repository: reference.repository,
      actions: 'pull,push',
      role: 'destination',
    },
    context,
    access,
  );
  const destination = new DockerImageDestination(
    reference,
    client,
    context.signal,
    context.temporaryDirectory,
  );
  destination.signatureOptions = signatureStorageOptionsFrom(context);
  destination.blobInfoCache = context.blobInfoCache;
  return destination;
}
