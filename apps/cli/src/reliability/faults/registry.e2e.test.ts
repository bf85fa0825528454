/**
 * Registry faults, end to end through the `gantry` command: Debian's docker-registry behind the fault
 * proxy (packages/transport-docker/src/testing/fault-proxy.ts), which breaks, delays, stalls,
 * redirects and re-authenticates requests, while the test restarts the registry process itself. Each
 * case checks what a user sees (exit status, the words of the error) and what was written: a copy
 * that succeeds has the source's digests (skopeo reads the result), a copy that fails leaves the OCI
 * layout it wrote to without an image and without temporary files.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  type FixtureImage,
  recordOutcome,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import {
  type FaultProxy,
  startFaultProxy,
  startTestRegistry,
  type TestRegistry,
} from '@gantry/transport-docker/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runGantry, runSkopeoConcurrently } from '../../test-support/run.js';
import { startBuiltGantry } from './built-gantry.js';

const testFile = 'apps/cli/src/reliability/faults/registry.e2e.test.ts';
const layerBytes = 4 * 1024 * 1024;

let root: string;
let registry: TestRegistry;
let proxy: FaultProxy;
let image: FixtureImage;
let layout: string;
let layerDigest: string;
let caseNumber = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-registry-faults-'));
  registry = await startTestRegistry();
  proxy = await startFaultProxy(registry.host);
  // One gzip layer of random bytes (incompressible: ~4 MiB on the wire), so a fault can hit its middle.
  image = await buildFixtureImage(
    {
      format: 'oci',
      layers: [
        { entries: [{ type: 'file', path: 'payload', randomSize: layerBytes, seed: 'registry-faults' }] },
      ],
    },
    { directory: join(root, 'fixture') },
  );
  layerDigest = [...image.blobs.values()].sort((a, b) => b.size - a.size)[0]!.digest;
  layout = join(root, 'source');
  await writeFixtureToOciLayout(image, layout, 'latest');
  const pushed = await runSkopeoConcurrently([
    '--insecure-policy',
    'copy',
    '-q',
    '--dest-tls-verify=false',
    `oci:${layout}:latest`,
    `docker://${registry.host}/faults/app:v1`,
  ]);
  expect(pushed.code, pushed.stderr).toBe(0);
}, 120_000);

afterEach(() => {
  proxy.faults.length = 0;
  proxy.statusFaults.length = 0;
  proxy.requestFaults.length = 0;
  proxy.requestHeaderFaults.length = 0;
  proxy.requestWatches.length = 0;
  proxy.requests.length = 0;
});

afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

const isLayerGet = (method: string, path: string) =>
  method === 'GET' && path.endsWith(`/blobs/${layerDigest}`);
const isManifestGet = (method: string, path: string) => method === 'GET' && path.includes('/manifests/');
const isUploadPatch = (method: string, path: string) =>
  method === 'PATCH' && path.includes('/blobs/uploads/');

function newDestination(): string {
  return join(root, `case-${++caseNumber}`);
}

/** A pull through the proxy into a new OCI layout; `flags` go before the references. */
async function pull(destination: string, flags: string[] = [], global: string[] = []) {
  const started = performance.now();
  const result = await runGantry([
    ...global,
    '--insecure-policy',
    'copy',
    '-q',
    '--src-tls-verify=false',
    ...flags,
    `docker://${proxy.host}/faults/app:v1`,
    `oci:${destination}:v1`,
  ]);
  return { ...result, elapsedMs: performance.now() - started };
}

/**
 * A new image (its own random layer) in an OCI layout, for a push: the registry has none of its blobs,
 * so they are uploaded, never mounted from a repository an earlier case wrote.
 */
async function freshImage(seed: string): Promise<{ layout: string; layerDigest: string }> {
  const directory = join(root, `fresh-${seed.replace(/\W/g, '-')}`);
  const fresh = await buildFixtureImage(
    {
      format: 'oci',
      layers: [{ entries: [{ type: 'file', path: 'payload', randomSize: layerBytes, seed }] }],
    },
    { directory: join(directory, 'fixture') },
  );
  await writeFixtureToOciLayout(fresh, join(directory, 'layout'), 'latest');
  return {
    layout: join(directory, 'layout'),
    layerDigest: [...fresh.blobs.values()].sort((a, b) => b.size - a.size)[0]!.digest,
  };
}

