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
import {
  commandLine,
  concurrency,
  eachAtATime,
  finishUpload,
  httpAgent,
  onThreads,
  parseImage,
  request,
  runWorker,
  startUpload,
} from './node-floor-shared.mjs';

const chunkBytes = 4 << 20;
/** Read buffers: the file is read into one, and it comes back once the socket wrote its bytes. */
const freeBuffers = [];
const takeBuffer = () => freeBuffers.pop() ?? Buffer.allocUnsafeSlow(chunkBytes);
const giveBack = (buffer) => freeBuffers.push(buffer);

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
  const { patch, patched } = await startUpload(agent, destination, size);
  const streamed = streamFile(`${layout}/blobs/sha256/${digest.slice('sha256:'.length)}`, patch);
  const [response, [actual, bytes]] = await Promise.all([patched, streamed]);
  if (actual !== digest || bytes !== size)
    throw new Error(`${digest}: got ${actual}, ${bytes} bytes instead of ${size}`);
  await finishUpload(agent, destination, response, digest);
}

async function pushBlobs({ layout, destination, blobs, connections }) {
  const agent = httpAgent(connections);
  try {
    await eachAtATime(blobs, connections, (blob) => pushBlob(agent, layout, destination, blob));
  } finally {
    agent.destroy();
  }
}

if (runWorker(pushBlobs)) {
  const { options, positional } = commandLine();
  const [layout, to] = positional;
  if (!to) {
    console.error('usage: node-floor-push.mjs [--threads=N] OCI-LAYOUT HOST:PORT/REPOSITORY:TAG');
    process.exit(2);
  }
  const threads = Number(options.threads ?? 1);
  const destination = parseImage(to);
  try {
    const index = JSON.parse(readFileSync(`${layout}/index.json`, 'utf8'));
    const { digest: manifestDigest, mediaType } = index.manifests[0];
    const manifestBytes = readFileSync(`${layout}/blobs/sha256/${manifestDigest.slice('sha256:'.length)}`);
    if (`sha256:${createHash('sha256').update(manifestBytes).digest('hex')}` !== manifestDigest)
      throw new Error(`${manifestDigest}: wrong digest`);
    const manifest = JSON.parse(manifestBytes.toString('utf8'));
    const blobs = [manifest.config, ...manifest.layers].map(({ digest, size }) => ({ digest, size }));
    if (threads <= 1) await pushBlobs({ layout, destination, blobs, connections: concurrency });
    else
      await onThreads(new URL(import.meta.url), blobs, threads, (share, connections) => ({
        layout,
        destination,
        blobs: share,
        connections,
      }));
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
