/**
 * `--retry-times` / `--retry-delay` for every request of a command, the first one (the registry ping)
 * included: against a port where nothing listens (each command, next to skopeo's warnings and delays),
 * and against a registry that starts listening while gantry waits to retry.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFixtureImage, fixturePresets, writeFixtureToOciLayout } from '@gantry/core/testing';
import { startTestRegistry, type TestRegistry } from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGantry, runSkopeo } from './test-support/run.js';
import { startSlowProxy } from './test-support/slow-proxy.js';

let root: string;
let registry: TestRegistry;
let layout: string;

/** A port nothing listens on (taken, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-retry-'));
  registry = await startTestRegistry();
  const image = await buildFixtureImage(fixturePresets.ociMinimal!, { directory: join(root, 'blobs') });
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
  const pushed = runSkopeo([
    '--insecure-policy',
    'copy',
    '-q',
    '--dest-tls-verify=false',
    `oci:${layout}:latest`,
    `docker://${registry.host}/retry/app:v1`,
  ]);
  expect(pushed.code, pushed.stderr).toBe(0);
}, 60_000);

afterAll(async () => {
  await registry?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

/** The retry warnings of a run, without what follows `Error:` (Go's and Node's network errors differ). */
function retryWarnings(stderr: string): string[] {
  return [...stderr.matchAll(/msg="(Failed, retrying in \S+ \.\.\. \(\d+\/\d+\)\. Error: )/g)].map(
    (match) => match[1]!,
  );
}

describe('a registry port where nothing listens', () => {
  it('inspect waits 1 s, then 2 s, as skopeo, and names the ping that failed', async () => {
    const host = `127.0.0.1:${await closedPort()}`;
    const args = ['inspect', '--retry-times', '2', '--tls-verify=false', `docker://${host}/retry/app:v1`];
    const started = performance.now();
    const gantry = await runGantry(args);
    const elapsed = performance.now() - started;
    const skopeo = runSkopeo(args);
    expect(gantry.code).toBe(1);
    expect(skopeo.code).toBe(1);
    const expected = [
      'Failed, retrying in 1s ... (1/2). Error: ',
      'Failed, retrying in 2s ... (2/2). Error: ',
    ];
    expect(retryWarnings(skopeo.stderr)).toEqual(expected);
    expect(retryWarnings(gantry.stderr)).toEqual(expected);
    expect(gantry.stderr).toContain(`pinging container registry ${host}`);
    expect(elapsed).toBeGreaterThanOrEqual(2900);
  });

  for (const command of ['copy from', 'copy to', 'delete', 'list-tags'] as const) {
    it(`${command}: the first request is retried too, with skopeo's warning and delay`, async () => {
      const host = `127.0.0.1:${await closedPort()}`;
      const remote = `docker://${host}/retry/app:v1`;
      const args = (retry: string[]) =>
        ({
          'copy from': [
            '--insecure-policy',
            'copy',
            ...retry,
            '--src-tls-verify=false',
            remote,
            `oci:${join(root, 'never')}:x`,
          ],
          'copy to': [
            '--insecure-policy',
            'copy',
            ...retry,
            '--dest-tls-verify=false',
            `oci:${layout}:latest`,
            remote,
          ],
          delete: ['delete', ...retry, '--tls-verify=false', remote],
          'list-tags': ['list-tags', ...retry, '--tls-verify=false', `docker://${host}/retry/app`],
        })[command];
      const gantry = await runGantry(args(['--retry-times', '1']));
      const skopeo = runSkopeo(args(['--retry-times', '1']));
      expect(gantry.code).toBe(1);
      expect(skopeo.code).toBe(1);
      const expected = ['Failed, retrying in 1s ... (1/1). Error: '];
      expect(retryWarnings(skopeo.stderr)).toEqual(expected);
      expect(retryWarnings(gantry.stderr)).toEqual(expected);
      expect(gantry.stderr).toContain('ECONNREFUSED');
      if (command === 'list-tags') return;
      // --retry-delay (skopeo ≥ 1.10; not in Debian's 1.9.3) replaces the doubling delays.
      const fixed = await runGantry(args(['--retry-times', '2', '--retry-delay', '150ms']));
      expect(retryWarnings(fixed.stderr)).toEqual([
        'Failed, retrying in 150ms ... (1/2). Error: ',
        'Failed, retrying in 150ms ... (2/2). Error: ',
      ]);
    });
  }
});

describe('a registry that starts late', () => {
  it('copy and inspect succeed once it listens, after one retry', async () => {
    for (const args of [
      (host: string) => [
        '--insecure-policy',
        'copy',
        '-q',
        '--retry-times',
        '3',
        '--src-tls-verify=false',
        `docker://${host}/retry/app:v1`,
        `oci:${join(root, 'late')}:v1`,
      ],
      (host: string) => [
        'inspect',
        '--retry-times',
        '3',
        '--tls-verify=false',
        `docker://${host}/retry/app:v1`,
      ],
    ]) {
      const port = await closedPort();
      const host = `127.0.0.1:${port}`;
      const running = runGantry(args(host));
      await new Promise((resolve) => setTimeout(resolve, 400));
      const late = await startSlowProxy(registry.host, 1024 * 1024 * 1024, port);
      try {
        const result = await running;
        expect(result.code, result.stderr).toBe(0);
        expect(retryWarnings(result.stderr)).toEqual(['Failed, retrying in 1s ... (1/3). Error: ']);
      } finally {
        await late.stop();
      }
    }
  });
});
