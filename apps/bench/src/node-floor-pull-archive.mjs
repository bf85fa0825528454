#!/usr/bin/env node
// The least a Node.js program does to pull an image of gzip layers from a plain-HTTP registry into a new
// docker-archive file (the `registry-to-docker-archive` row), over a raw HTTP/1.1 client on `net` reading
// into pooled buffers (as Gantry's does): GET the manifest and the config (its
// rootfs.diff_ids name the layers' files), learn each layer's uncompressed size from its gzip trailer
// (a 4-byte range GET: ISIZE), lay the tar out at once (config, the layers as <DiffID>.tar, manifest.json;
// ustar headers written here), then GET the layers, 6 at a time as skopeo does, each gunzipped (node:zlib)
// straight to its place in the file with positional writes while the SHA-256 of the compressed bytes and
// of the uncompressed ones (the DiffID) are computed. The file is written under a temporary name and
// renamed into place only once every digest, DiffID and size matched: a mismatch fails the program and
// leaves no archive. (A layer whose trailer lies, or of 4 GiB or more, fails the size check: the floor
// handles what the row moves.) No configuration, policy, auth, HTTPS probe or retries. Run it as
// bin/gantry runs Node (no NODE_EXTRA_CA_CERTS): its wall and CPU time (plus the registry's CPU time for
// its requests) are a floor for any Node.js implementation of the row on this machine.
//
//   env -u NODE_EXTRA_CA_CERTS node apps/bench/src/node-floor-pull-archive.mjs [--threads=N] \
//     HOST:PORT REPOSITORY TAG ARCHIVE-FILE REPO-TAG
//
// --threads=N (default 1, the least CPU): N worker threads, each with its own connections, reading,
// hashing and writing its share of the layers (the 6 connections split between them).
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, renameSync, rmSync, writeSync, writev } from 'node:fs';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import {
  commandLine,
  concurrency,
  eachAtATime,
  getWhole,
  manifestAccept,
  onThreads,
  rawClient,
  runWorker,
} from './node-floor-shared.mjs';

/** A ustar header for a regular file. */
function tarHeader(name, size) {
  if (name.length > 100 || size > 0o77777777777) throw new Error(`${name}: too long or too large for ustar`);
  const header = Buffer.alloc(512);
  header.write(name, 0, 'utf8');
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  header.write(
    `${Math.floor(Date.now() / 1000)
      .toString(8)
      .padStart(11, '0')}\0`,
    136,
  );
  header.fill(0x20, 148, 156);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return header;
}

const padded = (size) => Math.ceil(size / 512) * 512;

/** A sink writing its chunks to `fd` from `start` on, in order, hashing them. */
function positionalSink(fd, start, hash) {
  let position = start;
  return new Writable({
    highWaterMark: 1 << 20,
    writev(entries, done) {
      const chunks = entries.map(({ chunk }) => chunk);
      let bytes = 0;
      for (const chunk of chunks) {
        hash.update(chunk);
        bytes += chunk.length;
      }
      const at = position;
      position += bytes;
      writev(fd, chunks, at, (error) => done(error));
    },
  });
}

/**
 * GETs one layer (raw client: views of pooled read buffers, each given back once the decompressor
 * consumed it), gunzips it into the archive at `offset`, and checks both digests and both sizes.
 */
async function pullLayer(client, repository, file, layer) {
  const compressed = createHash('sha256');
  const uncompressed = createHash('sha256');
  let received = 0;
  let written = 0;
  const fd = openSync(file, 'r+');
  try {
    const gunzip = layer.gzip ? createGunzip({ chunkSize: 1 << 18 }) : new PassThrough();
    let resumeReading;
    gunzip.on('drain', () => resumeReading?.());
    const unpacked = pipeline(
      gunzip,
      async function* (source) {
        for await (const chunk of source) {
          written += chunk.length;
          if (written > layer.uncompressedSize)
            throw new Error(`${layer.digest}: longer than its trailer says`);
          yield chunk;
        }
      },
      positionalSink(fd, layer.offset, uncompressed),
    );
    unpacked.catch(() => {});
    const { status } = await client.get(
      `/v2/${repository}/blobs/${layer.digest}`,
      {},
      (chunk, resume, release) => {
        compressed.update(chunk);
        received += chunk.length;
        if (gunzip.write(chunk, release)) return true;
        resumeReading = resume;
        return false;
      },
    );
    gunzip.end();
    if (status !== 200) throw new Error(`GET ${layer.digest}: HTTP ${status}`);
    await unpacked;
    const actual = `sha256:${compressed.digest('hex')}`;
    if (actual !== layer.digest || received !== layer.size)
      throw new Error(`${layer.digest}: got ${actual}, ${received} bytes instead of ${layer.size}`);
    const diffId = `sha256:${uncompressed.digest('hex')}`;
    if (diffId !== layer.diffId || written !== layer.uncompressedSize)
      throw new Error(
        `${layer.digest}: DiffID ${diffId} (${written} bytes), the config says ${layer.diffId}`,
      );
  } finally {
    closeSync(fd);
  }
}

