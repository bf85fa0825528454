/**
 * The archive transports through the `gantry` command, checked against the real skopeo:
 * docker-archive: and oci-archive: are written and read by both, with the same digests, and
 * `list-tags docker-archive:` prints what skopeo prints.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFixtureImage, fixturePresets, writeFixtureToOciLayout } from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireTool, runGantry, runSkopeo } from './test-support/run.js';

let root: string;
let layout: string;
let expectedDigest: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-archives-'));
  const image = await buildFixtureImage(fixturePresets.everyEntryType, { directory: join(root, 'blobs') });
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
  expectedDigest = image.topLevel.digest;
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function configDigestOf(reference: string): string {
  const result = runSkopeo(['inspect', '--config', '--raw', reference]);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout.toString()).rootfs.diff_ids.join(',');
}

describe('docker-archive: through the CLI', () => {
  it('writes an archive skopeo reads with the same DiffIDs, lists its tags like skopeo, and reads it back', async () => {
    const archive = join(root, 'image.tar');
    const written = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      `oci:${layout}:latest`,
      `docker-archive:${archive}:example.com/gantry/test:v1`,
    ]);
    expect(written.code, written.stderr).toBe(0);
    expect(configDigestOf(`docker-archive:${archive}`)).toBe(configDigestOf(`oci:${layout}:latest`));

    const ours = await runGantry(['list-tags', `docker-archive:${archive}`]);
    const theirs = runSkopeo(['list-tags', `docker-archive:${archive}`]);
    expect(theirs.code, theirs.stderr).toBe(0);
    expect(ours.code, ours.stderr).toBe(0);
    expect(ours.stdout.toString()).toBe(theirs.stdout.toString());
    expect(JSON.parse(ours.stdout.toString()).Tags).toEqual(['example.com/gantry/test:v1']);

    // A non-empty existing file is not overwritten.
    const again = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      `oci:${layout}:latest`,
      `docker-archive:${archive}`,
    ]);
    expect(again.code).toBe(1);

    // Reading skopeo's archive of the same image gives the same config and DiffIDs.
    const skopeoArchive = join(root, 'skopeo.tar');
    expect(
      runSkopeo([
        '--insecure-policy',
        'copy',
        `oci:${layout}:latest`,
        `docker-archive:${skopeoArchive}:x/y:z`,
      ]).code,
    ).toBe(0);
    const back = join(root, 'from-skopeo-archive');
    const read = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      `docker-archive:${skopeoArchive}`,
      `oci:${back}:t`,
    ]);
    expect(read.code, read.stderr).toBe(0);
    expect(configDigestOf(`oci:${back}:t`)).toBe(configDigestOf(`oci:${layout}:latest`));
  });
});

describe('xz and bzip2 compressed docker-archive: files', () => {
  for (const [tool, extension] of [
    ['xz', 'xz'],
    ['bzip2', 'bz2'],
  ] as const) {
    it(`lists the tags of a .tar.${extension} archive as skopeo does, and copies it out with the same DiffIDs`, async () => {
      const archive = join(root, `compressed-${tool}.tar`);
      const written = runSkopeo([
        '--insecure-policy',
        'copy',
        `oci:${layout}:latest`,
        `docker-archive:${archive}:example.com/compressed/${tool}:v1`,
      ]);
      expect(written.code, written.stderr).toBe(0);
      const compressed = spawnSync(requireTool(tool), ['-k', archive]);
      expect(compressed.status, compressed.stderr?.toString()).toBe(0);
      const compressedArchive = `${archive}.${extension}`;

      const ours = await runGantry(['list-tags', `docker-archive:${compressedArchive}`]);
      const theirs = runSkopeo(['list-tags', `docker-archive:${compressedArchive}`]);
      expect(theirs.code, theirs.stderr).toBe(0);
      expect(ours.code, ours.stderr).toBe(0);
      expect(ours.stdout.toString()).toBe(theirs.stdout.toString());
      expect(JSON.parse(ours.stdout.toString()).Tags).toEqual([`example.com/compressed/${tool}:v1`]);

      const back = join(root, `from-${tool}-archive`);
      const read = await runGantry([
        '--insecure-policy',
        'copy',
        '-q',
        `docker-archive:${compressedArchive}`,
        `oci:${back}:t`,
      ]);
      expect(read.code, read.stderr).toBe(0);
      expect(configDigestOf(`oci:${back}:t`)).toBe(configDigestOf(`oci:${layout}:latest`));
    });
  }
});

describe('copy --additional-tag', () => {
  it('records every tag in a docker-archive: as skopeo does', async () => {
    const archive = join(root, 'tagged.tar');
    const skopeoArchive = join(root, 'tagged-skopeo.tar');
    const tags = ['--additional-tag', 'example.com/extra:one', '--additional-tag', 'example.com/extra:two'];
    const written = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      ...tags,
      `oci:${layout}:latest`,
      `docker-archive:${archive}:example.com/main:v1`,
    ]);
    expect(written.code, written.stderr).toBe(0);
    const skopeo = runSkopeo([
      '--insecure-policy',
      'copy',
      ...tags,
      `oci:${layout}:latest`,
      `docker-archive:${skopeoArchive}:example.com/main:v1`,
    ]);
    expect(skopeo.code, skopeo.stderr).toBe(0);
    const ours = await runGantry(['list-tags', `docker-archive:${archive}`]);
    expect(JSON.parse(ours.stdout.toString()).Tags).toEqual([
      'example.com/main:v1',
      'example.com/extra:one',
      'example.com/extra:two',
    ]);
    expect(ours.stdout.toString()).toBe(
      runSkopeo(['list-tags', `docker-archive:${skopeoArchive}`]).stdout.toString(),
    );
  });
});

describe('oci-archive: through the CLI', () => {
  it('keeps the manifest digest both ways with skopeo', async () => {
    const archive = join(root, 'oci.tar');
    const digestFile = join(root, 'digest');
    const written = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      '--digestfile',
      digestFile,
      `oci:${layout}:latest`,
      `oci-archive:${archive}:t`,
    ]);
    expect(written.code, written.stderr).toBe(0);
    expect(await readFile(digestFile, 'utf8')).toBe(expectedDigest);
    const inspected = runSkopeo(['inspect', '--format', '{{.Digest}}', `oci-archive:${archive}:t`]);
    expect(inspected.code, inspected.stderr).toBe(0);
    expect(inspected.stdout.toString().trim()).toBe(expectedDigest);

    const skopeoArchive = join(root, 'skopeo-oci.tar');
    expect(
      runSkopeo(['--insecure-policy', 'copy', `oci:${layout}:latest`, `oci-archive:${skopeoArchive}:s`]).code,
    ).toBe(0);
    const ours = await runGantry(['inspect', `oci-archive:${skopeoArchive}:s`]);
    expect(ours.code, ours.stderr).toBe(0);
    expect(JSON.parse(ours.stdout.toString()).Digest).toBe(expectedDigest);
  });
});
