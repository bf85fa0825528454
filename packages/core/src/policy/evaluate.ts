import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Digest } from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
import { manifestMatchesDigest } from '../manifest/index.js';
import {
  type FulcioTrustRoot,
  type PkiTrustRoot,
  readCertificates,
  verifyPkiCertificate,
  verifyRekorFulcio,
} from '../signature/fulcio.js';
import { readRekorPublicKey, verifyRekorSet } from '../signature/rekor.js';
import { readSigstorePublicKey, verifySigstoreSignature } from '../signature/sigstore.js';
import {
  type GpgPublicKeys,
  readGpgPublicKeys,
  type SignatureAcceptanceRules,
  verifySimpleSigningSignature,
} from '../signature/simple-signing.js';
import {
  parseStoredSignature,
  type SigstoreSignature,
  sigstoreCertificateAnnotation,
  sigstoreChainAnnotation,
  sigstoreSetAnnotation,
  sigstoreSignatureAnnotation,
  sigstoreSignatureMimeType,
} from '../signature/stored.js';
import type { ImageReference, ManifestBlob, Transport } from '../transport/contract.js';
import { signedIdentityMatches } from './reference-match.js';
import type { Policy, PolicyRequirement, SigstoreFulcio, SigstorePki } from './types.js';

/** What `evaluatePolicy` looks at besides the reference. */
export interface PolicyImage {
  manifest: ManifestBlob;
  signatures: Uint8Array[];
}

/** `transport:reference`, as containers/image's transports.ImageName. */
function imageName(reference: ImageReference): string {
  return `${reference.transport.name}:${reference.stringWithinTransport()}`;
}

const validatedTransports = new WeakMap<Policy, WeakSet<Transport>>();

/**
 * Checks every scope the policy lists for `transport` (except the transport default '') with
 * `transport.validatePolicyConfigurationScope`. Sections of other transports are not checked.
 * Throws `ERR_GANTRY_INVALID_POLICY` naming the scope and the transport's reason.
 */
export function validatePolicyScopes(policy: Policy, transport: Transport): void {
  if (validatedTransports.get(policy)?.has(transport)) return;
  const scopes = policy.transports.get(transport.name);
  if (scopes) {
    for (const scope of scopes.keys()) {
      if (scope === '') continue;
      try {
        transport.validatePolicyConfigurationScope(scope);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new GantryError(
          ErrorCodes.InvalidPolicy,
          `invalid policy in "${policy.source}": transports[${JSON.stringify(transport.name)}][${JSON.stringify(scope)}]: ` +
            `invalid scope for transport "${transport.name}": ${reason}`,
          { cause: error },
        );
      }
    }
  }
  let checked = validatedTransports.get(policy);
  if (!checked) {
    checked = new WeakSet();
    validatedTransports.set(policy, checked);
  }
  checked.add(transport);
}

/**
 * The requirements that apply to `reference`, chosen exactly like containers/image's policy_eval:
 * in the section of the reference's transport, the scope equal to
 * `reference.policyConfigurationIdentity()`, else the first of
 * `reference.policyConfigurationNamespaces()` (most specific first) that is listed, else the
 * transport default scope ''; when none of these exists (or the transport has no section), the
 * global `default`.
 */
export function policyRequirementsFor(
  policy: Policy,
  reference: ImageReference,
): readonly PolicyRequirement[] {
  const scopes = policy.transports.get(reference.transport.name);
  if (scopes) {
    const identity = scopes.get(reference.policyConfigurationIdentity());
    if (identity) return identity;
    for (const namespace of reference.policyConfigurationNamespaces()) {
      const requirements = scopes.get(namespace);
      if (requirements) return requirements;
    }
    const transportDefault = scopes.get('');
    if (transportDefault) return transportDefault;
  }
  return policy.default;
}

function rejected(message: string): GantryError {
  return new GantryError(ErrorCodes.PolicyRejected, message);
}

/** Go's wording for a file that cannot be read: `open <path>: no such file or directory`. */
async function readKeyFile(filePath: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(filePath));
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const match = /^[A-Z0-9_]+: (.*?), \w+ '.*'$/.exec(message);
    throw rejected(`open ${filePath}: ${match ? match[1] : message}`);
  }
}

