import type { Readable } from 'node:stream';
import {
  type BlobInfo,
  type BlobToWrite,
  blobWriteStage,
  type Digest,
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
  type ReusedBlob,
  type TransportContext,
  type TryReusingBlobOptions,
  throwIfAborted,
} from '@gantry/core';
import { combineSignals } from './image-source.js';
import { headerValue, referencedBlobDigests } from './manifests.js';
import type { DockerImageReference } from './reference.js';
import { registryAccessFor } from './registries.js';
import { RegistryClient } from './registry-client.js';
import { responseError } from './registry-errors.js';

/** The largest piece written to the connection at once while uploading a blob. */
const uploadChunkBytes = 1024 * 1024;

/**
 * Passes `source`'s bytes on in pieces of at least `size` bytes (the last may be smaller), so that
 * a stream of small reads (64 KiB from a file) makes fewer socket writes.
 */
export async function* gatherChunks(
  source: AsyncIterable<Uint8Array>,
  size: number,
): AsyncGenerator<Uint8Array, void, undefined> {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  for await (const chunk of source) {
    if (pendingBytes === 0 && chunk.byteLength >= size) {
      yield chunk;
      continue;
    }
    pending.push(chunk);
    pendingBytes += chunk.byteLength;
    if (pendingBytes >= size) {
      yield Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
    }
  }
  if (pendingBytes > 0) yield pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
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
 *   the blobs may be shared with other images).
 * - References by digest and `@@unknown-digest@@` references have no tag: `commit` has nothing to do.
 *
 * Blobs: `tryReusingBlob` HEADs the blob in the repository, then tries a cross-repository mount from
 * each repository of the same registry where this process has seen the blob (a source's manifest or
 * an earlier upload). `putBlob` streams: POST an upload session, PATCH the bytes as they come (the
 * digest is computed on the way unless `info.digest` names it: the pipeline verifies those bytes, and
 * the registry checks the digest at the final PUT), PUT `?digest=` once the stream ended cleanly — so
 * a blob whose stream errors (e.g. the pipeline's digest verification) is never committed.
 */
export class DockerImageDestination implements ImageDestination {
  readonly reference: DockerImageReference;
  readonly properties: ImageDestinationProperties = {
    supportedManifestMimeTypes: dockerDestinationManifestMediaTypes,
    desiredLayerCompression: 'compress',
    acceptsForeignLayerURLs: true,
    mustMatchRuntimeOS: false,
    supportsSignatures: false,
    hasThreadSafePutBlob: true,
    ignoresEmbeddedDockerReference: false,
  };
  private readonly client: RegistryClient;
  private readonly contextSignal: AbortSignal | undefined;
  private closed = false;
  /** The top-level manifest to tag at `commit`, when the reference has a tag. */
  private pendingTag: { tag: string; manifest: Uint8Array; mediaType: string } | undefined;

  /** @internal Use `reference.newImageDestination`. */
  constructor(
    reference: DockerImageReference,
    client: RegistryClient,
    contextSignal: AbortSignal | undefined,
  ) {
    this.reference = reference;
    this.client = client;
    this.contextSignal = contextSignal;
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

  private recordLocation(digest: string): void {
    this.reference.state.blobLocations.record(this.reference.registry, this.repository, digest);
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
    throw await responseError(response, { what, credentialsSent: this.client.hasCredentials });
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
    const size = await this.blobSize(info.digest, signal);
    if (size !== undefined) {
      this.recordLocation(info.digest);
      return { reused: true, blob: { ...info, size: size >= 0 ? size : info.size } };
    }
    const locations = this.reference.state.blobLocations;
    for (const from of locations.candidates(this.reference.registry, info.digest, this.repository)) {
      if (await this.tryMount(info.digest, from, signal)) {
        this.recordLocation(info.digest);
        const mountedSize = info.size >= 0 ? info.size : ((await this.blobSize(info.digest, signal)) ?? -1);
        return { reused: true, blob: { ...info, size: mountedSize } };
      }
      locations.forget(this.reference.registry, from, info.digest);
    }
    return { reused: false };
  }

  async putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo> {
    this.assertOpen();
    const signal = combineSignals(this.contextSignal, options.signal);
    const description = info.digest ? `blob ${info.digest}` : 'a blob';
    const what = `uploading ${description} to ${this.displayName}`;
    try {
      throwIfAborted(signal);
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
      const sessionLocation = new URL(startLocation, `${this.client.origin}/`);
      let committed = false;
      try {
        // With `info.digest`, the bytes are only counted: the pipeline verifies them (the stream fails
        // before its end on a mismatch) and the registry checks the digest again at the final PUT.
        let written: { digest: Digest; size: number } | undefined;
        const writeStage = blobWriteStage(info.digest, (result) => {
          written = result;
        });
        let streamError: unknown;
        const body = async function* () {
          try {
            yield* gatherChunks(writeStage(stream as AsyncIterable<Uint8Array>), uploadChunkBytes);
          } catch (error) {
            streamError = error;
            throw error;
          }
        };
        let patch: Awaited<ReturnType<RegistryClient['request']>>;
        try {
          patch = await this.client.request({
            method: 'PATCH',
            target: sessionLocation,
            headers: { 'content-type': 'application/octet-stream' },
            body: body(),
            signal,
            what,
          });
        } catch (error) {
          throw streamError ?? error;
        }
        if (streamError !== undefined) {
          await patch.body.dump().catch(() => undefined);
          throw streamError;
        }
        if (patch.statusCode !== 202 && patch.statusCode !== 204) {
          throw await responseError(patch, { what, credentialsSent: this.client.hasCredentials });
        }
        await patch.body.dump();
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
        const patchLocation = headerValue(patch.headers, 'location');
        const commitLocation =
          patchLocation !== undefined ? new URL(patchLocation, sessionLocation) : sessionLocation;
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
      } finally {
        if (!committed) await this.cancelUpload(sessionLocation);
      }
    } catch (error) {
      stream.destroy();
      throw error;
    }
  }

  async putManifest(
    manifest: Uint8Array,
    mediaType: string,
    instanceDigest?: Digest,
    options: OperationOptions = {},
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
    }
    await this.putManifestAt(digest, manifest, mediaType, signal);
    for (const blobDigest of referencedBlobDigests(manifest)) this.recordLocation(blobDigest);
    const tag = this.reference.reference.tag;
    if (instanceDigest === undefined && tag !== undefined && this.reference.reference.digest === undefined) {
      this.pendingTag = { tag, manifest, mediaType };
    }
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

  async putSignatures(
    signatures: Uint8Array[],
    _instanceDigest?: Digest,
    options: OperationOptions = {},
  ): Promise<void> {
    this.assertOpen();
    throwIfAborted(combineSignals(this.contextSignal, options.signal));
    if (signatures.length === 0) return;
    throw new GantryError(
      ErrorCodes.NotSupported,
      `${this.reference}: storing signatures in a registry is not supported yet (remove them with --remove-signatures)`,
    );
  }

  /** Sets the tag to the top-level manifest written by `putManifest` (see the class comment). */
  async commit(options: OperationOptions = {}): Promise<void> {
    this.assertOpen();
    const signal = combineSignals(this.contextSignal, options.signal);
    throwIfAborted(signal);
    const pending = this.pendingTag;
    if (pending === undefined) return;
    await this.putManifestAt(pending.tag, pending.manifest, pending.mediaType, signal);
    this.pendingTag = undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
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
  return new DockerImageDestination(reference, client, context.signal);
}
