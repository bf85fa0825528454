/**
 * Layer compression against the real registry, checked with the real tools: Gantry recompresses gzip
 * layers the registry already holds to zstd (skopeo 1.9 would keep them gzip), skopeo and podman read
 * the zstd image, Gantry reads skopeo's zstd image, and the DiffIDs never change.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type CopyProgressEvent, copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import { type FixtureImage, runSkopeo, writeFixtureToOciLayout } from '@gantry/core/testing';
import {
  createDecompressor,
  type Digest,
  detectCompression,
  digestOf,
  type ImageSource,
  MediaTypes,
  parseImageConfig,
  parseManifest,
} from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import { buildImage, dockerContext, pushFixture } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

const run = promisify(execFile);

/** The first bytes and the DiffID (digest after decompression) of a blob. */
async function inspectLayer(
  source: ImageSource,
  digest: Digest,
): Promise<{ compression: string; diffId: Digest }> {
  const { stream } = await source.getBlob({ digest, size: -1 });
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  const bytes = Buffer.concat(chunks);
  expect(digestOf(bytes)).toBe(digest);
  const compression = detectCompression(bytes);
  if (compression === 'none') return { compression, diffId: digest };
  const decompressor = createDecompressor(compression);
  const output: Buffer[] = [];
  decompressor.on('data', (chunk: Buffer) => output.push(chunk));
  const ended = new Promise((resolve, reject) => {
    decompressor.on('end', resolve);
    decompressor.on('error', reject);
  });
  decompressor.end(bytes);
  await ended;
  return { compression, diffId: digestOf(Buffer.concat(output)) };
}

