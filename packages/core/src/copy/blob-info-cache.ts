/**
 * A blob-info cache, as containers/image keeps one between runs: which compressed blob is which
 * uncompressed layer (and in what compression), and where blobs were last seen (a registry and a
 * repository), so that later copies reuse a blob already compressed the wanted way instead of
 * compressing again, and mount a blob from another repository of the registry on first sight.
 *
 * `DiskBlobInfoCache` keeps it in one file of JSON lines (the user's data directory by default): a
 * header line `{"version":2}`, then one record per line, later lines overriding earlier ones. A process
 * reads the file once and parses only the lines naming the blobs it asks about (every record names its
 * blob's digest), so a copy of a few blobs does not pay for a cache of thousands. Records are
 * made in memory; `flush()` appends the new ones, under a lock file, in one write, so a copy costs the
 * file what it learnt, not a rewrite of everything known. When the file has grown past
 * `compactAboveBytes`, or holds the one-document format of version 1, `flush()` instead rewrites it
 * with the most recently used records only (a temporary file renamed over it). Concurrent processes
 * each add what they learnt, none loses the others' records. Lines that cannot be read are skipped, and
 * a file that cannot be read at all is ignored (and replaced at the next flush): the cache only ever
 * saves work, it is never needed for a copy to succeed.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { appendFile, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
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
/** A file larger than this is rewritten with the kept records only, instead of appended to. */
const compactAboveBytes = 2 * 1024 * 1024;
/**
 * A record learnt again that the file already holds as its blob's most recent one is not written again
 * for this long: re-writing it would change no answer, only grow the file (a re-push of an image would
 * append every layer's location on every run). Past this age it is written again, so that it stays
 * among the most recently used records a rewrite keeps.
 */
const refreshAfterMs = 24 * 60 * 60 * 1000;
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

/** The records of a cache file, in the order they apply. */
interface CacheRecords {
  /** The file's format was the current one (a version-1 file is read, then rewritten by `flush`). */
  current: boolean;
  pairs: Array<[Digest, PairRecord]>;
  locations: LocationRecord[];
  /** Locations forgotten, by `locationKey` (and the blob's digest), each after the location records before it. */
  forgotten: Array<{ key: string; digest: Digest; after: number }>;
}

const formatHeader = '{"version":2}';

const digestPattern = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && value.length <= 200 && digestPattern.test(value);
}

function isCompression(value: unknown): value is CachedCompression {
  return value === 'gzip' || value === 'zstd' || value === 'none';
}

function pairFrom(digest: unknown, uncompressed: unknown, compression: unknown, at: unknown) {
  if (!isDigest(digest) || !isDigest(uncompressed) || !isCompression(compression)) return undefined;
  return [digest, { uncompressed, compression, at: typeof at === 'number' ? at : 0 }] as [Digest, PairRecord];
}

function locationFrom(
  transport: unknown,
  scope: unknown,
  digest: unknown,
  location: unknown,
  at: unknown,
): LocationRecord | undefined {
  if (
    typeof transport !== 'string' ||
    typeof scope !== 'string' ||
    typeof location !== 'string' ||
    !isDigest(digest)
  )
    return undefined;
  return { transport, scope, digest, location, at: typeof at === 'number' ? at : 0 };
}

/** Adds one version-2 record line (already parsed) to `records`; anything malformed is dropped. */
function addRecordLine(records: CacheRecords, line: unknown): void {
  if (!Array.isArray(line)) return;
  const [kind, ...fields] = line as unknown[];
  if (kind === 'p') {
    const pair = pairFrom(fields[0], fields[1], fields[2], fields[3]);
    if (pair) records.pairs.push(pair);
  } else if (kind === 'l') {
    const location = locationFrom(fields[0], fields[1], fields[2], fields[3], fields[4]);
    if (location) records.locations.push(location);
  } else if (kind === 'f') {
    const location = locationFrom(fields[0], fields[1], fields[2], fields[3], 0);
    if (location) {
      records.forgotten.push({
        key: locationKey(location),
        digest: location.digest,
        after: records.locations.length,
      });
    }
  }
}

