import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildFixtureImage, runSkopeo, writeFixtureToOciLayout } from '@gantry/core/testing';
import { startTestRegistry, type TestRegistry } from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The bulk rows' Node.js floors (node-floor-pull-oci.mjs, node-floor-pull-archive.mjs,
// node-floor-registry-copy.mjs, node-floor-push.mjs) against a real registry, on a small image whose
// layers span several socket reads: what each writes is read back by skopeo, and each fails, leaving
// nothing behind, when a blob's bytes do not match its digest.
let directory: string;
let source: TestRegistry;
let destination: TestRegistry;
let layout: string;
let manifestDigest: string;
let manifest: { config: { digest: string }; layers: { digest: string; size: number }[] };
let diffIds: string[];

const floor = (name: string) => resolve(import.meta.dirname, `node-floor-${name}.mjs`);
function runFloor(name: string, ...args: string[]) {
  return spawnSync(process.execPath, [floor(name), ...args], { encoding: 'utf8', timeout: 120_000 });
}
const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const skopeo = (...args: string[]) => runSkopeo(['--insecure-policy', ...args]);

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gantry-node-floors-'));
  [source, destination] = await Promise.all([startTestRegistry(), startTestRegistry()]);
  const fixture = await buildFixtureImage(
    {
      format: 'oci',
      layers: [
        { entries: [{ type: 'file', path: 'a.bin', randomSize: 700 * 1024 + 3, seed: 'a' }] },
        { entries: [{ type: 'file', path: 'b.bin', randomSize: 300 * 1024, seed: 'b' }] },
        { entries: [{ type: 'file', path: 'c.txt', content: 'floor\n'.repeat(50_000) }] },
        { entries: [{ type: 'file', path: 'd.txt', content: 'd\n' }] },
      ],
    },
    { directory: join(directory, 'fixture') },
  );
  layout = join(directory, 'layout');
  await writeFixtureToOciLayout(fixture, layout, 'v1');
  manifestDigest = fixture.topLevel.digest;
  const blob = (digest: string) => readFileSync(join(layout, 'blobs', 'sha256', digest.slice(7)));
  manifest = JSON.parse(blob(manifestDigest).toString('utf8'));
  diffIds = JSON.parse(blob(manifest.config.digest).toString('utf8')).rootfs.diff_ids;
  await skopeo(
    'copy',
    '-q',
    '--dest-tls-verify=false',
    `oci:${layout}:v1`,
    `docker://${source.host}/floors/image:v1`,
  );
}, 120_000);

afterAll(async () => {
  await Promise.all([source?.stop(), destination?.stop()]);
  await rm(directory, { recursive: true, force: true });
});

/** Every blob file of an OCI layout is named by its SHA-256; nothing else is left in blobs/sha256. */
function expectVerifiedLayout(path: string) {
  const names = readdirSync(join(path, 'blobs', 'sha256'));
  for (const name of names)
    expect(sha256(readFileSync(join(path, 'blobs', 'sha256', name)))).toBe(`sha256:${name}`);
  expect(names.sort()).toEqual(
    [manifestDigest, manifest.config.digest, ...manifest.layers.map((layer) => layer.digest)]
      .map((digest) => digest.slice(7))
      .sort(),
  );
}

/** The registry's data file of a blob (Distribution's filesystem driver). */
const storedBlob = (registry: TestRegistry, digest: string) =>
  join(
    registry.storageDirectory,
    'docker/registry/v2/blobs/sha256',
    digest.slice(7, 9),
    digest.slice(7),
    'data',
  );

describe('node-floor-pull-oci.mjs', () => {
  it.each([['--client=net'], ['--client=http'], ['--client=undici'], ['--threads=2']])(
    'pulls the image into an OCI layout skopeo copies from (%s)',
    async (option) => {
      const output = join(directory, `pull-oci-${option.slice(2).replace('=', '-')}`);
      const run = runFloor('pull-oci', option, source.host, 'floors/image', 'v1', output);
      expect(run.status, run.stderr).toBe(0);
      expectVerifiedLayout(output);
      const index = JSON.parse(readFileSync(join(output, 'index.json'), 'utf8'));
      expect(index.manifests[0].digest).toBe(manifestDigest);
      expect(JSON.parse((await skopeo('inspect', `oci:${output}:v1`)).toString()).Digest).toBe(
        manifestDigest,
      );
      await skopeo('copy', '-q', `oci:${output}:v1`, `oci:${join(directory, `again-${option.slice(2)}`)}:v1`);
    },
  );
});

describe('node-floor-pull-archive.mjs', () => {
  it.each([['--threads=1'], ['--threads=2']])(
    'pulls the image into a docker-archive skopeo reads, the layers under their DiffIDs (%s)',
    async (option) => {
      const archive = join(directory, `image-${option.slice(2).replace('=', '-')}.tar`);
      const run = runFloor(
        'pull-archive',
        option,
        source.host,
        'floors/image',
        'v1',
        archive,
        'floors/image:v1',
      );
      expect(run.status, run.stderr).toBe(0);
      expect(existsSync(`${archive}.partial`)).toBe(false);
      const inspected = JSON.parse((await skopeo('inspect', `docker-archive:${archive}`)).toString());
      expect(inspected.Layers).toEqual(diffIds);
      const manifestJson = spawnSync('tar', ['xOf', archive, 'manifest.json'], { encoding: 'utf8' });
      expect(JSON.parse(manifestJson.stdout)).toEqual([
        {
          Config: `${manifest.config.digest.slice(7)}.json`,
          RepoTags: ['floors/image:v1'],
          Layers: diffIds.map((diffId) => `${diffId.slice(7)}.tar`),
        },
      ]);
      const listing = spawnSync('tar', ['tf', archive], { encoding: 'utf8' });
      expect(listing.status).toBe(0);
      expect(listing.stdout.trim().split('\n')).toEqual([
        `${manifest.config.digest.slice(7)}.json`,
        ...diffIds.map((diffId) => `${diffId.slice(7)}.tar`),
        'manifest.json',
      ]);
      // skopeo checks every layer against the config's DiffIDs as it copies.
      await skopeo(
        'copy',
        '-q',
        `docker-archive:${archive}`,
        `oci:${join(directory, `from-${option.slice(2)}`)}:v1`,
      );
    },
  );
});