/** A push of a fresh image (see `freshImage`) to `repository`, through the proxy unless told otherwise. */
async function push(repository: string, flags: string[] = [], registryHost = proxy.host) {
  const fresh = await freshImage(repository);
  const result = await runGantry([
    '--insecure-policy',
    'copy',
    '-q',
    '--dest-tls-verify=false',
    ...flags,
    `oci:${fresh.layout}:latest`,
    `docker://${registryHost}/${repository}:v1`,
  ]);
  return { ...result, layerDigest: fresh.layerDigest };
}

/** The pulled layout holds the source image, byte for byte (skopeo reads it; the manifest digest is the source's). */
async function expectPulledImage(destination: string): Promise<void> {
  const inspected = await runSkopeoConcurrently(['inspect', '--raw', `oci:${destination}:v1`]);
  expect(inspected.code, inspected.stderr).toBe(0);
  expect(inspected.stdout.toString()).toBe(Buffer.from(image.topLevel.bytes).toString());
  const blobs = await readdir(join(destination, 'blobs', 'sha256'));
  expect(blobs).toContain(layerDigest.slice('sha256:'.length));
  expect((await readdir(join(destination, 'blobs'))).filter((name) => name.startsWith('.'))).toEqual([]);
}

/** The registry (read directly, not through the proxy) holds the pushed image with its layer. */
async function expectPushedImage(
  repository: string,
  layerDigest: string,
  registryHost = registry.host,
  credentials: string[] = [],
): Promise<void> {
  const inspected = await runSkopeoConcurrently([
    'inspect',
    '--tls-verify=false',
    ...credentials,
    `docker://${registryHost}/${repository}:v1`,
  ]);
  expect(inspected.code, inspected.stderr).toBe(0);
  const layers = JSON.parse(inspected.stdout.toString()).Layers as string[];
  expect(layers).toEqual([layerDigest]);
  const copied = await runSkopeoConcurrently([
    '--insecure-policy',
    'copy',
    '-q',
    '--src-tls-verify=false',
    ...credentials.map((flag) => flag.replace(/^--creds$/, '--src-creds')),
    `docker://${registryHost}/${repository}:v1`,
    `oci:${join(root, `verify-${repository.replace(/\W/g, '-')}`)}:v1`,
  ]);
  expect(copied.code, copied.stderr).toBe(0);
}

/** A failed pull left no image and no temporary files in the OCI layout. */
async function expectNothingHalfWritten(destination: string): Promise<void> {
  const index = await readFile(join(destination, 'index.json'), 'utf8').catch(() => '{"manifests":[]}');
  expect(JSON.parse(index).manifests).toEqual([]);
  const names = await readdir(join(destination, 'blobs', 'sha256')).catch(() => [] as string[]);
  expect(names).not.toContain(layerDigest.slice('sha256:'.length));
  const hidden = (await readdir(join(destination, 'blobs')).catch(() => [] as string[])).filter((name) =>
    name.startsWith('.'),
  );
  expect(hidden).toEqual([]);
}

function record(caseName: string, outcome: string): void {
  recordOutcome({ suite: 'faults', case: caseName, transport: 'docker', outcome, ok: true, testFile });
}

describe('connection resets', () => {
  it('mid-download: the layer download resumes with Range where it broke; digests verified', async () => {
    proxy.faults.push({ matches: isLayerGet, cutAfterBytes: 1_000_000, times: 2 });
    const destination = newDestination();
    const result = await pull(destination);
    expect(result.code, result.stderr).toBe(0);
    const gets = proxy.requests.filter((request) => isLayerGet(request.method, request.path));
    expect(gets.map((request) => [request.range, request.cut])).toEqual([
      [undefined, true],
      ['bytes=1000000-', true],
      ['bytes=2000000-', false],
    ]);
    await expectPulledImage(destination);
    record('connection reset mid-download', 'resumed with Range twice; digests match the source');
  });

  it('mid-upload: the layer upload continues (or starts over) and the registry holds the image', async () => {
    proxy.requestFaults.push({ matches: isUploadPatch, cutAfterBytes: 1_000_000, times: 1 });
    const pushed = await push('faults/upload-reset', ['--retry-times', '2', '--retry-delay', '100ms']);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(proxy.requests.some((request) => request.cut && request.method === 'PATCH')).toBe(true);
    await expectPushedImage('faults/upload-reset', pushed.layerDigest);
    record('connection reset mid-upload', 'upload continued; registry holds the source digests');
  });
});

