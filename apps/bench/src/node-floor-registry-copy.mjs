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
import {
  commandLine,
  concurrency,
  eachAtATime,
  finishUpload,
  httpAgent,
  manifestAccept,
  onThreads,
  parseImage,
  rawClient,
  request,
  runWorker,
  startUpload,
} from './node-floor-shared.mjs';

/**
 * Moves one blob: GET from the source (raw client: views of pooled read buffers) streamed into a PATCH
 * (each buffer given back once the socket wrote it), verified, then PUT ?digest=.
 */
async function copyBlob(sourceClient, destinationAgent, source, destination, { digest, size }) {
  const { patch, patched } = await startUpload(destinationAgent, destination, size);
  const hash = createHash('sha256');
  let received = 0;
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
  await finishUpload(destinationAgent, destination, await patched, digest);
}

async function copyBlobs({ source, destination, blobs, connections }) {
  const sourceClient = rawClient(source.host, connections);
  const destinationAgent = httpAgent(connections);
  try {
    await eachAtATime(blobs, connections, (blob) =>
      copyBlob(sourceClient, destinationAgent, source, destination, blob),
    );
  } finally {
    sourceClient.close();
    destinationAgent.destroy();
  }
}

if (runWorker(copyBlobs)) {
  const { options, positional } = commandLine();
  const [from, to] = positional;
  if (!to) {
    console.error(
      'usage: node-floor-registry-copy.mjs [--threads=N] SOURCE-HOST:PORT/REPOSITORY:TAG DESTINATION-HOST:PORT/REPOSITORY:TAG',
    );
    process.exit(2);
  }
  const threads = Number(options.threads ?? 1);
  const source = parseImage(from);
  const destination = parseImage(to);
  try {
    const agent = httpAgent(1);
    const manifest = await request(
      agent,
      source.host,
      'GET',
      `/v2/${source.repository}/manifests/${source.tag}`,
      {
        headers: { accept: manifestAccept },
      },
    );
    if (manifest.status !== 200) throw new Error(`GET manifest: HTTP ${manifest.status}`);
    const parsed = JSON.parse(manifest.body.toString('utf8'));
    const blobs = [parsed.config, ...parsed.layers].map(({ digest, size }) => ({ digest, size }));
    if (threads <= 1) await copyBlobs({ source, destination, blobs, connections: concurrency });
    else
      await onThreads(new URL(import.meta.url), blobs, threads, (share, connections) => ({
        source,
        destination,
        blobs: share,
        connections,
      }));
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
