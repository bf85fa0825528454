import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Digest, digestOf } from '../digest.js';
import { ErrorCodes, hasErrorCode } from '../errors.js';
import { MediaTypes } from '../manifest/media-types.js';
import { buildFixtureImage } from './fixture-builder.js';
import { fixturePresets, listPresetNames, singleImagePresetNames } from './fixture-presets.js';
import type { FixtureImage } from './fixture-types.js';
import { seededRandomBytes } from './random-data.js';

let temporaryRoot: string;
beforeAll(async () => {
  temporaryRoot = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
});
afterAll(async () => {
  await rm(temporaryRoot, { recursive: true, force: true });
});

let directoryCounter = 0;
function freshDirectory(): string {
  directoryCounter += 1;
  return path.join(temporaryRoot, `fixture-${directoryCounter}`);
}

async function fileDigest(file: string): Promise<{ digest: Digest; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).byteLength;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

interface TarEntry {
  name: string;
  type: string | null | undefined;
  mode: number | undefined;
  uid: number | undefined;
  gid: number | undefined;
  mtime: Date | undefined;
  linkname: string | null | undefined;
  content: Buffer;
}

async function readLayer(file: string, gzip: boolean): Promise<TarEntry[]> {
  const extract = tar.extract();
  const entries: TarEntry[] = [];
  const reading = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      const { name, type, mode, uid, gid, mtime, linkname } = entry.header;
      entries.push({ name, type, mode, uid, gid, mtime, linkname, content: Buffer.concat(chunks) });
    }
  })();
  if (gzip) await pipeline(createReadStream(file), createGunzip(), extract);
  else await pipeline(createReadStream(file), extract);
  await reading;
  return entries;
}

async function uncompressedDigest(file: string, gzip: boolean): Promise<Digest> {
  const hash = createHash('sha256');
  const input = gzip ? createReadStream(file).pipe(createGunzip()) : createReadStream(file);
  for await (const chunk of input) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

/** Checks every internal reference of a fixture: digests, sizes, configs, diff IDs, lists. */
async function expectConsistent(image: FixtureImage): Promise<void> {
  expect(digestOf(image.topLevel.bytes)).toBe(image.topLevel.digest);
  expect(image.manifests.get(image.topLevel.digest)?.bytes).toEqual(image.topLevel.bytes);
  for (const [digest, manifest] of image.manifests) expect(digestOf(manifest.bytes)).toBe(digest);
  for (const [digest, blob] of image.blobs) {
    expect(path.basename(blob.path)).toBe(digest.slice('sha256:'.length));
    expect(await fileDigest(blob.path)).toEqual({ digest, size: blob.size });
  }
  for (const single of image.images) {
    const manifest = JSON.parse(
      Buffer.from(image.manifests.get(single.manifestDigest)!.bytes).toString('utf8'),
    );
    expect(manifest.schemaVersion).toBe(2);
    expect(manifest.config.digest).toBe(single.configDigest);
    expect(manifest.config.size).toBe(image.blobs.get(single.configDigest)!.size);
    expect(manifest.layers.map((layer: { digest: string }) => layer.digest)).toEqual(single.layerDigests);
    const config = JSON.parse(await readFile(image.blobs.get(single.configDigest)!.path, 'utf8'));
    expect(config.rootfs).toEqual({ type: 'layers', diff_ids: single.diffIds });
    expect(config.architecture).toBe(single.platform.architecture);
    expect(config.os).toBe(single.platform.os);
    expect(config.history).toHaveLength(single.layerDigests.length);
    for (const [index, layer] of manifest.layers.entries()) {
      const blob = image.blobs.get(layer.digest)!;
      expect(layer.size).toBe(blob.size);
      expect(layer.mediaType).toBe(blob.mediaType);
      const gzip = layer.mediaType.endsWith('gzip');
      expect(await uncompressedDigest(blob.path, gzip)).toBe(single.diffIds[index]);
    }
  }
}

describe('seededRandomBytes', () => {
  async function collect(seed: string, size: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of seededRandomBytes(seed, size)) {
      expect(chunk.byteLength).toBeLessThanOrEqual(64 * 1024);
      chunks.push(Buffer.from(chunk));
    }
    return Buffer.concat(chunks);
  }

  it('is deterministic per seed, prefix-stable, and differs between seeds', async () => {
    const first = await collect('a', 200_000);
    expect(first.byteLength).toBe(200_000);
    expect(await collect('a', 200_000)).toEqual(first);
    expect(await collect('a', 1000)).toEqual(first.subarray(0, 1000));
    expect((await collect('b', 1000)).equals(first.subarray(0, 1000))).toBe(false);
    expect(await collect('a', 0)).toHaveLength(0);
  });

  it('rejects a negative size', async () => {
    await expect(collect('a', -1)).rejects.toThrow(RangeError);
  });
});

