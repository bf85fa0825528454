/**
 * The transport's contract behaviour: what the copy pipeline relies on (sources, destinations, commit and
 * close semantics, pipes, tags). Interoperability with skopeo and podman is in interop.test.ts.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  writeFixtureToDestination,
} from '@gantry/core/testing';
import {
  type Digest,
  digestOf,
  ErrorCodes,
  hasErrorCode,
  MediaTypes,
  verifyingStage,
} from '@gantry/core/transport';
import { buildRawTar } from '@gantry/tar-archive/test-support';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dockerArchiveTransport, listTags } from './index.js';
import {
  type Collected,
  collectingReference,
  fixtureReference,
  run,
  temporaryDirectory,
} from './test-support/helpers.js';

let directory = '';
let remove: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ directory, remove } = await temporaryDirectory());
});
afterEach(() => remove());

const policy = insecureAcceptAnythingPolicy();

async function fixture(name: keyof typeof fixturePresets): Promise<FixtureImage> {
  return buildFixtureImage(fixturePresets[name], { directory: path.join(directory, `fixture-${name}`) });
}

async function writeArchive(image: FixtureImage, reference: string, context = {}) {
  return copyImage(fixtureReference(image), dockerArchiveTransport.parseReference(reference), {
    policy,
    destinationContext: context,
  });
}

/** Copies the archive's image out through the copy pipeline (which verifies every digest). */
async function readArchive(reference: string): Promise<Collected> {
  const collected: Collected = { blobs: new Map(), committed: false };
  await copyImage(dockerArchiveTransport.parseReference(reference), collectingReference(collected), {
    policy,
  });
  return collected;
}

function configOf(collected: Collected): { digest: Digest; diffIds: Digest[] } {
  const manifest = JSON.parse(Buffer.from(collected.manifest!.bytes).toString()) as {
    config: { digest: Digest };
  };
  const config = JSON.parse(collected.blobs.get(manifest.config.digest)!.toString()) as {
    rootfs: { diff_ids: Digest[] };
  };
  return { digest: manifest.config.digest, diffIds: config.rootfs.diff_ids };
}

const singleImagePresets = [
  'ociMinimal',
  'dockerSchema2',
  'uncompressedLayers',
  'dockerUncompressed',
  'everyEntryType',
  'longAndNonAsciiNames',
  'manySmallFiles',
  'whiteoutLayers',
  'specialCharacterConfig',
] as const;

