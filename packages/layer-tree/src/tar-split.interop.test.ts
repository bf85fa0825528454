import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { buildFixtureImage, fixturePresets, runSkopeo, writeFixtureToOciLayout } from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { disassembleTar } from './disassemble.js';
import { pathFileGetter } from './file-getter.js';
import { assembleTarChunks } from './tar-split.js';
import { makeRichTree, runPodman, runTool, tarSplitLines } from './testing.js';

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'gantry-tar-split-interop-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

interface StoredLayer {
  id: string;
  'diff-digest': string;
  'diff-size': number;
  parent?: string;
}

async function storedLayers(graphRoot: string, driver: string): Promise<StoredLayer[]> {
  return JSON.parse(await readFile(join(graphRoot, `${driver}-layers/layers.json`), 'utf8')) as StoredLayer[];
}

async function sha256OfChunks(chunks: AsyncIterable<Buffer>): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of chunks) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

describe('tar-split: the JSON lines containers/storage (podman 4.3) writes, for the same layer tar', () => {
  const tarFormats: Array<{ name: string; args: string[] }> = [
    {
      name: 'GNU tar, gnu format (long names as L/K entries)',
      args: ['--format=gnu', '--blocking-factor=1'],
    },
    {
      name: 'GNU tar, pax format with xattrs (PAX records, SCHILY.xattr)',
      args: ['--format=pax', '--blocking-factor=1', '--xattrs', '--xattrs-include=*'],
    },
    {
      name: 'GNU tar, ustar format with a 10 KiB record (trailing padding)',
      args: ['--format=ustar', '--blocking-factor=20'],
    },
    {
      name: 'GNU tar, gnu format: names that are not UTF-8, control characters, base-256 owner IDs',
      args: ['--format=gnu', '--blocking-factor=1'],
    },
  ];

  for (const format of tarFormats) {
    it(format.name, async () => {
      const directory = join(work, `format-${tarFormats.indexOf(format)}`);
      const tree = join(directory, 'tree');
      await mkdir(tree, { recursive: true });
      if (format.name.includes('base-256')) {
        await runTool('python3', [
          '-c',
          [
            'import os, sys',
            'root = sys.argv[1].encode()',
            "os.makedirs(root + b'/d')",
            "open(root + b'/d/\\xff\\xfe-latin1-\\xe9', 'w').write('bytes')",
            "open(root + b'/d/ctl-\\x01-\\x7f-\\x1b-tab\\t', 'w').write('control')",
            "open(root + b'/d/big-owner', 'w').write('owner')",
            "os.chown(root + b'/d/big-owner', 3000000, 4000000)",
          ].join('\n'),
          tree,
        ]);
      } else if (format.args.includes('--format=ustar')) {
        // ustar cannot hold names over 255 bytes: a smaller tree, still with every entry type.
        await runTool('sh', [
          '-c',
          `mkdir -p ${tree}/a/b && echo hi > ${tree}/a/b/f && ln -s f ${tree}/a/b/l && ln ${tree}/a/b/f ${tree}/a/h && mkfifo ${tree}/a/p`,
        ]);
      } else {
        await makeRichTree(tree);
      }
      const tarPath = join(directory, 'layer.tar');
      await runTool('tar', [...format.args, '--numeric-owner', '-C', tree, '-cf', tarPath, '.']);
      const store = { graphRoot: join(directory, 'root'), runRoot: join(directory, 'run'), driver: 'vfs' };
      await runPodman(store, ['import', tarPath, 'gantry-test/layer:latest']);
      const [layer] = await storedLayers(store.graphRoot, 'vfs');
      if (layer === undefined) throw new Error('podman stored no layer');
      const theirs = await readFile(join(store.graphRoot, 'vfs-layers', `${layer.id}.tar-split.gz`));

      const ours = await disassembleTar(createReadStream(tarPath));
      expect(ours.uncompressedDigest).toBe(layer['diff-digest']);
      expect(ours.uncompressedSize).toBe(layer['diff-size']);
      expect(await tarSplitLines(ours.tarSplitGzip)).toEqual(await tarSplitLines(theirs));

      // containers/storage's own tar-split and layer directory regenerate the tar.
      const regenerated = await sha256OfChunks(
        assembleTarChunks(theirs, pathFileGetter(join(store.graphRoot, 'vfs/dir', layer.id))),
      );
      expect(regenerated.digest).toBe(layer['diff-digest']);
    });
  }

  it('every layer of the fixture images skopeo copies into a vfs store', async () => {
    const directory = join(work, 'fixtures');
    const store = { graphRoot: join(directory, 'root'), runRoot: join(directory, 'run'), driver: 'vfs' };
    const layerTars = new Map<string, string>();
    for (const preset of [
      'everyEntryType',
      'longAndNonAsciiNames',
      'whiteoutLayers',
      'uncompressedLayers',
    ] as const) {
      const imageDirectory = join(directory, preset);
      const image = await buildFixtureImage(fixturePresets[preset], { directory: imageDirectory });
      const layout = join(imageDirectory, 'layout');
      await writeFixtureToOciLayout(image, layout, 'latest');
      await runSkopeo([
        'copy',
        '--quiet',
        `oci:${layout}:latest`,
        `containers-storage:[vfs@${store.graphRoot}+${store.runRoot}]gantry-test/${preset.toLowerCase()}:latest`,
      ]);
      for (const [digest, blob] of image.blobs) {
        if (!blob.mediaType.includes('layer')) continue;
        const tarPath = join(imageDirectory, `${digest.slice(7)}.tar`);
        const { createWriteStream } = await import('node:fs');
        if (blob.mediaType.endsWith('gzip'))
          await pipeline(blob.open(), createGunzip(), createWriteStream(tarPath));
        else await pipeline(blob.open(), createWriteStream(tarPath));
        const { digest: diffId } = await sha256OfChunks(createReadStream(tarPath));
        layerTars.set(diffId, tarPath);
      }
    }
    const layers = await storedLayers(store.graphRoot, 'vfs');
    expect(layers.length).toBeGreaterThan(4);
    for (const layer of layers) {
      const tarPath = layerTars.get(layer['diff-digest']);
      if (tarPath === undefined) throw new Error(`no fixture tar for stored layer ${layer['diff-digest']}`);
      const theirs = await readFile(join(store.graphRoot, 'vfs-layers', `${layer.id}.tar-split.gz`));
      const ours = await disassembleTar(createReadStream(tarPath));
      expect(ours.uncompressedDigest).toBe(layer['diff-digest']);
      expect(await tarSplitLines(ours.tarSplitGzip)).toEqual(await tarSplitLines(theirs));
      const regenerated = await sha256OfChunks(
        assembleTarChunks(theirs, pathFileGetter(join(store.graphRoot, 'vfs/dir', layer.id))),
      );
      expect(regenerated.digest).toBe(layer['diff-digest']);
    }
    expect((await readdir(join(store.graphRoot, 'vfs/dir'))).length).toBe(layers.length);
  });
});
