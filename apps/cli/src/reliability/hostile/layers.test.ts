/**
 * Hostile layers copied by `gantry copy` into the destinations that extract them (containers-storage,
 * ostree), from every local source (oci, oci-archive, dir, docker-archive): names with `..`, absolute
 * names, symbolic and hard links that lead out of the layer, device files, a metadata (PAX) header
 * inflated to 16 MiB by compression, truncated tar and gzip streams, and layers whose bytes do not have
 * their digest. Each: exit 1, the problem named, no stack trace, nothing written outside the destination,
 * and the image not committed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { recordOutcome } from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { requireTool, runGantry } from '../../test-support/run.js';
import { expectCleanFailure } from './expect-failure.js';
import { type FakeEngine, startFakeEngine } from './fake-engine.js';
import {
  type HandMadeImage,
  type RawTarEntry,
  rawTar,
  sha256,
  writeDirImage,
  writeOciArchive,
  writeOciLayout,
} from './hostile-images.js';

const testFile = 'apps/cli/src/reliability/hostile/layers.test.ts';

const workDirectory = mkdtempSync(join(tmpdir(), 'gantry-hostile-layers-'));
/** Files hostile layers try to create or link to, outside any destination. */
const outside = join(workDirectory, 'outside');
const secretFile = join(outside, 'secret');
const store = `[vfs@${join(workDirectory, 'graph')}+${join(workDirectory, 'run')}]`;
const ostreeRepository = join(workDirectory, 'ostree-repo');

let engine: FakeEngine;

beforeAll(async () => {
  requireTool('ostree');
  mkdirSync(outside);
  writeFileSync(secretFile, 'not for containers\n');
  engine = await startFakeEngine(join(workDirectory, 'engine.sock'));
});
afterAll(async () => {
  await engine?.stop();
  rmSync(workDirectory, { recursive: true, force: true });
});

const escapeTarget = (label: string) => join(outside, `escaped-${label}`);
const climb = '../'.repeat(40);

interface HostileLayer {
  name: string;
  /** The layer blob (tar, or gzip of a tar) and how to describe it. */
  layer: () => { bytes: Buffer; diffId: string; gzip: boolean; declaredDigest?: string };
  /** Paths that must not exist afterwards. */
  mustNotExist: string[];
  expected: RegExp;
  outcome: string;
}

const plainLayer = (entries: RawTarEntry[], options: { truncateAt?: number } = {}) => {
  const bytes = rawTar(entries, options);
  return { bytes, diffId: sha256(bytes), gzip: false };
};
const file = (name: string, content = 'x\n'): RawTarEntry => ({ name, content });

