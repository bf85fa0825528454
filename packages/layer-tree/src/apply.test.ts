import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isGantryError } from '@gantry/core/transport';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type ApplyLayerOptions, applyLayer } from './apply.js';
import { pathFileGetter } from './file-getter.js';
import { nativeCalls } from './native.js';
import { assembleTarChunks } from './tar-split.js';
import { describeTree, type HandMadeTarEntry, handMadeTar, runTool, tarSplitLines } from './testing.js';

let work: string;
let root: string;
let outside: string;
let counter = 0;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'gantry-apply-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

beforeEach(async () => {
  counter++;
  root = join(work, `case-${counter}`, 'root');
  outside = join(work, `case-${counter}`, 'outside');
  await mkdir(root, { recursive: true });
  await mkdir(outside, { recursive: true });
  writeFileSync(join(outside, 'secret'), 'secret\n');
});

function apply(entries: HandMadeTarEntry[], options: Partial<ApplyLayerOptions> = {}) {
  return applyLayer(Readable.from([handMadeTar(entries)]), root, { whiteouts: 'apply', ...options });
}

/** Everything under the case directory except the root: must be exactly what the test put there. */
function outsideUntouched(): void {
  expect(readdirSync(join(root, '..')).sort()).toEqual(['outside', 'root']);
  expect(readdirSync(outside)).toEqual(['secret']);
  expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('secret\n');
}

async function expectRefused(entries: HandMadeTarEntry[], message: RegExp): Promise<void> {
  const failure = await apply(entries).then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(isGantryError(failure)).toBe(true);
  expect((failure as { code: string }).code).toBe('ERR_GANTRY_INVALID_LAYER');
  expect((failure as Error).message).toMatch(message);
  outsideUntouched();
}

describe('applyLayer: device files', () => {
  it('without root (rootless), skips character and block devices as containers/storage does, keeps FIFOs', async () => {
    await apply(
      [
        { name: 'dev/', type: 'directory' },
        { name: 'dev/evil-null', type: 'char', devMajor: 1, devMinor: 3 },
        { name: 'dev/evil-disk', type: 'block', devMajor: 8, devMinor: 0 },
        { name: 'dev/pipe', type: 'fifo' },
      ],
      { rootless: true, ignoreChownErrors: true },
    );
    expect(readdirSync(join(root, 'dev')).sort()).toEqual(['pipe']);
    expect(lstatSync(join(root, 'dev', 'pipe')).isFIFO()).toBe(true);
    outsideUntouched();
  });

  it('a device entry cannot be placed outside the root', async () => {
    await expectRefused([{ name: '../outside/evil-null', type: 'char', devMajor: 1, devMinor: 3 }], /\.\./);
  });
});

