import { type Transport, transportSpecificationVersion } from '@gantry/core/transport';
import { deleteOstreeImage } from './delete.js';
import { openOstreeImageDestination } from './destination.js';
import {
  type OstreeImageReference,
  type OstreeReferenceHooks,
  parseOstreeReference,
  validateOstreePolicyConfigurationScope,
} from './reference.js';
import { openOstreeImageSource } from './source.js';

/** The `ostree:` transport: `parseReference` returns `OstreeImageReference`s. */
export interface OstreeTransport extends Transport {
  readonly name: 'ostree';
  parseReference(reference: string): OstreeImageReference;
}

const hooks: OstreeReferenceHooks = {
  newImageSource: openOstreeImageSource,
  newImageDestination: openOstreeImageDestination,
  deleteImage: deleteOstreeImage,
};

/**
 * Creates the `ostree:IMAGE[@/absolute/repo/path]` transport (containers/image's layout; default
 * repository `/ostree/repo`). Creating it registers nothing; list it in a `TransportRegistry`.
 */
export function createOstreeTransport(): OstreeTransport {
  const transport: OstreeTransport = Object.freeze({
    specificationVersion: transportSpecificationVersion,
    name: 'ostree' as const,
    parseReference(reference: string): OstreeImageReference {
      return parseOstreeReference(transport, hooks, reference);
    },
    validatePolicyConfigurationScope(scope: string): void {
      validateOstreePolicyConfigurationScope(scope);
    },
  });
  return transport;
}

/** The `ostree:` transport. */
export const ostreeTransport: OstreeTransport = createOstreeTransport();
