import type { Digest } from '../digest.js';
import { ErrorCodes, GantryError, isGantryError } from '../errors.js';
import { manifestDigest } from '../manifest/index.js';
import { evaluatePolicy, loadDefaultPolicy, type Policy } from '../policy/index.js';
import type { ImageReference, ManifestBlob, TransportContext } from '../transport/contract.js';

/** Options of `verifyImage`. */
export interface VerifyImageOptions {
  /** The policy; default `loadDefaultPolicy()`. */
  policy?: Policy;
  /** How the image is opened (credentials, TLS, registries.d for signatures). */
  context?: TransportContext;
  /** For a list, also check this instance (its own signatures) after the list. */
  instanceDigest?: Digest;
  signal?: AbortSignal;
}

/** What `verifyImage` accepted. */
export interface VerifiedImage {
  /** The digest of the top-level manifest that was checked. */
  manifestDigest: Digest;
  manifest: ManifestBlob;
  /** How many signatures the image has (verified or not). */
  signatureCount: number;
}

/**
 * Checks an image against the signature policy without copying it, as `copyImage` checks a source:
 * reads the top-level manifest and its signatures (and, with `instanceDigest`, the instance's) and
 * evaluates the policy. Resolves with the checked manifest's digest; rejects with
 * `ERR_GANTRY_POLICY_REJECTED` ("Source image rejected: …") when the policy refuses the image.
 */
export async function verifyImage(
  reference: ImageReference,
  options: VerifyImageOptions = {},
): Promise<VerifiedImage> {
  const policy = options.policy ?? (await loadDefaultPolicy());
  const context = options.signal ? { ...options.context, signal: options.signal } : options.context;
  const source = await reference.newImageSource(context);
  try {
    const operation = options.signal ? { signal: options.signal } : {};
    const check = async (
      instance: Digest | undefined,
    ): Promise<{ manifest: ManifestBlob; count: number }> => {
      const manifest = await source.getManifest(instance, operation);
      const signatures = await source.getSignatures(instance, operation);
      try {
        await evaluatePolicy(policy, source.reference, { manifest, signatures });
      } catch (error) {
        if (!isGantryError(error) || error.code !== ErrorCodes.PolicyRejected) throw error;
        throw new GantryError(error.code, `Source image rejected: ${error.message}`, { cause: error });
      }
      return { manifest, count: signatures.length };
    };
    const top = await check(undefined);
    if (options.instanceDigest !== undefined) await check(options.instanceDigest);
    return {
      manifestDigest: manifestDigest(top.manifest.bytes),
      manifest: top.manifest,
      signatureCount: top.count,
    };
  } finally {
    await source.close();
  }
}