/** The key data a requirement names (`keyPath`, `keyPaths` or `keyData`, and for sigstore `keyDatas`). */
async function keyBlobs(requirement: {
  keyPath?: string;
  keyPaths?: readonly string[];
  keyData?: Uint8Array;
  keyDatas?: readonly Uint8Array[];
}): Promise<Uint8Array[]> {
  if (requirement.keyPath !== undefined) return [await readKeyFile(requirement.keyPath)];
  if (requirement.keyPaths !== undefined) return Promise.all(requirement.keyPaths.map(readKeyFile));
  if (requirement.keyData !== undefined) return [requirement.keyData];
  if (requirement.keyDatas !== undefined) return [...requirement.keyDatas];
  return [];
}

type SignedByRequirement = Extract<PolicyRequirement, { type: 'signedBy' }>;
type SigstoreRequirement = Extract<PolicyRequirement, { type: 'sigstoreSigned' }>;

/**
 * Keys read for a requirement, kept for the requirement's lifetime: a list's instances are checked
 * one by one against the same keys. A policy is immutable; load it again to see changed key files.
 */
const gpgKeysCache = new WeakMap<PolicyRequirement, Promise<GpgPublicKeys>>();
const sigstoreKeysCache = new WeakMap<PolicyRequirement, Promise<KeyObject[]>>();

function cached<T>(
  cache: WeakMap<PolicyRequirement, Promise<T>>,
  requirement: PolicyRequirement,
  load: () => Promise<T>,
): Promise<T> {
  let pending = cache.get(requirement);
  if (!pending) {
    pending = load();
    cache.set(requirement, pending);
    pending.catch(() => cache.delete(requirement));
  }
  return pending;
}

/** The message of a rejection reason. */
function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** containers/image's summary of a requirement's per-signature rejections. */
function summarise(reasons: string[], none: string): never {
  if (reasons.length === 0) throw rejected(none);
  if (reasons.length === 1) throw rejected(reasons[0]!);
  throw rejected(`None of the signatures were accepted, reasons: ${reasons.join('; ')}`);
}

/** Acceptance rules for the digest and identity a signature claims. */
function claimRules(
  requirement: SignedByRequirement | SigstoreRequirement,
  reference: ImageReference,
  image: PolicyImage,
): Omit<SignatureAcceptanceRules, 'validateKeyFingerprint'> {
  return {
    validateManifestDigest(digest) {
      let matches: boolean;
      try {
        matches = manifestMatchesDigest(image.manifest.bytes, digest as Digest);
      } catch (error) {
        throw rejected(reasonOf(error));
      }
      if (!matches) throw rejected(`Signature for digest ${digest} does not match`);
    },
    validateDockerReference(signedReference) {
      if (!signedIdentityMatches(requirement.signedIdentity, reference.dockerReference(), signedReference)) {
        throw rejected(`Signature for identity ${signedReference} is not accepted`);
      }
    },
  };
}

async function evaluateSignedBy(
  requirement: SignedByRequirement,
  reference: ImageReference,
  image: PolicyImage,
): Promise<void> {
  const simpleSignatures: Uint8Array[] = [];
  const reasons: string[] = [];
  for (const blob of image.signatures) {
    try {
      const parsed = parseStoredSignature(blob);
      if (parsed.format === 'simple-signing') simpleSignatures.push(parsed.signature);
    } catch {
      // Not a simple-signing signature: not this requirement's business (as containers/image).
    }
  }
  if (simpleSignatures.length === 0) throw rejected('A signature was required, but no signature exists');
  if (requirement.keyType !== 'GPGKeys') {
    summarise(
      simpleSignatures.map(() => `Unimplemented "keyType" value "${requirement.keyType}"`),
      '',
    );
  }
  let keys: GpgPublicKeys;
  try {
    keys = await cached(gpgKeysCache, requirement, async () =>
      readGpgPublicKeys(await keyBlobs(requirement)),
    );
  } catch (error) {
    summarise(
      simpleSignatures.map(() => reasonOf(error)),
      '',
    );
  }
  for (const signature of simpleSignatures) {
    try {
      if (keys.fingerprints.length === 0) throw rejected('No public keys imported');
      await verifySimpleSigningSignature(signature, keys, {
        validateKeyFingerprint(fingerprint) {
          if (!keys.fingerprints.includes(fingerprint)) {
            throw rejected(`Signature by key ${fingerprint} is not accepted`);
          }
        },
        ...claimRules(requirement, reference, image),
      });
      return;
    } catch (error) {
      reasons.push(reasonOf(error));
    }
  }
  summarise(reasons, 'A signature was required, but no signature exists');
}