/** The records of a cache file's text; anything malformed is dropped (a corrupt file gives none). */
function parseCacheFile(text: string): CacheRecords {
  const records: CacheRecords = { current: false, pairs: [], locations: [], forgotten: [] };
  const firstLineEnd = text.indexOf('\n');
  if (firstLineEnd >= 0 && text.slice(0, firstLineEnd) === formatHeader) {
    records.current = true;
    const body = text.slice(firstLineEnd + 1).trimEnd();
    if (body === '') return records;
    let lines: unknown[] | undefined;
    try {
      // One parse for the whole file; a torn or damaged line sends it to the line-by-line path.
      lines = JSON.parse(`[${body.split('\n').join(',')}]`) as unknown[];
    } catch {
      lines = undefined;
    }
    if (lines !== undefined) {
      for (const line of lines) addRecordLine(records, line);
    } else {
      for (const text of body.split('\n')) {
        try {
          addRecordLine(records, JSON.parse(text));
        } catch {
          // A damaged line: skipped.
        }
      }
    }
    return records;
  }
  // Version 1: one JSON document.
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return records;
  }
  if (typeof value !== 'object' || value === null || (value as { version?: unknown }).version !== 1)
    return records;
  const raw = value as { pairs?: unknown; locations?: unknown };
  if (typeof raw.pairs === 'object' && raw.pairs !== null) {
    for (const [digest, record] of Object.entries(raw.pairs as Record<string, unknown>)) {
      const fields = (record ?? {}) as Partial<PairRecord>;
      const pair = pairFrom(digest, fields.uncompressed, fields.compression, fields.at);
      if (pair) records.pairs.push(pair);
    }
  }
  if (Array.isArray(raw.locations)) {
    for (const entry of raw.locations as unknown[]) {
      const fields = (entry ?? {}) as Partial<LocationRecord>;
      const location = locationFrom(
        fields.transport,
        fields.scope,
        fields.digest,
        fields.location,
        fields.at,
      );
      if (location) records.locations.push(location);
    }
  }
  return records;
}

const pairLine = (digest: Digest, record: PairRecord) =>
  JSON.stringify(['p', digest, record.uncompressed, record.compression, record.at]);
const locationLine = (record: LocationRecord) =>
  JSON.stringify(['l', record.transport, record.scope, record.digest, record.location, record.at]);
const forgottenLine = (key: string) => JSON.stringify(['f', ...key.split('\u0000')]);

const blobKey = (transport: string, scope: string, digest: Digest) =>
  `${transport}\u0000${scope}\u0000${digest}`;
const locationKey = (record: Omit<LocationRecord, 'at'>) =>
  `${blobKey(record.transport, record.scope, record.digest)}\u0000${record.location}`;

