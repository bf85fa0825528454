/**
 * The requests a command sends, read from the real registry's access log (Debian's docker-registry),
 * next to skopeo's for the same command on the same registry: the installed command (bin/gantry running
 * the built bundle, a fresh process each time, as users run it) sends no request skopeo does without,
 * and the counts are pinned so that an extra round trip shows up here.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFixtureImage, type FixtureImage, writeFixtureToOciLayout } from '@gantry/core/testing';
import { type AccessLogEntry, startTestRegistry, type TestRegistry } from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSkopeo } from './test-support/run.js';

const launcher = resolve(dirname(fileURLToPath(import.meta.url)), '../bin/gantry');
const layerCount = 4;
let root: string;
let registry: TestRegistry;
let image: FixtureImage;
let layout: string;

/** Runs the installed command; throws with its stderr when it fails. */
function runInstalledGantry(args: string[]): string {
  if (!existsSync(resolve(dirname(launcher), '../dist/main.cjs'))) {
    throw new Error('apps/cli/dist is not built: run `pnpm build` (turbo builds it before these tests)');
  }
  const result = spawnSync(launcher, args, { encoding: 'utf8', timeout: 120_000 });
  if (result.status !== 0)
    throw new Error(`gantry ${args.join(' ')} failed (${result.status}): ${result.stderr}`);
  return result.stdout;
}

function runSkopeoOrFail(args: string[]): void {
  const result = runSkopeo(args);
  if (result.code !== 0)
    throw new Error(`skopeo ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
}

let markers = 0;
/**
 * Every access-log line of the requests answered so far: sends a request of its own after them and waits
 * for its line (the registry logs each request as it finishes it, so the lines of requests answered
 * before come first), however slow the machine. Returns the lines before the marker.
 */
async function settledAccessLog(): Promise<AccessLogEntry[]> {
  markers += 1;
  const path = `/v2/round-trips-log-marker/manifests/m${markers}`;
  const response = await fetch(`http://${registry.host}${path}`);
  await response.arrayBuffer();
  for (let attempt = 0; attempt < 1000; attempt += 1) {
    const log = await registry.accessLog(10);
    const index = log.findIndex((entry) => entry.path === path);
    if (index >= 0) return log.slice(0, index);
  }
  throw new Error(`the registry did not log ${path} within 10 s`);
}

/** The requests `run` caused, as `METHOD path-with-digests-and-upload-ids-shortened status`. */
async function requestsOf(run: () => void): Promise<string[]> {
  // Lines of earlier requests still on their way from the registry (a synchronous run blocks reading them).
  await settledAccessLog();
  registry.clearAccessLog();
  run();
  const log = await settledAccessLog();
  return log.map((entry) => {
    const path = entry.path
      .replace(/sha256(:|%3A)[0-9a-f]{64}/g, 'sha256:…')
      .replace(/uploads\/[^?]+/, 'uploads/…')
      .replace(/_state=[^&]+/, '_state=…');
    return `${entry.method} ${path} ${entry.status}`;
  });
}

/** How many times each request occurs. */
function tally(requests: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const request of requests) counts[request] = (counts[request] ?? 0) + 1;
  return counts;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-round-trips-'));
  registry = await startTestRegistry();
  image = await buildFixtureImage(
    {
      format: 'oci',
      layers: Array.from({ length: layerCount }, (_, index) => ({
        entries: [
          { type: 'file', path: `data/${index}.bin`, randomSize: 4096 + index, seed: `layer-${index}` },
        ],
      })),
    },
    { directory: join(root, 'blobs') },
  );
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
  runSkopeoOrFail([
    '--insecure-policy',
    'copy',
    '-q',
    '--dest-tls-verify=false',
    `oci:${layout}:latest`,
    `docker://${registry.host}/round-trips/base:v1`,
  ]);
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('requests sent, against skopeo on the real registry', () => {
  const blobCount = layerCount + 1;

  it('inspect docker://: ping, manifest, config, tags; one ping where skopeo pings twice', async () => {
    const reference = `docker://${registry.host}/round-trips/base:v1`;
    const skopeo = await requestsOf(() => runSkopeoOrFail(['inspect', '--tls-verify=false', reference]));
    const gantry = await requestsOf(() => runInstalledGantry(['inspect', '--tls-verify=false', reference]));
    // The config and the tag list are asked for at once: they arrive in either order.
    expect(gantry.slice(0, 2)).toEqual(['GET /v2/ 200', 'GET /v2/round-trips/base/manifests/v1 200']);
    expect([...gantry.slice(2)].sort()).toEqual([
      'GET /v2/round-trips/base/blobs/sha256:… 200',
      'GET /v2/round-trips/base/tags/list 200',
    ]);
    expect(tally(skopeo)).toEqual({ ...tally(gantry), 'GET /v2/ 200': 2 });
  }, 120_000);

  it('re-push of an image the registry has: a HEAD per blob and one PUT of the manifest, as skopeo', async () => {
    const destination = `docker://${registry.host}/round-trips/base:v1`;
    const args = [
      '--insecure-policy',
      'copy',
      '-q',
      '--dest-tls-verify=false',
      `oci:${layout}:latest`,
      destination,
    ];
    const skopeo = await requestsOf(() => runSkopeoOrFail(args));
    const gantry = await requestsOf(() => runInstalledGantry(args));
    expect(tally(gantry)).toEqual({
      'GET /v2/ 200': 1,
      'HEAD /v2/round-trips/base/blobs/sha256:… 200': blobCount,
      'PUT /v2/round-trips/base/manifests/v1 201': 1,
    });
    expect(tally(gantry)).toEqual(tally(skopeo));
  }, 120_000);

  it('registry → registry in one registry: one mount per blob, where skopeo also HEADs both repositories', async () => {
    const source = `docker://${registry.host}/round-trips/base:v1`;
    const copyTo = (repository: string) => [
      '--insecure-policy',
      'copy',
      '-q',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      source,
      `docker://${registry.host}/round-trips/${repository}:v1`,
    ];
    const skopeo = await requestsOf(() => runSkopeoOrFail(copyTo('skopeo-target')));
    const gantry = await requestsOf(() => runInstalledGantry(copyTo('gantry-target')));
    expect(tally(gantry)).toEqual({
      'GET /v2/ 200': 1,
      'GET /v2/round-trips/base/manifests/v1 200': 1,
      'GET /v2/round-trips/base/blobs/sha256:… 200': 1,
      'POST /v2/round-trips/gantry-target/blobs/uploads/?mount=sha256:…&from=round-trips%2Fbase 201':
        blobCount,
      'PUT /v2/round-trips/gantry-target/manifests/v1 201': 1,
    });
    // skopeo: the same reads and mounts, plus a second ping, a HEAD of each blob in the destination
    // (404) and in the source repository (200) before each mount.
    expect(skopeo.length).toBeGreaterThan(gantry.length);
    expect(skopeo.filter((request) => request.startsWith('HEAD ')).length).toBeGreaterThanOrEqual(blobCount);
    // The copy is complete: both tools' copies have the same manifest.
    const copied = runInstalledGantry([
      'inspect',
      '--raw',
      '--tls-verify=false',
      `docker://${registry.host}/round-trips/gantry-target:v1`,
    ]);
    expect(copied).toBe(Buffer.from(image.topLevel.bytes).toString('utf8'));
  }, 120_000);
});