const rekorKeysCache = new WeakMap<PolicyRequirement, Promise<KeyObject[] | undefined>>();

/** The Rekor public keys a requirement names (`rekorPublicKeyPath`, `…Paths`, `…Data`, `…Datas`), if any. */
function rekorKeysOf(requirement: SigstoreRequirement): Promise<KeyObject[] | undefined> {
  return cached(rekorKeysCache, requirement, async () => {
    const sources = {
      ...(requirement.rekorPublicKeyPath !== undefined ? { keyPath: requirement.rekorPublicKeyPath } : {}),
      ...(requirement.rekorPublicKeyPaths !== undefined ? { keyPaths: requirement.rekorPublicKeyPaths } : {}),
      ...(requirement.rekorPublicKeyData !== undefined ? { keyData: requirement.rekorPublicKeyData } : {}),
      ...(requirement.rekorPublicKeyDatas !== undefined ? { keyDatas: requirement.rekorPublicKeyDatas } : {}),
    };
    if (Object.keys(sources).length === 0) return undefined;
    return (await keyBlobs(sources)).map((blob) => readRekorPublicKey(blob));
  });
}

/**
 * The one public key that a signature's Rekor SET (the `dev.sigstore.cosign/bundle` annotation)
 * vouches for, checked with the Rekor keys; rejects naming every key's failure.
 */
function rekorVerifiedKey(
  candidate: SigstoreSignature,
  keys: readonly KeyObject[],
  rekorKeys: readonly KeyObject[],
): KeyObject {
  const base64Signature = candidate.annotations[sigstoreSignatureAnnotation];
  if (base64Signature === undefined) throw rejected(`missing ${sigstoreSignatureAnnotation} annotation`);
  const set = candidate.annotations[sigstoreSetAnnotation];
  if (set === undefined) throw rejected(`missing ${sigstoreSetAnnotation} annotation`);
  const failures: string[] = [];
  for (const key of keys) {
    try {
      verifyRekorSet(
        rekorKeys,
        set,
        key.export({ format: 'der', type: 'spki' }),
        base64Signature,
        candidate.payload,
      );
      return key;
    } catch (error) {
      failures.push(reasonOf(error));
    }
  }
  throw rejected(`No public key verified against the RekorSET: ${failures.join(', ')}`);
}

const fulcioCache = new WeakMap<PolicyRequirement, Promise<FulcioTrustRoot>>();

/** The Fulcio CA certificates (`caPath` or `caData`) and expected identity of a requirement. */
function fulcioTrustRootOf(
  requirement: SigstoreRequirement,
  settings: SigstoreFulcio,
): Promise<FulcioTrustRoot> {
  return cached(fulcioCache, requirement, async () => {
    const [data] = await keyBlobs({
      ...(settings.caPath !== undefined ? { keyPath: settings.caPath } : {}),
      ...(settings.caData !== undefined ? { keyData: settings.caData } : {}),
    });
    if (data === undefined) throw rejected('Internal inconsistency: Fulcio CA not set');
    return {
      caCertificates: readCertificates(Buffer.from(data).toString('utf8'), 'loading Fulcio CA'),
      oidcIssuer: settings.oidcIssuer,
      subjectEmail: settings.subjectEmail,
    };
  });
}

/** The public key of a signature's Fulcio certificate, once its Rekor SET and certificate check out. */
function fulcioVerifiedKey(
  candidate: SigstoreSignature,
  root: FulcioTrustRoot,
  rekorKeys: readonly KeyObject[],
): KeyObject {
  const base64Signature = candidate.annotations[sigstoreSignatureAnnotation];
  if (base64Signature === undefined) throw rejected(`missing ${sigstoreSignatureAnnotation} annotation`);
  const set = candidate.annotations[sigstoreSetAnnotation];
  if (set === undefined) throw rejected(`missing ${sigstoreSetAnnotation} annotation`);
  const certificate = candidate.annotations[sigstoreCertificateAnnotation];
  if (certificate === undefined) throw rejected(`missing ${sigstoreCertificateAnnotation} annotation`);
  return verifyRekorFulcio(
    rekorKeys,
    root,
    set,
    certificate,
    candidate.annotations[sigstoreChainAnnotation],
    base64Signature,
    candidate.payload,
  );
}

