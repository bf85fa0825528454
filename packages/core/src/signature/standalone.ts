/**
 * Signing and verifying with local files, as skopeo's `standalone-sign` and `standalone-verify`: a
 * manifest, the docker reference it is signed for, and a GPG key.
 */

import type { Digest } from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
import { manifestMatchesDigest } from '../manifest/index.js';
import { parseNormalizedNamed } from '../reference/index.js';
import { type GpgPublicKeys, verifySimpleSigningSignature } from './simple-signing.js';

function invalid(message: string): GantryError {
  return new GantryError(ErrorCodes.InvalidSignature, message);
}

/**
 * Verifies a simple-signing signature of `manifest` for `expectedReference`, made by a key whose
 * fingerprint is one of `expectedFingerprints` (all of `publicKeys` when empty). Returns the signed
 * manifest digest. Throws `ERR_GANTRY_INVALID_SIGNATURE` in containers/image's words ("Signature by
 * … does not match expected fingerprint(s) …", "Signature for docker digest … does not match",
 * "Docker reference … does not match …").
 */
export async function verifyStandaloneSignature(
  signature: Uint8Array,
  manifest: Uint8Array,
  expectedReference: string,
  publicKeys: GpgPublicKeys,
  expectedFingerprints: readonly string[] = [],
): Promise<{ dockerManifestDigest: Digest; dockerReference: string; keyFingerprint: string }> {
  let expected: string;
  try {
    expected = parseNormalizedNamed(expectedReference).toString();
  } catch (error) {
    throw invalid((error as Error).message);
  }
  if (publicKeys.fingerprints.length === 0) throw invalid('No public keys imported');
  const wanted = expectedFingerprints.map((fingerprint) => fingerprint.toUpperCase());
  const verified = await verifySimpleSigningSignature(signature, publicKeys, {
    validateKeyFingerprint(fingerprint) {
      if (wanted.length > 0 && !wanted.includes(fingerprint)) {
        throw invalid(
          wanted.length === 1
            ? `Signature by ${fingerprint} does not match expected fingerprint ${wanted[0]}`
            : `Signature by ${fingerprint} does not match expected fingerprints ${JSON.stringify(wanted)}`,
        );
      }
    },
    validateManifestDigest(digest) {
      let matches = false;
      try {
        matches = manifestMatchesDigest(manifest, digest as Digest);
      } catch (error) {
        throw invalid((error as Error).message);
      }
      if (!matches) throw invalid(`Signature for docker digest ${digest} does not match`);
    },
    validateDockerReference(signed) {
      let signedName: string;
      try {
        signedName = parseNormalizedNamed(signed).toString();
      } catch {
        throw invalid(`Invalid docker reference ${signed} in signature`);
      }
      if (signedName !== expected) {
        throw invalid(`Docker reference ${signed} does not match ${expectedReference}`);
      }
    },
  });
  return { ...verified, dockerManifestDigest: verified.dockerManifestDigest as Digest };
}
