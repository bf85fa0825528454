/**
 * The destination's in-order application of layers as their blobs arrive (`PutBlobOptions.layerIndex`
 * and `layerDiffIds`), driven through the destination API in orders the copy pipeline may produce, and
 * checked on disk and with podman.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import type { Digest } from '@gantry/core';
import { type FixtureImage, type FixtureImageSpec, fixturePresets } from '@gantry/core/testing';
import { type ImageDestination, verifyingStage } from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContainersStorageDestination, yieldingChunks } from './destination.js';
import { createVfsDriver } from './drivers/vfs.js';
import { layerIdFor } from './ids.js';
import type { ContainersStorageReference } from './reference.js';
import { ContainersStore, type LayerRecord } from './store.js';
import { createTestStore, fixtureLayout, type TestStore } from './test-support/stores.js';
import { createContainersStorageTransport } from './transport.js';

const transport = createContainersStorageTransport();

const twoLayers: FixtureImageSpec = {
  ...(fixturePresets.dockerSchema2 as FixtureImageSpec),
  format: 'oci',
};

let store: TestStore;
let image: FixtureImage;

beforeEach(async () => {
  store = await createTestStore('vfs');
  ({ image } = await fixtureLayout(store.directory, 'layout', twoLayers));
});
afterEach(async () => {
  await store.dispose();
});

async function layerRecords(): Promise<LayerRecord[]> {
  try {
    return JSON.parse(await readFile(join(store.graphRoot, 'vfs-layers', 'layers.json'), 'utf8'));
  } catch {
    return [];
  }
}

/** A destination whose temporary directory is unusable (a regular file): any spooling fails. */
async function openDestination(options: { spoolable: boolean }): Promise<ImageDestination> {
  const notADirectory = join(store.directory, 'not-a-directory');
  await writeFile(notADirectory, '');
  const reference = transport.parseReference(`${store.specification}x:t`);
  return reference.newImageDestination(options.spoolable ? {} : { temporaryDirectory: notADirectory });
}

const single = () => image.images[0]!;

async function putLayer(
  destination: ImageDestination,
  index: number,
  diffIds: readonly Digest[] = single().diffIds,
): Promise<void> {
  const digest = single().layerDigests[index]!;
  const blob = image.blobs.get(digest)!;
  await destination.putBlob(
    blob.open(),
    { digest, size: blob.size },
    { isConfig: false, layerIndex: index, layerDiffIds: diffIds },
  );
}

async function finish(destination: ImageDestination): Promise<void> {
  const { configDigest, manifestDigest } = single();
  const config = image.blobs.get(configDigest)!;
  await destination.putBlob(config.open(), { digest: configDigest, size: config.size }, { isConfig: true });
  const manifest = image.manifests.get(manifestDigest)!;
  await destination.putManifest(manifest.bytes, manifest.mediaType);
  await destination.commit();
}

const expectedLayerIds = () => {
  const [base, top] = single().diffIds;
  const baseId = layerIdFor(undefined, base!);
  return [baseId, layerIdFor(baseId, top!)];
};