describe('round trips through copyImage', () => {
  for (const preset of singleImagePresets) {
    it(`keeps the config digest and DiffIDs of preset ${preset}`, async () => {
      const image = await fixture(preset);
      const archive = path.join(directory, 'image.tar');
      const written = await writeArchive(image, `${archive}:example.com/${preset.toLowerCase()}:v1`);
      expect(written.manifestMediaType).toBe(MediaTypes.DockerManifest);
      const collected = await readArchive(`${archive}:example.com/${preset.toLowerCase()}:v1`);
      expect(collected.committed).toBe(true);
      expect(configOf(collected)).toEqual({
        digest: image.images[0]!.configDigest,
        diffIds: image.images[0]!.diffIds,
      });
      // Layers are stored uncompressed: their digests are the DiffIDs.
      for (const diffId of image.images[0]!.diffIds) expect(collected.blobs.has(diffId)).toBe(true);
    });
  }

  it('copies from one archive to another without spooling (digests and sizes known)', async () => {
    const image = await fixture('dockerSchema2');
    const first = path.join(directory, 'first.tar');
    await writeArchive(image, `${first}:a:b`);
    // A temporary directory that does not exist: any spooling would fail the copy.
    const spool = path.join(directory, 'no-such-directory');
    const second = path.join(directory, 'second.tar');
    await copyImage(
      dockerArchiveTransport.parseReference(`${first}:a:b`),
      dockerArchiveTransport.parseReference(`${second}:c:d`),
      {
        policy,
        sourceContext: { temporaryDirectory: spool },
        destinationContext: { temporaryDirectory: spool },
      },
    );
    expect(configOf(await readArchive(`${second}:c:d`))).toEqual({
      digest: image.images[0]!.configDigest,
      diffIds: image.images[0]!.diffIds,
    });
  });

  it('copies the host platform image of a manifest list', async () => {
    const image = await fixture('multiArchOci');
    const archive = path.join(directory, 'list.tar');
    await copyImage(fixtureReference(image), dockerArchiveTransport.parseReference(archive), {
      policy,
      sourceContext: { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    });
    const arm = image.images.find((entry) => entry.platform.architecture === 'arm64')!;
    expect(configOf(await readArchive(archive)).digest).toBe(arm.configDigest);
  });
});

describe('destinations', () => {
  it('refuses a non-empty existing file, and replaces an empty one', async () => {
    const image = await fixture('ociMinimal');
    const archive = path.join(directory, 'existing.tar');
    await writeFile(archive, 'something');
    const error = await writeArchive(image, archive).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(hasErrorCode(error, ErrorCodes.NotSupported), String(error)).toBe(true);
    expect((error as Error).message).toMatch(
      /doesn't support modifying existing images: .*existing\.tar exists and is not empty/,
    );
    expect(await readFile(archive, 'utf8')).toBe('something');
    await writeFile(archive, '');
    await writeArchive(image, archive);
    expect((await stat(archive)).size).toBeGreaterThan(0);
  });

  it('writers to one path take turns: one opened while another writes refuses the archive that one committed', async () => {
    const [imageA, imageB] = await Promise.all([fixture('dockerUncompressed'), fixture('ociMinimal')]);
    const archive = path.join(directory, 'shared.tar');
    const first = await dockerArchiveTransport.parseReference(archive).newImageDestination();
    expect(await readdir(directory)).toContain('.shared.tar.gantry-lock');
    // Started while the first writer holds the path: it waits, then finds the first one's archive.
    const second = writeArchive(imageB, archive).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    await writeFixtureToDestination(imageA, first);
    const error = await second;
    expect(hasErrorCode(error, ErrorCodes.NotSupported), String(error)).toBe(true);
    expect((error as Error).message).toMatch(/shared\.tar exists and is not empty/);
    const collected = await readArchive(archive);
    expect(collected.manifest).toBeDefined();
    expect((await readdir(directory)).filter((name) => name.includes('shared'))).toEqual(['shared.tar']);
  });

  it('refuses @N destinations', async () => {
    await expect(
      dockerArchiveTransport.parseReference(`${directory}/x.tar:@0`).newImageDestination(),
    ).rejects.toMatchObject({
      code: ErrorCodes.InvalidReference,
      message: expect.stringContaining('must not contain a manifest index @0'),
    });
  });

  it('leaves nothing behind after close() without commit()', async () => {
    const image = await fixture('dockerSchema2');
    const destination = await dockerArchiveTransport
      .parseReference(`${directory}/abandoned.tar`)
      .newImageDestination();
    const summary = image.images[0]!;
    const blob = image.blobs.get(summary.configDigest)!;
    await destination.putBlob(blob.open(), { digest: blob.digest, size: blob.size }, { isConfig: true });
    await destination.close();
    expect(await readdir(directory)).toEqual(
      expect.not.arrayContaining([expect.stringMatching(/abandoned/)]),
    );
    await expect(
      dockerArchiveTransport.parseReference(`${directory}/abandoned.tar`).newImageSource(),
    ).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
    });
  });

  for (const target of ['file', 'fifo'] as const) {
    it(`keeps working after a failed putBlob, and retries the blob (${target})`, async () => {
      const image = await fixture('dockerUncompressed');
      const layerDigest = image.images[0]!.layerDigests[0]!;
      const layer = image.blobs.get(layerDigest)!;
      let archive = path.join(directory, 'retried.tar');
      let readerDone: Promise<unknown> = Promise.resolve(0);
      let reference = archive;
      if (target === 'fifo') {
        reference = path.join(directory, 'pipe');
        execFileSync('mkfifo', [reference]);
        archive = path.join(directory, 'from-pipe.tar');
        const reader = spawn('sh', ['-c', `cat "${reference}" > "${archive}"`]);
        readerDone = new Promise((resolve) => reader.on('close', resolve));
      }
      const destination = await dockerArchiveTransport.parseReference(reference).newImageDestination();
      try {
        async function* failing() {
          let sent = 0;
          for await (const chunk of layer.open()) {
            yield chunk as Buffer;
            sent += (chunk as Buffer).length;
            if (sent > 100) break;
          }
          throw new Error('simulated read failure');
        }
        await expect(
          destination.putBlob(
            Readable.from(failing()),
            { digest: layerDigest, size: layer.size },
            { isConfig: false },
          ),
        ).rejects.toThrow('simulated read failure');
        const wrong = Buffer.alloc(layer.size, 7);
        await expect(
          destination.putBlob(
            Readable.from(
              verifyingStage({ expectedDigest: layerDigest, expectedSize: layer.size })(
                Readable.from([wrong]),
              ),
            ),
            { digest: layerDigest, size: layer.size },
            { isConfig: false },
          ),
        ).rejects.toMatchObject({ code: ErrorCodes.DigestMismatch });
        expect(
          await destination.tryReusingBlob!(
            { digest: layerDigest, size: layer.size },
            { isConfig: false, canSubstitute: false },
          ),
        ).toEqual({
          reused: false,
        });
        await writeFixtureToDestination(image, destination);
      } finally {
        await destination.close();
      }
      expect(await readerDone).toBe(0);
      // The copy verifies every layer against its DiffID: the failed attempts are not used.
      expect(configOf(await readArchive(archive))).toEqual({
        digest: image.images[0]!.configDigest,
        diffIds: image.images[0]!.diffIds,
      });
      const listing = execFileSync('tar', ['-tf', archive], { encoding: 'utf8' });
      const hex = layerDigest.slice('sha256:'.length);
      expect(listing).toContain(`${hex}.tar`);
      if (target === 'fifo') {
        // A pipe cannot take an entry back: the attempts stay as unreferenced zero-padded entries.
        expect(listing).toContain(`${hex}.2.tar`);
      } else {
        // A file is truncated back to where a failed entry began: nothing of the attempts remains.
        expect(listing).not.toContain(`${hex}.1.tar`);
        expect(listing.split('\n').filter((name) => name.startsWith(hex))).toEqual([`${hex}.tar`]);
      }
      await run('skopeo', ['inspect', `docker-archive:${archive}`]);
    });
  }

  it('removes the partial archive when the copy is aborted', async () => {
    const image = await fixture('uncompressedLayers');
    const controller = new AbortController();
    const error = await copyImage(
      fixtureReference(image),
      dockerArchiveTransport.parseReference(`${directory}/aborted.tar`),
      {
        policy,
        signal: controller.signal,
        onProgress: (event) => {
          if (event.type === 'blob-progress') controller.abort();
        },
      },
    ).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(hasErrorCode(error, ErrorCodes.Aborted), String(error)).toBe(true);
    expect((await readdir(directory)).filter((name) => name.includes('aborted'))).toEqual([]);
  });

  it('refuses signatures, manifest list instances, and non-schema2 manifests', async () => {
    const destination = await dockerArchiveTransport
      .parseReference(`${directory}/s.tar`)
      .newImageDestination();
    try {
      expect(destination.properties).toMatchObject({
        supportedManifestMimeTypes: [MediaTypes.DockerManifest],
        desiredLayerCompression: 'decompress',
        supportsSignatures: false,
        hasThreadSafePutBlob: true,
      });
      await destination.putSignatures([]);
      await expect(destination.putSignatures([new Uint8Array([1])])).rejects.toMatchObject({
        code: ErrorCodes.NotSupported,
      });
      await expect(
        destination.putManifest(new Uint8Array(), MediaTypes.DockerManifest, digestOf('x')),
      ).rejects.toMatchObject({
        code: ErrorCodes.NotSupported,
      });
      const oci = Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.OciManifest, config: {}, layers: [] }),
      );
      await expect(destination.putManifest(oci, MediaTypes.OciManifest)).rejects.toMatchObject({
        code: ErrorCodes.UnsupportedManifestType,
      });
    } finally {
      await destination.close();
    }
  });

  it('streams into a FIFO', async () => {
    const image = await fixture('dockerSchema2');
    const fifo = path.join(directory, 'pipe');
    execFileSync('mkfifo', [fifo]);
    const output = path.join(directory, 'from-pipe.tar');
    const reader = spawn('sh', ['-c', `cat "${fifo}" > "${output}"`]);
    const readerDone = new Promise((resolve) => reader.on('close', resolve));
    await writeArchive(image, `${fifo}:piped:latest`);
    expect(await readerDone).toBe(0);
    expect(configOf(await readArchive(`${output}:piped:latest`)).digest).toBe(image.images[0]!.configDigest);
  });

  it('records additional tags from transportOptions, and lists tags like skopeo list-tags', async () => {
    const image = await fixture('ociMinimal');
    const archive = path.join(directory, 'tags.tar');
    await writeArchive(image, `${archive}:example.com/app:v1`, {
      transportOptions: { 'docker-archive': { additionalTags: ['busybox', 'example.com/app:v2'] } },
    });
    const tags = ['example.com/app:v1', 'docker.io/library/busybox:latest', 'example.com/app:v2'];
    expect(await listTags(archive)).toEqual(tags);
    const skopeoOutput = JSON.parse(
      execFileSync('skopeo', ['list-tags', `docker-archive:${archive}`], { encoding: 'utf8' }),
    );
    expect(skopeoOutput.Tags).toEqual(await listTags(archive));
    for (const tag of ['busybox:latest', 'example.com/app:v2']) {
      expect(configOf(await readArchive(`${archive}:${tag}`)).digest).toBe(image.images[0]!.configDigest);
    }
    await expect(
      writeArchive(image, path.join(directory, 'bad.tar'), {
        transportOptions: { 'docker-archive': { additionalTags: [`a@${digestOf('x')}`] } },
      }),
    ).rejects.toMatchObject({ code: ErrorCodes.InvalidReference });
  });

  it('lists @N for untagged images', async () => {
    const image = await fixture('ociMinimal');
    const archive = path.join(directory, 'untagged.tar');
    await writeArchive(image, archive);
    expect(await listTags(archive)).toEqual(['@0']);
    const skopeoOutput = JSON.parse(
      execFileSync('skopeo', ['list-tags', `docker-archive:${archive}`], { encoding: 'utf8' }),
    );
    expect(skopeoOutput.Tags).toEqual(['@0']);
    expect(configOf(await readArchive(`${archive}:@0`)).digest).toBe(image.images[0]!.configDigest);
  });
});

