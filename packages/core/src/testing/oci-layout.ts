import { copyFile, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Digest, digestHex } from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
import { MediaTypes } from '../manifest/media-types.js';
import type { FixtureImage } from './fixture-types.js';

/** The annotation naming an image in an OCI layout's index.json. */
export const ociRefNameAnnotation = 'org.opencontainers.image.ref.name';

/**
 * Writes a fixture into an OCI image layout with plain file operations (no transport involved), so
 * transports can be tested against a layout they did not write: `oci-layout`, every blob and manifest
 * under `blobs/sha256/<hex>`, and `index.json`.
 *
 * Rules: an existing layout is extended, not replaced. With `referenceName`, the index entry carrying the
 * same `org.opencontainers.image.ref.name` annotation is replaced (others are kept); without one, an
 * entry without a name is added unless the same digest is already listed without a name.
 */
export async function writeFixtureToOciLayout(
  image: FixtureImage,
  layoutDirectory: string,
  referenceName?: string,
): Promise<void> {
  const blobDirectory = join(layoutDirectory, 'blobs', 'sha256');
  await mkdir(blobDirectory, { recursive: true });
  await writeFile(join(layoutDirectory, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');

  for (const blob of image.blobs.values()) {
    const target = join(blobDirectory, hexOf(blob.digest));
    if (!(await exists(target))) await copyFile(blob.path, target);
  }
  for (const [digest, manifest] of image.manifests) {
    const target = join(blobDirectory, hexOf(digest));
    if (!(await exists(target))) await writeFile(target, manifest.bytes);
  }

  const indexPath = join(layoutDirectory, 'index.json');
  let index: { schemaVersion: number; mediaType?: string; manifests: Array<Record<string, unknown>> } = {
    schemaVersion: 2,
    mediaType: MediaTypes.OciIndex,
    manifests: [],
  };
  if (await exists(indexPath)) {
    index = JSON.parse(await readFile(indexPath, 'utf8'));
    if (!Array.isArray(index.manifests)) {
      throw new GantryError(ErrorCodes.InvalidLayout, `${indexPath} has no "manifests" array`);
    }
  }
  const nameOf = (entry: Record<string, unknown>) =>
    (entry.annotations as Record<string, string> | undefined)?.[ociRefNameAnnotation];
  const entry: Record<string, unknown> = {
    mediaType: image.topLevel.mediaType,
    digest: image.topLevel.digest,
    size: image.topLevel.bytes.byteLength,
  };
  if (referenceName !== undefined) {
    entry.annotations = { [ociRefNameAnnotation]: referenceName };
    index.manifests = index.manifests.filter((existing) => nameOf(existing) !== referenceName);
    index.manifests.push(entry);
  } else if (
    !index.manifests.some((existing) => existing.digest === entry.digest && nameOf(existing) === undefined)
  ) {
    index.manifests.push(entry);
  }
  const temporaryPath = `${indexPath}.tmp-${process.pid}`;
  await writeFile(temporaryPath, JSON.stringify(index));
  await rename(temporaryPath, indexPath);
}

function hexOf(digest: Digest): string {
  if (!digest.startsWith('sha256:')) {
    throw new GantryError(ErrorCodes.InvalidDigest, `fixture digest ${digest} is not sha256`);
  }
  return digestHex(digest);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}
