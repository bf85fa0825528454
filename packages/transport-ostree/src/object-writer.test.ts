import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serializeFileHeader } from './gvariant.js';
import { ObjectWriter } from './object-writer.js';

const isRoot = process.getuid?.() === 0;
let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-ostree-objects-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function bareRepository(name: string, extraConfig = ''): string {
  const repo = join(root, name);
  execFileSync('ostree', ['init', `--repo=${repo}`, '--mode=bare']);
  if (extraConfig) {
    execFileSync('sh', ['-c', `printf '%s\\n' "$1" >> "$0/config"`, repo, extraConfig]);
  }
  return repo;
}

/** The checksum `ostree commit --tree=dir=` gives the file `name` of a directory holding `bytes`. */
function ostreeChecksum(repo: string, bytes: Buffer, mode: number): string {
  const tree = join(root, `tree-${randomBytes(4).toString('hex')}`);
  mkdirSync(tree);
  writeFileSync(join(tree, 'file'), bytes);
  chmodSync(join(tree, 'file'), mode);
  const commit = execFileSync('ostree', ['commit', `--repo=${repo}`, '--orphan', `--tree=dir=${tree}`], {
    encoding: 'utf8',
  }).trim();
  const line = execFileSync('ostree', ['ls', `--repo=${repo}`, '-C', commit, '/file'], { encoding: 'utf8' });
  return line.trim().split(/\s+/)[4]!;
}

function temporaryFiles(repo: string): string[] {
  return readdirSync(join(repo, 'tmp')).filter((name) => name.startsWith('gantry-object-'));
}

describe.skipIf(!isRoot)('ObjectWriter (bare repository, as root)', () => {
  it('writes a file given across many batches as the content object ostree names and reads back', async () => {
    const repo = bareRepository('large');
    // Larger than a batch, in odd pieces: the bytes cross batch boundaries.
    const bytes = randomBytes(3 * 1024 * 1024 + 12345);
    const mode = 0o100755;
    const writer = new ObjectWriter({
      objects: join(repo, 'objects'),
      tmp: join(repo, 'tmp'),
      freeSpacePercent: 0,
    });
    let checksum: string | undefined;
    writer.file(
      serializeFileHeader(0, 0, mode, Buffer.alloc(0), []),
      { uid: 0, gid: 0, mode, size: bytes.length, xattrs: [] },
      (sum) => {
        checksum = sum;
      },
    );
    for (let offset = 0; offset < bytes.length; offset += 300_001) {
      await writer.data(bytes.subarray(offset, offset + 300_001));
    }
    await writer.drain();
    await writer.close();
    expect(checksum).toBe(ostreeChecksum(bareRepository('large-reference'), bytes, 0o755));
    const object = join(repo, 'objects', checksum!.slice(0, 2), `${checksum!.slice(2)}.file`);
    const stats = lstatSync(object);
    expect(stats.mode).toBe(mode);
    expect(stats.mtimeMs).toBe(0);
    expect(stats.size).toBe(bytes.length);
    expect(readFileSync(object).equals(bytes)).toBe(true);
    expect(temporaryFiles(repo)).toEqual([]);
  });

  it("keeps libostree's free-space reserve: a file that would go below it is refused with ENOSPC", async () => {
    const repo = bareRepository('reserve');
    const writer = new ObjectWriter({
      objects: join(repo, 'objects'),
      tmp: join(repo, 'tmp'),
      freeSpacePercent: 99,
    });
    const size = 64 * 1024 * 1024 * 1024;
    writer.file(
      serializeFileHeader(0, 0, 0o100644, Buffer.alloc(0), []),
      { uid: 0, gid: 0, mode: 0o100644, size, xattrs: [] },
      () => undefined,
    );
    await expect(writer.drain()).rejects.toMatchObject({
      code: 'ENOSPC',
      message: expect.stringContaining("min-free-space-percent '99%' would be exceeded"),
    });
    await writer.close();
    expect(temporaryFiles(repo)).toEqual([]);
  });

  it('close() removes a file it was still writing; objects it finished stay', async () => {
    const repo = bareRepository('closed');
    const writer = new ObjectWriter({
      objects: join(repo, 'objects'),
      tmp: join(repo, 'tmp'),
      freeSpacePercent: 0,
    });
    const sums: string[] = [];
    writer.file(
      serializeFileHeader(0, 0, 0o100644, Buffer.alloc(0), []),
      { uid: 0, gid: 0, mode: 0o100644, size: 4, xattrs: [] },
      (sum) => sums.push(sum),
    );
    await writer.data(Buffer.from('done'));
    writer.file(
      serializeFileHeader(0, 0, 0o100644, Buffer.alloc(0), []),
      { uid: 0, gid: 0, mode: 0o100644, size: 100, xattrs: [] },
      (sum) => sums.push(sum),
    );
    await writer.data(Buffer.from('half'));
    writer.flush();
    await writer.close();
    expect(temporaryFiles(repo)).toEqual([]);
    const objects = execFileSync('find', [join(repo, 'objects'), '-type', 'f'], { encoding: 'utf8' })
      .trim()
      .split('\n');
    expect(objects).toHaveLength(1);
  });
});
