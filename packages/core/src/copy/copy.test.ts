import { readFileSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type Digest, digestOf } from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
import { MediaTypes, manifestDigest, parseManifest, parseManifestList } from '../manifest/index.js';
import { insecureAcceptAnythingPolicy, parsePolicy } from '../policy/index.js';
import {
  buildFixtureImage,
  createFixtureImageSource,
  type FixtureImage,
  type FixtureImageSpec,
  type FixtureListSpec,
  type FixtureSignatures,
  fixturePresets,
} from '../testing/index.js';
import type { BlobInfo, CommitOptions, ImageSource } from '../transport/contract.js';
import {
  createDecompressor,
  detectCompression,
  throughTransform,
  zstdImplementation,
} from './compression.js';
import { compressionSlots } from './compression-slots.js';
import { copyImage } from './copy.js';
import {
  fakeDockerReference,
  fakeReference,
  RecordingDestination,
  type RecordingDestinationOptions,
} from './test-support.js';
import type { CopyOptions, CopyProgressEvent } from './types.js';

let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gantry-'));
});

afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

interface Harness {
  image: FixtureImage;
  destination: RecordingDestination;
  events: CopyProgressEvent[];
  getBlobCalls: Digest[];
  sourceClosed: () => boolean;
  copy(options?: CopyOptions): ReturnType<typeof copyImage>;
}

interface HarnessOptions {
  destination?: RecordingDestinationOptions;
  signatures?: FixtureSignatures;
  sourceDigest?: Digest;
  destinationDigest?: Digest;
  /** Wraps the fixture source, e.g. to inject faults. */
  wrapSource?: (source: ImageSource) => ImageSource;
}

async function harness(
  spec: FixtureImageSpec | FixtureListSpec,
  options: HarnessOptions = {},
): Promise<Harness> {
  const image = await buildFixtureImage(spec, { directory: join(directory, 'fixture') });
  const destination = new RecordingDestination(options.destination);
  const events: CopyProgressEvent[] = [];
  const getBlobCalls: Digest[] = [];
  let closed = false;
  const sourceReference = fakeReference({
    name: 'fixture',
    ...(options.sourceDigest
      ? { dockerReference: fakeDockerReference('fixture', options.sourceDigest) }
      : {}),
    openSource: (reference) => {
      const fixture = createFixtureImageSource(image, reference, options.signatures);
      const counted: ImageSource = {
        ...fixture,
        getBlob: (info, operation) => {
          getBlobCalls.push(info.digest);
          return fixture.getBlob(info, operation);
        },
        close: async () => {
          closed = true;
          await fixture.close();
        },
      };
      return options.wrapSource ? options.wrapSource(counted) : counted;
    },
  });
  const destinationReference = fakeReference({
    name: 'destination',
    ...(options.destinationDigest
      ? { dockerReference: fakeDockerReference('destination', options.destinationDigest) }
      : {}),
    openDestination: () => destination,
  });
  return {
    image,
    destination,
    events,
    getBlobCalls,
    sourceClosed: () => closed,
    copy: (copyOptions = {}) =>
      copyImage(sourceReference, destinationReference, {
        policy: insecureAcceptAnythingPolicy(),
        onProgress: (event) => events.push(event),
        ...copyOptions,
      }),
  };
}

/** Checks that every blob the written manifest names was committed, with its size. */
function expectCompleteImage(
  destination: RecordingDestination,
  manifestBytes: Uint8Array,
  mediaType: string,
): void {
  const manifest = parseManifest(manifestBytes, mediaType);
  const referenced: BlobInfo[] = [...manifest.layers, ...(manifest.config ? [manifest.config] : [])];
  for (const blob of referenced) {
    const stored = destination.committedBlobs.get(blob.digest);
    expect(stored, `blob ${blob.digest} is in the destination`).toBeDefined();
    expect(stored!.size).toBe(blob.size);
  }
}

function configOf(destination: RecordingDestination, manifestBytes: Uint8Array, mediaType: string) {
  const manifest = parseManifest(manifestBytes, mediaType);
  const stored = destination.committedBlobs.get(manifest.config!.digest)!;
  return JSON.parse(stored.bytes!.toString('utf8')) as { rootfs: { diff_ids: string[] } };
}

async function corruptFile(path: string, offset: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, offset);
  } finally {
    await handle.close();
  }
}

function networkError(code: string): Error {
  return Object.assign(new Error(`read ${code}`), { code });
}

