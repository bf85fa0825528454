/**
 * copy's progress lines when stderr is not a terminal, line for line next to Debian's skopeo 1.9.3 for
 * the same copies: one image (`Copying blob sha256:<full hex>`, the lines the README shows), a list
 * with `--all`, for one platform, and `--multi-arch index-only` (no instance copied).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFixtureImage, fixturePresets, writeFixtureToOciLayout } from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGantry, runSkopeo } from './test-support/run.js';

let root: string;
let single: string;
let list: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-lines-'));
  single = join(root, 'single');
  list = join(root, 'list');
  const [image, lists] = await Promise.all([
    buildFixtureImage(fixturePresets.ociMinimal!, { directory: join(root, 'blobs-single') }),
    buildFixtureImage(fixturePresets.multiArchOci!, { directory: join(root, 'blobs-list') }),
  ]);
  await writeFixtureToOciLayout(image, single, 'latest');
  await writeFixtureToOciLayout(lists, list, 'latest');
}, 60_000);

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('plain progress lines, as skopeo 1.9.3 prints them', () => {
  for (const [name, flags, source] of [
    ['one image', [], () => single],
    ['a list with --all', ['--all'], () => list],
    ['a list for this platform', [], () => list],
    ['a list with --multi-arch index-only', ['--multi-arch', 'index-only'], () => list],
  ] as const) {
    it(name, async () => {
      const from = `oci:${source()}:latest`;
      const slug = name.replace(/\W+/g, '-');
      const skopeo = runSkopeo([
        '--insecure-policy',
        'copy',
        ...flags,
        from,
        `oci:${join(root, `s-${slug}`)}:x`,
      ]);
      const gantry = await runGantry([
        '--insecure-policy',
        'copy',
        ...flags,
        from,
        `oci:${join(root, `g-${slug}`)}:x`,
      ]);
      expect(skopeo.code, skopeo.stderr).toBe(0);
      expect(gantry.code, gantry.stderr).toBe(0);
      // skopeo writes these lines to stdout; gantry to stderr, keeping stdout for results.
      expect(gantry.stderr).toBe(skopeo.stdout.toString());
      expect(gantry.stdout.toString()).toBe('');
      expect(skopeo.stdout.toString()).toMatch(/^Getting image (source|list) signatures\n/);
      if (name === 'one image') expect(gantry.stderr).toMatch(/\nCopying blob sha256:[0-9a-f]{64}\n/);
      if (name.includes('index-only'))
        expect(gantry.stderr).toBe(
          'Getting image list signatures\nCopying 0 of 3 images in list\nWriting manifest list to image destination\nStoring list signatures\n',
        );
    });
  }
});
