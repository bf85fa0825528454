#!/usr/bin/env node
// The least a Node.js program does to pull an image from a plain-HTTP registry into a new OCI layout
// (the `registry-to-oci-*` rows): GET the manifest, then the config and every layer, 6 at a time as
// skopeo does, each streamed into a temporary file under blobs/sha256/ while its SHA-256 and size are
// checked, flushed to disk (fdatasync, as skopeo and Gantry do) and renamed into place only once they
// match; then the manifest blob, index.json and oci-layout.
// A digest or size mismatch fails the program and leaves no blob of that name (and no temporary file).
// No configuration, policy, auth, ping, HTTPS probe or retries. Run it as bin/gantry runs Node (no
// NODE_EXTRA_CA_CERTS): its wall and CPU time (plus the registry's CPU time for its requests) are a floor
// for any Node.js implementation of the row on this machine.
//
//   env -u NODE_EXTRA_CA_CERTS node apps/bench/src/node-floor-pull-oci.mjs [--client=net|http|undici] \
//     [--threads=N] HOST:PORT REPOSITORY TAG OCI-DIRECTORY
//
// --client: `net` (the default, the least CPU) is a raw HTTP/1.1 client on node:net reading with
// `onread` into pooled 512 KiB buffers that go back to the pool once their bytes are written (as
// Gantry's plain-HTTP reads do); `http` is node:http's client; `undici` is undici's lowest-level API
// (Pool#dispatch; the package Gantry's registry transport depends on, found through it).
// --threads=N (default 1, the least CPU): N worker threads, each with its own connections, reading,
// hashing and writing its share of the blobs (the 6 connections split between them).
import { createHash } from 'node:crypto';
import {
  closeSync,
  fdatasync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
  writev,
} from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import {
  commandLine,
  concurrency,
  eachAtATime,
  manifestAccept,
  onThreads,
  rawClient,
  runWorker,
} from './node-floor-shared.mjs';

/** Streams GET `path` into `sink(chunk)`; resolves with the status and headers once the body ended. */
function makeClient(kind, host, connections) {
  const [hostname, port] = host.split(':');
  if (kind === 'net') return rawClient(host, connections);
  if (kind === 'undici') {
    const require = createRequire(import.meta.resolve('@gantry/transport-docker'));
    const { Pool } = require('undici');
    const pool = new Pool(`http://${host}`, { connections, pipelining: 1 });
    return {
      get: (path, headers, onChunk) =>
        new Promise((resolve, reject) => {
          let status = 0;
          const responseHeaders = {};
          let resume;
          pool.dispatch(
            { method: 'GET', path, headers },
            {
              onConnect() {},
              onHeaders(statusCode, rawHeaders, resumeReading) {
                resume = resumeReading;
                status = statusCode;
                for (let i = 0; i < rawHeaders.length; i += 2)
                  responseHeaders[rawHeaders[i].toString('latin1').toLowerCase()] =
                    rawHeaders[i + 1].toString('latin1');
                return true;
              },
              onData(chunk) {
                return status !== 200 || onChunk(chunk, () => resume?.());
              },
              onComplete() {
                resolve({ status, headers: responseHeaders });
              },
              onError: reject,
            },
          );
        }),
      close: () => pool.destroy(),
    };
  }
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  return {
    get: (path, headers, onChunk) =>
      new Promise((resolve, reject) => {
        const request = http.get({ hostname, port, path, headers, agent }, (response) => {
          if (response.statusCode === 200)
            response.on('data', (chunk) => {
              if (!onChunk(chunk, () => response.resume())) response.pause();
            });
          else response.resume();
          response.on('end', () => resolve({ status: response.statusCode, headers: response.headers }));
          response.on('error', reject);
        });
        request.on('error', reject);
      }),
    close: () => agent.destroy(),
  };
}

/** Writes the chunks to `fd` in order, batching them into writev calls; `flush` waits for all. */
function fileWriter(fd) {
  let queued = [];
  const releases = [];
  let queuedBytes = 0;
  let resume;
  let writing = false;
  let failure;
  const waiters = [];
  const pump = () => {
    if (writing) return;
    if (queued.length === 0) {
      for (const waiter of waiters.splice(0)) waiter();
      return;
    }
    const batch = queued;
    queued = [];
    queuedBytes = 0;
    writing = true;
    const waiting = resume;
    resume = undefined;
    waiting?.();
    writev(fd, batch, (error) => {
      for (const release of releases.splice(0, batch.length)) release?.();
      writing = false;
      if (error) failure ??= error;
      pump();
    });
  };
  return {
    /** Queues the chunk; false (and `onResume` called later) when the caller should wait. */
    write(chunk, onResume, release) {
      queued.push(chunk);
      releases.push(release);
      queuedBytes += chunk.length;
      pump();
      if (queuedBytes < 1 << 20) return true;
      resume = onResume;
      return false;
    },
    flush: () =>
      new Promise((resolve, reject) => {
        const settle = () => (failure ? reject(failure) : resolve());
        if (!writing && queued.length === 0) settle();
        else waiters.push(settle);
      }),
  };
}

