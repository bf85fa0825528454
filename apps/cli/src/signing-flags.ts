/**
 * skopeo's signing flags of `copy` (`--sign-by`, `--sign-by-sigstore-private-key`,
 * `--sign-passphrase-file`, `--sign-identity`) turned into `CopyOptions.signing`.
 */
import { readFile } from 'node:fs/promises';
import type { SigningOptions } from '@gantry/core';
import type { FlagValue } from './args.js';
import { UsageError } from './args.js';
import { wrapError } from './errors.js';

/** The first line of a passphrase file, as gpg and skopeo read it (`ReadPassphraseFile`). */
export async function readPassphraseFile(filePath: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(filePath, 'utf8');
  } catch (error) {
    throw wrapError('reading passphrase file', error);
  }
  const newline = text.indexOf('\n');
  return newline === -1 ? text : text.slice(0, newline);
}

/** `CopyOptions.signing` from the flags, or undefined when no signing flag is given. */
export async function signingOptionsFrom(
  flags: ReadonlyMap<string, FlagValue>,
  env: NodeJS.ProcessEnv,
): Promise<SigningOptions | undefined> {
  const text = (name: string) => {
    const value = flags.get(name);
    return typeof value === 'string' && value !== '' ? value : undefined;
  };
  const gpgKey = text('sign-by');
  const sigstoreKey = text('sign-by-sigstore-private-key');
  const passphraseFile = text('sign-passphrase-file');
  const identity = text('sign-identity');
  if (gpgKey === undefined && sigstoreKey === undefined) {
    if (identity !== undefined) {
      throw new UsageError(
        '--sign-identity can only be used with --sign-by or --sign-by-sigstore-private-key',
      );
    }
    return undefined;
  }
  if (passphraseFile !== undefined && gpgKey !== undefined && sigstoreKey !== undefined) {
    throw new UsageError(
      'Only one of --sign-by and sign-by-sigstore-private-key can be used with sign-passphrase-file',
    );
  }
  const passphrase = passphraseFile !== undefined ? await readPassphraseFile(passphraseFile) : undefined;
  const options: SigningOptions = { gpgEnv: env };
  if (gpgKey !== undefined) {
    options.gpgKey = gpgKey;
    if (passphrase !== undefined) options.gpgPassphrase = passphrase;
  }
  if (sigstoreKey !== undefined) {
    if (passphrase === undefined) {
      throw new UsageError(
        '--sign-by-sigstore-private-key needs --sign-passphrase-file: gantry does not prompt for the passphrase',
      );
    }
    options.sigstorePrivateKey = sigstoreKey;
    options.sigstorePassphrase = passphrase;
  }
  if (identity !== undefined) options.identity = identity;
  return options;
}