describe('error answers', () => {
  it('500, 502 and 503 are retried with --retry-times, with skopeo’s warning; without it the copy fails naming the status', async () => {
    proxy.statusFaults.push({ matches: isManifestGet, status: 503, times: 1 });
    proxy.statusFaults.push({ matches: isLayerGet, status: 502, times: 1 });
    const destination = newDestination();
    const result = await pull(destination, ['--retry-times', '3', '--retry-delay', '100ms']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/Failed, retrying in 100ms \.\.\. \(1\/3\)/);
    await expectPulledImage(destination);

    proxy.statusFaults.push({
      matches: (method, path) => method === 'POST' && path.includes('/faults/pushed-500/blobs/uploads/'),
      status: 500,
      times: 1,
    });
    const pushed = await push('faults/pushed-500', ['--retry-times', '2', '--retry-delay', '100ms']);
    expect(pushed.code, pushed.stderr).toBe(0);
    await expectPushedImage('faults/pushed-500', pushed.layerDigest);
    expect(proxy.statusFaults.map((fault) => fault.times)).toEqual([0, 0, 0]);

    proxy.statusFaults.push({ matches: isLayerGet, status: 503, times: 1 });
    const failed = newDestination();
    const once = await pull(failed);
    expect(once.code).toBe(1);
    expect(once.stderr).toMatch(/fetching blob sha256:[0-9a-f]{64}.*unavailable|503/);
    await expectNothingHalfWritten(failed);
    record(
      '500/502/503 answers',
      'retried with --retry-times (skopeo’s warnings); without retries exit 1 naming the status, nothing written',
    );
  });

  it('429 with Retry-After is waited out as asked, at the request, without --retry-times', async () => {
    proxy.statusFaults.push({
      matches: isLayerGet,
      status: 429,
      headers: { 'retry-after': '1' },
      times: 2,
      body: JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }),
    });
    const destination = newDestination();
    const result = await pull(destination);
    expect(result.code, result.stderr).toBe(0);
    expect(result.elapsedMs).toBeGreaterThanOrEqual(1900);
    const gets = proxy.requests.filter((request) => isLayerGet(request.method, request.path));
    expect(gets.map((request) => request.status)).toEqual([429, 429, 200]);
    await expectPulledImage(destination);
    record('429 with Retry-After', 'waited the 1 s asked twice, then copied; digests match');
  });

  it('429 that never ends: bounded (5 waits), then exit 1 naming it; nothing written', async () => {
    proxy.statusFaults.push({
      matches: isLayerGet,
      status: 429,
      headers: { 'retry-after': '0' },
      times: 100,
      body: JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }),
    });
    const destination = newDestination();
    const result = await pull(destination);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('toomanyrequests: slow down');
    expect(proxy.requests.filter((request) => isLayerGet(request.method, request.path))).toHaveLength(6);
    await expectNothingHalfWritten(destination);
    record(
      '429 forever',
      'gave up after 5 waits (6 requests): exit 1 naming toomanyrequests, nothing written',
    );
  });
});

describe('429 with Retry-After answering a streamed upload (a PATCH whose body cannot be replayed)', () => {
  /** The path of an upload session (without its query), for telling sessions apart. */
  const sessionOf = (path: string) => path.split('?')[0]!;

  it.each([
    ['after the whole body was sent', false],
    ['at once, while the body is still being sent', true],
  ] as const)(
    'answered %s: waited out, then the upload continues in its session from the registry’s offset',
    async (_when, immediate) => {
      const repository = `faults/patch-429-${immediate ? 'early' : 'late'}`;
      // The first PATCH of each upload session (the layer's and the config's) is refused once.
      const refused = new Set<string>();
      proxy.statusFaults.push({
        matches: (method, path, headers) => {
          if (!isUploadPatch(method, path) || headers['content-range'] !== undefined) return false;
          if (!path.includes(`/${repository}/`) || refused.has(sessionOf(path))) return false;
          refused.add(sessionOf(path));
          return true;
        },
        status: 429,
        headers: { 'retry-after': '1' },
        times: 2,
        immediate,
        body: JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }),
      });
      const pushed = await push(repository);
      expect(pushed.code, pushed.stderr).toBe(0);
      expect(refused.size).toBe(2);
      const uploads = proxy.requests.filter(
        (request) => request.path.includes(`/${repository}/blobs/uploads/`) && request.method !== 'POST',
      );
      // Per session: the refused PATCH, the session's status (GET: the registry holds 0 bytes), the
      // PATCH of the whole blob from there, the closing PUT; no second session.
      const sessions = new Map<string, string[]>();
      for (const request of uploads) {
        const key = sessionOf(request.path);
        sessions.set(key, [...(sessions.get(key) ?? []), `${request.method} ${request.status}`]);
      }
      expect([...sessions.values()]).toEqual([
        ['PATCH 429', 'GET 204', 'PATCH 202', 'PUT 201'],
        ['PATCH 429', 'GET 204', 'PATCH 202', 'PUT 201'],
      ]);
      const posts = proxy.requests.filter(
        (request) => request.method === 'POST' && request.path.includes(`/${repository}/blobs/uploads/`),
      );
      expect(posts).toHaveLength(2);
      await expectPushedImage(repository, pushed.layerDigest);
      record(
        `429 with Retry-After answering a streamed upload (PATCH) ${immediate ? 'at once' : 'after its body'}`,
        'waited as asked, read the session’s offset, resent the kept bytes in the same session; no --retry-times needed; registry holds the source digests',
      );
    },
  );
});

