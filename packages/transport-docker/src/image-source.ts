import {
  type BlobInfo,
  type BlobStream,
  type Digest,
  ErrorCodes,
  GantryError,
  type ImageSource,
  type ImageSourceProperties,
  type ManifestBlob,
  type OperationOptions,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core';
import type { Dispatcher } from 'undici';
import { headerValue, fetchManifest, referencedBlobDigests } from './manifests.js';
import type { DockerImageReference } from './reference.js';
import { RegistryClient } from './registry-client.js';
import { responseError } from './registry-errors.js';

const maxRedirects = 10;
const redirectStatuses = new Set([301, 302, 303, 307, 308]);

/** Combines the context's signal and an operation's signal. */
export function combineSignals(...signals: Array<AbortSignal | undefined>): AbortSignal | undefined {
  const present = signals.filter((signal): signal is AbortSignal => signal !== undefined);
  return present.length <= 1 ? present[0] : AbortSignal.any(present);
}

/**
 * GETs a blob of `client`'s repository as a stream, following redirects by hand: a redirect to
 * another origin (object storage, a CDN) is fetched without `Authorization`. The caller consumes the
 * stream. 404 → `ERR_GANTRY_BLOB_NOT_FOUND`.
 */
export async function fetchBlob(client: RegistryClient, digest: Digest, signal: AbortSignal | undefined): Promise<BlobStream> {
  const what = `fetching blob ${digest} from ${client.scope.registry}/${client.scope.repository}`;
  let target: string | URL = `/v2/${client.scope.repository}/blobs/${digest}`;
  for (let redirects = 0; ; redirects++) {
    const response: Dispatcher.ResponseData = await client.request({ method: 'GET', target, signal, what });
    if (response.statusCode === 200) {
      const length = headerValue(response.headers, 'content-length');
      const size = length !== undefined && /^\d+$/.test(length) ? Number(length) : -1;
      return { stream: response.body, size };
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
        throw new GantryError(ErrorCodes.Internal, `${what}: redirect to unsupported URL scheme ${target.protocol}`);
      }
      continue;
    }
    throw await responseError(response, { what, notFoundCode: ErrorCodes.BlobNotFound, credentialsSent: client.hasCredentials });
  }
}

/**
 * Reads an image from a registry. The top-level manifest is fetched when the source is opened
 * (so a missing image fails `newImageSource` with `ERR_GANTRY_IMAGE_NOT_FOUND`) and kept. Blobs stream
 * straight from the registry. Signatures: none yet (no lookaside or sigstore support).
 */
export class DockerImageSource implements ImageSource {
  readonly reference: DockerImageReference;
  readonly properties: ImageSourceProperties = { hasThreadSafeGetBlob: true };
  private readonly client: RegistryClient;
  private readonly contextSignal: AbortSignal | undefined;
  private topLevelManifest: ManifestBlob | undefined;
  private closed = false;

  /** @internal Use `reference.newImageSource`. */
  constructor(reference: DockerImageReference, client: RegistryClient, contextSignal: AbortSignal | undefined) {
    this.reference = reference;
    this.client = client;
    this.contextSignal = contextSignal;
  }

  private assertOpen(): void {
    if (this.closed) throw new GantryError(ErrorCodes.Internal, `${this.reference}: image source used after close`);
  }

  private recordBlobLocations(manifest: ManifestBlob): void {
    for (const digest of referencedBlobDigests(manifest.bytes)) {
      this.reference.state.blobLocations.record(this.reference.registry, this.reference.repository, digest);
    }
  }

  async getManifest(instanceDigest?: Digest, options: OperationOptions = {}): Promise<ManifestBlob> {
    this.assertOpen();
    const signal = combineSignals(this.contextSignal, options.signal);
    throwIfAborted(signal);
    if (instanceDigest === undefined && this.topLevelManifest !== undefined) return this.topLevelManifest;
    const manifest = await fetchManifest(this.client, instanceDigest ?? this.reference.tagOrDigest, signal);
    this.recordBlobLocations(manifest);
    if (instanceDigest === undefined) this.topLevelManifest = manifest;
    return manifest;
  }

  async getBlob(info: BlobInfo, options: OperationOptions = {}): Promise<BlobStream> {
    this.assertOpen();
    const signal = combineSignals(this.contextSignal, options.signal);
    throwIfAborted(signal);
    const blob = await fetchBlob(this.client, info.digest, signal);
    this.reference.state.blobLocations.record(this.reference.registry, this.reference.repository, info.digest);
    return blob;
  }

  async getSignatures(_instanceDigest?: Digest, options: OperationOptions = {}): Promise<Uint8Array[]> {
    this.assertOpen();
    throwIfAborted(combineSignals(this.contextSignal, options.signal));
    return [];
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Opens a source: connects, authenticates for `pull`, and fetches the top-level manifest. */
export async function openDockerImageSource(reference: DockerImageReference, context: TransportContext): Promise<DockerImageSource> {
  const client = await RegistryClient.open(
    reference.state,
    { registry: reference.registry, repository: reference.repository, actions: 'pull', role: 'source' },
    context,
  );
  const source = new DockerImageSource(reference, client, context.signal);
  await source.getManifest();
  return source;
}
