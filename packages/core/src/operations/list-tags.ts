import { withRetry } from '../copy/retry.js';
import { ErrorCodes, GantryError, prefixError } from '../errors.js';
import type { ImageReference } from '../transport/contract.js';
import { contextOf, type ImageOperationOptions, retrySettingsOf } from './common.js';

/** What {@link listTags} found. */
export interface ListedTags {
  /**
   * The repository that listed the tags, for transports whose references name a registry repository
   * (`docker`: after short-name resolution, the candidate that answered); absent for archives.
   */
  repository?: string;
  /** Every tag, in the order the storage lists them. */
  tags: string[];
}

/**
 * The tags of the repository (or archive) `reference` belongs to (`gantry list-tags`, skopeo
 * list-tags); the reference's own tag or digest is ignored. Rejects with `ERR_GANTRY_NOT_SUPPORTED`
 * when its transport does not list tags (see `Transport.listTags`), `ERR_GANTRY_REPOSITORY_NOT_FOUND`
 * or `ERR_GANTRY_IMAGE_NOT_FOUND` when there is no such repository; messages start with
 * `Error listing repository tags: `.
 */
export async function listTags(
  reference: ImageReference,
  options: ImageOperationOptions = {},
): Promise<ListedTags> {
  const transport = reference.transport;
  if (typeof transport.listTags !== 'function') {
    throw new GantryError(ErrorCodes.NotSupported, `transport "${transport.name}" does not list tags`);
  }
  const context = contextOf(options);
  let listed: { repository?: string; tags: string[] };
  try {
    // A transport that resolves names (docker:// short names) says which repository listed the tags.
    listed = await withRetry(
      async () =>
        transport.listTagsWithRepository
          ? await transport.listTagsWithRepository(reference, context)
          : { tags: await transport.listTags!(reference, context) },
      retrySettingsOf(options),
    );
  } catch (error) {
    throw prefixError('Error listing repository tags', error);
  }
  // skopeo names the repository for registries only.
  const repository =
    transport.name === 'docker' ? (listed.repository ?? reference.dockerReference()?.name ?? '') : '';
  return repository ? { repository, tags: listed.tags } : { tags: listed.tags };
}