describe('a signal in the middle of a push', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)(
    '%s: ends by the signal; the upload session is cancelled; the registry has no image',
    async (signal) => {
      const repository = `faults/push-${signal.toLowerCase()}`;
      const fresh = await freshImage(repository);
      const copy = startBuiltGantry(
        [
          '--insecure-policy',
          'copy',
          '-q',
          '--dest-tls-verify=false',
          `oci:${fresh.layout}:latest`,
          `docker://${proxy.host}/${repository}:v1`,
        ],
        root,
      );
      // Stopped (SIGSTOP) once 1 MB of the layer reached the proxy: certainly in the middle of the upload.
      const caught = new Promise<void>((resolve) => {
        proxy.requestWatches.push({
          matches: (method, path) => isUploadPatch(method, path) && path.includes(`/${repository}/`),
          afterBodyBytes: 1_000_000,
          times: 1,
          onReached: () => {
            copy.child.kill('SIGSTOP');
            resolve();
          },
        });
      });
      await Promise.race([
        caught,
        copy.exited.then((ended) => {
          throw new Error(`gantry ended before it was caught mid-upload: ${ended.stderr}`);
        }),
      ]);
      copy.child.kill(signal);
      copy.child.kill('SIGCONT');
      const ended = await copy.exited;
      expect({ code: ended.code, signal: ended.signal }, ended.stderr).toEqual({ code: null, signal });
      expect(ended.stderr).toContain(`interrupted by ${signal}`);
      const sessions = proxy.requests.filter((request) =>
        request.path.includes(`/${repository}/blobs/uploads/`),
      );
      // The session was cancelled: DELETE answered 204, or 404 when the registry had already dropped
      // the session whose PATCH broke off (distribution does).
      const deletes = sessions.filter((request) => request.method === 'DELETE');
      expect(deletes).toHaveLength(1);
      expect([204, 404]).toContain(deletes[0]!.status);
      const blob = await fetch(`http://${registry.host}/v2/${repository}/blobs/${fresh.layerDigest}`, {
        method: 'HEAD',
      });
      expect(blob.status).toBe(404);
      expect(
        proxy.requests.filter(
          (request) => request.method === 'PUT' && request.path.includes(`/${repository}/`),
        ),
      ).toEqual([]);
      const inspected = await runSkopeoConcurrently([
        'inspect',
        '--tls-verify=false',
        `docker://${registry.host}/${repository}:v1`,
      ]);
      expect(inspected.code).not.toBe(0);
      expect(inspected.stderr.toString()).toMatch(/manifest unknown|not found/i);
      record(
        `${signal} during a copy`,
        `ended by ${signal} mid-upload; the upload session cancelled (DELETE); no blob, no manifest in the registry`,
      );
    },
    120_000,
  );
});

