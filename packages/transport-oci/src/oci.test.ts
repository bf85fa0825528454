import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Digest, digestHex, digestOf, MediaTypes, verifyingStage } from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createOciTransport, ociTransport } from './index.js';
import {
  buildTestImage,
  buildTestIndex,
  imageBlobs,
  listBlobFiles,
  readAll,
  type TestImage,
  temporaryDirectory,
  writeLayoutByHand,
  writeThroughDestination,
} from './test-support/images.js';

const execFileAsync = promisify(execFile);

let directory = '';
let remove: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ directory, remove } = await temporaryDirectory());
});
afterEach(() => remove());

interface IndexJsonEntry {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

async function readIndexJson(layout: string): Promise<{ manifests: IndexJsonEntry[] }> {
  return JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'));
}

async function expectImageReadable(reference: string, image: TestImage, context = {}): Promise<void> {
  const source = await ociTransport.parseReference(reference).newImageSource(context);
  try {
    const manifest = await source.getManifest();
    expect(Buffer.from(manifest.bytes).equals(Buffer.from(image.manifest.bytes))).toBe(true);
    expect(manifest.mediaType).toBe(MediaTypes.OciManifest);
    for (const blob of imageBlobs(image)) {
      const { stream, size } = await source.getBlob({ digest: blob.digest, size: blob.bytes.byteLength });
      expect(size).toBe(blob.bytes.byteLength);
      expect(digestOf(await readAll(stream))).toBe(blob.digest);
    }
    expect(await source.getSignatures()).toEqual([]);
  } finally {
    await source.close();
  }
}

describe('destination and source', () => {
  it('round-trips an image, creating the layout', async () => {
    const layout = path.join(directory, 'new-layout');
    const image = buildTestImage({ layers: [{ a: '1' }, { b: '2' }] });
    const destination = await ociTransport.parseReference(`${layout}:v1`).newImageDestination();
    expect(destination.properties).toMatchObject({
      supportedManifestMimeTypes: [MediaTypes.OciManifest, MediaTypes.OciIndex],
      desiredLayerCompression: 'compress',
      acceptsForeignLayerURLs: true,
      supportsSignatures: false,
      hasThreadSafePutBlob: true,
      mustMatchRuntimeOS: false,
    });
    await writeThroughDestination(destination, image);

    expect(JSON.parse(await readFile(path.join(layout, 'oci-layout'), 'utf8'))).toEqual({
      imageLayoutVersion: '1.0.0',
    });
    const index = await readIndexJson(layout);
    expect(index.manifests).toEqual([
      {
        mediaType: MediaTypes.OciManifest,
        digest: image.manifest.digest,
        size: image.manifest.bytes.byteLength,
        annotations: { 'org.opencontainers.image.ref.name': 'v1' },
      },
    ]);
    const blobFile = path.join(layout, 'blobs', 'sha256', digestHex(image.config.digest));
    expect((await stat(blobFile)).mode & 0o777).toBe(0o644 & ~process.umask());
    expect(await listBlobFiles(path.join(layout, 'blobs'))).toEqual(
      [image.manifest, ...imageBlobs(image)].map((blob) => `sha256/${digestHex(blob.digest)}`).sort(),
    );
    await expectImageReadable(`${layout}:v1`, image);
    await expectImageReadable(layout, image); // the only image
    await expectImageReadable(`${layout}:@0`, image);
  });

  it('preserves layers when accepting uncompressed layers', async () => {
    const destination = await ociTransport
      .parseReference(`${directory}:x`)
      .newImageDestination({ transportOptions: { oci: { acceptUncompressedLayers: true } } });
    expect(destination.properties.desiredLayerCompression).toBe('preserve');
    await destination.close();
  });

  it('hands each chunk back through chunkWritten once it is in the file, not before', async () => {
    const destination = await ociTransport.parseReference(`${directory}:x`).newImageDestination();
    const chunks: Uint8Array[] = Array.from({ length: 40 }, (_, index) => Buffer.alloc(64 * 1024, index));
    const content = Buffer.concat(chunks);
    expect(content.includes(0xff)).toBe(false);
    const handedBack: Uint8Array[] = [];
    const written = await destination.putBlob(
      Readable.from(chunks),
      { digest: digestOf(content), size: content.length },
      {
        isConfig: false,
        chunkWritten: (chunk) => {
          // Scribbling over a chunk handed back must not change what was written.
          handedBack.push(chunk);
          chunk.fill(0xff);
        },
      },
    );
    expect(written).toEqual({ digest: digestOf(content), size: content.length });
    expect(handedBack).toHaveLength(chunks.length);
    // The very chunks, each once (compared by identity: a deep comparison of the buffers is slow).
    expect(new Set(handedBack).size).toBe(chunks.length);
    expect(handedBack.every((chunk) => chunks.includes(chunk))).toBe(true);
    // The blob gets its name once flushed to disk, in the background; a reuse check waits for that.
    await destination.tryReusingBlob?.(written, { isConfig: false, canSubstitute: false });
    // Compared with Buffer.equals: a deep comparison of 2.5 MiB takes tens of seconds on a loaded machine.
    expect(
      (await readFile(path.join(directory, 'blobs', 'sha256', digestHex(written.digest)))).equals(content),
    ).toBe(true);
    await destination.close();
  });

  it('hands each chunk of a blob written without a digest back once it is in the file and hashed', async () => {
    const destination = await ociTransport.parseReference(`${directory}:x`).newImageDestination();
    // Chunks large enough to be hashed on the thread pool (small ones are copied for hashing).
    const chunks: Uint8Array[] = Array.from({ length: 96 }, (_, index) => Buffer.alloc(128 * 1024, index));
    const content = Buffer.concat(chunks);
    expect(content.includes(0xff)).toBe(false);
    const handedBack: Uint8Array[] = [];
    const written = await destination.putBlob(
      Readable.from(chunks),
      { size: -1 },
      {
        isConfig: false,
        chunkWritten: (chunk) => {
          // Scribbling over a chunk handed back must change neither what was written nor its digest.
          handedBack.push(chunk);
          chunk.fill(0xff);
        },
      },
    );
    expect(written).toEqual({ digest: digestOf(content), size: content.length });
    expect(handedBack).toHaveLength(chunks.length);
    // The very chunks, each once (compared by identity: a deep comparison of the buffers is slow).
    expect(new Set(handedBack).size).toBe(chunks.length);
    expect(handedBack.every((chunk) => chunks.includes(chunk))).toBe(true);
    await destination.tryReusingBlob?.(written, { isConfig: false, canSubstitute: false });
    expect(
      (await readFile(path.join(directory, 'blobs', 'sha256', digestHex(written.digest)))).equals(content),
    ).toBe(true);
    await destination.close();
  });

  it('computes the digest of a blob written without one', async () => {
    const destination = await ociTransport.parseReference(`${directory}:x`).newImageDestination();
    const content = Buffer.from('some layer bytes');
    const written = await destination.putBlob(Readable.from([content]), { size: -1 }, { isConfig: false });
    expect(written).toEqual({ digest: digestOf(content), size: content.length });
    // The blob gets its name once flushed to disk, in the background; a reuse check waits for that.
    const reused = await destination.tryReusingBlob?.(
      { digest: written.digest, size: content.length },
      { isConfig: false, canSubstitute: true },
    );
    expect(reused).toEqual({ reused: true, blob: { digest: written.digest, size: content.length } });
    expect(await readFile(path.join(directory, 'blobs', 'sha256', digestHex(written.digest)))).toEqual(
      content,
    );
    const missing = await destination.tryReusingBlob?.(
      { digest: digestOf('other'), size: -1 },
      { isConfig: false, canSubstitute: true },
    );
    expect(missing).toEqual({ reused: false });
    await destination.close();
  });

  it('refuses a blob whose digest or size is wrong, leaving no file', async () => {
    const destination = await ociTransport.parseReference(`${directory}:x`).newImageDestination();
    const content = Buffer.from('actual bytes');
    // As the contract asks of callers that name a digest, the stream is verified on the way in.
    const verified = Readable.from(
      verifyingStage({ expectedDigest: digestOf('other bytes') })(Readable.from([content])),
    );
    await expect(
      destination.putBlob(verified, { digest: digestOf('other bytes'), size: -1 }, { isConfig: false }),
    ).rejects.toMatchObject({ code: 'ERR_GANTRY_DIGEST_MISMATCH' });
    await expect(
      destination.putBlob(
        Readable.from([content]),
        { digest: digestOf(content), size: 3 },
        { isConfig: false },
      ),
    ).rejects.toMatchObject({ code: 'ERR_GANTRY_SIZE_MISMATCH' });
    const failing = new Readable({
      read() {
        this.push(Buffer.from('partial'));
        this.destroy(new Error('source broke'));
      },
    });
    await expect(destination.putBlob(failing, { size: -1 }, { isConfig: false })).rejects.toThrow(
      /source broke/,
    );
    const controller = new AbortController();
    const endless = new Readable({
      read() {
        setTimeout(() => this.push(Buffer.alloc(1024)), 5);
      },
    });
    const pending = destination.putBlob(
      endless,
      { size: -1 },
      { isConfig: false, signal: controller.signal },
    );
    setTimeout(() => controller.abort(), 30);
    await expect(pending).rejects.toMatchObject({ code: 'ERR_GANTRY_ABORTED' });
    expect(await listBlobFiles(path.join(directory, 'blobs'))).toEqual([]);
    await destination.close();
  });

  it('refuses signatures and an instance manifest with a wrong digest', async () => {
    const destination = await ociTransport.parseReference(`${directory}:x`).newImageDestination();
    await expect(destination.putSignatures([new Uint8Array([1])])).rejects.toMatchObject({
      code: 'ERR_GANTRY_NOT_SUPPORTED',
    });
    await destination.putSignatures([]);
    await expect(
      destination.putManifest(new Uint8Array([1, 2]), MediaTypes.OciManifest, digestOf('something else')),
    ).rejects.toMatchObject({ code: 'ERR_GANTRY_DIGEST_MISMATCH' });
    await expect(destination.commit()).rejects.toThrow(/before the top-level manifest/);
    await destination.close();
  });

  it('refuses @N as a destination', async () => {
    await expect(ociTransport.parseReference(`${directory}:@0`).newImageDestination()).rejects.toMatchObject({
      code: 'ERR_GANTRY_INVALID_REFERENCE',
      message: expect.stringContaining('@0'),
    });
  });

  it('writes an entry without a name for oci:path, and replaces it when the same image is written again', async () => {
    const image = buildTestImage();
    await writeThroughDestination(await ociTransport.parseReference(directory).newImageDestination(), image);
    await writeThroughDestination(
      await ociTransport.parseReference(`${directory}:`).newImageDestination(),
      image,
    );
    const index = await readIndexJson(directory);
    expect(index.manifests).toEqual([
      {
        mediaType: MediaTypes.OciManifest,
        digest: image.manifest.digest,
        size: image.manifest.bytes.byteLength,
      },
    ]);
    await expectImageReadable(directory, image);
  });

  it('moves a name to the newer image, keeping the older one as an unnamed entry (as containers/image)', async () => {
    const first = buildTestImage({ label: 'first' });
    const second = buildTestImage({ label: 'second' });
    const other = buildTestImage({ label: 'other' });
    await writeThroughDestination(
      await ociTransport.parseReference(`${directory}:other`).newImageDestination(),
      other,
    );
    await writeThroughDestination(
      await ociTransport.parseReference(`${directory}:tag`).newImageDestination(),
      first,
    );
    await writeThroughDestination(
      await ociTransport.parseReference(`${directory}:tag`).newImageDestination(),
      second,
    );
    const index = await readIndexJson(directory);
    expect(
      index.manifests.map((entry) => [
        entry.digest,
        entry.annotations?.['org.opencontainers.image.ref.name'],
      ]),
    ).toEqual([
      [other.manifest.digest, 'other'],
      [first.manifest.digest, undefined],
      [second.manifest.digest, 'tag'],
    ]);
    await expectImageReadable(`${directory}:tag`, second);
    await expectImageReadable(`${directory}:@1`, first);
    // Writing the same image again under its name keeps a single entry.
    await writeThroughDestination(
      await ociTransport.parseReference(`${directory}:tag`).newImageDestination(),
      second,
    );
    expect((await readIndexJson(directory)).manifests).toHaveLength(3);
  });

  it('round-trips an index with its instances', async () => {
    const list = buildTestIndex([
      buildTestImage({ architecture: 'amd64', label: 'amd64' }),
      buildTestImage({ architecture: 'arm64', label: 'arm64' }),
    ]);
    await writeThroughDestination(
      await ociTransport.parseReference(`${directory}:multi`).newImageDestination(),
      list,
    );
    expect((await readIndexJson(directory)).manifests[0]).toMatchObject({
      mediaType: MediaTypes.OciIndex,
      digest: list.index.digest,
    });
    const source = await ociTransport.parseReference(`${directory}:multi`).newImageSource();
    const top = await source.getManifest();
    expect(top.mediaType).toBe(MediaTypes.OciIndex);
    expect(Buffer.from(top.bytes).equals(Buffer.from(list.index.bytes))).toBe(true);
    for (const image of list.images) {
      const instance = await source.getManifest(image.manifest.digest);
      expect(instance.mediaType).toBe(MediaTypes.OciManifest);
      expect(Buffer.from(instance.bytes).equals(Buffer.from(image.manifest.bytes))).toBe(true);
    }
    await expect(source.getManifest(digestOf('no such instance'))).rejects.toMatchObject({
      code: 'ERR_GANTRY_IMAGE_NOT_FOUND',
    });
    await source.close();
  });
});

describe('source lookups', () => {
  it('picks images by name and by @index in a hand-written layout', async () => {
    const a = buildTestImage({ label: 'a' });
    const b = buildTestImage({ label: 'b' });
    const unnamed = buildTestImage({ label: 'unnamed' });
    await writeLayoutByHand(directory, [
      { content: a, name: 'a' },
      { content: unnamed },
      { content: b, name: 'b:1.0' },
    ]);
    await expectImageReadable(`${directory}:a`, a);
    await expectImageReadable(`${directory}:b:1.0`, b);
    await expectImageReadable(`${directory}:@1`, unnamed);
    await expectImageReadable(`${directory}:@2`, b);
    await expect(ociTransport.parseReference(`${directory}:@3`).newImageSource()).rejects.toMatchObject({
      code: 'ERR_GANTRY_IMAGE_NOT_FOUND',
      message: expect.stringContaining('only 3 entries available'),
    });
    await expect(ociTransport.parseReference(directory).newImageSource()).rejects.toMatchObject({
      code: 'ERR_GANTRY_INVALID_REFERENCE',
      message: expect.stringContaining('more than one image'),
    });
  });

  it('reports a missing layout and a missing name, naming both', async () => {
    const missingLayout = path.join(directory, 'nothing-here');
    await expect(ociTransport.parseReference(`${missingLayout}:ref1`).newImageSource()).rejects.toMatchObject(
      {
        code: 'ERR_GANTRY_IMAGE_NOT_FOUND',
        message: expect.stringContaining(`${missingLayout}/index.json`),
      },
    );
    await writeLayoutByHand(directory, [{ content: buildTestImage(), name: 'present' }]);
    await expect(ociTransport.parseReference(`${directory}:absent`).newImageSource()).rejects.toMatchObject({
      code: 'ERR_GANTRY_IMAGE_NOT_FOUND',
      message: expect.stringMatching(new RegExp(`"absent".*${directory}`)),
    });
    await expect(ociTransport.parseReference(`${missingLayout}:ref1`).deleteImage()).rejects.toMatchObject({
      code: 'ERR_GANTRY_IMAGE_NOT_FOUND',
    });
  });

  it('reports a path without index.json with the system error, as skopeo (no garbled image description)', async () => {
    const missingLayout = path.join(directory, 'nothing-here');
    for (const reference of [
      missingLayout,
      `${missingLayout}:`,
      `${missingLayout}:name`,
      `${missingLayout}:@1`,
    ]) {
      await expect(ociTransport.parseReference(reference).newImageSource()).rejects.toMatchObject({
        code: 'ERR_GANTRY_IMAGE_NOT_FOUND',
        message: `open ${missingLayout}/index.json: no such file or directory`,
      });
    }
    const file = path.join(directory, 'a-file');
    await writeFile(file, 'x');
    await expect(ociTransport.parseReference(file).newImageSource()).rejects.toMatchObject({
      code: 'ERR_GANTRY_IMAGE_NOT_FOUND',
      message: `open ${file}/index.json: not a directory`,
    });
    const previous = process.cwd();
    process.chdir(directory);
    try {
      await expect(ociTransport.parseReference('').newImageSource()).rejects.toMatchObject({
        message: 'open index.json: no such file or directory',
      });
    } finally {
      process.chdir(previous);
    }
  });

  it('names the image a reference designates in messages as a whole phrase', async () => {
    await writeLayoutByHand(directory, [{ content: buildTestImage(), name: 'present' }]);
    const index = await readIndexJson(directory);
    const manifestPath = path.join(directory, 'blobs', 'sha256', index.manifests[0]!.digest.slice(7));
    await (await import('node:fs/promises')).rm(manifestPath);
    for (const [reference, phrase] of [
      [`${directory}:present`, 'of image "present" not found'],
      [`${directory}:@0`, 'of image @0 not found'],
      [directory, 'of the only image not found'],
    ] as const) {
      const source = await ociTransport.parseReference(reference).newImageSource();
      await expect(source.getManifest()).rejects.toMatchObject({
        code: 'ERR_GANTRY_IMAGE_NOT_FOUND',
        message: expect.stringContaining(phrase),
      });
      await source.close();
    }
  });

  it('rejects malformed layouts', async () => {
    await writeLayoutByHand(directory, [{ content: buildTestImage(), name: 'x' }]);
    await writeFile(path.join(directory, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '2.0.0' }));
    await expect(ociTransport.parseReference(`${directory}:x`).newImageSource()).rejects.toMatchObject({
      code: 'ERR_GANTRY_INVALID_LAYOUT',
      message: expect.stringContaining('imageLayoutVersion'),
    });
    await expect(ociTransport.parseReference(`${directory}:y`).newImageDestination()).rejects.toMatchObject({
      code: 'ERR_GANTRY_INVALID_LAYOUT',
    });
    await writeFile(path.join(directory, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    const hostile = {
      schemaVersion: 2,
      manifests: [{ mediaType: MediaTypes.OciManifest, digest: 'sha256:../../../etc/passwd', size: 1 }],
    };
    await writeFile(path.join(directory, 'index.json'), JSON.stringify(hostile));
    await expect(ociTransport.parseReference(`${directory}:@0`).newImageSource()).rejects.toMatchObject({
      code: 'ERR_GANTRY_INVALID_LAYOUT',
      message: expect.stringContaining('invalid digest'),
    });
    await writeFile(path.join(directory, 'index.json'), '{"schemaVersion": 2, "manifests": ');
    await expect(ociTransport.parseReference(`${directory}:x`).newImageSource()).rejects.toMatchObject({
      code: 'ERR_GANTRY_INVALID_LAYOUT',
    });
  });

  it('reports entries of unsupported types', async () => {
    await writeLayoutByHand(directory, [{ content: buildTestImage(), name: 'x' }]);
    const index = await readIndexJson(directory);
    index.manifests[0]!.mediaType = 'application/vnd.example.thing';
    await writeFile(path.join(directory, 'index.json'), JSON.stringify(index));
    await expect(ociTransport.parseReference(`${directory}:x`).newImageSource()).rejects.toMatchObject({
      code: 'ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE',
    });
  });

  it('reports missing blobs, and foreign layers clearly', async () => {
    const image = buildTestImage();
    await writeLayoutByHand(directory, [{ content: image, name: 'x' }]);
    const source = await ociTransport.parseReference(`${directory}:x`).newImageSource();
    const absent = digestOf('absent');
    await expect(source.getBlob({ digest: absent, size: -1 })).rejects.toMatchObject({
      code: 'ERR_GANTRY_BLOB_NOT_FOUND',
      message: expect.stringContaining(absent),
    });
    await expect(
      source.getBlob({ digest: absent, size: -1, urls: ['https://example.com/layer.tar.gz'] }),
    ).rejects.toMatchObject({
      code: 'ERR_GANTRY_NOT_SUPPORTED',
      message: expect.stringContaining('foreign layer'),
    });
    // A foreign layer that is present locally is served from the layout.
    const layer = image.layers[0]!;
    const local = await source.getBlob({ digest: layer.digest, size: -1, urls: ['https://example.com/x'] });
    expect(digestOf(await readAll(local.stream))).toBe(layer.digest);
    await source.close();
  });
});

describe('abandoned writes', () => {
  it('leave index.json and the blobs unchanged', async () => {
    const existing = buildTestImage({
      layers: [{ shared: 'layer' }, { own: 'existing' }],
      label: 'existing',
    });
    await writeThroughDestination(
      await ociTransport.parseReference(`${directory}:existing`).newImageDestination(),
      existing,
    );
    const indexBefore = await readFile(path.join(directory, 'index.json'), 'utf8');
    const blobsBefore = await listBlobFiles(path.join(directory, 'blobs'));

    // Shares its first layer with the existing image (same bytes, same digest).
    const abandoned = buildTestImage({
      layers: [{ shared: 'layer' }, { own: 'abandoned' }],
      label: 'abandoned',
    });
    expect(abandoned.layers[0]!.digest).toBe(existing.layers[0]!.digest);
    await writeThroughDestination(
      await ociTransport.parseReference(`${directory}:existing`).newImageDestination(),
      abandoned,
      { commit: false },
    );
    expect(await readFile(path.join(directory, 'index.json'), 'utf8')).toBe(indexBefore);
    expect(await listBlobFiles(path.join(directory, 'blobs'))).toEqual(blobsBefore);
    expect(
      await listBlobFiles(directory).then((files) => files.filter((file) => file.includes('lock'))),
    ).toEqual([]);
    await expectImageReadable(`${directory}:existing`, existing);
  });

  it('remove the layout directory they created', async () => {
    const layout = path.join(directory, 'fresh');
    await writeThroughDestination(
      await ociTransport.parseReference(`${layout}:x`).newImageDestination(),
      buildTestImage(),
      {
        commit: false,
      },
    );
    await expect(stat(layout)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('keep blobs another open destination of this process is writing', async () => {
    const image = buildTestImage();
    const keeper = await ociTransport.parseReference(`${directory}:keeper`).newImageDestination();
    const quitter = await ociTransport.parseReference(`${directory}:quitter`).newImageDestination();
    // The quitter writes the blobs first; the keeper finds and reuses them.
    for (const blob of imageBlobs(image)) {
      await quitter.putBlob(
        Readable.from([Buffer.from(blob.bytes)]),
        { digest: blob.digest, size: -1 },
        { isConfig: false },
      );
    }
    for (const blob of imageBlobs(image)) {
      const reused = await keeper.tryReusingBlob?.(
        { digest: blob.digest, size: -1 },
        { isConfig: false, canSubstitute: false },
      );
      expect(reused?.reused).toBe(true);
    }
    await quitter.close(); // abandons: must not delete what the keeper reused
    await keeper.putManifest(image.manifest.bytes, image.manifest.mediaType);
    await keeper.commit();
    await keeper.close();
    await expectImageReadable(`${directory}:keeper`, image);
  });

  it('make a commit fail when a blob disappeared instead of recording a broken image', async () => {
    const image = buildTestImage();
    const destination = await ociTransport.parseReference(`${directory}:x`).newImageDestination();
    for (const blob of imageBlobs(image)) {
      await destination.putBlob(
        Readable.from([Buffer.from(blob.bytes)]),
        { digest: blob.digest, size: -1 },
        { isConfig: false },
      );
    }
    await destination.putManifest(image.manifest.bytes, image.manifest.mediaType);
    // Blobs get their names in the background: the reuse check waits until this one has it.
    const layer = image.layers[0]!;
    await expect(
      destination.tryReusingBlob!(
        { digest: layer.digest, size: -1 },
        { isConfig: false, canSubstitute: false },
      ),
    ).resolves.toMatchObject({ reused: true });
    const { unlink } = await import('node:fs/promises');
    await unlink(path.join(directory, 'blobs', 'sha256', digestHex(layer.digest)));
    await expect(destination.commit()).rejects.toMatchObject({ code: 'ERR_GANTRY_BLOB_NOT_FOUND' });
    await destination.close();
    await expect(stat(path.join(directory, 'index.json'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('blobs flushed to disk in the background', () => {
  it('get their names before commit records the image, each blob once', async () => {
    const image = buildTestImage();
    const destination = await ociTransport.parseReference(`${directory}:x`).newImageDestination();
    // The same blob twice at once (two layers with the same bytes): installed one after the other.
    const writes = [...imageBlobs(image), imageBlobs(image)[0]!].map((blob) =>
      destination.putBlob(
        Readable.from([Buffer.from(blob.bytes)]),
        { digest: blob.digest, size: -1 },
        { isConfig: false },
      ),
    );
    await Promise.all(writes);
    await destination.putManifest(image.manifest.bytes, image.manifest.mediaType);
    await destination.commit();
    await destination.close();
    const files = await listBlobFiles(path.join(directory, 'blobs'));
    for (const blob of imageBlobs(image)) expect(files).toContain(`sha256/${digestHex(blob.digest)}`);
    expect(files.filter((name) => name.startsWith('.gantry-tmp-'))).toEqual([]);
    await expectImageReadable(`${directory}:x`, image);
  });

  it('write large blobs intact while parts of them are flushed early', async () => {
    const destination = await ociTransport.parseReference(`${directory}:x`).newImageDestination();
    const content = Buffer.alloc(13 * 1024 * 1024 + 17);
    for (let index = 0; index < content.length; index += 4096) content.writeUInt32LE(index, index);
    async function* slowly() {
      for (let offset = 0; offset < content.length; offset += 256 * 1024) {
        yield content.subarray(offset, offset + 256 * 1024);
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    const written = await destination.putBlob(Readable.from(slowly()), { size: -1 }, { isConfig: false });
    expect(written).toEqual({ digest: digestOf(content), size: content.length });
    const reused = await destination.tryReusingBlob?.(written, { isConfig: false, canSubstitute: false });
    expect(reused?.reused).toBe(true);
    const stored = await readFile(path.join(directory, 'blobs', 'sha256', digestHex(written.digest)));
    expect(stored.equals(content)).toBe(true);
    await destination.close();
  });

  it('make commit fail, naming the blob, when one cannot be put in place, leaving no temporary file', async () => {
    const image = buildTestImage();
    const [first] = imageBlobs(image);
    // Something else (a directory) already has the blob's name: the rename after the flush fails.
    await mkdir(path.join(directory, 'blobs', 'sha256', digestHex(first!.digest), 'squatter'), {
      recursive: true,
    });
    const destination = await ociTransport.parseReference(`${directory}:x`).newImageDestination();
    for (const blob of imageBlobs(image)) {
      await destination.putBlob(
        Readable.from([Buffer.from(blob.bytes)]),
        { digest: blob.digest, size: -1 },
        { isConfig: false },
      );
    }
    await destination.putManifest(image.manifest.bytes, image.manifest.mediaType);
    await expect(destination.commit()).rejects.toThrow(first!.digest);
    await destination.close();
    await expect(stat(path.join(directory, 'index.json'))).rejects.toThrow(/ENOENT/);
    const leftovers = (await readdir(path.join(directory, 'blobs'))).filter((name) =>
      name.startsWith('.gantry-tmp-'),
    );
    expect(leftovers).toEqual([]);
  });
});

describe('concurrent commits', () => {
  it('keep every image when destinations commit to one layout in parallel', async () => {
    const images = Array.from({ length: 6 }, (_, position) =>
      buildTestImage({ layers: [{ common: 'base' }, { own: String(position) }], label: String(position) }),
    );
    await Promise.all(
      images.map(async (image, position) =>
        writeThroughDestination(
          await ociTransport.parseReference(`${directory}:image${position}`).newImageDestination(),
          image,
        ),
      ),
    );
    const index = await readIndexJson(directory);
    expect(
      index.manifests.map((entry) => entry.annotations['org.opencontainers.image.ref.name']).sort(),
    ).toEqual(images.map((_, position) => `image${position}`).sort());
    for (const [position, image] of images.entries())
      await expectImageReadable(`${directory}:image${position}`, image);
  });

  it('keep every image when several processes commit to one layout', async () => {
    const here = path.dirname(fileURLToPath(import.meta.url));
    const worker = path.join(here, 'test-support', 'commit-worker.ts');
    const register = path.join(here, 'test-support', 'register-typescript.mjs');
    const processes = ['p0', 'p1', 'p2', 'p3'];
    await Promise.all(
      processes.map((prefix) =>
        execFileAsync(process.execPath, [
          '--conditions=@gantry/source',
          '--import',
          register,
          worker,
          directory,
          prefix,
          '5',
        ]),
      ),
    );
    const names = (await readIndexJson(directory)).manifests.map(
      (entry) => entry.annotations['org.opencontainers.image.ref.name'],
    );
    expect(names.sort()).toEqual(
      processes.flatMap((prefix) => [0, 1, 2, 3, 4].map((n) => `${prefix}-${n}`)).sort(),
    );
    const source = await ociTransport.parseReference(`${directory}:p2-3`).newImageSource();
    expect(JSON.parse(Buffer.from((await source.getManifest()).bytes).toString()).layers).toHaveLength(2);
    await source.close();
  });

  it('breaks a stale lock left by a dead holder, and waits for a live one', async () => {
    const transport = createOciTransport({ lock: { timeoutMs: 300, staleAfterMs: 60_000 } });
    const lockPath = path.join(directory, 'index.json.lock');
    // A lock held by a live process (this one) makes the commit time out.
    await writeFile(
      lockPath,
      JSON.stringify({ pid: process.pid, hostname: (await import('node:os')).hostname(), token: 't' }),
    );
    await expect(
      writeThroughDestination(
        await transport.parseReference(`${directory}:a`).newImageDestination(),
        buildTestImage(),
      ),
    ).rejects.toMatchObject({
      code: 'ERR_GANTRY_TRANSIENT',
      message: expect.stringContaining('index.json.lock'),
    });
    // A lock of a process that no longer exists is broken at once.
    await writeFile(
      lockPath,
      JSON.stringify({ pid: 2 ** 22 + 12345, hostname: (await import('node:os')).hostname(), token: 't' }),
    );
    await writeThroughDestination(
      await transport.parseReference(`${directory}:a`).newImageDestination(),
      buildTestImage(),
    );
    expect((await readIndexJson(directory)).manifests).toHaveLength(1);
    await expect(stat(lockPath)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('deleteImage', () => {
  it('removes the entry and the blobs only it used, keeping shared ones', async () => {
    const kept = buildTestImage({ layers: [{ common: 'base' }, { own: 'kept' }], label: 'kept' });
    const deleted = buildTestImage({ layers: [{ common: 'base' }, { own: 'deleted' }], label: 'deleted' });
    const list = buildTestIndex([
      deleted,
      buildTestImage({ architecture: 'arm64', layers: [{ own: 'arm' }] }),
    ]);
    await writeThroughDestination(
      await ociTransport.parseReference(`${directory}:kept`).newImageDestination(),
      kept,
    );
    await writeThroughDestination(
      await ociTransport.parseReference(`${directory}:deleted`).newImageDestination(),
      deleted,
    );
    await writeThroughDestination(
      await ociTransport.parseReference(`${directory}:list`).newImageDestination(),
      list,
    );

    await ociTransport.parseReference(`${directory}:deleted`).deleteImage();
    let index = await readIndexJson(directory);
    expect(index.manifests.map((entry) => entry.annotations['org.opencontainers.image.ref.name'])).toEqual([
      'kept',
      'list',
    ]);
    // Everything of "deleted" is still used by the list.
    const expected = (images: TestImage[], extra: Digest[] = []): string[] =>
      [
        ...new Set([
          ...images.flatMap((image) => [image.manifest, ...imageBlobs(image)].map((blob) => blob.digest)),
          ...extra,
        ]),
      ]
        .map((digest) => `sha256/${digestHex(digest)}`)
        .sort();
    expect(await listBlobFiles(path.join(directory, 'blobs'))).toEqual(
      expected([kept, ...list.images], [list.index.digest]),
    );

    await ociTransport.parseReference(`${directory}:list`).deleteImage();
    index = await readIndexJson(directory);
    expect(index.manifests).toHaveLength(1);
    expect(await listBlobFiles(path.join(directory, 'blobs'))).toEqual(expected([kept]));
    await expectImageReadable(`${directory}:kept`, kept);

    await ociTransport.parseReference(`${directory}:kept`).deleteImage();
    expect((await readIndexJson(directory)).manifests).toEqual([]);
    expect(await listBlobFiles(path.join(directory, 'blobs'))).toEqual([]);
    await expect(ociTransport.parseReference(`${directory}:kept`).deleteImage()).rejects.toMatchObject({
      code: 'ERR_GANTRY_IMAGE_NOT_FOUND',
    });
  });

  it('deletes by @index', async () => {
    const a = buildTestImage({ label: 'a' });
    const b = buildTestImage({ label: 'b' });
    await writeLayoutByHand(directory, [{ content: a }, { content: b }]);
    await ociTransport.parseReference(`${directory}:@0`).deleteImage();
    expect((await readIndexJson(directory)).manifests.map((entry) => entry.digest)).toEqual([
      b.manifest.digest,
    ]);
    await expectImageReadable(directory, b);
  });

  it('deletes nothing when a remaining entry cannot be walked', async () => {
    const a = buildTestImage({ label: 'a' });
    const b = buildTestImage({ label: 'b' });
    await writeLayoutByHand(directory, [
      { content: a, name: 'a' },
      { content: b, name: 'b' },
    ]);
    const { unlink } = await import('node:fs/promises');
    await unlink(path.join(directory, 'blobs', 'sha256', digestHex(b.manifest.digest)));
    const indexBefore = await readFile(path.join(directory, 'index.json'), 'utf8');
    const blobsBefore = await listBlobFiles(path.join(directory, 'blobs'));
    await expect(ociTransport.parseReference(`${directory}:a`).deleteImage()).rejects.toMatchObject({
      code: 'ERR_GANTRY_INVALID_LAYOUT',
      message: expect.stringContaining(b.manifest.digest),
    });
    expect(await readFile(path.join(directory, 'index.json'), 'utf8')).toBe(indexBefore);
    expect(await listBlobFiles(path.join(directory, 'blobs'))).toEqual(blobsBefore);
  });
});

describe('shared blob directory', () => {
  it('writes blobs and manifests there, reads them back, and never deletes them', async () => {
    const shared = path.join(directory, 'shared');
    const layout = path.join(directory, 'layout');
    const context = { transportOptions: { oci: { sharedBlobDirectory: shared } } };
    const image = buildTestImage();
    await writeThroughDestination(
      await ociTransport.parseReference(`${layout}:x`).newImageDestination(context),
      image,
    );
    const all = [image.manifest, ...imageBlobs(image)]
      .map((blob) => `sha256/${digestHex(blob.digest)}`)
      .sort();
    expect(await listBlobFiles(shared)).toEqual(all);
    expect(await listBlobFiles(path.join(layout, 'blobs'))).toEqual([]);
    await expectImageReadable(`${layout}:x`, image, context);
    // Without the shared directory the layout alone lacks the manifest.
    await expect(
      ociTransport
        .parseReference(`${layout}:x`)
        .newImageSource()
        .then((source) => source.getManifest()),
    ).rejects.toMatchObject({ code: 'ERR_GANTRY_IMAGE_NOT_FOUND' });

    // A second layout reuses the shared blobs.
    const second = path.join(directory, 'second');
    const destination = await ociTransport.parseReference(`${second}:y`).newImageDestination(context);
    for (const blob of imageBlobs(image)) {
      expect(
        (
          await destination.tryReusingBlob?.(
            { digest: blob.digest, size: -1 },
            { isConfig: false, canSubstitute: false },
          )
        )?.reused,
      ).toBe(true);
    }
    await destination.putManifest(image.manifest.bytes, image.manifest.mediaType);
    await destination.commit();
    await destination.close();

    await ociTransport.parseReference(`${layout}:x`).deleteImage(context);
    expect((await readIndexJson(layout)).manifests).toEqual([]);
    expect(await listBlobFiles(shared)).toEqual(all);
    await expectImageReadable(`${second}:y`, image, context);

    // An abandoned write into the shared directory leaves its blobs (they may serve other layouts).
    const other = buildTestImage({ label: 'abandoned' });
    await writeThroughDestination(
      await ociTransport.parseReference(`${second}:z`).newImageDestination(context),
      other,
      {
        commit: false,
      },
    );
    expect((await readIndexJson(second)).manifests).toHaveLength(1);
  });
});