/** GETs one blob into `directory`/blobs/sha256/<hex>, verified (SHA-256 and size) before the rename. */
async function pullBlob(client, repository, directory, { digest, size }) {
  const hex = digest.slice('sha256:'.length);
  const final = `${directory}/blobs/sha256/${hex}`;
  const temporary = `${final}.partial`;
  const fd = openSync(temporary, 'w');
  const hash = createHash('sha256');
  const writer = fileWriter(fd);
  let received = 0;
  try {
    const { status } = await client.get(
      `/v2/${repository}/blobs/${digest}`,
      {},
      (chunk, onResume, release) => {
        hash.update(chunk);
        received += chunk.length;
        return writer.write(chunk, onResume, release);
      },
    );
    if (status !== 200) throw new Error(`GET ${digest}: HTTP ${status}`);
    await writer.flush();
    const actual = `sha256:${hash.digest('hex')}`;
    if (actual !== digest || received !== size)
      throw new Error(`${digest}: got ${actual}, ${received} bytes instead of ${size}`);
    // On disk before it has its name, as skopeo's and Gantry's OCI destinations do.
    await new Promise((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve())));
    closeSync(fd);
    renameSync(temporary, final);
  } catch (error) {
    try {
      closeSync(fd);
    } catch {}
    rmSync(temporary, { force: true });
    throw error;
  }
}

/** Pulls `blobs`, `connections` at a time. */
async function pullBlobs({ kind, host, repository, directory, blobs, connections }) {
  const client = makeClient(kind, host, connections);
  try {
    await eachAtATime(blobs, connections, (blob) => pullBlob(client, repository, directory, blob));
  } finally {
    client.close();
  }
}

if (runWorker(pullBlobs)) {
  const { options, positional } = commandLine();
  const [host, repository, tag, directory] = positional;
  if (!directory) {
    console.error(
      'usage: node-floor-pull-oci.mjs [--client=net|http|undici] [--threads=N] HOST:PORT REPOSITORY TAG OCI-DIRECTORY',
    );
    process.exit(2);
  }
  const threads = Number(options.threads ?? 1);
  const kind = options.client ?? 'net';
  const chunks = [];
  const client = makeClient(kind, host, 1);
  const response = await client.get(
    `/v2/${repository}/manifests/${tag}`,
    { accept: manifestAccept },
    (chunk) => {
      chunks.push(chunk);
      return true;
    },
  );
  client.close();
  if (response.status !== 200) throw new Error(`GET manifest: HTTP ${response.status}`);
  const manifestBytes = Buffer.concat(chunks);
  const manifest = JSON.parse(manifestBytes.toString('utf8'));
  mkdirSync(`${directory}/blobs/sha256`, { recursive: true });
  const blobs = [manifest.config, ...manifest.layers].map(({ digest, size }) => ({ digest, size }));
  try {
    if (threads <= 1) await pullBlobs({ kind, host, repository, directory, blobs, connections: concurrency });
    else
      await onThreads(new URL(import.meta.url), blobs, threads, (share, connections) => ({
        kind,
        host,
        repository,
        directory,
        blobs: share,
        connections,
      }));
  } catch (error) {
    // Nothing half-written stays: the other threads were stopped, and every temporary file goes.
    for (const name of readdirSync(`${directory}/blobs/sha256`))
      if (name.endsWith('.partial')) rmSync(`${directory}/blobs/sha256/${name}`, { force: true });
    console.error(error.message);
    process.exit(1);
  }
  const manifestDigest = `sha256:${createHash('sha256').update(manifestBytes).digest('hex')}`;
  writeFileSync(`${directory}/blobs/sha256/${manifestDigest.slice('sha256:'.length)}`, manifestBytes);
  writeFileSync(`${directory}/oci-layout`, '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(
    `${directory}/index.json`,
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: manifest.mediaType,
          digest: manifestDigest,
          size: manifestBytes.length,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
}
