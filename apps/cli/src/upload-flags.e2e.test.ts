/**
 * `--dest-precompute-digests` and the global `--user-agent-prefix` against a real registry behind the
 * docker transport's fault proxy (which records every request), checked with the real skopeo.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFixtureImage, fixturePresets, writeFixtureToOciLayout } from '@gantry/core/testing';
import { digestOf } from '@gantry/core/transport';
import {
  type FaultProxy,
  type ProxiedRequest,
  startFaultProxy,
  startTestRegistry,
  type TestRegistry,
} from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliVersion } from './cli.js';
import { runGantry, runSkopeo } from './test-support/run.js';

let root: string;
let registry: TestRegistry;
let proxy: FaultProxy;
let layout: string;
let layerCount: number;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-'));
  registry = await startTestRegistry();
  proxy = await startFaultProxy(registry.host);
  const image = await buildFixtureImage(fixturePresets.uncompressedLayers!, {
    directory: join(root, 'blobs'),
  });
  layerCount = image.images[0]!.layerDigests.length;
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

const isUploadStart = (request: ProxiedRequest) =>
  request.method === 'POST' &&
  /\/blobs\/uploads\/(\?|$)/.test(request.path) &&
  !request.path.includes('mount=');
const uploadedBytes = (requests: ProxiedRequest[]) =>
  requests
    .filter(
      (request) =>
        request.method === 'PATCH' || (request.method === 'PUT' && request.path.includes('/blobs/')),
    )
    .reduce((total, request) => total + request.bodyBytes, 0);

/** `gantry copy` of the uncompressed OCI layout to the proxy, compressing; the requests it made. */
async function push(
  tag: string,
  extraFlags: string[],
  env: Record<string, string> = {},
): Promise<{ digest: string; requests: ProxiedRequest[] }> {
  const digestFile = join(root, `${tag}.digest`);
  proxy.requests.length = 0;
  const result = await runGantry(
    [
      '--insecure-policy',
      '--user-agent-prefix',
      'acme-sync/3.1',
      'copy',
      '-q',
      '--dest-tls-verify=false',
      '--dest-compress-format',
      'gzip',
      '--digestfile',
      digestFile,
      ...extraFlags,
      `oci:${layout}:latest`,
      `docker://${proxy.host}/precomputed/app:${tag}`,
    ],
    { env: { ...process.env, GANTRY_BLOB_INFO_CACHE: 'off', ...env } },
  );
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
  return { digest: await readFile(digestFile, 'utf8'), requests: [...proxy.requests] };
}

describe('gantry copy to a registry', () => {
  it('--dest-precompute-digests uploads no layer the registry has; --user-agent-prefix names every request', async () => {
    const first = await push('v1', ['--dest-precompute-digests']);
    expect(first.requests.filter(isUploadStart).length).toBe(layerCount + 1);
    expect(uploadedBytes(first.requests)).toBeGreaterThan(60_000);

    const second = await push('v2', ['--dest-precompute-digests']);
    expect(second.digest).toBe(first.digest);
    expect(second.requests.filter(isUploadStart)).toEqual([]);
    expect(uploadedBytes(second.requests)).toBe(0);

    // The control: without the flag, the layers compressed on the way are uploaded again.
    const third = await push('v3', []);
    expect(third.digest).toBe(first.digest);
    expect(third.requests.filter(isUploadStart).length).toBe(layerCount);
    expect(uploadedBytes(third.requests)).toBeGreaterThan(60_000);

    const agents = new Set(
      [...first.requests, ...second.requests, ...third.requests].map((r) => r.userAgent),
    );
    expect(agents).toEqual(new Set([`acme-sync/3.1 gantry/${cliVersion()}`]));

    const raw = runSkopeo([
      'inspect',
      '--raw',
      '--tls-verify=false',
      `docker://${registry.host}/precomputed/app:v2`,
    ]);
    expect(raw.code, raw.stderr).toBe(0);
    expect(digestOf(raw.stdout)).toBe(first.digest);
    const pulled = runSkopeo([
      '--insecure-policy',
      'copy',
      '-q',
      '--src-tls-verify=false',
      `docker://${registry.host}/precomputed/app:v2`,
      `dir:${join(root, 'pulled')}`,
    ]);
    expect(pulled.code, pulled.stderr).toBe(0);
  });

  it('--user-agent-prefix applies to inspect and list-tags too', async () => {
    proxy.requests.length = 0;
    const inspected = await runGantry([
      '--user-agent-prefix',
      'acme-sync/3.1',
      'inspect',
      '--tls-verify=false',
      `docker://${proxy.host}/precomputed/app:v1`,
    ]);
    expect(inspected.code, inspected.stderr).toBe(0);
    const listed = await runGantry([
      'list-tags',
      '--user-agent-prefix=acme-sync/3.1',
      '--tls-verify=false',
      `docker://${proxy.host}/precomputed/app`,
    ]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(proxy.requests.length).toBeGreaterThan(3);
    expect(new Set(proxy.requests.map((request) => request.userAgent))).toEqual(
      new Set([`acme-sync/3.1 gantry/${cliVersion()}`]),
    );
  });
  it('with the blob-info cache, a re-push uploads none of the layers it compressed before', async () => {
    const cache = { GANTRY_BLOB_INFO_CACHE: join(root, 'blob-info-cache.json') };
    const first = await push('cached-1', [], cache);
    expect(first.requests.filter(isUploadStart).length).toBeGreaterThan(0);
    const again = await push('cached-2', [], cache);
    expect(again.digest).toBe(first.digest);
    expect(again.requests.filter(isUploadStart)).toEqual([]);
    expect(uploadedBytes(again.requests)).toBe(0);
  });
});
