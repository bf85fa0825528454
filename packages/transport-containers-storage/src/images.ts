/**
 * Image lookups and the layer bookkeeping shared by the source, the destination and delete.
 */
import { type DockerReference, ErrorCodes, GantryError, parseNormalizedNamed } from '@gantry/core/transport';
import { imageDigestBigDataKey } from './ids.js';
import type { ContainersStorageReference } from './reference.js';
import type { ImageRecord, LayerRecord } from './store.js';

/** Every manifest digest of an image (containers/storage `recomputeDigests`): `digest` first, then the manifests' big data. */
export function imageDigests(image: ImageRecord): string[] {
  const digests: string[] = [];
  const add = (value: string | undefined) => {
    if (value && !digests.includes(value)) digests.push(value);
  };
  const bigDataDigests = image['big-data-digests'] ?? {};
  add(image.digest || bigDataDigests[imageDigestBigDataKey]);
  for (const name of image['big-data-names'] ?? []) {
    if (name === imageDigestBigDataKey || name.startsWith('manifest-')) add(bigDataDigests[name]);
  }
  return digests;
}

function imageMatchesRepository(image: ImageRecord, named: DockerReference): boolean {
  return (image.names ?? []).some((name) => {
    try {
      return parseNormalizedNamed(name).name === named.name;
    } catch {
      return false;
    }
  });
}

/**
 * The image a reference names (containers/image `resolveImage`): by name, else (name@digest) an image of
 * that repository with that manifest digest, else by ID; a named reference must match one of the image's
 * names' repository. `undefined` when there is none.
 */
export function findImage(
  images: readonly ImageRecord[],
  reference: ContainersStorageReference,
): ImageRecord | undefined {
  const { named } = reference;
  let id = reference.id;
  let found: ImageRecord | undefined;
  if (id === undefined && named) {
    const text = named.toString();
    found = images.find((image) => image.names?.includes(text));
    if (!found && named.digest) {
      found = images.find(
        (image) => imageDigests(image).includes(named.digest!) && imageMatchesRepository(image, named),
      );
    }
    id = found?.id;
  }
  if (id === undefined) return undefined;
  found ??= images.find((image) => image.id === id);
  if (!found) return undefined;
  if (named && !imageMatchesRepository(found, named)) return undefined;
  return found;
}

export function imageNotFound(reference: ContainersStorageReference): GantryError {
  return new GantryError(
    ErrorCodes.ImageNotFound,
    `reference "containers-storage:${reference.stringWithinTransport()}" does not resolve to an image ID: identifier is not an image`,
  );
}

/** The image's layers, base first, following `parent` from its top layer. */
export function layerChain(layers: readonly LayerRecord[], topLayerId: string | undefined): LayerRecord[] {
  const byId = new Map(layers.map((layer) => [layer.id, layer]));
  const chain: LayerRecord[] = [];
  let current = topLayerId;
  const seen = new Set<string>();
  while (current) {
    if (seen.has(current)) {
      throw new GantryError(ErrorCodes.InvalidLayout, `layer ${current} is its own ancestor in layers.json`);
    }
    seen.add(current);
    const layer = byId.get(current);
    if (!layer)
      throw new GantryError(ErrorCodes.InvalidLayout, `layer ${current} is missing from layers.json`);
    chain.unshift(layer);
    current = layer.parent;
  }
  return chain;
}