/** A blob-info cache held in memory (the base of the disk cache; also usable alone). */
export class MemoryBlobInfoCache implements BlobInfoCache {
  /** Pairs by compressed digest, and the compressed digests of each uncompressed one. */
  protected pairs = new Map<Digest, PairRecord>();
  private variants = new Map<Digest, Set<Digest>>();
  /** Locations by `locationKey`, and by blob (`blobKey`) then location. */
  protected locations = new Map<string, LocationRecord>();
  private locationsOfBlob = new Map<string, Map<string, LocationRecord>>();
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
    this.load(digest);
    return this.pairs.get(digest)?.uncompressed;
  }

  recordDigestUncompressedPair(digest: Digest, uncompressed: Digest, compression: CachedCompression): void {
    this.load(digest, uncompressed);
    const record = { uncompressed, compression, at: this.now() };
    const known = this.pairs.get(digest);
    const alreadyStored =
      known !== undefined &&
      !this.newPairs.has(digest) &&
      known.uncompressed === uncompressed &&
      known.compression === compression &&
      record.at - known.at < refreshAfterMs &&
      this.isNewestVariant(digest, known);
    this.setPair(digest, record);
    if (!alreadyStored) this.newPairs.set(digest, record);
    if (compression !== 'none' && !this.pairs.has(uncompressed)) {
      // The uncompressed blob is its own uncompressed form.
      const self = { uncompressed, compression: 'none' as const, at: record.at };
      this.setPair(uncompressed, self);
      this.newPairs.set(uncompressed, self);
    }
  }

  compressedVariants(uncompressed: Digest): Array<{ digest: Digest; compression: CachedCompression }> {
    this.load(uncompressed);
    // A variant's own later records may pair it with another digest: they are read before it counts.
    this.load(...(this.variants.get(uncompressed) ?? []));
    const variants: Array<[Digest, PairRecord]> = [];
    for (const digest of this.variants.get(uncompressed) ?? []) {
      const record = this.pairs.get(digest);
      if (record !== undefined) variants.push([digest, record]);
    }
    return variants
      .sort((left, right) => right[1].at - left[1].at)
      .map(([digest, record]) => ({ digest, compression: record.compression }));
  }

  recordKnownLocation(transport: string, scope: string, digest: Digest, location: string): void {
    this.load(digest);
    const record = { transport, scope, digest, location, at: this.now() };
    const key = locationKey(record);
    const known = this.locations.get(key);
    const alreadyStored =
      known !== undefined &&
      !this.newLocations.has(key) &&
      !this.forgotten.has(key) &&
      record.at - known.at < refreshAfterMs &&
      this.isNewestLocation(known);
    this.setLocation(key, record);
    if (!alreadyStored) this.newLocations.set(key, record);
    this.forgotten.delete(key);
  }

  candidateLocations(transport: string, scope: string, digest: Digest): string[] {
    this.load(digest);
    return [...(this.locationsOfBlob.get(blobKey(transport, scope, digest))?.values() ?? [])]
      .sort((left, right) => right.at - left.at)
      .slice(0, maximumLocationsPerBlob)
      .map((record) => record.location);
  }

  forgetLocation(transport: string, scope: string, digest: Digest, location: string): void {
    this.load(digest);
    const key = locationKey({ transport, scope, digest, location });
    this.deleteLocation(key);
    this.newLocations.delete(key);
    this.forgotten.add(key);
  }

  /** Whether `known` (the pair of `digest`) is the most recently recorded blob of its uncompressed form. */
  private isNewestVariant(digest: Digest, known: PairRecord): boolean {
    for (const other of this.variants.get(known.uncompressed) ?? []) {
      const record = this.pairs.get(other);
      if (other !== digest && record !== undefined && record.at > known.at) return false;
    }
    return true;
  }

  /** Whether `known` is the most recently seen location of its blob in its scope. */
  private isNewestLocation(known: LocationRecord): boolean {
    const ofBlob = this.locationsOfBlob.get(blobKey(known.transport, known.scope, known.digest));
    for (const record of ofBlob?.values() ?? []) {
      if (record !== known && record.at > known.at) return false;
    }
    return true;
  }

  /** Loads the stored records about `digests` (nothing to load in memory). */
  protected load(..._digests: Digest[]): void {}

  /** Sets a pair, keeping the index of variants. */
  protected setPair(digest: Digest, record: PairRecord): void {
    const previous = this.pairs.get(digest);
    if (previous !== undefined && previous.uncompressed !== record.uncompressed) {
      this.variants.get(previous.uncompressed)?.delete(digest);
    }
    this.pairs.set(digest, record);
    let variants = this.variants.get(record.uncompressed);
    if (variants === undefined) {
      variants = new Set();
      this.variants.set(record.uncompressed, variants);
    }
    variants.add(digest);
  }

  /** Sets a location, keeping the index by blob. */
  protected setLocation(key: string, record: LocationRecord): void {
    this.locations.set(key, record);
    const blob = blobKey(record.transport, record.scope, record.digest);
    let ofBlob = this.locationsOfBlob.get(blob);
    if (ofBlob === undefined) {
      ofBlob = new Map();
      this.locationsOfBlob.set(blob, ofBlob);
    }
    ofBlob.set(record.location, record);
  }

  /** Deletes a location, keeping the index by blob. */
  protected deleteLocation(key: string): void {
    const record = this.locations.get(key);
    if (record === undefined) return;
    this.locations.delete(key);
    const blob = blobKey(record.transport, record.scope, record.digest);
    const ofBlob = this.locationsOfBlob.get(blob);
    ofBlob?.delete(record.location);
    if (ofBlob?.size === 0) this.locationsOfBlob.delete(blob);
  }
}

