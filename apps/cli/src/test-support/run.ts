import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { runCli } from '../cli.js';
import type { CliIo } from '../context.js';

export interface CliRun {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs `gantry` in-process with captured output. */
export async function runGantry(argv: string[], options: Partial<CliIo> = {}): Promise<CliRun> {
  const stdout: Buffer[] = [];
  let stderr = '';
  const code = await runCli(argv, {
    stdout: { write: (chunk) => stdout.push(Buffer.from(chunk as string | Uint8Array)) },
    stderr: { write: (chunk) => (stderr += Buffer.from(chunk as string | Uint8Array).toString()) },
    // The blob-info cache would carry what one test learnt into the next: off unless a test names a file.
    env: { GANTRY_BLOB_INFO_CACHE: 'off', ...process.env },
    cwd: process.cwd(),
    isTTY: false,
    ...options,
  });
  return { code, stdout: Buffer.concat(stdout), stderr };
}

/** Path of a required real tool; throws (never skips) when it is missing. */
export function requireTool(name: string): string {
  try {
    return execFileSync('which', [name], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(`${name} is required for this test but is not installed (apt-get install ${name})`);
  }
}

/** Runs the real skopeo. */
export function runSkopeo(args: string[]): CliRun {
  const result = spawnSync(requireTool('skopeo'), args, { maxBuffer: 64 * 1024 * 1024 });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr.toString() };
}

/**
 * Runs the real skopeo without blocking the event loop: for tests whose servers (a fault proxy) run in
 * this process and must answer skopeo while it runs.
 */
export function runSkopeoConcurrently(args: string[]): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(requireTool('skopeo'), args);
    const stdout: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(stdout), stderr }));
  });
}
