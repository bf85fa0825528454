/**
 * The installed `gantry` command (apps/cli/bin/gantry, the bundle turbo builds before these tests) as
 * a process of its own, for tests that signal or kill it: it starts in a fraction of a second, where
 * running the sources through a TypeScript loader takes seconds.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireBuiltGantry } from '../../test-support/terminal.js';
import { treeBytes } from './destinations.js';

export interface BuiltGantryProcess {
  child: ChildProcess;
  /** Its exit code, or the signal that ended it, and everything it wrote to stderr. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** Starts `gantry ARGS` in `cwd` with `environment`. */
export function startBuiltGantry(
  args: string[],
  cwd: string,
  environment: NodeJS.ProcessEnv = process.env,
): BuiltGantryProcess {
  const child = spawn(requireBuiltGantry(), args, {
    cwd,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...environment, GANTRY_BLOB_INFO_CACHE: 'off' },
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>(
    (resolve) => child.once('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  return { child, exited };
}

/**
 * Resolves once `directory` grew by `bytes` over `baseline` (the copy is certainly writing), having
 * stopped the process there (SIGSTOP): the caller sends its signal, then SIGCONT.
 */
export async function stopWhenWriting(
  process: BuiltGantryProcess,
  directory: string,
  baseline: number,
  bytes = 2 * 1024 * 1024,
): Promise<void> {
  const deadline = Date.now() + 120_000;
  let exited = false;
  void process.exited.then(() => {
    exited = true;
  });
  while (Date.now() < deadline) {
    if (exited)
      throw new Error(`gantry exited before it was caught mid-copy: ${(await process.exited).stderr}`);
    if ((await treeBytes(directory)) - baseline >= bytes) {
      process.child.kill('SIGSTOP');
      return;
    }
    await sleep(5);
  }
  throw new Error('gantry was not caught mid-copy within 120 s');
}
