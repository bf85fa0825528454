import type { Readable } from 'node:stream';
import type { Digest } from '../digest.js';

/**
 * A platform as manifest lists describe it. Structurally the same as core/manifest's `Platform`, so
 * values pass between the two freely.
 */
export interface FixturePlatform {
  os: string;
  architecture: string;
  variant?: string;
  osVersion?: string;
  osFeatures?: string[];
}

/**
 * One entry of a layer tar, declared rather than read from disk. Paths are relative to the root of
 * the image filesystem ('/' and './' prefixes are removed); entries are written in the order given.
 *
 * - `file`: a regular file with `content`, or `randomSize` bytes of pseudo-random data derived from
 *   `seed` (default: the path), generated while streaming so any size is fine. Without either it is empty.
 * - `whiteout`: deletes `path` from lower layers by writing an empty `<dir>/.wh.<name>` file.
 * - `opaque`: hides everything lower layers put in directory `path` by writing `<path>/.wh..wh..opq`.
 */
export type FixtureEntry =
  | {
      type: 'file';
      path: string;
      content?: string | Uint8Array;
      randomSize?: number;
      seed?: string;
      mode?: number;
      uid?: number;
      gid?: number;
    }
  | { type: 'directory'; path: string; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'hardlink'; path: string; target: string }
  | { type: 'whiteout'; path: string }
  | { type: 'opaque'; path: string };

/**
 * How a layer blob is compressed. `gzip` uses node:zlib at a fixed level, so output is deterministic
 * for a given zlib. `zstd` is the extension point for zstd layers: it works only where node:zlib offers
 * zstd (Node ≥ 22.15) and only for OCI images; elsewhere building rejects with `ERR_GANTRY_NOT_SUPPORTED`.
 */
export type FixtureLayerCompression = 'gzip' | 'none' | 'zstd';

/** One layer of a fixture image: its entries, in tar order, and its compression. */
export interface FixtureLayerSpec {
  entries: FixtureEntry[];
  /** Default `gzip`. */
  compression?: FixtureLayerCompression;
  /** The `created_by` text of the layer's history entry; default `gantry fixture layer <n>`. */
  createdBy?: string;
}

/** The `config` section of an image config (what a container runs with). */
export interface FixtureRunConfig {
  Env?: string[];
  Labels?: Record<string, string>;
  Cmd?: string[];
  Entrypoint?: string[];
  WorkingDir?: string;
  User?: string;
}

/** One image. `format` default `oci`; `platform` default linux/amd64; `created` default 2024-01-01T00:00:00Z. */
export interface FixtureImageSpec {
  format?: 'oci' | 'docker';
  layers: FixtureLayerSpec[];
  platform?: FixturePlatform;
  config?: FixtureRunConfig;
  /** RFC 3339 time used for `created`, history and every tar entry's mtime. */
  created?: string;
  /** OCI manifest annotations (ignored for docker, which has none). */
  annotations?: Record<string, string>;
  /**
   * History entries of instructions that made no layer (`empty_layer: true`, as `ENV` or `CMD` in a
   * Dockerfile), each placed after the history entry of layer `afterLayer` (0-based).
   */
  emptyLayerHistory?: Array<{ afterLayer: number; createdBy: string }>;
}

/** A multi-platform image: an OCI index (`oci`, default) or a Docker manifest list (`docker`). */
export interface FixtureListSpec {
  format?: 'oci' | 'docker';
  /** The instances; each takes the list's format (an instance naming another format is an error). */
  images: FixtureImageSpec[];
  /** OCI index annotations (ignored for docker). */
  annotations?: Record<string, string>;
}

/** A blob written by the fixture builder: a file named by the digest's hex in the output directory. */
export interface FixtureBlob {
  digest: Digest;
  size: number;
  mediaType: string;
  /** Absolute path of the file holding the bytes. */
  path: string;
  /** A fresh stream of the bytes. */
  open(): Readable;
}

/** What `buildFixtureImage` produced. Manifests are small and kept in memory; blobs stay in files. */
export interface FixtureImage {
  /** The manifest a reference to the image resolves to: the image's, or the list's. */
  topLevel: { digest: Digest; bytes: Uint8Array; mediaType: string };
  /** Every manifest, including the top-level one, by digest. */
  manifests: Map<Digest, { bytes: Uint8Array; mediaType: string }>;
  /** Configs and layers (not manifests), by digest. */
  blobs: Map<Digest, FixtureBlob>;
  /** The single images, in list order (one entry for a single image). */
  images: Array<{
    manifestDigest: Digest;
    configDigest: Digest;
    /** Layer blob digests, base first. */
    layerDigests: Digest[];
    /** Uncompressed layer digests, base first. */
    diffIds: Digest[];
    platform: FixturePlatform;
  }>;
}

/** Options of `buildFixtureImage`. */
export interface BuildFixtureOptions {
  /** Where blob files are written (created when missing); they are named by their digest's hex. */
  directory: string;
  signal?: AbortSignal;
}
