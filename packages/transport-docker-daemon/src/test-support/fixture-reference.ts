import {
  type DockerReference,
  ErrorCodes,
  GantryError,
  type ImageReference,
  type ImageSource,
  type Transport,
  transportSpecificationVersion,
} from '@gantry/core/transport';

const fixtureTransport: Transport = {
  specificationVersion: transportSpecificationVersion,
  name: 'fixture',
  parseReference: () => {
    throw new GantryError(ErrorCodes.NotSupported, 'fixture');
  },
  validatePolicyConfigurationScope: () => {},
};

/** A read-only reference whose source `open` makes (e.g. a fixture image's), for copies in tests. */
export function fixtureReference(open: (reference: ImageReference) => ImageSource): ImageReference {
  const reference: ImageReference = {
    transport: fixtureTransport,
    stringWithinTransport: () => 'fixture',
    dockerReference: (): DockerReference | undefined => undefined,
    policyConfigurationIdentity: () => 'fixture',
    policyConfigurationNamespaces: () => [],
    newImageSource: async () => open(reference),
    newImageDestination: async () => {
      throw new GantryError(ErrorCodes.NotSupported, 'fixture');
    },
    deleteImage: async () => {
      throw new GantryError(ErrorCodes.NotSupported, 'fixture');
    },
  };
  return reference;
}
