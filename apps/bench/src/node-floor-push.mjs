#!/usr/bin/env node
// The least a Node.js program does to push an OCI layout's image to a new plain-HTTP registry (the
// `oci-to-registry-*` rows): read index.json and the manifest, then for the config and every layer, 6 at
// a time as skopeo does: POST an upload session, one PATCH streaming the file's bytes, checking its
// SHA-256 and size on the way, and the PUT `?digest=` that commits the blob only once they match (a
// mismatch fails the program and the registry never gets the blob). Then the manifest PUT. No
// configuration, policy, auth, HTTPS probe, existence checks (the registry is new) or retries. Run it as
// bin/gantry runs Node (no NODE_EXTRA_CA_CERTS): its wall and CPU time, plus the registry's CPU time for
// its requests, are a floor for any Node.js implementation of the rows on this machine.
//
//   env -u NODE_EXTRA_CA_CERTS node apps/bench/src/node-floor-push.mjs [--threads=N] OCI-LAYOUT HOST:PORT/REPOSITORY:TAG
//   (the layout's first manifest is pushed)
//
// --threads=N (default 1, the least CPU): N worker threads, each with its own connections, pushing its
// share of the blobs (the 6 uploads split between them).
import { createHash } from 'node:crypto';
import { closeSync, openSync, read, readFileSync } from 'node:fs';
import http from 'node:http';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

const concurrency = 6;
const chunkBytes = 4 << 20;
/** Read buffers: the file is read into one, and it comes back once the socket wrote its bytes. */
const freeBuffers = [];
const takeBuffer = () => freeBuffers.pop() ?? Buffer.allocUnsafeSlow(chunkBytes);
const giveBack = (buffer) => freeBuffers.push(buffer);

/** A request with an optional whole body; resolves with status and headers once the response ended. */
function request(agent, host, method, path, { headers = {}, body } = {}) {
  const [hostname, port] = host.split(':');
  return new Promise((resolve, reject) => {
    const outgoing = http.request(
      { hostname, port, method, path, agent, headers: { ...headers, 'content-length': body?.length ?? 0 } },
      (response) => {
        response.resume();
        response.on('end', () => resolve({ status: response.statusCode, headers: response.headers }));
        response.on('error', reject);
      },
    );
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

const urlOf = (location, host) => new URL(location, `http://${host}`);

/** Streams the file into an open PATCH request (pooled read buffers), hashing it; resolves with [digest, bytes]. */
function streamFile(file, patch) {
  const fd = openSync(file, 'r');
  const hash = createHash('sha256');
  let position = 0;
  return new Promise((resolve, reject) => {
    const next = () => {
      const buffer = takeBuffer();
      read(fd, buffer, 0, chunkBytes, position, (error, bytes) => {
        if (error) {
          giveBack(buffer);
          closeSync(fd);
          reject(error);
          return;
        }
        if (bytes === 0) {
          giveBack(buffer);
          closeSync(fd);
          patch.end();
          resolve([`sha256:${hash.digest('hex')}`, position]);
          return;
        }
        const chunk = buffer.subarray(0, bytes);
        position += bytes;
        hash.update(chunk);
        if (patch.write(chunk, () => giveBack(buffer))) next();
        else patch.once('drain', next);
      });
    };
    next();
  });
}

async function pushBlob(agent, layout, destination, { digest, size }) {
  const session = await request(
    agent,
    destination.host,
    'POST',
    `/v2/${destination.repository}/blobs/uploads/`,
  );
  if (session.status !== 202) throw new Error(`POST upload of ${digest}: HTTP ${session.status}`);
  const [hostname, port] = destination.host.split(':');
  const location = urlOf(session.headers.location, destination.host);
  let streamed;
  const patched = await new Promise((resolve, reject) => {
    const patch = http.request(
      {
        hostname,
        port,
        method: 'PATCH',
        path: `${location.pathname}${location.search}`,
        agent,
        headers: { 'content-type': 'application/octet-stream', 'content-length': size },
      },
      (response) => {
        response.resume();
        response.on('end', () => resolve(response));
        response.on('error', reject);
      },
    );
    patch.on('error', reject);
    streamed = streamFile(`${layout}/blobs/sha256/${digest.slice('sha256:'.length)}`, patch);
    streamed.catch(reject);
  });
  const [actual, bytes] = await streamed;
  if (patched.statusCode !== 202) throw new Error(`PATCH ${digest}: HTTP ${patched.statusCode}`);
  if (actual !== digest || bytes !== size)
    throw new Error(`${digest}: got ${actual}, ${bytes} bytes instead of ${size}`);
  const url = urlOf(patched.headers.location, destination.host);
  url.searchParams.set('digest', digest);
  const put = await request(agent, destination.host, 'PUT', `${url.pathname}${url.search}`);
  if (put.status !== 201) throw new Error(`PUT ${digest}: HTTP ${put.status}`);
}

async function pushBlobs({ layout, destination, blobs, connections }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: Math.min(connections, blobs.length) }, async () => {
        while (next < blobs.length) await pushBlob(agent, layout, destination, blobs[next++]);
      }),
    );
  } finally {
    agent.destroy();
  }
}

