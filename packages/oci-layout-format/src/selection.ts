/**
 * Choosing and recording images in `index.json`: which entry a reference designates (by name, `@N`, or
 * the only image), and how the entry of a newly written image joins the index.
 */
import { type Digest, ErrorCodes, GantryError, guessManifestMediaType } from '@gantry/core/transport';
import {
  type GuessManifestMediaType,
  type IndexEntry,
  type LayoutIndex,
  readableEntryMediaTypes,
  referenceNameAnnotation,
} from './layout.js';

/** What a reference selects in an index: a name, an `@N` position, or (neither) the only entry. */
export interface ImageSelector {
  /** The image name; '' when none. */
  imageName: string;
  /** The `@N` position; -1 when none. */
  sourceIndex: number;
}

/** How messages name the layout: `OCI layout ./d` or `OCI archive /a.tar`, and the transport (`oci`). */
export interface LayoutLocation {
  /** `OCI layout` or `OCI archive`. */
  kind: string;
  /** The transport name, for the hint to choose an image (`oci:<location>:<name>`). */
  transportName: string;
  /** The path as shown in messages. */
  path: string;
}

/**
 * The `index.json` entry a selector designates (and its position), as containers/image's
 * `getManifestDescriptor`:
 * - a name: the entry whose `org.opencontainers.image.ref.name` is that name and whose type is a
 *   manifest or index (OCI or Docker); `ERR_GANTRY_IMAGE_NOT_FOUND` when none has the name,
 *   `ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE` when only entries of other types have it;
 * - `@N`: the N-th entry; `ERR_GANTRY_IMAGE_NOT_FOUND` when there are not that many;
 * - nothing: the only entry; `ERR_GANTRY_IMAGE_NOT_FOUND` when there is none,
 *   `ERR_GANTRY_INVALID_REFERENCE` when there are several (the user must choose one).
 */
export function findIndexEntry(
  selector: ImageSelector,
  index: LayoutIndex,
  location: LayoutLocation,
): { entry: IndexEntry; position: number } {
  const where = `${location.kind} ${location.path}`;
  if (selector.sourceIndex !== -1) {
    const entry = index.entries[selector.sourceIndex];
    if (entry === undefined) {
      throw new GantryError(
        ErrorCodes.ImageNotFound,
        `image @${selector.sourceIndex} not found in ${where}: index ${selector.sourceIndex} is too large, only ${index.entries.length} entries available`,
      );
    }
    return { entry, position: selector.sourceIndex };
  }
  if (selector.imageName !== '') {
    const unsupportedTypes: string[] = [];
    for (const [position, entry] of index.entries.entries()) {
      if (entry.referenceName !== selector.imageName) continue;
      if (readableEntryMediaTypes.includes(entry.mediaType)) return { entry, position };
      unsupportedTypes.push(entry.mediaType);
    }
    if (unsupportedTypes.length > 0) {
      throw new GantryError(
        ErrorCodes.UnsupportedManifestType,
        `image "${selector.imageName}" in ${where} has unsupported manifest MIME types ${JSON.stringify(unsupportedTypes)}`,
      );
    }
    throw new GantryError(
      ErrorCodes.ImageNotFound,
      `image "${selector.imageName}" not found in ${where}: no descriptor found for reference "${selector.imageName}"`,
    );
  }
  if (index.entries.length === 0) {
    throw new GantryError(ErrorCodes.ImageNotFound, `no image found in ${where}: index.json is empty`);
  }
  if (index.entries.length > 1) {
    const prefix = `${location.transportName}:${location.path}`;
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `more than one image in ${where} (${index.entries.length}), choose an image: ${prefix}:<name> or ${prefix}:@<index>`,
    );
  }
  return { entry: index.entries[0] as IndexEntry, position: 0 };
}

/**
 * What happens to an older entry holding the name of a newly added entry:
 * - `unname`: it loses the name and stays (reachable as `@N`), as containers/image's `addManifest`
 *   (`oci:`, where unnamed entries can be deleted later);
 * - `drop`: it is removed (`oci-archive:`, which offers no way to delete images, so unnamed leftovers
 *   would accumulate).
 */
export type PreviousNameHolder = 'unname' | 'drop';

/**
 * Adds the entry of a newly written image to an index: a named entry takes the name from the older
 * entry holding it (see `PreviousNameHolder`); an older unnamed entry with the same digest is replaced;
 * otherwise the entry is appended.
 */
export function addIndexEntry(
  index: LayoutIndex,
  entry: IndexEntry,
  previousHolder: PreviousNameHolder,
): void {
  const name = entry.referenceName ?? '';
  if (previousHolder === 'drop') {
    const position = index.entries.findIndex((existing) =>
      name !== ''
        ? existing.referenceName === name
        : (existing.referenceName ?? '') === '' && existing.digest === entry.digest,
    );
    if (position === -1) {
      index.entries.push(entry);
      return;
    }
    index.entries[position] = entry;
    // A name is unique: drop any further (malformed) entry holding it.
    if (name !== '') {
      index.entries = index.entries.filter(
        (existing, at) => at <= position || existing.referenceName !== name,
      );
    }
    return;
  }
  if (name !== '') {
    const holder = index.entries.find((existing) => existing.referenceName === name);
    if (holder) {
      const annotations = { ...(holder.raw.annotations as Record<string, unknown>) };
      delete annotations[referenceNameAnnotation];
      const raw = { ...holder.raw };
      if (Object.keys(annotations).length === 0) delete raw.annotations;
      else raw.annotations = annotations;
      holder.raw = raw;
      holder.referenceName = undefined;
    }
  }
  const position = index.entries.findIndex(
    (existing) => existing.digest === entry.digest && (existing.referenceName ?? '') === '',
  );
  if (position !== -1) index.entries[position] = entry;
  else index.entries.push(entry);
}

/**
 * The index entry for a top-level manifest written as `imageName` ('' for none): its media type (guessed
 * from the bytes when ''), digest and size, and the name annotation when named.
 */
export function newIndexEntry(
  manifest: Uint8Array,
  mediaType: string,
  digest: Digest,
  imageName: string,
  guessMediaType: GuessManifestMediaType = guessManifestMediaType,
): IndexEntry {
  const effectiveType = mediaType !== '' ? mediaType : guessMediaType(manifest);
  const raw: Record<string, unknown> = { mediaType: effectiveType, digest, size: manifest.byteLength };
  if (imageName !== '') raw.annotations = { [referenceNameAnnotation]: imageName };
  return {
    mediaType: effectiveType,
    digest,
    size: manifest.byteLength,
    referenceName: imageName === '' ? undefined : imageName,
    raw,
  };
}
