import { Readable } from 'node:stream';
import { pullSourcesFor } from '@gantry/containers-config';
import {
  type BlobInfo,
  type BlobInfoCache,
  type BlobStream,
  type Digest,
  type DockerReference,
  ErrorCodes,
  GantryError,
  type ImageSource,
  type ImageSourceProperties,
  isGantryError,
  type ListReferrersOptions,
  type ManifestBlob,
  type OperationOptions,
  type ReferrerDescriptor,
  releaseResponseHead,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core/transport';
import type { Dispatcher } from 'undici';
import { networkError } from './connections.js';
import { fetchManifest, headerValue, referencedBlobDigests } from './manifests.js';
import type { DockerImageReference } from './reference.js';
import { listReferrersWith } from './referrers.js';
import { loadContextRegistriesConfiguration, registrySettingsFor } from './registries.js';
import { RegistryClient } from './registry-client.js';
import { responseError } from './registry-errors.js';
import {
  readDockerSignatures,
  type SignatureStorageOptions,
  signatureStorageOptionsFrom,
  signedManifestDigest,
} from './signatures.js';

const maxRedirects = 10;
const redirectStatuses = new Set([301, 302, 303, 307, 308]);

/** Combines the context's signal and an operation's signal. */
export function combineSignals(...signals: Array<AbortSignal | undefined>): AbortSignal | undefined {
  const present = signals.filter((signal): signal is AbortSignal => signal !== undefined);
  return present.length <= 1 ? present[0] : AbortSignal.any(present);
}

/**
 * Chunks a blob stream buffers ahead of its consumer: up to 1 MiB of plain-HTTP reads (up to 512 KiB
 * each, see `pooledReads` in connections.ts), less of TLS reads. Every chunk buffered holds a read buffer
 * that goes back to its pool only once written: more chunks ahead would mean more buffers in flight.
 */
const blobStreamChunksAhead = 2;

/** How many times one blob download is resumed after the connection broke. */
export const maxBlobResumes = 5;

/**
 * One GET of a blob, following redirects by hand (a redirect to another origin — object storage, a
 * CDN — is fetched without `Authorization`). With `offset` > 0, asks for the rest with `Range`:
 * a 206 answer must start at `offset`; a 200 answer (Range ignored) is skipped up to `offset`.
 */
async function requestBlob(
  client: RegistryClient,
  digest: Digest,
  offset: number,
  signal: AbortSignal | undefined,
): Promise<{ body: Readable; size: number }> {
  const what = `fetching blob ${digest} from ${client.scope.registry}/${client.scope.repository}`;
  let target: string | URL = `/v2/${client.scope.repository}/blobs/${digest}`;
  const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
  for (let redirects = 0; ; redirects++) {
    const response: Dispatcher.ResponseData = await client.request({
      method: 'GET',
      target,
      headers,
      signal,
      what,
    });
    if (response.statusCode === 200 || (response.statusCode === 206 && offset > 0)) {
      const length = headerValue(response.headers, 'content-length');
      let size = length !== undefined && /^\d+$/.test(length) ? Number(length) : -1;
      if (response.statusCode === 206) {
        const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(
          headerValue(response.headers, 'content-range') ?? '',
        );
        if (!range || Number(range[1]) !== offset) {
          await response.body.dump();
          throw new GantryError(ErrorCodes.Transient, `${what}: the registry resumed at the wrong offset`, {
            retryable: true,
          });
        }
        size = range[3] === '*' ? -1 : Number(range[3]);
        return { body: response.body, size };
      }
      if (offset > 0) return { body: skipBytes(response.body, offset), size };
      return { body: response.body, size };
    }
    const location = headerValue(response.headers, 'location');
    if (redirectStatuses.has(response.statusCode) && location !== undefined) {
      await response.body.dump();
      if (redirects >= maxRedirects) {
        throw new GantryError(ErrorCodes.Internal, `${what}: too many redirects`);
      }
      const base: string | URL = typeof target === 'string' ? new URL(target, `${client.origin}/`) : target;
      target = new URL(location, base);
      if (target.protocol !== 'https:' && target.protocol !== 'http:') {
        throw new GantryError(
          ErrorCodes.Internal,
          `${what}: redirect to unsupported URL scheme ${target.protocol}`,
        );
      }
      refuseDowngrade(base, target, what);
      continue;
    }
    throw await responseError(response, {
      what,
      notFoundCode: ErrorCodes.BlobNotFound,
      credentialsSent: client.sentCredentials,
    });
  }
}

/**
 * Refuses a redirect from HTTPS to plain HTTP: what was asked for over TLS is never fetched where anyone
 * on the path can read or change it (blob digests are verified, but the download would still leak what is
 * pulled and let the answer be swapped for another error or a stall).
 */
function refuseDowngrade(from: URL, to: URL, what: string): void {
  if (from.protocol === 'https:' && to.protocol === 'http:') {
    throw new GantryError(
      ErrorCodes.Internal,
      `${what}: refusing a redirect from HTTPS to plain HTTP (${to.origin}${to.pathname})`,
    );
  }
}

/** A stream of `body` without its first `count` bytes. */
function skipBytes(body: Readable, count: number): Readable {
  return Readable.from(
    (async function* () {
      let toSkip = count;
      for await (const chunk of body) {
        const buffer = chunk as Buffer;
        if (toSkip >= buffer.byteLength) {
          toSkip -= buffer.byteLength;
          continue;
        }
        yield toSkip > 0 ? buffer.subarray(toSkip) : buffer;
        toSkip = 0;
      }
    })(),
    { objectMode: false },
  );
}

/**
 * GETs a blob from a manifest's foreign-layer URLs, in order, without credentials (never send
 * registry credentials to URLs a manifest names: CVE-2020-15157), following redirects. Returns
 * undefined when every URL failed or none is http(s), with the failures described.
 */
async function fetchExternalBlob(
  client: RegistryClient,
  urls: string[],
  signal: AbortSignal | undefined,
): Promise<{ blob: BlobStream | undefined; failures: string[] }> {
  const failures: string[] = [];
  for (const url of urls) {
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      continue;
    }
    if (target.protocol !== 'https:' && target.protocol !== 'http:') continue;
    try {
      for (let redirects = 0; ; redirects++) {
        const response = await client.request({
          method: 'GET',
          target,
          anonymous: true,
          signal,
          what: `fetching external blob from ${target.origin}${target.pathname}`,
        });
        const location = headerValue(response.headers, 'location');
        if (redirectStatuses.has(response.statusCode) && location !== undefined && redirects < maxRedirects) {
          await response.body.dump();
          const next = new URL(location, target);
          refuseDowngrade(target, next, `fetching external blob from ${target.origin}${target.pathname}`);
          target = next;
          continue;
        }
        if (response.statusCode !== 200) {
          await response.body.dump();
          failures.push(`${url}: HTTP status ${response.statusCode}`);
          break;
        }
        const length = headerValue(response.headers, 'content-length');
        const size = length !== undefined && /^\d+$/.test(length) ? Number(length) : -1;
        return { blob: { stream: response.body, size }, failures };
      }
    } catch (error) {
      if (signal?.aborted) throw error;
      failures.push(`${url}: ${(error as Error).message}`);
    }
  }
  return { blob: undefined, failures };
}

