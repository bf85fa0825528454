import type { Digest } from '../digest.js';

/**
 * A parsed, normalised docker reference: `domain/path[:tag][@digest]`, e.g.
 * `docker.io/library/busybox:latest`. Immutable. Produced by `parseNormalizedNamed` and friends.
 */
export interface DockerReference {
  /** Registry host and optional port, e.g. `docker.io`, `localhost:5000`. */
  readonly domain: string;
  /** Repository path within the registry, e.g. `library/busybox`. */
  readonly path: string;
  /** `domain/path`. */
  readonly name: string;
  /** The tag, if any. */
  readonly tag: string | undefined;
  /** The digest, if any. */
  readonly digest: Digest | undefined;
  /** The canonical string `domain/path[:tag][@digest]`. */
  toString(): string;
}
