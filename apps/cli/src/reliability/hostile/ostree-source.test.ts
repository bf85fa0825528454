/**
 * Hostile OSTree repositories read by `gantry copy ostree:… oci:…` and `gantry inspect ostree:…`: a
 * layer's `tarsplit.output` naming `../` or absolute paths, or a path through a symbolic link that leads
 * out of the checkout; a tar-split that disagrees with the checked-out files (content, size); a
 * tar-split that is not gzip; corrupt commit objects; missing branches. The repositories are made with
 * Gantry (a good image) and then altered with Debian's `ostree commit` (a layer branch re-committed with
 * another tree or metadata) or by overwriting an object file. Each: a clear error naming the problem,
 * exit 1 (2 for a missing image branch), no stack trace, no image written to the destination, nothing
 * read from or written outside the checkout.
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { recordOutcome } from '@gantry/core/testing';
import { disassembleTar } from '@gantry/layer-tree';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { requireTool, runGantry } from '../../test-support/run.js';
import { expectCleanFailure } from './expect-failure.js';
import { type RawTarEntry, rawTar, sha256, writeOciLayout } from './hostile-images.js';

const testFile = 'apps/cli/src/reliability/hostile/ostree-source.test.ts';

const workDirectory = mkdtempSync(join(tmpdir(), 'gantry-hostile-ostree-'));
/** A file outside any repository or destination, which hostile tar-splits try to read. */
const outside = join(workDirectory, 'outside');
const secretFile = join(outside, 'secret');
const secret = 'not for containers\n';

const goodEntries: RawTarEntry[] = [
  { name: 'etc/', type: '5' },
  { name: 'etc/hostname', content: 'good-host\n' },
];
const goodLayer = rawTar(goodEntries);
let layout: string;

const ostree = (...args: string[]): string => execFileSync('ostree', args, { encoding: 'utf8' });

beforeAll(() => {
  requireTool('ostree');
  mkdirSync(outside);
  writeFileSync(secretFile, secret);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [sha256(goodLayer)] },
    }),
  );
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: sha256(config),
      size: config.length,
    },
    layers: [
      {
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest: sha256(goodLayer),
        size: goodLayer.length,
      },
    ],
  };
  layout = join(workDirectory, 'layout');
  writeOciLayout(
    layout,
    {
      manifest: Buffer.from(JSON.stringify(manifest)),
      mediaType: manifest.mediaType,
      blobs: [
        { digest: sha256(config), bytes: config },
        { digest: sha256(goodLayer), bytes: goodLayer },
      ],
    },
    'latest',
  );
});
afterAll(() => {
  rmSync(workDirectory, { recursive: true, force: true });
});

let counter = 0;

/** A new repository holding the good image as `good:v1`. */
async function goodRepository(): Promise<string> {
  const repo = join(workDirectory, `repo-${++counter}`);
  const copied = await runGantry([
    '--insecure-policy',
    'copy',
    '-q',
    `oci:${layout}:latest`,
    `ostree:good:v1@${repo}`,
  ]);
  expect(copied.code, copied.stderr).toBe(0);
  return repo;
}

const layerBranch = `ociimage/${sha256(goodLayer).slice(7)}`;

/** The layer's tar-split (gzip) and metadata for a hand-made tar, as Gantry records them. */
async function tarSplitOf(tar: Buffer): Promise<{ tarSplit: Buffer; digest: string; size: number }> {
  const result = await disassembleTar(
    (async function* () {
      yield tar;
    })(),
  );
  return { tarSplit: result.tarSplitGzip, digest: result.uncompressedDigest, size: result.uncompressedSize };
}

/**
 * Re-commits the layer branch of `repo` with the files of `tree` and a tar-split of `tar` (its digest and
 * size recorded as the layer's DiffID and size, so only the tar-split's names and the files can betray it).
 */
async function replaceLayer(
  repo: string,
  populate: (tree: string) => void,
  tar: Buffer,
  tarSplit?: Buffer,
): Promise<void> {
  const tree = mkdtempSync(join(workDirectory, 'tree-'));
  populate(tree);
  const split = await tarSplitOf(tar);
  ostree(
    'commit',
    `--repo=${repo}`,
    `--branch=${layerBranch}`,
    '--parent=none',
    '--subject=',
    `--tree=dir=${tree}`,
    `--add-metadata-string=docker.size=${goodLayer.length}`,
    `--add-metadata-string=docker.uncompressed_size=${split.size}`,
    `--add-metadata-string=docker.uncompressed_digest=${split.digest}`,
    `--add-metadata-string=tarsplit.output=${(tarSplit ?? split.tarSplit).toString('base64')}`,
  );
  rmSync(tree, { recursive: true, force: true });
}

function goodTree(tree: string): void {
  mkdirSync(join(tree, 'etc'));
  writeFileSync(join(tree, 'etc', 'hostname'), 'good-host\n');
}

