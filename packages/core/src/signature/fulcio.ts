/**
 * Fulcio-issued certificates of sigstore signatures (keyless signing), checked offline as
 * containers/image checks them for a `sigstoreSigned` requirement with `fulcio`: the Rekor SET must
 * name the certificate (rekor.ts); the certificate must chain to one of the Fulcio CA certificates
 * (through the intermediates of the `dev.sigstore.cosign/chain` annotation, its last certificate
 * being the root) at the time Rekor integrated the entry, allow code signing, carry the OIDC issuer
 * (extension 1.3.6.1.4.1.57264.1.1 raw, or 1.3.6.1.4.1.57264.1.8 as a UTF8String) and the subject
 * email among its SAN emails. Its public key then verifies the signature.
 */
import { type KeyObject, X509Certificate } from 'node:crypto';
import { ErrorCodes, GantryError } from '../errors.js';
import { verifyRekorSet } from './rekor.js';

function invalid(message: string): GantryError {
  return new GantryError(ErrorCodes.InvalidSignature, message);
}

/** The certificates of a PEM bundle. */
export function readCertificates(pem: string, what: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw invalid(`${what}: no certificate found`);
  return blocks.map((block) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw invalid(`${what}: ${(error as Error).message}`);
    }
  });
}

/** One DER element: its tag, and where its contents are. */
interface DerElement {
  tag: number;
  start: number;
  end: number;
}

function readElement(bytes: Uint8Array, offset: number): DerElement & { next: number } {
  const tag = bytes[offset]!;
  let length = bytes[offset + 1]!;
  let start = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4) throw invalid('malformed certificate (DER length)');
    length = 0;
    for (let index = 0; index < count; index++) length = length * 256 + bytes[start + index]!;
    start += count;
  }
  const end = start + length;
  if (end > bytes.length) throw invalid('malformed certificate (DER overrun)');
  return { tag, start, end, next: end };
}

function children(bytes: Uint8Array, parent: DerElement): DerElement[] {
  const result: DerElement[] = [];
  for (let offset = parent.start; offset < parent.end; ) {
    const element = readElement(bytes, offset);
    result.push(element);
    offset = element.next;
  }
  return result;
}

function oidString(bytes: Uint8Array, element: DerElement): string {
  const parts: number[] = [];
  let value = 0;
  for (let index = element.start; index < element.end; index++) {
    value = value * 128 + (bytes[index]! & 0x7f);
    if (!(bytes[index]! & 0x80)) {
      if (parts.length === 0)
        parts.push(Math.min(2, Math.floor(value / 40)), value - Math.min(2, Math.floor(value / 40)) * 40);
      else parts.push(value);
      value = 0;
    }
  }
  return parts.join('.');
}

/** The certificate's extensions: OID → the extension value's bytes (the OCTET STRING's contents). */
export function certificateExtensions(certificate: X509Certificate): Map<string, Uint8Array> {
  const der = new Uint8Array(certificate.raw);
  const top = readElement(der, 0);
  const tbs = children(der, top)[0];
  if (tbs === undefined) throw invalid('malformed certificate');
  const extensions = new Map<string, Uint8Array>();
  const explicit = children(der, tbs).find((element) => element.tag === 0xa3);
  if (explicit === undefined) return extensions;
  const list = children(der, explicit)[0];
  if (list === undefined) return extensions;
  for (const extension of children(der, list)) {
    const parts = children(der, extension);
    const oid = parts[0];
    const value = parts[parts.length - 1];
    if (oid?.tag !== 0x06 || value?.tag !== 0x04) continue;
    extensions.set(oidString(der, oid), der.subarray(value.start, value.end));
  }
  return extensions;
}

const issuerV1Oid = '1.3.6.1.4.1.57264.1.1';
const issuerV2Oid = '1.3.6.1.4.1.57264.1.8';
const codeSigningOid = '1.3.6.1.5.5.7.3.3';
/** anyExtendedKeyUsage (RFC 5280), which allows every usage. */
const anyExtendedKeyUsageOid = '2.5.29.37.0';

/** The OIDC issuer a Fulcio certificate names. */
export function fulcioIssuer(certificate: X509Certificate): string {
  const extensions = certificateExtensions(certificate);
  const v1 = extensions.get(issuerV1Oid);
  const v2 = extensions.get(issuerV2Oid);
  let fromV2: string | undefined;
  if (v2 !== undefined) {
    const element = readElement(v2, 0);
    if (element.tag !== 0x0c)
      throw invalid('invalid Fulcio issuer extension (1.3.6.1.4.1.57264.1.8): not a UTF8String');
    fromV2 = Buffer.from(v2.subarray(element.start, element.end)).toString('utf8');
  }
  const fromV1 = v1 === undefined ? undefined : Buffer.from(v1).toString('utf8');
  if (fromV1 !== undefined && fromV2 !== undefined && fromV1 !== fromV2) {
    throw invalid(
      `inconsistent Fulcio issuer extensions: ${JSON.stringify(fromV1)} vs. ${JSON.stringify(fromV2)}`,
    );
  }
  const issuer = fromV2 ?? fromV1;
  if (issuer === undefined) throw invalid('Fulcio certificate is missing the issuer extension');
  return issuer;
}

/** The email addresses of the certificate's subject alternative names. */
function emailAddresses(certificate: X509Certificate): string[] {
  const names = certificate.subjectAltName ?? '';
  return [...names.matchAll(/(?:^|, )email:([^,]*)/g)].map((match) => match[1]!);
}

