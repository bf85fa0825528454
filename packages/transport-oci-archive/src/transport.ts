/**
 * The `oci-archive:` transport: images in tar archives of OCI image layouts, `oci-archive:path[:reference]`.
 */
import {
  type ImageReference,
  type Transport,
  type TransportSpecificationVersion,
  transportSpecificationVersion,
} from '@gantry/core/transport';
import { openOciArchiveDestination } from './destination.js';
import {
  OciArchiveReference,
  type OciArchiveReferenceBackend,
  parseReferenceElements,
  validatePolicyConfigurationScope,
} from './reference.js';
import { openOciArchiveSource } from './source.js';

/** Options of `createOciArchiveTransport` (none yet; the object is accepted for future additions). */
export type OciArchiveTransportOptions = Record<string, never>;

/** The `oci-archive:` transport, with `parseReference` returning `OciArchiveReference`s. */
export interface OciArchiveTransport extends Transport {
  readonly specificationVersion: TransportSpecificationVersion;
  readonly name: 'oci-archive';
  parseReference(reference: string): OciArchiveReference;
  /** A reference from parts: `imageName` '' for none, `sourceIndex` -1 for none (at most one of them). */
  newReference(path: string, imageName?: string, sourceIndex?: number): OciArchiveReference;
}

/**
 * Creates an `oci-archive:` transport. Nothing is registered anywhere: add the result to a
 * `TransportRegistry`.
 *
 * References are `oci-archive:path[:name|:@N]` (see `OciArchiveReference`). Sources index the tar once
 * and stream from offsets (see source.ts); destinations stream a new tar next to the destination and
 * rename it into place on commit, keeping the images of an existing archive (see destination.ts);
 * `deleteImage` rejects with `ERR_GANTRY_NOT_SUPPORTED`. Honours `transportOptions['oci-archive'].acceptUncompressedLayers`
 * and `temporaryDirectory` (spooling a non-seekable source archive).
 */
export function createOciArchiveTransport(_options: OciArchiveTransportOptions = {}): OciArchiveTransport {
  const backend: OciArchiveReferenceBackend = {
    newImageSource: (reference, context) => openOciArchiveSource(reference, context),
    newImageDestination: (reference, context) => openOciArchiveDestination(reference, context),
  };
  const transport: OciArchiveTransport = {
    specificationVersion: transportSpecificationVersion,
    name: 'oci-archive',
    parseReference(reference: string): OciArchiveReference {
      return new OciArchiveReference(transport, backend, parseReferenceElements(reference));
    },
    newReference(path: string, imageName = '', sourceIndex = -1): OciArchiveReference {
      return new OciArchiveReference(transport, backend, { path, imageName, sourceIndex });
    },
    validatePolicyConfigurationScope(scope: string): void {
      validatePolicyConfigurationScope(scope);
    },
  };
  return transport;
}

/** True when `reference` is an `oci-archive:` reference made by any `createOciArchiveTransport` transport. */
export function isOciArchiveReference(reference: ImageReference): reference is OciArchiveReference {
  return reference instanceof OciArchiveReference;
}

/** The default `oci-archive:` transport instance. */
export const ociArchiveTransport: OciArchiveTransport = createOciArchiveTransport();
