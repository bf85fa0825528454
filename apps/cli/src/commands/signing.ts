/**
 * skopeo's signature commands: `standalone-sign`, `standalone-verify`,
 * `untrusted-signature-dump-without-verification`, and `generate-sigstore-key` (from later skopeo).
 */
import { execFile } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import {
  generateSigstoreKeyPair,
  readGpgPublicKeys,
  readUntrustedSimpleSigningSignature,
  signSimpleSigning,
  verifyStandaloneSignature,
} from '@gantry/core';
import { UsageError } from '../args.js';
import type { CommandContext, CommandDefinition } from '../context.js';
import { errorMessage, wrapError } from '../errors.js';
import { readPassphraseFile } from '../signing-flags.js';
import { goPathErrorMessage } from './manifest-digest.js';

/** `execFile` returning a promise; promisified at the first call, so that node:child_process loads only when used. */
let execFilePromised: typeof execFile.__promisify__ | undefined;
const execFileAsync = ((...args: Parameters<typeof execFile.__promisify__>) => {
  execFilePromised ??= promisify(execFile);
  return execFilePromised(...args);
}) as typeof execFile.__promisify__;

async function readInput(context: CommandContext, path: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(resolve(context.io.cwd, path)));
  } catch (error) {
    throw wrapError(`Error reading ${what} ${path}`, new Error(goPathErrorMessage(error, 'open', path)));
  }
}

function flagText(context: CommandContext, name: string): string | undefined {
  const value = context.flags.get(name);
  return typeof value === 'string' && value !== '' ? value : undefined;
}

async function standaloneSign(context: CommandContext): Promise<void> {
  const output = flagText(context, 'output');
  if (context.positionals.length !== 3 || output === undefined) {
    throw new UsageError(
      'Usage: gantry standalone-sign manifest docker-reference key-fingerprint -o signature',
    );
  }
  const [manifestPath, dockerReference, fingerprint] = context.positionals as [string, string, string];
  let manifest: Uint8Array;
  try {
    manifest = new Uint8Array(await readFile(resolve(context.io.cwd, manifestPath)));
  } catch (error) {
    throw wrapError(
      `Error reading ${manifestPath}`,
      new Error(goPathErrorMessage(error, 'open', manifestPath)),
    );
  }
  const passphraseFile = flagText(context, 'passphrase-file');
  const passphrase =
    passphraseFile !== undefined
      ? await readPassphraseFile(resolve(context.io.cwd, passphraseFile))
      : undefined;
  let signature: Uint8Array;
  try {
    signature = await signSimpleSigning(manifest, dockerReference, fingerprint, {
      env: context.io.env,
      ...(passphrase !== undefined ? { passphrase } : {}),
      ...(context.signal ? { signal: context.signal } : {}),
    });
  } catch (error) {
    throw wrapError('Error creating signature', error);
  }
  try {
    await writeFile(resolve(context.io.cwd, output), signature, { mode: 0o644 });
  } catch (error) {
    throw wrapError(
      `Error writing signature to ${output}`,
      new Error(goPathErrorMessage(error, 'open', output)),
    );
  }
}

/** The public keys of `fingerprints` exported from the user's GnuPG keyring (`GNUPGHOME`). */
async function exportFromKeyring(context: CommandContext, fingerprints: string[]): Promise<Uint8Array> {
  try {
    const { stdout } = await execFileAsync('gpg', ['--batch', '--no-tty', '--export', ...fingerprints], {
      env: context.io.env,
      encoding: 'buffer',
      maxBuffer: 16 * 1024 * 1024,
    });
    return new Uint8Array(stdout);
  } catch (error) {
    const failure = error as { stderr?: Buffer };
    throw wrapError(
      'Error initializing GPG',
      new Error(failure.stderr?.toString().trim() || errorMessage(error)),
    );
  }
}

