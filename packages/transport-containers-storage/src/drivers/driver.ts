/**
 * The storage-driver contract of `@gantry/transport-containers-storage`.
 *
 * A driver owns how one layer's files sit on disk under `<graphroot>/<driver name>/` (vfs: a full
 * directory per layer; overlay: `overlay/<id>/diff` plus `link`, `lower`, `work`, `merged` and the
 * `overlay/l/` short links; btrfs: a subvolume per layer, snapshotted from its parent). Everything else —
 * `<driver>-layers/layers.json`, `<driver>-images/images.json`, big-data files, `<id>.tar-split.gz`,
 * locking, IDs — belongs to the store and is the same for every driver.
 *
 * Rules:
 * - Layer IDs are 64 lowercase hex characters, chosen by the store; a driver never invents one.
 * - `createLayer` then `applyDiff` is how a layer is written; the store marks the layer `incomplete` in
 *   layers.json before `createLayer` and clears the flag only after `applyDiff` resolved, so a crash in
 *   between is cleaned up by the store calling `removeLayer`.
 * - `applyDiff` reads the uncompressed layer tar exactly once, as a stream (memory does not grow with the
 *   layer), records its tar-split, and never writes outside the layer's directory (`..`, absolute paths,
 *   symlink and hardlink escapes are refused with `ERR_GANTRY_INVALID_LAYER`, naming the entry).
 * - `diffFileGetter` plus the layer's tar-split regenerate the layer tar byte for byte.
 * - A driver is one module; a separate package can supply one through `StorageDriverFactory`.
 */
import type { Readable } from 'node:stream';

/** Host ID ↔ container ID ranges (rootless: the ranges of /etc/subuid and /etc/subgid). */
export interface IdMapping {
  containerId: number;
  hostId: number;
  size: number;
}

export interface StorageDriverOptions {
  /** The store's graph root (`/var/lib/containers/storage`, `$XDG_DATA_HOME/containers/storage`, …). */
  graphRoot: string;
  /** The store's run root. */
  runRoot: string;
  /** Driver options from storage.conf / the reference (`overlay.mountopt=…`, `vfs.ignore_chown_errors=true`, …). */
  options: readonly string[];
  /** Ownership mapping applied to files written; empty or undefined = identity. */
  uidMappings?: readonly IdMapping[];
  gidMappings?: readonly IdMapping[];
  /** True when running without real root (overlay whiteouts then use `user.overlay.*` xattrs). */
  rootless: boolean;
}

export interface ApplyDiffOptions {
  signal?: AbortSignal;
}

export interface ApplyDiffResult {
  /** sha256 of the uncompressed tar bytes read (the layer's DiffID), `sha256:<hex>`. */
  uncompressedDigest: string;
  /** Number of uncompressed tar bytes read. */
  uncompressedSize: number;
  /** The layer's tar-split, gzip-compressed, exactly as containers/storage writes `<id>.tar-split.gz`. */
  tarSplitGzip: Uint8Array;
  /**
   * The distinct owner IDs of the tar's entries as written in the tar (before any mapping), ascending,
   * skipping `.wh.*` whiteout entries: layers.json's `uidset` / `gidset`, as containers/storage records them.
   */
  uids: number[];
  gids: number[];
}

/**
 * Opens the content of one regular file of a layer, by its path inside the layer (as in the tar). The
 * optional second argument is the path's exact bytes (tar-split's `name_raw`, for names that are not UTF-8).
 */
export type LayerFileGetter = (pathInLayer: string, pathBytes?: Buffer) => Promise<Readable>;

export interface StorageDriver {
  /** `vfs`, `overlay`, `btrfs`: the name used in `<name>-layers`, `<name>-images` and references. */
  readonly name: string;
  /** Creates the driver's home directories (idempotent). */
  initialize(): Promise<void>;
  /** Creates layer `id` on top of `parentId` (undefined for a base layer), with no content of its own yet. */
  createLayer(id: string, parentId: string | undefined): Promise<void>;
  /** Applies an uncompressed layer tar (a stream, or any async iterable of its bytes) to a layer made by `createLayer`. */
  applyDiff(
    id: string,
    parentId: string | undefined,
    diff: AsyncIterable<Uint8Array>,
    options?: ApplyDiffOptions,
  ): Promise<ApplyDiffResult>;
  /** Reads files of the layer's own diff, for regenerating the layer tar from its tar-split. */
  diffFileGetter(id: string): LayerFileGetter;
  /** Removes the layer's files (idempotent: a missing layer is not an error). */
  removeLayer(id: string): Promise<void>;
  /** Whether the layer's files exist. */
  layerExists(id: string): Promise<boolean>;
}

export type StorageDriverFactory = (options: StorageDriverOptions) => StorageDriver;
