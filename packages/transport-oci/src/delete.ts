/**
 * Deleting an image from an OCI layout, as containers/image's oci/layout/oci_delete.go: the image's
 * `index.json` entry goes, and so does every blob it reaches (its manifest, config, layers, and for an
 * index every instance's) that no remaining entry reaches.
 *
 * Differences that make it safer: it runs under the layout lock; `index.json` is rewritten atomically
 * first and blobs are deleted after (a crash leaves unreferenced blobs, never a broken entry); blobs
 * that open destinations of this process use are kept; when a remaining entry's manifest is missing or
 * of an unknown type (so what it reaches cannot be known) nothing is deleted and the call fails.
 * Blobs in a shared blob directory are never deleted (other layouts may use them); with
 * `transportOptions.oci.sharedBlobDirectory` set, manifests are read from there first, and only copies in the layout's own
 * `blobs/` are deleted.
 */
import { unlink } from 'node:fs/promises';
import {
  type Digest,
  ErrorCodes,
  GantryError,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core/transport';
import { describeFileSystemError, errorCode } from '@gantry/oci-layout-format';
import { blobDirectoryKey, isBlobInUse } from './blob-usage.js';
import { blobPath, layoutBlobDirectory, reachableDigests, writeIndex } from './layout.js';
import { type LayoutLockOptions, withLayoutLock } from './lock.js';
import type { OciReference } from './reference.js';
import { findIndexEntry, readExistingIndex, sourceBlobDirectories } from './source.js';

/** Deletes the image `reference` designates. Rejects with `ERR_GANTRY_IMAGE_NOT_FOUND` when absent. */
export async function deleteOciImage(
  reference: OciReference,
  context: TransportContext,
  lockOptions: LayoutLockOptions,
): Promise<void> {
  throwIfAborted(context.signal);
  const layoutDirectory = reference.path || '.';
  // Outside the lock first, so that a missing layout is reported as such (the lock needs the directory).
  await readExistingIndex(reference);
  await withLayoutLock(layoutDirectory, { ...lockOptions, signal: context.signal }, async () => {
    const index = await readExistingIndex(reference);
    const { entry, position } = findIndexEntry(reference, index);
    const blobDirectories = sourceBlobDirectories(reference, context);
    const remaining = index.entries.filter((_, entryPosition) => entryPosition !== position);
    const reachedByDeleted = await reachableDigests(blobDirectories, [entry]);
    const reachedByRemaining = await reachableDigests(blobDirectories, remaining);

    index.entries = remaining;
    await writeIndex(layoutDirectory, index);

    const localBlobs = layoutBlobDirectory(layoutDirectory);
    const localKey = await blobDirectoryKey(localBlobs);
    const unused: Digest[] = [...reachedByDeleted].filter(
      (digest) => !reachedByRemaining.has(digest) && !isBlobInUse(localKey, digest),
    );
    for (const digest of unused) {
      const filePath = blobPath(localBlobs, digest);
      try {
        await unlink(filePath);
      } catch (error) {
        if (errorCode(error) !== 'ENOENT') {
          throw new GantryError(
            ErrorCodes.Internal,
            `deleting blob ${filePath}: ${describeFileSystemError(error)}`,
            {
              cause: error,
            },
          );
        }
      }
    }
  });
}
