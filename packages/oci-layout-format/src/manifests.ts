/**
 * What manifests and indexes of a layout refer to: the blobs and instances they list, everything
 * reachable from `index.json` (to decide what may be deleted or must be kept), and the checks on
 * manifests written into a layout.
 */
import {
  type Digest,
  digestAlgorithm,
  digestOf,
  ErrorCodes,
  GantryError,
  guessManifestMediaType,
  isManifestListMediaType,
  type ManifestBlob,
  MediaTypes,
  parseDigest,
} from '@gantry/core/transport';
import {
  type GuessManifestMediaType,
  type LayoutIndex,
  layoutError,
  parseDescriptor,
  parseJsonObject,
} from './layout.js';

/** The digests a manifest or index refers to directly: config and layers, or list entries. */
export interface ManifestReferences {
  /** Blobs (configs and layers) the manifest refers to. */
  blobs: Digest[];
  /** Manifests (list entries) the index refers to, with their media types. */
  manifests: Array<{ digest: Digest; mediaType: string }>;
}

/**
 * Lists what a manifest refers to (its type guessed from the bytes with `guessMediaType` when
 * `mediaType` is ''). Understands OCI manifests and indexes and Docker schema 2 manifests and lists;
 * throws `ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE` for anything else, so callers that must not lose data
 * (garbage collection, rewriting an archive) stop instead of guessing. A `subject` (another image,
 * possibly not in the layout) is not followed.
 */
export function manifestReferences(
  bytes: Uint8Array,
  mediaType: string,
  description: string,
  guessMediaType: GuessManifestMediaType = guessManifestMediaType,
): ManifestReferences {
  const effectiveType = mediaType === '' ? guessMediaType(bytes) : mediaType;
  const content = parseJsonObject(bytes, description);
  const result: ManifestReferences = { blobs: [], manifests: [] };
  switch (effectiveType) {
    case MediaTypes.OciManifest:
    case MediaTypes.DockerManifest: {
      if (content.config !== undefined) {
        result.blobs.push(parseDescriptor(content.config, `${description} config`).digest);
      }
      const layers = content.layers ?? [];
      if (!Array.isArray(layers)) throw layoutError(`${description} has "layers" that is not an array`);
      layers.forEach((layer, position) => {
        result.blobs.push(parseDescriptor(layer, `${description} layers[${position}]`).digest);
      });
      return result;
    }
    case MediaTypes.OciIndex:
    case MediaTypes.DockerManifestList: {
      const manifests = content.manifests ?? [];
      if (!Array.isArray(manifests)) throw layoutError(`${description} has "manifests" that is not an array`);
      manifests.forEach((entry, position) => {
        const descriptor = parseDescriptor(entry, `${description} manifests[${position}]`);
        result.manifests.push({ digest: descriptor.digest, mediaType: descriptor.mediaType });
      });
      return result;
    }
    default:
      throw new GantryError(
        ErrorCodes.UnsupportedManifestType,
        `${description} has unsupported manifest type ${JSON.stringify(effectiveType)}`,
      );
  }
}

/**
 * Every digest (manifests included) reachable from `roots`, reading manifests with `readManifest`
 * (resolving undefined when absent). Throws `ERR_GANTRY_INVALID_LAYOUT` when a manifest is missing and
 * `manifestReferences`' errors when one is not understood: callers use this to decide what may be
 * deleted or dropped, and must not do so when they cannot know.
 */
export async function reachableDigests(
  readManifest: (digest: Digest) => Promise<Uint8Array | undefined>,
  roots: ReadonlyArray<{ digest: Digest; mediaType: string }>,
  guessMediaType: GuessManifestMediaType = guessManifestMediaType,
): Promise<Set<Digest>> {
  const reachable = new Set<Digest>();
  const pending = [...roots];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (reachable.has(next.digest)) continue;
    reachable.add(next.digest);
    const bytes = await readManifest(next.digest);
    if (bytes === undefined) {
      throw layoutError(`manifest ${next.digest} referred to by index.json is missing`);
    }
    const references = manifestReferences(bytes, next.mediaType, `manifest ${next.digest}`, guessMediaType);
    for (const blob of references.blobs) reachable.add(blob);
    pending.push(...references.manifests);
  }
  return reachable;
}

/**
 * The digest a manifest is stored under: its canonical digest for the top-level manifest
 * (`instanceDigest` undefined), else `instanceDigest`, which the bytes must match
 * (`ERR_GANTRY_DIGEST_MISMATCH` otherwise).
 */
export function manifestStorageDigest(manifest: Uint8Array, instanceDigest: Digest | undefined): Digest {
  if (instanceDigest === undefined) return digestOf(manifest);
  const digest = parseDigest(instanceDigest);
  const actual = digestOf(manifest, digestAlgorithm(digest));
  if (actual !== digest) {
    throw new GantryError(
      ErrorCodes.DigestMismatch,
      `manifest instance ${digest}: digest mismatch: the bytes given have digest ${actual}`,
    );
  }
  return digest;
}

/**
 * The media types of a top-level list's instances, as the list records them (empty for a single image,
 * an instance without a media type, or a malformed list, which the copy pipeline reports).
 */
export function listInstanceMediaTypes(topLevel: ManifestBlob): Map<Digest, string> {
  const types = new Map<Digest, string>();
  if (!isManifestListMediaType(topLevel.mediaType)) return types;
  try {
    for (const instance of manifestReferences(topLevel.bytes, topLevel.mediaType, 'manifest list')
      .manifests) {
      if (instance.mediaType !== '') types.set(instance.digest, instance.mediaType);
    }
  } catch {
    // A malformed list: fall back to guessing.
  }
  return types;
}

/**
 * The media type of a list instance: what the top-level list records, else a typed `index.json` entry
 * with that digest, else guessed from the bytes.
 */
export function instanceMediaType(
  digest: Digest,
  bytes: Uint8Array,
  listTypes: ReadonlyMap<Digest, string>,
  index: LayoutIndex,
  guessMediaType: GuessManifestMediaType = guessManifestMediaType,
): string {
  return (
    listTypes.get(digest) ??
    index.entries.find((entry) => entry.digest === digest && entry.mediaType !== '')?.mediaType ??
    guessMediaType(bytes)
  );
}
