#!/usr/bin/env node
// The least a Node.js program does to copy an image between two plain-HTTP registries when every blob
// moves (the `registry-to-registry-copy` row): GET the manifest, then for the config and every layer, 6
// at a time as skopeo does: GET it from the source (a raw HTTP/1.1 client on `net` reading into pooled
// buffers, as Gantry's does) and stream the body straight into the destination
// (POST an upload session, one PATCH carrying the streamed bytes, PUT `?digest=`), checking its SHA-256
// and size on the way: the PUT that commits the blob is sent only once they match, so a mismatch fails
// the program and the destination never gets the blob. Then the manifest PUT. No configuration, policy,
// auth, HTTPS probe, existence checks (the destination is new) or retries. Run it as bin/gantry runs
// Node (no NODE_EXTRA_CA_CERTS): its wall and CPU time, plus the registries' CPU time for its requests,
// are a floor for any Node.js implementation of the row on this machine.
//
//   env -u NODE_EXTRA_CA_CERTS node apps/bench/src/node-floor-registry-copy.mjs [--threads=N] \
//     SOURCE-HOST:PORT/REPOSITORY:TAG DESTINATION-HOST:PORT/REPOSITORY:TAG
//
// --threads=N (default 1, the least CPU): N worker threads, each with its own connections, moving its
// share of the blobs (the 6 transfers split between them).
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

const concurrency = 6;
const accept = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

function parse(reference) {
  const slash = reference.indexOf('/');
  const colon = reference.lastIndexOf(':');
  return {
    host: reference.slice(0, slash),
    repository: reference.slice(slash + 1, colon),
    tag: reference.slice(colon + 1),
  };
}

/** Read buffers of the raw client: a socket reads into one, and it comes back once its bytes are written. */
const readBytes = 512 << 10;
const freeBuffers = [];
const takeBuffer = () => freeBuffers.pop() ?? Buffer.allocUnsafeSlow(readBytes);
const giveBack = (buffer) => freeBuffers.push(buffer);

/**
 * One kept-alive HTTP/1.1 connection reading with `onread` into pooled buffers: a response body is
 * handed on as views of the buffers the socket read into (no copy), each buffer given back once the
 * consumer is done with it. Only what a registry's blob and manifest GETs need: Content-Length bodies.
 */
function rawConnection(host) {
  const [hostname, port] = host.split(':');
  let pending;
  const fail = (error) => {
    const current = pending;
    pending = undefined;
    current?.reject(error);
  };
  const finish = () => {
    const current = pending;
    pending = undefined;
    current.resolve({ status: current.status, headers: current.headers });
  };
  const socket = net.connect({
    host: hostname,
    port: Number(port),
    noDelay: true,
    onread: {
      buffer: takeBuffer,
      callback(bytes, buffer) {
        const current = pending;
        if (!current) {
          giveBack(buffer);
          return true;
        }
        let view = buffer.subarray(0, bytes);
        if (current.remaining < 0) {
          const head = current.head ? Buffer.concat([current.head, view]) : view;
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) {
            current.head = Buffer.from(head);
            giveBack(buffer);
            return true;
          }
          const lines = head.toString('latin1', 0, end).split('\r\n');
          current.status = Number(lines[0].split(' ')[1]);
          current.headers = {};
          for (const line of lines.slice(1)) {
            const colon = line.indexOf(':');
            current.headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
          }
          if (current.headers['content-length'] === undefined) {
            giveBack(buffer);
            fail(new Error(`HTTP ${current.status} without Content-Length`));
            socket.destroy();
            return false;
          }
          current.remaining = Number(current.headers['content-length']);
          view = view.subarray(end + 4 - (head.length - view.length));
        }
        if (view.length > current.remaining) {
          giveBack(buffer);
          fail(new Error('more bytes than Content-Length'));
          socket.destroy();
          return false;
        }
        current.remaining -= view.length;
        let more = true;
        if (view.length === 0 || (current.status !== 200 && current.status !== 206)) giveBack(buffer);
        else more = current.onChunk(view, current.resume, () => giveBack(buffer));
        if (current.remaining === 0) {
          // The body is whole: the connection reads on (the next response) whatever the consumer said.
          finish();
          return true;
        }
        return more;
      },
    },
  });
  socket.on('error', fail);
  socket.on('close', () => fail(new Error('connection closed')));
  return {
    get: (path, headers, onChunk) =>
      new Promise((resolve, reject) => {
        pending = { onChunk, resolve, reject, remaining: -1, resume: () => socket.resume() };
        let head = `GET ${path} HTTP/1.1\r\nhost: ${host}\r\n`;
        for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
        socket.write(`${head}\r\n`);
      }),
    close: () => socket.destroy(),
  };
}

/** Up to `connections` raw connections, each taking the next GET once its last response ended. */
function rawClient(host, connections) {
  // One connection per transfer, each taking the next request when its last one ended.
  const idle = [];
  let open = 0;
  const waiting = [];
  const all = [];
  return {
    async get(path, headers, onChunk) {
      let connection = idle.pop();
      if (!connection && open < connections) {
        open += 1;
        connection = rawConnection(host);
        all.push(connection);
      }
      if (!connection) connection = await new Promise((resolve) => waiting.push(resolve));
      try {
        return await connection.get(path, headers, onChunk);
      } finally {
        const next = waiting.shift();
        if (next) next(connection);
        else idle.push(connection);
      }
    },
    close: () => {
      for (const connection of all) connection.close();
    },
  };
}

