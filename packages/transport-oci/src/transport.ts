/**
 * The `oci:` transport: images in OCI image layouts, `oci:path[:reference]`.
 */
import {
  type ImageReference,
  type Transport,
  type TransportSpecificationVersion,
  transportSpecificationVersion,
} from '@gantry/core/transport';
import { deleteOciImage } from './delete.js';
import { openOciImageDestination } from './destination.js';
import type { LayoutLockOptions } from './lock.js';
import {
  OciReference,
  type OciReferenceBackend,
  parseReferenceElements,
  validatePolicyConfigurationScope,
} from './reference.js';
import { openOciImageSource } from './source.js';

/** Options of `createOciTransport`. */
export interface OciTransportOptions {
  /**
   * The lock on a layout's `index.json` (`index.json.lock`), taken by commits, deletions and the clean-up
   * of abandoned writes.
   */
  lock?: LayoutLockOptions;
}

/** The `oci:` transport, with `parseReference` returning `OciReference`s. */
export interface OciTransport extends Transport {
  readonly specificationVersion: TransportSpecificationVersion;
  readonly name: 'oci';
  parseReference(reference: string): OciReference;
  /** A reference from parts: `imageName` '' for none, `sourceIndex` -1 for none (at most one of them). */
  newReference(path: string, imageName?: string, sourceIndex?: number): OciReference;
}

/**
 * Creates an `oci:` transport. Nothing is registered anywhere: add the result to a `TransportRegistry`.
 *
 * References are `oci:path[:reference]` (see `OciReference`); sources read, destinations write and
 * `deleteImage` deletes images of the layout at `path`, honouring `transportOptions.oci` (`OciContextOptions`:
 * `sharedBlobDirectory`, `acceptUncompressedLayers`).
 */
export function createOciTransport(options: OciTransportOptions = {}): OciTransport {
  const lockOptions: LayoutLockOptions = { ...options.lock };
  const backend: OciReferenceBackend = {
    newImageSource: (reference, context) => openOciImageSource(reference, context),
    newImageDestination: (reference, context) => openOciImageDestination(reference, context, lockOptions),
    deleteImage: (reference, context) => deleteOciImage(reference, context, lockOptions),
  };
  const transport: OciTransport = {
    specificationVersion: transportSpecificationVersion,
    name: 'oci',
    parseReference(reference: string): OciReference {
      return new OciReference(transport, backend, parseReferenceElements(reference));
    },
    newReference(path: string, imageName = '', sourceIndex = -1): OciReference {
      return new OciReference(transport, backend, { path, imageName, sourceIndex });
    },
    validatePolicyConfigurationScope(scope: string): void {
      validatePolicyConfigurationScope(scope);
    },
  };
  return transport;
}

/** True when `reference` is an `oci:` reference made by any `createOciTransport` transport. */
export function isOciReference(reference: ImageReference): reference is OciReference {
  return reference instanceof OciReference;
}

/** The default `oci:` transport instance. */
export const ociTransport: OciTransport = createOciTransport();