describe('applyLayer: hostile layers write nothing outside the root', () => {
  it('refuses a name climbing out with ..', async () => {
    await expectRefused(
      [{ name: '../outside/evil', content: 'x' }],
      /entry "\.\.\/outside\/evil" climbs out/,
    );
    await expectRefused([{ name: 'a/../../outside/evil', content: 'x' }], /climbs out/);
  });

  it('refuses an absolute name', async () => {
    await expectRefused([{ name: `${outside}/evil`, content: 'x' }], /has an absolute name/);
  });

  it('refuses a symbolic link whose relative target climbs out, as containers/storage does', async () => {
    await expectRefused(
      [{ name: 'link', type: 'symlink', linkName: '../outside' }],
      /symbolic link to "\.\.\/outside", outside the layer/,
    );
    await expectRefused([{ name: 'a/b/link', type: 'symlink', linkName: '../../../x' }], /outside the layer/);
  });

  it('follows a symbolic link in a parent path inside the root only (absolute target = the root)', async () => {
    await apply([
      { name: 'escape', type: 'symlink', linkName: outside },
      { name: 'escape/secret', content: 'overwritten?\n' },
      { name: 'up', type: 'symlink', linkName: '/' },
      { name: 'up/up-file', content: 'inside\n' },
    ]);
    outsideUntouched();
    expect(readFileSync(join(root, outside.slice(1), 'secret'), 'utf8')).toBe('overwritten?\n');
    expect(readFileSync(join(root, 'up-file'), 'utf8')).toBe('inside\n');
    expect(readlinkSync(join(root, 'escape'))).toBe(outside);
  });

  it('refuses hard links out of the root, to absolute names, or through a link to something missing', async () => {
    await expectRefused(
      [{ name: 'hard', type: 'hardlink', linkName: '../outside/secret' }],
      /hard link to "\.\.\/outside\/secret", outside the layer/,
    );
    await expectRefused(
      [{ name: 'hard', type: 'hardlink', linkName: join(outside, 'secret') }],
      /outside the layer/,
    );
    await expectRefused(
      [
        { name: 'escape', type: 'symlink', linkName: outside },
        { name: 'hard', type: 'hardlink', linkName: 'escape/secret' },
      ],
      /hard link to "escape\/secret", which does not exist/,
    );
  });

  it('replaces a symbolic link at the final component instead of writing through it', async () => {
    await apply([
      { name: 'target', type: 'symlink', linkName: join(outside, 'secret') },
      { name: 'target', content: 'replaced\n' },
    ]).catch((error: unknown) => {
      // tar-split refuses duplicate paths, as containers/storage does; nothing was written through the link
      expect((error as Error).message).toMatch(/appears twice/);
    });
    outsideUntouched();
  });

  it('refuses a whiteout that climbs out', async () => {
    await expectRefused([{ name: '../outside/.wh.secret' }], /climbs out/);
  });

  it('fails on symbolic link loops in a parent path, naming the entry', async () => {
    await expectRefused(
      [
        { name: 'a', type: 'symlink', linkName: 'b' },
        { name: 'b', type: 'symlink', linkName: 'a' },
        { name: 'a/file', content: 'x' },
      ],
      /entry "a\/file": too many levels of symbolic links/,
    );
  });

  it('fails on a parent that is a file, naming the entry', async () => {
    await expectRefused(
      [
        { name: 'file', content: 'x' },
        { name: 'file/child', content: 'y' },
      ],
      /entry "file\/child": "file" is not a directory/,
    );
  });
});

describe('applyLayer: malformed tars get clear errors', () => {
  it('names a truncated entry', async () => {
    const tar = handMadeTar([{ name: 'big', content: Buffer.alloc(5000, 1) }]);
    const failure = await applyLayer(Readable.from([tar.subarray(0, 2000)]), root, {
      whiteouts: 'apply',
    }).catch((error: unknown) => error);
    expect((failure as { code: string }).code).toBe('ERR_GANTRY_INVALID_LAYER');
    expect((failure as Error).message).toMatch(/entry "big": the tar ends in the middle of its content/);
  });

  it('says when the input is not a tar', async () => {
    const failure = await applyLayer(
      Readable.from([Buffer.from('this is not a tar file'.repeat(40))]),
      root,
      { whiteouts: 'apply' },
    ).catch((error: unknown) => error);
    expect((failure as { code: string }).code).toBe('ERR_GANTRY_INVALID_LAYER');
    expect((failure as Error).message).toMatch(/header at byte 0: bad header checksum/);
  });

  it('refuses duplicate paths (containers/storage cannot store them)', async () => {
    await expectRefused(
      [
        { name: 'dup', content: 'a' },
        { name: './dup', content: 'b' },
      ],
      /entry "\.\/dup" appears twice/,
    );
  });
});