const layers: HostileLayer[] = [
  {
    name: 'layer entry climbing out with ../',
    layer: () => plainLayer([file('ok'), file(`${climb}${escapeTarget('dotdot').slice(1)}`)]),
    mustNotExist: [escapeTarget('dotdot')],
    expected: /layer tar: entry "[^"]*escaped-dotdot" climbs out of the layer with "\.\."/,
    outcome:
      'refused: "layer tar: entry … climbs out of the layer with ..", naming the blob; nothing written outside',
  },
  {
    name: 'layer entry with an absolute name',
    layer: () => plainLayer([file(escapeTarget('absolute'))]),
    mustNotExist: [escapeTarget('absolute')],
    expected: /layer tar: entry "[^"]*escaped-absolute" has an absolute name/,
    outcome: 'refused: "entry … has an absolute name"',
  },
  {
    name: 'symbolic link out of the layer, then a file through it',
    layer: () =>
      plainLayer([
        { name: 'link', type: '2', linkName: `${climb}${outside.slice(1)}` },
        file('link/escaped-through-symlink'),
      ]),
    mustNotExist: [join(outside, 'escaped-through-symlink')],
    expected: /entry "link" is a symbolic link to "[^"]*", outside the layer/,
    outcome: 'refused: "entry link is a symbolic link to …, outside the layer"; nothing written through it',
  },
  {
    name: 'hard link to a file outside the layer',
    layer: () => plainLayer([{ name: 'stolen', type: '1', linkName: `${climb}${secretFile.slice(1)}` }]),
    mustNotExist: [],
    expected: /entry "stolen" is a hard link to "[^"]*", outside the layer/,
    outcome: 'refused: "entry stolen is a hard link to …, outside the layer"',
  },
  {
    name: 'hard link with an absolute target',
    layer: () => plainLayer([{ name: 'stolen', type: '1', linkName: secretFile }]),
    mustNotExist: [],
    expected: /entry "stolen" is a hard link to "[^"]*\/outside\/secret", outside the layer/,
    outcome: 'refused: "entry stolen is a hard link to /…/outside/secret, outside the layer"',
  },
  {
    name: '16 MiB PAX header (gzip: 16 KiB)',
    layer: () => {
      const tar = rawTar([{ name: 'PaxHeaders/bomb', type: '0', content: '' }]);
      // A PAX extended header ('x') whose record area is 64 MiB of zeros.
      const header = Buffer.from(tar.subarray(0, 512));
      header.write('x', 156);
      header.write(`${(16 * 1024 * 1024).toString(8).padStart(11, '0')}\0`, 124);
      header.write('        ', 148);
      let checksum = 0;
      for (const byte of header) checksum += byte;
      header.write(`${checksum.toString(8).padStart(6, '0')}\0 `, 148);
      const body = Buffer.concat([header, Buffer.alloc(16 * 1024 * 1024), Buffer.alloc(1024)]);
      return { bytes: gzipSync(body, { level: 9 }), diffId: sha256(body), gzip: true };
    },
    mustNotExist: [],
    expected: /larger than 1 MiB/,
    outcome: 'refused: "metadata entry … larger than 1 MiB"; memory bounded',
  },
  {
    name: 'tar stream truncated inside an entry',
    layer: () =>
      plainLayer([file('a', 'a'.repeat(4000)), file('b', 'b'.repeat(4000))], {
        truncateAt: 512 + 4096 + 700,
      }),
    mustNotExist: [],
    expected: /sha256:[0-9a-f]{64}\)?: layer tar: entry "b": the tar ends in the middle of its content/,
    outcome: 'refused: "entry b: the tar ends in the middle of its content", naming the blob; not committed',
  },
  {
    name: 'gzip layer stream truncated',
    layer: () => {
      const tar = rawTar([file('a', 'random '.repeat(20_000))]);
      const compressed = gzipSync(tar);
      const cut = compressed.subarray(0, Math.floor(compressed.length / 2));
      return { bytes: cut, diffId: sha256(tar), gzip: true };
    },
    mustNotExist: [],
    expected: /sha256:[0-9a-f]{64}\)?: the compressed data is corrupt or truncated/,
    outcome: 'refused: "blob …: the compressed data is corrupt or truncated"; not committed',
  },
  {
    name: 'layer bytes that do not have their digest',
    layer: () => {
      // The manifest and the config both claim a digest the bytes do not have.
      const real = rawTar([file('a')]);
      const claimed = sha256(Buffer.concat([real, Buffer.from('x')]));
      return { bytes: real, diffId: claimed, gzip: false, declaredDigest: claimed };
    },
    mustNotExist: [],
    expected: /digest mismatch|does not match|DiffID/,
    outcome: 'refused: digest mismatch naming the blob; nothing committed',
  },
];

/** An image whose only layer is `layer` (uncompressed DiffID `diffId`), manifest and config made to match. */
function imageWith(layer: ReturnType<HostileLayer['layer']>): { image: HandMadeImage; config: Buffer } {
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [layer.diffId] },
      history: [{ created_by: 'hostile layer' }],
    }),
  );
  const layerDigest = layer.declaredDigest ?? sha256(layer.bytes);
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
        mediaType: layer.gzip
          ? 'application/vnd.oci.image.layer.v1.tar+gzip'
          : 'application/vnd.oci.image.layer.v1.tar',
        digest: layerDigest,
        size: layer.bytes.length,
      },
    ],
  };
  return {
    config,
    image: {
      manifest: Buffer.from(JSON.stringify(manifest)),
      mediaType: manifest.mediaType,
      blobs: [
        { digest: sha256(config), bytes: config },
        { digest: layerDigest, bytes: layer.bytes },
      ],
    },
  };
}

/** A `docker save` archive of the image: manifest.json, the config and the layer file. */
function writeDockerArchive(path: string, layer: ReturnType<HostileLayer['layer']>): void {
  const { config } = imageWith(layer);
  const configName = `${sha256(config).slice(7)}.json`;
  const layerName = `${(layer.declaredDigest ?? sha256(layer.bytes)).slice(7)}/layer.tar`;
  const manifest = JSON.stringify([
    { Config: configName, RepoTags: ['hostile/layer:latest'], Layers: [layerName] },
  ]);
  writeFileSync(
    path,
    rawTar([
      { name: 'manifest.json', content: manifest },
      { name: configName, content: config },
      { name: layerName, content: layer.bytes },
    ]),
  );
}

type Source = 'oci' | 'oci-archive' | 'dir' | 'docker-archive' | 'docker-daemon';
type Destination = 'containers-storage' | 'ostree';

