import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Where tests expect skopeo (Debian's package installs it there; `.ci/run` installs it). */
export const skopeoBinary = '/usr/bin/skopeo';

/**
 * Runs the real skopeo with `args` and returns its standard output, for cross-checking a transport
 * against it. Fails loudly, never skips: a missing skopeo names where it was looked for, a failing
 * one is reported with its command line and standard error.
 */
export async function runSkopeo(args: readonly string[]): Promise<Buffer> {
  try {
    const { stdout } = await execFileAsync(skopeoBinary, [...args], {
      encoding: 'buffer',
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: Buffer };
    if (failure.code === 'ENOENT') {
      throw new Error(
        `skopeo is needed by this test but ${skopeoBinary} is missing (apt-get install -y skopeo)`,
      );
    }
    const stderr = failure.stderr?.toString() ?? '';
    throw new Error(`skopeo ${args.join(' ')} failed: ${stderr || failure.message}`);
  }
}