async function standaloneVerify(context: CommandContext): Promise<void> {
  if (context.positionals.length !== 4) {
    throw new UsageError(
      'Usage: gantry standalone-verify manifest docker-reference key-fingerprint signature',
    );
  }
  const [manifestPath, dockerReference, fingerprintList, signaturePath] = context.positionals as [
    string,
    string,
    string,
    string,
  ];
  const fingerprints = fingerprintList
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  const publicKeyFile = flagText(context, 'public-key-file');
  const any = fingerprints.length === 1 && fingerprints[0] === 'any';
  if (any && publicKeyFile === undefined) {
    throw new UsageError('Cannot use any fingerprint without a public key file');
  }
  const manifest = await readInput(context, manifestPath, 'manifest from');
  const signature = await readInput(context, signaturePath, 'signature from');
  const keyData =
    publicKeyFile !== undefined
      ? await readInput(context, publicKeyFile, 'public key from')
      : await exportFromKeyring(context, fingerprints);
  const keys = await readGpgPublicKeys([keyData]);
  let verified: Awaited<ReturnType<typeof verifyStandaloneSignature>>;
  try {
    verified = await verifyStandaloneSignature(
      signature,
      manifest,
      dockerReference,
      keys,
      any ? [] : fingerprints,
    );
  } catch (error) {
    throw wrapError('Error verifying signature', error);
  }
  context.print(`Signature verified, digest ${verified.dockerManifestDigest}\n`);
}

/** Go's RFC 3339 rendering of a time in the local zone (`2026-12-05T06:55:00Z`, `…+01:00`). */
function goTime(seconds: number): string {
  const date = new Date(seconds * 1000);
  const offsetMinutes = -date.getTimezoneOffset();
  const local = new Date(date.getTime() + offsetMinutes * 60_000).toISOString().replace(/\.\d{3}Z$/, '');
  if (offsetMinutes === 0) return `${local}Z`;
  const sign = offsetMinutes > 0 ? '+' : '-';
  const absolute = Math.abs(offsetMinutes);
  return `${local}${sign}${String(Math.floor(absolute / 60)).padStart(2, '0')}:${String(absolute % 60).padStart(2, '0')}`;
}