/**
 * GETs a blob of `client`'s repository as a stream (see `requestBlob` for redirects). When the
 * connection breaks mid-body, the download resumes where it stopped with a `Range` request (up to
 * `maxBlobResumes` times) instead of failing; a failure that remains is `ERR_GANTRY_TRANSIENT`
 * (retryable). 404 → `ERR_GANTRY_BLOB_NOT_FOUND`. The caller consumes or destroys the stream.
 */
export async function fetchBlob(
  client: RegistryClient,
  digest: Digest,
  signal: AbortSignal | undefined,
): Promise<BlobStream> {
  const what = `fetching blob ${digest} from ${client.scope.registry}/${client.scope.repository}`;
  const first = await requestBlob(client, digest, 0, signal);
  // The response body's chunks are passed on as they come (no async-iterator layer, which would
  // concatenate buffered chunks), pausing the body while the consumer is full.
  let body = first.body;
  let received = 0;
  let resumes = 0;
  // Object mode: a consumer's read() (a Readable's async iterator) takes one chunk at a time; in byte
  // mode it would join every chunk buffered at that moment into a new buffer, a copy of those bytes.
  const output = new Readable({
    objectMode: true,
    highWaterMark: blobStreamChunksAhead,
    read() {
      body.resume();
    },
    destroy(error, callback) {
      body.destroy();
      callback(error);
    },
  });
  const recover = async (error: unknown): Promise<void> => {
    if (output.destroyed) return;
    body.destroy();
    const failure = networkError(error, what, signal, client.options.idleTimeoutMs);
    // Every byte arrived before the connection broke: nothing to resume (the pipeline verifies the digest).
    if (failure.retryable && first.size >= 0 && received === first.size) {
      output.push(null);
      return;
    }
    if (!failure.retryable || resumes >= maxBlobResumes || (first.size >= 0 && received > first.size)) {
      output.destroy(failure);
      return;
    }
    resumes++;
    let next: Readable;
    try {
      next = (await requestBlob(client, digest, received, signal)).body;
    } catch (resumeError) {
      output.destroy(resumeError as Error);
      return;
    }
    if (output.destroyed) {
      next.destroy();
      return;
    }
    body = next;
    forward(next);
  };
  // The body's chunks (socket reads) are passed on as they are: gathering them into
  // larger pieces would copy every byte once more into new memory, which costs more than the stages
  // after this one spend per chunk.
  const forward = (current: Readable): void => {
    let first = true;
    current.on('data', (chunk: Buffer) => {
      // The response's head was read into the buffer its first body chunk lies in: parsed, read by
      // nobody any more (the connection carries one request at a time), so that buffer can come back.
      if (first) {
        first = false;
        releaseResponseHead(chunk);
      }
      received += chunk.byteLength;
      if (!output.push(chunk)) current.pause();
    });
    current.once('end', () => {
      output.push(null);
    });
    current.once('error', (error) => {
      void recover(error);
    });
  };
  forward(body);
  return { stream: output, size: first.size };
}