describe('containers-storage destination: layers applied as their blobs arrive', () => {
  it('applies each layer in order while its blob arrives, with no temporary file', async () => {
    const destination = await openDestination({ spoolable: false });
    try {
      await putLayer(destination, 0);
      // In the store, complete, before the next blob or the commit.
      expect((await layerRecords()).map((layer) => [layer.id, layer.flags])).toEqual([
        [expectedLayerIds()[0], undefined],
      ]);
      await putLayer(destination, 1);
      expect((await layerRecords()).map((layer) => layer.id)).toEqual(expectedLayerIds());
      await finish(destination);
    } finally {
      await destination.close();
    }
    const inspected = JSON.parse(await store.podman(['image', 'inspect', 'x:t']));
    expect(inspected[0].Id).toBe(single().configDigest.slice(7));
    expect(inspected[0].RootFS.Layers).toEqual(single().diffIds);
    const records = await layerRecords();
    expect(records[1]!['compressed-diff-digest']).toBe(single().layerDigests[1]);
    expect(records[1]!['diff-digest']).toBe(single().diffIds[1]);
  }, 120_000);

  it('spools a layer that arrives before its parent and applies it once the parent is in the store', async () => {
    const destination = await openDestination({ spoolable: true });
    try {
      await putLayer(destination, 1);
      expect(await layerRecords()).toEqual([]);
      await putLayer(destination, 0);
      await finish(destination);
    } finally {
      await destination.close();
    }
    expect((await layerRecords()).map((layer) => layer.id)).toEqual(expectedLayerIds());
    const inspected = JSON.parse(await store.podman(['image', 'inspect', 'x:t']));
    expect(inspected[0].RootFS.Layers).toEqual(single().diffIds);
    const mountPoint = (await store.podman(['image', 'mount', 'x:t'])).trim();
    try {
      expect(await readFile(join(mountPoint, 'etc/motd'), 'utf8')).toBe('docker schema2 fixture\n');
    } finally {
      await store.podman(['image', 'unmount', 'x:t']);
    }
  }, 120_000);

  it('hands every chunk of a gzip layer back (chunkWritten) once spooled or taken in by gunzip, each once', async () => {
    const destination = await openDestination({ spoolable: true });
    const handedBack = new Map<Uint8Array, number>();
    const given: Uint8Array[] = [];
    const put = async (index: number) => {
      const digest = single().layerDigests[index]!;
      const blob = image.blobs.get(digest)!;
      const chunks: Buffer[] = [];
      for await (const chunk of blob.open()) chunks.push(chunk as Buffer);
      const bytes = Buffer.concat(chunks);
      expect(bytes.subarray(0, 2).toString('hex')).toBe('1f8b');
      // Many small chunks, each its own memory (as a source lends them).
      const pieces = Array.from({ length: Math.ceil(bytes.length / 100) }, (_, piece) =>
        Buffer.from(bytes.subarray(piece * 100, (piece + 1) * 100)),
      );
      given.push(...pieces);
      await destination.putBlob(
        Readable.from(pieces, { objectMode: false }),
        { digest, size: bytes.length },
        {
          isConfig: false,
          layerIndex: index,
          layerDiffIds: single().diffIds,
          chunkWritten: (chunk) => handedBack.set(chunk, (handedBack.get(chunk) ?? 0) + 1),
        },
      );
    };
    try {
      await put(1); // spooled: handed back once in the file
      await put(0); // streamed into the driver: handed back once gunzip took it in
      await finish(destination);
    } finally {
      await destination.close();
    }
    expect((await layerRecords()).map((layer) => layer.id)).toEqual(expectedLayerIds());
    const backed = new Set([...handedBack.keys()].map((chunk) => chunk.buffer));
    expect(given.filter((chunk) => !backed.has(chunk.buffer))).toEqual([]);
    expect([...handedBack.values()].every((count) => count === 1)).toBe(true);
    expect(handedBack.size).toBe(given.length);
  }, 120_000);

  it('refuses a layer whose contents do not have the DiffID the config gives, leaving no layer', async () => {
    const destination = await openDestination({ spoolable: false });
    const [base, top] = single().diffIds;
    try {
      await expect(putLayer(destination, 0, [top!, base!])).rejects.toMatchObject({
        code: 'ERR_GANTRY_DIGEST_MISMATCH',
        message: expect.stringContaining(`the config's DiffID is ${top}`),
      });
      expect(await layerRecords()).toEqual([]);
    } finally {
      await destination.close();
    }
    expect(await store.podman(['images', '-q'])).toBe('');
  }, 120_000);

  it('removes a layer whose blob fails mid-way, and applies it when the blob is given again (a retry)', async () => {
    const destination = await openDestination({ spoolable: false });
    const digest = single().layerDigests[0]!;
    const blob = image.blobs.get(digest)!;
    const bytes = Buffer.concat(await blob.open().toArray());
    // Half the blob, then the connection breaks: the error comes while the destination reads (a
    // stream destroyed before anybody reads it would be an uncaught error, whatever the destination).
    const broken = Readable.from(
      (async function* () {
        yield bytes.subarray(0, Math.floor(bytes.length / 2));
        await delay(50);
        throw new Error('connection reset');
      })(),
      { objectMode: false },
    );
    try {
      await expect(
        destination.putBlob(
          broken,
          { digest, size: blob.size },
          { isConfig: false, layerIndex: 0, layerDiffIds: single().diffIds },
        ),
      ).rejects.toThrow(/connection reset/);
      expect(await layerRecords()).toEqual([]);
      await putLayer(destination, 0);
      await putLayer(destination, 1);
      await finish(destination);
    } finally {
      await destination.close();
    }
    expect((await layerRecords()).map((layer) => layer.id)).toEqual(expectedLayerIds());
    const inspected = JSON.parse(await store.podman(['image', 'inspect', 'x:t']));
    expect(inspected[0].RootFS.Layers).toEqual(single().diffIds);
  }, 120_000);

  it('removes the layers it applied when closed without a commit', async () => {
    const destination = await openDestination({ spoolable: true });
    await putLayer(destination, 0);
    await putLayer(destination, 1);
    expect(await layerRecords()).toHaveLength(2);
    await destination.close();
    expect(await layerRecords()).toEqual([]);
    expect(JSON.parse(await store.podman(['images', '-a', '--format', 'json']))).toEqual([]);
  }, 120_000);

  /** A blob stream giving its first half, then (when `release` is called) the rest or an error. */
  function heldBlob(index: number, ending: 'rest' | 'error') {
    const digest = single().layerDigests[index]!;
    const blob = image.blobs.get(digest)!;
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const stream = Readable.from(
      (async function* () {
        const bytes = Buffer.concat(await blob.open().toArray());
        const half = Math.floor(bytes.length / 2);
        yield bytes.subarray(0, half);
        await released;
        if (ending === 'error') throw new Error('connection reset');
        yield bytes.subarray(half);
      })(),
      { objectMode: false },
    );
    return { stream, info: { digest, size: blob.size }, release };
  }

  /** Waits (polling layers.json) until `condition` holds for the layer records. */
  async function recordsUntil(condition: (records: LayerRecord[]) => boolean): Promise<LayerRecord[]> {
    for (let attempt = 0; ; attempt++) {
      const records = await layerRecords();
      if (condition(records)) return records;
      if (attempt > 2_000) throw new Error(`layers.json never got there: ${JSON.stringify(records)}`);
      await delay(20);
    }
  }

  /**
   * The first layer complete and the second one's (incomplete) record there: the second is being
   * applied (its record is saved ahead, with the first one's incomplete record).
   */
  const parentCompleteAndTopThere = (records: LayerRecord[]): boolean => {
    const [baseId, topId] = expectedLayerIds();
    return (
      records.some((layer) => layer.id === baseId && layer.flags === undefined) &&
      records.some((layer) => layer.id === topId)
    );
  };

  it('applies a spooled layer from its spool while its blob still arrives, complete only once the blob is', async () => {
    const destination = await openDestination({ spoolable: true });
    const [baseId, topId] = expectedLayerIds();
    const held = heldBlob(1, 'rest');
    try {
      // Layer 1 arrives first (spooled: its parent is not in the store), and only half of it for now.
      const top = destination.putBlob(held.stream, held.info, {
        isConfig: false,
        layerIndex: 1,
        layerDiffIds: single().diffIds,
      });
      await putLayer(destination, 0);
      // Its parent is in: layer 1 is being applied from the half that arrived, flagged incomplete.
      const during = await recordsUntil(parentCompleteAndTopThere);
      expect(during.map((layer) => [layer.id, layer.flags])).toEqual([
        [baseId, undefined],
        [topId, { incomplete: true }],
      ]);
      held.release();
      await top;
      await finish(destination);
    } finally {
      await destination.close();
    }
    const records = await layerRecords();
    expect(records.map((layer) => [layer.id, layer.flags])).toEqual([
      [baseId, undefined],
      [topId, undefined],
    ]);
    expect(records[1]!['compressed-diff-digest']).toBe(single().layerDigests[1]);
    expect(records[1]!['compressed-size']).toBe(held.info.size);
    expect(records[1]!['diff-digest']).toBe(single().diffIds[1]);
    const inspected = JSON.parse(await store.podman(['image', 'inspect', 'x:t']));
    expect(inspected[0].RootFS.Layers).toEqual(single().diffIds);
    const mountPoint = (await store.podman(['image', 'mount', 'x:t'])).trim();
    try {
      expect(await readFile(join(mountPoint, 'etc/motd'), 'utf8')).toBe('docker schema2 fixture\n');
    } finally {
      await store.podman(['image', 'unmount', 'x:t']);
    }
  }, 120_000);

  it('removes a layer being applied from its spool when its blob fails, and applies it when given again', async () => {
    const destination = await openDestination({ spoolable: true });
    const [baseId, topId] = expectedLayerIds();
    const held = heldBlob(1, 'error');
    try {
      const top = destination.putBlob(held.stream, held.info, {
        isConfig: false,
        layerIndex: 1,
        layerDiffIds: single().diffIds,
      });
      // Handled below; not an unhandled rejection meanwhile.
      top.catch(() => undefined);
      await putLayer(destination, 0);
      await recordsUntil(parentCompleteAndTopThere);
      held.release();
      await expect(top).rejects.toThrow(/connection reset/);
      // The half-applied layer is removed again; its parent stays.
      const after = await recordsUntil((records) => !records.some((layer) => layer.id === topId));
      expect(after.map((layer) => layer.id)).toEqual([baseId]);
      // The copy's retry gives the blob again: applied, and the image commits.
      await putLayer(destination, 1);
      await finish(destination);
    } finally {
      await destination.close();
    }
    expect((await layerRecords()).map((layer) => [layer.id, layer.flags])).toEqual([
      [baseId, undefined],
      [topId, undefined],
    ]);
    const inspected = JSON.parse(await store.podman(['image', 'inspect', 'x:t']));
    expect(inspected[0].RootFS.Layers).toEqual(single().diffIds);
  }, 120_000);

  it('does not complete a layer from a spooled blob found not to have its digest at its end', async () => {
    const destination = await openDestination({ spoolable: true });
    const [baseId, topId] = expectedLayerIds();
    const digest = single().layerDigests[1]!;
    const blob = image.blobs.get(digest)!;
    const bytes = Buffer.concat(await blob.open().toArray());
    // The same bytes but the last (gzip's size trailer) changed, through the verification the copy
    // pipeline puts before every destination: the stream fails at its end, after the layer's files
    // were all written from the spool.
    const corrupt = Buffer.from(bytes);
    corrupt[corrupt.length - 1] = (corrupt[corrupt.length - 1]! + 1) & 0xff;
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const stream = Readable.from(
      verifyingStage({ expectedDigest: digest, expectedSize: blob.size })(
        (async function* () {
          yield corrupt.subarray(0, corrupt.length - 1);
          await released;
          yield corrupt.subarray(corrupt.length - 1);
        })(),
      ),
      { objectMode: false },
    );
    try {
      const top = destination.putBlob(
        stream,
        { digest, size: blob.size },
        {
          isConfig: false,
          layerIndex: 1,
          layerDiffIds: single().diffIds,
        },
      );
      top.catch(() => undefined);
      await putLayer(destination, 0);
      await recordsUntil((records) => records.some((layer) => layer.id === topId));
      release();
      await expect(top).rejects.toMatchObject({ code: 'ERR_GANTRY_DIGEST_MISMATCH' });
      const after = await recordsUntil((records) => !records.some((layer) => layer.id === topId));
      expect(after.map((layer) => [layer.id, layer.flags])).toEqual([[baseId, undefined]]);
    } finally {
      await destination.close();
    }
  }, 120_000);
});

