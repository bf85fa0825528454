import type { AuthChallenge } from './authentication.js';
import { ConnectionPools } from './connections.js';

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

  /** Whether `repository` of `registry` is known to hold `digest`. */
  holds(registry: string, repository: string, digest: string): boolean {
    return this.locations.get(registry)?.get(digest)?.includes(repository) ?? false;
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

/** What a ping of a registry taught: the scheme that answered and the authentication challenges. */
export interface RegistryPing {
  scheme: 'https' | 'http';
  challenges: readonly AuthChallenge[];
  /** Whether `/v2/` answered `X-Registry-Supports-Signatures: 1`. */
  supportsSignatureExtension: boolean;
}

/** How long a ping's answer is reused by later clients of the same registry and TLS settings. */
export const pingReuseMs = 10_000;

/**
 * Pings of registries, shared by the clients of one transport instance: a client opened for the
 * same registry, role and TLS settings within `pingReuseMs` reuses the answer (or waits for the ping
 * in flight) instead of pinging again — a sync opens a client per image. A challenge that changed
 * since is learnt again from the 401 it causes (see `RegistryClient.request`); a request that fails
 * to reach the registry forgets its ping (`forget`), so the next client pings again.
 */
export class RegistryPings {
  private readonly pings = new Map<string, { at: number; ping: Promise<RegistryPing> }>();

  /** The ping for `key`, reused while fresh; `ping` runs when there is none. A failed ping is not kept. */
  get(key: string, ping: () => Promise<RegistryPing>, now = Date.now()): Promise<RegistryPing> {
    const known = this.pings.get(key);
    if (known && now - known.at < pingReuseMs) return known.ping;
    const pending = ping();
    this.pings.set(key, { at: now, ping: pending });
    pending.catch(() => {
      if (this.pings.get(key)?.ping === pending) this.pings.delete(key);
    });
    return pending;
  }

  /** Forgets the ping for `key` (a request through it could not reach the registry). */
  forget(key: string): void {
    this.pings.delete(key);
  }
}

/** State shared by every reference, source and destination of one transport instance. */
export interface DockerTransportState {
  readonly pools: ConnectionPools;
  readonly blobLocations: KnownBlobLocations;
  readonly userAgent: string;
  readonly pings: RegistryPings;
}

/** Creates the state of a new transport instance (nothing is opened until first use). */
export function createDockerTransportState(userAgent: string): DockerTransportState {
  return {
    pools: new ConnectionPools(),
    blobLocations: new KnownBlobLocations(),
    userAgent,
    pings: new RegistryPings(),
  };
}
