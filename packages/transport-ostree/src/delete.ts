import {
  type Digest,
  ErrorCodes,
  GantryError,
  parseManifest,
  type TransportContext,
} from '@gantry/core/transport';
import { lockRepository } from './lock.js';
import { blobBranch, branchPrefix, type OstreeImageReference } from './reference.js';
import type { OstreeRepository } from './repository.js';
import { openImageCommit } from './source.js';

const blobBranchPattern = new RegExp(`^${branchPrefix}/[0-9a-f]{64,128}$`);

function blobsOf(manifestText: string | undefined): Digest[] {
  if (manifestText === undefined) return [];
  const manifest = parseManifest(Buffer.from(manifestText, 'utf8'));
  return [
    ...manifest.layers.map((layer) => layer.digest),
    ...(manifest.config ? [manifest.config.digest] : []),
  ];
}

/** Blobs used by the images of the repository other than `exceptBranch`. */
async function blobsInUse(repository: OstreeRepository, exceptBranch: string): Promise<Set<string>> {
  const used = new Set<string>();
  for (const branch of await repository.listBranches(branchPrefix)) {
    if (branch === exceptBranch || blobBranchPattern.test(branch)) continue;
    const checksum = await repository.resolveBranch(branch);
    if (checksum === undefined) continue;
    const commit = await repository.readCommit(checksum, branch);
    for (const digest of blobsOf(commit.metadata.get('docker.manifest'))) used.add(digest);
  }
  return used;
}

/**
 * Deletes an image: its branch, then the branches of its layers and config that no other image of the
 * repository uses — holding the repository lock exclusive, so that no copy reuses or writes a branch
 * meanwhile — then the objects nothing reaches any more (`ostree prune --refs-only`, which takes the lock
 * exclusive itself). When a copy holds the lock longer than prune waits for it (30 seconds), the prune is
 * left to a later delete or `ostree prune`: the image is deleted, its objects are unreachable.
 */
export async function deleteOstreeImage(
  reference: OstreeImageReference,
  context: TransportContext,
): Promise<void> {
  const signal = context.signal;
  const { repository } = await openImageCommit(reference);
  const lock = await lockRepository(repository.path, true, { signal });
  try {
    // Read again under the lock: another process may have replaced or deleted the image meanwhile.
    const { commit } = await openImageCommit(reference);
    const manifestText = commit.metadata.get('docker.manifest');
    if (manifestText === undefined) {
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `${reference}: the image commit has no docker.manifest`,
      );
    }
    const blobs = blobsOf(manifestText);
    const used = await blobsInUse(repository, reference.imageBranch);
    await repository.deleteBranch(reference.imageBranch, { signal });
    for (const digest of new Set(blobs)) {
      if (used.has(digest)) continue;
      const branch = blobBranch(digest);
      if ((await repository.resolveBranch(branch)) !== undefined)
        await repository.deleteBranch(branch, { signal });
    }
  } finally {
    lock.release();
  }
  try {
    await repository.prune({ signal });
  } catch (error) {
    if (!(error instanceof Error && /Locking repo exclusive failed/.test(error.message))) throw error;
  }
}