describe('node-floor-registry-copy.mjs', () => {
  it.each([['--threads=1'], ['--threads=2']])(
    'copies every blob and the manifest into another registry (%s)',
    async (option) => {
      const repository = `copy/${option.slice(2).replace('=', '-')}`;
      const run = runFloor(
        'registry-copy',
        option,
        `${source.host}/floors/image:v1`,
        `${destination.host}/${repository}:v1`,
      );
      expect(run.status, run.stderr).toBe(0);
      const raw = await skopeo(
        'inspect',
        '--raw',
        '--tls-verify=false',
        `docker://${destination.host}/${repository}:v1`,
      );
      expect(sha256(raw)).toBe(manifestDigest);
      const output = join(directory, `copied-${option.slice(2)}`);
      await skopeo(
        'copy',
        '-q',
        '--src-tls-verify=false',
        `docker://${destination.host}/${repository}:v1`,
        `oci:${output}:v1`,
      );
      expectVerifiedLayout(output);
    },
  );
});

describe('node-floor-push.mjs', () => {
  it.each([['--threads=1'], ['--threads=2']])(
    'pushes the layout to a registry that serves the same image (%s)',
    async (option) => {
      const repository = `push/${option.slice(2).replace('=', '-')}`;
      const run = runFloor('push', option, layout, `${destination.host}/${repository}:v1`);
      expect(run.status, run.stderr).toBe(0);
      const raw = await skopeo(
        'inspect',
        '--raw',
        '--tls-verify=false',
        `docker://${destination.host}/${repository}:v1`,
      );
      expect(sha256(raw)).toBe(manifestDigest);
      const output = join(directory, `pushed-${option.slice(2)}`);
      await skopeo(
        'copy',
        '-q',
        '--src-tls-verify=false',
        `docker://${destination.host}/${repository}:v1`,
        `oci:${output}:v1`,
      );
      expectVerifiedLayout(output);
    },
  );
});

describe('a blob whose bytes do not match its digest', () => {
  it('fails each floor, and nothing of it is written', async () => {
    const [layer] = manifest.layers;
    if (!layer) throw new Error('the test image has no layer');
    // The push: a layout whose first layer's file holds other bytes of the same size.
    const badLayout = join(directory, 'bad-layout');
    await cp(layout, badLayout, { recursive: true });
    const layerFile = join(badLayout, 'blobs', 'sha256', layer.digest.slice(7));
    const original = readFileSync(layerFile);
    const changed = Buffer.from(original);
    const middle = changed.length >> 1;
    changed[middle] = (changed[middle] ?? 0) ^ 0xff;
    writeFileSync(layerFile, changed);
    const push = runFloor('push', badLayout, `${destination.host}/bad/push:v1`);
    expect(push.status).not.toBe(0);
    expect(push.stderr).toContain(layer.digest);
    const head = await fetch(`${destination.url}/v2/bad/push/blobs/${layer.digest}`, { method: 'HEAD' });
    expect(head.status).toBe(404);

    // The pulls and the copy: the source registry serves other bytes for the layer (then its own again).
    const stored = storedBlob(source, layer.digest);
    const served = readFileSync(stored);
    expect(served.equals(original)).toBe(true);
    writeFileSync(stored, changed);
    try {
      const output = join(directory, 'bad-pull');
      for (const option of ['--client=net', '--client=http', '--client=undici', '--threads=2']) {
        const pull = runFloor('pull-oci', option, source.host, 'floors/image', 'v1', output);
        expect(pull.status, option).not.toBe(0);
        expect(pull.stderr).toContain(layer.digest);
        expect(existsSync(join(output, 'blobs', 'sha256', layer.digest.slice(7)))).toBe(false);
        expect(existsSync(join(output, 'index.json'))).toBe(false);
      }
      const archive = join(directory, 'bad.tar');
      const pullArchive = runFloor('pull-archive', source.host, 'floors/image', 'v1', archive, 'bad:v1');
      expect(pullArchive.status).not.toBe(0);
      expect(existsSync(archive) || existsSync(`${archive}.partial`)).toBe(false);
      const copy = runFloor(
        'registry-copy',
        `${source.host}/floors/image:v1`,
        `${destination.host}/bad/copy:v1`,
      );
      expect(copy.status).not.toBe(0);
      expect(copy.stderr).toContain(layer.digest);
      const copied = await fetch(`${destination.url}/v2/bad/copy/blobs/${layer.digest}`, { method: 'HEAD' });
      expect(copied.status).toBe(404);
    } finally {
      writeFileSync(stored, served);
    }
  });
});
