/**
 * The transport plugin contract.
 *
 * A transport (`oci`, `dir`, `docker`, a third-party one…) turns reference strings into
 * `ImageReference`s, and references into `ImageSource`s (to read an image) and `ImageDestination`s
 * (to write one). Transports stay simple: they store and fetch bytes. The copy pipeline in
 * `@gantry/core` does everything else once for all transports: blob reuse, digest and size
 * verification, compression changes, manifest conversion, platform selection, signatures policy.
 *
 * Versioning: every transport carries `specificationVersion: 'v1'`. Members added to this contract
 * later are optional, so a transport written against v1 keeps working; a breaking change introduces
 * 'v2' and Gantry keeps accepting v1 transports for as long as it can adapt them.
 */
import type { Readable } from 'node:stream';
import type { BlobInfoCache } from '../copy/blob-info-cache.js';
import type { Digest } from '../digest.js';
import type { DockerReference } from '../reference/types.js';

/** The contract version implemented by transports written against this file. */
export const transportSpecificationVersion = 'v1' as const;
/** The type of {@link transportSpecificationVersion}: the version a transport declares. */
export type TransportSpecificationVersion = typeof transportSpecificationVersion;

/** Requested platform for choosing an image from a manifest list (`--override-os` etc.). */
export interface PlatformOverrides {
  os?: string;
  architecture?: string;
  variant?: string;
}

/**
 * Settings that apply to opening sources and destinations. One context is used for the source and
 * another for the destination of a copy (skopeo's `--src-*` / `--dest-*` flags). Every member is
 * optional. The top-level members are what every transport shares (signal, temporary directory,
 * platform, configuration locations, blob info cache); what concerns one transport only is in
 * `transportOptions[<its name>]`.
 */
export interface TransportContext {
  /** Aborts any I/O in progress; the operation rejects with `ERR_GANTRY_ABORTED`. */
  signal?: AbortSignal;
  /** Directory for temporary files (`--tmpdir`); defaults to the OS temporary directory. */
  temporaryDirectory?: string;
  /** Platform used instead of the host's to choose from manifest lists. */
  platform?: PlatformOverrides;
  /** Path of a registries.conf file to use instead of the system's. */
  registriesConfPath?: string;
  /**
   * Path of a containers-registries.d(5) directory to use instead of the default one
   * (`$HOME/.config/containers/registries.d` when it exists, else `/etc/containers/registries.d`):
   * where `docker://` signatures are stored (lookaside, sigstore attachments). skopeo's `--registries.d`.
   */
  registriesDirectoryPath?: string;
  /**
   * Each transport's own settings, keyed by the transport's name (`transportOptions.docker`,
   * `transportOptions.oci`, …); each transport package exports the type of its entry and ignores the
   * others. A transport refuses a malformed entry of its own with `ERR_GANTRY_USAGE`.
   */
  transportOptions?: Readonly<Record<string, unknown>>;
  /**
   * Where blobs were seen and which compressed blob is which layer, kept between runs (`copyImage`'s
   * `blobInfoCache`): transports record the locations they learn (docker: registry and repository) and
   * consult them (cross-repository mounts).
   */
  blobInfoCache?: BlobInfoCache;
}

/** What is known of a blob: at least its digest; size -1 when unknown. */
export interface BlobInfo {
  digest: Digest;
  /** Size in bytes, or -1 when unknown. */
  size: number;
  /** The MIME type the manifest gives the blob, when known. */
  mediaType?: string;
  /** Foreign layer URLs, when the manifest lists some. */
  urls?: string[];
  /** Annotations the manifest gives the blob. */
  annotations?: Record<string, string>;
}

/** A blob about to be written: the digest may be unknown while the pipeline is transforming it. */
export interface BlobToWrite {
  /** The digest the bytes have; undefined when the pipeline does not know it (e.g. compressing now). */
  digest?: Digest;
  /** Size in bytes, or -1 when unknown. */
  size: number;
  mediaType?: string;
}

/** A manifest exactly as stored, with its MIME type ('' when the storage does not record one). */
export interface ManifestBlob {
  bytes: Uint8Array;
  mediaType: string;
}

/** A readable blob with its size (-1 when unknown). */
export interface BlobStream {
  stream: Readable;
  size: number;
}

/** Options every source and destination call takes. */
export interface OperationOptions {
  signal?: AbortSignal;
}

