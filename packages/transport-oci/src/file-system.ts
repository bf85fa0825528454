/**
 * File-system helpers of the `oci:` source, destination and delete code. The helpers shared with
 * `oci-archive:` (path resolution, error descriptions) live in `@gantry/oci-layout-format`.
 */
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { ownedTemporaryName } from '@gantry/core/transport';

/**
 * Writes `content` to `filePath` atomically: into a temporary file in the same directory (named by
 * `ownedTemporaryName`, so a dead writer's is removed later), flushed to disk, then renamed over the target. Readers see either the old or the new content, never a mix.
 */
export async function writeFileAtomically(
  filePath: string,
  content: Uint8Array | string,
  mode = 0o644,
): Promise<void> {
  const temporaryPath = path.join(path.dirname(filePath), ownedTemporaryName(path.basename(filePath)));
  let renamed = false;
  try {
    const handle = await open(temporaryPath, 'wx', mode);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporaryPath, filePath);
    renamed = true;
  } finally {
    if (!renamed) await rm(temporaryPath, { force: true });
  }
}