describe('copyImage: single images', () => {
  it('copies an OCI image byte for byte, in the contract call order, and closes both ends', async () => {
    const test = await harness(fixturePresets.dockerSchema2);
    const result = await test.copy();
    const { image, destination } = test;
    expect(result.manifestDigest).toBe(image.topLevel.digest);
    expect(Buffer.from(result.manifest).equals(Buffer.from(image.topLevel.bytes))).toBe(true);
    expect(result.manifestMediaType).toBe(MediaTypes.DockerManifest);
    expect(destination.committed).toBe(true);
    expect(destination.closed).toBe(true);
    expect(test.sourceClosed()).toBe(true);
    expectCompleteImage(destination, result.manifest, result.manifestMediaType);
    for (const [digest, stored] of destination.committedBlobs) {
      expect(digestOf(stored.bytes!)).toBe(digest);
    }
    const single = image.images[0]!;
    expect(destination.committedBlobs.get(single.configDigest)!.isConfig).toBe(true);
    // Layers before the config, manifest after blobs, commit then close.
    const calls = destination.calls.filter((call) => !call.startsWith('tryReusingBlob'));
    // Layers are written concurrently, so they may finish in any order; the config always comes after them.
    const layerCount = single.layerDigests.length;
    expect([...calls.slice(0, layerCount)].sort()).toEqual(
      single.layerDigests.map((digest) => `putBlob ${digest}`).sort(),
    );
    expect(calls.slice(layerCount)).toEqual([
      `putBlob ${single.configDigest}`,
      `putManifest ${MediaTypes.DockerManifest}`,
      'commit',
      'close',
    ]);
    const types = test.events.map((event) => event.type);
    expect(types[0]).toBe('copy-start');
    expect(types).toContain('signatures-read');
    expect(types.indexOf('manifest-write')).toBeGreaterThan(types.lastIndexOf('blob-done'));
    const done = test.events.filter((event) => event.type === 'blob-done');
    expect(done.map((event) => event.type === 'blob-done' && event.result)).toEqual([
      'copied',
      'copied',
      'copied',
    ]);
  });

  it('fails with the first layer failure, raising nothing uncaught from layers whose streams were not read yet', async () => {
    // A destination that applies layers in order (containers-storage, ostree) leaves a later layer's
    // stream untouched, with no listener, while an earlier one is written; when that one fails, the
    // copy's abort destroys the untouched streams, which must not become uncaught 'error' events.
    const test = await harness(fixturePresets.dockerSchema2);
    const [first] = test.image.images[0]!.layerDigests;
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    test.destination.putBlob = async (_stream, info, options) => {
      if (info.digest === first) throw new GantryError(ErrorCodes.InvalidLayer, 'the first layer failed');
      await new Promise((resolve) => options.signal!.addEventListener('abort', resolve, { once: true }));
      // Past the stream's 'error' tick: an uncaught one has been raised by now.
      await new Promise((resolve) => setImmediate(resolve));
      throw options.signal!.reason;
    };
    try {
      await expect(test.copy()).rejects.toThrow('the first layer failed');
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(uncaught).toEqual([]);
    expect(test.destination.committed).toBe(false);
  });

  it('fails on a corrupted source layer with the digest in the message and commits nothing', async () => {
    // The destination trusts what it is told: only the pipeline's verification protects it.
    const test = await harness(fixturePresets.dockerSchema2, { destination: { verifyWrites: false } });
    const layerDigest = test.image.images[0]!.layerDigests[1]!;
    await corruptFile(test.image.blobs.get(layerDigest)!.path, 20);
    const failure = test.copy({ retryTimes: 3, retryDelayMs: 1 });
    await expect(failure).rejects.toMatchObject({ code: ErrorCodes.DigestMismatch });
    await expect(failure).rejects.toThrow(`blob ${layerDigest}: digest mismatch: expected ${layerDigest}`);
    expect(test.destination.failedPuts).toBe(1);
    expect(test.destination.committed).toBe(false);
    expect(test.destination.closed).toBe(true);
    expect(test.destination.stagedBlobs.has(layerDigest)).toBe(false);
    expect([...test.destination.stagedBlobs.keys()].every((digest) => digest !== layerDigest)).toBe(true);
    // Digest mismatches are never retried.
    expect(test.getBlobCalls.filter((digest) => digest === layerDigest)).toHaveLength(1);
    expect(test.events.some((event) => event.type === 'retry')).toBe(false);
  });

  it('fails with ERR_GANTRY_SIZE_MISMATCH when the source serves more or fewer bytes', async () => {
    for (const change of ['longer', 'shorter'] as const) {
      const test = await harness(fixturePresets.ociMinimal, {
        wrapSource: (source) => ({
          ...source,
          getBlob: async (info, operation) => {
            const blob = await source.getBlob(info, operation);
            const chunks: Buffer[] = [];
            for await (const chunk of blob.stream) chunks.push(chunk as Buffer);
            let bytes = Buffer.concat(chunks);
            bytes = change === 'longer' ? Buffer.concat([bytes, Buffer.from('x')]) : bytes.subarray(0, -1);
            return { stream: Readable.from([bytes]), size: bytes.length };
          },
        }),
        destination: { verifyWrites: false },
      });
      await expect(test.copy()).rejects.toMatchObject({ code: ErrorCodes.SizeMismatch });
      expect(test.destination.stagedBlobs.size).toBe(0);
      expect(test.destination.committed).toBe(false);
      expect(test.destination.closed).toBe(true);
      await rm(join(directory, 'fixture'), { recursive: true, force: true });
    }
  });

  it('reads the config while the layers copy, not after the last one', async () => {
    const image = await buildFixtureImage(fixturePresets.dockerSchema2, {
      directory: join(directory, 'fixture'),
    });
    const configDigest = image.images[0]!.configDigest;
    let configRequested!: () => void;
    const configRequest = new Promise<void>((resolve) => {
      configRequested = resolve;
    });
    const test = await harness(fixturePresets.dockerSchema2, {
      wrapSource: (source) => ({
        ...source,
        getBlob: async (info, operation) => {
          if (info.digest === configDigest) configRequested();
          // A layer is served only once the config was asked for: read after the layers, it never would be.
          else
            await Promise.race([
              configRequest,
              new Promise((_, reject) =>
                setTimeout(
                  () => reject(new Error('the config was not read while the layers copied')),
                  20_000,
                ),
              ),
            ]);
          return source.getBlob(info, operation);
        },
      }),
    });
    const result = await test.copy({ retryTimes: 0 });
    expect(result.manifestDigest).toBe(image.topLevel.digest);
    expectCompleteImage(test.destination, result.manifest, result.manifestMediaType);
  }, 60_000);

  it('reuses blobs the destination has without reading them', async () => {
    const image = await buildFixtureImage(fixturePresets.dockerSchema2, {
      directory: join(directory, 'fixture'),
    });
    const single = image.images[0]!;
    const test = await harness(fixturePresets.dockerSchema2, {
      destination: { existingBlobs: [...single.layerDigests, single.configDigest] },
    });
    const result = await test.copy();
    expect(result.manifestDigest).toBe(image.topLevel.digest);
    expect(test.getBlobCalls.filter((digest) => single.layerDigests.includes(digest))).toEqual([]);
    expect(test.destination.calls.filter((call) => call.startsWith('putBlob'))).toEqual([]);
    const done = test.events.filter((event) => event.type === 'blob-done');
    expect(done.map((event) => event.type === 'blob-done' && event.result)).toEqual([
      'reused',
      'reused',
      'reused',
    ]);
  });

  it('verifies a digest-pinned source reference against the manifest', async () => {
    const image = await buildFixtureImage(fixturePresets.ociMinimal, {
      directory: join(directory, 'fixture'),
    });
    const good = await harness(fixturePresets.ociMinimal, { sourceDigest: image.topLevel.digest });
    await expect(good.copy()).resolves.toMatchObject({ manifestDigest: image.topLevel.digest });
    const wrong = digestOf('another manifest');
    const bad = await harness(fixturePresets.ociMinimal, { sourceDigest: wrong });
    const failure = bad.copy();
    await expect(failure).rejects.toMatchObject({ code: ErrorCodes.DigestMismatch });
    await expect(failure).rejects.toThrow(wrong);
    expect(bad.destination.committed).toBe(false);
  });

  it('refuses a digest-pinned destination whose digest the manifest does not have', async () => {
    const test = await harness(fixturePresets.ociMinimal, { destinationDigest: digestOf('other') });
    await expect(test.copy()).rejects.toThrow(
      "Digest of source image's manifest would not match destination reference",
    );
    expect(test.destination.committed).toBe(false);
  });

  it('skips layers with foreign URLs when the destination accepts them', async () => {
    const config = Buffer.from(
      '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
    );
    const foreignDigest = digestOf('foreign layer');
    const manifestBytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.OciManifest,
        config: { mediaType: MediaTypes.OciConfig, digest: digestOf(config), size: config.length },
        layers: [
          {
            mediaType: MediaTypes.OciLayerNondistributableGzip,
            digest: foreignDigest,
            size: 13,
            urls: ['https://example.com/layer'],
          },
        ],
      }),
    );
    const destination = new RecordingDestination({ properties: { acceptsForeignLayerURLs: true } });
    const events: CopyProgressEvent[] = [];
    const source = fakeReference({
      name: 'foreign',
      openSource: (reference) => ({
        reference,
        properties: { hasThreadSafeGetBlob: true },
        getManifest: async () => ({ bytes: manifestBytes, mediaType: MediaTypes.OciManifest }),
        getBlob: async (info) => {
          if (info.digest !== digestOf(config))
            throw new Error(`foreign layer ${info.digest} must not be read`);
          return { stream: Readable.from([config]), size: config.length };
        },
        getSignatures: async () => [],
        close: async () => {},
      }),
    });
    const result = await copyImage(source, fakeReference({ name: 'd', openDestination: () => destination }), {
      policy: insecureAcceptAnythingPolicy(),
      onProgress: (event) => events.push(event),
    });
    expect(Buffer.from(result.manifest).equals(manifestBytes)).toBe(true);
    expect(destination.committedBlobs.has(foreignDigest)).toBe(false);
    expect(events).toContainEqual(expect.objectContaining({ type: 'blob-done', result: 'skipped' }));
  });
});

describe('copyImage: policy and source layer infos', () => {
  it('evaluates the policy before copying anything', async () => {
    const test = await harness(fixturePresets.ociMinimal);
    const reject = parsePolicy('{"default":[{"type":"reject"}]}', 'test policy');
    await expect(test.copy({ policy: reject })).rejects.toMatchObject({ code: ErrorCodes.PolicyRejected });
    expect(test.getBlobCalls).toEqual([]);
    expect(test.destination.calls).toEqual(['close']);
    expect(test.sourceClosed()).toBe(true);
  });

  it('copies the layers layerInfosForCopy names and edits the manifest for them', async () => {
    const uncompressed = await buildFixtureImage(fixturePresets.uncompressedLayers, {
      directory: join(directory, 'other'),
    });
    const test = await harness(fixturePresets.uncompressedLayers, {
      wrapSource: (source) => ({
        ...source,
        // Pretend the store keeps these layers gzip-compressed: serve a compressed copy instead.
        layerInfosForCopy: async () =>
          uncompressed.images[0]!.layerDigests.map((digest) => {
            const bytes = gzipSync(readFileSync(uncompressed.blobs.get(digest)!.path));
            compressedLayers.set(digestOf(bytes), bytes);
            return { digest: digestOf(bytes), size: bytes.length, mediaType: MediaTypes.OciLayerGzip };
          }),
        getBlob: async (info, operation) => {
          const bytes = compressedLayers.get(info.digest);
          if (bytes) return { stream: Readable.from([bytes]), size: bytes.length };
          return source.getBlob(info, operation);
        },
      }),
    });
    const compressedLayers = new Map<string, Buffer>();
    const result = await test.copy();
    const manifest = parseManifest(result.manifest, result.manifestMediaType);
    expect(manifest.layers.map((layer) => layer.digest)).toEqual([...compressedLayers.keys()]);
    expect(manifest.layers.every((layer) => layer.mediaType === MediaTypes.OciLayerGzip)).toBe(true);
    expectCompleteImage(test.destination, result.manifest, result.manifestMediaType);
  });
});

