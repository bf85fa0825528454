import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import { buildFixtureImage, createFixtureImageSource, fixturePresets } from '@gantry/core/testing';
import { ErrorCodes, GantryError } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerEngineClient, dockerTlsSettingsOf } from './client.js';
import { type DockerTlsMaterial, generateDockerTlsMaterial } from './test-support/certificates.js';
import { startTestDockerDaemon, type TestDockerDaemon } from './test-support/dockerd.js';
import { fixtureReference } from './test-support/fixture-reference.js';
import { dockerDaemonTransport } from './transport.js';

const environmentNames = ['DOCKER_HOST', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH'] as const;

/** Runs `body` with the given docker environment variables (others of the three unset), then restores them. */
async function withDockerEnvironment<T>(
  values: Partial<Record<(typeof environmentNames)[number], string>>,
  body: () => Promise<T>,
): Promise<T> {
  const saved = Object.fromEntries(environmentNames.map((name) => [name, process.env[name]]));
  for (const name of environmentNames) {
    const value = values[name];
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  try {
    return await body();
  } finally {
    for (const name of environmentNames) {
      const value = saved[name];
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

let daemon: TestDockerDaemon;
let directory: string;
let material: DockerTlsMaterial;
let tcpHost: string;

beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  await mkdir(path.join(directory, 'certificates'));
  material = await generateDockerTlsMaterial(path.join(directory, 'certificates'));
  daemon = await startTestDockerDaemon(60_000, { tls: material });
  tcpHost = daemon.tcpHost as string;
}, 90_000);

afterAll(async () => {
  await daemon?.stop();
  if (directory) await rm(directory, { recursive: true, force: true });
}, 30_000);

describe('docker-daemon over TLS (real dockerd --tlsverify)', () => {
  it('copies an image in and reads it back with DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH', async () => {
    const image = await buildFixtureImage(fixturePresets.dockerSchema2, {
      directory: path.join(directory, 'fixture'),
    });
    const fixture = image.images[0]!;
    await withDockerEnvironment(
      { DOCKER_HOST: tcpHost, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: material.clientDirectory },
      async () => {
        await copyImage(
          fixtureReference((reference) => createFixtureImageSource(image, reference)),
          dockerDaemonTransport.parseReference('example.com/tls:v1'),
          { policy: insecureAcceptAnythingPolicy(), destinationContext: {} },
        );
        const source = await dockerDaemonTransport.parseReference('example.com/tls:v1').newImageSource({});
        try {
          expect(source.reference.stringWithinTransport()).toBe('example.com/tls:v1');
          const manifest = JSON.parse(Buffer.from((await source.getManifest()).bytes).toString('utf8'));
          expect(manifest.config.digest).toBe(fixture.configDigest);
          expect(manifest.layers.map((layer: { digest: string }) => layer.digest)).toEqual(fixture.diffIds);
        } finally {
          await source.close();
        }
      },
    );
    const [inspected] = JSON.parse(await daemon.docker('image', 'inspect', 'example.com/tls:v1')) as Array<{
      Id: string;
    }>;
    expect(inspected!.Id).toBe(fixture.configDigest);
  }, 120_000);

  it('takes tlsVerify and certPath from transportOptions, overriding the environment', async () => {
    await withDockerEnvironment({ DOCKER_CERT_PATH: material.caOnlyDirectory }, async () => {
      const options = { host: tcpHost, tlsVerify: true, certPath: material.clientDirectory };
      const settings = dockerTlsSettingsOf({ transportOptions: { 'docker-daemon': options } });
      expect(settings).toEqual({ verify: true, certPath: material.clientDirectory });
      const client = new DockerEngineClient(tcpHost, settings);
      try {
        expect(client.tls).toBe(true);
        expect(await client.apiVersion()).toMatch(/^1\.\d+$/);
      } finally {
        await client.close();
      }
    });
  }, 30_000);

  it('without a client certificate the daemon refuses the connection, with an error naming the host', async () => {
    const client = new DockerEngineClient(tcpHost, { verify: true, certPath: material.caOnlyDirectory });
    try {
      const error = await client.apiVersion().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(GantryError);
      expect((error as GantryError).code).toBe(ErrorCodes.Transient);
      expect((error as GantryError).message).toContain(`Cannot connect to the Docker daemon at ${tcpHost}`);
      expect((error as GantryError).message).toContain('TLS');
    } finally {
      await client.destroy();
    }
  }, 30_000);

  it('a tcp:// host without DOCKER_TLS_VERIFY is plain HTTP, which the TLS daemon does not answer', async () => {
    await withDockerEnvironment({ DOCKER_HOST: tcpHost }, async () => {
      const client = new DockerEngineClient(tcpHost);
      try {
        expect(client.tls).toBe(false);
        const error = await client.apiVersion().catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(GantryError);
        expect((error as GantryError).message).toContain(tcpHost);
      } finally {
        await client.destroy();
      }
    });
  }, 30_000);

  it('a missing certificate file is an error naming the file', async () => {
    const empty = path.join(directory, 'empty-cert-path');
    await mkdir(empty);
    const caught = (() => {
      try {
        new DockerEngineClient(tcpHost, { verify: true, certPath: empty });
        return undefined;
      } catch (error) {
        return error;
      }
    })();
    expect(caught).toBeInstanceOf(GantryError);
    expect((caught as GantryError).code).toBe(ErrorCodes.Usage);
    expect((caught as GantryError).message).toContain(path.join(empty, 'ca.pem'));

    await withDockerEnvironment(
      { DOCKER_HOST: tcpHost, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: empty },
      async () => {
        const error = await dockerDaemonTransport
          .parseReference('example.com/tls:v1')
          .newImageSource({})
          .catch((thrown: unknown) => thrown);
        expect(error).toBeInstanceOf(GantryError);
        expect((error as GantryError).message).toContain(path.join(empty, 'ca.pem'));
      },
    );

    const certificateOnly = path.join(directory, 'certificate-without-key');
    await mkdir(certificateOnly);
    await copyFile(path.join(material.clientDirectory, 'ca.pem'), path.join(certificateOnly, 'ca.pem'));
    await copyFile(path.join(material.clientDirectory, 'cert.pem'), path.join(certificateOnly, 'cert.pem'));
    expect(() => new DockerEngineClient(tcpHost, { verify: true, certPath: certificateOnly })).toThrow(
      path.join(certificateOnly, 'key.pem'),
    );
  }, 30_000);
});
