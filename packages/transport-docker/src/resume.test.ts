import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ErrorCodes } from '@gantry/core';
import type { FixtureImage } from '@gantry/core/testing';
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
