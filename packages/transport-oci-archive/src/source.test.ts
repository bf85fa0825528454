/**
 * Choosing the image in an archive (name, @N, the only one), reading archives from pipes, and the errors
 * of missing archives and images.
 */
import { spawn } from 'node:child_process';
import { open, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  writeFixtureToDestination,
} from '@gantry/core/testing';
import {
  digestHex,
  digestOf,
  type ErrorCode,
  ErrorCodes,
  hasErrorCode,
  MediaTypes,
} from '@gantry/core/transport';
import { rawTarHeader } from '@gantry/tar-archive/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ociArchiveTransport } from './index.js';
import { runTool, temporaryDirectory } from './test-support/tools.js';

let directory = '';
let remove: () => Promise<void> = async () => {};
let imageA: FixtureImage;
let imageB: FixtureImage;
let twoImages = '';
beforeAll(async () => {
  ({ directory, remove } = await temporaryDirectory());
  imageA = await buildFixtureImage(fixturePresets.ociMinimal, { directory: path.join(directory, 'a') });
  imageB = await buildFixtureImage(fixturePresets.whiteoutLayers, { directory: path.join(directory, 'b') });
  twoImages = path.join(directory, 'two.tar');
  for (const [name, image] of [
    ['first', imageA],
    ['second', imageB],
  ] as const) {
    await writeFixtureToDestination(
      image,
      await ociArchiveTransport.parseReference(`${twoImages}:${name}`).newImageDestination(),
    );
  }
});
afterAll(() => remove());

async function topLevelBytes(reference: string): Promise<string> {
  const source = await ociArchiveTransport.parseReference(reference).newImageSource();
  try {
    return Buffer.from((await source.getManifest()).bytes).toString();
  } finally {
    await source.close();
  }
}

