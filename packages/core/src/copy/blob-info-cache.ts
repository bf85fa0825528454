/**
 * A blob-info cache, as containers/image keeps one between runs: which compressed blob is which
 * uncompressed layer (and in what compression), and where blobs were last seen (a registry and a
 * repository), so that later copies reuse a blob already compressed the wanted way instead of
 * compressing again, and mount a blob from another repository of the registry on first sight.
 *
 * `DiskBlobInfoCache` keeps it in one small JSON file (the user's data directory by default). Records
 * are made in memory and merged into the file by `flush()`, under a lock file, written to a temporary
 * file and renamed: concurrent processes each add what they learnt, none loses the others' records. A
 * file that cannot be read or parsed is ignored (and replaced at the next flush): the cache only ever
 * saves work, it is never needed for a copy to succeed.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Digest } from '../digest.js';

/** A compression a cached blob has. */
export type CachedCompression = 'gzip' | 'zstd' | 'none';

/** What a copy learns about blobs and asks back; implemented by `DiskBlobInfoCache` and `MemoryBlobInfoCache`. */
export interface BlobInfoCache {
  /** The uncompressed digest (DiffID) of a blob, when known (a blob stored uncompressed is its own). */
  uncompressedDigest(digest: Digest): Digest | undefined;
  /** Records that `digest` is `uncompressed` in `compression` ('none': the blob is uncompressed). */
  recordDigestUncompressedPair(digest: Digest, uncompressed: Digest, compression: CachedCompression): void;
  /** Blobs known to hold `uncompressed`, with their compression, most recently recorded first. */
  compressedVariants(uncompressed: Digest): Array<{ digest: Digest; compression: CachedCompression }>;
  /** Records that `digest` was seen at `location` within `scope` of `transport` (docker: registry, repository). */
  recordKnownLocation(transport: string, scope: string, digest: Digest, location: string): void;
  /** Locations within `scope` known to hold `digest`, most recently seen first. */
  candidateLocations(transport: string, scope: string, digest: Digest): string[];
  /** Forgets a location that turned out not to hold the blob. */
  forgetLocation(transport: string, scope: string, digest: Digest, location: string): void;
}

/** How many digest pairs and locations the file keeps (the most recently used). */
const maximumPairs = 4096;
const maximumLocations = 4096;
/** Locations remembered per blob and scope. */
const maximumLocationsPerBlob = 8;
/** A lock file older than this is taken to be left by a dead process. */
const staleLockMs = 10_000;
/** How long `flush` waits for the lock before giving up (the records are then lost, nothing else). */
const lockWaitMs = 3_000;

interface PairRecord {
  uncompressed: Digest;
  compression: CachedCompression;
  /** Last recorded, ms since the epoch. */
  at: number;
}

interface LocationRecord {
  transport: string;
  scope: string;
  digest: Digest;
  location: string;
  at: number;
}

interface CacheFile {
  version: 1;
  pairs: Record<string, PairRecord>;
  locations: LocationRecord[];
}

const digestPattern = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && value.length <= 200 && digestPattern.test(value);
}

function isCompression(value: unknown): value is CachedCompression {
  return value === 'gzip' || value === 'zstd' || value === 'none';
}

/** The records of a cache file's text; anything malformed is dropped (a corrupt file gives none). */
function parseCacheFile(text: string): CacheFile {
  const empty: CacheFile = { version: 1, pairs: {}, locations: [] };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return empty;
  }
  if (typeof value !== 'object' || value === null || (value as { version?: unknown }).version !== 1)
    return empty;
  const raw = value as { pairs?: unknown; locations?: unknown };
  const result: CacheFile = { version: 1, pairs: {}, locations: [] };
  if (typeof raw.pairs === 'object' && raw.pairs !== null) {
    for (const [digest, record] of Object.entries(raw.pairs as Record<string, unknown>)) {
      const pair = record as Partial<PairRecord> | null;
      if (isDigest(digest) && pair && isDigest(pair.uncompressed) && isCompression(pair.compression)) {
        result.pairs[digest] = {
          uncompressed: pair.uncompressed,
          compression: pair.compression,
          at: typeof pair.at === 'number' ? pair.at : 0,
        };
      }
    }
  }
  if (Array.isArray(raw.locations)) {
    for (const entry of raw.locations as unknown[]) {
      const location = entry as Partial<LocationRecord> | null;
      if (
        location &&
        typeof location.transport === 'string' &&
        typeof location.scope === 'string' &&
        typeof location.location === 'string' &&
        isDigest(location.digest)
      ) {
        result.locations.push({
          transport: location.transport,
          scope: location.scope,
          digest: location.digest,
          location: location.location,
          at: typeof location.at === 'number' ? location.at : 0,
        });
      }
    }
  }
  return result;
}

const locationKey = (record: Omit<LocationRecord, 'at'>) =>
  `${record.transport}\u0000${record.scope}\u0000${record.digest}\u0000${record.location}`;

/** A blob-info cache held in memory (the base of the disk cache; also usable alone). */
export class MemoryBlobInfoCache implements BlobInfoCache {
  protected pairs = new Map<Digest, PairRecord>();
  protected locations = new Map<string, LocationRecord>();
  /** Records made since the last flush, and forgotten locations. */
  protected newPairs = new Map<Digest, PairRecord>();
  protected newLocations = new Map<string, LocationRecord>();
  protected forgotten = new Set<string>();
  private clock = 0;

  /** A strictly increasing time, so records made in one process keep their order. */
  protected now(): number {
    this.clock = Math.max(this.clock + 1, Date.now());
    return this.clock;
  }

  uncompressedDigest(digest: Digest): Digest | undefined {
    this.load();
    return this.pairs.get(digest)?.uncompressed;
  }