describe('applyLayer: what a layer holds', () => {
  it('writes every entry type with owners, modes, times, xattrs (PAX SCHILY.xattr) and records the tar-split', async () => {
    const tar = handMadeTar([
      { name: 'dir/', type: 'directory', mode: 0o750, uid: 1000, gid: 1000, mtime: 1_600_000_000 },
      { name: 'dir/file', content: 'content\n', mode: 0o4711, uid: 1001, gid: 1002, mtime: 1_600_000_001 },
      {
        name: 'dir/capable',
        content: '#!/bin/true\n',
        mode: 0o755,
        pax: {
          'SCHILY.xattr.security.capability': Buffer.from('0100000200040000000000000000000000000000', 'hex'),
          'SCHILY.xattr.user.note': 'note',
          mtime: '1600000002.5',
        },
      },
      { name: 'dir/link', type: 'symlink', linkName: 'file', uid: 5, gid: 6 },
      // A hard link's header sets the shared inode's metadata (as containers/storage applies it): tars repeat the file's.
      {
        name: 'dir/hard',
        type: 'hardlink',
        linkName: 'dir/file',
        mode: 0o4711,
        uid: 1001,
        gid: 1002,
        mtime: 1_600_000_001,
      },
      { name: 'dir/null', type: 'char', devMajor: 1, devMinor: 3, mode: 0o666 },
      { name: 'dir/loop', type: 'block', devMajor: 7, devMinor: 200, mode: 0o660 },
      { name: 'dir/pipe', type: 'fifo', mode: 0o600 },
      { name: 'implied/parent/file', content: 'implied parents are made\n' },
    ]);
    const result = await applyLayer(Readable.from([tar]), root, { whiteouts: 'apply' });
    expect(result.uncompressedDigest).toBe(`sha256:${createHash('sha256').update(tar).digest('hex')}`);
    expect(result.uncompressedSize).toBe(tar.length);
    expect(result.uids).toEqual([0, 5, 1000, 1001]);
    expect(result.gids).toEqual([0, 6, 1000, 1002]);
    const tree = Object.fromEntries(
      describeTree(root, { directoryTimes: true }).map((entry) => [entry.path, entry]),
    );
    expect(tree.dir).toMatchObject({
      type: 'directory',
      mode: '750',
      uid: 1000,
      gid: 1000,
      mtime: 1_600_000_000,
    });
    expect(tree['dir/file']).toMatchObject({
      type: 'file',
      mode: '4711',
      uid: 1001,
      gid: 1002,
      mtime: 1_600_000_001,
      hardlinkGroup: 'dir/file',
    });
    expect(tree['dir/hard']?.hardlinkGroup).toBe('dir/file');
    expect(tree['dir/capable']?.xattrs).toEqual({
      'security.capability': '0100000200040000000000000000000000000000',
      'user.note': Buffer.from('note').toString('hex'),
    });
    expect(lstatSync(join(root, 'dir/capable')).mtimeMs).toBe(1_600_000_002_500);
    expect(tree['dir/link']).toMatchObject({ type: 'symlink', content: 'file', uid: 5, gid: 6 });
    expect(tree['dir/null']).toMatchObject({ type: 'char', content: '1:3', mode: '666' });
    expect(tree['dir/loop']).toMatchObject({ type: 'block', content: '7:200', mode: '660' });
    expect(tree['dir/pipe']).toMatchObject({ type: 'fifo', mode: '600' });
    expect(tree.implied).toMatchObject({ type: 'directory', mode: '755' });

    // Cross-checked with the system's own tools (attr's getfattr, coreutils' stat).
    const getfattr = (
      await runTool('getfattr', ['-d', '-m', '-', '-e', 'hex', '--absolute-names', join(root, 'dir/capable')])
    ).toString();
    expect(getfattr).toContain('security.capability=0x0100000200040000000000000000000000000000');
    expect(getfattr).toContain(`user.note=0x${Buffer.from('note').toString('hex')}`);
    const stat = (
      await runTool('stat', [
        '-c',
        '%n %F %t:%T %a %u:%g',
        ...['null', 'loop', 'pipe', 'file'].map((name) => join(root, 'dir', name)),
      ])
    ).toString();
    expect(stat).toContain(`${join(root, 'dir/null')} character special file 1:3 666 0:0`);
    expect(stat).toContain(`${join(root, 'dir/loop')} block special file 7:c8 660 0:0`);
    expect(stat).toContain(`${join(root, 'dir/pipe')} fifo 0:0 600 0:0`);
    expect(stat).toContain(`${join(root, 'dir/file')} regular file 0:0 4711 1001:1002`);

    // The tar-split regenerates the tar byte for byte from the files just written.
    const hash = createHash('sha256');
    for await (const chunk of assembleTarChunks(result.tarSplitGzip, pathFileGetter(root)))
      hash.update(chunk);
    expect(`sha256:${hash.digest('hex')}`).toBe(result.uncompressedDigest);
    const lines = await tarSplitLines(result.tarSplitGzip);
    expect(lines.filter((line) => line.startsWith('{"type":1')).length).toBe(9);
  });

  it('sets owners and modes the kernel would not give by itself (set-gid parents, modes the umask strips)', async () => {
    await apply([
      { name: 'shared/', type: 'directory', mode: 0o2775, gid: 50 },
      { name: 'shared/root-file', content: 'x', uid: 0, gid: 0 },
      { name: 'shared/sub/', type: 'directory', mode: 0o755 },
      { name: 'open-file', content: 'x', mode: 0o666 },
      { name: 'open-dir/', type: 'directory', mode: 0o777 },
      { name: 'alias', type: 'symlink', linkName: 'shared' },
      { name: 'alias/through-link', content: 'y', uid: 0, gid: 0 },
    ]);
    const tree = Object.fromEntries(describeTree(root).map((entry) => [entry.path, entry]));
    expect(tree.shared).toMatchObject({ mode: '2775', gid: 50 });
    expect(tree['shared/root-file']).toMatchObject({ uid: 0, gid: 0 });
    expect(tree['shared/sub']).toMatchObject({ uid: 0, gid: 0, mode: '755' });
    expect(tree['shared/through-link']).toMatchObject({
      uid: 0,
      gid: 0,
      content: createHash('sha256').update('y').digest('hex'),
    });
    expect(tree['open-file']).toMatchObject({ mode: '666' });
    expect(tree['open-dir']).toMatchObject({ mode: '777' });
  });

  it('fails reassembly naming a file whose content changed', async () => {
    const result = await apply([{ name: 'file', content: 'original\n' }]);
    writeFileSync(join(root, 'file'), 'changed!!\n');
    const failure = await (async () => {
      for await (const _ of assembleTarChunks(result.tarSplitGzip, pathFileGetter(root))) {
        // drain
      }
    })().catch((error: unknown) => error);
    expect((failure as { code: string }).code).toBe('ERR_GANTRY_DIGEST_MISMATCH');
    expect((failure as Error).message).toMatch(/layer file "file"/);
  });

  it('applies whiteouts: .wh.name deletes, .wh..wh..opq empties what this layer did not write', async () => {
    await apply([
      { name: 'keep/', type: 'directory' },
      { name: 'keep/old', content: 'old' },
      { name: 'opaque/', type: 'directory' },
      { name: 'opaque/old-a', content: 'a' },
      { name: 'opaque/old-dir/', type: 'directory' },
      { name: 'opaque/old-dir/b', content: 'b' },
      { name: 'gone', content: 'gone' },
    ]);
    const result = await apply([
      { name: 'opaque/', type: 'directory' },
      { name: 'opaque/new', content: 'new' },
      { name: 'opaque/.wh..wh..opq' },
      { name: '.wh.gone' },
      { name: 'keep/.wh.missing' },
    ]);
    expect(describeTree(root).map((entry) => entry.path)).toEqual([
      'keep',
      'keep/old',
      'opaque',
      'opaque/new',
    ]);
    expect(result.uids).toEqual([0]);
  });

  it('converts whiteouts to overlay format (0/0 devices, opaque xattr; user.overlay.* rootless)', async () => {
    await apply(
      [
        { name: 'dir/', type: 'directory' },
        { name: 'dir/.wh..wh..opq' },
        { name: '.wh.deleted', uid: 7, gid: 8 },
      ],
      { whiteouts: 'overlay' },
    );
    const tree = Object.fromEntries(describeTree(root).map((entry) => [entry.path, entry]));
    expect(tree.deleted).toMatchObject({ type: 'char', content: '0:0', mode: '0', uid: 7, gid: 8 });
    expect(tree.dir?.xattrs).toEqual({ 'trusted.overlay.opaque': '79' });
    expect(Object.keys(tree).sort()).toEqual(['deleted', 'dir']);
    const rootless = join(root, '..', 'rootless');
    await mkdir(rootless);
    await applyLayer(Readable.from([handMadeTar([{ name: 'd/.wh..wh..opq' }])]), rootless, {
      whiteouts: 'overlay',
      overlayXattrPrefix: 'user.overlay.',
    });
    expect(
      nativeCalls()
        .lgetxattr(Buffer.from(join(rootless, 'd')), 'user.overlay.opaque')
        ?.toString(),
    ).toBe('y');
    await rm(rootless, { recursive: true });
  });

  it('maps owners through ID mappings (rootless ranges) and refuses unmapped IDs', async () => {
    const mappings = {
      uidMappings: [{ containerId: 0, hostId: 100000, size: 65536 }],
      gidMappings: [{ containerId: 0, hostId: 200000, size: 65536 }],
    };
    await apply([{ name: 'a/b', content: 'x', uid: 1000, gid: 0 }], mappings);
    expect(lstatSync(join(root, 'a/b'))).toMatchObject({ uid: 101000, gid: 200000 });
    expect(lstatSync(join(root, 'a'))).toMatchObject({ uid: 100000, gid: 200000 });
    await expect(apply([{ name: 'c', content: 'x', uid: 70000 }], mappings)).rejects.toThrow(
      /entry "c": uid 70000 is not in the ID mapping/,
    );
  });

  it('writes many small files on the file-writing worker, in tar order where entries depend on earlier ones', async () => {
    const entries: HandMadeTarEntry[] = [];
    for (let directory = 0; directory < 8; directory++) {
      entries.push({ name: `d${directory}/`, type: 'directory', mode: 0o750, mtime: 1_600_000_000 });
      for (let index = 0; index < 60; index++) {
        entries.push({
          name: `d${directory}/f${index}`,
          content: `file ${directory}/${index}\n`.repeat(index + 1),
          mode: index % 2 ? 0o600 : 0o644,
          uid: index % 3,
          gid: index % 5,
          mtime: 1_700_000_000 + index,
        });
      }
    }
    // Entries that need files still being written: a hard link to one, a whiteout of one; a file under
    // directories not yet made; one larger than the thread-pool limit.
    // (A hard link's owner, mode and time apply to the shared inode: the same as d3/f7's here.)
    entries.push({
      name: 'd3/link-to-f7',
      type: 'hardlink',
      linkName: 'd3/f7',
      mode: 0o600,
      uid: 1,
      gid: 2,
      mtime: 1_700_000_007,
    });
    entries.push({ name: 'd5/.wh.f11' });
    entries.push({ name: 'new/deep/file', content: 'deep\n' });
    entries.push({ name: 'large', content: Buffer.alloc(300 * 1024, 9) });
    const tar = handMadeTar(entries);
    const result = await applyLayer(Readable.from([tar]), root, { whiteouts: 'apply' });
    expect(result.uncompressedDigest).toBe(`sha256:${createHash('sha256').update(tar).digest('hex')}`);
    for (let directory = 0; directory < 8; directory++) {
      expect(lstatSync(join(root, `d${directory}`)).mtimeMs).toBe(1_600_000_000_000);
      for (let index = 0; index < 60; index++) {
        const path = join(root, `d${directory}/f${index}`);
        if (directory === 5 && index === 11) {
          expect(existsSync(path)).toBe(false);
          continue;
        }
        const stats = lstatSync(path);
        expect(readFileSync(path, 'utf8')).toBe(`file ${directory}/${index}\n`.repeat(index + 1));
        expect(stats.mode & 0o7777).toBe(index % 2 ? 0o600 : 0o644);
        expect({ uid: stats.uid, gid: stats.gid }).toEqual({ uid: index % 3, gid: index % 5 });
        expect(stats.mtimeMs).toBe((1_700_000_000 + index) * 1000);
      }
    }
    expect(lstatSync(join(root, 'd3/link-to-f7')).ino).toBe(lstatSync(join(root, 'd3/f7')).ino);
    expect(readFileSync(join(root, 'new/deep/file'), 'utf8')).toBe('deep\n');
    expect(readFileSync(join(root, 'large'))).toEqual(Buffer.alloc(300 * 1024, 9));
    // The tar-split lists every entry in tar order.
    const lines = await tarSplitLines(result.tarSplitGzip);
    const names = lines
      .map((line) => JSON.parse(line) as { type: number; name?: string })
      .filter((entry) => entry.type === 1)
      .map((entry) => entry.name);
    expect(names).toEqual(entries.map((entry) => entry.name));
  });

  it('gives the same DiffID with the sha256 on the thread pool and on this thread', async () => {
    const entries: HandMadeTarEntry[] = [{ name: 'dir/', type: 'directory' }];
    for (let index = 0; index < 40; index++)
      entries.push({ name: `dir/f${index}`, content: Buffer.alloc(40_000 + index, index) });
    const tar = handMadeTar(entries);
    // Cut into pieces, so that the off-thread digest hashes many chunks in order.
    const pieces = Array.from({ length: Math.ceil(tar.length / 65_536) }, (_, index) =>
      tar.subarray(index * 65_536, (index + 1) * 65_536),
    );
    const expected = `sha256:${createHash('sha256').update(tar).digest('hex')}`;
    await mkdir(join(root, 'a'));
    await mkdir(join(root, 'b'));
    const offThread = await applyLayer(Readable.from(pieces), join(root, 'a'), { whiteouts: 'apply' });
    expect(offThread.uncompressedDigest).toBe(expected);
    process.env.GANTRY_OFF_THREAD_DIGEST = 'off';
    try {
      const onThread = await applyLayer(Readable.from(pieces), join(root, 'b'), { whiteouts: 'apply' });
      expect(onThread.uncompressedDigest).toBe(expected);
      expect(onThread.uncompressedSize).toBe(tar.length);
    } finally {
      delete process.env.GANTRY_OFF_THREAD_DIGEST;
    }
  });

  it('stops when aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(apply([{ name: 'a', content: 'x' }], { signal: controller.signal })).rejects.toThrow();
    expect(existsSync(join(root, 'a'))).toBe(false);
  });
});