const pkiCache = new WeakMap<PolicyRequirement, Promise<PkiTrustRoot>>();

/** The root and intermediate certificates and expected subject of a `pki` requirement. */
function pkiTrustRootOf(requirement: SigstoreRequirement, settings: SigstorePki): Promise<PkiTrustRoot> {
  return cached(pkiCache, requirement, async () => {
    const [roots] = await keyBlobs({
      ...(settings.caRootsPath !== undefined ? { keyPath: settings.caRootsPath } : {}),
      ...(settings.caRootsData !== undefined ? { keyData: settings.caRootsData } : {}),
    });
    if (roots === undefined) throw rejected('Internal inconsistency: PKI roots not set');
    const [intermediates] = await keyBlobs({
      ...(settings.caIntermediatesPath !== undefined ? { keyPath: settings.caIntermediatesPath } : {}),
      ...(settings.caIntermediatesData !== undefined ? { keyData: settings.caIntermediatesData } : {}),
    });
    return {
      roots: readCertificates(Buffer.from(roots).toString('utf8'), 'loading PKI roots'),
      intermediates:
        intermediates === undefined
          ? []
          : readCertificates(Buffer.from(intermediates).toString('utf8'), 'loading PKI intermediates'),
      ...(settings.subjectEmail !== undefined ? { subjectEmail: settings.subjectEmail } : {}),
      ...(settings.subjectHostname !== undefined ? { subjectHostname: settings.subjectHostname } : {}),
    };
  });
}

/** The public key of a signature's certificate, once it checks out against a `pki` trust root. */
function pkiVerifiedKey(candidate: SigstoreSignature, root: PkiTrustRoot): KeyObject {
  const certificate = candidate.annotations[sigstoreCertificateAnnotation];
  if (certificate === undefined) throw rejected(`missing ${sigstoreCertificateAnnotation} annotation`);
  return verifyPkiCertificate(root, certificate, candidate.annotations[sigstoreChainAnnotation]);
}

async function evaluateSigstoreSigned(
  requirement: SigstoreRequirement,
  reference: ImageReference,
  image: PolicyImage,
): Promise<void> {
  const reasons: string[] = [];
  let nonSigstore = 0;
  let nonSignatureAttachments = 0;
  const candidates: SigstoreSignature[] = [];
  for (const blob of image.signatures) {
    let parsed: ReturnType<typeof parseStoredSignature>;
    try {
      parsed = parseStoredSignature(blob);
    } catch (error) {
      reasons.push(reasonOf(error));
      continue;
    }
    if (parsed.format !== 'sigstore') nonSigstore++;
    else if (parsed.mimeType !== sigstoreSignatureMimeType) nonSignatureAttachments++;
    else candidates.push(parsed);
  }
  const none =
    nonSigstore === 0 && nonSignatureAttachments === 0
      ? 'A signature was required, but no signature exists'
      : `A signature was required, but no signature exists (${nonSigstore} non-sigstore signatures, ${nonSignatureAttachments} sigstore non-signature attachments)`;
  if (candidates.length === 0) summarise(reasons, none);
  let keys: KeyObject[] = [];
  let rekorKeys: KeyObject[] | undefined;
  let fulcio: FulcioTrustRoot | undefined;
  let pki: PkiTrustRoot | undefined;
  try {
    rekorKeys = await rekorKeysOf(requirement);
    if (requirement.fulcio !== undefined) fulcio = await fulcioTrustRootOf(requirement, requirement.fulcio);
    else if (requirement.pki !== undefined) pki = await pkiTrustRootOf(requirement, requirement.pki);
    else {
      keys = await cached(sigstoreKeysCache, requirement, async () =>
        (await keyBlobs(requirement)).map((blob) => readSigstorePublicKey(blob)),
      );
    }
  } catch (error) {
    summarise(
      candidates.map(() => reasonOf(error)),
      none,
    );
  }
  for (const candidate of candidates) {
    try {
      let verifying = keys;
      if (fulcio !== undefined) verifying = [fulcioVerifiedKey(candidate, fulcio, rekorKeys ?? [])];
      else if (pki !== undefined) verifying = [pkiVerifiedKey(candidate, pki)];
      else if (rekorKeys !== undefined) verifying = [rekorVerifiedKey(candidate, keys, rekorKeys)];
      verifySigstoreSignature(candidate, verifying, claimRules(requirement, reference, image));
      return;
    } catch (error) {
      reasons.push(reasonOf(error));
    }
  }
  summarise(reasons, none);
}

