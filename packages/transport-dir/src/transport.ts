import { type Transport, transportSpecificationVersion } from '@gantry/core/transport';
import {
  type DirImageReference,
  parseDirReference,
  type ResolvedDirTransportOptions,
  validateDirPolicyConfigurationScope,
} from './reference.js';

/** Options of `createDirTransport`. */
export interface DirTransportOptions {
  /** Mode given to every file written (version, blobs, manifests, signatures). Default `0o644`, as containers/image. */
  fileMode?: number;
  /** Mode of directories created for a destination (the process umask applies). Default `0o755`. */
  directoryMode?: number;
  /**
   * Whether files and the directory are flushed to disk (fsync) before `putBlob` / `putManifest` /
   * `commit` return. Default true; false is faster for throw-away images (tests).
   */
  durable?: boolean;
}

/** The `dir:` transport: `parseReference` returns `DirImageReference`s. */
export interface DirTransport extends Transport {
  readonly name: 'dir';
  parseReference(reference: string): DirImageReference;
}

/**
 * Creates a `dir:path` transport: an image stored as plain files in a directory, in the layout of
 * containers/image's `directory` package (readable and writable by skopeo).
 *
 * - `parseReference(path)` accepts any path (`''` is the working directory); the path's parent must
 *   exist, because the policy identity is the path made absolute with symlinks resolved (like
 *   containers/image). Throws `ERR_GANTRY_INVALID_REFERENCE` otherwise.
 * - `validatePolicyConfigurationScope(scope)` accepts absolute, clean paths other than `/`.
 *
 * Creating a transport registers nothing; list it in a `TransportRegistry`.
 */
export function createDirTransport(options: DirTransportOptions = {}): DirTransport {
  const resolved: ResolvedDirTransportOptions = Object.freeze({
    fileMode: options.fileMode ?? 0o644,
    directoryMode: options.directoryMode ?? 0o755,
    durable: options.durable ?? true,
  });
  const transport: DirTransport = Object.freeze({
    specificationVersion: transportSpecificationVersion,
    name: 'dir' as const,
    parseReference(reference: string): DirImageReference {
      return parseDirReference(transport, resolved, reference);
    },
    validatePolicyConfigurationScope(scope: string): void {
      validateDirPolicyConfigurationScope(scope);
    },
  });
  return transport;
}

/** The `dir:` transport with default options. */
export const dirTransport: DirTransport = createDirTransport();
