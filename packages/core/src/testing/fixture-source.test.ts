import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Digest, digestOf } from '../digest.js';
import { ErrorCodes, GantryError, hasErrorCode } from '../errors.js';
import type { BlobInfo, BlobToWrite, ImageDestination, PutBlobOptions } from '../transport/contract.js';
import { buildFixtureImage } from './fixture-builder.js';
import { fixturePresets } from './fixture-presets.js';
import { createFixtureImageSource, writeFixtureToDestination } from './fixture-source.js';
import type { FixtureImage } from './fixture-types.js';
import { createMemoryTransport } from './memory-transport.test-helper.js';

let temporaryRoot: string;
let single: FixtureImage;
let list: FixtureImage;
beforeAll(async () => {
  temporaryRoot = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  single = await buildFixtureImage(fixturePresets.dockerSchema2, { directory: temporaryRoot });
  list = await buildFixtureImage(fixturePresets.multiArchOci, { directory: temporaryRoot });
});
afterAll(async () => {
  await rm(temporaryRoot, { recursive: true, force: true });
});

const reference = createMemoryTransport().parseReference('/fixtures:latest');

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('createFixtureImageSource', () => {
  it('serves the top-level manifest, instances, blobs and signatures', async () => {
    const instance = list.images[2]!.manifestDigest;
    const source = createFixtureImageSource(list, reference, {
      signatures: [new Uint8Array([1])],
      instanceSignatures: new Map([[instance, [new Uint8Array([2])]]]),
    });
    expect(source.reference).toBe(reference);
    expect(await source.getManifest()).toEqual({
      bytes: list.topLevel.bytes,
      mediaType: list.topLevel.mediaType,
    });
    expect((await source.getManifest(instance)).bytes).toEqual(list.manifests.get(instance)!.bytes);
    const config = list.images[2]!.configDigest;
    const blob = await source.getBlob({ digest: config, size: -1 });
    const bytes = await readAll(blob.stream);
    expect(digestOf(bytes)).toBe(config);
    expect(blob.size).toBe(bytes.byteLength);
    expect(await source.getSignatures()).toEqual([new Uint8Array([1])]);
    expect(await source.getSignatures(instance)).toEqual([new Uint8Array([2])]);
    expect(await source.getSignatures(list.images[0]!.manifestDigest)).toEqual([]);
  });

  it('rejects unknown manifests and blobs with the contract codes, and use after close', async () => {
    const source = createFixtureImageSource(single, reference);
    await expect(source.getManifest(digestOf('nope'))).rejects.toSatisfy((error) =>
      hasErrorCode(error, ErrorCodes.ImageNotFound),
    );
    await expect(source.getBlob({ digest: digestOf('nope'), size: 4 })).rejects.toSatisfy((error) =>
      hasErrorCode(error, ErrorCodes.BlobNotFound),
    );
    await source.close();
    await source.close();
    await expect(source.getManifest()).rejects.toThrow(/after close/);
  });
});

/** A destination that records the calls it receives. */
function recordingDestination(failOn?: string): { destination: ImageDestination; calls: string[] } {
  const calls: string[] = [];
  const record = (call: string) => {
    calls.push(call);
    if (failOn && call.startsWith(failOn)) throw new GantryError(ErrorCodes.Internal, `failing on ${call}`);
  };
  const destination: ImageDestination = {
    reference,
    properties: {
      supportedManifestMimeTypes: undefined,
      desiredLayerCompression: 'preserve',
      acceptsForeignLayerURLs: false,
      mustMatchRuntimeOS: false,
      supportsSignatures: true,
      hasThreadSafePutBlob: false,
      ignoresEmbeddedDockerReference: true,
    },
    async putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo> {
      const bytes = await readAll(stream);
      record(`putBlob ${info.digest} ${options.isConfig ? 'config' : 'layer'}`);
      return { digest: digestOf(bytes), size: bytes.byteLength };
    },
    async putManifest(_bytes: Uint8Array, mediaType: string, instanceDigest?: Digest) {
      record(`putManifest ${instanceDigest ?? 'top'} ${mediaType}`);
    },
    async putSignatures(signatures: Uint8Array[], instanceDigest?: Digest) {
      record(`putSignatures ${instanceDigest ?? 'top'} ${signatures.length}`);
    },
    async commit() {
      record('commit');
    },
    async close() {
      calls.push('close');
    },
  };
  return { destination, calls };
}

describe('writeFixtureToDestination', () => {
  it('follows the contract call order for a single image', async () => {
    const { destination, calls } = recordingDestination();
    await writeFixtureToDestination(single, destination, { signatures: [new Uint8Array([9])] });
    const image = single.images[0]!;
    expect(calls).toEqual([
      ...image.layerDigests.map((digest) => `putBlob ${digest} layer`),
      `putBlob ${image.configDigest} config`,
      `putManifest top ${single.topLevel.mediaType}`,
      'putSignatures top 1',
      'commit',
      'close',
    ]);
  });

  it('writes shared blobs once, instance manifests before the list, and instance signatures first', async () => {
    const { destination, calls } = recordingDestination();
    const instance = list.images[1]!.manifestDigest;
    await writeFixtureToDestination(list, destination, {
      signatures: [new Uint8Array([1])],
      instanceSignatures: new Map([[instance, [new Uint8Array([2]), new Uint8Array([3])]]]),
    });
    const blobCalls = calls.filter((call) => call.startsWith('putBlob'));
    expect(new Set(blobCalls).size).toBe(blobCalls.length);
    expect(blobCalls).toHaveLength(list.blobs.size);
    expect(calls.slice(blobCalls.length)).toEqual([
      ...list.images.map(
        (image) => `putManifest ${image.manifestDigest} application/vnd.oci.image.manifest.v1+json`,
      ),
      `putManifest top ${list.topLevel.mediaType}`,
      `putSignatures ${instance} 2`,
      'putSignatures top 1',
      'commit',
      'close',
    ]);
  });

  it('closes without committing on failure, and when asked not to commit', async () => {
    const failing = recordingDestination('putManifest');
    await expect(writeFixtureToDestination(single, failing.destination)).rejects.toThrow(
      /failing on putManifest/,
    );
    expect(failing.calls.at(-1)).toBe('close');
    expect(failing.calls).not.toContain('commit');
    const uncommitted = recordingDestination();
    await writeFixtureToDestination(single, uncommitted.destination, { commit: false });
    expect(uncommitted.calls.slice(-2)).toEqual([`putManifest top ${single.topLevel.mediaType}`, 'close']);
  });

  it('rejects when putBlob reports another digest than the blob has', async () => {
    const { destination } = recordingDestination();
    const lying: ImageDestination = {
      ...destination,
      async putBlob(stream, info, options) {
        await destination.putBlob(stream, info, options);
        return { digest: digestOf('other'), size: 1 };
      },
    };
    await expect(writeFixtureToDestination(single, lying)).rejects.toSatisfy((error) =>
      hasErrorCode(error, ErrorCodes.DigestMismatch),
    );
  });
});