describe('applyLayer: however the input is cut', () => {
  it('writes every small file whole, and a tar-split that regenerates the tar, from pieces of any size', async () => {
    const entries: HandMadeTarEntry[] = [{ name: 'many/', type: 'directory' }];
    for (let directory = 0; directory < 4; directory++) {
      entries.push({ name: `many/d${directory}/`, type: 'directory' });
      for (let file = 0; file < 60; file++) {
        const size = (directory * 60 + file) * 13;
        entries.push({
          name: `many/d${directory}/f${file}`,
          content: Buffer.alloc(size, (directory * 60 + file) & 0xff),
        });
      }
    }
    const tar = handMadeTar(entries);
    for (const sizes of [[tar.length], [1], [37, 1000, 511], [512], [4099]]) {
      await rm(root, { recursive: true, force: true });
      await mkdir(root);
      const pieces: Buffer[] = [];
      for (let offset = 0, index = 0; offset < tar.length; index++) {
        const size = sizes[index % sizes.length] as number;
        pieces.push(Buffer.from(tar.subarray(offset, offset + size)));
        offset += size;
      }
      const result = await applyLayer(Readable.from(pieces), root, { whiteouts: 'apply' });
      expect(result.uncompressedDigest).toBe(`sha256:${createHash('sha256').update(tar).digest('hex')}`);
      for (const entry of entries) {
        if (entry.type === 'directory') continue;
        expect(readFileSync(join(root, entry.name)).equals(entry.content as Buffer), entry.name).toBe(true);
      }
      const hash = createHash('sha256');
      for await (const chunk of assembleTarChunks(result.tarSplitGzip, pathFileGetter(root)))
        hash.update(chunk);
      expect(`sha256:${hash.digest('hex')}`).toBe(result.uncompressedDigest);
    }
  });
});
