import type { Digest } from '../digest.js';
import type { Policy } from '../policy/index.js';
import type { SigningOptions } from '../signature/sign.js';
import type { BlobInfo, ReferrerDescriptor, TransportContext } from '../transport/contract.js';
import type { BlobInfoCache } from './blob-info-cache.js';

/** Which part of a manifest list (OCI index, Docker manifest list) `copyImage` copies. */
export type ImageListSelection = 'system' | 'all' | 'index-only';

/** Options of `copyImage`. Every member is optional. */
export interface CopyOptions {
  /** Aborts the copy; `copyImage` then rejects with `ERR_GANTRY_ABORTED` and nothing is committed. */
  signal?: AbortSignal;
  /** Context used to open the source (`--src-*` flags); `platform` chooses from manifest lists. */
  sourceContext?: TransportContext;
  /** Context used to open the destination (`--dest-*` flags). */
  destinationContext?: TransportContext;
  /** Signature policy; default `loadDefaultPolicy()` like skopeo; `insecureAcceptAnythingPolicy()` for none. */
  policy?: Policy;
  /**
   * For a manifest list: 'system' (default) copies the one image matching the platform; 'all' copies every
   * image and the list (`--all`, `--multi-arch all`); 'index-only' copies only the list's own bytes.
   */
  imageListSelection?: ImageListSelection;
  /**
   * Copy only these instances of a list (and the list, which keeps naming every instance, as c/image's
   * default "sparse" list). Given with 'system', the copy behaves as 'all' restricted to these instances.
   */
  instanceDigests?: Digest[];
  /** Forced destination manifest type (`-f/--format`). */
  manifestMediaType?: string;
  /** Refuse (`ERR_GANTRY_DIGESTS_NOT_PRESERVABLE`) any copy that would change a manifest or layer digest. */
  preserveDigests?: boolean;
  /**
   * Also copy the referrers (OCI 1.1 `subject`: signatures, SBOMs, attestations) of every manifest the copy
   * writes — each copied instance of a list and the list itself, or the one image chosen from a list —
   * and, recursively, the referrers of those referrers (`--copy-referrers`). Each referrer's blobs go
   * through the verified blob path and its manifest is written byte for byte under its digest, never
   * tagged (`ImageDestination.putReferrer`). Referrers name their subject by digest, so the image's
   * manifests must keep theirs: a copy that would change one (conversion, `-f`, compression change,
   * edited list) fails with `ERR_GANTRY_DIGESTS_NOT_PRESERVABLE`, as with `preserveDigests`. A source
   * that cannot list referrers fails the copy before anything is written, a destination that cannot
   * store them only when there are referrers to copy (`ERR_GANTRY_NOT_SUPPORTED`). At most
   * `maximumReferrerDepth` levels and `maximumReferrerCount` referrers are copied, else the copy fails.
   */
  copyReferrers?: boolean;
  /** Do not copy signatures (`--remove-signatures`). */
  removeSignatures?: boolean;
  /**
   * Add signatures to every manifest written (each copied instance and the list, or the single image),
   * after the copied ones: GPG simple signing and/or sigstore (skopeo's `--sign-by`,
   * `--sign-by-sigstore-private-key`, `--sign-identity`). Keys are prepared before anything is copied.
   */
  signing?: SigningOptions;
  /** How many times a failed retryable operation (opening the source or destination included) is tried again; default 0. */
  retryTimes?: number;
  /** Delay between retries; undefined = 1 s, 2 s, 4 s, … as skopeo. */
  retryDelayMs?: number;
  /** How many blobs are copied at once (`--image-parallel-copies`); default 6. */
  blobConcurrency?: number;
  /**
   * Compression for layers the destination wants compressed (`--dest-compress-format`); default gzip.
   * When given, layers compressed otherwise are recompressed, and — unlike skopeo, which keeps a blob
   * the destination already holds in another compression — only destination blobs in this compression
   * are reused. zstd layers need an OCI manifest: a Docker schema2/schema1 source is converted to OCI
   * when the manifest may change, else the copy is refused (`ERR_GANTRY_MANIFEST_CONVERSION_FAILED`).
   * `zstd:chunked` writes zstd layers as containers/storage's chunked compressor does (frames per file
   * chunk, a table of contents and tar-split in skippable frames, and layer annotations locating them;
   * needs the zstd-napi package); zstd layers already zstd:chunked are kept, other zstd layers are
   * recompressed.
   */
  destinationCompression?: 'gzip' | 'zstd' | 'zstd:chunked';
  /**
   * Also compress to `destinationCompression` for destinations that keep layers as they come (`dir:`,
   * `oci:`'s compressed layers), so every layer ends in that compression (`--dest-force-compress-format`).
   * Needs `destinationCompression`.
   */
  forceCompressionFormat?: boolean;
  /** Compression level (`--dest-compress-level`); gzip 1-9 (default 3), zstd 1-22 (default 3). */
  compressionLevel?: number;
  /**
   * The blob-info cache (see `DiskBlobInfoCache`): a file path (a `DiskBlobInfoCache` there, flushed when
   * the copy ends), a cache object, or undefined / false for none. The CLI uses
   * `defaultBlobInfoCachePath()`. With it, a layer already stored at the destination in the wanted
   * compression (known from an earlier copy) is reused instead of compressed again, and transports
   * mount blobs from where they were seen.
   */
  blobInfoCache?: BlobInfoCache | string | false;
  /**
   * Set glibc's allocator for streaming before a layer of 64 MiB or more is copied (see
   * `tuneAllocatorForLargeBlobs`): process-wide and lasting, so off by default for a program that embeds
   * Gantry; the CLI turns it on. Skipped when the environment sets glibc's malloc variables or
   * `GANTRY_MALLOC_TUNING=off`.
   */
  tuneAllocatorForLargeBlobs?: boolean;
  /** Receives progress events; must not throw. */
  onProgress?: (event: CopyProgressEvent) => void;
}

/** The kind of blob an event is about. */
export type CopiedBlobKind = 'layer' | 'config';

/** Progress of a copy, in the order skopeo prints its messages. */
export type CopyProgressEvent =
  | { type: 'copy-start'; source: string; destination: string }
  | { type: 'list-start'; instanceCount: number; copyCount: number }
  | { type: 'image-start'; instanceDigest?: Digest; index?: number; total?: number }
  | { type: 'signatures-read' }
  | { type: 'blob-start'; blob: BlobInfo; kind: CopiedBlobKind }
  | { type: 'blob-progress'; blob: BlobInfo; kind: CopiedBlobKind; bytes: number; total: number }
  | {
      type: 'blob-done';
      blob: BlobInfo;
      kind: CopiedBlobKind;
      result: 'copied' | 'reused' | 'skipped';
      bytes: number;
    }
  | { type: 'manifest-write'; instanceDigest?: Digest }
  | { type: 'signatures-write'; count: number; instanceDigest?: Digest }
  /** A signature is being made (`message` is skopeo's line, e.g. `Signing manifest using simple signing`). */
  | { type: 'signing'; message: string; instanceDigest?: Digest }
  /** A referrer of `subject` is about to be copied (its blobs' events follow). */
  | { type: 'referrer-start'; subject: Digest; referrer: ReferrerDescriptor }
  | { type: 'retry'; attempt: number; error: Error; delayMs: number };

/** What `copyImage` wrote as the destination's top-level manifest. */
export interface CopyResult {
  manifestDigest: Digest;
  manifest: Uint8Array;
  manifestMediaType: string;
}