describe('layer compression against a real registry', () => {
  let registry: TestRegistry;
  let directory: string;
  let image: FixtureImage;
  let ociImage: FixtureImage;
  const transport = createDockerTransport();
  const context = dockerContext({ tlsVerify: false });
  const policy = insecureAcceptAnythingPolicy();

  const reference = (name: string) => transport.parseReference(`//${registry.host}/${name}`);

  async function readImage(name: string) {
    const source = await reference(name).newImageSource(context);
    try {
      const manifestBlob = await source.getManifest();
      const manifest = parseManifest(manifestBlob.bytes, manifestBlob.mediaType);
      const { stream } = await source.getBlob(manifest.config!);
      const configChunks: Buffer[] = [];
      for await (const chunk of stream) configChunks.push(chunk as Buffer);
      const config = parseImageConfig(Buffer.concat(configChunks));
      const layers = [];
      for (const layer of manifest.layers) {
        layers.push({ ...layer, ...(await inspectLayer(source, layer.digest)) });
      }
      return { manifest, diffIds: config.rootfs?.diff_ids as string[], layers };
    } finally {
      await source.close();
    }
  }

  beforeAll(async () => {
    registry = await startTestRegistry();
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-compression-'));
    image = await buildImage(
      {
        format: 'docker',
        layers: [
          {
            entries: [
              { type: 'file', path: 'etc/text', content: 'compressible text\n'.repeat(50_000) },
              { type: 'file', path: 'bin/data', randomSize: 400_000, seed: 'zstd-layer' },
            ],
            compression: 'gzip',
          },
          { entries: [{ type: 'file', path: 'app/readme', content: 'second layer\n' }], compression: 'gzip' },
        ],
      },
      path.join(directory, 'image'),
    );
    ociImage = await buildImage(
      {
        format: 'oci',
        layers: [
          {
            entries: [{ type: 'file', path: 'oci/text', content: 'oci layer\n'.repeat(9_000) }],
            compression: 'gzip',
          },
          {
            entries: [{ type: 'file', path: 'oci/data', randomSize: 100_000, seed: 'oci' }],
            compression: 'none',
          },
        ],
      },
      path.join(directory, 'oci-image'),
    );
    await pushFixture(transport, registry, 'zstd/app:gzip', image, context);
  }, 120_000);

  afterAll(async () => {
    await transport.closeConnections();
    await registry?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  it('recompresses to zstd although the registry holds the gzip layers, keeping the DiffIDs', async () => {
    const result = await copyImage(reference('zstd/app:gzip'), reference('zstd/app:zstd'), {
      policy,
      sourceContext: context,
      destinationContext: context,
      destinationCompression: 'zstd',
    });
    // Docker schema2 cannot carry zstd layers: the manifest became OCI.
    expect(result.manifestMediaType).toBe(MediaTypes.OciManifest);
    const copied = await readImage('zstd/app:zstd');
    expect(copied.layers.map((layer) => layer.mediaType)).toEqual([
      MediaTypes.OciLayerZstd,
      MediaTypes.OciLayerZstd,
    ]);
    expect(copied.layers.map((layer) => layer.compression)).toEqual(['zstd', 'zstd']);
    expect(copied.layers.map((layer) => layer.diffId)).toEqual(image.images[0]!.diffIds);
    expect(copied.diffIds).toEqual(image.images[0]!.diffIds);

    // And back to gzip in a Docker schema2 manifest.
    const back = await copyImage(reference('zstd/app:zstd'), reference('zstd/app:back'), {
      policy,
      sourceContext: context,
      destinationContext: context,
      destinationCompression: 'gzip',
      manifestMediaType: MediaTypes.DockerManifest,
    });
    expect(back.manifestMediaType).toBe(MediaTypes.DockerManifest);
    const gzipped = await readImage('zstd/app:back');
    expect(gzipped.layers.map((layer) => layer.compression)).toEqual(['gzip', 'gzip']);
    expect(gzipped.layers.map((layer) => layer.diffId)).toEqual(image.images[0]!.diffIds);
    expect(gzipped.diffIds).toEqual(image.images[0]!.diffIds);
  }, 120_000);

  it('with a blob-info cache, a later copy reuses the zstd layers instead of compressing again, mounting them into a new repository on first sight', async () => {
    const cacheFile = path.join(directory, 'cache', 'blob-info-cache.json');
    const first = await copyImage(reference('zstd/app:gzip'), reference('cached/one:zstd'), {
      policy,
      sourceContext: context,
      destinationContext: context,
      destinationCompression: 'zstd',
      blobInfoCache: cacheFile,
    });
    // Another process: a new transport, which knows nothing but what the cache file says.
    const fresh = createDockerTransport();
    const events: CopyProgressEvent[] = [];
    registry.clearAccessLog();
    try {
      const second = await copyImage(
        fresh.parseReference(`//${registry.host}/zstd/app:gzip`),
        fresh.parseReference(`//${registry.host}/cached/two:zstd`),
        {
          policy,
          sourceContext: context,
          destinationContext: context,
          destinationCompression: 'zstd',
          blobInfoCache: cacheFile,
          onProgress: (event) => events.push(event),
        },
      );
      expect(second.manifestDigest).toBe(first.manifestDigest);
    } finally {
      await fresh.closeConnections();
    }
    const layerResults = events.flatMap((event) =>
      event.type === 'blob-done' && event.kind === 'layer' ? [event.result] : [],
    );
    expect(layerResults).toEqual(['reused', 'reused']);
    const log = await registry.accessLog();
    const mounts = log.filter((entry) => entry.method === 'POST' && entry.path.includes('mount='));
    expect(mounts.map((entry) => entry.status)).toEqual([201, 201, 201]); // two layers and the config
    expect(
      mounts.every(
        (entry) =>
          entry.path.includes('from=cached%2Fone') ||
          entry.path.includes('from=cached/one') ||
          entry.path.includes('from=zstd'),
      ),
    ).toBe(true);
    // Nothing was uploaded: no PATCH at all.
    expect(log.filter((entry) => entry.method === 'PATCH')).toEqual([]);
    const copied = await readImage('cached/two:zstd');
    expect(copied.layers.map((layer) => layer.compression)).toEqual(['zstd', 'zstd']);
  }, 120_000);

  it('refuses zstd into a Docker schema2 manifest (-f v2s2) before copying any layer', async () => {
    await expect(
      copyImage(reference('zstd/app:gzip'), reference('zstd/app:refused'), {
        policy,
        sourceContext: context,
        destinationContext: context,
        destinationCompression: 'zstd',
        manifestMediaType: MediaTypes.DockerManifest,
      }),
    ).rejects.toMatchObject({
      code: 'ERR_GANTRY_MANIFEST_CONVERSION_FAILED',
      message: expect.stringContaining('zstd-compressed layers need an OCI manifest'),
    });
  });

  it('skopeo and podman read the zstd image Gantry wrote', async () => {
    await copyImage(reference('zstd/app:gzip'), reference('zstd/app:for-tools'), {
      policy,
      sourceContext: context,
      destinationContext: context,
      destinationCompression: 'zstd',
    });
    const target = path.join(directory, 'skopeo-dir');
    await runSkopeo([
      'copy',
      '--insecure-policy',
      '--src-tls-verify=false',
      '--dest-decompress',
      `docker://${registry.host}/zstd/app:for-tools`,
      `dir:${target}`,
    ]);
    // skopeo decompressed the zstd layers: each file is named by its DiffID.
    const manifest = JSON.parse(await runSkopeo(['inspect', '--raw', `dir:${target}`]).then(String));
    expect(manifest.layers.map((layer: { digest: string }) => layer.digest)).toEqual(
      image.images[0]!.diffIds,
    );

    const podmanRoot = path.join(directory, 'podman');
    const podman = (args: string[]) =>
      run(
        'podman',
        [
          '--storage-driver',
          'vfs',
          '--root',
          path.join(podmanRoot, 'root'),
          '--runroot',
          path.join(podmanRoot, 'runroot'),
          ...args,
        ],
        { maxBuffer: 16 * 1024 * 1024 },
      );
    try {
      await podman(['pull', '--tls-verify=false', `${registry.host}/zstd/app:for-tools`]);
      const inspected = JSON.parse(
        (await podman(['image', 'inspect', `${registry.host}/zstd/app:for-tools`])).stdout,
      );
      expect(inspected[0].RootFS.Layers).toEqual(image.images[0]!.diffIds);
    } finally {
      await podman(['rmi', '--all', '--force']).catch(() => undefined);
    }
  }, 180_000);

  it('writes zstd:chunked that podman pulls and skopeo copies with the same DiffIDs, its TOC where the annotations say', async () => {
    const result = await copyImage(reference('zstd/app:gzip'), reference('zstd/app:chunked'), {
      policy,
      sourceContext: context,
      destinationContext: context,
      destinationCompression: 'zstd:chunked',
    });
    expect(result.manifestMediaType).toBe(MediaTypes.OciManifest);
    const copied = await readImage('zstd/app:chunked');
    expect(copied.layers.map((layer) => layer.compression)).toEqual(['zstd', 'zstd']);
    expect(copied.layers.map((layer) => layer.mediaType)).toEqual([
      MediaTypes.OciLayerZstd,
      MediaTypes.OciLayerZstd,
    ]);
    expect(copied.layers.map((layer) => layer.diffId)).toEqual(image.images[0]!.diffIds);
    expect(copied.diffIds).toEqual(image.images[0]!.diffIds);
    const source = await reference('zstd/app:chunked').newImageSource(context);
    try {
      for (const layer of copied.manifest.layers) {
        const annotations = layer.annotations ?? {};
        const [offset, length] = (annotations['io.github.containers.zstd-chunked.manifest-position'] ?? '')
          .split(':')
          .map(Number);
        expect(annotations['io.github.containers.zstd-chunked.tarsplit-position']).toMatch(/^\d+:\d+:\d+$/);
        const { stream } = await source.getBlob({ digest: layer.digest, size: layer.size });
        const chunks: Buffer[] = [];
        for await (const chunk of stream) chunks.push(chunk as Buffer);
        const blob = Buffer.concat(chunks);
        // The TOC: a skippable frame at the stated position, with the stated digest.
        expect(blob.readUInt32LE(offset! - 8)).toBe(0x184d2a50);
        expect(digestOf(blob.subarray(offset!, offset! + length!))).toBe(
          annotations['io.github.containers.zstd-chunked.manifest-checksum'],
        );
        expect(blob.subarray(blob.length - 8).toString('latin1')).toBe('GNUlInUx');
      }
    } finally {
      await source.close();
    }

    // Copied again as zstd:chunked, the layers are kept as they are.
    const again = await copyImage(reference('zstd/app:chunked'), reference('zstd/app:chunked-again'), {
      policy,
      sourceContext: context,
      destinationContext: context,
      destinationCompression: 'zstd:chunked',
    });
    expect(again.manifestDigest).toBe(result.manifestDigest);

    const target = path.join(directory, 'skopeo-chunked');
    await runSkopeo([
      'copy',
      '--insecure-policy',
      '--src-tls-verify=false',
      '--dest-decompress',
      `docker://${registry.host}/zstd/app:chunked`,
      `dir:${target}`,
    ]);
    const decompressed = JSON.parse(await runSkopeo(['inspect', '--raw', `dir:${target}`]).then(String));
    expect(decompressed.layers.map((layer: { digest: string }) => layer.digest)).toEqual(
      image.images[0]!.diffIds,
    );

    const podmanRoot = path.join(directory, 'pz');
    const podman = (args: string[]) =>
      run(
        'podman',
        [
          '--storage-driver',
          'vfs',
          '--root',
          path.join(podmanRoot, 'root'),
          '--runroot',
          path.join(podmanRoot, 'runroot'),
          ...args,
        ],
        { maxBuffer: 16 * 1024 * 1024 },
      );
    try {
      await podman(['pull', '--tls-verify=false', `${registry.host}/zstd/app:chunked`]);
      const inspected = JSON.parse(
        (await podman(['image', 'inspect', `${registry.host}/zstd/app:chunked`])).stdout,
      );
      expect(inspected[0].RootFS.Layers).toEqual(image.images[0]!.diffIds);
    } finally {
      await podman(['rmi', '--all', '--force']).catch(() => undefined);
    }
  }, 240_000);

  it('reads the zstd:chunked image podman pushed as plain zstd, with the same DiffIDs', async () => {
    // Another registry: podman 4.3 keeps the gzip blobs a registry already holds (no --force-compression).
    const other = await startTestRegistry();
    const podmanRoot = path.join(directory, 'pc');
    const podman = (args: string[]) =>
      run(
        'podman',
        [
          '--storage-driver',
          'vfs',
          '--root',
          path.join(podmanRoot, 'root'),
          '--runroot',
          path.join(podmanRoot, 'runroot'),
          ...args,
        ],
        { maxBuffer: 16 * 1024 * 1024 },
      );
    try {
      await podman(['pull', '--tls-verify=false', `${registry.host}/zstd/app:gzip`]);
      await podman([
        'push',
        '--tls-verify=false',
        '--compression-format',
        'zstd:chunked',
        `${registry.host}/zstd/app:gzip`,
        `${other.host}/zstd/podman:chunked`,
      ]);
      // Gantry copies it into the test registry as it is (zstd:chunked, annotations and all).
      await copyImage(
        transport.parseReference(`//${other.host}/zstd/podman:chunked`),
        reference('zstd/podman:chunked'),
        { policy, sourceContext: context, destinationContext: context, preserveDigests: true },
      );
    } finally {
      await podman(['rmi', '--all', '--force']).catch(() => undefined);
      await other.stop();
    }
    const chunked = await readImage('zstd/podman:chunked');
    expect(chunked.layers.map((layer) => layer.compression)).toEqual(['zstd', 'zstd']);
    // containers/storage's zstd:chunked annotations (the table of contents) are there.
    expect(
      chunked.manifest.layers.every((layer) =>
        Object.keys(layer.annotations ?? {}).some(
          (key) => key === 'io.containers.zstd-chunked.manifest-position',
        ),
      ),
    ).toBe(true);
    expect(chunked.layers.map((layer) => layer.diffId)).toEqual(image.images[0]!.diffIds);
    await copyImage(reference('zstd/podman:chunked'), reference('zstd/podman:gzip'), {
      policy,
      sourceContext: context,
      destinationContext: context,
      destinationCompression: 'gzip',
    });
    const gzipped = await readImage('zstd/podman:gzip');
    expect(gzipped.layers.map((layer) => layer.compression)).toEqual(['gzip', 'gzip']);
    expect(gzipped.diffIds).toEqual(image.images[0]!.diffIds);
    // The zstd:chunked annotations described the zstd bytes: the gzip layers do not carry them.
    expect(gzipped.manifest.layers.flatMap((layer) => Object.keys(layer.annotations ?? {}))).toEqual([]);
    // Asked for zstd:chunked, podman 4.3's first-version zstd:chunked layers are rewritten in this format.
    await copyImage(reference('zstd/podman:chunked'), reference('zstd/podman:rechunked'), {
      policy,
      sourceContext: context,
      destinationContext: context,
      destinationCompression: 'zstd:chunked',
    });
    const rechunked = await readImage('zstd/podman:rechunked');
    expect(rechunked.diffIds).toEqual(image.images[0]!.diffIds);
    expect(rechunked.layers.map((layer) => layer.diffId)).toEqual(image.images[0]!.diffIds);
    for (const layer of rechunked.manifest.layers) {
      expect(Object.keys(layer.annotations ?? {}).sort()).toEqual([
        'io.github.containers.zstd-chunked.manifest-checksum',
        'io.github.containers.zstd-chunked.manifest-position',
        'io.github.containers.zstd-chunked.tarsplit-position',
      ]);
    }
  }, 180_000);

  it('reads the zstd image skopeo wrote and recompresses it to gzip with the same DiffIDs', async () => {
    const layout = path.join(directory, 'layout');
    // skopeo 1.9's oci: transport reads only OCI manifests.
    await writeFixtureToOciLayout(ociImage, layout, 'v1');
    await runSkopeo([
      'copy',
      '--insecure-policy',
      '--dest-tls-verify=false',
      '--dest-compress-format',
      'zstd',
      '-f',
      'oci',
      `oci:${layout}:v1`,
      `docker://${registry.host}/zstd/skopeo:zstd`,
    ]);
    const written = await readImage('zstd/skopeo:zstd');
    expect(written.layers.map((layer) => layer.compression)).toEqual(['zstd', 'zstd']);
    await copyImage(reference('zstd/skopeo:zstd'), reference('zstd/skopeo:gzip'), {
      policy,
      sourceContext: context,
      destinationContext: context,
      destinationCompression: 'gzip',
    });
    const gzipped = await readImage('zstd/skopeo:gzip');
    expect(gzipped.manifest.mediaType).toBe(MediaTypes.OciManifest);
    expect(gzipped.layers.map((layer) => layer.mediaType)).toEqual([
      MediaTypes.OciLayerGzip,
      MediaTypes.OciLayerGzip,
    ]);
    expect(gzipped.layers.map((layer) => layer.diffId)).toEqual(ociImage.images[0]!.diffIds);
    expect(gzipped.diffIds).toEqual(ociImage.images[0]!.diffIds);
  }, 180_000);

  it('skopeo, podman, gzip -t and zstd -t read the multi-member gzip and multi-frame zstd layers Gantry writes, with the DiffIDs of the config', async () => {
    // 9 MiB of an executable and 1 MiB of random bytes: 10 gzip members (1 MiB blocks), 3 zstd frames (4 MiB).
    const big = await buildImage(
      {
        format: 'docker',
        layers: [
          {
            entries: [
              {
                type: 'file',
                path: 'bin/exe',
                content: readFileSync(process.execPath).subarray(0, 9 * 1024 * 1024),
              },
              { type: 'file', path: 'bin/random', randomSize: 1024 * 1024, seed: 'multi' },
            ],
            compression: 'gzip',
          },
        ],
      },
      path.join(directory, 'big-image'),
    );
    const diffIds = big.images[0]!.diffIds;
    await pushFixture(transport, registry, 'multi/app:source', big, context);
    for (const [format, tag, from] of [
      ['zstd', 'zstd', 'source'],
      ['gzip', 'gzip', 'zstd'],
    ] as const) {
      await copyImage(reference(`multi/app:${from}`), reference(`multi/app:${tag}`), {
        policy,
        sourceContext: context,
        destinationContext: context,
        destinationCompression: format,
      });
      const written = await readImage(`multi/app:${tag}`);
      expect(written.layers.map((layer) => layer.compression)).toEqual([format]);
      expect(written.layers.map((layer) => layer.diffId)).toEqual(diffIds);

      // The blob as stored, checked by the format's own program, and made of several members / frames.
      const raw = path.join(directory, `multi-raw-${tag}`);
      await runSkopeo([
        'copy',
        '--insecure-policy',
        '--src-tls-verify=false',
        `docker://${registry.host}/multi/app:${tag}`,
        `dir:${raw}`,
      ]);
      const blobFile = path.join(raw, written.layers[0]!.digest.slice('sha256:'.length));
      await run(
        format === 'gzip' ? 'gzip' : 'zstd',
        format === 'gzip' ? ['-t', blobFile] : ['-q', '-t', blobFile],
      );
      const blob = readFileSync(blobFile);
      const magic =
        format === 'gzip' ? Buffer.from([0x1f, 0x8b, 0x08, 0x00]) : Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
      let starts = 0;
      for (let at = blob.indexOf(magic); at >= 0; at = blob.indexOf(magic, at + 1)) starts += 1;
      expect(starts).toBeGreaterThanOrEqual(format === 'gzip' ? 10 : 3);

      // skopeo decompresses each layer into a file named by the digest of what it decompressed.
      const decompressed = path.join(directory, `multi-decompressed-${tag}`);
      await runSkopeo([
        'copy',
        '--insecure-policy',
        '--src-tls-verify=false',
        '--dest-decompress',
        `docker://${registry.host}/multi/app:${tag}`,
        `dir:${decompressed}`,
      ]);
      const manifest = JSON.parse(await runSkopeo(['inspect', '--raw', `dir:${decompressed}`]).then(String));
      expect(manifest.layers.map((layer: { digest: string }) => layer.digest)).toEqual(diffIds);
      expect(await readdir(decompressed)).toContain(diffIds[0]!.slice('sha256:'.length));

      // podman pulls it: containers/storage checks each layer's uncompressed digest against the config.
      // Short: podman refuses a run root longer than 50 characters.
      const podmanRoot = path.join(directory, `m${tag[0]}`);
      const podman = (args: string[]) =>
        run(
          'podman',
          [
            '--storage-driver',
            'vfs',
            '--root',
            path.join(podmanRoot, 'root'),
            '--runroot',
            path.join(podmanRoot, 'runroot'),
            ...args,
          ],
          { maxBuffer: 16 * 1024 * 1024 },
        );
      try {
        await podman(['pull', '--tls-verify=false', `${registry.host}/multi/app:${tag}`]);
        const inspected = JSON.parse(
          (await podman(['image', 'inspect', `${registry.host}/multi/app:${tag}`])).stdout,
        );
        expect(inspected[0].RootFS.Layers).toEqual(diffIds);
      } finally {
        await podman(['rmi', '--all', '--force']).catch(() => undefined);
      }
    }
  }, 300_000);
});
