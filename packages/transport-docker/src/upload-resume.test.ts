/**
 * Uploads that survive a dropped connection (real registry behind a fault proxy that cuts the upload
 * request mid-body): the upload continues at the offset the registry reports for the session, so the
 * blob's bytes cross the wire about once, not twice.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import { type FixtureImage, runSkopeo } from '@gantry/core/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { sharedUploadResumeBudget } from './resume-budget.js';
import { type FaultProxy, startFaultProxy } from './testing/fault-proxy.js';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import { buildImage, dockerContext, pushFixture } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

const layerBytes = 24_000_000;

describe('uploads resume after a dropped connection (real registry behind a fault proxy)', () => {
  let registry: TestRegistry;
  let proxy: FaultProxy;
  let directory: string;
  let image: FixtureImage;
  let layer: { digest: string; size: number };
  const context = dockerContext({ tlsVerify: false });

  beforeAll(async () => {
    registry = await startTestRegistry();
    proxy = await startFaultProxy(registry.host);
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-upload-resume-'));
    image = await buildImage(
      {
        format: 'docker',
        layers: [
          {
            entries: [{ type: 'file', path: 'big.bin', randomSize: layerBytes, seed: 'upload-resume' }],
            compression: 'gzip',
          },
        ],
      },
      path.join(directory, 'image'),
    );
    const layerDigest = image.images[0]!.layerDigests[0]!;
    layer = { digest: layerDigest, size: image.blobs.get(layerDigest)!.size };
    const seeding = createDockerTransport();
    try {
      await pushFixture(seeding, registry, 'source/big:v1', image, context);
    } finally {
      await seeding.closeConnections();
    }
  }, 120_000);

  afterEach(() => {
    proxy.requestFaults.length = 0;
  });

  /**
   * A repository name of its own for each run of a test (CI runs a failed test again): a blob the
   * registry already holds from an earlier run would not be uploaded again, and no fault would happen.
   */
  let runs = 0;
  function freshRepository(name: string): string {
    proxy.requestFaults.length = 0;
    runs += 1;
    return `${name}-${runs}`;
  }

  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  async function push(repository: string, options: Record<string, unknown>): Promise<number> {
    const transport = createDockerTransport();
    const before = proxy.totalRequestBodyBytes;
    proxy.requests.length = 0;
    try {
      await copyImage(
        transport.parseReference(`//${registry.host}/source/big:v1`),
        transport.parseReference(`//${proxy.host}/${repository}`),
        {
          policy: insecureAcceptAnythingPolicy(),
          sourceContext: context,
          destinationContext: dockerContext({ tlsVerify: false, ...options }),
          retryTimes: 1,
          retryDelayMs: 10,
        },
      );
    } finally {
      await transport.closeConnections();
    }
    // Every upload gave its share of the resume budget back (a leaked share would shrink later windows).
    expect(sharedUploadResumeBudget.uploads).toBe(0);
    expect(proxy.requestFaults[0]!.times).toBe(0);
    expect(proxy.requests.some((request) => request.cut && request.method === 'PATCH')).toBe(true);
    // The registry holds the blob intact: skopeo copies the image out, verifying every digest.
    await runSkopeo([
      '--insecure-policy',
      'copy',
      '-q',
      '--src-tls-verify=false',
      `docker://${registry.host}/${repository}`,
      `dir:${path.join(directory, `pulled-${repository.replace(/[/:]/g, '-')}`)}`,
    ]);
    return proxy.totalRequestBodyBytes - before;
  }

  /** Resolves once an upload under `uploadsDirectory` has data on disk (at most 30 s). */
  async function waitForStoredUploadBytes(uploadsDirectory: string): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const sessions = await readdir(uploadsDirectory).catch(() => [] as string[]);
      for (const session of sessions) {
        const stored = await stat(path.join(uploadsDirectory, session, 'data')).catch(() => undefined);
        if (stored && stored.size > 0) return;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Cuts the PATCH carrying the blob's middle byte there. */
  function cutInTheMiddle(buffered: boolean): void {
    const middle = Math.floor(layer.size / 2);
    const range = (headers: Record<string, unknown>): [number, number] =>
      typeof headers['content-range'] === 'string'
        ? (headers['content-range'].split('-').map(Number) as [number, number])
        : [0, Number.POSITIVE_INFINITY];
    proxy.requestFaults.push({
      buffered,
      matches: (method, _path, headers) =>
        method === 'PATCH' && range(headers)[0] <= middle && middle <= range(headers)[1],
      cutAfterBytes: (headers) => middle - range(headers)[0],
      times: 1,
    });
  }

  it('continues a chunked upload at the offset the registry reports, sending the blob about once (request-buffering proxy, as nginx)', async () => {
    const repository = freshRepository('resumed/chunks');
    cutInTheMiddle(true);
    const sent = await push(`${repository}:v1`, { uploadChunkSize: 4 * 1024 * 1024 });
    const layerRequests = proxy.requests.filter((request) => request.path.includes('/blobs/uploads/'));
    // One session: the status was asked (GET on the upload URL) and the upload went on in it.
    expect(layerRequests.filter((request) => request.method === 'POST')).toHaveLength(2); // layer + config
    expect(layerRequests.some((request) => request.method === 'GET' && request.status === 204)).toBe(true);
    expect(sent).toBeGreaterThanOrEqual(layer.size);
    expect(sent).toBeLessThanOrEqual(1.5 * layer.size);
    // Only the chunk in flight was sent twice.
    expect(sent).toBeLessThanOrEqual(layer.size + 4 * 1024 * 1024 + 64 * 1024);
  }, 120_000);

  it('continues a streamed upload in the same session from the bytes kept since the registry’s offset', async () => {
    // The buffering proxy drops the whole PATCH: the registry reports 0 bytes, and the 3 MB sent are
    // within the kept window, so they are sent again from memory and the stream goes on.
    const repository = freshRepository('resumed/streamed');
    // What the client has written when it sees the drop is the cut plus what the socket buffers on both
    // sides held (several MiB on loopback, more under load): a window larger than that makes the resume
    // from memory certain, which is what this test is about (the default window's size is a memory
    // trade-off, tested in resume-budget.test.ts).
    const { totalBytes, perUploadBytes } = sharedUploadResumeBudget;
    sharedUploadResumeBudget.resize(64 * 1024 * 1024, 64 * 1024 * 1024);
    onTestFinished(() => sharedUploadResumeBudget.resize(totalBytes, perUploadBytes));
    proxy.requestFaults.push({
      buffered: true,
      matches: (method) => method === 'PATCH',
      cutAfterBytes: 3_000_000,
      times: 1,
    });
    const sent = await push(`${repository}:v1`, {});
    const uploads = proxy.requests.filter((request) => request.path.includes('/blobs/uploads/'));
    expect(uploads.filter((request) => request.method === 'POST')).toHaveLength(2); // layer + config
    expect(uploads.some((request) => request.method === 'GET' && request.status === 204)).toBe(true);
    expect(sent).toBeLessThanOrEqual(layer.size + 3_000_000 + 64 * 1024);
  }, 120_000);

  it('starts over when the registry dropped the session with the connection (distribution 2.8 behind a pass-through proxy), completing with --retry-times 1', async () => {
    const repository = freshRepository('restarted/streamed');
    cutInTheMiddle(false);
    // The connections drop only once the registry has stored some of the bytes (so its session state
    // is behind its data, which is what makes distribution 2.x drop the session).
    proxy.requestFaults[0]!.beforeCut = () =>
      waitForStoredUploadBytes(
        path.join(registry.storageDirectory, 'docker/registry/v2/repositories', repository, '_uploads'),
      );
    const sent = await push(`${repository}:v1`, {});
    // distribution 2.x cancels a session whose data outgrew the offset in its signed upload state.
    const statusAnswers = proxy.requests.filter(
      (request) => request.method === 'GET' && request.path.includes('/blobs/uploads/'),
    );
    expect(statusAnswers.map((request) => request.status)).toEqual([404]);
    // Half the blob before the cut, then the whole blob once more: about 1.5 times, never twice. (The
    // proxy counts what it read from Gantry, which may run a little past the cut while it waits.)
    expect(sent).toBeLessThanOrEqual(1.5 * layer.size + 1024 * 1024);
  }, 120_000);

  /**
   * Refuses with 429 the first streamed PATCH of each upload session to `repository`, answered after
   * its whole body, until a refused PATCH carried the layer (more than is kept for resending).
   */
  function refuseStreamedPatchesOnce(repository: string): void {
    const refused = new Set<string>();
    proxy.statusFaults.push({
      matches: (method, requestPath, headers) => {
        if (method !== 'PATCH' || headers['content-range'] !== undefined) return false;
        if (!requestPath.includes(`/${repository}/blobs/uploads/`)) return false;
        const layerRefused = proxy.requests.some(
          (request) => request.status === 429 && request.bodyBytes > 16 * 1024 * 1024,
        );
        const session = requestPath.split('?')[0]!;
        if (layerRefused || refused.has(session)) return false;
        refused.add(session);
        return true;
      },
      status: 429,
      headers: { 'retry-after': '0' },
      times: Number.POSITIVE_INFINITY,
      body: JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }),
    });
  }

  it('a 429 answering a streamed PATCH after more was sent than is kept: a retryable failure naming it; with --retry-times 1 the blob is uploaded again', async () => {
    const copy = async (repository: string, retryTimes: number) => {
      const transport = createDockerTransport();
      try {
        await copyImage(
          transport.parseReference(`//${registry.host}/source/big:v1`),
          transport.parseReference(`//${proxy.host}/${repository}:v1`),
          {
            policy: insecureAcceptAnythingPolicy(),
            sourceContext: context,
            destinationContext: dockerContext({ tlsVerify: false }),
            retryTimes,
            retryDelayMs: 10,
          },
        );
      } finally {
        await transport.closeConnections();
      }
    };
    proxy.requests.length = 0;
    refuseStreamedPatchesOnce('limited/once');
    await expect(copy('limited/once', 0)).rejects.toMatchObject({
      code: 'ERR_GANTRY_TRANSIENT',
      retryable: true,
      message: expect.stringMatching(
        /429 Too Many Requests after \d+ bytes were sent and kept 0 of them; .*--retry-times/,
      ),
    });
    proxy.statusFaults.length = 0;

    proxy.requests.length = 0;
    refuseStreamedPatchesOnce('limited/retried');
    await copy('limited/retried', 1);
    proxy.statusFaults.length = 0;
    const refusedLayer = proxy.requests.filter(
      (request) => request.status === 429 && request.bodyBytes > 16 * 1024 * 1024,
    );
    expect(refusedLayer).toHaveLength(1);
    await runSkopeo([
      '--insecure-policy',
      'copy',
      '-q',
      '--src-tls-verify=false',
      `docker://${registry.host}/limited/retried:v1`,
      `dir:${path.join(directory, 'pulled-limited')}`,
    ]);
  }, 180_000);
});
