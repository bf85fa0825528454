/**
 * Several `gantry` processes (the built command) writing to one destination at the same time: an OCI
 * layout, a containers-storage store, a `dir:` directory, an oci-archive and a docker-archive path.
 * The images share a base layer, so the writers also race on the same blob. Afterwards the real tools
 * (skopeo, umoci, podman) read the destination and every blob is verified by copying it out with skopeo.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  type FixtureImage,
  recordOutcome,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGantryProcess } from '../../test-support/gantry-process.js';
import { requireTool, runSkopeoConcurrently } from '../../test-support/run.js';
import { startBuiltGantry } from './built-gantry.js';
import { makeFaultDestination, ownedTemporaryPaths } from './destinations.js';

const testFile = 'apps/cli/src/reliability/faults/concurrency.e2e.test.ts';
const writers = 4;
/** Writers to the containers-storage store: processes from the sources start slowly, so fewer. */
const storeWriters = 3;

let root: string;
const images: FixtureImage[] = [];
const layouts: string[] = [];

beforeAll(async () => {
  for (const tool of ['skopeo', 'umoci', 'podman']) requireTool(tool);
  root = await mkdtemp(join(tmpdir(), 'gcc-'));
  for (let index = 0; index < writers; index++) {
    const image = await buildFixtureImage(
      {
        format: 'oci',
        layers: [
          {
            entries: [
              { type: 'file', path: 'base.bin', randomSize: 3 * 1024 * 1024, seed: 'concurrency-base' },
            ],
          },
          {
            entries: [
              { type: 'file', path: `own-${index}.bin`, randomSize: 2 * 1024 * 1024, seed: `own-${index}` },
            ],
          },
        ],
      },
      { directory: join(root, `fixture-${index}`) },
    );
    images.push(image);
    const layout = join(root, `source-${index}`);
    await writeFixtureToOciLayout(image, layout, 'latest');
    layouts.push(layout);
  }
}, 180_000);

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

/**
 * Runs one copy per image at once, `destination(i)` for image i; resolves each process's end. The built
 * command by default; `fromSources` runs the sources instead (containers-storage: the built bundle fails
 * to load koffi's native module on Node 20 here, a bundle problem reported separately).
 */
async function copyAllAtOnce(
  destination: (index: number) => string,
  cwd: string,
  environment?: NodeJS.ProcessEnv,
  fromSources = false,
  count = writers,
  flags: string[] = [],
) {
  const start = fromSources ? startGantryProcess : startBuiltGantry;
  const processes = layouts
    .slice(0, count)
    .map((layout, index) =>
      start(
        ['--insecure-policy', 'copy', '-q', ...flags, `oci:${layout}:latest`, destination(index)],
        cwd,
        environment,
      ),
    );
  return Promise.all(processes.map((process) => process.exited));
}

/** skopeo copies the image out (verifying every blob's digest) and returns its manifest digest. */
async function verifiedDigest(reference: string, extra: string[] = []): Promise<string> {
  const out = join(root, `verify-${Math.random().toString(36).slice(2)}`);
  const copied = await runSkopeoConcurrently([
    '--insecure-policy',
    'copy',
    '-q',
    ...extra,
    reference,
    `oci:${out}:x`,
  ]);
  expect(copied.code, copied.stderr).toBe(0);
  const inspected = await runSkopeoConcurrently(['inspect', '--raw', ...extra, reference]);
  expect(inspected.code, inspected.stderr).toBe(0);
  return JSON.parse(inspected.stdout.toString())
    .layers.map((layer: { digest: string }) => layer.digest)
    .join(',');
}

const layerList = (image: FixtureImage) =>
  (JSON.parse(Buffer.from(image.topLevel.bytes).toString()).layers as { digest: string }[])
    .map((layer) => layer.digest)
    .join(',');

function record(transport: string, outcome: string): void {
  recordOutcome({
    suite: 'faults',
    case: 'concurrent writers (separate gantry processes)',
    transport,
    outcome,
    ok: true,
    testFile,
  });
}