describe('containers-storage destination: a copy failing in its second of three layers', () => {
  const threeLayers: FixtureImageSpec = {
    format: 'oci',
    layers: [0, 1, 2].map((index) => ({
      entries: [
        { type: 'directory' as const, path: 'data' },
        // Large enough for the vfs parent copy to copy it on the thread pool.
        {
          type: 'file' as const,
          path: `data/layer-${index}.bin`,
          randomSize: (2 << 20) + index,
          seed: `three-${index}`,
        },
      ],
    })),
  };

  it('leaves no image, no layer and no temporary file (layer 3 spooled, layer 1 applied, layer 2 broken)', async () => {
    const { image: three } = await fixtureLayout(store.directory, 'three', threeLayers);
    const instance = three.images[0]!;
    const temporary = join(store.directory, 'temporary');
    await mkdir(temporary);
    const reference = transport.parseReference(`${store.specification}three:t`);
    const destination = await reference.newImageDestination({ temporaryDirectory: temporary });
    const put = (index: number, stream?: Readable) => {
      const digest = instance.layerDigests[index]!;
      const blob = three.blobs.get(digest)!;
      return destination.putBlob(
        stream ?? blob.open(),
        { digest, size: blob.size },
        { isConfig: false, layerIndex: index, layerDiffIds: instance.diffIds },
      );
    };
    try {
      // The last layer arrives first (spooled), then the first (applied), then the second breaks.
      await put(2);
      expect(await readdir(temporary)).toHaveLength(1);
      await put(0);
      expect(await recordIds()).toEqual([layerIdFor(undefined, instance.diffIds[0]!)]);
      const digest = instance.layerDigests[1]!;
      const bytes = Buffer.concat(await three.blobs.get(digest)!.open().toArray());
      const broken = Readable.from(
        (async function* () {
          yield bytes.subarray(0, Math.floor(bytes.length / 2));
          await delay(20);
          throw new Error('connection reset');
        })(),
        { objectMode: false },
      );
      await expect(put(1, broken)).rejects.toThrow(/connection reset/);
    } finally {
      // What the copy pipeline does when a layer fails: close without a commit.
      await destination.close();
    }
    expect(await recordIds()).toEqual([]);
    expect(await readdir(join(store.graphRoot, 'vfs', 'dir'))).toEqual([]);
    const tarSplits = (await readdir(join(store.graphRoot, 'vfs-layers'))).filter((name) =>
      name.endsWith('.tar-split.gz'),
    );
    expect(tarSplits).toEqual([]);
    const images = await readFile(join(store.graphRoot, 'vfs-images', 'images.json'), 'utf8').catch(
      () => '[]',
    );
    expect(JSON.parse(images)).toEqual([]);
    expect(await readdir(temporary)).toEqual([]);
    expect(JSON.parse(await store.podman(['images', '-a', '--format', 'json']))).toEqual([]);
  }, 120_000);
});