/** Options of `ImageDestination.putManifest`. */
export interface PutManifestOptions extends OperationOptions {
  /**
   * True when the pipeline writes nothing more before `commit` (the top-level manifest of a copy without
   * signatures or referrers to store): a destination whose `commit` would only make this manifest
   * visible may make it visible now instead (a registry: one PUT by tag rather than a PUT by digest and,
   * at `commit`, a second one by tag). A refused manifest stores nothing, so the pipeline's fallback
   * to another manifest type is unaffected.
   */
  lastBeforeCommit?: boolean;
}

/** Options of `ImageDestination.putBlob`. */
export interface PutBlobOptions extends OperationOptions {
  /** True when the blob is the image config (some destinations store configs apart). */
  isConfig: boolean;
  /**
   * Optional, for a layer of an image: its position in the image manifest's `layers` (0-based, every
   * entry counted), as containers/image's `LayerIndex`. A layer listed more than once is written once,
   * with the position of its first entry. Gantry's copy pipeline sets it for every layer it writes
   * (not for configs, schema1's generated empty layer or referrers' blobs); destinations may ignore it.
   * A destination that builds layers on top of each other (containers-storage) uses it, with
   * `layerDiffIds`, to apply each layer as its bytes arrive instead of keeping the blob until `commit`.
   */
  layerIndex?: number;
  /**
   * Optional, with `layerIndex`: the image config's DiffIDs (`rootfs.diff_ids`), one per entry of the
   * manifest's `layers`, in order. Given when the pipeline read the config before the layers (see
   * `ImageDestinationProperties.wantsLayerDiffIds`) and it lists one sha256 DiffID per layer. The config
   * was verified against its digest, but whether a layer's contents have its DiffID is not known before
   * they are read: a destination that relies on it checks the uncompressed bytes against it.
   */
  layerDiffIds?: readonly Digest[];
  /**
   * Optional: when given, the caller lends the chunks of the blob stream and takes each back to reuse its
   * memory once the destination called this with it. A destination may call it once for each chunk it
   * read from the stream (the very `Uint8Array` it read), when it is done with that chunk: written out,
   * or dropped on a failure, and neither it nor anything it handed the chunk to reads those bytes again.
   * Calling it is optional (a destination that never does keeps working: the chunks are then left to the
   * garbage collector); calling it early, or twice for one chunk, lets other bytes take the chunk's place.
   * Gantry's copy pipeline sets it only where the destination is the last reader of the source's chunks.
   */
  chunkWritten?: (chunk: Uint8Array) => void;
}

/** Options of `ImageDestination.tryReusingBlob`. */
export interface TryReusingBlobOptions extends OperationOptions {
  /** True when the blob is the image config. */
  isConfig: boolean;
  /** Whether the destination may substitute an equivalent blob with a different digest. */
  canSubstitute: boolean;
  /** Optional: as `PutBlobOptions.layerIndex`. */
  layerIndex?: number;
  /** Optional: as `PutBlobOptions.layerDiffIds`. */
  layerDiffIds?: readonly Digest[];
}

/** Options of `ImageDestination.commit`. */
export interface CommitOptions extends OperationOptions {
  /**
   * Optional: the source's top-level manifest, exactly as read, when it is not the manifest of the image
   * written: the list the image was chosen from (a list copied without `--all`). Gantry's copy pipeline
   * sets it in that case only. containers-storage records it with the image (`manifest-<list digest>`),
   * as containers/image does, so that the image is found by the list's digest too.
   */
  topLevelManifest?: ManifestBlob;
}

/**
 * A manifest that names another manifest as its `subject` (OCI distribution-spec 1.1 referrers:
 * signatures, SBOMs, attestations attached to an image), described as a referrers index lists it.
 */
export interface ReferrerDescriptor {
  /** The referrer manifest's MIME type (an OCI image manifest or an OCI index). */
  mediaType: string;
  digest: Digest;
  size: number;
  /**
   * The manifest's `artifactType`; for an image manifest without one, its config's `mediaType`; absent
   * for an index without one.
   */
  artifactType?: string;
  /** The manifest's own annotations. */
  annotations?: Record<string, string>;
}

/** Options of `ImageSource.listReferrers`. */
export interface ListReferrersOptions extends OperationOptions {
  /** Only referrers of this artifact type. */
  artifactType?: string;
}

/** Capabilities of a source; constant for the life of the source. */
export interface ImageSourceProperties {
  /** Whether `getBlob` may be called concurrently. */
  hasThreadSafeGetBlob: boolean;
}

