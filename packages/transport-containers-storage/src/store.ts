/**
 * A containers/storage store on disk, read and written as containers/storage does:
 *
 * ```
 * <graphroot>/storage.lock, userns.lock
 * <graphroot>/<driver>/…                          the driver's layer files
 * <graphroot>/<driver>-layers/layers.json         layer records (JSON array), guarded by layers.lock
 * <graphroot>/<driver>-layers/<id>.tar-split.gz   how to rebuild each layer's tar byte for byte
 * <graphroot>/<driver>-images/images.json         image records, guarded by images.lock
 * <graphroot>/<driver>-images/<id>/<big data>     manifests, config, signatures (see ids.ts for names)
 * <graphroot>/<driver>-layers/volatile-layers.json layers created volatile (containers of `--rm`)
 * <graphroot>/<driver>-containers/containers.json containers (read only here: images in use are kept)
 * <graphroot>/<driver>-containers/volatile-containers.json, containers.lock
 * <runroot>/<driver>-layers/mountpoints.json      mounts (not changed here)
 * ```
 *
 * A transient store (storage.conf `transient_store = true`, containers/storage 1.45+) keeps
 * `volatile-layers.json`, `volatile-containers.json` and `containers.lock` in
 * `<runroot>/<driver>-layers/` and `<runroot>/<driver>-containers/` instead (layers.json, layers.lock,
 * images.json and images.lock stay in the graph root). The layers of the two layer files are one table
 * here, as in containers/storage: each record is saved back to the file it came from (new ones, image
 * layers, to layers.json), and a file is rewritten only when its records changed; volatile files are
 * written without a sync, as containers/storage writes them.
 *
 * Every change happens with the guarding lock held for writing, re-reading the JSON first (another
 * process may have changed it), writing a new last-writer token into the lock file before the data
 * (so a writer that dies half-way still makes readers reload), and replacing the JSON atomically
 * (temporary file, fdatasync, rename: containers/storage's `AtomicWriteFile` on Linux, no more). Locks are taken in containers/storage's order: layers, then images,
 * then containers. A layer is written with the layers lock held from the moment its record (flagged
 * `incomplete`) is saved until its files and tar-split are complete and the flag is cleared: any
 * process that finds an `incomplete` layer while holding the lock for writing removes it, as
 * containers/storage does.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCodes, GantryError } from '@gantry/core/transport';
import type { StorageDriver } from './drivers/driver.js';
import { bigDataFileName } from './ids.js';
import { acquireLock, type HeldLock, type LockOptions } from './lockfile.js';

/** A layer record of layers.json. Unknown fields are kept as they are. */
export interface LayerRecord {
  id: string;
  names?: string[];
  parent?: string;
  metadata?: string;
  mountlabel?: string;
  created?: string;
  'compressed-diff-digest'?: string;
  'compressed-size'?: number;
  'diff-digest'?: string;
  'toc-digest'?: string;
  'diff-size'?: number;
  compression?: number;
  uidset?: number[];
  gidset?: number[];
  flags?: Record<string, unknown>;
  [field: string]: unknown;
}

/** An image record of images.json. Unknown fields are kept as they are. */
export interface ImageRecord {
  id: string;
  digest?: string;
  names?: string[];
  'names-history'?: string[];
  layer?: string;
  'mapped-layers'?: string[];
  metadata?: string;
  'big-data-names'?: string[];
  'big-data-sizes'?: Record<string, number>;
  'big-data-digests'?: Record<string, string>;
  created?: string;
  flags?: Record<string, unknown>;
  [field: string]: unknown;
}

interface ContainerRecord {
  id: string;
  image?: string;
  layer?: string;
}

/** containers/storage's `archive.Compression` values, as stored in a layer's `compression`. */
export const layerCompressionCodes = { none: 0, bzip2: 1, gzip: 2, xz: 3, zstd: 4 } as const;

export const incompleteFlag = 'incomplete';

export interface StoreLocation {
  driverName: string;
  graphRoot: string;
  runRoot: string;
  driverOptions: readonly string[];
  /** storage.conf's `transient_store` (see above); default false. */
  transientStore?: boolean;
}

