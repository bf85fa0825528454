import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import { type FixtureImage, fixturePresets } from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import { buildImage, digestStream, dockerContext, pushFixture } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

describe('copyImage between repositories of a real registry', () => {
  let registry: TestRegistry;
  let directory: string;
  let image: FixtureImage;
  let list: FixtureImage;

  beforeAll(async () => {
    registry = await startTestRegistry({ tokenAuth: { users: { erin: 'pw' } } });
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
    image = await buildImage(fixturePresets.dockerSchema2, path.join(directory, 'image'));
    list = await buildImage(fixturePresets.multiArchOci, path.join(directory, 'list'));
  });

  afterAll(async () => {
    await registry?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  const authenticated = dockerContext({ tlsVerify: false, credentials: 'erin:pw' });

  it('mounts every blob, the config too, and uploads nothing', async () => {
    const transport = createDockerTransport();
    try {
      await pushFixture(transport, registry, 'copy/source:v1', image, authenticated);
      await pushFixture(transport, registry, 'copy/list:v1', list, authenticated);
    } finally {
      await transport.closeConnections();
    }
    // A fresh transport, as a new `gantry copy` process would have.
    const copier = createDockerTransport();
    try {
      registry.clearAccessLog();
      const result = await copyImage(
        copier.parseReference(`//${registry.host}/copy/source:v1`),
        copier.parseReference(`//${registry.host}/copy/target:v1`),
        {
          sourceContext: authenticated,
          destinationContext: authenticated,
          policy: insecureAcceptAnythingPolicy(),
        },
      );
      expect(result.manifestDigest).toBe(image.topLevel.digest);
      const log = await registry.accessLog();
      expect(log.filter((entry) => entry.method === 'PATCH')).toEqual([]);
      // The pipeline reads the (small) config; layers never pass through Gantry.
      const configDigest = image.images[0]!.configDigest;
      expect(
        log.filter(
          (entry) =>
            entry.method === 'GET' && entry.path.includes('/blobs/') && !entry.path.endsWith(configDigest),
        ),
      ).toEqual([]);
      const mounts = log.filter(
        (entry) => entry.method === 'POST' && entry.path.includes('mount=') && entry.status === 201,
      );
      expect(mounts.length).toBe(image.blobs.size);

      registry.clearAccessLog();
      const listResult = await copyImage(
        copier.parseReference(`//${registry.host}/copy/list:v1`),
        copier.parseReference(`//${registry.host}/copy/list-target:v1`),
        {
          sourceContext: authenticated,
          destinationContext: authenticated,
          policy: insecureAcceptAnythingPolicy(),
          imageListSelection: 'all',
        },
      );
      expect(listResult.manifestDigest).toBe(list.topLevel.digest);
      const listLog = await registry.accessLog();
      expect(listLog.filter((entry) => entry.method === 'PATCH')).toEqual([]);
      const configDigests = list.images.map((single) => single.configDigest as string);
      expect(
        listLog.filter(
          (entry) =>
            entry.method === 'GET' &&
            entry.path.includes('/blobs/') &&
            !configDigests.some((digest) => entry.path.endsWith(digest)),
        ),
      ).toEqual([]);
    } finally {
      await copier.closeConnections();
    }
    const reader = createDockerTransport();
    try {
      const source = await reader
        .parseReference(`//${registry.host}/copy/target:v1`)
        .newImageSource(authenticated);
      for (const blob of image.blobs.values()) {
        expect(
          (await digestStream((await source.getBlob({ digest: blob.digest, size: blob.size })).stream))
            .digest,
        ).toBe(blob.digest);
      }
      await source.close();
    } finally {
      await reader.closeConnections();
    }
  });

  it('re-copies an image that is already there with one request per blob and no upload', async () => {
    const copier = createDockerTransport();
    try {
      registry.clearAccessLog();
      await copyImage(
        copier.parseReference(`//${registry.host}/copy/source:v1`),
        copier.parseReference(`//${registry.host}/copy/target:v1`),
        {
          sourceContext: authenticated,
          destinationContext: authenticated,
          policy: insecureAcceptAnythingPolicy(),
        },
      );
      const log = await registry.accessLog();
      // The source's manifest names the blobs, so each is asked for by a mount from there, which the
      // registry answers 201 (it holds the blob): no HEAD first, no upload.
      expect(log.filter((entry) => entry.method === 'PATCH')).toEqual([]);
      const blobRequests = log.filter((entry) => entry.path.includes('/blobs/') && entry.method !== 'GET');
      expect(blobRequests.map((entry) => `${entry.method} ${entry.status}`)).toEqual(
        Array.from({ length: image.blobs.size }, () => 'POST 201'),
      );
      expect(
        blobRequests.every((entry) => entry.path.includes('mount=') && entry.path.includes('from=')),
      ).toBe(true);
    } finally {
      await copier.closeConnections();
    }
  });
});