describe('copyImage: Docker schema1', () => {
  // containers/image's GzippedEmptyLayer: a gzip-compressed empty tar, used for "throwaway" layers.
  const gzippedEmptyLayer = Buffer.from([
    31, 139, 8, 0, 0, 9, 110, 136, 0, 255, 98, 24, 5, 163, 96, 20, 140, 88, 0, 8, 0, 0, 255, 255, 46, 175,
    181, 239, 0, 4, 0, 0,
  ]);
  const baseTar = Buffer.from('pretend this is a tar '.repeat(200));
  const baseLayer = gzipSync(baseTar);
  const idA = 'a'.repeat(64);
  const idB = 'b'.repeat(64);
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 1,
      name: 'library/old',
      tag: 'latest',
      architecture: 'amd64',
      fsLayers: [{ blobSum: digestOf(gzippedEmptyLayer) }, { blobSum: digestOf(baseLayer) }],
      history: [
        {
          v1Compatibility: JSON.stringify({
            id: idB,
            parent: idA,
            created: '2020-01-01T00:00:01Z',
            container_config: { Cmd: ['/bin/sh', '-c', '#(nop) CMD ["sh"]'] },
            throwaway: true,
            architecture: 'amd64',
            os: 'linux',
            config: { Cmd: ['sh'] },
          }),
        },
        {
          v1Compatibility: JSON.stringify({
            id: idA,
            created: '2020-01-01T00:00:00Z',
            container_config: { Cmd: ['/bin/sh', '-c', '#(nop) ADD file:base in /'] },
          }),
        },
      ],
    }),
  );

  function schema1Source() {
    const blobs = new Map<string, Buffer>([
      [digestOf(gzippedEmptyLayer), gzippedEmptyLayer],
      [digestOf(baseLayer), baseLayer],
    ]);
    const reads: string[] = [];
    const reference = fakeReference({
      name: 'schema1',
      openSource: (self) => ({
        reference: self,
        properties: { hasThreadSafeGetBlob: true },
        getManifest: async () => ({ bytes: manifestBytes, mediaType: MediaTypes.DockerSchema1 }),
        getBlob: async (info) => {
          reads.push(info.digest);
          const bytes = blobs.get(info.digest)!;
          return { stream: Readable.from([bytes]), size: bytes.length };
        },
        getSignatures: async () => [],
        close: async () => {},
      }),
    });
    return { reference, reads };
  }

  it('copies schema1 as it is where accepted', async () => {
    const destination = new RecordingDestination();
    const { reference } = schema1Source();
    const result = await copyImage(
      reference,
      fakeReference({ name: 'd', openDestination: () => destination }),
      {
        policy: insecureAcceptAnythingPolicy(),
      },
    );
    expect(Buffer.from(result.manifest).equals(manifestBytes)).toBe(true);
    expect(destination.committedBlobs.has(digestOf(gzippedEmptyLayer))).toBe(true);
    expect(destination.committedBlobs.has(digestOf(baseLayer))).toBe(true);
  });

  it('converts schema1 to schema2 computing DiffIDs while copying and dropping throwaway layers', async () => {
    const destination = new RecordingDestination({
      properties: { supportedManifestMimeTypes: [MediaTypes.DockerManifest] },
      existingBlobs: [digestOf(baseLayer)],
    });
    const { reference, reads } = schema1Source();
    const result = await copyImage(
      reference,
      fakeReference({ name: 'd', openDestination: () => destination }),
      {
        policy: insecureAcceptAnythingPolicy(),
      },
    );
    expect(result.manifestMediaType).toBe(MediaTypes.DockerManifest);
    const manifest = parseManifest(result.manifest, result.manifestMediaType);
    expect(manifest.layers.map((layer) => [layer.digest, layer.size, layer.mediaType])).toEqual([
      [digestOf(baseLayer), baseLayer.length, MediaTypes.DockerLayerGzip],
    ]);
    // DiffIDs are needed, so even a blob the destination has is read.
    expect(reads).toContain(digestOf(baseLayer));
    expectCompleteImage(destination, result.manifest, result.manifestMediaType);
    expect(configOf(destination, result.manifest, result.manifestMediaType).rootfs.diff_ids).toEqual([
      digestOf(baseTar),
    ]);
  });

  it('takes DiffIDs from the decompressed bytes the destination stored, when converting for an uncompressed store', async () => {
    const destination = new RecordingDestination({
      properties: {
        supportedManifestMimeTypes: [MediaTypes.DockerManifest],
        desiredLayerCompression: 'decompress',
      },
    });
    const { reference } = schema1Source();
    const result = await copyImage(
      reference,
      fakeReference({ name: 'd', openDestination: () => destination }),
      { policy: insecureAcceptAnythingPolicy() },
    );
    const manifest = parseManifest(result.manifest, result.manifestMediaType);
    expect(manifest.layers.map((layer) => [layer.digest, layer.size, layer.mediaType])).toEqual([
      [digestOf(baseTar), baseTar.length, MediaTypes.DockerLayer],
    ]);
    expect(configOf(destination, result.manifest, result.manifestMediaType).rootfs.diff_ids).toEqual([
      digestOf(baseTar),
    ]);
    expectCompleteImage(destination, result.manifest, result.manifestMediaType);
  });
});