/** The layer records under the held layers lock. */
export interface LayerTable {
  readonly records: LayerRecord[];
  byId(id: string): LayerRecord | undefined;
  /** Writes layers.json (a new last-writer token first). */
  save(): void;
  /**
   * As `save`, with the file written and synced on the thread pool (the main thread goes on meanwhile).
   * Files in `alongside` (a layer's tar-split…) are written and synced together with layers.json and
   * renamed into place before it (see `atomicWriteFiles`).
   */
  saveAsync(alongside?: readonly AtomicFile[]): Promise<void>;
}

/** The image records under the held images lock. */
export interface ImageTable {
  readonly records: ImageRecord[];
  byId(id: string): ImageRecord | undefined;
  save(): void;
  /**
   * As `save`, on the thread pool, with the files of `alongside` (big-data files…) written and synced
   * together with images.json and renamed into place before it (see `atomicWriteFiles`; `options`
   * as there).
   */
  saveAsync(alongside?: readonly AtomicFile[], options?: AtomicWriteOptions): Promise<void>;
}

function parseJsonArray<T>(file: string, text: string): T[] {
  if (text.trim() === '') return [];
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new GantryError(
      ErrorCodes.InvalidLayout,
      `corrupt containers-storage file ${file}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  if (value === null) return [];
  if (!Array.isArray(value)) {
    throw new GantryError(
      ErrorCodes.InvalidLayout,
      `corrupt containers-storage file ${file}: expected a JSON array`,
    );
  }
  for (const [index, item] of value.entries()) {
    if (typeof item !== 'object' || item === null || typeof (item as { id?: unknown }).id !== 'string') {
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `corrupt containers-storage file ${file}: entry ${index} has no string "id"`,
      );
    }
  }
  return value as T[];
}

function readJsonArraySync<T>(file: string): T[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return parseJsonArray<T>(file, text);
}

/** One file for `atomicWriteFiles`. */
export interface AtomicFile {
  path: string;
  data: Uint8Array;
  /** Default 0o600. */
  mode?: number;
}

export interface AtomicWriteOptions {
  /**
   * Awaited once the temporary files are written and synced, before the first rename: another write
   * that must be on disk before these files are in place (the write completing the layer an image
   * names), synced meanwhile. When it fails, nothing is renamed (the temporary files are removed) and
   * its error is thrown.
   */
  renameAfter?: Promise<unknown>;
}

/**
 * Replaces `file` atomically with `data` (temporary file in the same directory, fdatasync, rename), as
 * `atomicWriteFileSync` does, with the sync made on the thread pool: the main thread goes on meanwhile.
 */
export async function atomicWriteFile(file: string, data: Uint8Array, mode = 0o600): Promise<void> {
  await atomicWriteFiles([{ path: file, data, mode }]);
}

/** `fdatasync(fd)` on the thread pool. */
function fdatasyncAsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve())));
}

/**
 * Replaces several files atomically, each as `atomicWriteFile` does, with one wait for the disk instead
 * of one per file: every temporary file is written, then all are synced at once (on the thread pool;
 * synced together, the file system commits them in one journal transaction), then they are renamed into
 * place one after the other, in the order given. So a file that names others (layers.json naming a layer
 * whose tar-split is written here too, images.json naming big-data files) goes last: whoever reads it
 * finds the others complete, and a crash before its rename leaves the old version in place. Nothing is
 * renamed when a write fails (the temporary files are removed), nor when `options.renameAfter` fails.
 *
 * Only the syncs wait on the thread pool: the directories, opens, writes (into the page cache: these
 * files are records of a few kilobytes, tar-splits, an image's config and manifests), closes and renames
 * are synchronous calls of a few microseconds each. Made on the pool, each was a trip there and back
 * through the event loop, which takes milliseconds per turn while blobs arrive on the main thread; the
 * record that must be on disk before the first layer starts waited behind ~6 of them.
 */
export async function atomicWriteFiles(
  files: readonly AtomicFile[],
  options: AtomicWriteOptions = {},
): Promise<void> {
  // Awaited once the files are synced; a failure before that is not reported as unhandled meanwhile.
  options.renameAfter?.catch(() => undefined);
  const temporaries = files.map((file) => {
    const directory = join(file.path, '..');
    return join(directory, `.tmp-${randomBytes(6).toString('hex')}-${file.path.slice(directory.length + 1)}`);
  });
  const removeTemporaries = () => {
    for (const temporary of temporaries) {
      try {
        rmSync(temporary, { force: true });
      } catch {
        // Left for the next writer's clean-up: the failure reported is the write's.
      }
    }
  };
  const descriptors: number[] = [];
  const closeAll = () => {
    for (const fd of descriptors.splice(0)) {
      try {
        closeSync(fd);
      } catch {
        // Nothing more can be done about a descriptor that does not close.
      }
    }
  };
  try {
    for (const [index, file] of files.entries()) {
      mkdirSync(join(file.path, '..'), { recursive: true, mode: 0o700 });
      const fd = openSync(temporaries[index]!, 'w', file.mode ?? 0o600);
      descriptors.push(fd);
      let offset = 0;
      while (offset < file.data.byteLength)
        offset += writeSync(fd, file.data, offset, file.data.byteLength - offset);
    }
    // fdatasync, as containers/storage's AtomicWriteFile on Linux: the data and the size that reaches
    // it, not the other metadata (times). Every sync settles before any descriptor is closed.
    const syncs = await Promise.allSettled(descriptors.map((fd) => fdatasyncAsync(fd)));
    const failed = syncs.find((sync) => sync.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (error) {
    closeAll();
    removeTemporaries();
    throw error;
  }
  closeAll();
  try {
    if (options.renameAfter !== undefined) await options.renameAfter;
    for (const [index, file] of files.entries()) renameSync(temporaries[index]!, file.path);
  } catch (error) {
    removeTemporaries();
    throw error;
  }
}

/**
 * Replaces `file` atomically with `data` (temporary file in the same directory, fdatasync unless `sync`
 * is false, rename).
 */
export function atomicWriteFileSync(
  file: string,
  data: string | Uint8Array,
  mode = 0o600,
  sync = true,
): void {
  const directory = join(file, '..');
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  const temporary = join(
    directory,
    `.tmp-${randomBytes(6).toString('hex')}-${file.slice(directory.length + 1)}`,
  );
  const fd = openSync(temporary, 'w', mode);
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let offset = 0;
    while (offset < bytes.length) offset += writeSync(fd, bytes, offset, bytes.length - offset);
    if (sync) fdatasyncSync(fd);
  } catch (error) {
    closeSync(fd);
    rmSync(temporary, { force: true });
    throw error;
  }
  closeSync(fd);
  try {
    renameSync(temporary, file);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}

/** images.json of the store at `location`, read without a lock (the file is always replaced atomically). */
export function readImagesOfLocation(location: StoreLocation): ImageRecord[] {
  return readJsonArraySync<ImageRecord>(
    join(location.graphRoot, `${location.driverName}-images`, 'images.json'),
  );
}

/** A store: where it is, its driver, and transactions on its layers and images. */
export class ContainersStore {
  readonly driverName: string;
  readonly graphRoot: string;
  readonly runRoot: string;
  readonly driverOptions: readonly string[];
  readonly transientStore: boolean;
  readonly driver: StorageDriver;
  private initialized: Promise<void> | undefined;

  constructor(location: StoreLocation, driver: StorageDriver) {
    this.driverName = location.driverName;
    this.graphRoot = location.graphRoot;
    this.runRoot = location.runRoot;
    this.driverOptions = location.driverOptions;
    this.transientStore = location.transientStore === true;
    this.driver = driver;
  }

  get layersDirectory(): string {
    return join(this.graphRoot, `${this.driverName}-layers`);
  }
  get imagesDirectory(): string {
    return join(this.graphRoot, `${this.driverName}-images`);
  }
  get containersDirectory(): string {
    return join(this.graphRoot, `${this.driverName}-containers`);
  }
  get layersJsonPath(): string {
    return join(this.layersDirectory, 'layers.json');
  }
  /** Where containers/storage keeps the volatile layers' records (the run root in a transient store). */
  get volatileLayersJsonPath(): string {
    const directory = this.transientStore
      ? join(this.runRoot, `${this.driverName}-layers`)
      : this.layersDirectory;
    return join(directory, 'volatile-layers.json');
  }
  /** Where the containers lock and volatile-containers.json are (the run root in a transient store). */
  get volatileContainersDirectory(): string {
    return this.transientStore
      ? join(this.runRoot, `${this.driverName}-containers`)
      : this.containersDirectory;
  }
  get imagesJsonPath(): string {
    return join(this.imagesDirectory, 'images.json');
  }
  tarSplitPath(layerId: string): string {
    return join(this.layersDirectory, `${layerId}.tar-split.gz`);
  }
  imageDataDirectory(imageId: string): string {
    return join(this.imagesDirectory, imageId);
  }
  bigDataPath(imageId: string, key: string): string {
    return join(this.imageDataDirectory(imageId), bigDataFileName(key));
  }

  /** Creates the store's directories and lock files, and the driver's home (idempotent). */
  initialize(): Promise<void> {
    this.initialized ??= (async () => {
      await mkdir(this.graphRoot, { recursive: true, mode: 0o700 });
      await mkdir(this.runRoot, { recursive: true, mode: 0o700 });
      for (const directory of [this.layersDirectory, this.imagesDirectory, this.containersDirectory]) {
        await mkdir(directory, { recursive: true, mode: 0o700 });
      }
      for (const directory of [`${this.driverName}-layers`, `${this.driverName}-containers`]) {
        await mkdir(join(this.runRoot, directory), { recursive: true, mode: 0o700 });
      }
      await this.driver.initialize();
    })();
    return this.initialized;
  }

  /** Whether the store exists at all (its graph root has this driver's images directory). */
  async exists(): Promise<boolean> {
    try {
      return (await stat(this.imagesDirectory)).isDirectory();
    } catch {
      return false;
    }
  }

  /** layers.json and volatile-layers.json read without a lock (both are always replaced whole): hints only. */
  readLayersUnlocked(): LayerRecord[] {
    return this.readLayerFiles().records;
  }

  /** images.json read without a lock (the file is always replaced atomically): for parsing references. */
  readImagesUnlocked(): ImageRecord[] {
    return readImagesOfLocation(this);
  }

  /**
   * The records of layers.json then volatile-layers.json (a record whose ID came earlier is dropped, as
   * containers/storage drops it), the set of those from the volatile file, and each file's text as read.
   */
  private readLayerFiles(): { records: LayerRecord[]; volatile: Set<LayerRecord>; texts: [string, string] } {
    const stable = readJsonArraySync<LayerRecord>(this.layersJsonPath);
    const volatileRecords = readJsonArraySync<LayerRecord>(this.volatileLayersJsonPath);
    const records: LayerRecord[] = [];
    const volatile = new Set<LayerRecord>();
    const seen = new Set<string>();
    for (const [list, isVolatile] of [
      [stable, false],
      [volatileRecords, true],
    ] as const) {
      for (const record of list) {
        if (seen.has(record.id)) continue;
        seen.add(record.id);
        records.push(record);
        if (isVolatile) volatile.add(record);
      }
    }
    return { records, volatile, texts: [JSON.stringify(stable), JSON.stringify(volatileRecords)] };
  }

  /**
   * Runs `action` with layers.lock held (exclusive: for writing), on freshly read records (both layer
   * files). With the lock held for writing, layers left `incomplete` by an interrupted writer are removed
   * first (their files, tar-split and record), as containers/storage does. Read-only transactions skip
   * incomplete layers.
   */
  async withLayers<T>(
    exclusive: boolean,
    action: (table: LayerTable, lock: HeldLock) => Promise<T> | T,
    options: LockOptions = {},
  ): Promise<T> {
    const { table, lock } = await this.openLayers(exclusive, options);
    try {
      return await action(table, lock);
    } finally {
      lock.release();
    }
  }

  /**
   * What `withLayers` runs its action on: layers.lock taken and the records read (incomplete layers
   * removed or skipped as there). The caller releases the lock (`lock.release()`) when done.
   */
  async openLayers(
    exclusive: boolean,
    options: LockOptions = {},
  ): Promise<{ table: LayerTable; lock: HeldLock }> {
    if (exclusive) await this.initialize();
    const lock = await acquireLock(join(this.layersDirectory, 'layers.lock'), exclusive, options);
    try {
      const read = this.readLayerFiles();
      const saved = [...read.texts];
      const table: LayerTable = {
        records: read.records,
        byId: (id) => table.records.find((record) => record.id === id),
        save: () => {
          const texts = changedTexts();
          if (!texts) return;
          lock.recordWrite();
          if (texts[0] !== saved[0]) atomicWriteFileSync(this.layersJsonPath, texts[0]);
          if (texts[1] !== saved[1]) atomicWriteFileSync(this.volatileLayersJsonPath, texts[1], 0o600, false);
          saved.splice(0, 2, texts[0], texts[1]);
        },
        saveAsync: async (alongside = []) => {
          const texts = changedTexts();
          if (!texts) {
            if (alongside.length) await atomicWriteFiles(alongside);
            return;
          }
          lock.recordWrite();
          await atomicWriteFiles(
            texts[0] !== saved[0]
              ? [...alongside, { path: this.layersJsonPath, data: Buffer.from(texts[0]) }]
              : alongside,
          );
          if (texts[1] !== saved[1]) atomicWriteFileSync(this.volatileLayersJsonPath, texts[1], 0o600, false);
          saved.splice(0, 2, texts[0], texts[1]);
        },
      };
      // Each record back to the file it came from; only a file whose records changed is rewritten.
      const changedTexts = (): [string, string] | undefined => {
        const stable = table.records.filter((record) => !read.volatile.has(record));
        const volatile = table.records.filter((record) => read.volatile.has(record));
        const texts: [string, string] = [JSON.stringify(stable), JSON.stringify(volatile)];
        return texts[0] === saved[0] && texts[1] === saved[1] ? undefined : texts;
      };
      const incomplete = read.records.filter((record) => record.flags?.[incompleteFlag] === true);
      if (incomplete.length) {
        const complete = read.records.filter((record) => record.flags?.[incompleteFlag] !== true);
        if (exclusive) {
          for (const record of incomplete) {
            await this.driver.removeLayer(record.id);
            await rm(this.tarSplitPath(record.id), { force: true });
          }
          (table as { records: LayerRecord[] }).records = complete;
          table.save();
        } else {
          (table as { records: LayerRecord[] }).records = complete;
        }
      }
      return { table, lock };
    } catch (error) {
      lock.release();
      throw error;
    }
  }

  /** Runs `action` with images.lock held (exclusive: for writing), on freshly read records. */
  async withImages<T>(
    exclusive: boolean,
    action: (table: ImageTable, lock: HeldLock) => Promise<T> | T,
    options: LockOptions = {},
  ): Promise<T> {
    if (exclusive) await this.initialize();
    const lock = await acquireLock(join(this.imagesDirectory, 'images.lock'), exclusive, options);
    try {
      const file = this.imagesJsonPath;
      const table: ImageTable = {
        records: readJsonArraySync<ImageRecord>(file),
        byId: (id) => table.records.find((record) => record.id === id),
        save: () => {
          lock.recordWrite();
          atomicWriteFileSync(file, JSON.stringify(table.records));
        },
        saveAsync: async (alongside = [], options = {}) => {
          lock.recordWrite();
          await atomicWriteFiles(
            [...alongside, { path: file, data: Buffer.from(JSON.stringify(table.records)) }],
            options,
          );
        },
      };
      return await action(table, lock);
    } finally {
      lock.release();
    }
  }

  /**
   * The containers of the store (containers.json and volatile-containers.json), read under
   * containers.lock.
   */
  async readContainers(options: LockOptions = {}): Promise<ContainerRecord[]> {
    const lockDirectory = this.volatileContainersDirectory;
    const read = (): ContainerRecord[] => {
      const records = readJsonArraySync<ContainerRecord>(join(this.containersDirectory, 'containers.json'));
      const ids = new Set(records.map((record) => record.id));
      for (const record of readJsonArraySync<ContainerRecord>(
        join(lockDirectory, 'volatile-containers.json'),
      )) {
        if (!ids.has(record.id)) records.push(record);
      }
      return records;
    };
    try {
      await stat(lockDirectory);
    } catch {
      // No lock file's directory (a transient store's run root after a reboot): nobody holds the lock.
      return read();
    }
    const lock = await acquireLock(join(lockDirectory, 'containers.lock'), false, options);
    try {
      return read();
    } finally {
      lock.release();
    }
  }

  /**
   * Reads one big-data item of an image. With `limit`, an item larger than `limit` bytes is refused with
   * `ERR_GANTRY_INVALID_LAYOUT` naming it, without reading it.
   */
  async readBigData(imageId: string, key: string, limit?: number): Promise<Buffer> {
    const path = this.bigDataPath(imageId, key);
    if (limit === undefined) return readFile(path);
    const handle = await open(path, 'r');
    try {
      const { size } = await handle.stat();
      if (size > limit) {
        throw new GantryError(
          ErrorCodes.InvalidLayout,
          `image ${imageId}: big data item "${key}" is too large (${size} bytes, at most ${limit} accepted)`,
        );
      }
      const bytes = await handle.readFile();
      if (bytes.length > limit) {
        throw new GantryError(
          ErrorCodes.InvalidLayout,
          `image ${imageId}: big data item "${key}" is too large (more than ${limit} bytes)`,
        );
      }
      return bytes;
    } finally {
      await handle.close();
    }
  }
}

/**
 * Sets big-data item `key` of `image` (file written atomically; names, sizes and digests recorded), as
 * containers/storage's `setBigData`. The caller holds the images lock and saves the table.
 */
export function setImageBigData(
  store: ContainersStore,
  image: ImageRecord,
  key: string,
  data: Uint8Array,
  digest: string,
): void {
  atomicWriteFileSync(store.bigDataPath(image.id, key), data);
  const names = image['big-data-names'] ?? [];
  if (!names.includes(key)) names.push(key);
  image['big-data-names'] = names;
  image['big-data-sizes'] = { ...(image['big-data-sizes'] ?? {}), [key]: data.byteLength };
  image['big-data-digests'] = { ...(image['big-data-digests'] ?? {}), [key]: digest };
}

/**
 * Sets big-data items of `image` as `setImageBigData` does, except that the files are not written here:
 * they are returned, one per file name (a key given twice: its last value, as consecutive calls would
 * leave it), for the caller to write with the images table (`ImageTable.saveAsync(files)`: written and
 * synced together with images.json, renamed into place before it). The caller holds the images lock.
 */
export function setImageBigDataItems(
  store: ContainersStore,
  image: ImageRecord,
  items: ReadonlyArray<{ key: string; data: Uint8Array; digest: string }>,
): AtomicFile[] {
  const last = new Map(items.map((item) => [item.key, item]));
  for (const item of items) {
    const names = image['big-data-names'] ?? [];
    if (!names.includes(item.key)) names.push(item.key);
    image['big-data-names'] = names;
    image['big-data-sizes'] = { ...(image['big-data-sizes'] ?? {}), [item.key]: item.data.byteLength };
    image['big-data-digests'] = { ...(image['big-data-digests'] ?? {}), [item.key]: item.digest };
  }
  return [...last.values()].map((item) => ({ path: store.bigDataPath(image.id, item.key), data: item.data }));
}

/** Returns `record` with its map fields' keys sorted, as Go's encoding/json writes maps. */
export function sortedMaps<T extends Record<string, unknown>>(record: T): T {
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    if (
      value &&
      typeof value === 'object' &&
      !Array.isArray(value) &&
      (key.startsWith('big-data-') || key === 'flags')
    ) {
      result[key] = Object.fromEntries(
        Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      );
    } else {
      result[key] = value;
    }
  }
  return result as T;
}
