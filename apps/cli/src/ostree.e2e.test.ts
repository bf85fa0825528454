/**
 * ostree: through the `gantry` command, on repositories of the test's own, cross-checked with Debian's
 * `ostree` command: copy in (refs, fsck, checkout of a layer branch, the stored manifest), inspect, copy
 * back out (same config and DiffIDs), two images sharing a layer, delete, and the exit code of a missing image.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireTool, runGantry } from './test-support/run.js';

let root: string;
let image: FixtureImage;
let layout: string;

const ostree = (...args: string[]): string => execFileSync('ostree', args, { encoding: 'utf8' });

/** Every path (files, directories, symbolic links) under `directory`, relative, sorted. */
function listTree(directory: string): string[] {
  return execFileSync('find', ['.', '-mindepth', '1'], { cwd: directory, encoding: 'utf8' })
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.slice(2))
    .sort();
}

beforeAll(async () => {
  requireTool('ostree');
  root = await mkdtemp(join(tmpdir(), 'gantry-cli-ostree-'));
  image = await buildFixtureImage(fixturePresets.everyEntryType, { directory: join(root, 'blobs') });
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('ostree: through the CLI', () => {
  it('copies in: branches, fsck, layer checkout, stored manifest; inspect; copies back out; deletes', async () => {
    const repo = join(root, 'repo');
    const copied = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      `oci:${layout}:latest`,
      `ostree:img:tag@${repo}`,
    ]);
    expect(copied.code, copied.stderr).toBe(0);

    const refs = ostree(`--repo=${repo}`, 'refs').split('\n').filter(Boolean).sort();
    const manifestText = ostree(`--repo=${repo}`, 'cat', 'ociimage/img_3Atag', '/manifest.json');
    const manifest = JSON.parse(manifestText) as {
      mediaType: string;
      config: { digest: string };
      layers: { digest: string }[];
    };
    expect(manifest.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    expect(manifest.config.digest).toBe(image.images[0]!.configDigest);
    expect(refs).toEqual(
      [
        'ociimage/img_3Atag',
        `ociimage/${manifest.config.digest.slice(7)}`,
        ...manifest.layers.map((layer) => `ociimage/${layer.digest.slice(7)}`),
      ].sort(),
    );
    ostree(`--repo=${repo}`, 'fsck'); // throws on a non-zero exit
    expect(
      ostree(`--repo=${repo}`, 'show', '--print-metadata-key=docker.manifest', 'ociimage/img_3Atag').trim(),
    ).toBe(`'${manifestText}'`);
    const manifestDigest = `sha256:${createHash('sha256').update(manifestText).digest('hex')}`;
    expect(
      ostree(`--repo=${repo}`, 'show', '--print-metadata-key=docker.digest', 'ociimage/img_3Atag').trim(),
    ).toBe(`'${manifestDigest}'`);

    // Each layer branch checks out to exactly the layer's files.
    for (const [index, layer] of manifest.layers.entries()) {
      const checkout = join(root, `checkout-${index}`);
      ostree(`--repo=${repo}`, 'checkout', '--user-mode', `ociimage/${layer.digest.slice(7)}`, checkout);
      // The layer as GNU tar extracts it, without devices and fifos (OSTree stores none, as containers/image).
      const extracted = join(root, `extracted-${index}`);
      execFileSync('mkdir', ['-p', extracted]);
      execFileSync('tar', [
        '-xf',
        image.blobs.get(image.images[0]!.layerDigests[index]!)!.path,
        '-C',
        extracted,
      ]);
      execFileSync('find', [
        extracted,
        '(',
        '-type',
        'c',
        '-o',
        '-type',
        'b',
        '-o',
        '-type',
        'p',
        ')',
        '-delete',
      ]);
      const expected = listTree(extracted);
      expect(listTree(checkout)).toEqual(expected);
    }

    const inspected = await runGantry(['inspect', `ostree:img:tag@${repo}`]);
    expect(inspected.code, inspected.stderr).toBe(0);
    const inspect = JSON.parse(inspected.stdout.toString()) as { Digest: string; Architecture: string };
    expect(inspect.Digest).toBe(manifestDigest);
    const config = JSON.parse(
      await readFile(image.blobs.get(image.images[0]!.configDigest)!.path, 'utf8'),
    ) as {
      architecture: string;
    };
    expect(inspect.Architecture).toBe(config.architecture);

    const out = join(root, 'out');
    const copiedOut = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      `ostree:img:tag@${repo}`,
      `oci:${out}:x`,
    ]);
    expect(copiedOut.code, copiedOut.stderr).toBe(0);
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    const outManifest = JSON.parse(
      await readFile(join(out, 'blobs', 'sha256', index.manifests[0]!.digest.slice(7)), 'utf8'),
    ) as { config: { digest: string }; layers: { digest: string }[] };
    expect(outManifest.config.digest).toBe(image.images[0]!.configDigest);
    // The layers came out regenerated from the checkouts and tar-splits: uncompressed, they hash to the DiffIDs.
    const outDiffIds = await Promise.all(
      outManifest.layers.map(async (layer) => {
        const blob = await readFile(join(out, 'blobs', 'sha256', layer.digest.slice(7)));
        const tar = blob[0] === 0x1f && blob[1] === 0x8b ? gunzipSync(blob) : blob;
        return `sha256:${createHash('sha256').update(tar).digest('hex')}`;
      }),
    );
    expect(outDiffIds).toEqual(image.images[0]!.diffIds);

    const deleted = await runGantry(['delete', `ostree:img:tag@${repo}`]);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(ostree(`--repo=${repo}`, 'refs').trim()).toBe('');
    ostree(`--repo=${repo}`, 'fsck');

    const missing = await runGantry(['inspect', `ostree:img:tag@${repo}`]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('ociimage/img_3Atag');
  });

  it('stores a layer two images share once', async () => {
    const repo = join(root, 'shared');
    const layerCommits: string[] = [];
    for (const tag of ['one', 'two']) {
      const copied = await runGantry([
        '--insecure-policy',
        'copy',
        '-q',
        `oci:${layout}:latest`,
        `ostree:img:${tag}@${repo}`,
      ]);
      expect(copied.code, copied.stderr).toBe(0);
      const first = image.images[0]!.layerDigests[0]!.slice(7);
      layerCommits.push(ostree(`--repo=${repo}`, 'rev-parse', `ociimage/${first}`).trim());
    }
    // The second copy reused the committed layer: its branch still points at the first commit.
    expect(layerCommits[1]).toBe(layerCommits[0]);
    const refs = ostree(`--repo=${repo}`, 'refs').split('\n').filter(Boolean);
    const layerCount = image.images[0]!.layerDigests.length;
    expect(refs.filter((ref) => /^ociimage\/[0-9a-f]{64}$/.test(ref))).toHaveLength(layerCount + 1);
    expect(refs.filter((ref) => ref.startsWith('ociimage/img'))).toEqual(
      expect.arrayContaining(['ociimage/img_3Aone', 'ociimage/img_3Atwo']),
    );
    // Deleting one image keeps every branch the other uses.
    expect((await runGantry(['delete', `ostree:img:one@${repo}`])).code).toBe(0);
    const after = ostree(`--repo=${repo}`, 'refs').split('\n').filter(Boolean);
    expect(after.sort()).toEqual(refs.filter((ref) => ref !== 'ociimage/img_3Aone').sort());
    ostree(`--repo=${repo}`, 'fsck');
  });
});