describe('copyImage: compression', () => {
  it('compresses uncompressed layers for a destination that wants them compressed, keeping DiffIDs', async () => {
    const test = await harness(fixturePresets.uncompressedLayers, {
      destination: { properties: { desiredLayerCompression: 'compress' } },
    });
    const result = await test.copy();
    const single = test.image.images[0]!;
    expect(result.manifestDigest).not.toBe(test.image.topLevel.digest);
    const manifest = parseManifest(result.manifest, result.manifestMediaType);
    expect(manifest.mediaType).toBe(MediaTypes.OciManifest);
    expect(manifest.layers.map((layer) => layer.mediaType)).toEqual([
      MediaTypes.OciLayerGzip,
      MediaTypes.OciLayerGzip,
    ]);
    expect(manifest.config!.digest).toBe(single.configDigest);
    expectCompleteImage(test.destination, result.manifest, result.manifestMediaType);
    const diffIds = manifest.layers.map((layer) =>
      digestOf(gunzipSync(test.destination.committedBlobs.get(layer.digest)!.bytes!)),
    );
    expect(diffIds).toEqual(single.diffIds);
    expect(configOf(test.destination, result.manifest, result.manifestMediaType).rootfs.diff_ids).toEqual(
      single.diffIds,
    );
    expect(manifestDigest(result.manifest)).toBe(result.manifestDigest);
  });

  it('compresses at most as many layers at once as there are compression slots, each holding one', async () => {
    const layers = Array.from({ length: 5 }, (_, index) => ({
      compression: 'none' as const,
      entries: [{ type: 'file' as const, path: `f${index}`, randomSize: 256 * 1024, seed: `slots-${index}` }],
    }));
    const test = await harness(
      { format: 'oci', layers },
      {
        destination: { properties: { desiredLayerCompression: 'compress' } },
      },
    );
    let held = 0;
    let maxHeld = 0;
    const acquire = compressionSlots.acquire.bind(compressionSlots);
    const spy = vi.spyOn(compressionSlots, 'acquire').mockImplementation(async (signal) => {
      const release = await acquire(signal);
      held += 1;
      maxHeld = Math.max(maxHeld, held);
      // Hold the slot a little longer, so that layers overlap if nothing stops them.
      await new Promise((resolve) => setTimeout(resolve, 20));
      return () => {
        held -= 1;
        release();
      };
    });
    let calls = 0;
    try {
      await test.copy();
    } finally {
      calls = spy.mock.calls.length;
      spy.mockRestore();
    }
    expect(calls).toBe(5);
    expect(maxHeld).toBeGreaterThanOrEqual(1);
    expect(maxHeld).toBeLessThanOrEqual(compressionSlots.capacity);
    expect(held).toBe(0);
    expect(compressionSlots.held).toBe(0);
  });

  it('gives the compression slots back when a destination fails a layer without reading it, so retries go on', async () => {
    const layers = Array.from({ length: compressionSlots.capacity + 2 }, (_, index) => ({
      compression: 'none' as const,
      entries: [
        { type: 'file' as const, path: `f${index}`, randomSize: 256 * 1024, seed: `unread-${index}` },
      ],
    }));
    const test = await harness(
      { format: 'oci', layers },
      { destination: { properties: { desiredLayerCompression: 'compress' } } },
    );
    const originalPutBlob = test.destination.putBlob.bind(test.destination);
    let failures = layers.length;
    // Fails at once, as a registry refusing the upload start does: the compressed stream is never read.
    test.destination.putBlob = async (stream, info, options) => {
      if (!options.isConfig && failures-- > 0)
        throw new GantryError(ErrorCodes.Transient, 'HTTP 500', { retryable: true });
      return originalPutBlob(stream, info, options);
    };
    const result = await test.copy({ retryTimes: 1, retryDelayMs: 1 });
    expect(result.manifestDigest).toBeDefined();
    expect(compressionSlots.held).toBe(0);
  });

  it('decompresses gzip layers for a destination that wants them uncompressed', async () => {
    const test = await harness(fixturePresets.dockerSchema2, {
      destination: { properties: { desiredLayerCompression: 'decompress' } },
    });
    const result = await test.copy();
    const manifest = parseManifest(result.manifest, result.manifestMediaType);
    expect(manifest.layers.map((layer) => layer.digest)).toEqual(test.image.images[0]!.diffIds);
    expect(manifest.layers.every((layer) => layer.mediaType === MediaTypes.DockerLayer)).toBe(true);
    expectCompleteImage(test.destination, result.manifest, result.manifestMediaType);
  });

  it('verifies layers written decompressed against the DiffIDs of the config, and refuses one that differs', async () => {
    const decompressing = {
      properties: { desiredLayerCompression: 'decompress' as const },
      // The destination trusts the digest it is told: only the pipeline's verification protects it.
      verifyWrites: false,
    };
    // Each layer is verified after decompression and handed over under its DiffID (hashed once).
    const good = await harness(fixturePresets.dockerSchema2, { destination: decompressing });
    await good.copy();
    for (const diffId of good.image.images[0]!.diffIds) {
      expect(good.destination.calls).toContain(`putBlob ${diffId}`);
    }
    expect(good.destination.committed).toBe(true);
    await rm(join(directory, 'fixture'), { recursive: true, force: true });

    // A config (with a valid digest) listing the DiffIDs in the wrong order: every layer fails its check.
    const liar = await harness(fixturePresets.dockerSchema2, {
      destination: decompressing,
      wrapSource: (source) => {
        let config: { digest: Digest; bytes: Buffer } | undefined;
        return {
          ...source,
          getManifest: async (instance, operation) => {
            const original = await source.getManifest(instance, operation);
            const manifest = JSON.parse(Buffer.from(original.bytes).toString('utf8'));
            const blob = await source.getBlob(manifest.config, operation);
            const chunks: Buffer[] = [];
            for await (const chunk of blob.stream) chunks.push(chunk as Buffer);
            const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            parsed.rootfs.diff_ids.reverse();
            const bytes = Buffer.from(JSON.stringify(parsed));
            config = { digest: digestOf(bytes), bytes };
            manifest.config = { ...manifest.config, digest: config.digest, size: bytes.length };
            return { ...original, bytes: Buffer.from(JSON.stringify(manifest)) };
          },
          getBlob: async (info, operation) =>
            info.digest === config?.digest
              ? { stream: Readable.from([config.bytes]), size: config.bytes.length }
              : source.getBlob(info, operation),
        };
      },
    });
    const failure = liar.copy();
    await expect(failure).rejects.toMatchObject({ code: ErrorCodes.DigestMismatch });
    await expect(failure).rejects.toThrow(
      /its uncompressed contents \(DiffID in the image config\): digest mismatch/,
    );
    expect(liar.destination.committed).toBe(false);
    expect(liar.destination.stagedBlobs.size).toBe(0);
  });

  it('keeps layers in a compression the destination keeps, verifying them by their digest', async () => {
    const test = await harness(fixturePresets.dockerSchema2, {
      destination: {
        properties: { desiredLayerCompression: 'decompress', keptLayerCompressions: ['gzip'] },
        verifyWrites: false,
      },
    });
    const result = await test.copy();
    const single = test.image.images[0]!;
    expect(result.manifestDigest).toBe(test.image.topLevel.digest);
    for (const digest of single.layerDigests) expect(test.destination.calls).toContain(`putBlob ${digest}`);
    expectCompleteImage(test.destination, result.manifest, result.manifestMediaType);
    await rm(join(directory, 'fixture'), { recursive: true, force: true });

    // A corrupted kept layer is caught by its own digest.
    const corrupted = await harness(fixturePresets.dockerSchema2, {
      destination: {
        properties: { desiredLayerCompression: 'decompress', keptLayerCompressions: ['gzip'] },
        verifyWrites: false,
      },
    });
    const layerDigest = corrupted.image.images[0]!.layerDigests[1]!;
    await corruptFile(corrupted.image.blobs.get(layerDigest)!.path, 40);
    await expect(corrupted.copy()).rejects.toThrow(`blob ${layerDigest}: digest mismatch`);
    expect(corrupted.destination.committed).toBe(false);
  });

  it('refuses a corrupted gzip layer written decompressed, and one of the wrong size, committing nothing', async () => {
    const test = await harness(fixturePresets.dockerSchema2, {
      destination: { properties: { desiredLayerCompression: 'decompress' }, verifyWrites: false },
    });
    const layerDigest = test.image.images[0]!.layerDigests[1]!;
    await corruptFile(test.image.blobs.get(layerDigest)!.path, 40);
    await expect(test.copy()).rejects.toThrow(layerDigest);
    expect(test.destination.committed).toBe(false);
    expect(test.destination.stagedBlobs.has(test.image.images[0]!.diffIds[1]!)).toBe(false);
    await rm(join(directory, 'fixture'), { recursive: true, force: true });

    const shorter = await harness(fixturePresets.dockerSchema2, {
      destination: { properties: { desiredLayerCompression: 'decompress' }, verifyWrites: false },
      wrapSource: (source) => ({
        ...source,
        getBlob: async (info, operation) => {
          const blob = await source.getBlob(info, operation);
          if (info.digest !== layerDigest) return blob;
          const chunks: Buffer[] = [];
          for await (const chunk of blob.stream) chunks.push(chunk as Buffer);
          // Still a whole gzip member with the right contents: only the size tells.
          const bytes = Buffer.concat([Buffer.concat(chunks), Buffer.alloc(3)]);
          return { stream: Readable.from([bytes]), size: bytes.length };
        },
      }),
    });
    await expect(shorter.copy()).rejects.toMatchObject({ code: ErrorCodes.SizeMismatch });
    expect(shorter.destination.committed).toBe(false);
  });

  it('keeps compression as it is when the destination preserves it, ignoring a requested format', async () => {
    const test = await harness(fixturePresets.uncompressedLayers);
    const result = await test.copy({ destinationCompression: 'gzip' });
    expect(result.manifestDigest).toBe(test.image.topLevel.digest);
  });

  it('compresses to zstd on every Node.js (node:zlib or zstd-napi) with OCI zstd media types', async () => {
    const test = await harness(fixturePresets.uncompressedLayers, {
      destination: { properties: { desiredLayerCompression: 'compress' } },
    });
    expect(zstdImplementation()).toBeDefined();
    const result = await test.copy({ destinationCompression: 'zstd' });
    const manifest = parseManifest(result.manifest, result.manifestMediaType);
    expect(manifest.layers.length).toBeGreaterThan(0);
    expect(manifest.layers.every((layer) => layer.mediaType === MediaTypes.OciLayerZstd)).toBe(true);
    for (const layer of manifest.layers) {
      const stored = test.destination.committedBlobs.get(layer.digest)!;
      expect(detectCompression(stored.bytes!)).toBe('zstd');
    }
  });

  it('forces the requested compression on a destination that preserves layers (--dest-force-compress-format)', async () => {
    const test = await harness(fixturePresets.dockerSchema2);
    const result = await test.copy({ destinationCompression: 'zstd', forceCompressionFormat: true });
    expect(result.manifestMediaType).toBe(MediaTypes.OciManifest);
    const manifest = parseManifest(result.manifest, result.manifestMediaType);
    for (const layer of manifest.layers) {
      expect(layer.mediaType).toBe(MediaTypes.OciLayerZstd);
      expect(detectCompression(test.destination.committedBlobs.get(layer.digest)!.bytes!)).toBe('zstd');
    }
    const unforced = await harness(fixturePresets.dockerSchema2);
    expect((await unforced.copy({ destinationCompression: 'zstd' })).manifestDigest).toBe(
      unforced.image.topLevel.digest,
    );
    await expect(test.copy({ forceCompressionFormat: true })).rejects.toMatchObject({
      code: ErrorCodes.Usage,
    });
  });

  it('verifies recompressed layers by their DiffIDs, not their source bytes, which pass unchanged only when they match their digest', async () => {
    // The same gzip data with another modification time in its header: same size and contents,
    // another digest than the manifest's.
    const restamped = (source: ImageSource): ImageSource => ({
      ...source,
      getBlob: async (info, operation) => {
        const blob = await source.getBlob(info, operation);
        if (info.mediaType !== MediaTypes.DockerLayerGzip) return blob;
        const chunks: Buffer[] = [];
        for await (const chunk of blob.stream) chunks.push(chunk as Buffer);
        const bytes = Buffer.concat(chunks);
        bytes.writeUInt32LE(bytes.readUInt32LE(4) ^ 0x5a5a5a5a, 4);
        return { stream: Readable.from([bytes]), size: bytes.length };
      },
    });
    const recompressing = await harness(fixturePresets.dockerSchema2, { wrapSource: restamped });
    const result = await recompressing.copy({ destinationCompression: 'zstd', forceCompressionFormat: true });
    const manifest = parseManifest(result.manifest, result.manifestMediaType);
    const diffIds = recompressing.image.images[0]!.diffIds;
    for (const [index, layer] of manifest.layers.entries()) {
      const stored = recompressing.destination.committedBlobs.get(layer.digest)!.bytes!;
      expect(detectCompression(stored)).toBe('zstd');
      const output: Uint8Array[] = [];
      for await (const chunk of throughTransform(Readable.from([stored]), createDecompressor('zstd'))) {
        output.push(chunk);
      }
      expect(digestOf(Buffer.concat(output))).toBe(diffIds[index]);
    }
    await rm(join(directory, 'fixture'), { recursive: true, force: true });

    const unchanged = await harness(fixturePresets.dockerSchema2, {
      destination: { properties: { desiredLayerCompression: 'compress' } },
      wrapSource: restamped,
    });
    const failure = unchanged.copy({ destinationCompression: 'gzip' });
    await expect(failure).rejects.toMatchObject({ code: ErrorCodes.DigestMismatch });
    await expect(failure).rejects.toThrow(/digest mismatch/);
    expect(unchanged.destination.committed).toBe(false);
  });

  it('refuses zstd when no implementation is available, naming the Node.js version', async () => {
    const test = await harness(fixturePresets.uncompressedLayers, {
      destination: { properties: { desiredLayerCompression: 'compress' } },
    });
    const saved = process.env.GANTRY_ZSTD_IMPLEMENTATION;
    process.env.GANTRY_ZSTD_IMPLEMENTATION = 'none';
    try {
      const failure = test.copy({ destinationCompression: 'zstd' });
      await expect(failure).rejects.toMatchObject({ code: ErrorCodes.NotSupported });
      await expect(failure).rejects.toThrow(process.version);
      expect(test.destination.committed).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.GANTRY_ZSTD_IMPLEMENTATION;
      else process.env.GANTRY_ZSTD_IMPLEMENTATION = saved;
    }
  });
});