/** The default cache file: `$XDG_DATA_HOME/gantry/blob-info-cache.json` or `~/.local/share/gantry/…`. */
export function defaultBlobInfoCachePath(environment: NodeJS.ProcessEnv = process.env): string {
  const dataHome =
    environment.XDG_DATA_HOME && path.isAbsolute(environment.XDG_DATA_HOME)
      ? environment.XDG_DATA_HOME
      : path.join(environment.HOME || os.homedir(), '.local', 'share');
  return path.join(dataHome, 'gantry', 'blob-info-cache.json');
}

/** Applies `records` in file order: pairs and locations, each forget after the locations before it. */
function applyRecords(
  records: CacheRecords,
  setPair: (digest: Digest, record: PairRecord) => void,
  setLocation: (key: string, record: LocationRecord) => void,
  forget: (key: string, digest: Digest) => void,
): void {
  for (const [digest, record] of records.pairs) setPair(digest, record);
  let next = 0;
  const forgetNext = () => {
    const entry = records.forgotten[next++];
    if (entry !== undefined) forget(entry.key, entry.digest);
  };
  for (const [index, record] of records.locations.entries()) {
    while (next < records.forgotten.length && (records.forgotten[next]?.after ?? 0) <= index) forgetNext();
    setLocation(locationKey(record), record);
  }
  while (next < records.forgotten.length) forgetNext();
}

/**
 * The records of the lines of a version-2 cache file (its bytes) that name `digest`, in file order: a
 * search for the quoted digest instead of a parse of every line. Every record about a blob names its
 * digest, so these lines are the blob's whole history in the file (they may also hold pairs of other
 * blobs whose uncompressed form it is). Damaged lines are skipped.
 */
function recordsNaming(bytes: Buffer, digest: Digest): CacheRecords {
  const records: CacheRecords = { current: true, pairs: [], locations: [], forgotten: [] };
  const quoted = Buffer.from(JSON.stringify(digest), 'utf8');
  let lineEnd = formatHeader.length;
  for (let at = bytes.indexOf(quoted, lineEnd); at >= 0; at = bytes.indexOf(quoted, lineEnd + 1)) {
    const lineStart = bytes.lastIndexOf(0x0a, at) + 1;
    lineEnd = bytes.indexOf(0x0a, at);
    if (lineEnd < 0) lineEnd = bytes.length;
    try {
      addRecordLine(records, JSON.parse(bytes.toString('utf8', lineStart, lineEnd)));
    } catch {
      // A damaged (torn) line: skipped.
    }
  }
  return records;
}

/** The blob-info cache in a file of JSON lines (see the module comment). */
export class DiskBlobInfoCache extends MemoryBlobInfoCache {
  /**
   * The file's bytes, read once on first use and searched per digest (a version-2 file): a copy asks
   * about a few blobs, and parsing every record of a file of thousands (up to `compactAboveBytes`)
   * would cost a short command more than the rest of its work. Null when the file is missing,
   * unreadable or of another format (read whole at once instead).
   */
  private bytes: Buffer | null | undefined;
  /** The digests whose records have been read from `bytes`. */
  private readonly loadedDigests = new Set<Digest>();

  constructor(readonly file: string) {
    super();
  }

  /**
   * Reads the records about `digests` (the file once, on first use; then the lines naming each digest,
   * once per digest); a missing, unreadable or corrupt file gives an empty cache.
   */
  protected override load(...digests: Digest[]): void {
    if (this.bytes === undefined) this.readFile();
    const bytes = this.bytes;
    if (bytes === null || bytes === undefined) return;
    for (const digest of digests) {
      if (this.loadedDigests.has(digest)) continue;
      this.loadedDigests.add(digest);
      this.apply(recordsNaming(bytes, digest), digest);
    }
  }

  private readFile(): void {
    this.bytes = null;
    let bytes: Buffer;
    try {
      bytes = readFileSync(this.file);
    } catch {
      return;
    }
    if (bytes.toString('latin1', 0, formatHeader.length + 1) === `${formatHeader}\n`) this.bytes = bytes;
    // Version 1 (one JSON document) or no known format: every record at once.
    else this.apply(parseCacheFile(bytes.toString('utf8')), undefined);
  }