/** Capabilities of a destination; constant for the life of the destination. */
export interface ImageDestinationProperties {
  /**
   * Manifest MIME types the destination accepts, most preferred first; `undefined` means any type
   * (the pipeline then keeps the source's type). The pipeline converts when the source's type is not listed.
   */
  supportedManifestMimeTypes: readonly string[] | undefined;
  /**
   * What the destination wants done to layers: keep them as they are, compress uncompressed ones,
   * or decompress compressed ones. The pipeline does the work.
   */
  desiredLayerCompression: 'preserve' | 'compress' | 'decompress';
  /**
   * Optional, with `desiredLayerCompression: 'decompress'`: layers already compressed in one of these
   * formats are stored as they are instead (whoever reads them decompresses them, e.g. `docker load`), so
   * their size is known before their bytes arrive. Other layers are decompressed.
   */
  keptLayerCompressions?: readonly ('gzip' | 'zstd')[];
  /** Whether layers with foreign URLs are stored as references instead of being copied. */
  acceptsForeignLayerURLs: boolean;
  /** Whether images for another OS than the runtime's are refused (e.g. a daemon). */
  mustMatchRuntimeOS: boolean;
  /** Whether `putSignatures` can store signatures. When false, a copy with signatures fails unless they are removed. */
  supportsSignatures: boolean;
  /** Whether `putBlob` / `tryReusingBlob` may be called concurrently. */
  hasThreadSafePutBlob: boolean;
  /** Whether the destination ignores a docker reference embedded in the manifest (schema1). */
  ignoresEmbeddedDockerReference: boolean;
  /**
   * Optional: the pipeline reads each image's config before its layers and gives every layer's
   * `putBlob` / `tryReusingBlob` the config's DiffIDs (`layerDiffIds`) besides its `layerIndex`: for a
   * destination that applies layers in order as they arrive (containers-storage). Without it, the
   * config may be read after the layers.
   */
  wantsLayerDiffIds?: boolean;
}

/**
 * Reads one image (or one list of images) from a transport's storage.
 *
 * Rules:
 * - A source reads what is stored and returns it byte for byte; it never re-serialises a manifest.
 * - A source need not verify digests: the copy pipeline verifies every blob and manifest it reads
 *   against the digest a manifest or the reference names.
 * - Calls after `close()` are invalid.
 */
export interface ImageSource {
  readonly reference: ImageReference;
  readonly properties: ImageSourceProperties;
  /**
   * The top-level manifest (no `instanceDigest`) or the manifest of one instance of a list.
   * Rejects with `ERR_GANTRY_IMAGE_NOT_FOUND` when there is none.
   */
  getManifest(instanceDigest?: Digest, options?: OperationOptions): Promise<ManifestBlob>;
  /** A blob's bytes as a stream. Rejects with `ERR_GANTRY_BLOB_NOT_FOUND` when the blob is missing. */
  getBlob(info: BlobInfo, options?: OperationOptions): Promise<BlobStream>;
  /**
   * Signatures of the top-level image or of one instance, each as stored. Empty when none.
   *
   * Signature bytes are containers/image's storage form (`signature.Blob`, also the content of its
   * `dir:` `signature-<n>` files): a simple-signing (GPG) signature is the raw OpenPGP message (first
   * byte an OpenPGP packet tag, never 0); any other format is a 0 byte, the format name, a newline and
   * the format's data — a sigstore signature is `\0sigstore-json\n` + JSON
   * `{"mimeType", "payload" (base64), "annotations"}`. Transports that store signatures in another
   * form (the docker transport: lookaside files, sigstore attachment layers) convert to and from it.
   */
  getSignatures(instanceDigest?: Digest, options?: OperationOptions): Promise<Uint8Array[]>;
  /**
   * Optional: layer infos to use instead of the manifest's when copying (e.g. a store that keeps
   * layers uncompressed). Returns undefined to use the manifest's.
   */
  layerInfosForCopy?(instanceDigest?: Digest, options?: OperationOptions): Promise<BlobInfo[] | undefined>;
  /**
   * Optional (referrers): the manifests the storage holds whose `subject` is `subject` — any manifest
   * digest of this image (top level or instance) or of a referrer — in the storage's order; `[]` when
   * there are none. A source that implements it also returns each listed manifest from
   * `getManifest(referrer.digest)` (and, for an index, its instances likewise), and their blobs from
   * `getBlob`. The copy pipeline checks every listed manifest (digest, size, `subject`) and does not
   * trust the list. Sources without referrers leave it undefined (`copyReferrers` then refuses them).
   */
  listReferrers?(subject: Digest, options?: ListReferrersOptions): Promise<ReferrerDescriptor[]>;
  /** Releases resources. Idempotent. */
  close(): Promise<void>;
}

