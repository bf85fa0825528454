/**
 * Image signatures: simple signing (GPG) and sigstore formats, verification, signing, key files.
 */
export {
  createPayload,
  parsePayload,
  sigstoreType,
  simpleSigningType,
  type UntrustedPayload,
} from './payload.js';
export { type ImageSigner, parseSignIdentity, prepareSigners, type SigningOptions } from './sign.js';
export {
  cosignPrivateKeyPemType,
  generateSigstoreKeyPair,
  readSigstorePrivateKey,
  readSigstorePublicKey,
  type SigstoreKeyPair,
  signSigstore,
  sigstorePrivateKeyPemType,
  verifySigstoreSignature,
} from './sigstore.js';
export {
  type GpgPublicKeys,
  type GpgSigningOptions,
  gpgSign,
  readGpgPublicKeys,
  readUntrustedSimpleSigningSignature,
  type SignatureAcceptanceRules,
  signSimpleSigning,
  type UntrustedSignatureInformation,
  type VerifiedSignature,
  verifyGpgSignature,
  verifySimpleSigningSignature,
} from './simple-signing.js';
export { verifyStandaloneSignature } from './standalone.js';
export {
  parseStoredSignature,
  type SigstoreSignature,
  type StoredSignature,
  sigstoreCertificateAnnotation,
  sigstoreChainAnnotation,
  sigstoreSetAnnotation,
  sigstoreSignatureAnnotation,
  sigstoreSignatureBlob,
  sigstoreSignatureMimeType,
} from './stored.js';
export { type VerifiedImage, type VerifyImageOptions, verifyImage } from './verify-image.js';
