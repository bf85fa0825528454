#!/usr/bin/env node
// The least a Node.js program must do for `inspect docker://` of an image on a plain-HTTP registry
// (the `inspect-docker` row): ping `/v2/`, GET the manifest and the tag list, GET the config, print
// JSON. No configuration, policy, auth, verification or HTTPS probe; Node's own HTTP client (built into
// the node binary: cheaper to start than any library, undici included). Run it as bin/gantry runs Node
// (no NODE_EXTRA_CA_CERTS): its wall and CPU time are a floor for any Node.js implementation of the row.
//
//   env -u NODE_EXTRA_CA_CERTS node apps/bench/src/node-floor-inspect.mjs HOST:PORT REPOSITORY TAG
import http from 'node:http';

const [host, repository, tag] = process.argv.slice(2);
if (!tag) {
  console.error('usage: node-floor-inspect.mjs HOST:PORT REPOSITORY TAG');
  process.exit(2);
}
const [hostname, port] = host.split(':');
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

function get(path, accept) {
  return new Promise((resolve, reject) => {
    const headers = accept ? { accept } : {};
    const outgoing = http.request({ hostname, port, path, headers, agent }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => {
        if (response.statusCode !== 200) reject(new Error(`GET ${path}: HTTP ${response.statusCode}`));
        else resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
      });
    });
    outgoing.on('error', reject);
    outgoing.end();
  });
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
agent.destroy();
