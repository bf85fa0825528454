/**
 * A stored layer's uncompressed tar, rebuilt byte for byte from its `<id>.tar-split.gz` and the files the
 * driver holds.
 */
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { ErrorCodes, GantryError } from '@gantry/core';
import type { ContainersStore, LayerRecord } from './store.js';

export async function openLayerDiff(store: ContainersStore, layer: LayerRecord): Promise<Readable> {
  let tarSplit: Buffer;
  try {
    tarSplit = await readFile(store.tarSplitPath(layer.id));
  } catch (error) {
    throw new GantryError(
      ErrorCodes.BlobNotFound,
      `layer ${layer.id}: its tar-split ${store.tarSplitPath(layer.id)} cannot be read`,
      { cause: error },
    );
  }
  void tarSplit;
  throw new GantryError(ErrorCodes.NotSupported, 'layer reassembly is not wired yet');
}
