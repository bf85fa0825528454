#!/usr/bin/env node
// The least a Node.js program using undici must do to re-push an image that a registry already has:
// ping `/v2/`, HEAD every blob (6 at a time), PUT the manifest. No configuration, policy, auth or
// verification; only undici's Pool (not its entry point, which also loads fetch, WebSocket and caches),
// and WebAssembly compiled by the baseline compiler only, as Gantry does. Its wall time is a floor for
// any Node.js + undici implementation of `oci-to-registry-repush`: compare it with skopeo's.
//
//   /usr/bin/time -f %e node apps/bench/src/node-floor-repush.mjs OCI-LAYOUT HOST:PORT REPOSITORY TAG
//   (the layout's first manifest is pushed; plain HTTP)
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const [layout, host, repository, tag] = process.argv.slice(2);
if (!tag) {
  console.error('usage: node-floor-repush.mjs OCI-LAYOUT HOST:PORT REPOSITORY TAG');
  process.exit(2);
}
const require = createRequire(new URL('../../../packages/transport-docker/package.json', import.meta.url));
const Pool = require('undici/lib/dispatcher/pool.js');
Object.assign(require('undici/lib/dispatcher/dispatcher.js').prototype, require('undici/lib/api/index.js'));

const index = JSON.parse(readFileSync(`${layout}/index.json`, 'utf8'));
const manifestDigest = index.manifests[0].digest;
const manifestBytes = readFileSync(`${layout}/blobs/sha256/${manifestDigest.slice('sha256:'.length)}`);
const manifest = JSON.parse(manifestBytes.toString('utf8'));
const pool = new Pool(`http://${host}`, { connections: 6 });
await (await pool.request({ method: 'GET', path: '/v2/' })).body.dump();
const digests = [...manifest.layers.map((layer) => layer.digest), manifest.config.digest];
let next = 0;
await Promise.all(
  Array.from({ length: 6 }, async () => {
    while (next < digests.length) {
      const digest = digests[next++];
      const response = await pool.request({ method: 'HEAD', path: `/v2/${repository}/blobs/${digest}` });
      await response.body.dump();
      if (response.statusCode !== 200) throw new Error(`${digest} is not in the registry`);
    }
  }),
);
const put = await pool.request({
  method: 'PUT',
  path: `/v2/${repository}/manifests/${tag}`,
  headers: { 'content-type': manifest.mediaType },
  body: manifestBytes,
});
await put.body.dump();
if (put.statusCode !== 201) throw new Error(`PUT manifest: HTTP ${put.statusCode}`);
await pool.close();