describe('concurrent writers to one destination', () => {
  it('an OCI layout: every image is in index.json; umoci and skopeo read each one', async () => {
    const layout = join(root, 'layout');
    const ended = await copyAllAtOnce((index) => `oci:${layout}:image-${index}`, root);
    for (const end of ended) expect(end.code, end.stderr).toBe(0);
    const listed = execFileSync('umoci', ['ls', '--layout', layout], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .sort();
    expect(listed).toEqual(images.map((_, index) => `image-${index}`).sort());
    for (const [index, image] of images.entries()) {
      expect(await verifiedDigest(`oci:${layout}:image-${index}`)).toBe(layerList(image));
    }
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8'));
    expect(index.manifests).toHaveLength(writers);
    expect(await ownedTemporaryPaths(layout)).toEqual([]);
    record('oci', `all ${writers} images in index.json; umoci ls and skopeo copy read each`);
  }, 180_000);

  it('a containers-storage store: every image is there; podman lists each, no layer left incomplete', async () => {
    const directory = join(root, 'cs');
    await mkdir(directory);
    const destination = await makeFaultDestination('containers-storage', directory);
    const ended = await copyAllAtOnce(
      (index) => destination.reference(`image-${index}`),
      directory,
      destination.environment,
      true,
      storeWriters,
    );
    for (const end of ended) expect(end.code, end.stderr).toBe(0);
    const listed = execFileSync(
      'podman',
      [
        '--root',
        join(directory, 'graph'),
        '--runroot',
        join(directory, 'run'),
        '--storage-driver',
        'vfs',
        'images',
        '--format',
        '{{.Repository}}:{{.Tag}}',
      ],
      { encoding: 'utf8', env: destination.environment },
    )
      .split('\n')
      .filter(Boolean)
      .sort();
    expect(listed).toEqual(
      images
        .slice(0, storeWriters)
        .map((_, index) => `docker.io/faults/image-${index}:latest`)
        .sort(),
    );
    const layers = JSON.parse(
      await readFile(join(directory, 'graph', 'vfs-layers', 'layers.json'), 'utf8'),
    ) as {
      id: string;
      flags?: Record<string, unknown>;
    }[];
    expect(layers.filter((layer) => layer.flags?.incomplete)).toEqual([]);
    // One base layer shared by every image, and one of each image's own.
    expect(layers).toHaveLength(storeWriters + 1);
    for (const index of images.slice(0, storeWriters).keys()) {
      const copied = await runSkopeoConcurrently([
        '--insecure-policy',
        'copy',
        '-q',
        destination.reference(`image-${index}`),
        `oci:${join(root, `cs-out-${index}`)}:x`,
      ]);
      expect(copied.code, copied.stderr).toBe(0);
    }
    expect(await readdir(destination.temporaryDirectory)).toEqual([]);
    record(
      'containers-storage',
      `all ${storeWriters} images stored; podman lists each; shared base layer once; skopeo copies each out`,
    );
  }, 180_000);

  it('a dir: directory: one complete image (the last to commit), readable by skopeo', async () => {
    const directory = join(root, 'dir');
    const ended = await copyAllAtOnce(() => `dir:${directory}`, root);
    for (const end of ended) expect(end.code, end.stderr).toBe(0);
    const layers = await verifiedDigest(`dir:${directory}`);
    expect(images.map(layerList)).toContain(layers);
    expect(await ownedTemporaryPaths(root)).toEqual([]);
    record(
      'dir',
      'every copy succeeded; the directory holds one complete image (the last commit), skopeo verifies it',
    );
  }, 180_000);

  it('an oci-archive path: every image is in the archive (writers take turns), readable by skopeo', async () => {
    const archive = join(root, 'image.tar');
    const ended = await copyAllAtOnce((index) => `oci-archive:${archive}:image-${index}`, root);
    for (const end of ended) expect(end.code, end.stderr).toBe(0);
    const names = JSON.parse(
      execFileSync('tar', ['-xOf', archive, 'index.json'], { encoding: 'utf8' }),
    ).manifests.map(
      (manifest: { annotations?: Record<string, string> }) =>
        manifest.annotations?.['org.opencontainers.image.ref.name'],
    );
    expect(names.sort()).toEqual(images.map((_, index) => `image-${index}`).sort());
    for (const [index, image] of images.entries()) {
      expect(await verifiedDigest(`oci-archive:${archive}:image-${index}`)).toBe(layerList(image));
    }
    expect(await ownedTemporaryPaths(root)).toEqual([]);
    expect((await readdir(root)).filter((name) => name.endsWith('.gantry-lock'))).toEqual([]);
    record(
      'oci-archive',
      `all ${writers} images in the archive (each writer waited for the archive's lock); skopeo verifies each`,
    );
  }, 180_000);

  it('a docker-archive path: one writer writes the archive, the others (waiting for its lock) then refuse it', async () => {
    const archive = join(root, 'docker.tar');
    const ended = await copyAllAtOnce(
      (index) => `docker-archive:${archive}:faults/image-${index}:latest`,
      root,
    );
    // Writers take turns (the path's lock): the first writes the archive, the others then refuse it.
    const succeeded = ended.filter((end) => end.code === 0);
    expect(succeeded).toHaveLength(1);
    for (const end of ended) {
      if (end.code !== 0) expect(end.stderr).toContain('exists and is not empty');
    }
    const inspected = await runSkopeoConcurrently(['inspect', `docker-archive:${archive}`]);
    expect(inspected.code, inspected.stderr).toBe(0);
    const copied = await runSkopeoConcurrently([
      '--insecure-policy',
      'copy',
      '-q',
      `docker-archive:${archive}`,
      `oci:${join(root, 'docker-out')}:x`,
    ]);
    expect(copied.code, copied.stderr).toBe(0);
    const written = JSON.parse(
      execFileSync('tar', ['-xOf', archive, 'manifest.json'], { encoding: 'utf8' }),
    )[0].RepoTags;
    expect(written).toEqual([`docker.io/faults/image-${ended.findIndex((end) => end.code === 0)}:latest`]);
    expect(await ownedTemporaryPaths(root)).toEqual([]);
    expect((await readdir(root)).filter((name) => name.endsWith('.gantry-lock'))).toEqual([]);
    record(
      'docker-archive',
      'exactly one writer succeeded and its archive is complete (skopeo reads and copies it); the others waited for the lock, then refused the existing file',
    );
  }, 180_000);
});
