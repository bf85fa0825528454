/**
 * The layer streamed into `ostree commit --tree=tar=` against the layer applied to a directory by
 * `applyLayer` and committed with `ostree commit --tree=dir=` (whiteouts kept as empty `.wh.` files,
 * devices and fifos removed): same tree checksums, same tar-split and DiffID, the same refusals.
 * Real `ostree`, real GNU tar, repositories of the test's own.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyLayer, cleanPath, readTarSplit } from '@gantry/layer-tree';
import {
  type HandMadeTarEntry,
  handMadeTar,
  makeChangesTree,
  makeRichTree,
  runTool,
} from '@gantry/layer-tree/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCommit } from './gvariant.js';
import { encodeTarHeader, LayerStreamCommit } from './layer-stream.js';
import { OstreeRepository } from './repository.js';

const isRoot = process.getuid?.() === 0;
let root: string;
let repository: OstreeRepository;
/** Where each writer streams (the reference trees are committed from disk into `repository`). */
const streamRepositories = new Map<Writer, OstreeRepository>();
let counter = 0;

type Writer = 'native' | 'ostree';
/** The native writer needs a `bare` repository, written as root. */
const writers: Writer[] = isRoot ? ['native', 'ostree'] : ['ostree'];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-ostree-stream-'));
  repository = await OstreeRepository.openOrCreate(join(root, 'repo'));
  for (const writer of writers) {
    streamRepositories.set(writer, await OstreeRepository.openOrCreate(join(root, `stream-${writer}`)));
  }
});

/** `ostree fsck` of a writer's repository: every object's bytes, owner, mode and attributes hash to its name. */
function expectFsckClean(writer: Writer): void {
  const output = execFileSync('ostree', ['fsck', `--repo=${streamRepositories.get(writer)!.path}`], {
    encoding: 'utf8',
  });
  expect(output).toContain('no errors found');
}
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function* chunksOf(bytes: Buffer, size = 7000): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < bytes.length; offset += size) yield bytes.subarray(offset, offset + size);
}

function scratch(name: string): string {
  const directory = join(repository.path, 'tmp', `test-${name}-${counter++}`);
  mkdirSync(directory, { recursive: true });
  return directory;
}

function removeSpecialFiles(directory: string): void {
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) removeSpecialFiles(path);
    else if (!entry.isFile() && !entry.isSymbolicLink()) unlinkSync(path);
  }
}

/** The reference: the layer applied to a directory, whiteout markers written, special files removed, committed. */
async function committedFromDirectory(tar: Buffer) {
  const tree = join(scratch('dir'), 'root');
  mkdirSync(tree, { mode: 0o755 });
  const applied = await applyLayer(chunksOf(tar), tree, {
    whiteouts: 'apply',
    ...(isRoot ? {} : { rootless: true, ignoreChownErrors: true }),
  });
  for await (const entry of readTarSplit(applied.tarSplitGzip)) {
    if (entry.type !== 'file') continue;
    const components = cleanPath(entry.name).replace(/^\/+/, '').split('/');
    const base = components.pop() as string;
    if (!base.startsWith('.wh.')) continue;
    let directory = tree;
    let safe = true;
    for (const component of components) {
      directory = join(directory, component);
      try {
        if (!lstatSync(directory).isDirectory()) {
          safe = false;
          break;
        }
      } catch {
        mkdirSync(directory, { mode: 0o755 });
      }
    }
    if (safe) writeFileSync(join(directory, base), '', { mode: 0o644, flag: 'w' });
  }
  removeSpecialFiles(tree);
  const checksum = execFileSync(
    'ostree',
    ['commit', `--repo=${repository.path}`, '--orphan', '--subject=', '--consume', `--tree=dir=${tree}`],
    { encoding: 'utf8' },
  ).trim();
  return { commit: await repository.readCommit(checksum, 'reference'), applied, checksum };
}

async function committedFromStream(tar: Buffer, writer: Writer) {
  const target = streamRepositories.get(writer)!;
  const layer = LayerStreamCommit.start(target, { rootless: !isRoot, writer });
  try {
    const streamed = await layer.consume(chunksOf(tar));
    const trees = await layer.finish();
    const checksum = await target.commitTree(trees.layer!, new Map());
    return { commit: await target.readCommit(checksum, 'streamed'), streamed, checksum };
  } catch (error) {
    await layer.abort();
    throw error;
  }
}