describe('copyImage: manifest conversion', () => {
  it('converts OCI to Docker schema2 for a destination that only takes schema2', async () => {
    const test = await harness(fixturePresets.ociMinimal, {
      destination: { properties: { supportedManifestMimeTypes: [MediaTypes.DockerManifest] } },
    });
    const result = await test.copy();
    expect(result.manifestMediaType).toBe(MediaTypes.DockerManifest);
    const manifest = parseManifest(result.manifest, result.manifestMediaType);
    expect(manifest.config!.mediaType).toBe(MediaTypes.DockerConfig);
    expect(manifest.layers.map((layer) => layer.mediaType)).toEqual([MediaTypes.DockerLayerGzip]);
    expect(manifest.layers.map((layer) => layer.digest)).toEqual(test.image.images[0]!.layerDigests);
    expect(result.manifestDigest).toBe(digestOf(result.manifest));
    expectCompleteImage(test.destination, result.manifest, result.manifestMediaType);
  });

  it('converts Docker schema2 to OCI for a destination that only takes OCI', async () => {
    const test = await harness(fixturePresets.dockerSchema2, {
      destination: { properties: { supportedManifestMimeTypes: [MediaTypes.OciManifest] } },
    });
    const result = await test.copy();
    expect(result.manifestMediaType).toBe(MediaTypes.OciManifest);
    const manifest = parseManifest(result.manifest, result.manifestMediaType);
    expect(manifest.config!.mediaType).toBe(MediaTypes.OciConfig);
    expect(manifest.layers.map((layer) => layer.mediaType)).toEqual([
      MediaTypes.OciLayerGzip,
      MediaTypes.OciLayerGzip,
    ]);
    expectCompleteImage(test.destination, result.manifest, result.manifestMediaType);
    expect(configOf(test.destination, result.manifest, result.manifestMediaType).rootfs.diff_ids).toEqual(
      test.image.images[0]!.diffIds,
    );
  });

  it('converts when -f forces a type', async () => {
    const test = await harness(fixturePresets.ociMinimal);
    const result = await test.copy({ manifestMediaType: MediaTypes.DockerManifest });
    expect(result.manifestMediaType).toBe(MediaTypes.DockerManifest);
  });

  it('falls back to the next candidate when the destination rejects a manifest type, copying blobs once', async () => {
    const test = await harness(fixturePresets.dockerSchema2, {
      destination: {
        properties: { supportedManifestMimeTypes: [MediaTypes.OciManifest, MediaTypes.DockerManifest] },
        rejectedManifestTypes: [MediaTypes.DockerManifest],
      },
    });
    const result = await test.copy();
    expect(result.manifestMediaType).toBe(MediaTypes.OciManifest);
    const puts = test.destination.calls.filter((call) => call.startsWith('putManifest'));
    expect(puts).toEqual([
      `putManifest ${MediaTypes.DockerManifest}`,
      `putManifest ${MediaTypes.OciManifest}`,
    ]);
    for (const layer of test.image.images[0]!.layerDigests) {
      expect(test.getBlobCalls.filter((digest) => digest === layer)).toHaveLength(1);
      expect(test.destination.calls.filter((call) => call === `putBlob ${layer}`)).toHaveLength(1);
    }
    expectCompleteImage(test.destination, result.manifest, result.manifestMediaType);
  });

  it('with preserveDigests refuses a conversion or a requested compression change', async () => {
    const converting = await harness(fixturePresets.ociMinimal, {
      destination: { properties: { supportedManifestMimeTypes: [MediaTypes.DockerManifest] } },
    });
    await expect(converting.copy({ preserveDigests: true })).rejects.toMatchObject({
      code: ErrorCodes.DigestsNotPreservable,
    });
    expect(converting.destination.committed).toBe(false);
    expect(converting.destination.calls.filter((call) => call.startsWith('putBlob'))).toEqual([]);
    await rm(join(directory, 'fixture'), { recursive: true, force: true });

    const compressing = await harness(fixturePresets.uncompressedLayers, {
      destination: { properties: { desiredLayerCompression: 'compress' } },
    });
    await expect(
      compressing.copy({ preserveDigests: true, destinationCompression: 'gzip' }),
    ).rejects.toMatchObject({
      code: ErrorCodes.DigestsNotPreservable,
    });
    // Without an explicit request the layers are kept as they are (as containers/image does).
    const kept = await compressing.copy({ preserveDigests: true });
    expect(kept.manifestDigest).toBe(compressing.image.topLevel.digest);
  });
});

