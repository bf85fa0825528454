/**
 * `@gantry/core` transport for container registries: `docker://[domain[:port]/]path[:tag][@digest]`,
 * on undici. Register it in a `TransportRegistry`; importing this module registers nothing.
 */
export { type DockerContextOptions, parseCredentialsOption } from './context.js';
export { DockerImageDestination, dockerDestinationManifestMediaTypes } from './image-destination.js';
export { DockerImageSource } from './image-source.js';
export type { ManifestHead } from './manifest-digest.js';
export { DockerImageReference, parseDockerRepositoryName } from './reference.js';
export { type ListReferrersOptions, type ReferrerDescriptor, referrersFallbackTag } from './referrers.js';
export {
  type ParsedSignature,
  signatureBlob,
  sigstoreAttachmentTag,
  sigstoreCertificateAnnotation,
  sigstoreChainAnnotation,
  sigstoreSignatureAnnotation,
  sigstoreSignatureMimeType,
} from './signatures.js';
export type { ListTagsOptions } from './tags.js';
export {
  createDockerTransport,
  type DockerTransport,
  type DockerTransportOptions,
  dockerTransport,
} from './transport.js';

import { dockerTransport } from './transport.js';

export default dockerTransport;