/**
 * Streams `tar` with every writer, each into a repository of its own (`ostree fsck`-clean afterwards),
 * and checks the trees against the layer applied to a directory and committed from there.
 */
async function expectSameTree(tar: Buffer): Promise<string> {
  const reference = await committedFromDirectory(tar);
  for (const writer of writers) {
    const stream = await committedFromStream(tar, writer);
    expect(stream.commit.rootTree, writer).toBe(reference.commit.rootTree);
    expect(stream.commit.rootMeta, writer).toBe(reference.commit.rootMeta);
    expect(stream.streamed.uncompressedDigest).toBe(reference.applied.uncompressedDigest);
    expect(stream.streamed.uncompressedSize).toBe(reference.applied.uncompressedSize);
    expect(stream.streamed.tarSplitGzip.equals(reference.applied.tarSplitGzip)).toBe(true);
    expectFsckClean(writer);
    expect(listing(stream.checksum, writer)).toBe(listing(reference.checksum));
  }
  return reference.checksum;
}

function listing(checksum: string, writer?: Writer): string {
  const path = writer ? streamRepositories.get(writer)!.path : repository.path;
  return execFileSync('ostree', ['ls', `--repo=${path}`, '-R', checksum], { encoding: 'utf8' });
}

describe('a layer streamed into ostree commit gives the tree of the layer applied to a directory', () => {
  it.skipIf(!isRoot)(
    'every entry type, owners, modes, xattrs, long and non-ASCII names (GNU tar)',
    async () => {
      const source = scratch('rich-source');
      await makeRichTree(source);
      const tar = await runTool('tar', ['--xattrs', '--xattrs-include=*', '-C', source, '-cf', '-', '.']);
      const checksum = await expectSameTree(tar);
      expect(listing(checksum)).toContain('/etc/hosts-hardlink');
      expect(listing(checksum)).not.toContain('/etc/fifo');
    },
  );

  it.skipIf(!isRoot)('whiteouts, an opaque directory, a hard link and a device (GNU tar)', async () => {
    const source = scratch('changes-source');
    await makeChangesTree(source);
    const tar = await runTool('tar', ['-C', source, '-cf', '-', '.']);
    const checksum = await expectSameTree(tar);
    expect(listing(checksum)).toContain('/etc/.wh.empty');
    expect(listing(checksum)).toContain('/etc/deep/.wh..wh..opq');
  });

  it('a layer of whiteouts only, without parent directory entries', async () => {
    const checksum = await expectSameTree(
      handMadeTar([
        { name: 'usr/share/doc/.wh.removed' },
        { name: 'var/cache/.wh..wh..opq' },
        { name: '.wh.top' },
        { name: 'etc/.wh..wh.plnk.1234' },
      ]),
    );
    const files = listing(checksum);
    for (const path of ['/usr/share/doc/.wh.removed', '/var/cache/.wh..wh..opq', '/.wh.top'])
      expect(files).toContain(path);
  });

  it('hard links (across directories, to a link, after a missing parent) and parents through a symbolic link', async () => {
    const entries: HandMadeTarEntry[] = [
      { name: 'usr/', type: 'directory', mode: 0o755 },
      { name: 'usr/lib/', type: 'directory', mode: 0o750, uid: 3, gid: 4 },
      { name: 'lib', type: 'symlink', linkName: 'usr/lib' },
      { name: 'lib/through-link.so', content: 'placed in usr/lib\n', mode: 0o640 },
      { name: 'bin/tool', content: '#!/bin/sh\necho tool\n', mode: 0o4755 },
      { name: 'sbin/tool-link', type: 'hardlink', linkName: 'bin/tool', mode: 0o4755 },
      { name: 'bin/sh-link', type: 'symlink', linkName: 'tool' },
      { name: 'other/link-to-link', type: 'hardlink', linkName: 'bin/sh-link' },
      { name: 'dev/null', type: 'char', devMajor: 1, devMinor: 3, mode: 0o666 },
      { name: 'run/fifo', type: 'fifo' },
      { name: 'etc/secret', content: 'secret\n', mode: 0o600 },
    ];
    const checksum = await expectSameTree(handMadeTar(entries));
    const files = listing(checksum);
    expect(files).toContain('/usr/lib/through-link.so');
    expect(files).toContain('/sbin/tool-link');
    expect(files).toContain('/run');
    expect(files).not.toContain('/run/fifo');
  });

  it("the layer's root entry, extended attributes out of order, PAX names and large IDs", async () => {
    const longName = `${'deep-directory-name/'.repeat(8)}file-with-a-long-name.txt`;
    const entries: HandMadeTarEntry[] = [
      { name: './', type: 'directory', mode: 0o750, uid: 0, gid: 0 },
      {
        name: 'attributes',
        content: 'x',
        pax: {
          'SCHILY.xattr.user.zeta': 'last',
          'SCHILY.xattr.user.alpha': 'first',
          'SCHILY.xattr.user.middle': 'between',
        },
      },
      { name: 'long', content: 'long', pax: { path: longName } },
      { name: 'big-ids', content: 'ids', pax: { uid: '3000000', gid: '3000001' } },
      { name: 'empty-dir/', type: 'directory', mode: 0o1777 },
    ];
    const checksum = await expectSameTree(handMadeTar(entries));
    expect(listing(checksum)).toContain(`/${longName}`);
  });
});

