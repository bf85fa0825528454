/**
 * The btrfs driver, laid out exactly as containers/storage's: `<graphroot>/btrfs/subvolumes/<layer id>`
 * is a btrfs subvolume holding the layer's whole file system; a child layer starts as a writable
 * snapshot of its parent's subvolume (no copying), then the layer tar is applied with its whiteouts
 * carried out. Subvolumes are made and deleted with btrfs-progs' `btrfs` command. The graph root must
 * be on btrfs (checked by `initialize`).
 */
import { execFile } from 'node:child_process';
import { chown, lstat, mkdir, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ErrorCodes, GantryError } from '@gantry/core/transport';
import { applyLayer, pathFileGetter } from '@gantry/layer-tree';
import { checkLayerId, driverOptions, isTrue, rootOwner, toApplyDiffResult } from './common.js';
import type {
  ApplyDiffOptions,
  ApplyDiffResult,
  LayerFileGetter,
  StorageDriver,
  StorageDriverFactory,
  StorageDriverOptions,
} from './driver.js';

const execFileAsync = promisify(execFile);

/** statfs f_type of btrfs (BTRFS_SUPER_MAGIC). */
export const btrfsMagic = 0x9123683e;

async function btrfs(args: readonly string[]): Promise<void> {
  try {
    await execFileAsync('btrfs', [...args]);
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT') {
      throw new GantryError(
        ErrorCodes.NotSupported,
        'the btrfs storage driver needs the btrfs command (Debian package btrfs-progs)',
      );
    }
    throw new GantryError(
      ErrorCodes.Internal,
      `btrfs ${args.join(' ')} failed: ${(failure.stderr ?? failure.message).trim()}`,
      { cause: error },
    );
  }
}

export class BtrfsDriver implements StorageDriver {
  readonly name = 'btrfs';
  readonly home: string;
  private readonly ignoreChownErrors: boolean;

  constructor(private readonly options: StorageDriverOptions) {
    this.home = join(options.graphRoot, 'btrfs');
    this.ignoreChownErrors = isTrue(driverOptions('btrfs', options.options).get('ignore_chown_errors'));
  }

  private get subvolumes(): string {
    return join(this.home, 'subvolumes');
  }

  /** The layer's subvolume. */
  layerDirectory(id: string): string {
    return join(this.subvolumes, checkLayerId(id));
  }

  async initialize(): Promise<void> {
    await mkdir(this.home, { recursive: true, mode: 0o700 });
    const { type } = await statfs(this.home);
    if (type !== btrfsMagic) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        `the btrfs storage driver needs ${this.options.graphRoot} on a btrfs file system (it is on file system type 0x${type.toString(16)})`,
      );
    }
    await mkdir(this.subvolumes, { recursive: true, mode: 0o700 });
  }

  async createLayer(id: string, parentId: string | undefined): Promise<void> {
    await this.initialize();
    const directory = this.layerDirectory(id);
    if (await lstat(directory).catch(() => undefined)) await this.removeLayer(id);
    if (parentId === undefined) {
      await btrfs(['subvolume', 'create', directory]);
    } else {
      await btrfs(['subvolume', 'snapshot', this.layerDirectory(parentId), directory]);
    }
    if ((this.options.uidMappings?.length ?? 0) > 0 || (this.options.gidMappings?.length ?? 0) > 0) {
      const owner = rootOwner(this.options);
      await chown(directory, owner.uid, owner.gid);
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
    const directory = this.layerDirectory(id);
    const stats = await lstat(directory).catch(() => undefined);
    if (stats === undefined) return;
    // A subvolume's root directory has inode number 256.
    if (stats.isDirectory() && stats.ino === 256) await btrfs(['subvolume', 'delete', directory]);
    else await rm(directory, { recursive: true, force: true });
  }

  async layerExists(id: string): Promise<boolean> {
    const stats = await lstat(this.layerDirectory(id)).catch(() => undefined);
    return stats?.isDirectory() === true;
  }
}

export const createBtrfsDriver: StorageDriverFactory = (options) => new BtrfsDriver(options);
export default createBtrfsDriver;
