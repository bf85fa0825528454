import { execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { buildFixtureImage, type FixtureImage, fixturePresets } from '@gantry/core/testing';
import {
  type Digest,
  digestHex,
  digestOf,
  ErrorCodes,
  parseNormalizedNamed,
  verifyingStage,
} from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDockerArchive } from './reader.js';
import { createDockerArchiveWriter } from './writer.js';

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function parts(image: FixtureImage) {
  const summary = image.images[0]!;
  const config = await readFile(image.blobs.get(summary.configDigest)!.path);
  const layers = await Promise.all(
    summary.layerDigests.map(async (digest) => {
      const bytes = await readFile(image.blobs.get(digest)!.path);
      return bytes[0] === 0x1f ? gunzipSync(bytes) : bytes;
    }),
  );
  return { summary, config, layers };
}

describe('DockerArchiveWriter', () => {
  it('writes the containers/image layout, which our reader and GNU tar read back', async () => {
    const image = await buildFixtureImage(fixturePresets.dockerSchema2, {
      directory: path.join(directory, 'f'),
    });
    const { summary, config, layers } = await parts(image);
    const archive = path.join(directory, 'out.tar');
    const writer = createDockerArchiveWriter(createWriteStream(archive), { temporaryDirectory: directory });
    // One layer with known digest and size (streamed), one unknown (spooled), and the config.
    expect(
      await writer.putBlob(
        Readable.from([layers[0]!]),
        { digest: summary.diffIds[0]!, size: layers[0]!.length },
        { isConfig: false },
      ),
    ).toEqual({
      digest: summary.diffIds[0],
      size: layers[0]!.length,
    });
    expect(await writer.putBlob(Readable.from([layers[1]!]), { size: -1 }, { isConfig: false })).toEqual({
      digest: summary.diffIds[1],
      size: layers[1]!.length,
    });
    expect(writer.hasBlob(summary.diffIds[1]!)).toEqual({
      digest: summary.diffIds[1],
      size: layers[1]!.length,
    });
    await writer.putBlob(
      Readable.from([config]),
      { digest: summary.configDigest, size: config.length },
      { isConfig: true },
    );
    await writer.addImage({
      configDigest: summary.configDigest,
      layerDigests: summary.diffIds,
      repoTags: [parseNormalizedNamed('example.com/app:v1'), parseNormalizedNamed('busybox')],
    });
    await writer.finish();

    const listing = execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n');
    const hex = (digest: Digest) => digestHex(digest);
    expect(listing.slice(0, 3)).toEqual([
      `${hex(summary.diffIds[0]!)}.tar`,
      `${hex(summary.diffIds[1]!)}.tar`,
      `${hex(summary.configDigest)}.json`,
    ]);
    expect(listing.slice(-2)).toEqual(['manifest.json', 'repositories']);
    expect(listing.filter((name) => name.endsWith('/layer.tar'))).toHaveLength(2);
    expect(listing.filter((name) => name.endsWith('/VERSION'))).toHaveLength(2);

    const manifestJson = execFileSync('tar', ['-xOf', archive, 'manifest.json'], { encoding: 'utf8' });
    expect(JSON.parse(manifestJson)).toEqual([
      {
        Config: `${hex(summary.configDigest)}.json`,
        RepoTags: ['example.com/app:v1', 'docker.io/library/busybox:latest'],
        Layers: summary.diffIds.map((digest) => `${hex(digest)}.tar`),
      },
    ]);
    const repositories = JSON.parse(
      execFileSync('tar', ['-xOf', archive, 'repositories'], { encoding: 'utf8' }),
    );
    const topId = Object.values(repositories['example.com/app'])[0] as string;
    expect(Object.keys(repositories)).toEqual(['docker.io/library/busybox', 'example.com/app']);
    expect(repositories['docker.io/library/busybox']).toEqual({ latest: topId });
    const topJson = JSON.parse(execFileSync('tar', ['-xOf', archive, `${topId}/json`], { encoding: 'utf8' }));
    expect(topJson.id).toBe(topId);
    expect(typeof topJson.parent).toBe('string');
    expect(topJson.os).toBe('linux');
    expect(topJson.architecture).toBe('amd64');
    expect(execFileSync('tar', ['-xOf', archive, `${topId}/VERSION`], { encoding: 'utf8' })).toBe('1.0');

    const reader = await openDockerArchive(archive);
    const loaded = await reader.loadImage(reader.chooseImage(parseNormalizedNamed('busybox:latest')).index);
    expect(loaded.configDigest).toBe(summary.configDigest);
    expect(loaded.layers.map((layer) => layer.diffId)).toEqual(summary.diffIds);
    await reader.close();
    expect((await readdir(directory)).filter((name) => name.startsWith('gantry-spool'))).toEqual([]);
  });

  it('gives the legacy layer IDs skopeo gives the same image', async () => {
    const image = await buildFixtureImage(fixturePresets.uncompressedLayers, {
      directory: path.join(directory, 'f'),
    });
    const { writeFixtureToOciLayout } = await import('@gantry/core/testing');
    await writeFixtureToOciLayout(image, path.join(directory, 'layout'), 't');
    const skopeoArchive = path.join(directory, 'skopeo.tar');
    execFileSync('skopeo', [
      'copy',
      '--insecure-policy',
      `oci:${directory}/layout:t`,
      `docker-archive:${skopeoArchive}:a/b:c`,
    ]);
    const { summary, config, layers } = await parts(image);
    const archive = path.join(directory, 'ours.tar');
    const writer = createDockerArchiveWriter(createWriteStream(archive));
    for (const [index, layer] of layers.entries()) {
      await writer.putBlob(
        Readable.from([layer]),
        { digest: summary.diffIds[index]!, size: layer.length },
        { isConfig: false },
      );
    }
    await writer.putBlob(Readable.from([config]), { size: -1 }, { isConfig: true });
    await writer.addImage({
      configDigest: summary.configDigest,
      layerDigests: summary.diffIds,
      repoTags: [parseNormalizedNamed('a/b:c')],
    });
    await writer.finish();
    const names = (file: string) =>
      execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n').sort();
    expect(names(archive)).toEqual(names(skopeoArchive));
    for (const file of ['manifest.json', 'repositories']) {
      expect(execFileSync('tar', ['-xOf', archive, file], { encoding: 'utf8' })).toBe(
        execFileSync('tar', ['-xOf', skopeoArchive, file], { encoding: 'utf8' }),
      );
    }
    for (const name of names(archive).filter((entry) => entry.endsWith('/json'))) {
      expect(execFileSync('tar', ['-xOf', archive, name], { encoding: 'utf8' })).toBe(
        execFileSync('tar', ['-xOf', skopeoArchive, name], { encoding: 'utf8' }),
      );
    }
  });

  it('refuses an image whose blobs were not written, and digest tags', async () => {
    const output = new PassThrough();
    output.resume();
    const writer = createDockerArchiveWriter(output);
    const config = Buffer.from('{"rootfs":{"type":"layers","diff_ids":[]}}');
    await writer.putBlob(Readable.from([config]), { size: config.length }, { isConfig: true });
    await expect(
      writer.addImage({ configDigest: digestOf('x'), layerDigests: [], repoTags: [] }),
    ).rejects.toMatchObject({ code: ErrorCodes.BlobNotFound });
    await expect(
      writer.addImage({ configDigest: digestOf(config), layerDigests: [digestOf('layer')], repoTags: [] }),
    ).rejects.toMatchObject({ code: ErrorCodes.BlobNotFound });
    await expect(
      writer.addImage({
        configDigest: digestOf(config),
        layerDigests: [],
        repoTags: [parseNormalizedNamed(`a@${digestOf('m')}`)],
      }),
    ).rejects.toMatchObject({ code: ErrorCodes.InvalidReference });
    writer.abort();
  });

  it('writes an existing blob once and consumes the repeated stream', async () => {
    const archive = path.join(directory, 'dup.tar');
    const writer = createDockerArchiveWriter(createWriteStream(archive));
    const layer = Buffer.from('not really a tar but bytes');
    const digest = digestOf(layer);
    await writer.putBlob(Readable.from([layer]), { digest, size: layer.length }, { isConfig: false });
    const again = Readable.from([layer]);
    await writer.putBlob(again, { digest, size: layer.length }, { isConfig: false });
    expect(again.readableEnded).toBe(true);
    await writer.finish();
    const listing = execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n');
    expect(listing.filter((name) => name === `${digestHex(digest)}.tar`)).toHaveLength(1);
    expect(createReadStream).toBeDefined();
  });

  it('writes the same archive into a file (header patched in place) as into a stream', async () => {
    const image = await buildFixtureImage(fixturePresets.dockerSchema2, {
      directory: path.join(directory, 'f'),
    });
    const { summary, config, layers } = await parts(image);
    const write = async (output: Parameters<typeof createDockerArchiveWriter>[0]) => {
      const writer = createDockerArchiveWriter(output, { temporaryDirectory: directory });
      await writer.putBlob(
        Readable.from([layers[0]!]),
        { digest: summary.diffIds[0]!, size: layers[0]!.length },
        { isConfig: false },
      );
      await writer.putBlob(Readable.from([layers[1]!]), { size: -1 }, { isConfig: false });
      await writer.putBlob(Readable.from([config]), { size: -1 }, { isConfig: true });
      await writer.addImage({
        configDigest: summary.configDigest,
        layerDigests: summary.diffIds,
        repoTags: [parseNormalizedNamed('example.com/app:v1')],
      });
      await writer.finish();
    };
    const streamed = path.join(directory, 'stream.tar');
    await write(createWriteStream(streamed));
    const inPlace = path.join(directory, 'file.tar');
    await write(await open(inPlace, 'wx'));
    expect((await readFile(inPlace)).equals(await readFile(streamed))).toBe(true);
  });

  it('streams concurrent layers of unknown size into a file one after another, without spooling, once each', async () => {
    const contents = Array.from({ length: 5 }, (_, index) => Buffer.alloc(700_000 + index * 1000, index + 1));
    // Slow sources, so that the layers overlap: one streams into the archive, the others wait their turn.
    const slow = (bytes: Buffer) =>
      Readable.from(
        (async function* () {
          for (let offset = 0; offset < bytes.length; offset += 100_000) {
            await sleep(5);
            yield bytes.subarray(offset, offset + 100_000);
          }
        })(),
      );
    const spoolDirectory = await mkdtemp(path.join(directory, 'spool-'));
    const archive = path.join(directory, 'concurrent.tar');
    const writer = createDockerArchiveWriter(await open(archive, 'wx'), {
      temporaryDirectory: spoolDirectory,
    });
    const running = Promise.all([
      ...contents.map((bytes) => writer.putBlob(slow(bytes), { size: -1 }, { isConfig: false })),
      // The same bytes as the first layer, under way at the same time: written once.
      writer.putBlob(slow(contents[0]!), { size: -1 }, { isConfig: false }),
    ]);
    await sleep(20);
    const spooledMeanwhile = await readdir(spoolDirectory);
    const written = await running;
    expect(spooledMeanwhile).toEqual([]);
    expect(written.map((blob) => blob.digest)).toEqual([
      ...contents.map((bytes) => digestOf(bytes)),
      digestOf(contents[0]!),
    ]);
    expect(written.map((blob) => blob.size)).toEqual([
      ...contents.map((bytes) => bytes.length),
      contents[0]!.length,
    ]);
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: contents.map((bytes) => digestOf(bytes)) },
      }),
    );
    await writer.putBlob(Readable.from([config]), { size: config.length }, { isConfig: true });
    await writer.addImage({
      configDigest: digestOf(config),
      layerDigests: contents.map((bytes) => digestOf(bytes)),
      repoTags: [parseNormalizedNamed('example.com/concurrent:v1')],
    });
    await writer.finish();
    expect(await readdir(spoolDirectory)).toEqual([]);

    const listing = execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n');
    for (const bytes of contents) {
      expect(listing.filter((name) => name === `${digestHex(digestOf(bytes))}.tar`)).toHaveLength(1);
    }
    const reader = await openDockerArchive(archive);
    try {
      const loaded = await reader.loadImage(0);
      for (const [index, layer] of loaded.layers.entries()) {
        expect((await buffer(reader.openLayer(layer).stream)).equals(contents[index]!)).toBe(true);
      }
    } finally {
      await reader.close();
    }
  });

  it('hands each chunk of a layer streamed in place to chunkWritten once it is in the file', async () => {
    const archive = path.join(directory, 'handed-back.tar');
    const writer = createDockerArchiveWriter(await open(archive, 'wx'), { temporaryDirectory: directory });
    const layer = Buffer.alloc(3 * 1024 * 1024 + 77);
    for (let index = 0; index < layer.length; index += 1) layer[index] = (index * 31) & 0xff;
    const pieces: Buffer[] = [];
    for (let offset = 0; offset < layer.length; offset += 100_000)
      pieces.push(Buffer.from(layer.subarray(offset, offset + 100_000)));
    const handedBack: Uint8Array[] = [];
    const stored = await writer.putBlob(
      Readable.from(pieces),
      { digest: digestOf(layer), size: -1 },
      {
        isConfig: false,
        // As a pool writing into the chunk again would: bytes not yet in the file would be lost.
        chunkWritten: (chunk) => {
          handedBack.push(chunk);
          chunk.fill(0);
        },
      },
    );
    expect(stored).toEqual({ digest: digestOf(layer), size: layer.length });
    expect(handedBack).toHaveLength(pieces.length);
    for (const [index, chunk] of handedBack.entries()) expect(chunk).toBe(pieces[index]);
    const config = Buffer.from(
      JSON.stringify({ os: 'linux', rootfs: { type: 'layers', diff_ids: [digestOf(layer)] } }),
    );
    await writer.putBlob(Readable.from([config]), { size: config.length }, { isConfig: true });
    await writer.addImage({ configDigest: digestOf(config), layerDigests: [digestOf(layer)], repoTags: [] });
    await writer.finish();
    const reader = await openDockerArchive(archive);
    try {
      const loaded = await reader.loadImage(0);
      expect((await buffer(reader.openLayer(loaded.layers[0]!).stream)).equals(layer)).toBe(true);
    } finally {
      await reader.close();
    }
  });

  it('takes a failed layer back out of a file, and writes its retry under the usual name', async () => {
    const archive = path.join(directory, 'retry.tar');
    const writer = createDockerArchiveWriter(await open(archive, 'wx'), { temporaryDirectory: directory });
    const layer = Buffer.alloc(300_000, 9);
    const digest = digestOf(layer);
    const failing = Readable.from(
      (async function* () {
        yield layer.subarray(0, 100_000);
        throw new Error('connection reset');
      })(),
    );
    await expect(writer.putBlob(failing, { size: -1 }, { isConfig: false })).rejects.toThrow(
      /connection reset/,
    );
    // As the contract asks of callers that name a digest, the stream is verified on the way in.
    const wrongDigest = digestOf('other');
    await expect(
      writer.putBlob(
        Readable.from(verifyingStage({ expectedDigest: wrongDigest })(Readable.from([layer]))),
        { digest: wrongDigest, size: -1 },
        { isConfig: false },
      ),
    ).rejects.toMatchObject({ code: ErrorCodes.DigestMismatch });
    await expect(
      writer.putBlob(Readable.from([layer.subarray(1)]), { digest, size: layer.length }, { isConfig: false }),
    ).rejects.toMatchObject({ code: ErrorCodes.SizeMismatch });
    expect(writer.hasBlob(digest)).toBeUndefined();
    expect(await writer.putBlob(Readable.from([layer]), { size: -1 }, { isConfig: false })).toEqual({
      digest,
      size: layer.length,
    });
    const config = Buffer.from(
      JSON.stringify({ os: 'linux', rootfs: { type: 'layers', diff_ids: [digest] } }),
    );
    await writer.putBlob(Readable.from([config]), { size: -1 }, { isConfig: true });
    await writer.addImage({ configDigest: digestOf(config), layerDigests: [digest], repoTags: [] });
    await writer.finish();
    const listing = execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n');
    expect(listing.filter((name) => name.endsWith('.tar') && !name.includes('/'))).toEqual([
      `${digestHex(digest)}.tar`,
    ]);
    const reader = await openDockerArchive(archive);
    try {
      const loaded = await reader.loadImage(0);
      expect((await buffer(reader.openLayer(loaded.layers[0]!).stream)).equals(layer)).toBe(true);
    } finally {
      await reader.close();
    }
  });

  it('writes several images sharing layers into one archive, which our reader and skopeo read', async () => {
    const base = Buffer.alloc(200_000, 1);
    const top = Buffer.alloc(150_000, 2);
    const configOf = (layers: Buffer[], created: string) =>
      Buffer.from(
        JSON.stringify({
          architecture: 'amd64',
          os: 'linux',
          created,
          rootfs: { type: 'layers', diff_ids: layers.map((layer) => digestOf(layer)) },
        }),
      );
    // Layers that are real tars, for skopeo: one file each.
    const tarOf = async (name: string, content: Buffer) => {
      const file = path.join(directory, `${name}.tar`);
      const output = createWriteStream(file);
      const { createTarWriter } = await import('@gantry/tar-archive');
      const tar = createTarWriter(output);
      await tar.addBytes(name, content);
      await tar.finish();
      return readFile(file);
    };
    const baseLayer = await tarOf('base', base);
    const topLayer = await tarOf('top', top);
    const small = configOf([baseLayer], '2024-01-01T00:00:00Z');
    const large = configOf([baseLayer, topLayer], '2024-01-02T00:00:00Z');
    const archive = path.join(directory, 'shared.tar');
    const writer = createDockerArchiveWriter(await open(archive, 'wx'));
    for (const layer of [baseLayer, topLayer, baseLayer]) {
      await writer.putBlob(Readable.from([layer]), { size: -1 }, { isConfig: false });
    }
    for (const config of [small, large]) {
      await writer.putBlob(Readable.from([config]), { size: config.length }, { isConfig: true });
    }
    await writer.addImage({
      configDigest: digestOf(small),
      layerDigests: [digestOf(baseLayer)],
      repoTags: [parseNormalizedNamed('example.com/small:v1')],
    });
    await writer.addImage({
      configDigest: digestOf(large),
      layerDigests: [digestOf(baseLayer), digestOf(topLayer)],
      repoTags: [parseNormalizedNamed('example.com/large:v1')],
    });
    await writer.finish();

    const listing = execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n');
    expect(listing.filter((name) => name === `${digestHex(digestOf(baseLayer))}.tar`)).toHaveLength(1);
    const reader = await openDockerArchive(archive);
    try {
      expect(reader.manifest).toHaveLength(2);
      const first = await reader.loadImage(
        reader.chooseImage(parseNormalizedNamed('example.com/small:v1')).index,
      );
      const second = await reader.loadImage(
        reader.chooseImage(parseNormalizedNamed('example.com/large:v1')).index,
      );
      expect(first.layers[0]!.path).toBe(second.layers[0]!.path);
      expect(second.layers.map((layer) => layer.diffId)).toEqual([digestOf(baseLayer), digestOf(topLayer)]);
      for (const [loaded, expected] of [
        [first, [baseLayer]],
        [second, [baseLayer, topLayer]],
      ] as const) {
        for (const [index, layer] of loaded.layers.entries()) {
          expect((await buffer(reader.openLayer(layer).stream)).equals(expected[index]!)).toBe(true);
        }
      }
    } finally {
      await reader.close();
    }
    // skopeo reads both images of the archive, each with its own config and the shared base layer.
    for (const [tag, config, layers] of [
      ['example.com/small:v1', small, [baseLayer]],
      ['example.com/large:v1', large, [baseLayer, topLayer]],
    ] as const) {
      const inspected = JSON.parse(
        execFileSync('skopeo', ['inspect', '--raw', `docker-archive:${archive}:${tag}`], {
          encoding: 'utf8',
        }),
      );
      expect(inspected.config.digest).toBe(digestOf(config));
      expect(inspected.layers.map((layer: { digest: string }) => layer.digest)).toEqual(
        layers.map((layer) => digestOf(layer)),
      );
      const layout = path.join(directory, `oci-${tag.split('/')[1]!.replace(':', '-')}`);
      execFileSync('skopeo', [
        'copy',
        '--insecure-policy',
        `docker-archive:${archive}:${tag}`,
        `oci:${layout}:t`,
      ]);
    }
  });

  for (const output of ['file', 'stream'] as const) {
    it(`writes a blob put twice at the same time once (${output})`, async () => {
      const archive = path.join(directory, `twice-${output}.tar`);
      const writer = createDockerArchiveWriter(
        output === 'file' ? await open(archive, 'wx') : createWriteStream(archive),
        { temporaryDirectory: directory },
      );
      const layer = Buffer.alloc(200_000, 5);
      const digest = digestOf(layer);
      const results = await Promise.all([
        writer.putBlob(Readable.from([layer]), { digest, size: layer.length }, { isConfig: false }),
        writer.putBlob(Readable.from([layer]), { digest, size: layer.length }, { isConfig: false }),
        writer.putBlob(Readable.from([layer]), { size: -1 }, { isConfig: false }),
      ]);
      expect(results).toEqual([
        { digest, size: layer.length },
        { digest, size: layer.length },
        { digest, size: layer.length },
      ]);
      await writer.finish();
      const listing = execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n');
      expect(listing).toEqual([`${digestHex(digest)}.tar`, 'manifest.json', 'repositories']);
    });
  }
});