describe('copyImage: manifest lists', () => {
  const arm64 = { os: 'linux', architecture: 'arm64', variant: 'v8' };

  it("'system' copies the instance for the wanted platform as a single image", async () => {
    const test = await harness(fixturePresets.multiArchOci);
    const result = await test.copy({ sourceContext: { platform: arm64 } });
    const chosen = test.image.images.find((image) => image.platform.architecture === 'arm64')!;
    expect(result.manifestDigest).toBe(chosen.manifestDigest);
    expect(test.destination.manifests).toHaveLength(1);
    expect(test.destination.manifests[0]!.instanceDigest).toBeUndefined();
    expect(test.destination.committedBlobs.has(chosen.configDigest)).toBe(true);
    const others = test.image.images.filter((image) => image !== chosen);
    for (const other of others) expect(test.destination.committedBlobs.has(other.configDigest)).toBe(false);
    expect(test.events).toContainEqual({ type: 'list-start', instanceCount: 3, copyCount: 1 });
  });

  it("'system' fails with ERR_GANTRY_NO_MATCHING_PLATFORM when nothing matches", async () => {
    const test = await harness(fixturePresets.multiArchOci);
    await expect(
      test.copy({ sourceContext: { platform: { os: 'linux', architecture: 's390x' } } }),
    ).rejects.toMatchObject({
      code: ErrorCodes.NoMatchingPlatform,
    });
  });

  it("'all' copies every instance with its digest, then the list", async () => {
    const test = await harness(fixturePresets.multiArchOci);
    const result = await test.copy({ imageListSelection: 'all' });
    expect(Buffer.from(result.manifest).equals(Buffer.from(test.image.topLevel.bytes))).toBe(true);
    expect(result.manifestDigest).toBe(test.image.topLevel.digest);
    expect(result.manifestMediaType).toBe(MediaTypes.OciIndex);
    const instances = test.destination.manifests.filter((manifest) => manifest.instanceDigest !== undefined);
    expect(instances.map((manifest) => manifest.instanceDigest)).toEqual(
      test.image.images.map((i) => i.manifestDigest),
    );
    expect(test.destination.manifests.at(-1)!.instanceDigest).toBeUndefined();
    for (const instance of instances)
      expectCompleteImage(test.destination, instance.bytes, instance.mediaType);
    expect(test.events).toContainEqual({ type: 'list-start', instanceCount: 3, copyCount: 3 });
    expect(test.events.filter((event) => event.type === 'image-start')).toHaveLength(3);
  });

  it('keeps the exact bytes of a list whose instances did not change, even when not canonically formatted', async () => {
    const test = await harness(fixturePresets.multiArchOci, {
      wrapSource: (source) => ({
        ...source,
        getManifest: async (instanceDigest, operation) => {
          const manifest = await source.getManifest(instanceDigest, operation);
          if (instanceDigest !== undefined) return manifest;
          const indented = Buffer.from(
            JSON.stringify(JSON.parse(Buffer.from(manifest.bytes).toString()), null, 2),
          );
          return { bytes: indented, mediaType: manifest.mediaType };
        },
      }),
    });
    const result = await test.copy({ imageListSelection: 'all', preserveDigests: true });
    const indented = Buffer.from(
      JSON.stringify(JSON.parse(Buffer.from(test.image.topLevel.bytes).toString()), null, 2),
    );
    expect(Buffer.from(result.manifest).equals(indented)).toBe(true);
    expect(result.manifestDigest).toBe(digestOf(indented));
  });

  it('refuses to change a list when digests must be preserved', async () => {
    const test = await harness(fixturePresets.multiArchOci, {
      destination: {
        properties: {
          supportedManifestMimeTypes: [MediaTypes.DockerManifest, MediaTypes.DockerManifestList],
        },
      },
    });
    await expect(test.copy({ imageListSelection: 'all', preserveDigests: true })).rejects.toMatchObject({
      code: ErrorCodes.DigestsNotPreservable,
    });
    expect(test.destination.calls.filter((call) => call.startsWith('putBlob'))).toEqual([]);
  });

  it("'index-only' copies only the list", async () => {
    const test = await harness(fixturePresets.multiArchOci);
    const result = await test.copy({ imageListSelection: 'index-only' });
    expect(result.manifestMediaType).toBe(MediaTypes.OciIndex);
    expect(test.destination.manifests).toHaveLength(1);
    expect(test.destination.committedBlobs.size).toBe(0);
    expect(test.getBlobCalls).toEqual([]);
  });

  it('instanceDigests restricts which instances are copied', async () => {
    const test = await harness(fixturePresets.multiArchOci);
    const wanted = test.image.images[1]!;
    const result = await test.copy({ imageListSelection: 'all', instanceDigests: [wanted.manifestDigest] });
    const instances = test.destination.manifests.filter((manifest) => manifest.instanceDigest !== undefined);
    expect(instances.map((manifest) => manifest.instanceDigest)).toEqual([wanted.manifestDigest]);
    expect(parseManifestList(result.manifest, result.manifestMediaType).instances).toHaveLength(3);
    expect(test.destination.committedBlobs.has(test.image.images[0]!.configDigest)).toBe(false);
  });

  it("'all' converts instances and the list for a destination taking only Docker types", async () => {
    const test = await harness(fixturePresets.multiArchOci, {
      destination: {
        properties: {
          supportedManifestMimeTypes: [MediaTypes.DockerManifest, MediaTypes.DockerManifestList],
        },
      },
    });
    const result = await test.copy({ imageListSelection: 'all' });
    expect(result.manifestMediaType).toBe(MediaTypes.DockerManifestList);
    const list = parseManifestList(result.manifest, result.manifestMediaType);
    const written = new Map(
      test.destination.manifests
        .filter((manifest) => manifest.instanceDigest !== undefined)
        .map((manifest) => [manifest.instanceDigest!, manifest]),
    );
    expect(list.instances).toHaveLength(3);
    for (const instance of list.instances) {
      const stored = written.get(instance.digest)!;
      expect(stored.mediaType).toBe(MediaTypes.DockerManifest);
      expect(instance.mediaType).toBe(MediaTypes.DockerManifest);
      expect(digestOf(stored.bytes)).toBe(instance.digest);
      expect(stored.bytes.byteLength).toBe(instance.size);
      expectCompleteImage(test.destination, stored.bytes, stored.mediaType);
    }
  });
});

