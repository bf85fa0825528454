/**
 * The vfs driver, laid out exactly as containers/storage's: `<graphroot>/vfs/dir/<layer id>` holds the
 * layer's whole file system. A child layer starts as a copy of its parent (owners, modes, times,
 * extended attributes, hard links, devices preserved; files cloned where the file system can), then the
 * layer tar is applied with its whiteouts carried out.
 */
import { chmod, chown, lstat, mkdir, rm } from 'node:fs/promises';
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

  async createLayer(id: string, parentId: string | undefined): Promise<void> {
    const directory = this.layerDirectory(id);
    await mkdir(join(this.home, 'dir'), { recursive: true, mode: 0o700 });
    await rm(directory, { recursive: true, force: true });
    try {
      if (parentId === undefined) {
        const owner = rootOwner(this.options);
        await mkdir(directory, { mode: 0o755 });
        await chmod(directory, 0o755);
        await chown(directory, owner.uid, owner.gid);
      } else {
        const parent = this.layerDirectory(parentId);
        const stats = await lstat(parent);
        await mkdir(directory, { mode: 0o700 });
        await chown(directory, stats.uid, stats.gid);
        await chmod(directory, stats.mode & 0o7777);
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
