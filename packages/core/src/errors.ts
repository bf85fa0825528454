/**
 * Errors thrown by Gantry carry a stable `code`: callers (the CLI, programs embedding Gantry) match on
 * `code`, never on message text or class identity. `isGantryError` recognises errors across copies of
 * this package through a `Symbol.for` brand, like undici's errors.
 */
import { describeFileSystemError } from './file-system.js';

const brand = Symbol.for('gantry.error');

/** Every stable error code. New codes may be added; existing ones never change meaning. */
export const ErrorCodes = {
  /** A reference string (transport:reference, docker reference, digest) is malformed. */
  InvalidReference: 'ERR_GANTRY_INVALID_REFERENCE',
  /** The transport named in a reference is not known to anyone. */
  UnknownTransport: 'ERR_GANTRY_UNKNOWN_TRANSPORT',
  /** The transport is known (first-party) but its package is not installed. */
  TransportNotInstalled: 'ERR_GANTRY_TRANSPORT_NOT_INSTALLED',
  /** A package offered as a transport plugin does not satisfy the contract. */
  InvalidTransportPlugin: 'ERR_GANTRY_INVALID_TRANSPORT_PLUGIN',
  /** The image (or the manifest instance, or the tag) does not exist. Maps to exit code 2. */
  ImageNotFound: 'ERR_GANTRY_IMAGE_NOT_FOUND',
  /** A repository the registry does not know (its tag list answered 404); not an image's absence. */
  RepositoryNotFound: 'ERR_GANTRY_REPOSITORY_NOT_FOUND',
  /** A blob the manifest refers to does not exist in the source. */
  BlobNotFound: 'ERR_GANTRY_BLOB_NOT_FOUND',
  /** Bytes read do not hash to the digest they were expected to have. */
  DigestMismatch: 'ERR_GANTRY_DIGEST_MISMATCH',
  /** Bytes read are not as many as expected. */
  SizeMismatch: 'ERR_GANTRY_SIZE_MISMATCH',
  /** A digest string is malformed or uses an unsupported algorithm. */
  InvalidDigest: 'ERR_GANTRY_INVALID_DIGEST',
  /** A manifest or image config cannot be parsed or violates its specification. */
  InvalidManifest: 'ERR_GANTRY_INVALID_MANIFEST',
  /** The manifest MIME type is not one Gantry knows or the operation supports. */
  UnsupportedManifestType: 'ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE',
  /** No manifest format the destination accepts can represent the image. */
  ManifestConversionFailed: 'ERR_GANTRY_MANIFEST_CONVERSION_FAILED',
  /** `preserveDigests` was requested but the copy would change a digest. */
  DigestsNotPreservable: 'ERR_GANTRY_DIGESTS_NOT_PRESERVABLE',
  /** No instance of a manifest list matches the wanted platform. */
  NoMatchingPlatform: 'ERR_GANTRY_NO_MATCHING_PLATFORM',
  /** The signature policy rejected the image, or could not be loaded. */
  PolicyRejected: 'ERR_GANTRY_POLICY_REJECTED',
  /** policy.json is missing or malformed. */
  InvalidPolicy: 'ERR_GANTRY_INVALID_POLICY',
  /** A signature does not verify, is malformed, or does not match what it should sign. */
  InvalidSignature: 'ERR_GANTRY_INVALID_SIGNATURE',
  /** A key (public key file, private key file, passphrase) cannot be used, or making a signature failed. */
  SigningFailed: 'ERR_GANTRY_SIGNING_FAILED',
  /** A storage layout on disk (OCI layout, dir:, archive) is malformed or hostile. */
  InvalidLayout: 'ERR_GANTRY_INVALID_LAYOUT',
  /**
   * A layer tar is malformed or hostile: a bad header, a truncated entry, or an entry that would write
   * outside the layer's root (`..`, absolute paths, symlink or hardlink escapes). The message names the entry.
   */
  InvalidLayer: 'ERR_GANTRY_INVALID_LAYER',
  /** A configuration file (storage.conf, …) is malformed or names impossible settings. */
  InvalidConfiguration: 'ERR_GANTRY_INVALID_CONFIGURATION',
  /** The destination refuses the operation (e.g. signatures on a transport without them). */
  NotSupported: 'ERR_GANTRY_NOT_SUPPORTED',
  /** The operation was aborted through an AbortSignal or a timeout. */
  Aborted: 'ERR_GANTRY_ABORTED',
  /** Command-line usage error (unknown flag, wrong number of arguments). */
  Usage: 'ERR_GANTRY_USAGE',
  /** Credentials were refused by a registry. */
  Unauthorized: 'ERR_GANTRY_UNAUTHORIZED',
  /** Any I/O or remote failure that may succeed when retried (connection reset, 5xx). */
  Transient: 'ERR_GANTRY_TRANSIENT',
  /** Anything else. */
  Internal: 'ERR_GANTRY_INTERNAL',
} as const;

/** One of the stable `ERR_GANTRY_*` codes of {@link ErrorCodes}. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Options of the {@link GantryError} constructor. */
export interface GantryErrorOptions {
  cause?: unknown;
  /** Whether retrying the same operation may succeed (network hiccups, 5xx). Default false. */
  retryable?: boolean;
}

/** An error with a stable `code`; `instanceof` and `isGantryError` recognise it across copies of this package. */
export class GantryError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly [brand] = true;

  /**
   * `error instanceof GantryError` holds for Gantry errors of any copy of this package (a plugin's own
   * @gantry/core beside the CLI's bundled one), by the same brand as `isGantryError`. Subclasses keep
   * the ordinary prototype check.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the class instanceof was asked about (maybe a subclass).
    if (this === GantryError) return isGantryError(value);
    // biome-ignore lint/complexity/noThisInStatic: as above.
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }

  constructor(code: ErrorCode, message: string, options: GantryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GantryError';
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** True for any Gantry error, including ones from another copy of this package. */
export function isGantryError(value: unknown): value is GantryError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
}

/** True when `value` is a Gantry error with the given code. */
export function hasErrorCode(value: unknown, code: ErrorCode): value is GantryError {
  return isGantryError(value) && value.code === code;
}

/** Converts an abort reason into a Gantry `Aborted` error (used when an AbortSignal fires). */
export function abortError(signal: AbortSignal): GantryError {
  if (isGantryError(signal.reason)) return signal.reason;
  const reason = signal.reason instanceof Error ? signal.reason.message : 'operation aborted';
  return new GantryError(ErrorCodes.Aborted, reason, { cause: signal.reason });
}

/**
 * Prefixes an error's message like Go's `fmt.Errorf("prefix: %w", err)`, keeping its Gantry code and
 * whether it is retryable (anything else becomes `ERR_GANTRY_INTERNAL`); a Node.js system error is
 * worded as Go's (`open /x: no such file or directory`), as skopeo prints it.
 */
export function prefixError(prefix: string, error: unknown): GantryError {
  const code = isGantryError(error) ? error.code : ErrorCodes.Internal;
  const message = error instanceof Error ? describeFileSystemError(error) : String(error);
  return new GantryError(code, `${prefix}: ${message}`, {
    cause: error,
    retryable: isGantryError(error) ? error.retryable : false,
  });
}

/** Throws the Gantry `Aborted` error when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}
