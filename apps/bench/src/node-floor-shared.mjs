// What the bulk Node.js floor programs (node-floor-pull-oci, -pull-archive, -registry-copy, -push) have in
// common: their command line, the raw HTTP/1.1 client on `net` that reads into pooled buffers, the
// node:http requests of the uploads, blobs moved a few at a time, and blobs split over worker threads.
// Only what a plain-HTTP Distribution registry needs for those rows: no TLS, auth, redirects or retries.
import http from 'node:http';
import net from 'node:net';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

/** Blobs in flight at once, as skopeo moves them. */
export const concurrency = 6;

/** The Accept header of a manifest GET. */
export const manifestAccept = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/** `--name=value` options and the positional arguments of this process's command line. */
export function commandLine(argv = process.argv.slice(2)) {
  const options = Object.fromEntries(
    argv.filter((argument) => argument.startsWith('--')).map((argument) => argument.slice(2).split('=')),
  );
  return { options, positional: argv.filter((argument) => !argument.startsWith('--')) };
}

/** `HOST:PORT/REPOSITORY:TAG` as { host, repository, tag }. */
export function parseImage(reference) {
  const slash = reference.indexOf('/');
  const colon = reference.lastIndexOf(':');
  if (slash < 0 || colon < slash) throw new Error(`not HOST:PORT/REPOSITORY:TAG: ${reference}`);
  return {
    host: reference.slice(0, slash),
    repository: reference.slice(slash + 1, colon),
    tag: reference.slice(colon + 1),
  };
}

/** Read buffers of the raw client: a socket reads into one, and it comes back once its bytes are used. */
const readBytes = 512 << 10;
const freeReadBuffers = [];
const takeReadBuffer = () => freeReadBuffers.pop() ?? Buffer.allocUnsafeSlow(readBytes);
const giveBackReadBuffer = (buffer) => freeReadBuffers.push(buffer);

/**
 * One kept-alive HTTP/1.1 connection reading with `onread` into pooled buffers: a response body is
 * handed on as views of the buffers the socket read into (no copy), each buffer given back once the
 * consumer calls the `release` it got with the chunk. Only Content-Length bodies (a registry's blob and
 * manifest GETs); a 200 or 206 body goes to `onChunk(chunk, resume, release)`, which returns false to
 * stop reading until it calls `resume`; any other status's body is read and dropped.
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
      buffer: takeReadBuffer,
      callback(bytes, buffer) {
        const current = pending;
        if (!current) {
          giveBackReadBuffer(buffer);
          return true;
        }
        let view = buffer.subarray(0, bytes);
        if (current.remaining < 0) {
          const head = current.head ? Buffer.concat([current.head, view]) : view;
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) {
            current.head = Buffer.from(head);
            giveBackReadBuffer(buffer);
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
            giveBackReadBuffer(buffer);
            fail(new Error(`HTTP ${current.status} without Content-Length`));
            socket.destroy();
            return false;
          }
          current.remaining = Number(current.headers['content-length']);
          view = view.subarray(end + 4 - (head.length - view.length));
        }
        if (view.length > current.remaining) {
          giveBackReadBuffer(buffer);
          fail(new Error('more bytes than Content-Length'));
          socket.destroy();
          return false;
        }
        current.remaining -= view.length;
        let more = true;
        if (view.length === 0 || (current.status !== 200 && current.status !== 206))
          giveBackReadBuffer(buffer);
        else more = current.onChunk(view, current.resume, () => giveBackReadBuffer(buffer));
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

/**
 * Up to `connections` raw connections to `host`, each taking the next GET once its last response ended.
 * `get(path, headers, onChunk)` resolves with { status, headers } once the body ended.
 */
