/**
 * A `sif:path` reference, as containers/image's sif transport defines it: the path of a SIF file as the
 * user wrote it, and the same path made absolute with symbolic links resolved, which is the policy
 * identity; its parent directories (longest first, `/` excluded) are the policy namespaces.
 */
import {
  type DockerReference,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageReference,
  type ImageSource,
  type Transport,
  type TransportContext,
} from '@gantry/core/transport';
import { openSifImageSource } from './source.js';
import type { SifTransportOptions } from './transport.js';

export class SifImageReference implements ImageReference {
  /** @internal Use `transport.parseReference`. */
  constructor(
    readonly transport: Transport,
    /** The path as given by the user (relative paths are resolved when the image is opened). */
    readonly path: string,
    /** Absolute path without symbolic links, resolved when the reference was parsed. */
    readonly resolvedPath: string,
    private readonly options: SifTransportOptions,
  ) {
    Object.freeze(this);
  }

  stringWithinTransport(): string {
    return this.path;
  }

  /** Always undefined: a SIF file has no docker reference. */
  dockerReference(): DockerReference | undefined {
    return undefined;
  }

  policyConfigurationIdentity(): string {
    return this.resolvedPath;
  }

  policyConfigurationNamespaces(): string[] {
    const namespaces: string[] = [];
    let current = this.resolvedPath;
    for (;;) {
      const lastSlash = current.lastIndexOf('/');
      if (lastSlash <= 0) break;
      current = current.slice(0, lastSlash);
      namespaces.push(current);
    }
    return namespaces;
  }

  toString(): string {
    return `sif:${this.path}`;
  }

  newImageSource(context: TransportContext = {}): Promise<ImageSource> {
    return openSifImageSource(this, context, this.options);
  }

  async newImageDestination(_context?: TransportContext): Promise<ImageDestination> {
    throw new GantryError(ErrorCodes.NotSupported, '"sif:" locations can only be read from, not written to');
  }

  async deleteImage(_context?: TransportContext): Promise<void> {
    throw new GantryError(ErrorCodes.NotSupported, 'Deleting images not implemented for sif: images');
  }
}