/**
 * Reads an image from a registry. The top-level manifest is fetched when the source is opened
 * (so a missing image fails `newImageSource` with `ERR_GANTRY_IMAGE_NOT_FOUND`) and kept. Blobs stream
 * straight from the registry. Signatures: from the lookaside and sigstore attachments registries.d
 * configures for the physical reference (see signatures.ts).
 */
export class DockerImageSource implements ImageSource {
  readonly reference: DockerImageReference;
  readonly properties: ImageSourceProperties = { hasThreadSafeGetBlob: true };
  private readonly client: RegistryClient;
  private readonly contextSignal: AbortSignal | undefined;
  private topLevelManifest: ManifestBlob | undefined;
  private closed = false;
  /** @internal Where signatures are stored (`openDockerImageSource` sets it from the context). */
  signatureOptions: SignatureStorageOptions = {};

  /** Where the image is read from: the reference, or a mirror's / `location`'s rewrite of it. */
  readonly physicalReference: DockerReference;

  /** @internal Use `reference.newImageSource`. */
  constructor(
    reference: DockerImageReference,
    client: RegistryClient,
    contextSignal: AbortSignal | undefined,
    physicalReference: DockerReference = reference.reference,
  ) {
    this.reference = reference;
    this.physicalReference = physicalReference;
    this.client = client;
    this.contextSignal = contextSignal;
  }

  private assertOpen(): void {
    if (this.closed)
      throw new GantryError(ErrorCodes.Internal, `${this.reference}: image source used after close`);
  }

  private get physicalTagOrDigest(): string {
    return this.physicalReference.digest ?? this.physicalReference.tag!;
  }

  /** @internal The context's blob-info cache (`openDockerImageSource` sets it): locations kept between runs. */
  blobInfoCache: BlobInfoCache | undefined;

  private recordBlobLocation(digest: string): void {
    this.reference.state.blobLocations.record(
      this.client.scope.registry,
      this.client.scope.repository,
      digest,
    );
    this.blobInfoCache?.recordKnownLocation(
      'docker',
      this.client.scope.registry,
      digest as Digest,
      this.client.scope.repository,
    );
  }

  private recordBlobLocations(manifest: ManifestBlob): void {
    for (const digest of referencedBlobDigests(manifest.bytes)) this.recordBlobLocation(digest);
  }

  async getManifest(instanceDigest?: Digest, options: OperationOptions = {}): Promise<ManifestBlob> {
    this.assertOpen();
    const signal = combineSignals(this.contextSignal, options.signal);
    throwIfAborted(signal);
    if (instanceDigest === undefined && this.topLevelManifest !== undefined) return this.topLevelManifest;
    const manifest = await fetchManifest(this.client, instanceDigest ?? this.physicalTagOrDigest, signal);
    this.recordBlobLocations(manifest);
    if (instanceDigest === undefined) this.topLevelManifest = manifest;
    return manifest;
  }