describe('hostile archives through the transport', () => {
  const cases: Array<[string, () => Buffer, RegExp]> = [
    [
      'a .. entry',
      () => buildRawTar([{ name: '../../etc/cron.d/x', data: 'x' }]),
      /"\.\.\/\.\.\/etc\/cron\.d\/x".*"\.\." component/,
    ],
    ['an absolute entry', () => buildRawTar([{ name: '/etc/passwd', data: 'x' }]), /absolute path/],
    [
      'an escaping symlink',
      () => buildRawTar([{ name: 'manifest.json', typeflag: '2', linkName: '../../../etc/passwd' }]),
      /points outside the archive/,
    ],
    [
      'duplicate manifest.json',
      () =>
        buildRawTar([
          { name: 'manifest.json', data: '[]' },
          { name: 'manifest.json', data: '[]' },
        ]),
      /duplicate entry/,
    ],
    [
      'a truncated archive',
      () => buildRawTar([{ name: 'manifest.json', data: '[]', size: 4096 }], { endBlocks: false }),
      /truncated tar archive/,
    ],
  ];
  for (const [title, bytes, message] of cases) {
    it(`refuses ${title} with ERR_GANTRY_INVALID_LAYOUT and writes nothing`, async () => {
      const archive = path.join(directory, 'hostile.tar');
      await writeFile(archive, bytes());
      const before = await readdir(directory);
      const error = await dockerArchiveTransport
        .parseReference(archive)
        .newImageSource({ temporaryDirectory: directory })
        .then(
          () => undefined,
          (caught: unknown) => caught,
        );
      expect(hasErrorCode(error, ErrorCodes.InvalidLayout), String(error)).toBe(true);
      expect((error as Error).message).toMatch(message);
      expect(await readdir(directory)).toEqual(before);
    });
  }

  it('refuses a layer whose bytes disagree with the size recorded for it by the tar header', async () => {
    const image = await fixture('dockerUncompressed');
    const archive = path.join(directory, 'cut.tar');
    await writeArchive(image, archive);
    const bytes = await readFile(archive);
    await writeFile(archive, bytes.subarray(0, 1024));
    await expect(dockerArchiveTransport.parseReference(archive).newImageSource()).rejects.toMatchObject({
      code: ErrorCodes.InvalidLayout,
      message: expect.stringMatching(/truncated tar archive/),
    });
  });
});

