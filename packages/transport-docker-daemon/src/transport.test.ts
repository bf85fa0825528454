import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import { buildFixtureImage, createFixtureImageSource, fixturePresets } from '@gantry/core/testing';
import { digestOf, ErrorCodes, GantryError, MediaTypes } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerEngineClient, dockerHostOf, maximumApiVersion } from './client.js';
import { startTestDockerDaemon, type TestDockerDaemon } from './test-support/dockerd.js';
import { fixtureReference } from './test-support/fixture-reference.js';
import { dockerDaemonTransport } from './transport.js';

const run = promisify(execFile);

let daemon: TestDockerDaemon;
let directory: string;

beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  daemon = await startTestDockerDaemon();
}, 90_000);

afterAll(async () => {
  await daemon?.stop();
  if (directory) await rm(directory, { recursive: true, force: true });
}, 30_000);

describe('docker-daemon: against a real dockerd', () => {
  it('loads a copied image (docker image inspect shows tag, ID and layers) and reads it back', async () => {
    const image = await buildFixtureImage(fixturePresets.dockerSchema2, {
      directory: path.join(directory, 'fixture'),
    });
    const fixture = image.images[0]!;
    const spool = path.join(directory, 'spool');
    await mkdir(spool);
    const context = {
      transportOptions: { 'docker-daemon': { host: daemon.host } },
      temporaryDirectory: spool,
    };
    // gzip layers go into the load request as they are, with their sizes known: nothing is spooled, so
    // a temporary directory that cannot be used does not matter.
    const unusable = path.join(directory, 'a-file-not-a-directory');
    await writeFile(unusable, '');
    const destination = dockerDaemonTransport.parseReference('example.com/test:v1');
    await copyImage(
      fixtureReference((reference) => createFixtureImageSource(image, reference)),
      destination,
      {
        policy: insecureAcceptAnythingPolicy(),
        destinationContext: { ...context, temporaryDirectory: unusable },
      },
    );
    const [inspected] = JSON.parse(await daemon.docker('image', 'inspect', 'example.com/test:v1')) as Array<{
      Id: string;
      RepoTags: string[];
      RootFS: { Layers: string[] };
    }>;
    expect(inspected!.RepoTags).toEqual(['example.com/test:v1']);
    expect(inspected!.Id).toBe(fixture.configDigest);
    expect(inspected!.RootFS.Layers).toEqual(fixture.diffIds);

    for (const name of ['example.com/test:v1', fixture.configDigest]) {
      const source = await dockerDaemonTransport.parseReference(name).newImageSource(context);
      try {
        const manifest = JSON.parse(Buffer.from((await source.getManifest()).bytes).toString('utf8'));
        expect(manifest.config.digest).toBe(fixture.configDigest);
        expect(manifest.layers.map((layer: { digest: string }) => layer.digest)).toEqual(fixture.diffIds);
        const config = await source.getBlob({ digest: fixture.configDigest, size: -1 }, {});
        const chunks: Buffer[] = [];
        for await (const chunk of config.stream) chunks.push(Buffer.from(chunk));
        expect(JSON.parse(Buffer.concat(chunks).toString('utf8')).rootfs.diff_ids).toEqual(fixture.diffIds);
      } finally {
        await source.close();
      }
      expect(await readdir(spool)).toEqual([]);
    }
  }, 120_000);

  it('reads the same manifest skopeo reads from the daemon', async () => {
    const image = await buildFixtureImage(fixturePresets.dockerSchema2, {
      directory: path.join(directory, 'skopeo'),
    });
    const context = { transportOptions: { 'docker-daemon': { host: daemon.host } } };
    await copyImage(
      fixtureReference((reference) => createFixtureImageSource(image, reference)),
      dockerDaemonTransport.parseReference('example.com/skopeo:v2'),
      { policy: insecureAcceptAnythingPolicy(), destinationContext: context },
    );
    const { stdout } = await run('skopeo', [
      'inspect',
      '--raw',
      '--daemon-host',
      daemon.host,
      'docker-daemon:example.com/skopeo:v2',
    ]);
    const source = await dockerDaemonTransport
      .parseReference('example.com/skopeo:v2')
      .newImageSource(context);
    try {
      expect(Buffer.from((await source.getManifest()).bytes).toString('utf8')).toBe(stdout);
    } finally {
      await source.close();
    }
  }, 60_000);

  it('reads an image the daemon created itself (docker import / docker tag)', async () => {
    const tarball = path.join(directory, 'rootfs.tar');
    await import('node:child_process').then(({ execFileSync }) =>
      execFileSync('tar', ['-cf', tarball, '-C', path.join(directory, 'fixture'), '.']),
    );
    const id = (await daemon.docker('image', 'import', tarball, 'local/imported:1')).trim();
    const [inspected] = JSON.parse(await daemon.docker('image', 'inspect', 'local/imported:1')) as Array<{
      Id: string;
      RootFS: { Layers: string[] };
    }>;
    expect(inspected!.Id).toBe(id);
    const source = await dockerDaemonTransport
      .parseReference('local/imported:1')
      .newImageSource({ transportOptions: { 'docker-daemon': { host: daemon.host } } });
    try {
      const manifest = JSON.parse(Buffer.from((await source.getManifest()).bytes).toString('utf8'));
      expect(manifest.config.digest).toBe(id);
      expect(manifest.layers.map((layer: { digest: string }) => layer.digest)).toEqual(
        inspected!.RootFS.Layers,
      );
    } finally {
      await source.close();
    }
  }, 60_000);

  it('uses DOCKER_HOST when no host option is given, and negotiates the API version', async () => {
    const saved = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = daemon.host;
    try {
      expect(dockerHostOf({})).toBe(daemon.host);
      const client = new DockerEngineClient(dockerHostOf({}));
      try {
        const { stdout } = await run('docker', [
          '-H',
          daemon.host,
          'version',
          '--format',
          '{{.Server.APIVersion}}',
        ]);
        const serverVersion = stdout.trim();
        const expected =
          Number(serverVersion.split('.')[1]) < Number(maximumApiVersion.split('.')[1])
            ? serverVersion
            : maximumApiVersion;
        expect(await client.apiVersion()).toBe(expected);
      } finally {
        await client.close();
      }
      const source = await dockerDaemonTransport.parseReference('example.com/skopeo:v2').newImageSource();
      await source.close();
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
  }, 30_000);

  it('reports a missing image as ERR_GANTRY_IMAGE_NOT_FOUND', async () => {
    await expect(
      dockerDaemonTransport
        .parseReference('example.com/missing:v1')
        .newImageSource({ transportOptions: { 'docker-daemon': { host: daemon.host } } }),
    ).rejects.toMatchObject({ code: ErrorCodes.ImageNotFound });
  }, 30_000);

  it("turns an error in the daemon's load messages into a GantryError (and loads nothing)", async () => {
    const image = await buildFixtureImage(fixturePresets.dockerUncompressed, {
      directory: path.join(directory, 'uncompressed'),
    });
    const layerDigest = image.images[0]!.diffIds[0]!;
    const layer = image.blobs.get(layerDigest)!;
    // A config whose DiffID does not match the layer: docker load must refuse it.
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [`sha256:${'1'.repeat(64)}`] },
      }),
    );
    const configDigest = digestOf(config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.DockerManifest,
        config: { mediaType: MediaTypes.DockerConfig, digest: configDigest, size: config.length },
        layers: [{ mediaType: MediaTypes.DockerLayer, digest: layerDigest, size: layer.size }],
      }),
    );
    const destination = await dockerDaemonTransport
      .parseReference('example.com/broken:v1')
      .newImageDestination({ transportOptions: { 'docker-daemon': { host: daemon.host } } });
    try {
      await destination.putBlob(layer.open(), { digest: layerDigest, size: layer.size }, { isConfig: false });
      await destination.putBlob(
        Readable.from([config]),
        { digest: configDigest, size: config.length },
        { isConfig: true },
      );
      await destination.putManifest(manifest, MediaTypes.DockerManifest);
      const error = await destination.commit().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(GantryError);
      expect((error as Error).message).toMatch(
        /^docker daemon failed to load docker-daemon:example\.com\/broken:v1: invalid diffID for layer 0/,
      );
    } finally {
      await destination.close();
    }
    await expect(daemon.docker('image', 'inspect', 'example.com/broken:v1')).rejects.toThrow(/No such image/);
  }, 60_000);

  it('close() without commit, after a blob was streamed, loads nothing', async () => {
    const image = await buildFixtureImage(fixturePresets.dockerUncompressed, {
      directory: path.join(directory, 'abandon'),
    });
    const layerDigest = image.images[0]!.diffIds[0]!;
    const layer = image.blobs.get(layerDigest)!;
    const destination = await dockerDaemonTransport
      .parseReference('example.com/abandoned:v1')
      .newImageDestination({ transportOptions: { 'docker-daemon': { host: daemon.host } } });
    await destination.putBlob(layer.open(), { digest: layerDigest, size: layer.size }, { isConfig: false });
    await destination.close();
    await expect(daemon.docker('image', 'inspect', 'example.com/abandoned:v1')).rejects.toThrow(
      /No such image/,
    );
    expect(await daemon.docker('image', 'ls', '-q', '--all')).not.toContain('abandoned');
  }, 30_000);
});

describe('docker-daemon: without a daemon', () => {
  it('names the socket it tried', async () => {
    const socket = path.join(directory, 'nothing-here.sock');
    const error = await dockerDaemonTransport
      .parseReference('busybox:latest')
      .newImageSource({ transportOptions: { 'docker-daemon': { host: `unix://${socket}` } } })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(GantryError);
    expect((error as Error).message).toContain(`unix://${socket}`);
    expect((error as Error).message).toContain('Is the docker daemon running?');
  });
});
