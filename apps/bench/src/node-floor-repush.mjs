#!/usr/bin/env node
// The least a Node.js program must do to re-push an image that a plain-HTTP registry already has (the
// `oci-to-registry-repush` row): ping `/v2/`, HEAD every blob (6 at a time), PUT the manifest. No
// configuration, policy, auth or verification; Node's own HTTP client (built into the node binary:
// cheaper to start than any library, undici included). Run it as bin/gantry runs Node (no
// NODE_EXTRA_CA_CERTS): its wall and CPU time are a floor for any Node.js implementation of the row.
//
//   env -u NODE_EXTRA_CA_CERTS node apps/bench/src/node-floor-repush.mjs OCI-LAYOUT HOST:PORT REPOSITORY TAG
//   (the layout's first manifest is pushed)
import { readFileSync } from 'node:fs';
import http from 'node:http';

const [layout, host, repository, tag] = process.argv.slice(2);
if (!tag) {
  console.error('usage: node-floor-repush.mjs OCI-LAYOUT HOST:PORT REPOSITORY TAG');
  process.exit(2);
}
const [hostname, port] = host.split(':');
const agent = new http.Agent({ keepAlive: true, maxSockets: 6 });

function request(method, path, headers = {}, body = undefined) {
  return new Promise((resolve, reject) => {
    const outgoing = http.request({ hostname, port, method, path, headers, agent }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode));
    });
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

const index = JSON.parse(readFileSync(`${layout}/index.json`, 'utf8'));
const manifestDigest = index.manifests[0].digest;
const manifestBytes = readFileSync(`${layout}/blobs/sha256/${manifestDigest.slice('sha256:'.length)}`);
const manifest = JSON.parse(manifestBytes.toString('utf8'));
await request('GET', '/v2/');
const digests = [...manifest.layers.map((layer) => layer.digest), manifest.config.digest];
let next = 0;
await Promise.all(
  Array.from({ length: 6 }, async () => {
    while (next < digests.length) {
      const digest = digests[next++];
      const status = await request('HEAD', `/v2/${repository}/blobs/${digest}`);
      if (status !== 200) throw new Error(`${digest} is not in the registry`);
    }
  }),
);
const status = await request(
  'PUT',
  `/v2/${repository}/manifests/${tag}`,
  { 'content-type': manifest.mediaType, 'content-length': manifestBytes.length },
  manifestBytes,
);
if (status !== 201) throw new Error(`PUT manifest: HTTP ${status}`);
agent.destroy();
