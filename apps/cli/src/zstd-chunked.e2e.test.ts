/**
 * `gantry copy --dest-compress-format zstd:chunked`: the layers Gantry writes are read by the real skopeo,
 * which decompresses them to the image's DiffIDs; the manifest carries containers/storage's annotations.
 * (Pulls by podman and copies through a registry: packages/transport-docker/src/compression.test.ts.)
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGantry, runSkopeo } from './test-support/run.js';

let root: string;
let layout: string;
let image: FixtureImage;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-'));
  image = await buildFixtureImage(fixturePresets.everyEntryType!, { directory: join(root, 'blobs') });
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
}, 60_000);

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('copy --dest-compress-format zstd:chunked', () => {
  it('writes zstd:chunked layers skopeo decompresses to the same DiffIDs', async () => {
    const chunked = join(root, 'chunked');
    const result = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      '--dest-compress-format',
      'zstd:chunked',
      '--dest-force-compress-format',
      `oci:${layout}:latest`,
      `dir:${chunked}`,
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const manifest = JSON.parse(await readFile(join(chunked, 'manifest.json'), 'utf8')) as {
      layers: Array<{ mediaType: string; annotations?: Record<string, string> }>;
    };
    expect(manifest.layers.map((layer) => layer.mediaType)).toEqual([
      'application/vnd.oci.image.layer.v1.tar+zstd',
      'application/vnd.oci.image.layer.v1.tar+zstd',
    ]);
    for (const layer of manifest.layers) {
      expect(layer.annotations?.['io.github.containers.zstd-chunked.manifest-checksum']).toMatch(
        /^sha256:[0-9a-f]{64}$/,
      );
      expect(layer.annotations?.['io.github.containers.zstd-chunked.manifest-position']).toMatch(
        /^\d+:\d+:\d+:1$/,
      );
      expect(layer.annotations?.['io.github.containers.zstd-chunked.tarsplit-position']).toMatch(
        /^\d+:\d+:\d+$/,
      );
    }

    const decompressed = join(root, 'decompressed');
    const skopeo = runSkopeo([
      'copy',
      '--insecure-policy',
      '--dest-decompress',
      `dir:${chunked}`,
      `dir:${decompressed}`,
    ]);
    expect(skopeo.stderr).not.toMatch(/level=(error|fatal)/);
    expect(skopeo.code).toBe(0);
    const plain = JSON.parse(await readFile(join(decompressed, 'manifest.json'), 'utf8')) as {
      layers: Array<{ digest: string }>;
    };
    expect(plain.layers.map((layer) => layer.digest)).toEqual(image.images[0]!.diffIds);
  }, 120_000);

  it('refuses an unknown compression format, naming the three it writes', async () => {
    const result = await runGantry([
      '--insecure-policy',
      'copy',
      '--dest-compress-format',
      'lz4',
      `oci:${layout}:latest`,
      `dir:${join(root, 'never')}`,
    ]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('gantry supports gzip, zstd and zstd:chunked');
  });
});