describe('sources', () => {
  it('reads an archive from a FIFO (spooled)', async () => {
    const image = await fixture('ociMinimal');
    const archive = path.join(directory, 'plain.tar');
    await writeArchive(image, `${archive}:fifo:test`);
    const fifo = path.join(directory, 'in-pipe');
    execFileSync('mkfifo', [fifo]);
    const writer = spawn('sh', ['-c', `cat "${archive}" > "${fifo}"`]);
    const writerDone = new Promise((resolve) => writer.on('close', resolve));
    expect(configOf(await readArchive(`${fifo}:fifo:test`)).digest).toBe(image.images[0]!.configDigest);
    expect(await writerDone).toBe(0);
  });

  it('reports a missing archive, a missing tag and an unknown blob', async () => {
    await expect(
      dockerArchiveTransport.parseReference(`${directory}/none.tar`).newImageSource(),
    ).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
    });
    const image = await fixture('ociMinimal');
    const archive = path.join(directory, 'one.tar');
    await writeArchive(image, `${archive}:a:b`);
    await expect(
      dockerArchiveTransport.parseReference(`${archive}:a:c`).newImageSource(),
    ).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
      message: expect.stringContaining('Tag "docker.io/library/a:c" not found'),
    });
    const source = await dockerArchiveTransport.parseReference(archive).newImageSource();
    try {
      await expect(source.getBlob({ digest: digestOf('nothing'), size: -1 })).rejects.toMatchObject({
        code: ErrorCodes.BlobNotFound,
      });
      await expect(source.getManifest(digestOf('instance'))).rejects.toMatchObject({
        code: ErrorCodes.ImageNotFound,
      });
      expect(await source.getSignatures()).toEqual([]);
    } finally {
      await source.close();
    }
  });

  it('fails the copy with ERR_GANTRY_DIGEST_MISMATCH when a layer does not match its DiffID', async () => {
    const image = await fixture('dockerUncompressed');
    const archive = path.join(directory, 'tampered.tar');
    await writeArchive(image, archive);
    const bytes = await readFile(archive);
    // Flip one byte inside the first layer file (its data starts right after the first 512-byte header).
    bytes[512 + 600] = (bytes[512 + 600]! + 1) % 256;
    await writeFile(archive, bytes);
    const error = await readArchive(archive).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(hasErrorCode(error, ErrorCodes.DigestMismatch), String(error)).toBe(true);
  });
});
