import { ErrorCodes, GantryError } from '../errors.js';
import { type ImageReference, type Transport, transportSpecificationVersion } from './contract.js';

/** First-party transports and the package that provides each, for "not installed" errors. */
export const knownTransportPackages: Readonly<Record<string, string>> = {
  docker: '@gantry/transport-docker',
  'docker-archive': '@gantry/transport-docker-archive',
  'docker-daemon': '@gantry/transport-docker-daemon',
  oci: '@gantry/transport-oci',
  'oci-archive': '@gantry/transport-oci-archive',
  dir: '@gantry/transport-dir',
  'containers-storage': '@gantry/transport-containers-storage',
  ostree: '@gantry/transport-ostree',
};

/**
 * Checks that `value` satisfies the transport contract (version literal and shape) and returns it
 * typed. `origin` names where it came from (a package name) for the error message.
 */
export function assertTransport(value: unknown, origin: string): Transport {
  const fail = (problem: string): never => {
    throw new GantryError(
      ErrorCodes.InvalidTransportPlugin,
      `${origin} is not a valid Gantry transport: ${problem}`,
    );
  };
  if (typeof value !== 'object' || value === null) fail('expected an object');
  const candidate = value as Record<string, unknown>;
  if (candidate.specificationVersion !== transportSpecificationVersion) {
    const declared = candidate.specificationVersion;
    fail(
      typeof declared === 'string'
        ? `specificationVersion is ${JSON.stringify(declared)}, this Gantry supports "${transportSpecificationVersion}" (the transport was written for another version of the transport contract: use a release of it made for this Gantry's @gantry/core)`
        : `specificationVersion is ${JSON.stringify(declared)}, this Gantry supports "${transportSpecificationVersion}" (every transport declares the contract version it implements: transportSpecificationVersion from @gantry/core/transport)`,
    );
  }
  if (typeof candidate.name !== 'string' || !/^[a-z0-9][a-z0-9._-]*$/.test(candidate.name)) {
    fail('name must be a lowercase transport name such as "oci"');
  }
  for (const method of ['parseReference', 'validatePolicyConfigurationScope']) {
    if (typeof candidate[method] !== 'function') fail(`missing method ${method}()`);
  }
  return value as Transport;
}

/**
 * Splits `transport:reference` at the first ':'. Throws `ERR_GANTRY_INVALID_REFERENCE` when there is no
 * transport prefix.
 */
export function splitTransportReference(input: string): { transport: string; reference: string } {
  const colon = input.indexOf(':');
  if (colon <= 0) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid image name "${input}", expected colon-separated transport:reference`,
    );
  }
  return { transport: input.slice(0, colon), reference: input.slice(colon + 1) };
}

/** A transport in a {@link TransportRegistry}, with where it came from. */
export interface RegisteredTransport {
  transport: Transport;
  /** Where it came from, e.g. the package name; shown by `gantry transports`. */
  origin: string;
}

/**
 * The transports an application uses, listed explicitly. Transport names are unique.
 */
export class TransportRegistry {
  private readonly transports = new Map<string, RegisteredTransport>();

  constructor(transports: Iterable<Transport | RegisteredTransport> = []) {
    for (const entry of transports) {
      if ('transport' in entry) this.register(entry.transport, entry.origin);
      else this.register(entry);
    }
  }

  /** Adds a transport; throws if another one with the same name is registered. */
  register(transport: Transport, origin = transport.name): this {
    const checked = assertTransport(transport, origin);
    const existing = this.transports.get(checked.name);
    if (existing) {
      throw new GantryError(
        ErrorCodes.InvalidTransportPlugin,
        `transport "${checked.name}" from ${origin} conflicts with the one from ${existing.origin}`,
      );
    }
    this.transports.set(checked.name, { transport: checked, origin });
    return this;
  }

  /** The transport with this name, or undefined. */
  get(name: string): Transport | undefined {
    return this.transports.get(name)?.transport;
  }

  /** The transport with this name; throws `ERR_GANTRY_TRANSPORT_NOT_INSTALLED` or `ERR_GANTRY_UNKNOWN_TRANSPORT`. */
  require(name: string): Transport {
    const transport = this.get(name);
    if (transport) return transport;
    const knownPackage = knownTransportPackages[name];
    if (knownPackage) {
      throw new GantryError(
        ErrorCodes.TransportNotInstalled,
        `transport "${name}" is not installed: add ${knownPackage}`,
      );
    }
    throw new GantryError(
      ErrorCodes.UnknownTransport,
      `Invalid image name "${name}:…": unknown transport "${name}"`,
    );
  }

  /** Every registered transport with its origin, sorted by name. */
  list(): RegisteredTransport[] {
    // Code-unit order, not localeCompare: names are ASCII, and a collator costs ~10 ms to set up.
    return [...this.transports.values()].sort((a, b) =>
      a.transport.name < b.transport.name ? -1 : a.transport.name > b.transport.name ? 1 : 0,
    );
  }

  /** Parses `transport:reference` with the registered transports. */
  parseImageReference(input: string): ImageReference {
    const { transport: name, reference } = splitTransportReference(input);
    const transport = this.transports.get(name)?.transport;
    if (!transport) {
      try {
        this.require(name);
      } catch (error) {
        if (error instanceof GantryError && error.code === ErrorCodes.UnknownTransport) {
          throw new GantryError(
            ErrorCodes.UnknownTransport,
            `Invalid image name "${input}", unknown transport "${name}"`,
          );
        }
        throw error;
      }
    }
    return transport!.parseReference(reference);
  }
}

/** The full `transport:reference` string of a reference. */
export function formatImageReference(reference: ImageReference): string {
  return `${reference.transport.name}:${reference.stringWithinTransport()}`;
}