/** The result of `tryReusingBlob`. */
export type ReusedBlob = { reused: false } | { reused: true; blob: BlobInfo };

/**
 * Writes one image (or one list of images) into a transport's storage.
 *
 * Call order, which the copy pipeline follows and transports may rely on:
 *   1. `putBlob` / `tryReusingBlob` for every layer, then the config (concurrently only when
 *      `properties.hasThreadSafePutBlob`);
 *   2. `putManifest` for each instance (with its `instanceDigest`) and then the top-level manifest
 *      (without one);
 *   3. `putSignatures`, likewise per instance then top level;
 *   3b. with referrers (`copyReferrers`), for each referrer, after its subject was written: its blobs
 *      (`putBlob` / `tryReusingBlob`), for an index the manifests it lists (`putManifest` with their
 *      digest as `instanceDigest`), then `putReferrer`;
 *   4. `commit` once, when everything above succeeded;
 *   5. `close` always, also after a failure.
 *
 * Rules:
 * - Nothing is visible to readers of the storage until `commit`; `close` without `commit` discards
 *   every blob and manifest written, leaving the storage as it was (blobs already shared with other
 *   images stay).
 * - `putBlob` stores a blob under a temporary name and makes it permanent only after its stream ended
 *   without error: the pipeline's verification stage errors the stream *before* its end when the
 *   digest or size is wrong, so a blob is never stored under a wrong digest. A caller that gives
 *   `info.digest` guarantees this (wrap the stream in `verifyingStage`), so the destination need not
 *   hash the bytes again; when `info.digest` is undefined the destination computes it. `blobWriteStage`
 *   does both.
 * - A destination still checks the size it received against `info.size` when that is known.
 * - A destination may finish storing a blob after `putBlob` resolved (e.g. flush it to disk in the
 *   background before giving it its name); its `tryReusingBlob` and `commit` then wait for that, and
 *   `commit` fails when it failed.
 * - `putManifest` stores the bytes exactly as given.
 */
export interface ImageDestination {
  readonly reference: ImageReference;
  readonly properties: ImageDestinationProperties;
  /** Stores a blob from a stream; returns what was stored (digest and size as written). */
  putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo>;
  /**
   * Optional: checks whether the destination already has the blob (or can get it without the bytes
   * passing through Gantry, e.g. a registry mount) and, if so, makes it part of the image.
   */
  tryReusingBlob?(info: BlobInfo, options: TryReusingBlobOptions): Promise<ReusedBlob>;
  /**
   * Stores a manifest: the top-level one (no `instanceDigest`) or an instance of a list.
   * `mediaType` is the manifest's MIME type, as the pipeline determined it.
   */
  putManifest(
    manifest: Uint8Array,
    mediaType: string,
    instanceDigest?: Digest,
    options?: PutManifestOptions,
  ): Promise<void>;
  /**
   * Stores signatures for the top-level image or an instance. Rejects with `ERR_GANTRY_NOT_SUPPORTED` if
   * unsupported. Signatures are in the storage form described at `ImageSource.getSignatures`.
   */
  putSignatures(signatures: Uint8Array[], instanceDigest?: Digest, options?: OperationOptions): Promise<void>;
  /**
   * Optional (referrers): stores `manifest`, a manifest whose `subject` is `subject`, exactly as given
   * under `referrer.digest` (never under a tag, never as the image's manifest), and records it as a
   * referrer of `subject` so that readers of the storage list it (a registry's referrers API, or the
   * referrers tag schema `<alg>-<hex>` it keeps up to date itself; an index entry…). `referrer` is the
   * descriptor to record, computed by the pipeline as distribution-spec 1.1 says (`artifactType`,
   * annotations). Recording the same referrer twice keeps one entry. The manifest's blobs were stored
   * before (call order 3b). Like everything else, the record becomes visible at `commit`; where the
   * storage makes manifests readable by digest at once (a registry), the manifest itself may be too.
   * Destinations without referrers leave it undefined (the pipeline then refuses to copy referrers to them).
   */
  putReferrer?(
    manifest: Uint8Array,
    referrer: ReferrerDescriptor,
    subject: Digest,
    options?: OperationOptions,
  ): Promise<void>;
  /** Makes everything written visible. Called once, last. */
  commit(options?: CommitOptions): Promise<void>;
  /** Releases resources and, without a prior `commit`, discards what was written. Idempotent. */
  close(): Promise<void>;
}

