/**
 * Helpers for this package's tests: temporary directories, the real `skopeo` and `tar` commands (a test
 * that needs one fails loudly when it is missing), and hand-made tar archives (hostile ones included).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import tarStream from 'tar-stream';

const execFileAsync = promisify(execFile);

/** A fresh temporary directory and a function removing it. */
export async function temporaryDirectory(): Promise<{ directory: string; remove: () => Promise<void> }> {
  const directory = await mkdtemp(path.join(tmpdir(), 'gantry-'));
  return { directory, remove: () => rm(directory, { recursive: true, force: true }) };
}

/** Runs an installed tool and returns its standard output; fails loudly when the tool is missing. */
export async function runTool(tool: string, args: string[], options: { cwd?: string } = {}): Promise<string> {
  try {
    return (await execFileAsync(tool, args, { maxBuffer: 64 * 1024 * 1024, ...options })).stdout;
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT') throw new Error(`${tool} is required by this test but is not installed`);
    throw new Error(`${tool} ${args.join(' ')} failed: ${failure.stderr ?? failure.message}`);
  }
}

export const skopeo = (args: string[]) => runTool('skopeo', args);

/** One entry of a hand-made tar. */
export type TarSpec =
  | { name: string; content: string | Uint8Array; size?: number }
  | { name: string; type: 'directory' }
  | { name: string; type: 'symlink' | 'link'; linkname: string };

/** A tar archive of `entries`, written as given (no name checks: for hostile archives). */
export async function makeTar(entries: TarSpec[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const entry of entries) {
    await new Promise<void>((resolve, reject) => {
      const callback = (error?: Error | null) => (error ? reject(error) : resolve());
      if ('content' in entry) {
        pack.entry({ name: entry.name, mode: 0o644 }, Buffer.from(entry.content), callback);
      } else if (entry.type === 'directory') {
        pack.entry({ name: entry.name, type: 'directory', mode: 0o755 }, callback);
      } else {
        pack.entry({ name: entry.name, type: entry.type, linkname: entry.linkname }, callback);
      }
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}
