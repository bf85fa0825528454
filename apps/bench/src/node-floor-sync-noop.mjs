#!/usr/bin/env node
// The least a Node.js program must do to prove that a registry → registry mirror is up to date (the
// `sync-registry-tags-noop` row) on a plain-HTTP registry: ping `/v2/`, GET the source's and the
// destination's tag lists, then for every source tag the destination lists, HEAD the manifest in the
// destination and in the source (16 images at once, over kept-alive connections) and compare the
// `Docker-Content-Digest`s. No configuration, policy, auth, HTTPS probe or manifest types beyond the
// `Accept` header; Node's own HTTP client (built into the node binary: cheaper to start than any
// library, undici included). Exits 1 when an image would be copied. Run it as bin/gantry runs Node (no
// NODE_EXTRA_CA_CERTS): its wall and CPU time are a floor for any Node.js implementation of the row.
//
//   env -u NODE_EXTRA_CA_CERTS node apps/bench/src/node-floor-sync-noop.mjs HOST:PORT/REPOSITORY HOST:PORT/NAMESPACE
//   (the destination repository is NAMESPACE/<last component of REPOSITORY>, as skopeo sync names it)
import http from 'node:http';

const [source, destination] = process.argv.slice(2);
if (!destination) {
  console.error('usage: node-floor-sync-noop.mjs HOST:PORT/REPOSITORY HOST:PORT/NAMESPACE');
  process.exit(2);
}
const split = (name) => [name.slice(0, name.indexOf('/')), name.slice(name.indexOf('/') + 1)];
const [sourceHost, sourceRepository] = split(source);
const [destinationHost, namespace] = split(destination);
const destinationRepository = `${namespace}/${sourceRepository.split('/').pop()}`;
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const accept = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

function request(host, method, path, headers = {}) {
  const [hostname, port] = host.split(':');
  return new Promise((resolve, reject) => {
    const outgoing = http.request({ hostname, port, method, path, headers, agent }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks) }),
      );
      response.on('error', reject);
    });
    outgoing.on('error', reject);
    outgoing.end();
  });
}

async function tagsOf(host, repository) {
  const response = await request(host, 'GET', `/v2/${repository}/tags/list`);
  if (response.status === 404) return [];
  if (response.status !== 200) throw new Error(`GET ${repository} tags: HTTP ${response.status}`);
  return JSON.parse(response.body.toString('utf8')).tags ?? [];
}

async function digestOf(host, repository, tag) {
  const response = await request(host, 'HEAD', `/v2/${repository}/manifests/${tag}`, { accept });
  if (response.status === 404) return undefined;
  if (response.status !== 200) throw new Error(`HEAD ${repository}:${tag}: HTTP ${response.status}`);
  return response.headers['docker-content-digest'];
}

await request(sourceHost, 'GET', '/v2/');
if (destinationHost !== sourceHost) await request(destinationHost, 'GET', '/v2/');
const [tags, present] = await Promise.all([
  tagsOf(sourceHost, sourceRepository),
  tagsOf(destinationHost, destinationRepository),
]);
const listed = new Set(present);
const waiting = [...tags];
let toCopy = 0;
await Promise.all(
  Array.from({ length: 16 }, async () => {
    for (let tag = waiting.shift(); tag !== undefined; tag = waiting.shift()) {
      if (!listed.has(tag)) {
        toCopy += 1;
        continue;
      }
      const [there, here] = await Promise.all([
        digestOf(destinationHost, destinationRepository, tag),
        digestOf(sourceHost, sourceRepository, tag),
      ]);
      if (there === undefined || there !== here) toCopy += 1;
    }
  }),
);
agent.destroy();
if (toCopy > 0) {
  console.error(`${toCopy} of ${tags.length} images would be copied`);
  process.exit(1);
}
