import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { FixtureImageSpec } from '@gantry/core/testing';
import { fileWriterRunning } from '@gantry/layer-tree';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContainersStorageDestination } from './destination.js';
import { createVfsDriver } from './drivers/vfs.js';
import { layerIdFor } from './ids.js';
import type { ContainersStorageReference } from './reference.js';
import { beginsWithSmallFiles, smallFilesPrefixLength } from './small-files.js';
import { ContainersStore } from './store.js';
import { createTestStore, fixtureLayout, type TestStore } from './test-support/stores.js';
import { createContainersStorageTransport } from './transport.js';

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gantry-small-files-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

/** A tar (GNU tar, in `format`) of the files given, in that order, and its first bytes as a blob would begin. */
async function tarOf(
  files: Array<{ name: string; size: number }>,
  format: 'gnu' | 'pax' = 'gnu',
): Promise<Buffer> {
  const root = join(directory, 'root');
  await rm(root, { recursive: true, force: true });
  for (const file of files) {
    await mkdir(join(root, file.name, '..'), { recursive: true });
    // Random contents: gzip does not shrink a large file's data, so what follows it lies beyond the
    // first bytes looked at.
    await writeFile(join(root, file.name), randomBytes(file.size));
  }
  return execFileSync('tar', [
    '-c',
    `--format=${format}`,
    '--no-recursion',
    '-C',
    root,
    ...files.map((file) => file.name),
  ]);
}

const head = (blob: Buffer) => blob.subarray(0, smallFilesPrefixLength);

describe('beginsWithSmallFiles', () => {
  it('finds small regular files at the start of a gzip or plain layer tar (GNU and PAX headers)', async () => {
    const files = Array.from({ length: 40 }, (_, index) => ({
      name: `many/d${index % 4}/f${index}`,
      size: 11,
    }));
    for (const format of ['gnu', 'pax'] as const) {
      const tar = await tarOf(files, format);
      expect(beginsWithSmallFiles(head(gzipSync(tar)))).toBe(true);
      expect(beginsWithSmallFiles(head(tar))).toBe(true);
    }
    // A file of exactly 256 KiB is still written on the worker.
    expect(beginsWithSmallFiles(head(gzipSync(await tarOf([{ name: 'edge', size: 256 * 1024 }]))))).toBe(
      true,
    );
  });

  it('says no for a layer that begins with a large file, even when small ones follow beyond the first bytes', async () => {
    const tar = await tarOf([
      { name: 'bin/part-0', size: 256 * 1024 + 1 },
      { name: 'etc/small', size: 11 },
    ]);
    expect(beginsWithSmallFiles(head(gzipSync(tar)))).toBe(false);
    expect(beginsWithSmallFiles(head(tar))).toBe(false);
  });

  it('says no for what it cannot read: empty, not a tar, other compressions, a header cut short', async () => {
    expect(beginsWithSmallFiles(new Uint8Array(0))).toBe(false);
    expect(beginsWithSmallFiles(Buffer.from('not a tar at all, just text'.repeat(100)))).toBe(false);
    // zstd's magic number, then nothing readable.
    expect(beginsWithSmallFiles(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4]))).toBe(false);
    const tar = await tarOf([{ name: 'small', size: 11 }]);
    expect(beginsWithSmallFiles(tar.subarray(0, 300))).toBe(false);
    // Corrupt gzip data after a valid gzip header.
    const gzip = gzipSync(tar);
    expect(beginsWithSmallFiles(Buffer.concat([gzip.subarray(0, 10), Buffer.alloc(100, 0xff)]))).toBe(false);
  });
});

describe('containers-storage destination: the file-writing worker started ahead', () => {
  const transport = createContainersStorageTransport();
  let store: TestStore;
  beforeEach(async () => {
    store = await createTestStore('vfs');
  });
  afterEach(async () => {
    await store.dispose();
  });

  const oneLayer = (...files: Array<{ path: string; randomSize: number }>): FixtureImageSpec => ({
    format: 'oci',
    layers: [
      {
        entries: [
          { type: 'directory' as const, path: 'data' },
          ...files.map((file) => ({ type: 'file' as const, ...file, seed: file.path })),
        ],
      },
    ],
  });

  /**
   * Copies the image of `spec` into the store through the destination (its layer streamed in, as from a
   * registry); returns, for each layer directory created, whether the worker was running by then.
   */
  async function putImage(name: string, spec: FixtureImageSpec): Promise<boolean[]> {
    const { image } = await fixtureLayout(store.directory, name, spec);
    const instance = image.images[0]!;
    const reference = transport.parseReference(
      `${store.specification}${name}:t`,
    ) as ContainersStorageReference;
    const watched = new ContainersStore(
      reference.location,
      createVfsDriver({ graphRoot: store.graphRoot, runRoot: store.runRoot, options: [], rootless: false }),
    );
    const running: boolean[] = [];
    const createLayer = watched.driver.createLayer.bind(watched.driver);
    watched.driver.createLayer = async (id, parent) => {
      running.push(fileWriterRunning());
      return createLayer(id, parent);
    };
    const destination = new ContainersStorageDestination(reference, watched, {
      temporaryDirectory: store.directory,
    });
    try {
      for (const [index, digest] of instance.layerDigests.entries()) {
        const blob = image.blobs.get(digest)!;
        await destination.putBlob(
          blob.open(),
          { digest, size: blob.size },
          { isConfig: false, layerIndex: index, layerDiffIds: instance.diffIds },
        );
      }
      const config = image.blobs.get(instance.configDigest)!;
      await destination.putBlob(
        config.open(),
        { digest: instance.configDigest, size: config.size },
        { isConfig: true },
      );
      const manifest = image.manifests.get(instance.manifestDigest)!;
      await destination.putManifest(manifest.bytes, manifest.mediaType);
      await destination.commit();
    } finally {
      await destination.close();
    }
    const top = layerIdFor(undefined, instance.diffIds[0]!);
    const files = spec.layers[0]!.entries.filter((entry) => entry.type === 'file');
    for (const file of files) {
      const written = await readFile(join(store.graphRoot, 'vfs', 'dir', top, file.path));
      expect(written.length).toBe((file as { randomSize: number }).randomSize);
    }
    return running;
  }

  // In this order: the first copy must find the worker not started (nothing in this file started it).
  it('does not start it ahead for a layer that begins with a large file', async () => {
    expect(await putImage('large', oneLayer({ path: 'data/large.bin', randomSize: 300_000 }))).toEqual([
      false,
    ]);
    // Nor did the layer need it.
    expect(fileWriterRunning()).toBe(false);
  }, 120_000);

  it('starts it while the record of a layer that begins with small files is saved', async () => {
    expect(fileWriterRunning()).toBe(false);
    const small = oneLayer(
      { path: 'data/first', randomSize: 100 },
      { path: 'data/large.bin', randomSize: 300_000 },
      { path: 'data/last', randomSize: 11 },
    );
    expect(await putImage('small', small)).toEqual([true]);
  }, 120_000);
});
