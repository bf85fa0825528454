/**
 * Runs the real `gantry` command as a separate process, from the TypeScript sources (no build needed):
 * `node --conditions=@gantry/source` with the module hooks of transport-oci's test support, which
 * transpile `.ts` files on load. For tests that need a process of their own (kill -9, signals).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const binSource = resolve(here, '../main.ts');
const registerTypeScript = resolve(
  here,
  '../../../../packages/transport-oci/src/test-support/register-typescript.mjs',
);

/** A running gantry process; `exited` resolves its exit code, or the signal that ended it. */
export interface GantryProcess {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** Starts `gantry ARGS` in `cwd`, with `environment` (default: this process's). */
export function startGantryProcess(
  args: string[],
  cwd: string,
  environment: NodeJS.ProcessEnv = process.env,
): GantryProcess {
  const child = spawn(
    process.execPath,
    ['--conditions=@gantry/source', '--import', registerTypeScript, binSource, ...args],
    { cwd, stdio: ['ignore', 'ignore', 'pipe'], env: { ...environment, NODE_OPTIONS: '' } },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>(
    (resolvePromise) => child.once('exit', (code, signal) => resolvePromise({ code, signal, stderr })),
  );
  return { child, exited };
}
