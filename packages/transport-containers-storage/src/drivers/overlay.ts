/**
 * The overlay driver, laid out exactly as containers/storage's (no mount is needed to write or read):
 *
 *   overlay/<id>/diff    the layer's own files; whiteouts as 0/0 character devices, opaque directories
 *                        with the `trusted.overlay.opaque="y"` xattr (`user.overlay.opaque` rootless)
 *   overlay/<id>/link    the layer's short name (26 base32 characters)
 *   overlay/l/<short>    symbolic link to `../<id>/diff` (keeps mount options short)
 *   overlay/<id>/lower   `l/<parent short>:l/<grandparent short>:…` (child layers only)
 *   overlay/<id>/work, merged   empty directories for mounting (0700)
 *   overlay/<id>/empty   an empty directory (base layers only)
 *
 * `diff` starts as mode 0555 owned by the mapped root for a base layer, or with its parent diff's mode
 * and owner; the tar's root entry does not change it (as containers/storage's Untar).
 */
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { lstat, mkdir, readFile, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
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

const shortNameLength = 26;
const base32Alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** containers/storage's generateID(26): base32 (standard alphabet) of random bytes, cut to 26 characters. */
export function generateShortName(): string {
  const bytes = randomBytes(Math.ceil((shortNameLength * 5) / 8));
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < shortNameLength) {
      out += base32Alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  return out;
}

export class OverlayDriver implements StorageDriver {
  readonly name = 'overlay';
  readonly home: string;
  private readonly ignoreChownErrors: boolean;

  constructor(private readonly options: StorageDriverOptions) {
    this.home = join(options.graphRoot, 'overlay');
    this.ignoreChownErrors = isTrue(driverOptions('overlay', options.options).get('ignore_chown_errors'));
  }

  layerDirectory(id: string): string {
    return join(this.home, checkLayerId(id));
  }

  /** The directory holding the layer's own files. */
  diffDirectory(id: string): string {
    return join(this.layerDirectory(id), 'diff');
  }

  async initialize(): Promise<void> {
    await mkdir(this.home, { recursive: true, mode: 0o700 });
    await mkdir(join(this.home, 'l'), { recursive: true, mode: 0o755 });
  }

  private mkdirOwned(path: string, mode: number, owner: { uid: number; gid: number }): void {
    mkdirSync(path, { mode });
    chmodSync(path, mode);
    chownSync(path, owner.uid, owner.gid);
  }

  /**
   * The layer's directories, links and files, made with synchronous calls (a few microseconds each):
   * while other blobs arrive, libuv's pool threads are busy with their spool writes, and each of the
   * ~20 calls made asynchronously would wait behind them at the start of every layer.
   */
  async createLayer(id: string, parentId: string | undefined): Promise<void> {
    const directory = this.layerDirectory(id);
    const owner = rootOwner(this.options);
    mkdirSync(this.home, { recursive: true, mode: 0o700 });
    mkdirSync(join(this.home, 'l'), { recursive: true, mode: 0o755 });
    // A leftover of an interrupted writer: removed on the pool.
    if (lstatSync(directory, { throwIfNoEntry: false }) !== undefined) await this.removeLayer(id);
    let diffMode = 0o555;
    let diffOwner = owner;
    let lower: string | undefined;
    if (parentId !== undefined) {
      const parentDiff = statSync(this.diffDirectory(parentId));
      diffMode = parentDiff.mode & 0o7777;
      diffOwner = { uid: parentDiff.uid, gid: parentDiff.gid };
      lower = this.lowerOf(parentId);
    }
    this.mkdirOwned(directory, 0o700, owner);
    try {
      this.mkdirOwned(join(directory, 'diff'), diffMode, diffOwner);
      const shortName = generateShortName();
      symlinkSync(join('..', id, 'diff'), join(this.home, 'l', shortName));
      writeFileSync(join(directory, 'link'), shortName, { mode: 0o644 });
      this.mkdirOwned(join(directory, 'work'), 0o700, owner);
      this.mkdirOwned(join(directory, 'merged'), 0o700, owner);
      if (lower === undefined) this.mkdirOwned(join(directory, 'empty'), 0o700, owner);
      else writeFileSync(join(directory, 'lower'), lower, { mode: 0o644 });
    } catch (error) {
      await this.removeLayer(id);
      throw error;
    }
  }

  /** The `lower` file of a child of `parentId`: the parent's short link first, then the parent's lowers. */
  private lowerOf(parentId: string): string {
    const parentDirectory = this.layerDirectory(parentId);
    let shortName: string;
    try {
      shortName = readFileSync(join(parentDirectory, 'link'), 'utf8').trim();
    } catch (error) {
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `overlay: parent layer ${parentId} has no readable link file`,
        { cause: error },
      );
    }
    const lowers = [`l/${shortName}`];
    let parentLower: string | undefined;
    try {
      parentLower = readFileSync(join(parentDirectory, 'lower'), 'utf8');
    } catch {
      parentLower = undefined;
    }
    if (parentLower !== undefined && parentLower !== '') lowers.push(...parentLower.split(':'));
    return lowers.join(':');
  }

  async applyDiff(
    id: string,
    _parentId: string | undefined,
    diff: AsyncIterable<Uint8Array>,
    options: ApplyDiffOptions = {},
  ): Promise<ApplyDiffResult> {
    const result = await applyLayer(diff, this.diffDirectory(id), {
      whiteouts: 'overlay',
      overlayXattrPrefix: this.options.rootless ? 'user.overlay.' : 'trusted.overlay.',
      applyRootEntry: false,
      uidMappings: this.options.uidMappings,
      gidMappings: this.options.gidMappings,
      rootless: this.options.rootless,
      ignoreChownErrors: this.ignoreChownErrors,
      signal: options.signal,
    });
    return toApplyDiffResult(result);
  }

  diffFileGetter(id: string): LayerFileGetter {
    const getter = pathFileGetter(this.diffDirectory(id));
    return (path, pathBytes) => getter(path, pathBytes);
  }

  async removeLayer(id: string): Promise<void> {
    const directory = this.layerDirectory(id);
    const shortName = await readFile(join(directory, 'link'), 'utf8').catch(() => undefined);
    if (shortName !== undefined && /^[A-Z2-7]+$/.test(shortName.trim())) {
      const link = join(this.home, 'l', shortName.trim());
      const target = await readlink(link).catch(() => undefined);
      if (target === join('..', id, 'diff')) await rm(link, { force: true });
    }
    await rm(directory, { recursive: true, force: true });
  }

  async layerExists(id: string): Promise<boolean> {
    const stats = await lstat(this.layerDirectory(id)).catch(() => undefined);
    return stats?.isDirectory() === true;
  }
}

export const createOverlayDriver: StorageDriverFactory = (options) => new OverlayDriver(options);
export default createOverlayDriver;
