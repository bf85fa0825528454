#!/usr/bin/env node
// The least a Node.js program must do to mirror a repository into a new registry (the
// `sync-registry-tags` row) on plain-HTTP registries: ping both `/v2/`, GET the source's and the
// destination's tag lists, then for every source tag (4 images at once, over kept-alive connections):
// GET the manifest, and for each blob not already sent by this run, GET it, check its SHA-256, POST an
// upload session and PUT the bytes with `?digest=` (a blob shared by several images is sent once), then
// PUT the manifest. No configuration, policy, auth, HTTPS probe, signatures or retries; blobs held
// whole in memory; Node's own HTTP client. Run it as bin/gantry runs Node (no NODE_EXTRA_CA_CERTS): its
// CPU time, plus the registries' CPU time for its requests, is a floor for any Node.js implementation of
// the row, and on a machine of few cores (that CPU time) / cores a floor under its wall time.
//
//   env -u NODE_EXTRA_CA_CERTS node apps/bench/src/node-floor-sync.mjs HOST:PORT/REPOSITORY HOST:PORT/NAMESPACE
//   (the destination repository is NAMESPACE/<last component of REPOSITORY>, as skopeo sync names it)
import { createHash } from 'node:crypto';
import http from 'node:http';

const [source, destination] = process.argv.slice(2);
if (!destination) {
  console.error('usage: node-floor-sync.mjs HOST:PORT/REPOSITORY HOST:PORT/NAMESPACE');
  process.exit(2);
}
const split = (name) => [name.slice(0, name.indexOf('/')), name.slice(name.indexOf('/') + 1)];
const [sourceHost, sourceRepository] = split(source);
const [destinationHost, namespace] = split(destination);
const destinationRepository = `${namespace}/${sourceRepository.split('/').pop()}`;
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const accept = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

function request(host, method, path, { headers = {}, body } = {}) {
  const [hostname, port] = host.split(':');
  const allHeaders = body === undefined ? headers : { ...headers, 'content-length': body.length };
  return new Promise((resolve, reject) => {
    const outgoing = http.request(
      { hostname, port, method, path, headers: allHeaders, agent },
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

async function expect(status, response, what) {
  if (response.status !== status) throw new Error(`${what}: HTTP ${response.status}`);
  return response;
}

async function tagsOf(host, repository) {
  const response = await request(host, 'GET', `/v2/${repository}/tags/list`);
  if (response.status === 404) return [];
  await expect(200, response, `GET ${repository} tags`);
  return JSON.parse(response.body.toString('utf8')).tags ?? [];
}

async function copyBlob({ digest }) {
  const blob = (
    await expect(
      200,
      await request(sourceHost, 'GET', `/v2/${sourceRepository}/blobs/${digest}`),
      `GET ${digest}`,
    )
  ).body;
  if (`sha256:${createHash('sha256').update(blob).digest('hex')}` !== digest)
    throw new Error(`${digest}: wrong digest`);
  const session = await expect(
    202,
    await request(destinationHost, 'POST', `/v2/${destinationRepository}/blobs/uploads/`),
    `POST upload of ${digest}`,
  );
  const location = new URL(session.headers.location, `http://${destinationHost}`);
  location.searchParams.set('digest', digest);
  await expect(
    201,
    await request(destinationHost, 'PUT', `${location.pathname}${location.search}`, {
      headers: { 'content-type': 'application/octet-stream' },
      body: blob,
    }),
    `PUT ${digest}`,
  );
}

const sent = new Map();
async function copyImage(tag) {
  const manifest = await expect(
    200,
    await request(sourceHost, 'GET', `/v2/${sourceRepository}/manifests/${tag}`, { headers: { accept } }),
    `GET manifest ${tag}`,
  );
  const parsed = JSON.parse(manifest.body.toString('utf8'));
  await Promise.all(
    [parsed.config, ...parsed.layers].map((blob) => {
      if (!sent.has(blob.digest)) sent.set(blob.digest, copyBlob(blob));
      return sent.get(blob.digest);
    }),
  );
  await expect(
    201,
    await request(destinationHost, 'PUT', `/v2/${destinationRepository}/manifests/${tag}`, {
      headers: { 'content-type': manifest.headers['content-type'] },
      body: manifest.body,
    }),
    `PUT manifest ${tag}`,
  );
}

await request(sourceHost, 'GET', '/v2/');
if (destinationHost !== sourceHost) await request(destinationHost, 'GET', '/v2/');
const [tags] = await Promise.all([
  tagsOf(sourceHost, sourceRepository),
  tagsOf(destinationHost, destinationRepository),
]);
const waiting = [...tags];
await Promise.all(
  Array.from({ length: 4 }, async () => {
    for (let tag = waiting.shift(); tag !== undefined; tag = waiting.shift()) await copyImage(tag);
  }),
);
agent.destroy();