/** The path of a commit object. */
function commitObject(repo: string, branch: string): string {
  const checksum = ostree('rev-parse', `--repo=${repo}`, branch).trim();
  return join(repo, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.commit`);
}

interface HostileRepository {
  name: string;
  /** Alters the good repository. */
  alter: (repo: string) => Promise<void>;
  command: 'copy' | 'inspect';
  expected: RegExp;
  code?: number;
  outcome: string;
}

const cases: HostileRepository[] = [
  {
    name: 'tar-split naming a "../" path',
    alter: (repo) =>
      replaceLayer(
        repo,
        goodTree,
        rawTar([...goodEntries, { name: '../../../outside/secret', content: secret }]),
      ),
    command: 'copy',
    expected: /"\.\.\/\.\.\/\.\.\/outside\/secret" is outside the layer/,
    outcome: 'refused: the tar-split names a file outside the layer; nothing read outside the checkout',
  },
  {
    name: 'tar-split naming an absolute path',
    alter: (repo) =>
      replaceLayer(repo, goodTree, rawTar([...goodEntries, { name: secretFile, content: secret }])),
    command: 'copy',
    expected: /layer file "[^"]*outside\/secret" is missing from/,
    outcome: 'refused: the absolute name is looked up inside the checkout only, where it is missing',
  },
  {
    name: 'tar-split naming a path through a symbolic link out of the checkout',
    alter: (repo) =>
      replaceLayer(
        repo,
        (tree) => {
          goodTree(tree);
          symlinkSync(outside, join(tree, 'escape'));
        },
        rawTar([
          ...goodEntries,
          { name: 'escape', type: '2', linkName: outside },
          { name: 'escape/secret', content: secret },
        ]),
      ),
    command: 'copy',
    expected: /layer file "escape\/secret" is missing from/,
    outcome: 'refused: the link is followed as if the checkout were /, never out of it',
  },
  {
    name: 'tar-split that disagrees with the checked-out content',
    alter: (repo) =>
      replaceLayer(
        repo,
        (tree) => {
          mkdirSync(join(tree, 'etc'));
          writeFileSync(join(tree, 'etc', 'hostname'), 'evil-host\n');
        },
        goodLayer,
      ),
    command: 'copy',
    expected: /layer file "etc\/hostname" does not match the CRC-64 its tar-split records/,
    outcome: 'refused: the file does not match the CRC-64 its tar-split records',
  },
  {
    name: 'tar-split that disagrees with the checked-out size',
    alter: (repo) =>
      replaceLayer(
        repo,
        (tree) => {
          mkdirSync(join(tree, 'etc'));
          writeFileSync(join(tree, 'etc', 'hostname'), 'a much longer host name\n');
        },
        goodLayer,
      ),
    command: 'copy',
    expected: /layer file "etc\/hostname" has more bytes than the 10 its tar-split records/,
    outcome: 'refused: the file has more bytes than its tar-split records',
  },
  {
    name: 'tar-split that is not gzip',
    alter: (repo) => replaceLayer(repo, goodTree, goodLayer, Buffer.from('not a tar-split at all')),
    command: 'copy',
    expected: /branch ociimage\/[0-9a-f]{64}: tarsplit.output is not a gzip-compressed tar-split/,
    outcome: 'refused: tarsplit.output is not a gzip-compressed tar-split',
  },
  {
    name: 'corrupt layer commit object',
    alter: async (repo) => {
      writeFileSync(commitObject(repo, layerBranch), 'garbage, not a commit');
    },
    command: 'copy',
    expected: /: ociimage\/[0-9a-f]{64}: commit [0-9a-f]{64} is corrupt/,
    outcome: 'refused: the commit object does not hash to its name',
  },
  {
    name: 'corrupt image commit object',
    alter: async (repo) => {
      writeFileSync(commitObject(repo, 'ociimage/good_3Av1'), 'garbage, not a commit');
    },
    command: 'inspect',
    expected: /ociimage\/good_3Av1: commit [0-9a-f]{64} is corrupt/,
    outcome: 'refused: the commit object does not hash to its name',
  },
  {
    name: 'missing layer branch',
    alter: async (repo) => {
      ostree('refs', `--repo=${repo}`, '--delete', layerBranch);
    },
    command: 'copy',
    expected: /layer branch ociimage\/[0-9a-f]{64} does not exist/,
    outcome: 'refused: the layer branch does not exist',
  },
  {
    name: 'missing image branch',
    alter: async (repo) => {
      ostree('refs', `--repo=${repo}`, '--delete', 'ociimage/good_3Av1');
    },
    command: 'inspect',
    expected: /image not found: no branch ociimage\/good_3Av1/,
    code: 2,
    outcome: 'image not found (exit 2)',
  },
];

/** Every path under `directory`, for "nothing changed outside". */
function listing(directory: string): string[] {
  return readdirSync(directory, { recursive: true, encoding: 'utf8' }).sort();
}

describe('hostile ostree: sources', () => {
  test.each(cases)(
    '$name',
    async (hostile) => {
      const repo = await goodRepository();
      await hostile.alter(repo);
      const before = listing(workDirectory).filter((path) => !path.startsWith(`repo-${counter}`));
      const destination = join(workDirectory, `out-${counter}`);
      const result =
        hostile.command === 'copy'
          ? await runGantry([
              '--insecure-policy',
              'copy',
              '-q',
              `ostree:good:v1@${repo}`,
              `oci:${destination}:x`,
            ])
          : await runGantry(['inspect', `ostree:good:v1@${repo}`]);
      expectCleanFailure(result, hostile.expected, hostile.code ?? 1);
      // No image in the destination (at most an empty layout), the outside file untouched, nothing new
      // next to the repository.
      if (existsSync(join(destination, 'index.json'))) {
        const index = JSON.parse(readFileSync(join(destination, 'index.json'), 'utf8')) as {
          manifests: unknown[];
        };
        expect(index.manifests).toEqual([]);
      }
      expect(readFileSync(secretFile, 'utf8')).toBe(secret);
      expect(
        listing(workDirectory).filter(
          (path) => !path.startsWith(`repo-${counter}`) && !path.startsWith(`out-${counter}`),
        ),
      ).toEqual(before);
      recordOutcome({
        suite: 'hostile-input',
        case: `ostree repository: ${hostile.name}`,
        transport: 'ostree',
        outcome: hostile.outcome,
        ok: true,
        testFile,
      });
    },
    120_000,
  );
});
