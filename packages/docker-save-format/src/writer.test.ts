import { execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { type Digest, digestHex, digestOf, ErrorCodes, parseNormalizedNamed } from '@gantry/core';
import { buildFixtureImage, type FixtureImage, fixturePresets } from '@gantry/core/testing';
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
});