/**
 * Prepares, in the background, what evaluating the policy for `reference` will need: the public keys
 * of its `signedBy` requirements are read now (while the image is being opened) rather than when the
 * first signature is checked. Failures are left for the evaluation to report.
 */
export function preparePolicyEvaluation(policy: Policy, reference: ImageReference): void {
  let requirements: readonly PolicyRequirement[];
  try {
    requirements = policyRequirementsFor(policy, reference);
  } catch {
    return; // Evaluating will report the problem.
  }
  for (const requirement of requirements) {
    if (requirement.type === 'signedBy' && requirement.keyType === 'GPGKeys') {
      cached(gpgKeysCache, requirement, async () => readGpgPublicKeys(await keyBlobs(requirement))).catch(
        () => undefined,
      );
    }
  }
}

/**
 * Decides whether the image may be used, like containers/image's `IsRunningImageAllowed`: every
 * requirement of the applicable list (see `policyRequirementsFor`) must accept it. Before that, the
 * scopes listed for the reference's transport are validated (`validatePolicyScopes`).
 *
 * - `insecureAcceptAnything` accepts.
 * - `reject` rejects: `Running image <transport:ref> is rejected by policy.`
 * - `signedBy` (keyType `GPGKeys`) accepts when one simple-signing signature of the image verifies
 *   with one of the keys (OpenPGP), signs the image's manifest digest, and names an identity that
 *   `signedIdentity` accepts. Rejections say why, in containers/image's words: `A signature was
 *   required, but no signature exists`, `Invalid GPG signature: …`, `Signature for identity <ref> is
 *   not accepted`, `Signature for digest <digest> does not match`, `No public keys imported`; with
 *   several signatures, `None of the signatures were accepted, reasons: …`.
 * - `sigstoreSigned` with public keys (`keyPath`, `keyPaths`, `keyData`, `keyDatas`) does the same
 *   for sigstore signatures; with `rekorPublicKey…` the signature's Rekor SET must also verify (offline)
 *   and name the key, the signature and the payload; with `fulcio` the signature's certificate must be
 *   named by a verified Rekor SET, chain to the Fulcio CA at the SET's time and carry the OIDC issuer
 *   and subject email; with `pki` the certificate must chain to the roots now and name the subject.
 * - `signedBaseLayer` rejects (`signedBaseLayer not implemented yet!`), as containers/image does.
 *
 * Resolves when the image is accepted; rejects with `ERR_GANTRY_POLICY_REJECTED` otherwise, or
 * `ERR_GANTRY_INVALID_POLICY` when a scope is invalid for the transport.
 */
export async function evaluatePolicy(
  policy: Policy,
  reference: ImageReference,
  image: PolicyImage,
): Promise<void> {
  validatePolicyScopes(policy, reference.transport);
  const requirements = policyRequirementsFor(policy, reference);
  const name = imageName(reference);
  if (requirements.length === 0) {
    throw rejected('List of verification policy requirements must not be empty');
  }
  for (const requirement of requirements) {
    switch (requirement.type) {
      case 'insecureAcceptAnything':
        continue;
      case 'reject':
        throw rejected(`Running image ${name} is rejected by policy.`);
      case 'signedBy':
        await evaluateSignedBy(requirement, reference, image);
        continue;
      case 'sigstoreSigned':
        await evaluateSigstoreSigned(requirement, reference, image);
        continue;
      case 'signedBaseLayer':
        throw rejected('signedBaseLayer not implemented yet!');
      default: {
        const unknown: { type?: unknown } = requirement;
        throw rejected(`Unknown policy requirement type ${JSON.stringify(unknown.type)}`);
      }
    }
  }
}