if (!isMainThread) {
  pushBlobs(workerData).then(
    () => parentPort.postMessage({ ok: true }),
    (error) => parentPort.postMessage({ ok: false, message: error.message }),
  );
} else {
  const options = Object.fromEntries(
    process.argv
      .slice(2)
      .filter((argument) => argument.startsWith('--'))
      .map((argument) => argument.slice(2).split('=')),
  );
  const [layout, to] = process.argv.slice(2).filter((argument) => !argument.startsWith('--'));
  if (!to) {
    console.error('usage: node-floor-push.mjs [--threads=N] OCI-LAYOUT HOST:PORT/REPOSITORY:TAG');
    process.exit(2);
  }
  const threads = Number(options.threads ?? 1);
  const slash = to.indexOf('/');
  const colon = to.lastIndexOf(':');
  const destination = {
    host: to.slice(0, slash),
    repository: to.slice(slash + 1, colon),
    tag: to.slice(colon + 1),
  };
  try {
    const index = JSON.parse(readFileSync(`${layout}/index.json`, 'utf8'));
    const { digest: manifestDigest, mediaType } = index.manifests[0];
    const manifestBytes = readFileSync(`${layout}/blobs/sha256/${manifestDigest.slice('sha256:'.length)}`);
    if (`sha256:${createHash('sha256').update(manifestBytes).digest('hex')}` !== manifestDigest)
      throw new Error(`${manifestDigest}: wrong digest`);
    const manifest = JSON.parse(manifestBytes.toString('utf8'));
    const blobs = [manifest.config, ...manifest.layers].map(({ digest, size }) => ({ digest, size }));
    if (threads <= 1) {
      await pushBlobs({ layout, destination, blobs, connections: concurrency });
    } else {
      // The blobs dealt round-robin by size, largest first; the uploads split between the threads.
      const sorted = [...blobs].sort((a, b) => b.size - a.size);
      await Promise.all(
        Array.from(
          { length: threads },
          (_, thread) =>
            new Promise((resolve, reject) => {
              const connections =
                Math.floor(concurrency / threads) + (thread < concurrency % threads ? 1 : 0);
              const share = sorted.filter((_, position) => position % threads === thread);
              const worker = new Worker(new URL(import.meta.url), {
                workerData: { layout, destination, blobs: share, connections },
              });
              worker.once('message', (message) =>
                message.ok ? resolve() : reject(new Error(message.message)),
              );
              worker.once('error', reject);
            }),
        ),
      );
    }
    const agent = new http.Agent({ keepAlive: false });
    const put = await request(
      agent,
      destination.host,
      'PUT',
      `/v2/${destination.repository}/manifests/${destination.tag}`,
      {
        headers: { 'content-type': manifest.mediaType ?? mediaType },
        body: manifestBytes,
      },
    );
    if (put.status !== 201) throw new Error(`PUT manifest: HTTP ${put.status}`);
  } catch (error) {
    console.error(error.message);
    process.exit(1);
  }
}
