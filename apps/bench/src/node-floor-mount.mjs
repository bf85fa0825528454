#!/usr/bin/env node
// The least a Node.js program must do to copy an image to a new repository of the same plain-HTTP
// registry by cross-repository mounts (the `registry-to-registry-mount` row): ping `/v2/`, GET the
// manifest, mount every blob it references (config and layers, 6 at a time) with
// `POST /v2/DEST/blobs/uploads/?mount=DIGEST&from=SOURCE`, PUT the manifest. No configuration, policy,
// auth or verification; Node's own HTTP client (built into the node binary: cheaper to start than any
// library, undici included). Run it as bin/gantry runs Node (no NODE_EXTRA_CA_CERTS): its wall and CPU
// time are a floor for any Node.js implementation of the row.
//
//   env -u NODE_EXTRA_CA_CERTS node apps/bench/src/node-floor-mount.mjs HOST:PORT SOURCE-REPOSITORY TAG DESTINATION-REPOSITORY
import http from 'node:http';

const [host, source, tag, destination] = process.argv.slice(2);
if (!destination) {
  console.error('usage: node-floor-mount.mjs HOST:PORT SOURCE-REPOSITORY TAG DESTINATION-REPOSITORY');
  process.exit(2);
}
const [hostname, port] = host.split(':');
const agent = new http.Agent({ keepAlive: true, maxSockets: 6 });

function request(method, path, headers = {}, body = undefined) {
  return new Promise((resolve, reject) => {
    const outgoing = http.request({ hostname, port, method, path, headers, agent }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks) }),
      );
    });
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

await request('GET', '/v2/');
const manifestTypes = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
];
const got = await request('GET', `/v2/${source}/manifests/${tag}`, { accept: manifestTypes.join(', ') });
if (got.status !== 200) throw new Error(`GET manifest: HTTP ${got.status}`);
const manifest = JSON.parse(got.body.toString('utf8'));
const digests = [...new Set([manifest.config.digest, ...manifest.layers.map((layer) => layer.digest)])];
let next = 0;
await Promise.all(
  Array.from({ length: 6 }, async () => {
    while (next < digests.length) {
      const digest = digests[next++];
      const { status } = await request(
        'POST',
        `/v2/${destination}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(source)}`,
        { 'content-length': 0 },
      );
      if (status !== 201) throw new Error(`mounting ${digest}: HTTP ${status}`);
    }
  }),
);
const put = await request(
  'PUT',
  `/v2/${destination}/manifests/${tag}`,
  { 'content-type': got.headers['content-type'], 'content-length': got.body.length },
  got.body,
);
if (put.status !== 201) throw new Error(`PUT manifest: HTTP ${put.status}`);
agent.destroy();
