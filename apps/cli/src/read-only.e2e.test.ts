/**
 * Writing to a real read-only file system (a tmpfs remounted read-only; needs root): every writable
 * transport reports the error the system gave, `read-only file system`, as skopeo does, never a
 * made-up ENOENT (`mkdir …: no such file or directory`, what Node's recursive mkdir says) nor libuv's
 * wording (`EROFS: read-only file system, open '…'`).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  fixturePresets,
  mountTestTmpfs,
  type TestMount,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGantry, runSkopeo } from './test-support/run.js';

let root: string;
let layout: string;
let mount: TestMount;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-read-only-'));
  const image = await buildFixtureImage(fixturePresets.ociMinimal!, { directory: join(root, 'blobs') });
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
  mount = await mountTestTmpfs(4);
  // Existing destinations of each kind, written while the file system is still writable.
  await mkdir(join(mount.directory, 'empty-for-dir'));
  await mkdir(join(mount.directory, 'empty-for-oci'));
  for (const destination of ['oci:existing-layout:old', 'dir:existing-dir', 'oci-archive:existing.tar']) {
    const colon = destination.indexOf(':');
    const [transport, rest] = [destination.slice(0, colon), destination.slice(colon + 1)];
    const written = await runGantry([
      '--insecure-policy',
      'copy',
      `oci:${layout}:latest`,
      `${transport}:${join(mount.directory, rest)}`,
    ]);
    expect(written.code, written.stderr).toBe(0);
  }
  mount.makeReadOnly();
}, 120_000);

afterAll(async () => {
  await mount?.unmount();
  if (root) await rm(root, { recursive: true, force: true });
});

// (A missing parent directory is refused by both when the name is parsed, `lstat …: no such file or
// directory`, before anything is written; makeDirectories' own test covers deeper creation.)
const destinations = [
  'oci:new-layout',
  'oci:empty-for-oci',
  'oci:existing-layout:new',
  'dir:new-dir',
  'dir:empty-for-dir',
  'dir:existing-dir',
  'oci-archive:new.tar',
  'oci-archive:existing.tar',
  'docker-archive:new.tar',
];

describe('copy to a read-only file system', () => {
  it.each(destinations)('%s reports "read-only file system", as skopeo', async (destination) => {
    const colon = destination.indexOf(':');
    const target = `${destination.slice(0, colon)}:${join(mount.directory, destination.slice(colon + 1))}`;
    const gantry = await runGantry(['--insecure-policy', 'copy', `oci:${layout}:latest`, target]);
    expect(gantry.code).toBe(1);
    expect(gantry.stderr).toMatch(/: read-only file system/);
    expect(gantry.stderr).not.toMatch(/no such file or directory|EROFS/);
    const skopeo = runSkopeo(['--insecure-policy', 'copy', `oci:${layout}:latest`, target]);
    expect(skopeo.code).toBe(1);
    expect(skopeo.stderr).toMatch(/: read-only file system/);
  });
});