describe('containers-storage destination: blobs not needed yet yield to the layer being applied', () => {
  const threeLayers: FixtureImageSpec = {
    format: 'oci',
    layers: [0, 1, 2].map((index) => ({
      entries: [
        { type: 'directory' as const, path: 'data' },
        {
          type: 'file' as const,
          path: `data/layer-${index}.bin`,
          randomSize: (1 << 20) + index,
          seed: `yield-${index}`,
        },
      ],
    })),
  };

  it('hands on one chunk per turn of the event loop while asked to yield, and all at once otherwise', async () => {
    const chunks = Array.from({ length: 100 }, (_, index) => Buffer.from([index]));
    const source = async function* () {
      yield* chunks;
    };
    const taken = async (yields: boolean, turns: number) => {
      let count = 0;
      const consumer = (async () => {
        for await (const _ of yieldingChunks(source(), () => yields)) count += 1;
      })();
      for (let turn = 0; turn < turns; turn++) await new Promise((resolve) => setImmediate(resolve));
      const seen = count;
      await consumer;
      expect(count).toBe(chunks.length);
      return seen;
    };
    const yielding = await taken(true, 10);
    expect(yielding).toBeGreaterThanOrEqual(8);
    expect(yielding).toBeLessThanOrEqual(11);
    expect(await taken(false, 1)).toBe(chunks.length);
  });

  it('applies the layers right while a blob two places ahead arrives chunk by chunk during the first', async () => {
    const { image: three } = await fixtureLayout(store.directory, 'three', threeLayers);
    const instance = three.images[0]!;
    const reference = transport.parseReference(`${store.specification}three:t`);
    const destination = await reference.newImageDestination({});
    const bytesOf = async (index: number) =>
      Buffer.concat(await three.blobs.get(instance.layerDigests[index]!)!.open().toArray());
    /** Puts layer `index` as 1 KiB chunks, counting those written to the spool (`chunkWritten`). */
    const putInPieces = async (index: number, written: { count: number }) => {
      const bytes = await bytesOf(index);
      const pieces = Array.from({ length: Math.ceil(bytes.length / 1024) }, (_, piece) =>
        Buffer.from(bytes.subarray(piece * 1024, (piece + 1) * 1024)),
      );
      await destination.putBlob(
        Readable.from(pieces, { objectMode: false }),
        { digest: instance.layerDigests[index]!, size: bytes.length },
        {
          isConfig: false,
          layerIndex: index,
          layerDiffIds: instance.diffIds,
          chunkWritten: () => {
            written.count += 1;
          },
        },
      );
      return pieces.length;
    };
    // Layer 0 arrives in two halves: it is being applied until the second half is released.
    const first = await bytesOf(0);
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const base = destination.putBlob(
      Readable.from(
        (async function* () {
          yield first.subarray(0, first.length >> 1);
          await released;
          yield first.subarray(first.length >> 1);
        })(),
        { objectMode: false },
      ),
      { digest: instance.layerDigests[0]!, size: first.length },
      { isConfig: false, layerIndex: 0, layerDiffIds: instance.diffIds },
    );
    try {
      const baseId = layerIdFor(undefined, instance.diffIds[0]!);
      for (let attempt = 0; !(await recordIds()).includes(baseId); attempt++) {
        if (attempt > 2_000) throw new Error('layer 0 was never started');
        await delay(5);
      }
      // While layer 0 is being applied, layer 2's blob yields to it (one chunk per turn), layer 1's does not.
      const yields = (index: number) =>
        (destination as unknown as { yieldsToApplication(index: number): boolean }).yieldsToApplication(
          index,
        );
      expect([yields(1), yields(2)]).toEqual([false, true]);
      const last = { count: 0 };
      const lastPut = putInPieces(2, last);
      const next = { count: 0 };
      const nextPut = putInPieces(1, next);
      release();
      await base;
      const [nextChunks, lastChunks] = await Promise.all([nextPut, lastPut]);
      expect(next.count).toBe(nextChunks);
      expect(last.count).toBe(lastChunks);
      const { configDigest, manifestDigest } = instance;
      const config = three.blobs.get(configDigest)!;
      await destination.putBlob(
        config.open(),
        { digest: configDigest, size: config.size },
        { isConfig: true },
      );
      const manifest = three.manifests.get(manifestDigest)!;
      await destination.putManifest(manifest.bytes, manifest.mediaType);
      await destination.commit();
      // Nothing is being applied any more: nothing yields.
      expect([yields(1), yields(2)]).toEqual([false, false]);
    } finally {
      release();
      await base.catch(() => undefined);
      await destination.close();
    }
    const inspected = JSON.parse(await store.podman(['image', 'inspect', 'three:t']));
    expect(inspected[0].RootFS.Layers).toEqual(instance.diffIds);
  }, 120_000);
});