describe('copyImage: signatures', () => {
  const signature = Buffer.from('signature bytes');

  it('refuses to drop signatures silently on a destination without them, suggesting --remove-signatures', async () => {
    const test = await harness(fixturePresets.ociMinimal, {
      signatures: { signatures: [signature] },
      destination: { properties: { supportsSignatures: false } },
    });
    const failure = test.copy();
    await expect(failure).rejects.toMatchObject({ code: ErrorCodes.NotSupported });
    await expect(failure).rejects.toThrow(
      'Can not copy signatures to fake:destination: Pushing signatures for this destination is not supported',
    );
    await expect(failure).rejects.toThrow('--remove-signatures');
    expect(test.destination.committed).toBe(false);
    const removed = await test.copy({ removeSignatures: true });
    expect(removed.manifestDigest).toBe(test.image.topLevel.digest);
    expect(test.destination.signatures).toEqual([]);
  });

  it('tells the destination when nothing but commit follows the top-level manifest', async () => {
    /** `lastBeforeCommit` of each putManifest call, with its instance digest (or 'top'). */
    const hintsOf = async (test: Harness, options: CopyOptions = {}) => {
      const hints: string[] = [];
      const original = test.destination.putManifest.bind(test.destination);
      test.destination.putManifest = async (bytes, mediaType, instanceDigest, operation) => {
        hints.push(
          `${instanceDigest === undefined ? 'top' : 'instance'} ${operation?.lastBeforeCommit === true}`,
        );
        return original(bytes, mediaType, instanceDigest, operation);
      };
      await test.copy(options);
      return hints;
    };
    expect(await hintsOf(await harness(fixturePresets.ociMinimal))).toEqual(['top true']);
    const list = await hintsOf(await harness(fixturePresets.multiArchOci), { imageListSelection: 'all' });
    expect(list).toEqual(['instance false', 'instance false', 'instance false', 'top true']);
    // Signatures are written after the manifest: the destination must wait for commit.
    const signed = await harness(fixturePresets.ociMinimal, { signatures: { signatures: [signature] } });
    expect(await hintsOf(signed)).toEqual(['top false']);
    const unsigned = await harness(fixturePresets.ociMinimal, { signatures: { signatures: [signature] } });
    expect(await hintsOf(unsigned, { removeSignatures: true })).toEqual(['top true']);
  });

  it('copies signatures after the manifest', async () => {
    const test = await harness(fixturePresets.ociMinimal, { signatures: { signatures: [signature] } });
    await test.copy();
    expect(test.destination.signatures).toEqual([{ signatures: [signature] }]);
    const calls = test.destination.calls;
    expect(calls.indexOf('putSignatures 1')).toBeGreaterThan(
      calls.findIndex((call) => call.startsWith('putManifest')),
    );
    expect(test.events).toContainEqual({ type: 'signatures-write', count: 1 });
  });

  it('refuses a conversion that would invalidate signatures', async () => {
    const test = await harness(fixturePresets.ociMinimal, {
      signatures: { signatures: [signature] },
      destination: { properties: { supportedManifestMimeTypes: [MediaTypes.DockerManifest] } },
    });
    await expect(test.copy()).rejects.toThrow('Would invalidate signatures');
    expect(test.destination.committed).toBe(false);
  });
});

