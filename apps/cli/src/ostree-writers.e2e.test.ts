/**
 * ostree: with several writers and with writers killed mid-copy, through real `gantry` processes,
 * cross-checked with Debian's `ostree` command:
 * - two processes copying into one new repository at once both succeed, `ostree fsck` is clean and both
 *   images read back with their DiffIDs; a copy and a delete sharing layers leave a consistent repository;
 * - a copy killed with `kill -9` leaves its owned temporary entries in the repository's `tmp/`; the next
 *   copy removes them (and nothing of libostree's), and succeeds.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { buildFixtureImage, type FixtureImage, writeFixtureToOciLayout } from '@gantry/core/testing';
import { parseOwnedTemporaryName } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GantryProcess, startGantryProcess } from './test-support/gantry-process.js';
import { requireTool, runGantry } from './test-support/run.js';

let root: string;
let image: FixtureImage;
let layout: string;
let caseNumber = 0;

const ostree = (...args: string[]): string => execFileSync('ostree', args, { encoding: 'utf8' });

beforeAll(async () => {
  requireTool('ostree');
  root = await mkdtemp(join(tmpdir(), 'gantry-ostree-writers-'));
  // A small layer and a 24 MiB uncompressed one of random bytes: long enough to catch a copy mid-way.
  image = await buildFixtureImage(
    {
      format: 'oci',
      layers: [
        {
          compression: 'gzip',
          entries: [
            { type: 'directory', path: 'etc' },
            { type: 'file', path: 'etc/hostname', content: 'writers\n' },
          ],
        },
        {
          compression: 'none',
          entries: [{ type: 'file', path: 'payload', randomSize: 24 * 1024 * 1024, seed: 'ostree-writers' }],
        },
      ],
    },
    { directory: join(root, 'fixture') },
  );
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
}, 120_000);

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

async function newCase(): Promise<string> {
  const directory = join(root, `case-${++caseNumber}`);
  await mkdir(directory);
  return directory;
}

/** The DiffIDs of the image copied out of `repo` into a new OCI layout. */
async function diffIdsReadBack(repo: string, name: string, directory: string): Promise<string[]> {
  const out = join(directory, `out-${name.replace(/\W/g, '-')}`);
  const copied = await runGantry([
    '--insecure-policy',
    'copy',
    '-q',
    `ostree:${name}@${repo}`,
    `oci:${out}:x`,
  ]);
  expect(copied.code, copied.stderr).toBe(0);
  const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const manifest = JSON.parse(
    await readFile(join(out, 'blobs', 'sha256', index.manifests[0]!.digest.slice(7)), 'utf8'),
  ) as { layers: { digest: string }[] };
  return Promise.all(
    manifest.layers.map(async (layer) => {
      const blob = await readFile(join(out, 'blobs', 'sha256', layer.digest.slice(7)));
      const tar = blob[0] === 0x1f && blob[1] === 0x8b ? gunzipSync(blob) : blob;
      return `sha256:${createHash('sha256').update(tar).digest('hex')}`;
    }),
  );
}

async function finished(process: GantryProcess): Promise<void> {
  const result = await process.exited;
  expect(result.code, result.stderr).toBe(0);
}

/** Owned temporary entries directly in `directory` (a repository's `tmp/`). */
async function ownedEntries(directory: string): Promise<string[]> {
  const names = await readdir(directory).catch(() => [] as string[]);
  return names.filter((name) => parseOwnedTemporaryName(name) !== undefined).sort();
}

/**
 * Whether process `pid` has a child `ostree commit` reading a tar from a pipe (`--tree=tar=/dev/fd/3`):
 * a layer streaming into its commit.
 */
async function streamsLayer(pid: number): Promise<boolean> {
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const status = await readFile(join('/proc', entry, 'stat'), 'utf8').catch(() => '');
    // Fields after the command name (in parentheses, which may hold spaces): state, then the parent.
    const parent = Number(status.slice(status.lastIndexOf(')') + 2).split(' ')[1]);
    if (parent !== pid) continue;
    const command = await readFile(join('/proc', entry, 'cmdline'), 'utf8').catch(() => '');
    const args = command.split('\0');
    if (args.includes('commit') && args.includes('--tree=tar=/dev/fd/3')) return true;
  }
  return false;
}