async function untrustedSignatureDump(context: CommandContext): Promise<void> {
  if (context.positionals.length !== 1) {
    throw new UsageError('Usage: gantry untrusted-signature-dump-without-verification signature');
  }
  const path = context.positionals[0]!;
  const signature = await readInput(context, path, 'untrusted signature from');
  let information: Awaited<ReturnType<typeof readUntrustedSimpleSigningSignature>>;
  try {
    information = await readUntrustedSimpleSigningSignature(signature);
  } catch (error) {
    throw wrapError('Error decoding untrusted signature', error);
  }
  const dump = {
    UntrustedDockerManifestDigest: information.dockerManifestDigest,
    UntrustedDockerReference: information.dockerReference,
    UntrustedCreatorID: information.creator ?? null,
    UntrustedTimestamp: information.timestamp !== undefined ? goTime(information.timestamp) : null,
    UntrustedShortKeyIdentifier: information.shortKeyIdentifier,
  };
  // As Go's json.MarshalIndent: 4-space indentation, and <, >, &, U+2028 and U+2029 escaped.
  const json = JSON.stringify(dump, null, 4).replace(
    /[<>&\u2028\u2029]/g,
    (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  context.print(`${json}\n`);
}

async function ensurePathDoesNotExist(path: string): Promise<void> {
  try {
    await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new Error(`Error checking existence of ${JSON.stringify(path)}: ${errorMessage(error)}`);
  }
  throw new Error(`Refusing to overwrite existing ${JSON.stringify(path)}`);
}

async function generateSigstoreKey(context: CommandContext): Promise<void> {
  const prefix = flagText(context, 'output-prefix');
  if (context.positionals.length !== 0 || prefix === undefined) {
    throw new UsageError('Usage: generate-sigstore-key --output-prefix PREFIX');
  }
  const publicKeyPath = `${prefix}.pub`;
  const privateKeyPath = `${prefix}.private`;
  await ensurePathDoesNotExist(resolve(context.io.cwd, publicKeyPath));
  await ensurePathDoesNotExist(resolve(context.io.cwd, privateKeyPath));
  const passphraseFile = flagText(context, 'passphrase-file');
  if (passphraseFile === undefined) {
    throw new UsageError(
      'generate-sigstore-key needs --passphrase-file: gantry does not prompt for the passphrase',
    );
  }
  const passphrase = await readPassphraseFile(resolve(context.io.cwd, passphraseFile));
  const keys = await generateSigstoreKeyPair(new TextEncoder().encode(passphrase));
  try {
    await writeFile(resolve(context.io.cwd, privateKeyPath), keys.privateKey, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    throw wrapError(`Error writing private key to ${JSON.stringify(privateKeyPath)}`, error);
  }
  try {
    await writeFile(resolve(context.io.cwd, publicKeyPath), keys.publicKey, { mode: 0o644, flag: 'wx' });
  } catch (error) {
    throw wrapError(`Error writing public key to ${JSON.stringify(publicKeyPath)}`, error);
  }
  context.print(`Key written to ${JSON.stringify(privateKeyPath)} and ${JSON.stringify(publicKeyPath)}\n`);
}

/** `gantry standalone-sign`: skopeo standalone-sign (GPG, through the user's gpg keyring). */
export const standaloneSignCommand: CommandDefinition = {
  name: 'standalone-sign',
  use: 'standalone-sign [command options] MANIFEST DOCKER-REFERENCE KEY-FINGERPRINT --output|-o SIGNATURE',
  short: 'Create a signature using local files',
  long: 'Create a signature using local files',
  examples: 'gantry standalone-sign manifest.json registry.example.com/app:v1 FINGERPRINT -o signature',
  flags: [
    {
      name: 'output',
      short: 'o',
      kind: 'string',
      valueName: 'SIGNATURE',
      description: 'output the signature to SIGNATURE',
    },
    {
      name: 'passphrase-file',
      kind: 'string',
      description: 'file that contains a passphrase for the --sign-by key',
    },
  ],
  run: standaloneSign,
};

/** `gantry standalone-verify`: skopeo standalone-verify. */
export const standaloneVerifyCommand: CommandDefinition = {
  name: 'standalone-verify',
  use: 'standalone-verify [command options] MANIFEST DOCKER-REFERENCE KEY-FINGERPRINTS SIGNATURE',
  short: 'Verify a signature using local files',
  long:
    'Verify a signature using local files\n\n' +
    'KEY-FINGERPRINTS can be a comma separated list of fingerprints, or "any" if you trust all the keys in the public key file.',
  flags: [
    {
      name: 'public-key-file',
      kind: 'string',
      description: 'File containing public keys. If not specified, will use local GPG keys.',
    },
  ],
  run: standaloneVerify,
};

/** `gantry untrusted-signature-dump-without-verification`: skopeo's hidden command. */
export const untrustedSignatureDumpCommand: CommandDefinition = {
  name: 'untrusted-signature-dump-without-verification',
  use: 'untrusted-signature-dump-without-verification SIGNATURE',
  short: 'Dump contents of a signature WITHOUT VERIFYING IT',
  long: 'Dump contents of a signature WITHOUT VERIFYING IT',
  hidden: true,
  flags: [],
  run: untrustedSignatureDump,
};

/** `gantry generate-sigstore-key`: later skopeo's key generation (cosign's file formats). */
export const generateSigstoreKeyCommand: CommandDefinition = {
  name: 'generate-sigstore-key',
  use: 'generate-sigstore-key [command options] --output-prefix PREFIX',
  short: 'Generate a sigstore public/private key pair',
  long: 'Generate a sigstore public/private key pair',
  flags: [
    {
      name: 'output-prefix',
      kind: 'string',
      valueName: 'PREFIX',
      description: 'Write the keys to PREFIX.pub and PREFIX.private',
    },
    {
      name: 'passphrase-file',
      kind: 'string',
      valueName: 'PATH',
      description: 'Read a passphrase for the private key from PATH',
    },
  ],
  run: generateSigstoreKey,
};