async function recordIds(): Promise<string[]> {
  return (await layerRecords()).map((layer) => layer.id);
}

describe('containers-storage destination: consecutive layers under one layers lock', () => {
  const fourLayers: FixtureImageSpec = {
    format: 'oci',
    layers: [0, 1, 2, 3].map((index) => ({
      entries: [
        { type: 'directory' as const, path: 'data' },
        {
          type: 'file' as const,
          path: `data/layer-${index}.bin`,
          randomSize: 70_000 + index,
          seed: `four-${index}`,
        },
      ],
    })),
  };

  /**
   * A destination on a real store whose layers.json writes are watched: after each one, the file on
   * disk is checked (every complete layer has its tar-split and its directory; at most two layers are
   * incomplete, the one being applied and the next one prepared ahead) and counted, as are the
   * exclusive layers lock transactions. Each layer directory created is checked to have its record on
   * disk already, and counted when it was created while a layers.json write was still in flight.
   * `beforeWrite` runs before a layers.json write (by its number, from 1) goes ahead; `imagesWrite` is
   * told when the images.json write starts and when it is done.
   */
  async function watchedDestination(
    name: string,
    failingWrite?: number,
    hooks: {
      beforeWrite?: (write: number) => Promise<void>;
      imagesWrite?: (stage: 'start' | 'done') => void;
    } = {},
  ) {
    const reference = transport.parseReference(
      `${store.specification}${name}:t`,
    ) as ContainersStorageReference;
    const watched = new ContainersStore(
      reference.location,
      createVfsDriver({ graphRoot: store.graphRoot, runRoot: store.runRoot, options: [], rootless: false }),
    );
    const counts = { exclusiveLocks: 0, layersJsonWrites: 0, createdDuringWrite: 0 };
    const problems: string[] = [];
    let writesInFlight = 0;
    const createLayer = watched.driver.createLayer.bind(watched.driver);
    watched.driver.createLayer = async (id, parent) => {
      // Seen before anything is awaited here: the write may be done by the time layers.json is read.
      if (writesInFlight > 0) counts.createdDuringWrite++;
      if (!(await layerRecords()).some((record) => record.id === id))
        problems.push(`layer ${id} created before its record was on disk`);
      return createLayer(id, parent);
    };
    const check = async () => {
      counts.layersJsonWrites++;
      const records = await layerRecords();
      const incomplete = records.filter((record) => record.flags?.incomplete === true);
      if (incomplete.length > 2) problems.push(`${incomplete.length} incomplete layers at once`);
      for (const record of records) {
        if (record.flags?.incomplete === true) continue;
        const tarSplit = await readFile(watched.tarSplitPath(record.id)).catch(() => undefined);
        if (!tarSplit) problems.push(`complete layer ${record.id} has no tar-split`);
        const files = await readdir(join(store.graphRoot, 'vfs', 'dir', record.id)).catch(() => undefined);
        if (!files) problems.push(`complete layer ${record.id} has no directory`);
      }
    };
    const openLayers = watched.openLayers.bind(watched);
    watched.openLayers = async (exclusive, options) => {
      const opened = await openLayers(exclusive, options);
      if (exclusive) counts.exclusiveLocks++;
      const { table } = opened;
      const saveAsync = table.saveAsync.bind(table);
      const save = table.save.bind(table);
      table.saveAsync = async (alongside) => {
        writesInFlight++;
        try {
          await hooks.beforeWrite?.(counts.layersJsonWrites + 1);
          if (counts.layersJsonWrites + 1 === failingWrite) {
            counts.layersJsonWrites++;
            throw Object.assign(new Error('no space left on device (injected)'), { code: 'ENOSPC' });
          }
          await saveAsync(alongside);
        } finally {
          writesInFlight--;
        }
        await check();
      };
      table.save = () => {
        save();
        // Synchronous save: every complete layer has its tar-split and directory (checked at once).
        const records: LayerRecord[] = JSON.parse(
          readFileSync(join(store.graphRoot, 'vfs-layers', 'layers.json'), 'utf8'),
        );
        for (const record of records) {
          if (record.flags?.incomplete === true) continue;
          if (!existsSync(watched.tarSplitPath(record.id)))
            problems.push(`complete layer ${record.id} has no tar-split`);
          if (!existsSync(join(store.graphRoot, 'vfs', 'dir', record.id)))
            problems.push(`complete layer ${record.id} has no directory`);
        }
      };
      return opened;
    };
    const withImages = watched.withImages.bind(watched);
    watched.withImages = (exclusive, action, options) =>
      withImages(
        exclusive,
        (table, lock) => {
          const saveAsync = table.saveAsync.bind(table);
          table.saveAsync = async (alongside, saveOptions) => {
            hooks.imagesWrite?.('start');
            await saveAsync(alongside, saveOptions);
            hooks.imagesWrite?.('done');
          };
          return action(table, lock);
        },
        options,
      );
    const destination = new ContainersStorageDestination(reference, watched, {
      temporaryDirectory: store.directory,
    });
    return { destination, counts, problems, check };
  }

  const putFour = (
    destination: ImageDestination,
    four: FixtureImage,
    index: number,
    diffIds = four.images[0]!.diffIds,
  ) => {
    const digest = four.images[0]!.layerDigests[index]!;
    const blob = four.blobs.get(digest)!;
    return destination.putBlob(
      blob.open(),
      { digest, size: blob.size },
      { isConfig: false, layerIndex: index, layerDiffIds: diffIds },
    );
  };

  it('prepares the next layer ahead and starts it while the write completing a layer is synced, with the lock held from one to the next', async () => {
    const { image: four } = await fixtureLayout(store.directory, 'four', fourLayers);
    const instance = four.images[0]!;
    const { destination, counts, problems } = await watchedDestination('four');
    try {
      // Layers 1-3 arrive first (spooled, their parents not in the store), then layer 0 (streamed in):
      // once it is stored, 1, 2 and 3 follow one another.
      for (const index of [1, 2, 3]) await putFour(destination, four, index);
      expect(await layerRecords()).toEqual([]);
      await putFour(destination, four, 0);
      const config = four.blobs.get(instance.configDigest)!;
      await destination.putBlob(
        config.open(),
        { digest: instance.configDigest, size: config.size },
        { isConfig: true },
      );
      const manifest = four.manifests.get(instance.manifestDigest)!;
      await destination.putManifest(manifest.bytes, manifest.mediaType);
      await destination.commit();
    } finally {
      await destination.close();
    }
    expect(problems).toEqual([]);
    // One exclusive transaction for the four layers; layers.json written once to start layer 0 (and
    // prepare layer 1), once per layer to complete it (and prepare the one after the next), instead of
    // twice per layer. Layers 1, 2 and 3 were created while the write completing their parent was
    // still being synced.
    expect(counts).toEqual({ exclusiveLocks: 1, layersJsonWrites: 5, createdDuringWrite: 3 });
    const records = await layerRecords();
    let parent: string | undefined;
    expect(records.map((record) => [record.id, record.parent, record.flags])).toEqual(
      instance.diffIds.map((diffId) => {
        const id = layerIdFor(parent, diffId);
        const row = [id, parent, undefined];
        parent = id;
        return row;
      }),
    );
    const inspected = JSON.parse(await store.podman(['image', 'inspect', 'four:t']));
    expect(inspected[0].RootFS.Layers).toEqual(instance.diffIds);
    const mountPoint = (await store.podman(['image', 'mount', 'four:t'])).trim();
    try {
      expect((await readdir(join(mountPoint, 'data'))).sort()).toEqual(
        [0, 1, 2, 3].map((index) => `layer-${index}.bin`),
      );
    } finally {
      await store.podman(['image', 'unmount', 'four:t']);
    }
  }, 180_000);

  it('removes the prepared layer and releases the lock when a layer of the chain fails', async () => {
    const { image: four } = await fixtureLayout(store.directory, 'four', fourLayers);
    const instance = four.images[0]!;
    // Layer 2's DiffID given wrong (layer 3's): its contents do not match when it is applied.
    const diffIds = [...instance.diffIds];
    diffIds[2] = instance.diffIds[3]!;
    const { destination, problems } = await watchedDestination('four');
    try {
      for (const index of [1, 2, 3]) await putFour(destination, four, index, diffIds);
      await putFour(destination, four, 0, diffIds);
      const config = four.blobs.get(instance.configDigest)!;
      await destination.putBlob(
        config.open(),
        { digest: instance.configDigest, size: config.size },
        { isConfig: true },
      );
      const manifest = four.manifests.get(instance.manifestDigest)!;
      await destination.putManifest(manifest.bytes, manifest.mediaType);
      await expect(destination.commit()).rejects.toThrow(/layer 2 .*DiffID/);
    } finally {
      await destination.close();
    }
    expect(problems).toEqual([]);
    expect(await layerRecords()).toEqual([]);
    expect(await readdir(join(store.graphRoot, 'vfs', 'dir'))).toEqual([]);
    // The lock is free: podman (another process) takes it.
    expect(JSON.parse(await store.podman(['images', '-a', '--format', 'json']))).toEqual([]);
  }, 180_000);

  it('removes a layer whose completing write failed while the next one was being applied', async () => {
    const { image: four } = await fixtureLayout(store.directory, 'four', fourLayers);
    const instance = four.images[0]!;
    // Writes: 1 starts layer 0 (and prepares 1), 2 completes 0, 3 completes 1 (synced while layer 2 is
    // applied): it fails.
    const { destination, problems } = await watchedDestination('four', 3);
    try {
      for (const index of [1, 2, 3]) await putFour(destination, four, index);
      await putFour(destination, four, 0);
      const config = four.blobs.get(instance.configDigest)!;
      await destination.putBlob(
        config.open(),
        { digest: instance.configDigest, size: config.size },
        { isConfig: true },
      );
      const manifest = four.manifests.get(instance.manifestDigest)!;
      await destination.putManifest(manifest.bytes, manifest.mediaType);
      // Layer 1, whose completing write failed, is removed with layer 2 (the watched writes find no
      // complete record without its tar-split); the failed commit removes layer 0.
      await expect(destination.commit()).rejects.toThrow(/injected/);
    } finally {
      await destination.close();
    }
    expect(problems).toEqual([]);
    expect(await layerRecords()).toEqual([]);
    expect(await readdir(join(store.graphRoot, 'vfs', 'dir'))).toEqual([]);
  }, 180_000);
  /** Puts the four layers (1-3 spooled first, then 0 streamed in), the config and the manifest. */
  async function putWholeFour(destination: ImageDestination, four: FixtureImage): Promise<void> {
    const instance = four.images[0]!;
    for (const index of [1, 2, 3]) await putFour(destination, four, index);
    await putFour(destination, four, 0);
    const config = four.blobs.get(instance.configDigest)!;
    await destination.putBlob(
      config.open(),
      { digest: instance.configDigest, size: config.size },
      { isConfig: true },
    );
    const manifest = four.manifests.get(instance.manifestDigest)!;
    await destination.putManifest(manifest.bytes, manifest.mediaType);
  }

  const imagesJson = () =>
    readFile(join(store.graphRoot, 'vfs-images', 'images.json'), 'utf8').catch(() => '');

  it('writes the image while the write completing its last layer is synced, and puts images.json in place only after it', async () => {
    const { image: four } = await fixtureLayout(store.directory, 'four', fourLayers);
    const instance = four.images[0]!;
    let imagesWriteStarted: () => void = () => undefined;
    const started = new Promise<void>((resolve) => {
      imagesWriteStarted = resolve;
    });
    const events: string[] = [];
    const { destination, problems } = await watchedDestination('four', undefined, {
      // Write 5 completes layer 3, the last: it waits until the image's write has started (without
      // the overlap that never happens; the wait gives up after a while so that the test fails
      // instead of hanging).
      beforeWrite: async (write) => {
        if (write !== 5) return;
        const outcome = await Promise.race([started.then(() => 'started'), delay(20_000, 'not started')]);
        events.push(`layer 3's write: image write ${outcome}`);
        if (await imagesJson()) problems.push('images.json written before the last layer was complete');
      },
      imagesWrite: (stage) => {
        events.push(`images.json write ${stage}`);
        if (stage === 'start') imagesWriteStarted();
        // images.json is in place: every layer it names is complete on disk.
        const onDisk: LayerRecord[] = JSON.parse(
          readFileSync(join(store.graphRoot, 'vfs-layers', 'layers.json'), 'utf8'),
        );
        if (stage === 'done' && (onDisk.length !== 4 || onDisk.some((record) => record.flags !== undefined)))
          problems.push('images.json in place before the last layer was complete');
      },
    });
    try {
      await putWholeFour(destination, four);
      await destination.commit();
    } finally {
      await destination.close();
    }
    expect(problems).toEqual([]);
    expect(events).toEqual([
      'images.json write start',
      "layer 3's write: image write started",
      'images.json write done',
    ]);
    const records = await layerRecords();
    expect(records.map((record) => record.flags)).toEqual([undefined, undefined, undefined, undefined]);
    const inspected = JSON.parse(await store.podman(['image', 'inspect', 'four:t']));
    expect(inspected[0].RootFS.Layers).toEqual(instance.diffIds);
  }, 180_000);

  it('fails the commit, writes no image and removes the layers when the write completing the last layer fails', async () => {
    const { image: four } = await fixtureLayout(store.directory, 'four', fourLayers);
    // Write 5 completes layer 3, the last: it fails while the image is being written.
    const { destination, problems } = await watchedDestination('four', 5);
    try {
      await putWholeFour(destination, four);
      await expect(destination.commit()).rejects.toThrow(/injected/);
    } finally {
      await destination.close();
    }
    expect(problems).toEqual([]);
    expect(await imagesJson()).not.toContain('four');
    expect(await layerRecords()).toEqual([]);
    expect(await readdir(join(store.graphRoot, 'vfs', 'dir'))).toEqual([]);
    // No temporary file of the image's write is left.
    expect(
      (await readdir(join(store.graphRoot, 'vfs-images'))).filter((name) => name.startsWith('.tmp-')),
    ).toEqual([]);
    // The lock is free: podman (another process) takes it.
    expect(JSON.parse(await store.podman(['images', '-a', '--format', 'json']))).toEqual([]);
  }, 180_000);
  it('removes the spooled blobs while the image is written once every layer is in the store', async () => {
    const { image: four } = await fixtureLayout(store.directory, 'four', fourLayers);
    const { destination } = await watchedDestination('four');
    const spools = async () =>
      (await readdir(store.directory)).filter((name) => name.endsWith('containers-storage'));
    try {
      await putWholeFour(destination, four);
      // Layers 1-3 arrived before layer 0: spooled.
      expect(await spools()).toHaveLength(1);
      await destination.commit();
      // Started by commit, not left to close.
      const removal = (destination as unknown as { spoolRemoval?: Promise<void> }).spoolRemoval;
      expect(removal).toBeDefined();
      await removal;
      expect(await spools()).toEqual([]);
    } finally {
      await destination.close();
    }
    expect(JSON.parse(await store.podman(['image', 'inspect', 'four:t']))[0].RootFS.Layers).toEqual(
      four.images[0]!.diffIds,
    );
  }, 180_000);
});