describe('ostree: concurrent writers', () => {
  it('two processes copying into one new repository both succeed; fsck is clean; both images read back', async () => {
    const directory = await newCase();
    const repo = join(directory, 'repo');
    const writers = ['one', 'two'].map((tag) =>
      startGantryProcess(
        ['--insecure-policy', 'copy', '-q', `oci:${layout}:latest`, `ostree:img:${tag}@${repo}`],
        directory,
      ),
    );
    for (const writer of writers) await finished(writer);
    ostree(`--repo=${repo}`, 'fsck');
    const refs = ostree(`--repo=${repo}`, 'refs').split('\n').filter(Boolean);
    expect(refs).toEqual(expect.arrayContaining(['ociimage/img_3Aone', 'ociimage/img_3Atwo']));
    for (const tag of ['one', 'two']) {
      expect(await diffIdsReadBack(repo, `img:${tag}`, directory)).toEqual(image.images[0]!.diffIds);
    }
    expect(await ownedEntries(join(repo, 'tmp'))).toEqual([]);
  }, 600_000);

  it('a copy and a delete of another image with the same layers leave a consistent repository', async () => {
    const directory = await newCase();
    const repo = join(directory, 'repo');
    const first = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      `oci:${layout}:latest`,
      `ostree:img:old@${repo}`,
    ]);
    expect(first.code, first.stderr).toBe(0);
    const copy = startGantryProcess(
      ['--insecure-policy', 'copy', '-q', `oci:${layout}:latest`, `ostree:img:new@${repo}`],
      directory,
    );
    const deletion = startGantryProcess(['delete', `ostree:img:old@${repo}`], directory);
    await finished(deletion);
    await finished(copy);
    ostree(`--repo=${repo}`, 'fsck');
    const refs = ostree(`--repo=${repo}`, 'refs').split('\n').filter(Boolean);
    expect(refs).toContain('ociimage/img_3Anew');
    expect(refs).not.toContain('ociimage/img_3Aold');
    expect(await diffIdsReadBack(repo, 'img:new', directory)).toEqual(image.images[0]!.diffIds);
  }, 600_000);
});

describe('ostree: a copy killed with kill -9', () => {
  it("leaves owned temporary entries in tmp/, which the next copy removes (and nothing of libostree's)", async () => {
    const directory = await newCase();
    const repo = join(directory, 'repo');
    const temporary = join(repo, 'tmp');
    const killed = startGantryProcess(
      ['--insecure-policy', 'copy', '-q', `oci:${layout}:latest`, `ostree:img:v1@${repo}`],
      directory,
    );
    let exited = false;
    void killed.exited.then(() => {
      exited = true;
    });
    // Caught once its work directory is in tmp/ and a layer is streaming into its `ostree commit`:
    // certainly mid-copy.
    const deadline = Date.now() + 240_000;
    let caught: string[] = [];
    while (caught.length === 0) {
      if (exited)
        throw new Error(`gantry exited before it was caught mid-copy: ${(await killed.exited).stderr}`);
      if (Date.now() > deadline) throw new Error('gantry was not caught mid-copy within 240 s');
      const owned = await ownedEntries(temporary);
      if (owned.length > 0 && (await streamsLayer(killed.child.pid!))) {
        killed.child.kill('SIGKILL');
        caught = owned;
      } else await sleep(5);
    }
    expect((await killed.exited).signal).toBe('SIGKILL');
    expect(await ownedEntries(temporary)).toEqual(expect.arrayContaining(caught));
    // An entry of someone else's in tmp/ (not a name libostree cleans up itself), which Gantry leaves alone.
    const foreign = join(temporary, 'not-gantry');
    await mkdir(foreign);
    await writeFile(join(foreign, 'kept'), 'libostree owns this\n');

    const next = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      `oci:${layout}:latest`,
      `ostree:img:v1@${repo}`,
    ]);
    expect(next.code, next.stderr).toBe(0);
    expect(await ownedEntries(temporary)).toEqual([]);
    expect(await readFile(join(foreign, 'kept'), 'utf8')).toBe('libostree owns this\n');
    await rm(foreign, { recursive: true });
    ostree(`--repo=${repo}`, 'fsck');
    expect(await diffIdsReadBack(repo, 'img:v1', directory)).toEqual(image.images[0]!.diffIds);
  }, 600_000);
});