async function expectCode(operation: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<void> {
  let failure: unknown;
  try {
    await operation;
  } catch (error) {
    failure = error;
  }
  expect(failure, 'the operation must reject').toBeDefined();
  if (!hasErrorCode(failure, code)) throw failure;
  expect((failure as Error).message).toMatch(message);
}

describe('oci-archive: source', () => {
  it('selects images by name and by @N', async () => {
    const a = Buffer.from(imageA.topLevel.bytes).toString();
    const b = Buffer.from(imageB.topLevel.bytes).toString();
    expect(await topLevelBytes(`${twoImages}:first`)).toBe(a);
    expect(await topLevelBytes(`${twoImages}:second`)).toBe(b);
    expect(await topLevelBytes(`${twoImages}:@0`)).toBe(a);
    expect(await topLevelBytes(`${twoImages}:@1`)).toBe(b);
  });

  it('asks to choose when the archive holds several images and none is named', async () => {
    await expectCode(
      ociArchiveTransport.parseReference(twoImages).newImageSource(),
      ErrorCodes.InvalidReference,
      /more than one image in OCI archive .* \(2\), choose an image/,
    );
  });

  it('reports missing archives, names and indexes as ERR_GANTRY_IMAGE_NOT_FOUND, and a directory as no archive', async () => {
    await expectCode(
      ociArchiveTransport.parseReference(`${directory}/missing.tar:t`).newImageSource(),
      ErrorCodes.ImageNotFound,
      /^stat .*missing\.tar: no such file or directory$/,
    );
    await expectCode(
      ociArchiveTransport.parseReference(`${directory}:t`).newImageSource(),
      ErrorCodes.InvalidLayout,
      /is a directory, not an OCI archive/,
    );
    await expectCode(
      ociArchiveTransport.parseReference(`${twoImages}:third`).newImageSource(),
      ErrorCodes.ImageNotFound,
      /no descriptor found for reference "third"/,
    );
    await expectCode(
      ociArchiveTransport.parseReference(`${twoImages}:@2`).newImageSource(),
      ErrorCodes.ImageNotFound,
      /index 2 is too large, only 2 entries available/,
    );
  });

  it('reads an archive from a FIFO (spooled to a temporary file first)', async () => {
    const fifo = path.join(directory, 'fifo');
    await runTool('mkfifo', [fifo]);
    const writer = spawn('sh', ['-c', `cat "${twoImages}" > "${fifo}"`], { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => writer.once('exit', resolve));
    const source = await ociArchiveTransport
      .parseReference(`${fifo}:second`)
      .newImageSource({ temporaryDirectory: directory });
    try {
      expect(Buffer.from((await source.getManifest()).bytes)).toEqual(Buffer.from(imageB.topLevel.bytes));
      const layer = imageB.blobs.get(imageB.images[0]!.layerDigests[0]!)!;
      const blob = await source.getBlob({ digest: layer.digest, size: layer.size });
      let size = 0;
      for await (const chunk of blob.stream) size += (chunk as Buffer).byteLength;
      expect(size).toBe(layer.size);
    } finally {
      await source.close();
    }
    expect(await exited).toBe(0);
  });

  it('reads an archive without oci-layout, and refuses an unknown layout version', async () => {
    const layout = path.join(directory, 'layout');
    await runTool('mkdir', ['-p', layout]);
    await runTool('tar', ['-xf', twoImages, '-C', layout]);
    const withoutLayoutFile = path.join(directory, 'no-layout-file.tar');
    await runTool('tar', ['-cf', withoutLayoutFile, '-C', layout, 'index.json', 'blobs']);
    expect(await topLevelBytes(`${withoutLayoutFile}:first`)).toBe(
      Buffer.from(imageA.topLevel.bytes).toString(),
    );
    await writeFile(path.join(layout, 'oci-layout'), '{"imageLayoutVersion":"2.0.0"}');
    const futureVersion = path.join(directory, 'future.tar');
    await runTool('tar', ['-cf', futureVersion, '-C', layout, '.']);
    await expectCode(
      ociArchiveTransport.parseReference(`${futureVersion}:first`).newImageSource(),
      ErrorCodes.InvalidLayout,
      /unsupported imageLayoutVersion "2\.0\.0"/,
    );
  });

  it('opens a multi-GiB archive and reads its manifest and config in well under a second (no extraction)', async () => {
    // A 6 GiB layer entry stored as a hole of a sparse file: only headers and small entries are read.
    const layerSize = 6 * 1024 ** 3;
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [digestOf('x')] },
      }),
    );
    const layerDigest = digestOf('the bytes are never read');
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.OciManifest,
        config: { mediaType: MediaTypes.OciConfig, digest: digestOf(config), size: config.byteLength },
        layers: [{ mediaType: MediaTypes.OciLayerGzip, digest: layerDigest, size: layerSize }],
      }),
    );
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: MediaTypes.OciManifest,
            digest: digestOf(manifest),
            size: manifest.byteLength,
            annotations: { 'org.opencontainers.image.ref.name': 'big' },
          },
        ],
      }),
    );
    const file = path.join(directory, 'big.tar');
    const handle = await open(file, 'wx');
    let position = 0;
    const entry = async (name: string, size: number, content?: Buffer) => {
      await handle.write(rawTarHeader({ name, size }), 0, 512, position);
      if (content) await handle.write(content, 0, content.byteLength, position + 512);
      position += 512 + Math.ceil(size / 512) * 512;
    };
    try {
      await entry(`blobs/sha256/${digestHex(layerDigest)}`, layerSize);
      await entry(`blobs/sha256/${digestHex(digestOf(config))}`, config.byteLength, config);
      await entry(`blobs/sha256/${digestHex(digestOf(manifest))}`, manifest.byteLength, manifest);
      await entry('index.json', index.byteLength, index);
      await handle.truncate(position + 1024);
    } finally {
      await handle.close();
    }
    const started = performance.now();
    const source = await ociArchiveTransport.parseReference(`${file}:big`).newImageSource();
    try {
      expect(Buffer.from((await source.getManifest()).bytes)).toEqual(manifest);
      const blob = await source.getBlob({ digest: digestOf(config), size: config.byteLength });
      const chunks: Buffer[] = [];
      for await (const chunk of blob.stream) chunks.push(chunk as Buffer);
      expect(Buffer.concat(chunks)).toEqual(config);
      expect((await source.getBlob({ digest: layerDigest, size: layerSize })).size).toBe(layerSize);
    } finally {
      await source.close();
    }
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe('compressed OCI archives', () => {
  it.each([
    ['gzip', 'gz'],
    ['bzip2', 'bz2'],
    ['xz', 'xz'],
    ['zstd', 'zst'],
  ])('reads a %s-compressed archive as skopeo does, blobs included', async (tool, extension) => {
    const compressed = path.join(directory, `two.tar.${extension}`);
    await runTool('sh', ['-c', `${tool} -c < "$0" > "$1"`, twoImages, compressed]);
    for (const [name, image] of [
      ['first', imageA],
      ['second', imageB],
    ] as const) {
      const reference = `${compressed}:${name}`;
      expect(await topLevelBytes(reference)).toBe(Buffer.from(image.topLevel.bytes).toString());
      expect(await runTool('skopeo', ['inspect', '--raw', `oci-archive:${reference}`])).toBe(
        Buffer.from(image.topLevel.bytes).toString(),
      );
      const source = await ociArchiveTransport.parseReference(reference).newImageSource();
      try {
        for (const [digest, blob] of image.blobs) {
          const { stream, size } = await source.getBlob({ digest, size: blob.size });
          const chunks: Buffer[] = [];
          for await (const chunk of stream) chunks.push(chunk as Buffer);
          expect(size).toBe(blob.size);
          expect(digestOf(Buffer.concat(chunks))).toBe(digest);
        }
      } finally {
        await source.close();
      }
    }
  });

  it('refuses a truncated compressed archive, naming it', async () => {
    const compressed = path.join(directory, 'whole.tar.xz');
    await runTool('sh', ['-c', 'xz -c < "$0" > "$1"', twoImages, compressed]);
    const truncated = path.join(directory, 'truncated.tar.xz');
    const bytes = await (await import('node:fs/promises')).readFile(compressed);
    await writeFile(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
    await expectCode(
      ociArchiveTransport.parseReference(`${truncated}:first`).newImageSource(),
      ErrorCodes.InvalidLayout,
      /truncated\.tar\.xz.*corrupt or truncated xz data/,
    );
  });
});
