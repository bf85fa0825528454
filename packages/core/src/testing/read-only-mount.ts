/**
 * A real read-only file system for tests: a small tmpfs mounted on a new directory, filled by the
 * test, then remounted read-only, so every write fails with the system's EROFS (no permission trick:
 * root ignores permissions). Needs root (mount(8)); fails loudly otherwise, never skips.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** A mounted tmpfs; `makeReadOnly()` remounts it read-only, `unmount()` removes it (idempotent). */
export interface TestMount {
  readonly directory: string;
  /** Remounts the tmpfs read-only. */
  makeReadOnly(): void;
  /** Unmounts and removes the tmpfs (idempotent). */
  unmount(): Promise<void>;
}

function runMount(args: string[]): void {
  try {
    execFileSync('mount', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(
      `mount ${args.join(' ')} failed (this test needs root to mount a read-only tmpfs): ${stderr || (error as Error).message}`,
    );
  }
}

/** Mounts a writable tmpfs (`sizeMiB`, default 16) on a new temporary directory. */
export async function mountTestTmpfs(sizeMiB = 16): Promise<TestMount> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-mount-'));
  try {
    runMount(['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0755`, 'tmpfs', directory]);
  } catch (error) {
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
  let mounted = true;
  return {
    directory,
    makeReadOnly: () => runMount(['-o', 'remount,ro', directory]),
    async unmount() {
      if (!mounted) return;
      mounted = false;
      execFileSync('umount', [directory]);
      await rm(directory, { recursive: true, force: true });
    },
  };
}
