/**
 * GPG keys for tests: a signing key in a private `GNUPGHOME` made with the real `gpg` (fails loudly
 * when gpg is missing, never skips).
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

async function runGpg(args: string[], home: string, program = 'gpg'): Promise<string> {
  try {
    const { stdout } = await execFileAsync(program, args, {
      env: { ...process.env, GNUPGHOME: home },
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    const missing =
      failure.code === 'ENOENT' ? ` (${program} must be installed: apt-get install -y gnupg)` : '';
    throw new Error(`${program} ${args.join(' ')} failed${missing}: ${failure.stderr || failure.message}`);
  }
}

/** A GPG key made for a test, in its own `GNUPGHOME`. */
export interface TestGpgKey {
  /** The private home directory (pass it as `GNUPGHOME` to skopeo `--sign-by`). */
  home: string;
  fingerprint: string;
  /** The ASCII-armored public key file (a policy's `keyPath`). */
  publicKeyPath: string;
  /** Stops the gpg-agent started for `home`. */
  dispose(): Promise<void>;
}

/** Options of `createTestGpgKey`. */
export interface TestGpgKeyOptions {
  /** The key's passphrase; default none. */
  passphrase?: string;
  /** The user ID; default `Gantry Test <gantry-test@example.com>`. */
  userId?: string;
  /** The subdirectory of `directory` used as GNUPGHOME; default `gnupg`. */
  homeName?: string;
}

/**
 * Creates an RSA signing key in `directory/gnupg` (gpg's agent socket lives there, so keep
 * `directory` short) and exports its public key to `directory/gpg-public.asc` (or
 * `<homeName>-public.asc` with another `homeName`).
 */
export async function createTestGpgKey(
  directory: string,
  options: TestGpgKeyOptions = {},
): Promise<TestGpgKey> {
  const homeName = options.homeName ?? 'gnupg';
  const home = path.join(directory, homeName);
  await mkdir(home, { recursive: true, mode: 0o700 });
  await runGpg(
    [
      '--batch',
      '--pinentry-mode',
      'loopback',
      '--passphrase',
      options.passphrase ?? '',
      '--quick-generate-key',
      options.userId ?? 'Gantry Test <gantry-test@example.com>',
      'rsa2048',
      'sign',
      'never',
    ],
    home,
  );
  const listing = await runGpg(['--batch', '--with-colons', '--list-secret-keys'], home);
  const fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(listing)?.[1];
  if (fingerprint === undefined) throw new Error(`gpg --list-secret-keys gave no fingerprint: ${listing}`);
  const publicKeyPath = path.join(
    directory,
    homeName === 'gnupg' ? 'gpg-public.asc' : `${homeName}-public.asc`,
  );
  await writeFile(publicKeyPath, await runGpg(['--batch', '--armor', '--export', fingerprint], home));
  return {
    home,
    fingerprint,
    publicKeyPath,
    dispose: async () => {
      await runGpg(['--kill', 'gpg-agent'], home, 'gpgconf').catch(() => undefined);
    },
  };
}
