import path from 'node:path';
import {
  describeFileSystemError,
  ErrorCodes,
  GantryError,
  resolvePathToFullyExplicit,
  type Transport,
  transportSpecificationVersion,
} from '@gantry/core/transport';
import type { ConversionTools } from './convert.js';
import { SifImageReference } from './reference.js';

/**
 * Settings of the `sif:` transport, given to `createSifTransport` or, per operation, as
 * `context.transportOptions.sif` (which overrides the transport's own).
 */
export interface SifTransportOptions {
  /** The programs the squashfs conversion runs; default `unsquashfs`, `tar` and `fakeroot` from PATH. */
  tools?: ConversionTools;
}

export interface SifTransport extends Transport {
  readonly name: 'sif';
  parseReference(reference: string): SifImageReference;
}

/**
 * Checks a policy.json scope for `sif:`: an absolute, clean path other than `/` (containers/image's rule
 * for path-based transports, with its messages).
 */
export function validateSifPolicyConfigurationScope(scope: string): void {
  if (!scope.startsWith('/')) {
    throw new GantryError(ErrorCodes.InvalidReference, `Invalid scope ${scope}: Must be an absolute path`);
  }
  if (scope === '/') {
    throw new GantryError(ErrorCodes.InvalidReference, `Invalid scope "/": Use the generic default scope ""`);
  }
  const cleaned = path.posix.normalize(scope).replace(/(.)\/$/, '$1');
  if (cleaned !== scope) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid scope ${scope}: Uses non-canonical format, perhaps try ${cleaned}`,
    );
  }
}

/**
 * Creates the `sif:` transport (read-only): `sif:path` names a Singularity/Apptainer SIF file, read as a
 * one-layer OCI image the way skopeo reads it. Creating it registers nothing: list it in a
 * `TransportRegistry`, or install the package beside the `gantry` command, which finds it by its name.
 */
export function createSifTransport(options: SifTransportOptions = {}): SifTransport {
  const settings: SifTransportOptions = Object.freeze({ ...options });
  const transport: SifTransport = Object.freeze({
    specificationVersion: transportSpecificationVersion,
    name: 'sif' as const,
    parseReference(reference: string): SifImageReference {
      if (reference === '') {
        throw new GantryError(
          ErrorCodes.InvalidReference,
          'Invalid sif: reference: the path of a SIF file is empty',
        );
      }
      let resolved: string;
      try {
        resolved = resolvePathToFullyExplicit(reference);
      } catch (error) {
        throw new GantryError(
          ErrorCodes.InvalidReference,
          `Invalid image name "sif:${reference}": ${describeFileSystemError(error)}`,
          { cause: error },
        );
      }
      return new SifImageReference(transport, reference, resolved, settings);
    },
    validatePolicyConfigurationScope(scope: string): void {
      validateSifPolicyConfigurationScope(scope);
    },
  });
  return transport;
}

/** The `sif:` transport with default options. */
export const sifTransport: SifTransport = createSifTransport();