let counter = 0;
/** Writes the image in `source`'s format; returns the reference and the flags reading it needs. */
function writeSource(source: Source, layer: ReturnType<HostileLayer['layer']>): string[] {
  const path = join(workDirectory, `source-${++counter}`);
  const { image } = imageWith(layer);
  if (source === 'oci') writeOciLayout(path, image);
  else if (source === 'dir') writeDirImage(path, image);
  else if (source === 'oci-archive') writeOciArchive(path, image, workDirectory);
  else writeDockerArchive(path, layer);
  if (source !== 'docker-daemon') return [`${source}:${path}`];
  // The fake Engine API serves the same `docker save` stream.
  const name = `hostile/daemon-${counter}:latest`;
  const saved = readFileSync(path);
  engine.images.set(name, (response) => {
    response.writeHead(200, { 'content-type': 'application/x-tar' });
    response.end(saved);
  });
  return [`--src-daemon-host=${engine.host}`, `docker-daemon:${name}`];
}

function destinationReference(destination: Destination, name: string): string {
  return destination === 'containers-storage'
    ? `containers-storage:${store}${name}:latest`
    : `ostree:${name}:latest@${ostreeRepository}`;
}

/** Whether the destination holds an image named `name` after the failed copy. */
async function committed(destination: Destination, name: string): Promise<boolean> {
  if (destination === 'ostree') {
    if (!existsSync(ostreeRepository)) return false;
    const refs = execFileSync('ostree', ['refs', `--repo=${ostreeRepository}`], { encoding: 'utf8' });
    return refs.includes(name.replace(/\//g, '_'));
  }
  const result = await runGantry(['inspect', '--raw', destinationReference(destination, name)]);
  if (result.code !== 0 && result.code !== 2)
    throw new Error(`inspecting the store failed: ${result.stderr}`);
  return result.code === 0;
}

// Every case from oci to both destinations; an escape and the digest mismatch from every other source.
const matrix: Array<[HostileLayer, Source, Destination]> = [];
for (const layer of layers) {
  for (const destination of ['containers-storage', 'ostree'] as const) {
    matrix.push([layer, 'oci', destination]);
    if (/climbing|do not have their digest/.test(layer.name)) {
      for (const source of ['oci-archive', 'dir', 'docker-archive', 'docker-daemon'] as const)
        matrix.push([layer, source, destination]);
    }
  }
}

describe('hostile layers into extracting destinations', () => {
  test.each(matrix.map(([layer, source, destination]) => [layer.name, source, destination, layer] as const))(
    '%s: %s → %s',
    async (_name, source, destination, hostile) => {
      const layer = hostile.layer();
      const sourceArguments = writeSource(source, layer);
      const imageName = `hostile/case-${counter}`;
      const result = await runGantry([
        '--debug',
        '--insecure-policy',
        'copy',
        ...sourceArguments,
        destinationReference(destination, imageName),
      ]);
      const shown = expectCleanFailure(result, hostile.expected);
      console.log(`MSG ${hostile.name} ${source} ${destination}: ${shown}`);
      for (const path of hostile.mustNotExist) expect(existsSync(path), `${path} was written`).toBe(false);
      expect(execFileSync('find', [outside], { encoding: 'utf8' }).trim().split('\n').sort()).toEqual([
        outside,
        secretFile,
      ]);
      expect(await committed(destination, imageName), 'the image must not be committed').toBe(false);
      // One row per case: the source it was read from and the destination that extracted it both get a mark.
      for (const transport of [source, destination]) {
        recordOutcome({
          suite: 'hostile-input',
          case: hostile.name,
          transport,
          outcome: hostile.outcome,
          ok: true,
          testFile,
        });
      }
    },
  );
});

describe('device files (as root; without root they are skipped: layer-tree apply.test.ts)', () => {
  const deviceLayer = () =>
    plainLayer([
      { name: 'dev/', type: '5' },
      { name: 'dev/evil-null', type: '3', deviceMajor: 1, deviceMinor: 3 },
      { name: 'dev/evil-disk', type: '4', deviceMajor: 8, deviceMinor: 0 },
      { name: `${climb}${outside.slice(1)}/evil-device`, type: '3', deviceMajor: 1, deviceMinor: 3 },
    ]);

  test.each(['containers-storage', 'ostree'] as const)(
    'a device entry climbing out is refused (→ %s)',
    async (destination) => {
      const sourceArguments = writeSource('oci', deviceLayer());
      const name = `hostile/devices-${counter}`;
      const result = await runGantry([
        '--debug',
        '--insecure-policy',
        'copy',
        ...sourceArguments,
        destinationReference(destination, name),
      ]);
      expectCleanFailure(result, /\.\.|outside|escap/i);
      expect(existsSync(join(outside, 'evil-device'))).toBe(false);
      expect(await committed(destination, name)).toBe(false);
      for (const transport of ['oci', destination]) {
        recordOutcome({
          suite: 'hostile-input',
          case: 'device entry climbing out with ../',
          transport,
          outcome: 'refused, naming the entry; no device node outside',
          ok: true,
          testFile,
        });
      }
    },
  );

  test('inside the layer: containers-storage (root) creates them in the layer only; ostree drops them, as containers/image', async () => {
    const inside = plainLayer([
      { name: 'dev/', type: '5' },
      { name: 'dev/evil-null', type: '3', deviceMajor: 1, deviceMinor: 3 },
    ]);
    const storageName = `hostile/devices-inside-${counter}`;
    const copiedToStorage = await runGantry([
      '--insecure-policy',
      'copy',
      ...writeSource('oci', inside),
      destinationReference('containers-storage', storageName),
    ]);
    expect(copiedToStorage.code, copiedToStorage.stderr).toBe(0);
    const nodes = execFileSync('find', [workDirectory, '-name', 'evil-null', '-type', 'c'], {
      encoding: 'utf8',
    })
      .trim()
      .split('\n');
    expect(nodes).toHaveLength(1);
    expect(nodes[0]).toContain(join(workDirectory, 'graph', 'vfs', 'dir'));
    const ostreeName = `hostile/devices-inside-${counter}`;
    const copiedToOstree = await runGantry([
      '--insecure-policy',
      'copy',
      ...writeSource('oci', inside),
      destinationReference('ostree', ostreeName),
    ]);
    expect(copiedToOstree.code, copiedToOstree.stderr).toBe(0);
    const layerBranch = `ociimage/${sha256(inside.bytes).slice(7)}`;
    const files = execFileSync('ostree', ['ls', '-R', `--repo=${ostreeRepository}`, layerBranch], {
      encoding: 'utf8',
    });
    expect(files).toContain('/dev');
    expect(files).not.toContain('evil-null');
    recordOutcome({
      suite: 'hostile-input',
      case: 'character device inside the layer (as root)',
      transport: 'containers-storage',
      outcome: 'created inside the layer only, as containers/storage does as root',
      ok: true,
      testFile,
    });
    recordOutcome({
      suite: 'hostile-input',
      case: 'character device inside the layer (as root)',
      transport: 'ostree',
      outcome: 'dropped: OSTree stores no device nodes (as containers/image)',
      ok: true,
      testFile,
    });
  });
});

describe('containers-storage as a source: a store whose stored manifest was tampered with', () => {
  const tamperings: Array<[string, (manifest: Record<string, unknown>) => string, RegExp, string]> = [
    [
      'manifest: "layers" is a string',
      (manifest) => JSON.stringify({ ...manifest, layers: 'x' }),
      /missing layers/,
      'refused: "invalid OCI image manifest: missing layers"',
    ],
    [
      'manifest: JSON nested 200 000 deep',
      (manifest) =>
        `${JSON.stringify(manifest).slice(0, -1)},"x":${'['.repeat(200_000)}${']'.repeat(200_000)}}`,
      /JSON nested deeper than 10000 levels/,
      'refused: "JSON nested deeper than 10000 levels"',
    ],
    [
      'manifest: 5 MiB (over the 4 MiB limit)',
      (manifest) => JSON.stringify({ ...manifest, annotations: { padding: 'a'.repeat(5 * 1024 * 1024) } }),
      /too large/,
      'refused before parsing: "manifest … is too large"',
    ],
  ];

  test.each(tamperings)(
    '%s: exit 1, the problem named, nothing written',
    async (caseName, tamper, expected, outcome) => {
      const layer = plainLayer([file('etc/hostname', 'tampered\n')]);
      const name = `hostile/tampered-${++counter}`;
      const stored = await runGantry([
        '--insecure-policy',
        'copy',
        ...writeSource('oci', layer),
        destinationReference('containers-storage', name),
      ]);
      expect(stored.code, stored.stderr).toBe(0);
      const { image } = imageWith(layer);
      const manifestText = Buffer.from(image.manifest).toString('utf8');
      // Every copy of the manifest the store keeps (the image's big-data items) is replaced.
      const files = execFileSync('grep', ['-rlF', manifestText, join(workDirectory, 'graph', 'vfs-images')], {
        encoding: 'utf8',
      })
        .trim()
        .split('\n')
        .filter((path) => !path.endsWith('images.json'));
      expect(files.length).toBeGreaterThan(0);
      for (const path of files) writeFileSync(path, tamper(JSON.parse(manifestText)));
      const destination = join(workDirectory, `tampered-destination-${counter}`);
      const run = await runGantry([
        '--debug',
        '--insecure-policy',
        'copy',
        destinationReference('containers-storage', name),
        `oci:${destination}`,
      ]);
      expectCleanFailure(run, expected);
      expect(existsSync(join(destination, 'index.json'))).toBe(false);
      recordOutcome({
        suite: 'hostile-input',
        case: caseName,
        transport: 'containers-storage',
        outcome,
        ok: true,
        testFile,
      });
    },
  );
});
