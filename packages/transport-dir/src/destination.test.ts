import { mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import {
  type Digest,
  digestHex,
  digestOf,
  ErrorCodes,
  type ImageDestination,
  MediaTypes,
  verifyingStage,
} from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDirTransport } from './index.js';
import {
  handBuiltImage,
  handBuiltIndex,
  putImageBlobs,
  streamOf,
  writeHandBuiltImage,
} from './test-support/hand-built-image.js';

const transport = createDirTransport({ durable: false });
const durableTransport = createDirTransport();
const version = 'Directory Transport Version: 1.1\n';
const encoder = new TextEncoder();

let top: string;
beforeEach(async () => {
  top = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
});
afterEach(async () => {
  await rm(top, { recursive: true, force: true });
});

async function listing(directory: string): Promise<string[]> {
  return (await readdir(directory)).sort();
}

async function snapshot(directory: string): Promise<Map<string, string>> {
  const result = new Map<string, string>();
  for (const name of await listing(directory)) {
    result.set(name, (await readFile(path.join(directory, name))).toString('base64'));
  }
  return result;
}

async function expectRejectCode(promise: Promise<unknown>, code: string, message?: RegExp | string) {
  await expect(promise).rejects.toMatchObject({ code });
  if (message !== undefined) await expect(promise).rejects.toThrow(message);
}

function failingStream(bytes: Uint8Array, failAfter: number): Readable {
  return Readable.from(
    (async function* () {
      yield bytes.subarray(0, failAfter);
      throw new Error('source stream broke');
    })(),
  );
}