  /**
   * Applies records read from the file under this process's own (which win). With `digest`, the records
   * are that blob's history: a location or a forget of another blob is not (it only shares a string with
   * the digest), nor is a pair of another blob whose own records were read already (they decide).
   */
  private apply(records: CacheRecords, digest: Digest | undefined): void {
    const about = (other: Digest) => digest === undefined || other === digest;
    applyRecords(
      records,
      (pairDigest, record) => {
        if (this.newPairs.has(pairDigest)) return;
        if (!about(pairDigest) && (this.loadedDigests.has(pairDigest) || record.uncompressed !== digest))
          return;
        this.setPair(pairDigest, record);
      },
      (key, record) => {
        if (about(record.digest) && !this.newLocations.has(key) && !this.forgotten.has(key))
          this.setLocation(key, record);
      },
      (key, forgottenDigest) => {
        if (about(forgottenDigest) && !this.newLocations.has(key)) this.deleteLocation(key);
      },
    );
  }

  /**
   * Adds this process's records to the file (under the lock; appended, or the file rewritten when it is
   * large or of version 1). Never throws: a cache that cannot be written only costs later copies the
   * work it would have saved.
   */
  async flush(): Promise<void> {
    if (this.newPairs.size === 0 && this.newLocations.size === 0 && this.forgotten.size === 0) return;
    try {
      mkdirSync(path.dirname(this.file), { recursive: true });
      const release = await acquireLock(`${this.file}.lock`);
      if (release === undefined) return;
      try {
        const size = await stat(this.file).then(
          (stats) => stats.size,
          () => -1,
        );
        const [head, last] = size > 0 ? await readEnds(this.file, formatHeader.length + 1, size) : ['', ''];
        if (size > 0 && size <= compactAboveBytes && head === `${formatHeader}\n`) {
          // A line torn by a writer that died stays a line of its own (skipped when read).
          await appendFile(this.file, (last === '\n' ? '' : '\n') + this.newLines().join(''));
        } else {
          await this.rewrite(size > 0);
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

  /** This process's records as lines: forgotten locations first, then what it learnt. */
  private newLines(): string[] {
    const lines: string[] = [];
    for (const key of this.forgotten) lines.push(`${forgottenLine(key)}\n`);
    for (const [digest, record] of this.newPairs) lines.push(`${pairLine(digest, record)}\n`);
    for (const record of this.newLocations.values()) lines.push(`${locationLine(record)}\n`);
    return lines;
  }

  /** Rewrites the file with its records and this process's, the most recently used only. */
  private async rewrite(exists: boolean): Promise<void> {
    const pairs = new Map<Digest, PairRecord>();
    const locations = new Map<string, LocationRecord>();
    if (exists) {
      try {
        applyRecords(
          parseCacheFile(await readFile(this.file, 'utf8')),
          (digest, record) => pairs.set(digest, record),
          (key, record) => locations.set(key, record),
          (key) => locations.delete(key),
        );
      } catch {
        // Unreadable: written anew.
      }
    }
    for (const key of this.forgotten) locations.delete(key);
    for (const [digest, record] of this.newPairs) pairs.set(digest, record);
    for (const [key, record] of this.newLocations) locations.set(key, record);
    const lines = [`${formatHeader}\n`];
    const keptPairs = [...pairs.entries()]
      .sort((left, right) => left[1].at - right[1].at)
      .slice(-maximumPairs);
    for (const [digest, record] of keptPairs) lines.push(`${pairLine(digest, record)}\n`);
    const keptLocations = [...locations.values()]
      .sort((left, right) => left.at - right.at)
      .slice(-maximumLocations);
    for (const record of keptLocations) lines.push(`${locationLine(record)}\n`);
    const temporary = `${this.file}.${process.pid}.${randomUUID()}.tmp`;
    try {
      await writeFile(temporary, lines.join(''), { mode: 0o600 });
      await rename(temporary, this.file);
    } finally {
      await rm(temporary, { force: true });
    }
  }
}

/** The first `length` bytes of `file` (of `size` bytes) as text, and its last byte. */
async function readEnds(file: string, length: number, size: number): Promise<[string, string]> {
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(length);
    const { bytesRead } = await handle.read(head, 0, length, 0);
    const last = Buffer.alloc(1);
    await handle.read(last, 0, 1, size - 1);
    return [head.subarray(0, bytesRead).toString('utf8'), last.toString('latin1')];
  } finally {
    await handle.close();
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