  async getBlob(info: BlobInfo, options: OperationOptions = {}): Promise<BlobStream> {
    this.assertOpen();
    const signal = combineSignals(this.contextSignal, options.signal);
    throwIfAborted(signal);
    let externalFailures: string[] = [];
    if (info.urls !== undefined && info.urls.length > 0) {
      const external = await fetchExternalBlob(this.client, info.urls, signal);
      if (external.blob) return external.blob;
      externalFailures = external.failures;
    }
    let blob: BlobStream;
    try {
      blob = await fetchBlob(this.client, info.digest, signal);
    } catch (error) {
      if (externalFailures.length > 0 && isGantryError(error) && error.code === ErrorCodes.BlobNotFound) {
        throw new GantryError(
          ErrorCodes.BlobNotFound,
          `${error.message}; external URLs failed: ${externalFailures.join('; ')}`,
          {
            cause: error,
          },
        );
      }
      throw error;
    }
    this.recordBlobLocation(info.digest);
    return blob;
  }

  async getSignatures(instanceDigest?: Digest, options: OperationOptions = {}): Promise<Uint8Array[]> {
    this.assertOpen();
    const signal = combineSignals(this.contextSignal, options.signal);
    throwIfAborted(signal);
    const manifestDigest = await signedManifestDigest(instanceDigest, this.physicalReference, () =>
      this.getManifest(undefined, options),
    );
    const reference = this.physicalReference;
    return readDockerSignatures({
      client: this.client,
      reference,
      manifestDigest,
      options: this.signatureOptions,
      signal,
    });
  }

  /**
   * The referrers of `subject` in the repository the image is read from (a mirror's, when one is
   * used): the referrers API, else the referrers tag schema (`listReferrersWith`). Their manifests come
   * from `getManifest(digest)` like any manifest of the repository.
   */
  async listReferrers(subject: Digest, options: ListReferrersOptions = {}): Promise<ReferrerDescriptor[]> {
    this.assertOpen();
    const signal = combineSignals(this.contextSignal, options.signal);
    throwIfAborted(signal);
    return listReferrersWith(this.client, subject, options, signal);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Opens a source: connects, authenticates for `pull`, and fetches the top-level manifest. */
/**
 * Opens a source. The places to read from come from registries.conf: the mirrors allowed for the
 * reference, then the primary location (the reference itself, or its `location` rewrite); each is
 * tried in order — connect, authenticate for `pull`, fetch the top-level manifest — and the first
 * that has the image is used for everything. When all fail, the primary's error is thrown (same
 * code), with the mirrors' errors in its message. Blocked registries are refused before any traffic.
 */
export async function openDockerImageSource(
  reference: DockerImageReference,
  context: TransportContext,
): Promise<DockerImageSource> {
  // Refuses `@@unknown-digest@@` references before any network traffic.
  void reference.tagOrDigest;
  const configuration = await loadContextRegistriesConfiguration(context);
  const settings = registrySettingsFor(configuration, reference.reference.name);
  const pullSources = pullSourcesFor(settings, reference.reference);
  const failures: Array<{ name: string; error: unknown }> = [];
  for (const pullSource of pullSources) {
    try {
      if (pullSource.reference.name !== reference.reference.name) {
        registrySettingsFor(configuration, pullSource.reference.name);
      }
      const client = await RegistryClient.open(
        reference.state,
        {
          registry: pullSource.reference.domain,
          repository: pullSource.reference.path,
          actions: 'pull',
          role: 'source',
        },
        context,
        { insecure: pullSource.endpoint.insecure, credentialHelpers: configuration.credentialHelpers },
      );
      const source = new DockerImageSource(reference, client, context.signal, pullSource.reference);
      source.signatureOptions = signatureStorageOptionsFrom(context);
      source.blobInfoCache = context.blobInfoCache;
      await source.getManifest();
      return source;
    } catch (error) {
      if (context.signal?.aborted) throw error;
      failures.push({ name: pullSource.reference.toString(), error });
    }
  }
  const primary = failures[failures.length - 1]!;
  if (failures.length === 1) throw primary.error;
  const mirrors = failures
    .slice(0, -1)
    .map(
      (failure) =>
        `[${failure.name}: ${failure.error instanceof Error ? failure.error.message : String(failure.error)}]`,
    )
    .join(', ');
  const primaryMessage = primary.error instanceof Error ? primary.error.message : String(primary.error);
  throw new GantryError(
    isGantryError(primary.error) ? primary.error.code : ErrorCodes.Internal,
    `${primaryMessage} (mirrors also failed: ${mirrors})`,
    { cause: primary.error, retryable: isGantryError(primary.error) && primary.error.retryable },
  );
}