function validAt(certificate: X509Certificate, seconds: number): boolean {
  const time = seconds * 1000;
  return Date.parse(certificate.validFrom) <= time && time <= Date.parse(certificate.validTo);
}

/** The trust settings of a `fulcio` requirement, read. */
export interface FulcioTrustRoot {
  caCertificates: X509Certificate[];
  oidcIssuer: string;
  subjectEmail: string;
}

/**
 * Checks a Fulcio certificate (PEM) against the trust root at `integratedTime` (seconds) and returns
 * its public key. Throws `ERR_GANTRY_INVALID_SIGNATURE` naming the failed check.
 */
export function verifyFulcioCertificate(
  root: FulcioTrustRoot,
  certificatePem: string,
  chainPem: string | undefined,
  integratedTime: number,
): KeyObject {
  const leaf = verifyCertificateChain(certificatePem, chainPem, root.caCertificates, [], integratedTime);
  const issuer = fulcioIssuer(leaf);
  if (issuer !== root.oidcIssuer) throw invalid(`Unexpected Fulcio OIDC issuer ${JSON.stringify(issuer)}`);
  requireEmail(leaf, root.subjectEmail);
  return leaf.publicKey;
}

function requireEmail(leaf: X509Certificate, email: string): void {
  const emails = emailAddresses(leaf);
  if (!emails.includes(email)) {
    throw invalid(`Required email ${JSON.stringify(email)} not found (got ${JSON.stringify(emails)})`);
  }
}

/**
 * Reads the leaf certificate and checks that it chains to one of `roots` at `atSeconds` (through
 * `intermediates` and the chain annotation's certificates but its last, the root) and allows code
 * signing. Returns the leaf.
 */
function verifyCertificateChain(
  certificatePem: string,
  chainPem: string | undefined,
  roots: readonly X509Certificate[],
  intermediates: readonly X509Certificate[],
  atSeconds: number,
): X509Certificate {
  const [leaf] = readCertificates(certificatePem, 'parsing leaf certificate');
  const chain = chainPem ? readCertificates(chainPem, 'loading certificate chain') : [];
  const candidates = [...intermediates, ...chain.slice(0, -1)];
  let current = leaf!;
  const path: X509Certificate[] = [leaf!];
  for (let depth = 0; ; depth++) {
    if (depth > 10) throw invalid('veryfing leaf certificate failed: certificate chain too long');
    if (!validAt(current, atSeconds)) {
      throw invalid(
        `veryfing leaf certificate failed: x509: certificate ${current.subject} has expired or is not yet valid`,
      );
    }
    const trusted = roots.find(
      (ca) => current.checkIssued(ca) && current.verify(ca.publicKey) && validAt(ca, atSeconds),
    );
    if (trusted !== undefined) {
      path.push(trusted);
      break;
    }
    const next = candidates.find(
      (candidate) => candidate.ca && current.checkIssued(candidate) && current.verify(candidate.publicKey),
    );
    if (next === undefined) {
      throw invalid('veryfing leaf certificate failed: x509: certificate signed by unknown authority');
    }
    current = next;
    path.push(current);
  }
  // As Go's x509 (containers/image) checks extended key usages: a certificate of the path without the
  // extension allows any usage; one with it must allow code signing (or any usage).
  const allowsCodeSigning = (certificate: X509Certificate) =>
    certificate.keyUsage === undefined ||
    certificate.keyUsage.includes(codeSigningOid) ||
    certificate.keyUsage.includes(anyExtendedKeyUsageOid);
  if (!path.every(allowsCodeSigning)) {
    throw invalid('veryfing leaf certificate failed: x509: certificate specifies an incompatible key usage');
  }
  return leaf!;
}

/** The trust settings of a `pki` requirement, read. */
export interface PkiTrustRoot {
  roots: X509Certificate[];
  intermediates: X509Certificate[];
  subjectEmail?: string;
  subjectHostname?: string;
}

/**
 * Checks a certificate (PEM) of a sigstore signature against a `pki` trust root, now, as
 * containers/image does: it must chain to one of the roots (through the configured intermediates
 * and the chain annotation's), allow code signing, and name the subject email and/or host name.
 * Returns its public key.
 */
export function verifyPkiCertificate(
  root: PkiTrustRoot,
  certificatePem: string,
  chainPem: string | undefined,
): KeyObject {
  const leaf = verifyCertificateChain(
    certificatePem,
    chainPem,
    root.roots,
    root.intermediates,
    Date.now() / 1000,
  );
  if (root.subjectEmail !== undefined && root.subjectEmail !== '') requireEmail(leaf, root.subjectEmail);
  if (root.subjectHostname !== undefined && root.subjectHostname !== '') {
    if (leaf.checkHost(root.subjectHostname) === undefined) {
      throw invalid(
        `Unexpected subject hostname: x509: certificate is not valid for ${JSON.stringify(root.subjectHostname)}`,
      );
    }
  }
  return leaf.publicKey;
}

/**
 * The Rekor SET names the certificate, and the certificate is a valid Fulcio one at the SET's time:
 * returns the certificate's public key, for verifying the signature.
 */
export function verifyRekorFulcio(
  rekorKeys: readonly KeyObject[],
  root: FulcioTrustRoot,
  set: string,
  certificatePem: string,
  chainPem: string | undefined,
  base64Signature: string,
  payload: Uint8Array,
): KeyObject {
  const [leaf] = readCertificates(certificatePem, 'parsing leaf certificate');
  const integratedTime = verifyRekorSet(rekorKeys, set, new Uint8Array(leaf!.raw), base64Signature, payload);
  return verifyFulcioCertificate(root, certificatePem, chainPem, integratedTime);
}