describe('buildFixtureImage', () => {
  it.each([...singleImagePresetNames, ...listPresetNames])(
    'builds the %s preset consistently',
    async (name) => {
      const image = await buildFixtureImage(fixturePresets[name], { directory: freshDirectory() });
      await expectConsistent(image);
    },
  );

  it('is deterministic: the same spec gives the same bytes in another directory', async () => {
    for (const name of ['everyEntryType', 'multiArchDocker', 'uncompressedLayers'] as const) {
      const first = await buildFixtureImage(fixturePresets[name], { directory: freshDirectory() });
      const second = await buildFixtureImage(fixturePresets[name], { directory: freshDirectory() });
      expect(second.topLevel).toEqual(first.topLevel);
      expect([...second.blobs.keys()]).toEqual([...first.blobs.keys()]);
      expect(second.images).toEqual(first.images);
    }
  });

  it('leaves only blob files named by hex in the output directory', async () => {
    const directory = freshDirectory();
    const image = await buildFixtureImage(fixturePresets.whiteoutLayers, { directory });
    const files = (await readdir(directory)).sort();
    expect(files).toEqual([...image.blobs.keys()].map((digest) => digest.slice('sha256:'.length)).sort());
  });

  it('writes an OCI manifest with its mediaType field, gzip layers and the OCI config type', async () => {
    const image = await buildFixtureImage(fixturePresets.ociMinimal, { directory: freshDirectory() });
    expect(image.topLevel.mediaType).toBe(MediaTypes.OciManifest);
    const manifest = JSON.parse(Buffer.from(image.topLevel.bytes).toString('utf8'));
    expect(Object.keys(manifest)).toEqual(['schemaVersion', 'mediaType', 'config', 'layers']);
    expect(manifest.mediaType).toBe(MediaTypes.OciManifest);
    expect(manifest.config.mediaType).toBe(MediaTypes.OciConfig);
    expect(Object.keys(manifest.config)).toEqual(['mediaType', 'digest', 'size']);
    expect(manifest.layers[0].mediaType).toBe(MediaTypes.OciLayerGzip);
    // Compact serialisation: no whitespace between tokens.
    expect(Buffer.from(image.topLevel.bytes).toString('utf8')).toBe(JSON.stringify(manifest));
  });

  it('writes Docker schema2 manifests and configs with Docker media types', async () => {
    const image = await buildFixtureImage(fixturePresets.dockerSchema2, { directory: freshDirectory() });
    expect(image.topLevel.mediaType).toBe(MediaTypes.DockerManifest);
    const manifest = JSON.parse(Buffer.from(image.topLevel.bytes).toString('utf8'));
    expect(manifest.mediaType).toBe(MediaTypes.DockerManifest);
    expect(manifest.config.mediaType).toBe(MediaTypes.DockerConfig);
    expect(Object.keys(manifest.config)).toEqual(['mediaType', 'size', 'digest']);
    expect(manifest.layers.map((layer: { mediaType: string }) => layer.mediaType)).toEqual([
      MediaTypes.DockerLayerGzip,
      MediaTypes.DockerLayerGzip,
    ]);
    const config = JSON.parse(await readFile(image.blobs.get(image.images[0]!.configDigest)!.path, 'utf8'));
    expect(config.config).toEqual({
      User: '0:0',
      Env: ['PATH=/usr/bin:/bin'],
      Entrypoint: ['/bin/hello'],
      WorkingDir: '/',
    });
    expect(config.created).toBe('2024-01-01T00:00:00Z');
  });

  it('uses uncompressed layer media types and equal blob digest and diff ID for uncompressed layers', async () => {
    const oci = await buildFixtureImage(fixturePresets.uncompressedLayers, { directory: freshDirectory() });
    const docker = await buildFixtureImage(fixturePresets.dockerUncompressed, {
      directory: freshDirectory(),
    });
    expect(oci.images[0]!.layerDigests).toEqual(oci.images[0]!.diffIds);
    expect(docker.images[0]!.layerDigests).toEqual(docker.images[0]!.diffIds);
    expect(oci.blobs.get(oci.images[0]!.layerDigests[0]!)!.mediaType).toBe(MediaTypes.OciLayer);
    expect(docker.blobs.get(docker.images[0]!.layerDigests[0]!)!.mediaType).toBe(MediaTypes.DockerLayer);
  });

  it('writes every entry type with fixed metadata', async () => {
    const image = await buildFixtureImage(fixturePresets.everyEntryType, { directory: freshDirectory() });
    const [base, top] = image.images[0]!.layerDigests;
    const baseEntries = await readLayer(image.blobs.get(base!)!.path, true);
    const byName = new Map(baseEntries.map((entry) => [entry.name, entry]));
    expect(byName.get('etc/')?.type).toBe('directory');
    expect(byName.get('usr/')?.mode).toBe(0o750);
    expect(byName.get('etc/hosts')?.content.toString()).toBe('127.0.0.1 localhost\n');
    expect(byName.get('etc/binary')?.content).toEqual(Buffer.from([0, 1, 2, 255, 254, 0, 10]));
    expect(byName.get('usr/bin/tool')?.mode).toBe(0o4755);
    expect(byName.get('usr/bin/owned')).toMatchObject({ uid: 1000, gid: 1000 });
    expect(byName.get('usr/random.bin')?.content.byteLength).toBe(100_000);
    expect(byName.get('usr/bin/tool-link')).toMatchObject({ type: 'symlink', linkname: 'tool' });
    expect(byName.get('etc/hosts-hardlink')).toMatchObject({ type: 'link', linkname: 'etc/hosts' });
    for (const entry of baseEntries) {
      expect(entry.mtime?.toISOString()).toBe('2024-01-01T00:00:00.000Z');
      if (entry.name !== 'usr/bin/owned') expect([entry.uid, entry.gid]).toEqual([0, 0]);
    }
    const topNames = (await readLayer(image.blobs.get(top!)!.path, true)).map((entry) => entry.name);
    expect(topNames).toEqual(['var/.wh.doomed', 'var/cache/', 'var/cache/.wh..wh..opq', 'var/cache/new']);
  });

  it('writes non-ASCII and long names through PAX headers', async () => {
    const image = await buildFixtureImage(fixturePresets.longAndNonAsciiNames, {
      directory: freshDirectory(),
    });
    const entries = await readLayer(image.blobs.get(image.images[0]!.layerDigests[0]!)!.path, true);
    const names = entries.map((entry) => entry.name);
    expect(names).toContain('données/日本語のファイル.txt');
    expect(names).toContain('données/emoji-🚢.txt');
    const long = names.find((name) => name.endsWith('end.txt') && name.startsWith('deep/'));
    expect(Buffer.byteLength(long!)).toBeGreaterThan(200);
    const link = entries.find((entry) => entry.name === 'long-link');
    expect(Buffer.byteLength(link!.linkname!)).toBeGreaterThan(100);
    // The layer really contains PAX extended headers (typeflag 'x').
    const raw = await uncompressedBytes(image.blobs.get(image.images[0]!.layerDigests[0]!)!.path);
    let paxHeaders = 0;
    for (let offset = 0; offset + 512 <= raw.byteLength; offset += 512) {
      if (
        raw[offset + 156] === 'x'.charCodeAt(0) &&
        raw.subarray(offset + 257, offset + 262).toString() === 'ustar'
      ) {
        paxHeaders += 1;
      }
    }
    expect(paxHeaders).toBeGreaterThanOrEqual(6);
  });

  it('writes 2000 small files in the many-small-files preset', async () => {
    const image = await buildFixtureImage(fixturePresets.manySmallFiles, { directory: freshDirectory() });
    const entries = await readLayer(image.blobs.get(image.images[0]!.layerDigests[0]!)!.path, true);
    expect(entries.filter((entry) => entry.type === 'file')).toHaveLength(2000);
  });

  it('builds lists with per-instance platforms (OCI index and Docker list)', async () => {
    const oci = await buildFixtureImage(fixturePresets.multiArchOci, { directory: freshDirectory() });
    expect(oci.topLevel.mediaType).toBe(MediaTypes.OciIndex);
    const index = JSON.parse(Buffer.from(oci.topLevel.bytes).toString('utf8'));
    expect(index.mediaType).toBe(MediaTypes.OciIndex);
    expect(index.manifests.map((entry: { platform: unknown }) => entry.platform)).toEqual([
      { architecture: 'amd64', os: 'linux' },
      { architecture: 'arm64', os: 'linux', variant: 'v8' },
      { architecture: 'arm', os: 'linux', variant: 'v7' },
    ]);
    expect(index.manifests.map((entry: { digest: string }) => entry.digest)).toEqual(
      oci.images.map((single) => single.manifestDigest),
    );
    expect(oci.manifests.size).toBe(4);
    const armConfig = JSON.parse(await readFile(oci.blobs.get(oci.images[2]!.configDigest)!.path, 'utf8'));
    expect([armConfig.architecture, armConfig.variant, armConfig.os]).toEqual(['arm', 'v7', 'linux']);

    const docker = await buildFixtureImage(fixturePresets.multiArchDocker, { directory: freshDirectory() });
    expect(docker.topLevel.mediaType).toBe(MediaTypes.DockerManifestList);
    const list = JSON.parse(Buffer.from(docker.topLevel.bytes).toString('utf8'));
    expect(
      list.manifests.every((entry: { mediaType: string }) => entry.mediaType === MediaTypes.DockerManifest),
    ).toBe(true);
    expect(Object.keys(list.manifests[0])).toEqual(['mediaType', 'size', 'digest', 'platform']);
  });

  it('keeps special characters in labels and env verbatim, labels sorted', async () => {
    const image = await buildFixtureImage(fixturePresets.specialCharacterConfig, {
      directory: freshDirectory(),
    });
    const text = await readFile(image.blobs.get(image.images[0]!.configDigest)!.path, 'utf8');
    expect(text).toContain('"GREETING=<hello & goodbye>"');
    expect(text).toContain('naïve café ☃ 日本');
    const config = JSON.parse(text);
    expect(Object.keys(config.config.Labels)).toEqual([
      'org.example.html',
      'org.example.plain',
      'org.example.unicode',
    ]);
    const manifest = JSON.parse(Buffer.from(image.topLevel.bytes).toString('utf8'));
    expect(manifest.annotations).toEqual({ 'org.example.annotation': '<&> ünïcödé' });
  });

  it('streams a large random file with bounded memory', async () => {
    const size = 192 * 1024 * 1024;
    const before = process.memoryUsage();
    const image = await buildFixtureImage(
      {
        layers: [
          {
            compression: 'none',
            entries: [{ type: 'file', path: 'big.bin', randomSize: size, seed: 'big' }],
          },
        ],
      },
      { directory: freshDirectory() },
    );
    const after = process.memoryUsage();
    const growth = after.heapUsed + after.arrayBuffers - (before.heapUsed + before.arrayBuffers);
    expect(growth).toBeLessThan(64 * 1024 * 1024);
    const layer = image.blobs.get(image.images[0]!.layerDigests[0]!)!;
    expect(layer.size).toBeGreaterThan(size);
    expect((await fileDigest(layer.path)).digest).toBe(layer.digest);
    await rm(layer.path);
  });

  it('rejects invalid entry paths, mixed list formats and (on this Node) zstd', async () => {
    const reject = (spec: Parameters<typeof buildFixtureImage>[0]) =>
      buildFixtureImage(spec, { directory: freshDirectory() });
    await expect(reject({ layers: [{ entries: [{ type: 'file', path: '../escape' }] }] })).rejects.toThrow(
      /must be a relative path/,
    );
    await expect(reject({ layers: [{ entries: [{ type: 'directory', path: '/' }] }] })).rejects.toThrow(
      /must be a relative path/,
    );
    await expect(reject({ format: 'oci', images: [{ format: 'docker', layers: [] }] })).rejects.toThrow(
      /format docker/,
    );
    await expect(
      reject({ layers: [{ entries: [{ type: 'file', path: 'x', content: 'a', randomSize: 1 }] }] }),
    ).rejects.toThrow(/both content and randomSize/);
    const zstd = reject({
      layers: [{ compression: 'zstd', entries: [{ type: 'file', path: 'x', content: 'a' }] }],
    });
    if (
      typeof ((await import('node:zlib')) as { createZstdCompress?: unknown }).createZstdCompress ===
      'function'
    ) {
      await expect(zstd).resolves.toBeDefined();
    } else {
      await expect(zstd).rejects.toSatisfy((error: unknown) => hasErrorCode(error, ErrorCodes.NotSupported));
    }
  });
});

async function uncompressedBytes(file: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipeline(createReadStream(file), createGunzip(), async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) chunks.push(chunk);
  });
  return Buffer.concat(chunks);
}