export function rawClient(host, connections) {
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

/** GETs a small body whole through a raw client (copied out of the read buffers). */
export async function getWhole(client, path, headers = {}) {
  const chunks = [];
  const { status, headers: responseHeaders } = await client.get(path, headers, (chunk, _resume, release) => {
    chunks.push(Buffer.from(chunk));
    release();
    return true;
  });
  return { status, headers: responseHeaders, body: Buffer.concat(chunks) };
}

/** A keep-alive node:http agent of at most `connections` sockets (the uploads' requests). */
export const httpAgent = (connections) => new http.Agent({ keepAlive: true, maxSockets: connections });

/** A node:http request with an optional whole body; resolves with status, headers and the whole body. */
export function request(agent, host, method, path, { headers = {}, body } = {}) {
  const [hostname, port] = host.split(':');
  return new Promise((resolve, reject) => {
    const outgoing = http.request(
      { hostname, port, method, path, agent, headers: { ...headers, 'content-length': body?.length ?? 0 } },
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

/** `location` (absolute or relative to `host`) as a URL. */
export const urlOf = (location, host) => new URL(location, `http://${host}`);

/**
 * Opens an upload session for a blob of `size` bytes and starts its one PATCH (Content-Length, no body
 * yet): resolves with `patch` (the request to write the bytes into and end) and `patched` (its response,
 * once the body is read and dropped).
 */
export async function startUpload(agent, destination, size) {
  const session = await request(
    agent,
    destination.host,
    'POST',
    `/v2/${destination.repository}/blobs/uploads/`,
  );
  if (session.status !== 202) throw new Error(`POST upload: HTTP ${session.status}`);
  const [hostname, port] = destination.host.split(':');
  const location = urlOf(session.headers.location, destination.host);
  let patch;
  const patched = new Promise((resolve, reject) => {
    patch = http.request(
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
  });
  return { patch, patched };
}

/** Commits an upload whose PATCH answered `patched`: checks the 202, then PUT `?digest=`. */
export async function finishUpload(agent, destination, patched, digest) {
  if (patched.statusCode !== 202) throw new Error(`PATCH ${digest}: HTTP ${patched.statusCode}`);
  const url = urlOf(patched.headers.location, destination.host);
  url.searchParams.set('digest', digest);
  const put = await request(agent, destination.host, 'PUT', `${url.pathname}${url.search}`);
  if (put.status !== 201) throw new Error(`PUT ${digest}: HTTP ${put.status}`);
}

/** Runs `work(item)` over `items`, at most `limit` at a time, in order of start. */
export async function eachAtATime(items, limit, work) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await work(items[next++]);
    }),
  );
}

/**
 * In a worker thread started by `onThreads`: runs `work(workerData)` and reports how it ended. Returns
 * whether this is the main thread (where the program's own code runs instead).
 */
export function runWorker(work) {
  if (isMainThread) return true;
  work(workerData).then(
    () => parentPort.postMessage({ ok: true }),
    (error) => parentPort.postMessage({ ok: false, message: error.message }),
  );
  return false;
}

/**
 * Splits `blobs` over `threads` worker threads running `script` (a module that calls `runWorker`): dealt
 * round-robin by size, largest first, the `concurrency` transfers split between the threads;
 * `dataOf(share, connections)` is each worker's data. If one fails, every worker is stopped and the
 * first failure is thrown.
 */
export async function onThreads(script, blobs, threads, dataOf) {
  const sorted = [...blobs].sort((a, b) => b.size - a.size);
  const workers = [];
  try {
    await Promise.all(
      Array.from(
        { length: threads },
        (_, thread) =>
          new Promise((resolve, reject) => {
            const connections = Math.floor(concurrency / threads) + (thread < concurrency % threads ? 1 : 0);
            const share = sorted.filter((_, position) => position % threads === thread);
            const worker = new Worker(script, { workerData: dataOf(share, connections) });
            workers.push(worker);
            worker.once('message', (message) =>
              message.ok ? resolve() : reject(new Error(message.message)),
            );
            worker.once('error', reject);
          }),
      ),
    );
  } catch (error) {
    await Promise.all(workers.map((worker) => worker.terminate()));
    throw error;
  }
}
