/**
 * Signing images while copying them (skopeo copy `--sign-by`, `--sign-by-sigstore-private-key`,
 * `--sign-identity`): signers are prepared before anything is copied (a wrong passphrase or a key file
 * that is not a key fails at once), then sign each manifest written.
 */
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ErrorCodes, GantryError } from '../errors.js';
import { type DockerReference, isNameOnly, parseNamed } from '../reference/index.js';
import { readSigstorePrivateKey, signSigstore } from './sigstore.js';
import { signSimpleSigning } from './simple-signing.js';
import { sigstoreSignatureBlob } from './stored.js';

/** Signatures to add to every manifest a copy writes. */
export interface SigningOptions {
  /** Sign with this GPG key (a fingerprint, as skopeo's `--sign-by`) from the user's GnuPG keyring. */
  gpgKey?: string;
  /** The GPG key's passphrase, when it has one. */
  gpgPassphrase?: string;
  /** The environment `gpg` runs with (its `GNUPGHOME`); default `process.env`. */
  gpgEnv?: NodeJS.ProcessEnv;
  /** Sign with this sigstore (cosign) private key: a file path, or the file's bytes. */
  sigstorePrivateKey?: string | Uint8Array;
  /** The sigstore private key's passphrase (required with `sigstorePrivateKey`). */
  sigstorePassphrase?: string | Uint8Array;
  /**
   * The identity the signatures name, a fully specified docker reference in canonical form
   * (`registry.example/app:v1`); default the destination's docker reference.
   */
  identity?: string;
}

/** Makes signatures (storage form) of a manifest for an identity. */
export interface ImageSigner {
  /** What skopeo prints while signing, e.g. `Signing manifest using simple signing`. */
  readonly progressMessage: string;
  sign(manifest: Uint8Array, identity: DockerReference, signal?: AbortSignal): Promise<Uint8Array>;
}

function failed(message: string, cause?: unknown): GantryError {
  return new GantryError(ErrorCodes.SigningFailed, message, cause === undefined ? {} : { cause });
}

/**
 * Parses and checks `SigningOptions.identity`: canonical form, with a tag or digest. Throws
 * `ERR_GANTRY_SIGNING_FAILED` ("Could not parse --sign-identity: …", "Sign identity must be a fully
 * specified reference …").
 */
export function parseSignIdentity(identity: string): DockerReference {
  let parsed: DockerReference;
  try {
    parsed = parseNamed(identity);
  } catch (error) {
    throw failed(`Could not parse --sign-identity: ${(error as Error).message}`, error);
  }
  if (isNameOnly(parsed))
    throw failed(`Sign identity must be a fully specified reference ${parsed.toString()}`);
  return parsed;
}

/**
 * The signers `options` ask for, GPG first then sigstore (skopeo's order), ready to sign: the sigstore
 * key is read and decrypted here. Throws `ERR_GANTRY_SIGNING_FAILED` naming the problem.
 */
export async function prepareSigners(options: SigningOptions): Promise<ImageSigner[]> {
  const signers: ImageSigner[] = [];
  if (options.gpgKey !== undefined && options.gpgKey !== '') {
    const key = options.gpgKey;
    signers.push({
      progressMessage: 'Signing manifest using simple signing',
      sign: async (manifest, identity, signal) => {
        try {
          return await signSimpleSigning(manifest, identity.toString(), key, {
            ...(options.gpgEnv ? { env: options.gpgEnv } : {}),
            ...(options.gpgPassphrase !== undefined ? { passphrase: options.gpgPassphrase } : {}),
            ...(signal ? { signal } : {}),
          });
        } catch (error) {
          throw failed(`creating signature: ${(error as Error).message}`, error);
        }
      },
    });
  }
  if (options.sigstorePrivateKey !== undefined) {
    const source = options.sigstorePrivateKey;
    if (options.sigstorePassphrase === undefined) {
      throw failed('creating signature: private key passphrase not provided');
    }
    let pem: Uint8Array;
    if (typeof source === 'string') {
      try {
        pem = new Uint8Array(await readFile(source));
      } catch (error) {
        throw failed(`reading private key from ${source}: ${(error as Error).message}`, error);
      }
    } else {
      pem = source;
    }
    const passphrase =
      typeof options.sigstorePassphrase === 'string'
        ? new TextEncoder().encode(options.sigstorePassphrase)
        : options.sigstorePassphrase;
    let privateKey: KeyObject;
    try {
      privateKey = await readSigstorePrivateKey(pem, passphrase);
    } catch (error) {
      throw failed(`initializing private key: ${(error as Error).message}`, error);
    }
    signers.push({
      progressMessage: 'Signing manifest using a sigstore signature',
      sign: async (manifest, identity) =>
        sigstoreSignatureBlob(signSigstore(manifest, identity.toString(), privateKey)),
    });
  }
  return signers;
}
