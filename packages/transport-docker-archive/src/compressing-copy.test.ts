/**
 * An archive's uncompressed layers gzip-compressed by the copy pipeline: the layer's chunks are read into
 * pooled buffers (`compressorInputBuffers`) that the block compressor gives back once compressed, while the
 * source check hashes the same chunks on the thread pool. A buffer read into again before it is hashed
 * would change what is hashed (a digest mismatch) or, once hashed, what is compressed (a wrong layer).
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import { compressorInputBuffers, type Digest, MediaTypes } from '@gantry/core/transport';
import { buildRawTar } from '@gantry/tar-archive/test-support';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { dockerArchiveTransport } from './index.js';
import { type Collected, collectingReference, sha256, temporaryDirectory } from './test-support/helpers.js';

let directory = '';
let remove: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ directory, remove } = await temporaryDirectory());
});
afterEach(() => remove());

const mebibyte = 1024 * 1024;

/** Bytes that compress (repeated text with a counter) or do not (random: gzip stores them). */
function layerBytes(size: number, compressible: boolean): Buffer {
  if (!compressible) return randomBytes(size);
  const bytes = Buffer.alloc(size);
  let offset = 0;
  for (let line = 0; offset < size; line += 1) {
    offset += bytes.write(`line ${line} of a layer that compresses well ${line % 97}\n`, offset);
  }
  return bytes;
}

/** A docker-archive (as `docker save` writes it) of one image whose layers are `layers`, uncompressed. */
async function writeArchive(layers: Buffer[]): Promise<{ archive: string; diffIds: Digest[] }> {
  const diffIds = layers.map((layer) => sha256(layer));
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: diffIds },
    }),
  );
  const configName = `${sha256(config).slice('sha256:'.length)}.json`;
  const layerNames = diffIds.map((diffId) => `${diffId.slice('sha256:'.length)}/layer.tar`);
  const manifest = JSON.stringify([{ Config: configName, RepoTags: ['pooled:latest'], Layers: layerNames }]);
  const archive = path.join(directory, 'image.tar');
  await writeFile(
    archive,
    buildRawTar([
      { name: 'manifest.json', data: manifest },
      { name: configName, data: config },
      ...layers.map((layer, index) => ({ name: layerNames[index]!, data: layer })),
    ]),
  );
  return { archive, diffIds };
}

describe('uncompressed archive layers compressed by the copy', () => {
  it('writes every layer as gzip of exactly its bytes, its DiffID verified, its read buffers reused', async () => {
    // Random layers are stored by gzip (a copy, faster than hashing): a read buffer given back by the
    // compressor before the hash is done would be read into while it is hashed. The odd sizes leave a
    // short last chunk; several layers run at once.
    const layers = [
      layerBytes(9 * mebibyte + 123, false),
      layerBytes(7 * mebibyte, true),
      layerBytes(8 * mebibyte + 4097, false),
      layerBytes(6 * mebibyte + 1, true),
    ];
    const { archive, diffIds } = await writeArchive(layers);
    const collected: Collected = { blobs: new Map(), committed: false };
    const pool = compressorInputBuffers();
    const take = vi.spyOn(pool, 'take');
    let buffers: Buffer[];
    try {
      await copyImage(
        dockerArchiveTransport.parseReference(`${archive}:pooled:latest`),
        collectingReference(collected, undefined, 'compress'),
        { policy: insecureAcceptAnythingPolicy() },
      );
      buffers = take.mock.results.map((result) => result.value as Buffer);
    } finally {
      take.mockRestore();
    }
    expect(collected.committed).toBe(true);
    const manifest = JSON.parse(Buffer.from(collected.manifest!.bytes).toString()) as {
      config: { digest: Digest };
      layers: Array<{ digest: Digest; mediaType: string }>;
    };
    const config = JSON.parse(collected.blobs.get(manifest.config.digest)!.toString()) as {
      rootfs: { diff_ids: Digest[] };
    };
    expect(config.rootfs.diff_ids).toEqual(diffIds);
    expect(manifest.layers).toHaveLength(layers.length);
    for (const [index, layer] of manifest.layers.entries()) {
      expect(layer.mediaType).toBe(MediaTypes.DockerLayerGzip);
      const written = collected.blobs.get(layer.digest)!;
      expect(sha256(written)).toBe(layer.digest);
      const contents = gunzipSync(written);
      expect(sha256(contents)).toBe(diffIds[index]);
      expect(contents.equals(layers[index]!)).toBe(true);
    }
    // Every whole 1 MiB read went into a buffer of the pool, and those were read into again.
    expect(buffers).toHaveLength(9 + 7 + 8 + 6);
    expect(new Set(buffers).size).toBeLessThan(buffers.length / 2);
  });
});
