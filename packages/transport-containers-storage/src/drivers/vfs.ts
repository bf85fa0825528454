/**
 * The vfs driver, laid out exactly as containers/storage's: `<graphroot>/vfs/dir/<layer id>` holds the
 * layer's whole file system. A child layer starts as a copy of its parent (owners, modes, times,
 * extended attributes, hard links, devices preserved; files cloned where the file system can), then the
 * layer tar is applied with its whiteouts carried out.
 */
import { chmodSync, chownSync, lstatSync, mkdirSync } from 'node:fs';
import { lstat, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { applyLayer, copyTreeAsync, pathFileGetter } from '@gantry/layer-tree';
import { checkLayerId, driverOptions, isTrue, rootOwner, toApplyDiffResult } from './common.js';
import type {
  ApplyDiffOptions,
  ApplyDiffResult,
  LayerFileGetter,
  StorageDriver,
  StorageDriverFactory,
  StorageDriverOptions,
} from './driver.js';

export class VfsDriver implements StorageDriver {
  readonly name = 'vfs';
  readonly home: string;
  private readonly ignoreChownErrors: boolean;

  constructor(private readonly options: StorageDriverOptions) {
    this.home = join(options.graphRoot, 'vfs');
    this.ignoreChownErrors = isTrue(driverOptions('vfs', options.options).get('ignore_chown_errors'));
  }

  /** The layer's directory. */
  layerDirectory(id: string): string {
    return join(this.home, 'dir', checkLayerId(id));
  }

  async initialize(): Promise<void> {
    await mkdir(join(this.home, 'dir'), { recursive: true, mode: 0o700 });
  }

  /**
   * The layer's directory, made with synchronous calls (a few microseconds each): while other blobs
   * arrive, libuv's pool threads are busy with their spool writes, and each asynchronous call would wait
   * behind them at the start of every layer. The parent's large files are copied on the pool
   * (`copyTreeAsync`).
   */
  async createLayer(id: string, parentId: string | undefined): Promise<void> {
    const directory = this.layerDirectory(id);
    mkdirSync(join(this.home, 'dir'), { recursive: true, mode: 0o700 });
    // A leftover of an interrupted writer (its files may be many): removed on the pool.
    if (lstatSync(directory, { throwIfNoEntry: false }) !== undefined)
      await rm(directory, { recursive: true, force: true });
    try {
      if (parentId === undefined) {
        const owner = rootOwner(this.options);
        mkdirSync(directory, { mode: 0o755 });
        chmodSync(directory, 0o755);
        chownSync(directory, owner.uid, owner.gid);
      } else {
        const parent = this.layerDirectory(parentId);
        const stats = lstatSync(parent);
        mkdirSync(directory, { mode: 0o700 });
        chownSync(directory, stats.uid, stats.gid);
        chmodSync(directory, stats.mode & 0o7777);
        await copyTreeAsync(parent, directory);
      }
    } catch (error) {
      await rm(directory, { recursive: true, force: true });
      throw error;
    }
  }

  async applyDiff(
    id: string,
    _parentId: string | undefined,
    diff: AsyncIterable<Uint8Array>,
    options: ApplyDiffOptions = {},
  ): Promise<ApplyDiffResult> {
    const result = await applyLayer(diff, this.layerDirectory(id), {
      whiteouts: 'apply',
      uidMappings: this.options.uidMappings,
      gidMappings: this.options.gidMappings,
      rootless: this.options.rootless,
      ignoreChownErrors: this.ignoreChownErrors,
      signal: options.signal,
    });
    return toApplyDiffResult(result);
  }

  diffFileGetter(id: string): LayerFileGetter {
    const getter = pathFileGetter(this.layerDirectory(id));
    return (path, pathBytes) => getter(path, pathBytes);
  }

  async removeLayer(id: string): Promise<void> {
    await rm(this.layerDirectory(id), { recursive: true, force: true });
  }

  async layerExists(id: string): Promise<boolean> {
    const stats = await lstat(this.layerDirectory(id)).catch(() => undefined);
    return stats?.isDirectory() === true;
  }
}

export const createVfsDriver: StorageDriverFactory = (options) => new VfsDriver(options);
export default createVfsDriver;