describe('dir: destination', () => {
  it('writes the layout of containers/image and reads it back (durable writes)', async () => {
    const image = handBuiltImage('round-trip');
    const directory = path.join(top, 'new');
    const reference = durableTransport.parseReference(directory);
    expect(reference.policyConfigurationIdentity()).toBe(path.join(await realpath(top), 'new'));
    const signatures = [encoder.encode('first signature'), encoder.encode('second\0signature')];
    await writeHandBuiltImage(await durableTransport.parseReference(directory).newImageDestination(), image, {
      signatures,
    });

    const expectedNames = [
      'manifest.json',
      'signature-1',
      'signature-2',
      'version',
      digestHex(image.config.digest),
      ...image.layers.map((layer) => digestHex(layer.digest)),
    ].sort();
    expect(await listing(directory)).toEqual(expectedNames);
    expect(await readFile(path.join(directory, 'version'), 'utf8')).toBe(version);
    expect(new Uint8Array(await readFile(path.join(directory, 'manifest.json')))).toEqual(image.manifest);
    for (const blob of [image.config, ...image.layers]) {
      expect(new Uint8Array(await readFile(path.join(directory, digestHex(blob.digest))))).toEqual(
        blob.bytes,
      );
      expect((await stat(path.join(directory, digestHex(blob.digest)))).mode & 0o777).toBe(0o644);
    }
    expect(await readFile(path.join(directory, 'signature-2'), 'utf8')).toBe('second\0signature');

    const source = await transport.parseReference(directory).newImageSource();
    try {
      expect(source.properties.hasThreadSafeGetBlob).toBe(true);
      const manifest = await source.getManifest();
      expect(manifest.mediaType).toBe(image.mediaType); // guessed from the bytes
      expect(manifest.bytes).toEqual(image.manifest);
      for (const blob of [image.config, ...image.layers]) {
        const { stream, size } = await source.getBlob({ digest: blob.digest, size: -1 });
        expect(size).toBe(blob.bytes.length);
        const chunks: Buffer[] = [];
        for await (const chunk of stream) chunks.push(chunk as Buffer);
        expect(new Uint8Array(Buffer.concat(chunks))).toEqual(blob.bytes);
      }
      expect(await source.getSignatures()).toEqual(signatures);
    } finally {
      await source.close();
    }
  });

  it('reports its properties from the context', async () => {
    const reference = transport.parseReference(path.join(top, 'image'));
    const cases = [
      [{}, 'preserve'],
      [{ transportOptions: { dir: { forceCompress: true } } }, 'compress'],
      [{ transportOptions: { dir: { forceDecompress: true } } }, 'decompress'],
    ] as const;
    for (const [context, compression] of cases) {
      const destination = await reference.newImageDestination(context);
      expect(destination.properties).toEqual({
        supportedManifestMimeTypes: undefined,
        desiredLayerCompression: compression,
        acceptsForeignLayerURLs: false,
        mustMatchRuntimeOS: false,
        supportsSignatures: true,
        hasThreadSafePutBlob: true,
        ignoresEmbeddedDockerReference: false,
      });
      await destination.close();
    }
    await expectRejectCode(
      reference.newImageDestination({
        transportOptions: { dir: { forceCompress: true, forceDecompress: true } },
      }),
      ErrorCodes.NotSupported,
      'Cannot compress and decompress at the same time',
    );
    await expectRejectCode(
      reference.newImageDestination({ transportOptions: { dir: { forceCompress: 'yes' } } }),
      ErrorCodes.Usage,
      'transportOptions."dir".forceCompress must be a boolean, got "yes"',
    );
    await expect(stat(path.join(top, 'image'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('stores instance manifests and instance signatures of a list', async () => {
    const images = [handBuiltImage('amd64'), handBuiltImage('arm64', 1)];
    const index = handBuiltIndex(images);
    const directory = path.join(top, 'list');
    const destination = await transport.parseReference(directory).newImageDestination();
    try {
      for (const image of images) await putImageBlobs(destination, image);
      for (const image of images)
        await destination.putManifest(image.manifest, image.mediaType, image.manifestDigest);
      await destination.putManifest(index.bytes, 'application/vnd.oci.image.index.v1+json');
      await destination.putSignatures([encoder.encode('amd64 sig')], images[0]!.manifestDigest);
      await destination.putSignatures([encoder.encode('list sig')]);
      await destination.commit();
    } finally {
      await destination.close();
    }
    const [first, second] = images.map((image) => digestHex(image.manifestDigest));
    const names = await listing(directory);
    expect(names).toContain(`${first}.manifest.json`);
    expect(names).toContain(`${second}.manifest.json`);
    expect(names).toContain(`${first}.signature-1`);
    expect(names).not.toContain(`${second}.signature-1`);
    expect(names).toContain('signature-1');
    expect(names.filter((name) => name.startsWith('.'))).toEqual([]);

    const source = await transport.parseReference(directory).newImageSource();
    try {
      expect(await source.getManifest()).toEqual({ bytes: index.bytes, mediaType: MediaTypes.OciIndex });
      for (const image of images) {
        expect(await source.getManifest(image.manifestDigest)).toEqual({
          bytes: image.manifest,
          mediaType: image.mediaType,
        });
      }
      expect(await source.getSignatures(images[0]!.manifestDigest)).toEqual([encoder.encode('amd64 sig')]);
      expect(await source.getSignatures(images[1]!.manifestDigest)).toEqual([]);
      expect(await source.getSignatures()).toEqual([encoder.encode('list sig')]);
      await expectRejectCode(
        source.getManifest(digestOf('not an instance')),
        ErrorCodes.ImageNotFound,
        `${digestHex(digestOf('not an instance'))}.manifest.json`,
      );
    } finally {
      await source.close();
    }
  });

  it('computes the digest of a blob written without one', async () => {
    const directory = path.join(top, 'image');
    const destination = await transport.parseReference(directory).newImageDestination();
    try {
      const bytes = encoder.encode('content with an unknown digest');
      const stored = await destination.putBlob(streamOf(bytes), { size: -1 }, { isConfig: false });
      expect(stored).toEqual({ digest: digestOf(bytes), size: bytes.length });
      const reuse = await destination.tryReusingBlob!(
        { digest: digestOf(bytes), size: -1 },
        { isConfig: false, canSubstitute: true },
      );
      expect(reuse).toEqual({ reused: true, blob: { digest: digestOf(bytes), size: bytes.length } });
    } finally {
      await destination.close();
    }
  });

  it('hands each chunk back through chunkWritten once it is in the file, not before', async () => {
    const directory = path.join(top, 'image');
    const destination = await transport.parseReference(directory).newImageDestination();
    try {
      const chunks = Array.from({ length: 40 }, (_, index) => Buffer.alloc(64 * 1024, index));
      const content = Buffer.concat(chunks);
      expect(content.includes(0xff)).toBe(false);
      const handedBack: Uint8Array[] = [];
      const stored = await destination.putBlob(
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
      expect(stored).toEqual({ digest: digestOf(content), size: content.length });
      expect(handedBack).toHaveLength(chunks.length);
      expect(new Set(handedBack)).toEqual(new Set(chunks));
      await destination.putManifest(
        encoder.encode('{"schemaVersion":2}'),
        'application/vnd.oci.image.manifest.v1+json',
      );
      await destination.commit();
      expect(await readFile(path.join(directory, digestHex(stored.digest)))).toEqual(content);
    } finally {
      await destination.close();
    }
  });

  it('accepts concurrent putBlob calls, including the same blob twice, and sha512 digests', async () => {
    const directory = path.join(top, 'image');
    const image = handBuiltImage('concurrent', 3);
    const extra = encoder.encode('a blob named by its sha512 digest');
    const sha512 = digestOf(extra, 'sha512');
    const destination = await transport.parseReference(directory).newImageDestination();
    try {
      const blobs = [...image.layers, image.layers[0]!, image.config];
      await Promise.all([
        ...blobs.map((blob) =>
          destination.putBlob(
            streamOf(blob.bytes, 3),
            { digest: blob.digest, size: blob.bytes.length },
            { isConfig: false },
          ),
        ),
        destination.putBlob(streamOf(extra), { digest: sha512, size: -1 }, { isConfig: false }),
      ]);
      await destination.putManifest(image.manifest, image.mediaType);
      await destination.commit();
    } finally {
      await destination.close();
    }
    expect(await readFile(path.join(directory, digestHex(sha512)), 'utf8')).toBe(
      'a blob named by its sha512 digest',
    );
    const source = await transport.parseReference(directory).newImageSource();
    try {
      const { stream, size } = await source.getBlob({ digest: sha512, size: -1 });
      stream.destroy();
      expect(size).toBe(extra.length);
      for (const layer of image.layers) {
        const blob = await source.getBlob({ digest: layer.digest, size: -1 });
        blob.stream.destroy();
        expect(blob.size).toBe(layer.bytes.length);
      }
    } finally {
      await source.close();
    }
  });

  describe('abandoned writes', () => {
    async function staleFiles(directory: string): Promise<string[]> {
      return (await listing(directory)).filter((name) => name.startsWith('.') || name.endsWith('.partial'));
    }

    it('close() without commit() into a new directory removes what it created', async () => {
      // The parent must exist (as with containers/image, parsing resolves it); the directory is created.
      expect(() => transport.parseReference(path.join(top, 'a/b/image'))).toThrow(
        /no such file or directory/,
      );
      const directory = path.join(top, 'image');
      const destination = await transport.parseReference(directory).newImageDestination();
      const image = handBuiltImage('abandoned');
      await putImageBlobs(destination, image);
      await destination.putManifest(image.manifest, image.mediaType);
      await destination.putSignatures([encoder.encode('sig')]);
      // Before commit, nothing of the image is visible in the directory.
      expect(await listing(directory)).toEqual([
        expect.stringMatching(/^\.gantry-tmp-.*\.staging$/),
        'version',
      ]);
      await destination.close();
      await destination.close(); // idempotent
      expect(await listing(top)).toEqual([]);
    });

    it('close() without commit() into an empty existing directory leaves it empty', async () => {
      const directory = path.join(top, 'image');
      await mkdir(directory);
      await writeHandBuiltImage(
        await transport.parseReference(directory).newImageDestination(),
        handBuiltImage('x'),
        {
          commit: false,
        },
      );
      expect(await listing(directory)).toEqual([]);
    });

    it('close() without commit() over an existing image leaves that image untouched', async () => {
      const directory = path.join(top, 'image');
      const old = handBuiltImage('old');
      await writeHandBuiltImage(await transport.parseReference(directory).newImageDestination(), old, {
        signatures: [encoder.encode('old sig')],
      });
      const before = await snapshot(directory);
      const destination = await transport.parseReference(directory).newImageDestination();
      const replacement = handBuiltImage('new');
      await putImageBlobs(destination, replacement);
      await destination.putManifest(replacement.manifest, replacement.mediaType);
      // The old image is still what readers see.
      const source = await transport.parseReference(directory).newImageSource();
      expect((await source.getManifest()).bytes).toEqual(old.manifest);
      await source.close();
      await destination.close();
      expect(await snapshot(directory)).toEqual(before);
    });

    it('a failing blob stream leaves no temporary file and no blob', async () => {
      const directory = path.join(top, 'image');
      const destination = await transport.parseReference(directory).newImageDestination();
      try {
        const bytes = encoder.encode('some layer bytes that will not all arrive');
        await expect(
          destination.putBlob(
            failingStream(bytes, 10),
            { digest: digestOf(bytes), size: bytes.length },
            { isConfig: false },
          ),
        ).rejects.toThrow('source stream broke');
        const staging = (await listing(directory)).find((name) => name.startsWith('.gantry-tmp-'))!;
        expect(await listing(path.join(directory, staging))).toEqual([]);
        expect(
          await destination.tryReusingBlob!(
            { digest: digestOf(bytes), size: -1 },
            { isConfig: false, canSubstitute: false },
          ),
        ).toEqual({ reused: false });
      } finally {
        await destination.close();
      }
      expect(await staleFiles(top)).toEqual([]);
      expect(await listing(top)).toEqual([]);
    });

    it('rejects a blob whose digest or size is not the one announced, keeping nothing', async () => {
      const directory = path.join(top, 'image');
      const destination = await transport.parseReference(directory).newImageDestination();
      try {
        const bytes = encoder.encode('actual bytes');
        // As the contract asks of callers that name a digest, the stream is verified on the way in.
        const verified = Readable.from(
          verifyingStage({ expectedDigest: digestOf('other bytes') })(streamOf(bytes)),
        );
        await expectRejectCode(
          destination.putBlob(verified, { digest: digestOf('other bytes'), size: -1 }, { isConfig: false }),
          ErrorCodes.DigestMismatch,
          /digest mismatch/,
        );
        await expectRejectCode(
          destination.putBlob(
            streamOf(bytes),
            { digest: digestOf(bytes), size: bytes.length + 1 },
            { isConfig: false },
          ),
          ErrorCodes.SizeMismatch,
        );
        const staging = (await listing(directory)).find((name) => name.startsWith('.gantry-tmp-'))!;
        expect(await listing(path.join(directory, staging))).toEqual([]);
      } finally {
        await destination.close();
      }
      expect(await listing(top)).toEqual([]);
    });

    it('an aborted putBlob rejects with ERR_GANTRY_ABORTED and keeps nothing', async () => {
      const directory = path.join(top, 'image');
      const destination = await transport.parseReference(directory).newImageDestination();
      const controller = new AbortController();
      const slow = Readable.from(
        (async function* () {
          yield encoder.encode('part one');
          controller.abort();
          await new Promise((resolve) => setTimeout(resolve, 20));
          yield encoder.encode('part two');
        })(),
      );
      try {
        await expectRejectCode(
          destination.putBlob(slow, { size: -1 }, { isConfig: false, signal: controller.signal }),
          ErrorCodes.Aborted,
        );
      } finally {
        await destination.close();
      }
      expect(await listing(top)).toEqual([]);
    });

    it('commit() without a top-level manifest fails and close() cleans up', async () => {
      const directory = path.join(top, 'image');
      const destination = await transport.parseReference(directory).newImageDestination();
      await putImageBlobs(destination, handBuiltImage('no manifest'));
      await expectRejectCode(destination.commit(), ErrorCodes.Internal, /without a top-level manifest/);
      await destination.close();
      expect(await listing(top)).toEqual([]);
    });
  });

  describe('overwriting', () => {
    it('refuses a non-empty directory without the version file, changing nothing', async () => {
      const directory = path.join(top, 'important');
      await mkdir(directory);
      await writeFile(path.join(directory, 'thesis.txt'), 'precious');
      await expectRejectCode(
        transport.parseReference(directory).newImageDestination(),
        ErrorCodes.InvalidLayout,
        "not a containers image directory, don't want to overwrite important data",
      );
      expect(await listing(directory)).toEqual(['thesis.txt']);
    });

    it('refuses a directory whose version file has other content', async () => {
      const directory = path.join(top, 'other');
      await mkdir(directory);
      await writeFile(path.join(directory, 'version'), 'Directory Transport Version: 1.0\n');
      await expectRejectCode(
        transport.parseReference(directory).newImageDestination(),
        ErrorCodes.InvalidLayout,
      );
      expect(await listing(directory)).toEqual(['version']);
    });

    it('refuses a path that is a file', async () => {
      const file = path.join(top, 'file');
      await writeFile(file, 'x');
      await expectRejectCode(
        transport.parseReference(file).newImageDestination(),
        ErrorCodes.InvalidLayout,
        'is not a directory',
      );
    });

    it('replaces the previous image at commit, keeping reused blobs and removing the rest', async () => {
      const directory = path.join(top, 'image');
      const old = handBuiltImage('old', 2);
      await writeHandBuiltImage(await transport.parseReference(directory).newImageDestination(), old, {
        signatures: [encoder.encode('old 1'), encoder.encode('old 2')],
      });
      await writeFile(path.join(directory, 'dir-put-blob123456'), 'leftover of a crashed skopeo');
      await mkdir(path.join(directory, '.gantry-staging-crashed'));
      await writeFile(
        path.join(directory, '.gantry-staging-crashed', 'x.partial'),
        'leftover of a crashed gantry',
      );

      const replacement = handBuiltImage('new', 1);
      const destination: ImageDestination = await transport.parseReference(directory).newImageDestination();
      try {
        // The old image's first layer is reused in place; its size must match.
        const reusedLayer = old.layers[0]!;
        expect(
          await destination.tryReusingBlob!(
            { digest: reusedLayer.digest, size: reusedLayer.bytes.length + 1 },
            { isConfig: false, canSubstitute: false },
          ),
        ).toEqual({ reused: false });
        expect(
          await destination.tryReusingBlob!(
            { digest: reusedLayer.digest, size: reusedLayer.bytes.length },
            { isConfig: false, canSubstitute: false },
          ),
        ).toEqual({ reused: true, blob: { digest: reusedLayer.digest, size: reusedLayer.bytes.length } });
        expect(
          await destination.tryReusingBlob!(
            { digest: replacement.layers[0]!.digest, size: -1 },
            { isConfig: false, canSubstitute: false },
          ),
        ).toEqual({ reused: false });
        await putImageBlobs(destination, replacement);
        const newManifest = encoder.encode(
          JSON.stringify({
            ...JSON.parse(new TextDecoder().decode(replacement.manifest)),
            layers: [reusedLayer, replacement.layers[0]!].map((layer) => ({
              mediaType: layer.mediaType,
              digest: layer.digest,
              size: layer.bytes.length,
            })),
          }),
        );
        await destination.putManifest(newManifest, replacement.mediaType);
        await destination.putSignatures([encoder.encode('new 1'), encoder.encode('new 2')]);
        await destination.putSignatures([encoder.encode('new only')]); // replaces the staged ones
        await destination.commit();
        expect(await listing(directory)).toEqual(
          [
            'manifest.json',
            'signature-1',
            'version',
            digestHex(reusedLayer.digest),
            digestHex(replacement.layers[0]!.digest),
            digestHex(replacement.config.digest),
          ].sort(),
        );
        expect(new Uint8Array(await readFile(path.join(directory, 'manifest.json')))).toEqual(newManifest);
        expect(await readFile(path.join(directory, 'signature-1'), 'utf8')).toBe('new only');
        await expectRejectCode(destination.putManifest(newManifest, ''), ErrorCodes.Internal, /after commit/);
      } finally {
        await destination.close();
      }
    });

    it('waits for a version file another writer is still filling (created empty, then written)', async () => {
      const directory = path.join(top, 'image');
      await mkdir(directory);
      await writeFile(path.join(directory, 'version'), '');
      const filled = new Promise<void>((resolve, reject) => {
        setTimeout(() => writeFile(path.join(directory, 'version'), version).then(resolve, reject), 60);
      });
      const destination = await transport.parseReference(directory).newImageDestination();
      await filled;
      await writeHandBuiltImage(destination, handBuiltImage('v'));
      expect(await listing(directory)).toContain('manifest.json');
    });

    it('refuses a directory whose empty version file is never filled', async () => {
      const directory = path.join(top, 'image');
      await mkdir(directory);
      await writeFile(path.join(directory, 'version'), '');
      await expectRejectCode(
        transport.parseReference(directory).newImageDestination(),
        ErrorCodes.InvalidLayout,
        'not a containers image directory',
      );
      expect(await listing(directory)).toEqual(['version']);
    });

    it('writes into a directory holding only a valid version file', async () => {
      const directory = path.join(top, 'image');
      await mkdir(directory);
      await writeFile(path.join(directory, 'version'), version);
      await writeHandBuiltImage(
        await transport.parseReference(directory).newImageDestination(),
        handBuiltImage('v'),
      );
      expect(await listing(directory)).toContain('manifest.json');
    });
  });

  it('rejects invalid instance digests instead of building paths from them', async () => {
    const destination = await transport.parseReference(path.join(top, 'image')).newImageDestination();
    try {
      await expectRejectCode(
        destination.putManifest(encoder.encode('{}'), '', '../../etc/passwd' as Digest),
        ErrorCodes.InvalidDigest,
      );
      await expectRejectCode(
        destination.putSignatures([encoder.encode('x')], 'sha256:../x' as Digest),
        ErrorCodes.InvalidDigest,
      );
    } finally {
      await destination.close();
    }
  });
});

describe('dir: concurrent commits to one directory', () => {
  it('take turns: the directory ends with one complete image, every file it names present', async () => {
    const directory = path.join(top, 'shared');
    const images = ['one', 'two', 'three', 'four', 'five'].map((seed) => handBuiltImage(seed, 3));
    // Every destination stages its image first, then all commit at once.
    const destinations = await Promise.all(
      images.map(() => transport.parseReference(directory).newImageDestination()),
    );
    await Promise.all(
      destinations.map(async (destination, index) => {
        await putImageBlobs(destination, images[index]!);
        await destination.putManifest(images[index]!.manifest, images[index]!.mediaType);
      }),
    );
    await Promise.all(destinations.map((destination) => destination.commit()));
    await Promise.all(destinations.map((destination) => destination.close()));
    const manifest = await readFile(path.join(directory, 'manifest.json'));
    const winner = images.find((image) => Buffer.from(image.manifest).equals(manifest));
    expect(winner).toBeDefined();
    const expected = [
      'manifest.json',
      'version',
      digestHex(winner!.config.digest),
      ...winner!.layers.map((layer) => digestHex(layer.digest)),
    ].sort();
    expect((await readdir(directory)).sort()).toEqual(expected);
  });
});