function agents(connections) {
  return new http.Agent({ keepAlive: true, maxSockets: connections });
}

/** A request with an optional whole body; resolves with status, headers and the body read whole. */
function request(agent, host, method, path, { headers = {}, body } = {}) {
  const [hostname, port] = host.split(':');
  return new Promise((resolve, reject) => {
    const outgoing = http.request(
      {
        hostname,
        port,
        method,
        path,
        agent,
        headers:
          body === undefined
            ? { ...headers, 'content-length': 0 }
            : { ...headers, 'content-length': body.length },
      },
      (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks) }),
        );
        response.on('error', reject);
      },
    );
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

const pathOf = (location, host) => {
  const url = new URL(location, `http://${host}`);
  return { url, path: `${url.pathname}${url.search}` };
};

/**
 * Moves one blob: GET from the source (raw client: views of pooled read buffers) streamed into a PATCH
 * (each buffer given back once the socket wrote it), verified, then PUT ?digest=.
 */
async function copyBlob(sourceClient, destinationAgent, source, destination, { digest, size }) {
  const session = await request(
    destinationAgent,
    destination.host,
    'POST',
    `/v2/${destination.repository}/blobs/uploads/`,
  );
  if (session.status !== 202) throw new Error(`POST upload of ${digest}: HTTP ${session.status}`);
  const hash = createHash('sha256');
  let received = 0;
  const [hostname, port] = destination.host.split(':');
  let patch;
  const patched = new Promise((resolve, reject) => {
    patch = http.request(
      {
        hostname,
        port,
        method: 'PATCH',
        path: pathOf(session.headers.location, destination.host).path,
        agent: destinationAgent,
        headers: { 'content-type': 'application/octet-stream', 'content-length': size },
      },
      (response) => {
        response.resume();
        response.on('end', () => resolve(response));
        response.on('error', reject);
      },
    );
    patch.on('error', reject);
  });
  let resumeReading;
  patch.on('drain', () => resumeReading?.());
  const { status } = await sourceClient.get(
    `/v2/${source.repository}/blobs/${digest}`,
    {},
    (chunk, resume, release) => {
      hash.update(chunk);
      received += chunk.length;
      if (patch.write(chunk, release)) return true;
      resumeReading = resume;
      return false;
    },
  );
  if (status !== 200) throw new Error(`GET ${digest}: HTTP ${status}`);
  const actual = `sha256:${hash.digest('hex')}`;
  if (actual !== digest || received !== size) {
    patch.destroy();
    throw new Error(`${digest}: got ${actual}, ${received} bytes instead of ${size}`);
  }
  patch.end();
  const response = await patched;
  if (response.statusCode !== 202) throw new Error(`PATCH ${digest}: HTTP ${response.statusCode}`);
  const { url } = pathOf(response.headers.location, destination.host);
  url.searchParams.set('digest', digest);
  const put = await request(destinationAgent, destination.host, 'PUT', `${url.pathname}${url.search}`);
  if (put.status !== 201) throw new Error(`PUT ${digest}: HTTP ${put.status}`);
}

async function copyBlobs({ source, destination, blobs, connections }) {
  const sourceClient = rawClient(source.host, connections);
  const destinationAgent = agents(connections);
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: Math.min(connections, blobs.length) }, async () => {
        while (next < blobs.length)
          await copyBlob(sourceClient, destinationAgent, source, destination, blobs[next++]);
      }),
    );
  } finally {
    sourceClient.close();
    destinationAgent.destroy();
  }
}

if (!isMainThread) {
  copyBlobs(workerData).then(
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
  const [from, to] = process.argv.slice(2).filter((argument) => !argument.startsWith('--'));
  if (!to) {
    console.error(
      'usage: node-floor-registry-copy.mjs [--threads=N] SOURCE-HOST:PORT/REPOSITORY:TAG DESTINATION-HOST:PORT/REPOSITORY:TAG',
    );
    process.exit(2);
  }
  const threads = Number(options.threads ?? 1);
  const source = parse(from);
  const destination = parse(to);
  try {
    const agent = agents(1);
    const manifest = await request(
      agent,
      source.host,
      'GET',
      `/v2/${source.repository}/manifests/${source.tag}`,
      {
        headers: { accept },
      },
    );
    if (manifest.status !== 200) throw new Error(`GET manifest: HTTP ${manifest.status}`);
    const parsed = JSON.parse(manifest.body.toString('utf8'));
    const blobs = [parsed.config, ...parsed.layers].map(({ digest, size }) => ({ digest, size }));
    if (threads <= 1) {
      await copyBlobs({ source, destination, blobs, connections: concurrency });
    } else {
      // The blobs dealt round-robin by size, largest first; the transfers split between the threads.
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
                workerData: { source, destination, blobs: share, connections },
              });
              worker.once('message', (message) =>
                message.ok ? resolve() : reject(new Error(message.message)),
              );
              worker.once('error', reject);
            }),
        ),
      );
    }
    const put = await request(
      agent,
      destination.host,
      'PUT',
      `/v2/${destination.repository}/manifests/${destination.tag}`,
      {
        headers: { 'content-type': manifest.headers['content-type'] },
        body: manifest.body,
      },
    );
    if (put.status !== 201) throw new Error(`PUT manifest: HTTP ${put.status}`);
    agent.destroy();
  } catch (error) {
    console.error(error.message);
    process.exit(1);
  }
}
