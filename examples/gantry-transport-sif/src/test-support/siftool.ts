/**
 * SIF files written by sylabs/sif itself, through Debian's `siftool` (its command-line tool), to check
 * that the transport reads what the reference implementation writes, not only what our test writer does.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sifArchitectureCode } from '../sif-format.js';

/** Runs `siftool`; throws (never skips) when it is missing or fails. */
export function siftool(...args: string[]): string {
  const result = spawnSync('siftool', args, { encoding: 'utf8' });
  if (result.error) {
    throw new Error(`siftool is required for this test (apt-get install siftool): ${result.error.message}`);
  }
  if (result.status !== 0) throw new Error(`siftool ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

export interface SiftoolImage {
  /** The definition file, added first (`--datatype 1`), if any. */
  definitionFile?: string;
  /** The root file system (a squashfs image), added as the primary system partition. */
  squashfs: Uint8Array;
  /** Go architecture name of the partition. Default amd64. */
  architecture?: string;
}

/** Writes `file` with `siftool new` and `siftool add`, as a build tool using sylabs/sif would. */
export async function writeSifWithSiftool(file: string, image: SiftoolImage): Promise<void> {
  const work = await mkdtemp(path.join(path.dirname(file), '.siftool-'));
  try {
    siftool('new', file);
    if (image.definitionFile !== undefined) {
      const definition = path.join(work, 'recipe.def');
      await writeFile(definition, image.definitionFile);
      siftool('add', file, definition, '--datatype', '1');
    }
    const partition = path.join(work, 'rootfs.squashfs');
    await writeFile(partition, image.squashfs);
    const architecture = String(Number(sifArchitectureCode(image.architecture ?? 'amd64')));
    siftool(
      'add',
      file,
      partition,
      '--datatype',
      '4',
      '--parttype',
      '2',
      '--partfs',
      '1',
      '--partarch',
      architecture,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
