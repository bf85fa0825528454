import { randomBytes } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { chmod, chown, link, lutimes, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { copyTree, copyTreeAsync } from './copy-tree.js';
import { describeTree, makeRichTree } from './testing.js';

let work: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'gantry-copy-tree-'));
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A tree of every kind of entry, plus large files (copied on the thread pool by copyTreeAsync). */
async function makeTreeWithLargeFiles(directory: string): Promise<void> {
  await makeRichTree(directory);
  const when = new Date('2023-05-06T07:08:09Z');
  await mkdir(join(directory, 'usr/lib/big'), { recursive: true });
  for (const [index, size] of [
    [0, 1 << 20],
    [1, (3 << 20) + 17],
    [2, 5 << 20],
    [3, 2 << 20],
    [4, (1 << 20) - 1],
  ] as const) {
    const path = join(directory, `usr/lib/big/file-${index}.bin`);
    await writeFile(path, randomBytes(size));
    await lutimes(path, when, when);
  }
  await chown(join(directory, 'usr/lib/big/file-1.bin'), 1234, 5678);
  await chmod(join(directory, 'usr/lib/big/file-2.bin'), 0o4711);
  // Hard links to a large file, one in another directory (the links need the copied file first).
  await link(join(directory, 'usr/lib/big/file-0.bin'), join(directory, 'usr/lib/big/file-0-again.bin'));
  await link(join(directory, 'usr/lib/big/file-0.bin'), join(directory, 'etc/file-0-link.bin'));
  // A directory without write permission holding a large file: its mode is set after the file is in.
  await mkdir(join(directory, 'readonly'));
  await writeFile(join(directory, 'readonly/large.bin'), randomBytes(3 << 20));
  await chmod(join(directory, 'readonly'), 0o555);
  await lutimes(join(directory, 'readonly'), when, when);
  await lutimes(join(directory, 'usr/lib/big'), when, when);
  await chmod(directory, 0o751);
  await lutimes(directory, when, when);
}

describe('copyTree and copyTreeAsync', () => {
  it('copyTreeAsync gives exactly what copyTree gives: contents, owners, modes, times, xattrs, links, devices', async () => {
    const source = join(work, 'source');
    await mkdir(source);
    await makeTreeWithLargeFiles(source);
    const synchronous = join(work, 'synchronous');
    const asynchronous = join(work, 'asynchronous');
    await mkdir(synchronous);
    await mkdir(asynchronous);
    copyTree(source, synchronous);
    await copyTreeAsync(source, asynchronous);

    const expected = describeTree(source, { directoryTimes: true });
    expect(expected.filter((entry) => entry.path.startsWith('usr/lib/big/')).length).toBe(6);
    expect(describeTree(synchronous, { directoryTimes: true })).toEqual(expected);
    expect(describeTree(asynchronous, { directoryTimes: true })).toEqual(expected);
    // The root's own metadata is copied too.
    const rootOf = (path: string) => {
      const stats = lstatSync(path);
      return { mode: stats.mode, uid: stats.uid, gid: stats.gid, mtime: stats.mtimeMs };
    };
    expect(rootOf(asynchronous)).toEqual(rootOf(source));
    expect(rootOf(synchronous)).toEqual(rootOf(source));
  });

  it('copyTreeAsync stops at an abort before copying large files', async () => {
    const source = join(work, 'source');
    await mkdir(source);
    await makeTreeWithLargeFiles(source);
    const destination = join(work, 'destination');
    await mkdir(destination);
    const controller = new AbortController();
    controller.abort(new Error('stop here'));
    await expect(copyTreeAsync(source, destination, { signal: controller.signal })).rejects.toThrow(
      'stop here',
    );
  });
});
