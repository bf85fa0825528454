import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { atomicWriteFiles } from './store.js';

let directory: string;

beforeEach(async () => {
  directory = join(tmpdir(), `gantry-cstorage-store-${randomBytes(8).toString('hex')}`);
  await mkdir(directory, { mode: 0o700 });
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('atomicWriteFiles', () => {
  it('replaces every file, creating missing directories, with the modes given and no temporary file left', async () => {
    await writeFile(join(directory, 'index.json'), 'old');
    await atomicWriteFiles([
      { path: join(directory, 'data', 'a.bin'), data: Buffer.from('first') },
      { path: join(directory, 'data', 'b.bin'), data: Buffer.from('second'), mode: 0o644 },
      { path: join(directory, 'index.json'), data: Buffer.from('new') },
    ]);
    expect(await readFile(join(directory, 'data', 'a.bin'), 'utf8')).toBe('first');
    expect(await readFile(join(directory, 'data', 'b.bin'), 'utf8')).toBe('second');
    expect(await readFile(join(directory, 'index.json'), 'utf8')).toBe('new');
    expect((await readdir(directory)).sort()).toEqual(['data', 'index.json']);
    expect((await readdir(join(directory, 'data'))).sort()).toEqual(['a.bin', 'b.bin']);
  });

  it('replaces nothing when one of the files cannot be written, and removes the temporary files', async () => {
    await writeFile(join(directory, 'index.json'), 'old');
    // A regular file where a directory is needed: that file's write fails.
    await writeFile(join(directory, 'blocked'), '');
    await expect(
      atomicWriteFiles([
        { path: join(directory, 'tar-split.gz'), data: Buffer.from('split') },
        { path: join(directory, 'blocked', 'item'), data: Buffer.from('data') },
        { path: join(directory, 'index.json'), data: Buffer.from('new') },
      ]),
    ).rejects.toThrow(/ENOTDIR|EEXIST/);
    expect(await readFile(join(directory, 'index.json'), 'utf8')).toBe('old');
    expect((await readdir(directory)).sort()).toEqual(['blocked', 'index.json']);
  });
  it('renames nothing before `renameAfter` is done, and nothing at all when it fails', async () => {
    await writeFile(join(directory, 'index.json'), 'old');
    let finish: (failure?: Error) => void = () => undefined;
    const other = new Promise<void>((resolve, reject) => {
      finish = (failure) => (failure ? reject(failure) : resolve());
    });
    const write = atomicWriteFiles(
      [
        { path: join(directory, 'item'), data: Buffer.from('data') },
        { path: join(directory, 'index.json'), data: Buffer.from('new') },
      ],
      { renameAfter: other },
    );
    // Both temporary files are there; neither is renamed while the other write goes on.
    for (let tries = 0; (await readdir(directory)).length < 3; tries++) {
      if (tries > 1000) throw new Error('the temporary files were never written');
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(await readFile(join(directory, 'index.json'), 'utf8')).toBe('old');
    expect((await readdir(directory)).filter((name) => !name.startsWith('.tmp-'))).toEqual(['index.json']);
    finish(Object.assign(new Error('the other write failed'), { code: 'EIO' }));
    await expect(write).rejects.toThrow('the other write failed');
    expect(await readFile(join(directory, 'index.json'), 'utf8')).toBe('old');
    expect(await readdir(directory)).toEqual(['index.json']);

    const next = atomicWriteFiles([{ path: join(directory, 'index.json'), data: Buffer.from('newer') }], {
      renameAfter: Promise.resolve(),
    });
    await next;
    expect(await readFile(join(directory, 'index.json'), 'utf8')).toBe('newer');
  });
});