describe('the registry restarted in the middle of a copy', () => {
  it('during a download: the copy carries on once the registry is back', async () => {
    let restarted: Promise<void> | undefined;
    proxy.faults.push({
      matches: isLayerGet,
      cutAfterBytes: 1_500_000,
      times: 1,
      onReached: () => {
        restarted = registry.restart();
      },
    });
    const destination = newDestination();
    const result = await pull(destination, ['--retry-times', '5', '--retry-delay', '500ms']);
    await restarted;
    expect(restarted).toBeDefined();
    expect(result.code, result.stderr).toBe(0);
    await expectPulledImage(destination);
    record('registry restarted mid-download', 'resumed/retried after the restart; digests match');
  }, 120_000);

  it('during an upload: the copy carries on once the registry is back', async () => {
    let restarted: Promise<void> | undefined;
    proxy.requestWatches.push({
      matches: (method, path) => isUploadPatch(method, path) && path.includes('/faults/restarted-upload/'),
      afterBodyBytes: 1_000_000,
      times: 1,
      onReached: () => {
        restarted = registry.restart();
      },
    });
    const pushed = await push('faults/restarted-upload', ['--retry-times', '5', '--retry-delay', '500ms']);
    await restarted;
    expect(restarted).toBeDefined();
    expect(pushed.code, pushed.stderr).toBe(0);
    await expectPushedImage('faults/restarted-upload', pushed.layerDigest);
    record(
      'registry restarted mid-upload',
      'upload retried after the restart; registry holds the source digests',
    );
  }, 120_000);
});

describe('a redirect loop', () => {
  it('ends after 10 redirects with a clear error; nothing written', async () => {
    proxy.statusFaults.push({
      matches: isLayerGet,
      status: 307,
      headers: { location: `/v2/faults/app/blobs/${layerDigest}` },
      times: 1000,
      body: '',
    });
    const destination = newDestination();
    const result = await pull(destination);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`fetching blob ${layerDigest}`);
    expect(result.stderr).toContain('too many redirects');
    expect(proxy.requests.filter((request) => isLayerGet(request.method, request.path))).toHaveLength(11);
    await expectNothingHalfWritten(destination);
    record('redirect loop', 'stopped after 10 redirects: exit 1 "too many redirects", nothing written');
  });
});

