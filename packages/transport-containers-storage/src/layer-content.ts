/**
 * A stored layer's uncompressed tar, rebuilt byte for byte from its `<id>.tar-split.gz` and the files the
 * driver holds (`@gantry/layer-tree`'s `assembleTar`, which checks every file's size and CRC-64 against
 * the tar-split, so a layer whose files changed fails instead of yielding a different tar).
 */
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { ErrorCodes, GantryError } from '@gantry/core/transport';
import { assembleTar } from '@gantry/layer-tree';
import type { ContainersStore, LayerRecord } from './store.js';

export async function openLayerDiff(
  store: ContainersStore,
  layer: LayerRecord,
  options: { signal?: AbortSignal } = {},
): Promise<Readable> {
  let tarSplit: Buffer;
  try {
    tarSplit = await readFile(store.tarSplitPath(layer.id));
  } catch (error) {
    throw new GantryError(
      ErrorCodes.BlobNotFound,
      `layer ${layer.id}: its tar-split ${store.tarSplitPath(layer.id)} cannot be read: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const getFile = store.driver.diffFileGetter(layer.id);
  // The raw name bytes too: a name that is not UTF-8 cannot be found from its decoded string.
  return assembleTar(
    tarSplit,
    async (name, nameBytes) => getFile(name, nameBytes),
    options.signal ? { signal: options.signal } : {},
  );
}
