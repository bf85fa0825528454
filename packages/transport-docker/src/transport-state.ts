import { ConnectionPools } from './connections.js';
import type { PingResult } from './registry-client.js';

/** How many repositories are remembered per blob for cross-repository mounts. */
const maxRepositoriesPerBlob = 8;

/**
 * Where blobs are known to exist, learnt in this process: repositories of a registry whose manifests
 * reference a blob, or to which the blob was uploaded or mounted. A destination that lacks a blob
 * asks the registry to mount it from one of these repositories instead of uploading it.
 */
export class KnownBlobLocations {
  private readonly locations = new Map<string, Map<string, string[]>>();

  /** Records that `digest` exists in `repository` of `registry` (most recent first). */
  record(registry: string, repository: string, digest: string): void {
    let byDigest = this.locations.get(registry);
    if (byDigest === undefined) {
      byDigest = new Map();
      this.locations.set(registry, byDigest);
    }
    const repositories = (byDigest.get(digest) ?? []).filter((known) => known !== repository);
    repositories.unshift(repository);
    byDigest.set(digest, repositories.slice(0, maxRepositoriesPerBlob));
  }

  /** Repositories of `registry` other than `except` known to hold `digest`, most recent first. */
  candidates(registry: string, digest: string, except: string): string[] {
    return (this.locations.get(registry)?.get(digest) ?? []).filter((repository) => repository !== except);
  }

  /** Forgets that `digest` is in `repository` (a mount from there failed). */
  forget(registry: string, repository: string, digest: string): void {
    const byDigest = this.locations.get(registry);
    const repositories = byDigest?.get(digest);
    if (byDigest && repositories)
      byDigest.set(
        digest,
        repositories.filter((known) => known !== repository),
      );
  }
}

/** State shared by every reference, source and destination of one transport instance. */
export interface DockerTransportState {
  readonly pools: ConnectionPools;
  readonly blobLocations: KnownBlobLocations;
  readonly userAgent: string;
  /** Pings of `/v2/` by registry and TLS settings (see `RegistryClient.ping`). */
  readonly pings: Map<string, Promise<PingResult>>;
}

/** Creates the state of a new transport instance (nothing is opened until first use). */
export function createDockerTransportState(userAgent: string): DockerTransportState {
  return {
    pools: new ConnectionPools(),
    blobLocations: new KnownBlobLocations(),
    userAgent,
    pings: new Map(),
  };
}
