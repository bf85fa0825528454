import { withRetry } from '../copy/retry.js';
import type { ImageReference } from '../transport/contract.js';
import { contextOf, type ImageOperationOptions, retrySettingsOf } from './common.js';

/**
 * Deletes the image `reference` names from its storage (`gantry delete`, skopeo delete), with the
 * transport's semantics: a registry deletes the manifest by digest (every tag naming it goes), `oci:`
 * removes the tag from the layout's index and the blobs nothing else uses. Rejects with
 * `ERR_GANTRY_IMAGE_NOT_FOUND` when there is no such image, `ERR_GANTRY_NOT_SUPPORTED` when the
 * transport cannot delete.
 */
export async function deleteImage(
  reference: ImageReference,
  options: ImageOperationOptions = {},
): Promise<void> {
  const context = contextOf(options);
  await withRetry(() => reference.deleteImage(context), retrySettingsOf(options));
}