/**
 * An image's name within a transport. Immutable: methods return new values and never change the
 * reference. Parsing validates; a reference that exists as an object is syntactically valid.
 */
export interface ImageReference {
  readonly transport: Transport;
  /**
   * The reference without the transport prefix, such that
   * `transport.parseReference(ref.stringWithinTransport())` gives an equal reference.
   */
  stringWithinTransport(): string;
  /** The docker reference the image is named by, if the transport has one (e.g. `oci:dir:tag` has none). */
  dockerReference(): DockerReference | undefined;
  /**
   * The identity used to look up policy.json scopes for this transport, e.g. an absolute path for
   * `dir:`; '' when the transport has no per-image scopes.
   */
  policyConfigurationIdentity(): string;
  /** Less specific scopes, most specific first, that policy.json may also name. */
  policyConfigurationNamespaces(): string[];
  /** Opens the image for reading. Rejects with `ERR_GANTRY_IMAGE_NOT_FOUND` if it does not exist. */
  newImageSource(context?: TransportContext): Promise<ImageSource>;
  /** Opens the image for writing. */
  newImageDestination(context?: TransportContext): Promise<ImageDestination>;
  /** Deletes the image. Rejects with `ERR_GANTRY_IMAGE_NOT_FOUND` if it does not exist. */
  deleteImage(context?: TransportContext): Promise<void>;
}

/**
 * A transport plugin. A transport package exports a factory (`createXTransport(options)`) and a
 * default instance (its `default` export and a named export); Gantry never registers transports as
 * an import side effect: applications list the ones they use in a `TransportRegistry`.
 */
export interface Transport {
  /** The contract version this transport implements. */
  readonly specificationVersion: TransportSpecificationVersion;
  /** The transport's name, as written before the first ':' of a reference (`oci`, `docker`). */
  readonly name: string;
  /** Parses the part of a reference after `name:`; throws `ERR_GANTRY_INVALID_REFERENCE` naming the problem. */
  parseReference(reference: string): ImageReference;
  /** Checks that `scope` is valid as a policy.json scope for this transport; throws if not. */
  validatePolicyConfigurationScope(scope: string): void;
  /**
   * Optional: every tag of the repository (or archive) `reference` belongs to, in the order the
   * storage lists them; the reference's own tag or digest is ignored. Used by `inspect` (RepoTags)
   * and `list-tags`; transports without tags leave it undefined. A repository that does not exist →
   * `ERR_GANTRY_IMAGE_NOT_FOUND`; `reference` must come from this transport.
   */
  listTags?(reference: ImageReference, context?: TransportContext): Promise<string[]>;
  /**
   * Optional: the digest of the manifest `reference` names, learnt without downloading it where the
   * storage allows (a registry's HEAD request, `Docker-Content-Digest`); undefined when there is no such
   * image. `sync` uses it to skip images the destination already has.
   */
  manifestDigest?(reference: ImageReference, context?: TransportContext): Promise<Digest | undefined>;
  /**
   * Optional: the digest, media type and size of the manifest `reference` names, learnt without
   * downloading it (a registry's HEAD request); undefined when there is no such image. `purpose`
   * `pull` asks where a copy would read from (registry mirrors first), `push` where it would write.
   * `sync` uses it to skip, with HEAD requests only, images the destination already has.
   * `mediaType` and `size` are undefined when the storage does not say.
   */
  manifestHead?(
    reference: ImageReference,
    context: TransportContext | undefined,
    purpose: 'pull' | 'push',
  ): Promise<{ digest: Digest; mediaType: string | undefined; size: number | undefined } | undefined>;
  /**
   * Optional, with `listTags`: the same tags, and the name of the repository that listed them, for a
   * transport that resolves names when it opens them (docker:// short names: the candidate that
   * answered). `list-tags` prints `repository` as skopeo's `Repository`.
   */
  listTagsWithRepository?(
    reference: ImageReference,
    context?: TransportContext,
  ): Promise<{ repository: string; tags: string[] }>;
}
