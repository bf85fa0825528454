#!/usr/bin/env node
// The least a Node.js program using undici must do for `inspect docker://` of an image on a plain-HTTP
// registry: ping `/v2/`, GET the manifest, GET the config, GET the tag list, print JSON. No
// configuration, policy, auth, verification or HTTPS probe; only undici's Pool (not its entry point,
// which also loads fetch, WebSocket and caches). Run it as bin/gantry runs Node (no
// NODE_EXTRA_CA_CERTS, flags as bin.cjs leaves them: none before the first WebAssembly compile): its wall and CPU time are a floor for any
// Node.js + undici implementation of the `inspect-docker` row: compare them with skopeo's.
//
//   env -u NODE_EXTRA_CA_CERTS node apps/bench/src/node-floor-inspect.mjs HOST:PORT REPOSITORY TAG
import { createRequire } from 'node:module';

const [host, repository, tag] = process.argv.slice(2);
if (!tag) {
  console.error('usage: node-floor-inspect.mjs HOST:PORT REPOSITORY TAG');
  process.exit(2);
}
const require = createRequire(new URL('../../../packages/transport-docker/package.json', import.meta.url));
const Pool = require('undici/lib/dispatcher/pool.js');
Object.assign(require('undici/lib/dispatcher/dispatcher.js').prototype, require('undici/lib/api/index.js'));

const pool = new Pool(`http://${host}`, { connections: 4 });
async function get(path, accept) {
  const response = await pool.request({ method: 'GET', path, headers: accept ? { accept } : {} });
  const text = await response.body.text();
  if (response.statusCode !== 200) throw new Error(`GET ${path}: HTTP ${response.statusCode}`);
  return JSON.parse(text || '{}');
}
await get('/v2/');
const [manifest, tags] = await Promise.all([
  get(
    `/v2/${repository}/manifests/${tag}`,
    'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json',
  ),
  get(`/v2/${repository}/tags/list`),
]);
const config = await get(`/v2/${repository}/blobs/${manifest.config.digest}`);
process.stdout.write(
  `${JSON.stringify(
    {
      Name: `${host}/${repository}`,
      RepoTags: tags.tags,
      Architecture: config.architecture,
      Os: config.os,
      Layers: manifest.layers.map((layer) => layer.digest),
    },
    null,
    4,
  )}\n`,
);
await pool.close();