  recordDigestUncompressedPair(digest: Digest, uncompressed: Digest, compression: CachedCompression): void {
    this.load();
    const record = { uncompressed, compression, at: this.now() };
    this.pairs.set(digest, record);
    this.newPairs.set(digest, record);
    if (compression !== 'none' && !this.pairs.has(uncompressed)) {
      // The uncompressed blob is its own uncompressed form.
      const self = { uncompressed, compression: 'none' as const, at: record.at };
      this.pairs.set(uncompressed, self);
      this.newPairs.set(uncompressed, self);
    }
  }

  compressedVariants(uncompressed: Digest): Array<{ digest: Digest; compression: CachedCompression }> {
    this.load();
    return [...this.pairs.entries()]
      .filter(([, record]) => record.uncompressed === uncompressed)
      .sort((left, right) => right[1].at - left[1].at)
      .map(([digest, record]) => ({ digest, compression: record.compression }));
  }

  recordKnownLocation(transport: string, scope: string, digest: Digest, location: string): void {
    this.load();
    const record = { transport, scope, digest, location, at: this.now() };
    const key = locationKey(record);
    this.locations.set(key, record);
    this.newLocations.set(key, record);
    this.forgotten.delete(key);
  }

  candidateLocations(transport: string, scope: string, digest: Digest): string[] {
    this.load();
    return [...this.locations.values()]
      .filter(
        (record) => record.transport === transport && record.scope === scope && record.digest === digest,
      )
      .sort((left, right) => right.at - left.at)
      .slice(0, maximumLocationsPerBlob)
      .map((record) => record.location);
  }

  forgetLocation(transport: string, scope: string, digest: Digest, location: string): void {
    this.load();
    const key = locationKey({ transport, scope, digest, location });
    this.locations.delete(key);
    this.newLocations.delete(key);
    this.forgotten.add(key);
  }

  /** Loads stored records (nothing to load in memory). */
  protected load(): void {}
}

/** The default cache file: `$XDG_DATA_HOME/gantry/blob-info-cache.json` or `~/.local/share/gantry/…`. */
export function defaultBlobInfoCachePath(environment: NodeJS.ProcessEnv = process.env): string {
  const dataHome =
    environment.XDG_DATA_HOME && path.isAbsolute(environment.XDG_DATA_HOME)
      ? environment.XDG_DATA_HOME
      : path.join(environment.HOME || os.homedir(), '.local', 'share');
  return path.join(dataHome, 'gantry', 'blob-info-cache.json');
}

/** The blob-info cache in one JSON file (see the module comment). */
export class DiskBlobInfoCache extends MemoryBlobInfoCache {
  private loaded = false;

  constructor(readonly file: string) {
    super();
  }

  /** Reads the file once, on first use; a missing, unreadable or corrupt file gives an empty cache. */
  protected override load(): void {
    if (this.loaded) return;
    this.loaded = true;
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch {
      return;
    }
    const stored = parseCacheFile(text);
    for (const [digest, record] of Object.entries(stored.pairs)) {
      if (!this.pairs.has(digest as Digest)) this.pairs.set(digest as Digest, record);
    }
    for (const record of stored.locations) {
      const key = locationKey(record);
      if (!this.locations.has(key)) this.locations.set(key, record);
    }
  }

  /**
   * Merges this process's records into the file (under the lock, atomically). Never throws: a cache
   * that cannot be written only costs later copies the work it would have saved.
   */
  async flush(): Promise<void> {
    if (this.newPairs.size === 0 && this.newLocations.size === 0 && this.forgotten.size === 0) return;
    try {
      mkdirSync(path.dirname(this.file), { recursive: true });
      const release = await acquireLock(`${this.file}.lock`);
      if (release === undefined) return;
      try {
        let stored: CacheFile = { version: 1, pairs: {}, locations: [] };
        try {
          stored = parseCacheFile(await readFile(this.file, 'utf8'));
        } catch {
          // No file yet, or unreadable: written anew.
        }
        for (const [digest, record] of this.newPairs) stored.pairs[digest] = record;
        const locations = new Map(stored.locations.map((record) => [locationKey(record), record]));
        for (const key of this.forgotten) locations.delete(key);
        for (const [key, record] of this.newLocations) locations.set(key, record);
        const pairs = Object.entries(stored.pairs)
          .sort((left, right) => right[1].at - left[1].at)
          .slice(0, maximumPairs);
        const kept: CacheFile = {
          version: 1,
          pairs: Object.fromEntries(pairs),
          locations: [...locations.values()]
            .sort((left, right) => right.at - left.at)
            .slice(0, maximumLocations),
        };
        const temporary = `${this.file}.${process.pid}.${randomUUID()}.tmp`;
        try {
          await writeFile(temporary, `${JSON.stringify(kept)}\n`, { mode: 0o600 });
          await rename(temporary, this.file);
        } finally {
          await rm(temporary, { force: true });
        }
        this.newPairs.clear();
        this.newLocations.clear();
        this.forgotten.clear();
      } finally {
        await release();
      }
    } catch {
      // See above: never fatal.
    }
  }
}

/** Creates `lockFile` exclusively (waiting for another holder, breaking a stale lock); undefined on timeout. */
async function acquireLock(lockFile: string): Promise<(() => Promise<void>) | undefined> {
  const deadline = Date.now() + lockWaitMs;
  for (;;) {
    try {
      const handle = await open(lockFile, 'wx', 0o600);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return async () => {
        await rm(lockFile, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    try {
      const { mtimeMs } = await stat(lockFile);
      if (Date.now() - mtimeMs > staleLockMs) {
        await rm(lockFile, { force: true });
        continue;
      }
    } catch {
      continue; // Released meanwhile.
    }
    if (Date.now() > deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30));
  }
}