describe('a response that stalls', () => {
  it('once, mid-body: --registry-idle-timeout ends the wait and the download resumes with Range', async () => {
    proxy.faults.push({ matches: isLayerGet, cutAfterBytes: 1_000_000, times: 1, stall: true });
    const destination = newDestination();
    const result = await pull(destination, [], ['--registry-idle-timeout', '1s']);
    expect(result.code, result.stderr).toBe(0);
    const gets = proxy.requests.filter((request) => isLayerGet(request.method, request.path));
    expect(gets.map((request) => request.range)).toEqual([undefined, 'bytes=1000000-']);
    await expectPulledImage(destination);
    record(
      'response stalls mid-body once',
      'idle timeout (1 s) ended the wait; resumed with Range; digests match',
    );
  });

  it('every time: fails in bounded time, saying the server stalled; nothing written', async () => {
    proxy.faults.push({ matches: isLayerGet, cutAfterBytes: 100_000, times: 1000, stall: true });
    const destination = newDestination();
    const result = await pull(destination, [], ['--registry-idle-timeout', '500ms']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /fetching blob sha256:[0-9a-f]{64} from .*the server stalled: no more data within 0\.5 s/,
    );
    // The first try and five resumes, each given up after 0.5 s.
    expect(result.elapsedMs).toBeLessThan(30_000);
    expect(proxy.requests.filter((request) => isLayerGet(request.method, request.path))).toHaveLength(6);
    await expectNothingHalfWritten(destination);
    record(
      'response stalls mid-body forever',
      'exit 1 "the server stalled" after 6 tries of 0.5 s, nothing written',
    );
  });

  it('before any answer: fails after the idle timeout, saying there was no answer', async () => {
    proxy.statusFaults.push({ matches: isManifestGet, status: 200, times: 1, hang: true });
    const destination = newDestination();
    const result = await pull(destination, [], ['--registry-idle-timeout', '1s']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/reading manifest v1 in .*the server stalled: no answer within 1 s/);
    expect(result.elapsedMs).toBeLessThan(15_000);
    await expectNothingHalfWritten(destination);
    record(
      'no answer at all (headers stall)',
      'exit 1 "the server stalled: no answer" after the idle timeout',
    );
  });

  it('--command-timeout ends a stalled copy on time, with skopeo’s words; nothing written', async () => {
    proxy.faults.push({ matches: isLayerGet, cutAfterBytes: 100_000, times: 1000, stall: true });
    const destination = newDestination();
    const result = await pull(destination, [], ['--command-timeout', '2s']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('context deadline exceeded');
    expect(result.elapsedMs).toBeGreaterThanOrEqual(1900);
    expect(result.elapsedMs).toBeLessThan(15_000);
    await expectNothingHalfWritten(destination);
    record(
      'stalled copy with --command-timeout',
      'exit 1 "context deadline exceeded" after 2 s, nothing written',
    );
  });
});

describe('a bearer token that expires during a copy', () => {
  let tokenRegistry: TestRegistry;
  let tokenProxy: FaultProxy;

  beforeAll(async () => {
    tokenRegistry = await startTestRegistry({ tokenAuth: { users: { alice: 'secret' } } });
    tokenProxy = await startFaultProxy(tokenRegistry.host);
    const pushed = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      '--dest-tls-verify=false',
      '--dest-creds',
      'alice:secret',
      `oci:${layout}:latest`,
      `docker://${tokenRegistry.host}/tokens/app:v1`,
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
  }, 60_000);

  afterAll(async () => {
    await tokenProxy?.stop();
    await tokenRegistry?.stop();
  });

  it('a request refused for its expired token gets a new token and the copy continues', async () => {
    const tokenServer = tokenRegistry.tokenServer!;
    const expired = (scopes: string[]) =>
      `Bearer ${tokenServer.mintToken({ user: 'alice', scopes, expiresInSeconds: -600 })}`;
    // Pull: the layer GET (after the manifest and config were read with the first token).
    tokenProxy.requestHeaderFaults.push({
      matches: isLayerGet,
      set: { authorization: expired(['repository:tokens/app:pull']) },
      times: 1,
    });
    tokenServer.requests.length = 0;
    const destination = newDestination();
    const pulled = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      '--src-tls-verify=false',
      '--src-creds',
      'alice:secret',
      `docker://${tokenProxy.host}/tokens/app:v1`,
      `oci:${destination}:v1`,
    ]);
    expect(pulled.code, pulled.stderr).toBe(0);
    const layerGets = tokenProxy.requests.filter((request) => isLayerGet(request.method, request.path));
    expect(layerGets.map((request) => request.status)).toEqual([401, 200]);
    expect(tokenServer.requests.length).toBe(2);
    await expectPulledImage(destination);

    // Push: the manifest PUT at the end of the upload.
    tokenProxy.requests.length = 0;
    tokenProxy.requestHeaderFaults.push({
      matches: (method, path) => method === 'PUT' && path.includes('/manifests/'),
      set: { authorization: expired(['repository:tokens/pushed:pull,push']) },
      times: 1,
    });
    const pushed = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      '--dest-tls-verify=false',
      '--dest-creds',
      'alice:secret',
      `oci:${layout}:latest`,
      `docker://${tokenProxy.host}/tokens/pushed:v1`,
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const puts = tokenProxy.requests.filter(
      (request) => request.method === 'PUT' && request.path.includes('/manifests/'),
    );
    expect(puts.map((request) => request.status)).toEqual([401, 201]);
    record(
      'bearer token expires during a copy',
      'the registry refused the expired token (401); new token fetched, copy continued',
    );
  });

  it('an expired token on a streamed upload: the upload continues in its session with a new token', async () => {
    const tokenServer = tokenRegistry.tokenServer!;
    tokenProxy.requests.length = 0;
    tokenProxy.requestHeaderFaults.push({
      matches: isUploadPatch,
      set: {
        authorization: `Bearer ${tokenServer.mintToken({ user: 'alice', scopes: ['repository:tokens/streamed:pull,push'], expiresInSeconds: -600 })}`,
      },
      times: 1,
    });
    const pushed = await push('tokens/streamed', ['--dest-creds', 'alice:secret'], tokenProxy.host);
    expect(pushed.code, pushed.stderr).toBe(0);
    const patches = tokenProxy.requests.filter((request) => isUploadPatch(request.method, request.path));
    expect(patches.map((request) => request.status)).toEqual([401, 202, 202]);
    expect(tokenServer.requests.length).toBeGreaterThanOrEqual(2);
    await expectPushedImage('tokens/streamed', pushed.layerDigest, tokenRegistry.host, [
      '--creds',
      'alice:secret',
    ]);

    record(
      'bearer token expires before a streamed upload',
      'the registry refused the expired token (401); new token fetched, upload continued in its session',
    );
  });
});