describe('copyImage: abort, retries, concurrency', () => {
  it('rejects with ERR_GANTRY_ABORTED and closes the destination without commit', async () => {
    const test = await harness(fixturePresets.dockerSchema2, { destination: { putBlobDelayMs: 5000 } });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const started = Date.now();
    await expect(test.copy({ signal: controller.signal })).rejects.toMatchObject({
      code: ErrorCodes.Aborted,
    });
    expect(Date.now() - started).toBeLessThan(4000);
    expect(test.destination.committed).toBe(false);
    expect(test.destination.closed).toBe(true);
    expect(test.sourceClosed()).toBe(true);
  });

  it('rejects at once when the signal has already fired', async () => {
    const test = await harness(fixturePresets.ociMinimal);
    await expect(test.copy({ signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: ErrorCodes.Aborted,
    });
    expect(test.destination.calls).toEqual([]);
  });

  it('retries a blob whose reads fail with network errors, then succeeds', async () => {
    let failuresLeft = 2;
    const test = await harness(fixturePresets.dockerSchema2, {
      wrapSource: (source) => ({
        ...source,
        getBlob: async (info, operation) => {
          const blob = await source.getBlob(info, operation);
          if (info.mediaType === MediaTypes.DockerLayerGzip && failuresLeft > 0) {
            failuresLeft--;
            // Fail mid-stream, after some bytes went to the destination.
            async function* broken() {
              for await (const chunk of blob.stream) {
                yield (chunk as Buffer).subarray(0, 64);
                throw networkError('ECONNRESET');
              }
            }
            return { stream: Readable.from(broken()), size: blob.size };
          }
          return blob;
        },
      }),
    });
    const result = await test.copy({ retryTimes: 2, retryDelayMs: 1 });
    expect(result.manifestDigest).toBe(test.image.topLevel.digest);
    const retries = test.events.filter((event) => event.type === 'retry');
    expect(retries).toHaveLength(2);
    expect(retries[0]).toMatchObject({ attempt: 1, delayMs: 1 });
    expectCompleteImage(test.destination, result.manifest, result.manifestMediaType);
    expect(test.destination.failedPuts).toBe(2);
  });

  it('retries opening the source, the first request (a registry ping), like every other request', async () => {
    let failures = 2;
    const test = await harness(fixturePresets.ociMinimal, {
      wrapSource: (source) => {
        if (failures-- > 0) throw networkError('ECONNREFUSED');
        return source;
      },
    });
    const result = await test.copy({ retryTimes: 2, retryDelayMs: 1 });
    expect(result.manifestDigest).toBe(test.image.topLevel.digest);
    expect(test.events.filter((event) => event.type === 'retry')).toMatchObject([
      { attempt: 1, delayMs: 1 },
      { attempt: 2, delayMs: 1 },
    ]);
    failures = 1;
    await expect(test.copy()).rejects.toThrow('ECONNREFUSED');
  });

  it('gives up after retryTimes', async () => {
    const test = await harness(fixturePresets.ociMinimal, {
      wrapSource: (source) => ({
        ...source,
        getManifest: async () => {
          throw networkError('ECONNREFUSED');
        },
      }),
    });
    await expect(test.copy({ retryTimes: 2, retryDelayMs: 1 })).rejects.toThrow('ECONNREFUSED');
    expect(test.events.filter((event) => event.type === 'retry')).toHaveLength(2);
    await expect(test.copy()).rejects.toThrow('ECONNREFUSED');
  });

  it('retries manifest writes and blob writes that fail with retryable errors', async () => {
    const test = await harness(fixturePresets.ociMinimal);
    const destination = test.destination;
    const originalPutManifest = destination.putManifest.bind(destination);
    const originalPutBlob = destination.putBlob.bind(destination);
    let manifestFailures = 1;
    let blobFailures = 1;
    destination.putManifest = async (...args) => {
      if (manifestFailures-- > 0)
        throw new GantryError(ErrorCodes.Transient, 'HTTP 503', { retryable: true });
      return originalPutManifest(...args);
    };
    destination.putBlob = async (stream, info, options) => {
      if (blobFailures-- > 0) {
        stream.destroy();
        throw networkError('EPIPE');
      }
      return originalPutBlob(stream, info, options);
    };
    const result = await test.copy({ retryTimes: 1, retryDelayMs: 1 });
    expect(result.manifestDigest).toBe(test.image.topLevel.digest);
    expect(test.events.filter((event) => event.type === 'retry')).toHaveLength(2);
  });

  it('stops the other layer copies when one fails, reporting the first failure', async () => {
    const test = await harness(
      {
        format: 'oci',
        layers: Array.from({ length: 4 }, (_, index) => ({
          entries: [{ type: 'file' as const, path: `f${index}`, content: `${index}` }],
        })),
      },
      {
        destination: { putBlobDelayMs: 5000 },
        wrapSource: (source) => ({
          ...source,
          getBlob: async (info, operation) => {
            if (info.digest === missing)
              throw new GantryError(ErrorCodes.BlobNotFound, `no blob ${info.digest}`);
            return source.getBlob(info, operation);
          },
        }),
      },
    );
    const missing = test.image.images[0]!.layerDigests[3]!;
    const started = Date.now();
    await expect(test.copy()).rejects.toMatchObject({ code: ErrorCodes.BlobNotFound });
    expect(Date.now() - started).toBeLessThan(4000);
    expect(test.destination.committed).toBe(false);
  });

  const manyLayers: FixtureImageSpec = {
    format: 'oci',
    layers: Array.from({ length: 8 }, (_, index) => ({
      entries: [{ type: 'file' as const, path: `layer-${index}.txt`, content: `layer ${index}\n` }],
    })),
  };

  it('copies layers concurrently, bounded by blobConcurrency', async () => {
    const parallel = await harness(manyLayers, { destination: { putBlobDelayMs: 40 } });
    await parallel.copy();
    expect(parallel.destination.maxInFlightPuts).toBeGreaterThanOrEqual(4);
    expect(parallel.destination.maxInFlightPuts).toBeLessThanOrEqual(6);
    const bounded = await harness(manyLayers, { destination: { putBlobDelayMs: 20 } });
    await bounded.copy({ blobConcurrency: 2 });
    expect(bounded.destination.maxInFlightPuts).toBe(2);
  });

  it('copies one blob at a time when the destination is not thread-safe', async () => {
    const test = await harness(manyLayers, {
      destination: { putBlobDelayMs: 10, properties: { hasThreadSafePutBlob: false } },
    });
    await test.copy();
    expect(test.destination.maxInFlightPuts).toBe(1);
  });
});

describe('copyImage: bounded memory', () => {
  it('streams a 64 MiB layer without buffering it', async () => {
    const layerSize = 64 * 1024 * 1024;
    const test = await harness(
      {
        format: 'oci',
        layers: [
          {
            compression: 'none',
            entries: [{ type: 'file', path: 'big.bin', randomSize: layerSize, seed: 'big' }],
          },
        ],
      },
      { destination: { keepBytes: false } },
    );
    const started = Date.now();
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 5);
    try {
      const result = await test.copy();
      expect(result.manifestDigest).toBe(test.image.topLevel.digest);
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    expect(peak - baseline).toBeLessThan(layerSize / 2);
    const layerBlob = test.image.blobs.get(test.image.images[0]!.layerDigests[0]!)!;
    const progress = test.events.filter((event) => event.type === 'blob-progress' && event.kind === 'layer');
    expect(progress.at(-1)).toMatchObject({ bytes: layerBlob.size, total: layerBlob.size });
    expect(progress.length).toBeLessThanOrEqual(Math.ceil((Date.now() - started) / 100) + 2);
  });
});

describe('copyImage: abort listeners', () => {
  it('does not warn about abort listeners when many layers are in flight', async () => {
    const layers = Array.from({ length: 12 }, (_, index) => ({
      entries: [{ type: 'file' as const, path: `layer-${index}`, content: `content ${index}` }],
    }));
    const test = await harness(
      { format: 'oci', layers },
      {
        // Like a destination or source that runs stream pipelines with the operation's signal: each
        // blob in flight holds a few abort listeners until its stream ends.
        wrapSource: (source) => ({
          ...source,
          getBlob: async (info, operation) => {
            const blob = await source.getBlob(info, operation);
            const signal = operation?.signal;
            if (signal) {
              const listeners = [() => {}, () => {}, () => {}];
              for (const listener of listeners) signal.addEventListener('abort', listener);
              blob.stream.once('close', () => {
                for (const listener of listeners) signal.removeEventListener('abort', listener);
              });
            }
            return blob;
          },
        }),
      },
    );
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      await test.copy({ signal: new AbortController().signal, blobConcurrency: 6 });
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning')).toEqual([]);
  });
});

describe('copyImage: layer positions and the list an image came from', () => {
  const repeatedLayer = { entries: [{ type: 'file' as const, path: 'shared', content: 'same bytes\n' }] };
  const repeating: FixtureImageSpec = {
    format: 'oci',
    layers: [
      repeatedLayer,
      { entries: [{ type: 'file', path: 'middle', content: 'middle\n' }] },
      repeatedLayer,
    ],
  };

  /** Records the layer options putBlob and tryReusingBlob get. */
  function recordPositions(destination: RecordingDestination) {
    const seen: Array<{
      call: string;
      digest?: string;
      layerIndex?: number;
      layerDiffIds?: readonly string[];
    }> = [];
    const put = destination.putBlob.bind(destination);
    destination.putBlob = async (stream, info, options) => {
      if (!options.isConfig) {
        seen.push({
          call: 'putBlob',
          ...(info.digest !== undefined ? { digest: info.digest } : {}),
          ...(options.layerIndex !== undefined ? { layerIndex: options.layerIndex } : {}),
          ...(options.layerDiffIds !== undefined ? { layerDiffIds: options.layerDiffIds } : {}),
        });
      }
      return put(stream, info, options);
    };
    const reuse = destination.tryReusingBlob!.bind(destination);
    destination.tryReusingBlob = async (info, options) => {
      if (!options.isConfig) {
        seen.push({
          call: 'tryReusingBlob',
          digest: info.digest,
          ...(options.layerIndex !== undefined ? { layerIndex: options.layerIndex } : {}),
          ...(options.layerDiffIds !== undefined ? { layerDiffIds: options.layerDiffIds } : {}),
        });
      }
      return reuse(info, options);
    };
    return seen;
  }

  it("gives each layer's manifest index (the first, for a repeated layer) and the config's DiffIDs to a destination that wants them", async () => {
    const test = await harness(repeating, { destination: { properties: { wantsLayerDiffIds: true } } });
    const seen = recordPositions(test.destination);
    await test.copy();
    const single = test.image.images[0]!;
    expect(single.layerDigests[0]).toBe(single.layerDigests[2]);
    const byCall = (call: string) =>
      seen.filter((entry) => entry.call === call).sort((a, b) => a.layerIndex! - b.layerIndex!);
    for (const call of ['tryReusingBlob', 'putBlob']) {
      expect(byCall(call)).toEqual(
        [0, 1].map((layerIndex) => ({
          call,
          digest: single.layerDigests[layerIndex],
          layerIndex,
          layerDiffIds: single.diffIds,
        })),
      );
    }
  });

  it('gives the index but no DiffIDs to a destination that does not ask for them (the config is read while the layers copy)', async () => {
    const test = await harness(fixturePresets.dockerSchema2);
    const seen = recordPositions(test.destination);
    await test.copy();
    const layerCount = test.image.images[0]!.layerDigests.length;
    const puts = seen.filter((entry) => entry.call === 'putBlob');
    expect(puts.map((entry) => entry.layerDiffIds)).toEqual(new Array(layerCount).fill(undefined));
    expect(puts.map((entry) => entry.layerIndex).sort()).toEqual([...new Array(layerCount).keys()]);
  });

  it('gives commit the list an image was chosen from, and nothing for a single image', async () => {
    for (const [spec, expected] of [
      [fixturePresets.multiArchOci, 'list'],
      [fixturePresets.dockerSchema2, 'none'],
    ] as const) {
      const test = await harness(spec);
      const commits: Array<CommitOptions | undefined> = [];
      const commit = test.destination.commit.bind(test.destination);
      (test.destination as { commit: (options?: CommitOptions) => Promise<void> }).commit = async (
        options?: CommitOptions,
      ) => {
        commits.push(options);
        return commit();
      };
      await test.copy();
      expect(commits).toHaveLength(1);
      if (expected === 'list') {
        expect(
          Buffer.from(commits[0]!.topLevelManifest!.bytes).equals(Buffer.from(test.image.topLevel.bytes)),
        ).toBe(true);
        expect(commits[0]!.topLevelManifest!.mediaType).toBe(test.image.topLevel.mediaType);
      } else {
        expect(commits[0]!.topLevelManifest).toBeUndefined();
      }
    }
  });

  it('refuses to copy a whole list to a destination that takes no list type, before copying anything', async () => {
    const test = await harness(fixturePresets.multiArchOci, {
      destination: {
        properties: { supportedManifestMimeTypes: [MediaTypes.OciManifest, MediaTypes.DockerManifest] },
      },
    });
    await expect(test.copy({ imageListSelection: 'all' })).rejects.toMatchObject({
      code: ErrorCodes.NotSupported,
      message:
        'copying multiple images: destination transport "fake" does not support copying multiple images as a group',
    });
    expect(test.destination.calls.filter((call) => call.startsWith('put'))).toEqual([]);
    expect(test.destination.committed).toBe(false);
  });
});