describe('refusals', () => {
  const hostile: Array<[string, HandMadeTarEntry[]]> = [
    ['an absolute name', [{ name: '/etc/passwd', content: 'x' }]],
    ['a name climbing out', [{ name: '../escape', content: 'x' }]],
    ['a symbolic link out', [{ name: 'up', type: 'symlink', linkName: '../../outside' }]],
    ['a hard link out', [{ name: 'hard', type: 'hardlink', linkName: '../outside' }]],
    ['a hard link to nothing', [{ name: 'hard', type: 'hardlink', linkName: 'missing' }]],
  ];
  it.each(hostile)('%s: refused with applyLayer’s error, nothing committed', async (_, entries) => {
    const tar = handMadeTar(entries);
    const expected = await committedFromDirectory(tar).then(
      () => undefined,
      (error: unknown) => error as Error & { code?: string },
    );
    expect(expected).toBeDefined();
    for (const writer of writers) {
      const target = streamRepositories.get(writer)!;
      const commitsBefore = execFileSync('find', [join(target.path, 'objects'), '-name', '*.commit'], {
        encoding: 'utf8',
      });
      const layer = LayerStreamCommit.start(target, { rootless: !isRoot, writer });
      const failure = await layer.consume(chunksOf(tar)).then(
        () => undefined,
        (error: unknown) => error as Error & { code?: string },
      );
      await layer.abort();
      expect(failure?.code).toBe(expected?.code);
      expect(failure?.message).toBe(expected?.message);
      const commitsAfter = execFileSync('find', [join(target.path, 'objects'), '-name', '*.commit'], {
        encoding: 'utf8',
      });
      expect(commitsAfter).toBe(commitsBefore);
      expect(
        readdirSync(join(target.path, 'tmp')).filter((name) => name.startsWith('gantry-object-')),
      ).toEqual([]);
    }
  });

  it.each(writers)(
    'a layer read to its end but then aborted (its blob failed verification) commits nothing (%s)',
    async (writer) => {
      const target = streamRepositories.get(writer)!;
      const commits = () =>
        execFileSync('find', [join(target.path, 'objects'), '-name', '*.commit'], { encoding: 'utf8' });
      const before = commits();
      const layer = LayerStreamCommit.start(target, {
        rootless: !isRoot,
        writer,
      });
      const streamed = await layer.consume(
        chunksOf(
          handMadeTar([
            { name: 'dir/', type: 'directory' },
            { name: 'dir/file', content: 'data\n' },
          ]),
        ),
      );
      expect(streamed.uncompressedDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
      await layer.abort();
      expect(commits()).toBe(before);
    },
  );

  it.each(writers)(
    'refuses a directory replaced by a file within the layer (OSTree tar import cannot express it) (%s)',
    async (writer) => {
      const tar = handMadeTar([
        { name: 'thing/', type: 'directory' },
        { name: 'thing', content: 'now a file' },
      ]);
      const layer = LayerStreamCommit.start(streamRepositories.get(writer)!, { rootless: !isRoot, writer });
      await expect(layer.consume(chunksOf(tar))).rejects.toMatchObject({ code: 'ERR_GANTRY_INVALID_LAYER' });
      await layer.abort();
    },
  );
});

describe('directories appended to a stream (the config, the manifest tree)', () => {
  /** What `ostree commit --tree=dir=` gives for a directory of mode `mode` holding `files` (mode 0644). */
  function committedDirectory(mode: number, files: [string, Buffer][]): { tree: string; meta: string } {
    const directory = scratch('appended-reference');
    chmodSync(directory, mode);
    for (const [name, bytes] of files) writeFileSync(join(directory, name), bytes, { mode: 0o644 });
    const checksum = execFileSync(
      'ostree',
      [
        'commit',
        `--repo=${repository.path}`,
        '--orphan',
        '--subject=',
        '--consume',
        `--tree=dir=${directory}`,
      ],
      { encoding: 'utf8' },
    ).trim();
    const commit = readFileSync(
      join(repository.path, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.commit`),
    );
    const { rootTree, rootMeta } = parseCommit(commit);
    return { tree: rootTree, meta: rootMeta };
  }

  const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
  const manifest: [string, Buffer][] = [
    ['manifest.json', Buffer.from('{"schemaVersion":2}')],
    ['signature-1', randomBytes(700)],
  ];

  it.each(
    writers.flatMap((writer) => [
      ['after a layer', writer, true] as const,
      ['in a stream of their own', writer, false] as const,
    ]),
  )(
    'have the trees of the same directories committed from disk: %s (%s)',
    async (_name, writer, withLayer) => {
      const umask = process.umask();
      const stream = LayerStreamCommit.start(streamRepositories.get(writer)!, { rootless: !isRoot, writer });
      try {
        const tar = handMadeTar([
          { name: 'etc/', type: 'directory' },
          { name: 'etc/hostname', content: 'layer\n' },
        ]);
        const streamed = withLayer ? await stream.consume(chunksOf(tar)) : undefined;
        await stream.appendDirectory('config', 0o700, [['content', config]]);
        await stream.appendDirectory('manifest', 0o755 & ~umask, manifest);
        const trees = await stream.finish();
        expect(trees.directories.get('config')).toEqual(committedDirectory(0o700, [['content', config]]));
        expect(trees.directories.get('manifest')).toEqual(committedDirectory(0o755 & ~umask, manifest));
        if (withLayer) {
          const reference = await committedFromDirectory(tar);
          expect(trees.layer).toEqual({ tree: reference.commit.rootTree, meta: reference.commit.rootMeta });
          expect(streamed!.uncompressedDigest).toBe(reference.applied.uncompressedDigest);
        } else {
          expect(trees.layer).toBeUndefined();
        }
        await streamRepositories.get(writer)!.commitTree(trees.directories.get('manifest')!, new Map());
        expectFsckClean(writer);
      } catch (error) {
        await stream.abort();
        throw error;
      }
    },
  );

  it.each(writers)(
    'a stream takes its layer first: a layer after a directory is refused (%s)',
    async (writer) => {
      const stream = LayerStreamCommit.start(streamRepositories.get(writer)!, { rootless: !isRoot, writer });
      try {
        await stream.appendDirectory('config', 0o700, [['content', config]]);
        await expect(
          stream.consume(chunksOf(handMadeTar([{ name: 'a', content: 'a' }]))),
        ).rejects.toMatchObject({
          code: 'ERR_GANTRY_INTERNAL',
        });
      } finally {
        await stream.abort();
      }
    },
  );
});

describe('encodeTarHeader', () => {
  it('writes PAX records for what a ustar header cannot hold, which GNU tar reads back', async () => {
    const directory = scratch('encode');
    const name = `${'n'.repeat(120)}`;
    const content = Buffer.from('content\n');
    const tar = Buffer.concat([
      encodeTarHeader({ path: '', type: 'directory', mode: 0o755, owner: { uid: 0, gid: 0 } }),
      encodeTarHeader({
        path: name,
        type: 'file',
        mode: 0o640,
        owner: { uid: 2_200_000, gid: 7 },
        size: content.length,
      }),
      content,
      Buffer.alloc(512 - content.length),
      encodeTarHeader({
        path: 'link',
        type: 'symlink',
        mode: 0o777,
        owner: { uid: 0, gid: 0 },
        link: 'l'.repeat(150),
      }),
      Buffer.alloc(1024),
    ]);
    writeFileSync(join(directory, 'out.tar'), tar);
    const listed = (await runTool('tar', ['--numeric-owner', '-tvf', join(directory, 'out.tar')])).toString();
    expect(listed).toContain(`2200000/7`);
    expect(listed).toContain(`./${name}`);
    expect(listed).toContain(`-> ${'l'.repeat(150)}`);
  });
});
