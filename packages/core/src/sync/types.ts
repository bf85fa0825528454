import type { CopyOptions, CopyProgressEvent } from '../copy/types.js';
import type { Digest } from '../digest.js';
import type { TransportContext } from '../transport/contract.js';
import type { TransportRegistry } from '../transport/registry.js';
import type { SyncShard } from './shard.js';

/** What `source` names: a registry repository or image, a directory tree of `dir:` images, a YAML file. */
export type SyncSourceKind = 'docker' | 'dir' | 'yaml';
/** Where images go: a registry (namespace), a directory (one `dir:` image per source image), an OCI layout. */
export type SyncDestinationKind = 'docker' | 'dir' | 'oci';

/** Options of `syncImages`. The copy options apply to every image. */
export interface SyncOptions
  extends Pick<
    CopyOptions,
    | 'policy'
    | 'imageListSelection'
    | 'manifestMediaType'
    | 'preserveDigests'
    | 'removeSignatures'
    | 'retryTimes'
    | 'retryDelayMs'
    | 'blobConcurrency'
    | 'signing'
    | 'tuneAllocatorForLargeBlobs'
  > {
  /** The transports to use: `docker`, `dir` and `oci` as the kinds need. */
  transports: TransportRegistry;
  sourceKind: SyncSourceKind;
  /** `host/repository[:tag|@digest]`, a directory, or a YAML file path. */
  source: string;
  destinationKind: SyncDestinationKind;
  /** `host[/namespace]`, a directory, or an OCI layout directory. */
  destination: string;
  /** Context for reading sources (`--src-*`); YAML registries override TLS, certificates and credentials. */
  sourceContext?: TransportContext;
  /** Context for writing (`--dest-*`). */
  destinationContext?: TransportContext;
  /** Name destinations with the full source name (`--scoped`) instead of its last component. */
  scoped?: boolean;
  /** Plan only: list what would be copied and what is already there, write nothing. */
  dryRun?: boolean;
  /** Go on after an image fails, and report every failure at the end (`--keep-going`). */
  keepGoing?: boolean;
  /** Images copied at once; default 4. */
  imageConcurrency?: number;
  /** Images copied at once from or to one registry; default `imageConcurrency`. */
  registryConcurrency?: number;
  /** Tags matching any of these regular expressions (RE2 style, unanchored) are not synced. */
  excludeTags?: readonly string[];
  /** At most this many tags per repository: the highest versions (see filters.ts). */
  newestTags?: number;
  /** Only the images of this shard (see shard.ts). */
  shard?: SyncShard;
  /** Aborts the sync: copies in progress are abandoned (nothing half-written), `syncImages` rejects. */
  signal?: AbortSignal;
  /** Receives progress events; must not throw. */
  onProgress?: (event: SyncProgressEvent) => void;
}

/** An image of a sync: where it comes from and goes to. */
export interface SyncImage {
  /** Position in the plan (0-based, the order images were found). */
  index: number;
  /** The source as `transport:reference`. */
  source: string;
  /** The destination as `transport:reference`. */
  destination: string;
  /**
   * Size in bytes of what the image's manifests reference (configs and layers), from the manifests;
   * 0 for an image skipped after HEAD requests only (its manifests are not downloaded).
   */
  size: number;
}

/** What happened to an image. */
export type SyncImageResult = 'copied' | 'skipped' | 'failed' | 'would-copy' | 'not-started';

/** One image (or one repository that could not be listed) in the result and the `--report` file. */
export interface SyncReportEntry {
  source: string;
  /** '' for a repository that could not be listed. */
  destination: string;
  /** The destination's manifest digest (copied, skipped), or the source's (would-copy). */
  digest?: Digest;
  result: SyncImageResult;
  /** Planned size (see `SyncImage.size`). */
  size: number;
  /** Blob bytes transferred for this image. */
  bytes: number;
  durationMs?: number;
  error?: { code: string; message: string };
}

/** The result of `syncImages`. */
export interface SyncResult {
  entries: SyncReportEntry[];
  copied: number;
  skipped: number;
  failed: number;
  wouldCopy: number;
  notStarted: number;
  /** Blob bytes transferred. */
  bytes: number;
  durationMs: number;
  dryRun: boolean;
}

/** Progress of a sync. */
export type SyncProgressEvent =
  /** A repository's tags are being listed. */
  | { type: 'list-tags'; repository: string }
  /** Something the user should know that is not an error (e.g. a repository with no tags). */
  | { type: 'warning'; message: string }
  /** Planning done: `toCopy` images will be copied (or would be, dry run), `skipped` are already there. */
  | { type: 'planned'; images: readonly SyncImage[]; toCopy: number; skipped: number; failed: number }
  | { type: 'image-start'; image: SyncImage }
  /** A copy event of the image's copy, with the image's blob bytes transferred so far. */
  | { type: 'image-progress'; image: SyncImage; bytes: number; event: CopyProgressEvent }
  | { type: 'image-done'; image: SyncImage; entry: SyncReportEntry };
