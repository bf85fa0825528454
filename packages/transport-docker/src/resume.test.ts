import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import type { FixtureImage } from '@gantry/core/testing';
import { digestOf, ErrorCodes } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maxBlobResumes } from './image-source.js';
import { type FaultProxy, startFaultProxy } from './testing/fault-proxy.js';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import { buildImage, digestStream, dockerContext, pushFixture } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

describe('blob downloads resume after a broken connection (real registry behind a fault proxy)', () => {
  let registry: TestRegistry;
  let proxy: FaultProxy;
  let directory: string;
  let image: FixtureImage;
  let layer: { digest: string; size: number };
  const transport = createDockerTransport();
  const context = dockerContext({ tlsVerify: false });

  beforeAll(async () => {
    registry = await startTestRegistry();
    proxy = await startFaultProxy(registry.host);
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
    image = await buildImage(
      {
        layers: [
          {
            entries: [{ type: 'file', path: 'big.bin', randomSize: 3_000_000, seed: 'resume' }],
            compression: 'none',
          },
        ],
      },
      path.join(directory, 'image'),
    );
    await pushFixture(transport, registry, 'resume/app:v1', image, context);
    const layerDigest = image.images[0]!.layerDigests[0]!;
    layer = { digest: layerDigest, size: image.blobs.get(layerDigest)!.size };
  });

  afterAll(async () => {
    await transport.closeConnections();
    await proxy?.stop();
    await registry?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  const isLayerGet = (method: string, requestPath: string) =>
    method === 'GET' && requestPath.endsWith(`/blobs/${layer.digest}`);

  it('continues with Range requests where the connection broke and delivers every byte once', async () => {
    proxy.faults.push({ matches: isLayerGet, cutAfterBytes: 700_000, times: 2 });
    proxy.requests.length = 0;
    const source = await transport.parseReference(`//${proxy.host}/resume/app:v1`).newImageSource(context);
    const blob = await source.getBlob({ digest: layer.digest, size: layer.size });
    expect(blob.size).toBe(layer.size);
    expect(await digestStream(blob.stream)).toEqual(layer);
    await source.close();
    const gets = proxy.requests.filter((request) => isLayerGet(request.method, request.path));
    expect(gets.map((request) => [request.range, request.status, request.cut])).toEqual([
      [undefined, 200, true],
      ['bytes=700000-', 206, true],
      ['bytes=1400000-', 206, false],
    ]);
  });

  it('reports 5xx and 429 as retryable ERR_GANTRY_TRANSIENT, and a copy with retries succeeds through them', async () => {
    proxy.faults.length = 0;
    const isManifestGet = (method: string, requestPath: string) =>
      method === 'GET' && requestPath.includes('/manifests/');
    proxy.statusFaults.push({ matches: isManifestGet, status: 503, times: 1 });
    await expect(
      transport.parseReference(`//${proxy.host}/resume/app:v1`).newImageSource(context),
    ).rejects.toMatchObject({
      code: ErrorCodes.Transient,
      retryable: true,
      message: expect.stringContaining('unavailable: injected by the test proxy'),
    });
    // A 429 is waited out and sent again up to 5 times (maxTooManyRequestsRetries); the sixth remains.
    proxy.statusFaults.push({ matches: isLayerGet, status: 429, headers: { 'retry-after': '0' }, times: 6 });
    const source = await transport.parseReference(`//${proxy.host}/resume/app:v1`).newImageSource(context);
    await expect(source.getBlob({ digest: layer.digest, size: layer.size })).rejects.toMatchObject({
      code: ErrorCodes.Transient,
      retryable: true,
    });
    await source.close();
    // The copy pipeline retries: a 502 on the layer download and a 500 on the upload start are absorbed.
    proxy.statusFaults.push({ matches: isLayerGet, status: 502, times: 1 });
    proxy.statusFaults.push({
      matches: (method, requestPath) =>
        method === 'POST' && requestPath.includes('/retried/app/blobs/uploads/'),
      status: 500,
      times: 1,
    });
    // The destination's transport has not seen the source's manifest, so it cannot mount: bytes flow.
    const destinationTransport = createDockerTransport();
    const result = await copyImage(
      transport.parseReference(`//${proxy.host}/resume/app:v1`),
      destinationTransport.parseReference(`//${proxy.host}/retried/app:v1`),
      {
        sourceContext: context,
        destinationContext: context,
        policy: insecureAcceptAnythingPolicy(),
        retryTimes: 3,
        retryDelayMs: 10,
      },
    );
    // The uncompressed layer was compressed on the way (a registry destination asks for compression).
    const copied = await destinationTransport
      .parseReference(`//${proxy.host}/retried/app:v1`)
      .newImageSource(context);
    expect(digestOf((await copied.getManifest()).bytes)).toBe(result.manifestDigest);
    await copied.close();
    await destinationTransport.closeConnections();
    expect(proxy.statusFaults.map((fault) => fault.times)).toEqual([0, 0, 0, 0]);
    proxy.statusFaults.length = 0;
  });

  it('gives up after repeated breaks with a retryable ERR_GANTRY_TRANSIENT', async () => {
    proxy.faults.length = 0;
    proxy.faults.push({ matches: isLayerGet, cutAfterBytes: 1000, times: maxBlobResumes + 1 });
    const source = await transport.parseReference(`//${proxy.host}/resume/app:v1`).newImageSource(context);
    const blob = await source.getBlob({ digest: layer.digest, size: layer.size });
    await expect(digestStream(blob.stream)).rejects.toMatchObject({
      code: ErrorCodes.Transient,
      retryable: true,
    });
    await source.close();
  });
});