async function pullLayers({ host, repository, file, layers, connections }) {
  const client = rawClient(host, connections);
  try {
    await eachAtATime(layers, connections, (layer) => pullLayer(client, repository, file, layer));
  } finally {
    client.close();
  }
}

if (runWorker(pullLayers)) {
  const { options, positional } = commandLine();
  const [host, repository, tag, archive, repoTag] = positional;
  if (!repoTag) {
    console.error(
      'usage: node-floor-pull-archive.mjs [--threads=N] HOST:PORT REPOSITORY TAG ARCHIVE-FILE REPO-TAG',
    );
    process.exit(2);
  }
  const threads = Number(options.threads ?? 1);
  const temporary = `${archive}.partial`;
  try {
    const client = rawClient(host, concurrency);
    const manifest = await getWhole(client, `/v2/${repository}/manifests/${tag}`, { accept: manifestAccept });
    if (manifest.status !== 200) throw new Error(`GET manifest: HTTP ${manifest.status}`);
    const parsed = JSON.parse(manifest.body.toString('utf8'));
    const config = await getWhole(client, `/v2/${repository}/blobs/${parsed.config.digest}`);
    if (
      config.status !== 200 ||
      `sha256:${createHash('sha256').update(config.body).digest('hex')}` !== parsed.config.digest
    )
      throw new Error(`config ${parsed.config.digest}: HTTP ${config.status} or wrong digest`);
    const diffIds = JSON.parse(config.body.toString('utf8')).rootfs.diff_ids;
    if (diffIds.length !== parsed.layers.length)
      throw new Error('the config and the manifest disagree on the layers');
    // Each gzip layer's uncompressed size, from its trailer; uncompressed layers are their own size.
    const layers = await Promise.all(
      parsed.layers.map(async ({ digest, size, mediaType }, position) => {
        const gzip = mediaType.endsWith('gzip');
        let uncompressedSize = size;
        if (gzip) {
          const tail = await getWhole(client, `/v2/${repository}/blobs/${digest}`, {
            range: `bytes=${size - 4}-${size - 1}`,
          });
          if (tail.status !== 206 || tail.body.length !== 4)
            throw new Error(`range GET of ${digest}: HTTP ${tail.status}`);
          uncompressedSize = tail.body.readUInt32LE(0);
        }
        return { digest, size, gzip, diffId: diffIds[position], uncompressedSize };
      }),
    );
    client.close();
    // The tar: config, each distinct layer as <DiffID>.tar, manifest.json, two zero blocks.
    const configName = `${parsed.config.digest.slice('sha256:'.length)}.json`;
    const layerNames = diffIds.map((diffId) => `${diffId.slice('sha256:'.length)}.tar`);
    const manifestJson = Buffer.from(
      JSON.stringify([{ Config: configName, RepoTags: [repoTag], Layers: layerNames }]),
    );
    const fd = openSync(temporary, 'w');
    let offset = 0;
    const put = (name, bytes) => {
      writeSync(fd, tarHeader(name, bytes.length), 0, 512, offset);
      writeSync(fd, bytes, 0, bytes.length, offset + 512);
      offset += 512 + padded(bytes.length);
    };
    put(configName, config.body);
    const placed = new Set();
    const moving = [];
    for (const [position, layer] of layers.entries()) {
      if (placed.has(layerNames[position])) continue;
      placed.add(layerNames[position]);
      writeSync(fd, tarHeader(layerNames[position], layer.uncompressedSize), 0, 512, offset);
      moving.push({ ...layer, offset: offset + 512 });
      offset += 512 + padded(layer.uncompressedSize);
    }
    put('manifest.json', manifestJson);
    ftruncateSync(fd, offset + 1024);
    closeSync(fd);
    if (threads <= 1)
      await pullLayers({ host, repository, file: temporary, layers: moving, connections: concurrency });
    else
      await onThreads(new URL(import.meta.url), moving, threads, (share, connections) => ({
        host,
        repository,
        file: temporary,
        layers: share,
        connections,
      }));
    renameSync(temporary, archive);
  } catch (error) {
    rmSync(temporary, { force: true });
    console.error(error.message);
    process.exit(1);
  }
}
