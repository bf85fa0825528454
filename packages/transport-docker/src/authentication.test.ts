import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { type FixtureImage, fixturePresets } from '@gantry/core/testing';
import { ErrorCodes } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTokenExpired, parseAuthChallenges, parseTokenResponse } from './authentication.js';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import { buildImage, digestStream, dockerContext, pushFixture } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

describe('parseAuthChallenges', () => {
  it('parses Bearer and Basic challenges with quoted and bare parameters', () => {
    expect(
      parseAuthChallenges(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"',
      ),
    ).toEqual([
      {
        scheme: 'bearer',
        parameters: {
          realm: 'https://auth.example/token',
          service: 'registry.example',
          scope: 'repository:a/b:pull,push',
        },
      },
    ]);
    expect(
      parseAuthChallenges(['Basic realm="Registry Realm"', 'Bearer realm=x, error=insufficient_scope']),
    ).toEqual([
      { scheme: 'basic', parameters: { realm: 'Registry Realm' } },
      { scheme: 'bearer', parameters: { realm: 'x', error: 'insufficient_scope' } },
    ]);
    expect(parseAuthChallenges('Basic realm="a \\"quoted\\" realm", Bearer realm="r"')).toEqual([
      { scheme: 'basic', parameters: { realm: 'a "quoted" realm' } },
      { scheme: 'bearer', parameters: { realm: 'r' } },
    ]);
    expect(parseAuthChallenges(undefined)).toEqual([]);
  });
});

describe('parseTokenResponse', () => {
  it('reads token or access_token, with at least 60 s of life from issued_at', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(
      parseTokenResponse(
        Buffer.from('{"token":"t","expires_in":300,"issued_at":"2026-01-01T00:00:00Z"}'),
        now,
      ),
    ).toEqual({
      token: 't',
      expiresAt: now + 300_000,
    });
    expect(parseTokenResponse(Buffer.from('{"access_token":"a","expires_in":5}'), now)).toEqual({
      token: 'a',
      expiresAt: now + 60_000,
    });
    expect(() => parseTokenResponse(Buffer.from('{}'), now)).toThrow(/no token/);
    expect(isTokenExpired({ token: 't', expiresAt: now + 5_000 }, now)).toBe(true);
    expect(isTokenExpired({ token: 't', expiresAt: now + 60_000 }, now)).toBe(false);
  });
});

describe('htpasswd Basic authentication over TLS (real registry)', () => {
  let registry: TestRegistry;
  let directory: string;
  let image: FixtureImage;
  const transport = createDockerTransport();

  beforeAll(async () => {
    registry = await startTestRegistry({
      tls: true,
      htpasswdUsers: { alice: 'wonder:land', bob: 'builder' },
    });
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
    image = await buildImage(fixturePresets.ociMinimal, path.join(directory, 'image'));
  });

  afterAll(async () => {
    await transport.closeConnections();
    await registry?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  const reference = (name: string) => transport.parseReference(`//${registry.host}/${name}`);

  it('pushes and pulls with --creds and the test CA as certificate directory', async () => {
    const context = dockerContext({
      certDirectory: registry.certificateDirectory!,
      credentials: 'alice:wonder:land',
    });
    await pushFixture(transport, registry, 'secure/app:v1', image, context);
    const source = await reference('secure/app:v1').newImageSource(context);
    expect(Buffer.from((await source.getManifest()).bytes).equals(Buffer.from(image.topLevel.bytes))).toBe(
      true,
    );
    const [first] = image.blobs.values();
    expect(
      (await digestStream((await source.getBlob({ digest: first!.digest, size: first!.size })).stream))
        .digest,
    ).toBe(first!.digest);
    await source.close();
  });

  it('finds credentials in an auth file, most specific namespace first', async () => {
    const authFile = path.join(directory, 'auth.json');
    const encode = (value: string) => Buffer.from(value).toString('base64');
    await writeFile(
      authFile,
      JSON.stringify({
        auths: {
          [`${registry.host}/secure`]: { auth: encode('bob:builder') },
          [registry.host]: { auth: encode('alice:wrong') },
        },
      }),
    );
    const context = dockerContext({ certDirectory: registry.certificateDirectory!, authFilePath: authFile });
    const source = await reference('secure/app:v1').newImageSource(context);
    await source.close();
    // Outside the namespace, the registry-wide (wrong) entry applies.
    await expect(reference('elsewhere/app:v1').newImageSource(context)).rejects.toMatchObject({
      code: ErrorCodes.Unauthorized,
    });
    // What a context found is kept for its operation (a sync opens clients for every image): the
    // same context still has the credentials after the file changed, a new context reads it again.
    await writeFile(
      authFile,
      JSON.stringify({ auths: { [registry.host]: { auth: encode('bob:changed') } } }),
    );
    await (await reference('secure/app:v1').newImageSource(context)).close();
    await expect(
      reference('secure/app:v1').newImageSource(
        dockerContext({ certDirectory: registry.certificateDirectory!, authFilePath: authFile }),
      ),
    ).rejects.toMatchObject({ code: ErrorCodes.Unauthorized });
  });

  it('refuses wrong or missing credentials with ERR_GANTRY_UNAUTHORIZED and a clear message, never showing them', async () => {
    const wrong = reference('secure/app:v1').newImageSource(
      dockerContext({ certDirectory: registry.certificateDirectory!, credentials: 'alice:not-the-password' }),
    );
    await expect(wrong).rejects.toMatchObject({
      code: ErrorCodes.Unauthorized,
      message: expect.stringMatching(
        new RegExp(`reading manifest v1 in ${registry.host}/secure/app: invalid username/password`),
      ),
    });
    await wrong.catch((error: Error) => expect(error.message).not.toContain('not-the-password'));
    const emptyAuthFile = path.join(directory, 'empty.json');
    await writeFile(emptyAuthFile, '{"auths":{}}');
    await expect(
      reference('secure/app:v1').newImageSource(
        dockerContext({ certDirectory: registry.certificateDirectory!, authFilePath: emptyAuthFile }),
      ),
    ).rejects.toMatchObject({
      code: ErrorCodes.Unauthorized,
      message: expect.stringContaining('no credentials found'),
    });
  });

  it('checks login credentials (login)', async () => {
    await transport.checkLogin(
      registry.host,
      dockerContext({ certDirectory: registry.certificateDirectory!, credentials: 'bob:builder' }),
    );
    await expect(
      transport.checkLogin(
        `${registry.host}/some/namespace`,
        dockerContext({ certDirectory: registry.certificateDirectory!, credentials: 'bob:nope' }),
      ),
    ).rejects.toMatchObject({
      code: ErrorCodes.Unauthorized,
      message: expect.stringContaining(`logging in to ${registry.host}: invalid username/password`),
    });
    await expect(transport.checkLogin('not a host', dockerContext({}))).rejects.toMatchObject({
      code: ErrorCodes.InvalidReference,
    });
  });

  it('fetches foreign-layer URLs without credentials, falling back to the registry', async () => {
    const context = dockerContext({
      certDirectory: registry.certificateDirectory!,
      credentials: 'bob:builder',
    });
    const [blob] = image.blobs.values();
    const seenAuthorization: Array<string | undefined> = [];
    const server = createServer((request, response) => {
      seenAuthorization.push(request.headers.authorization);
      if (request.url === '/layer') {
        response.writeHead(302, { location: '/stored-layer' }).end();
        return;
      }
      response.writeHead(200, { 'content-length': String(blob!.size) });
      blob!.open().pipe(response);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const source = await reference('secure/app:v1').newImageSource(context);
      const external = await source.getBlob({
        digest: blob!.digest,
        size: blob!.size,
        urls: ['ftp://skipped', `http://127.0.0.1:${port}/layer`],
      });
      expect(await digestStream(external.stream)).toEqual({ digest: blob!.digest, size: blob!.size });
      expect(seenAuthorization).toEqual([undefined, undefined]);
      // A URL on the registry itself gets no credentials either (401), then the registry is asked properly.
      registry.clearAccessLog();
      const fallback = await source.getBlob({
        digest: blob!.digest,
        size: blob!.size,
        urls: [`${registry.url}/v2/secure/app/blobs/${blob!.digest}`],
      });
      expect((await digestStream(fallback.stream)).digest).toBe(blob!.digest);
      expect((await registry.accessLog()).map((entry) => `${entry.method} ${entry.status}`)).toEqual([
        'GET 401',
        'GET 200',
      ]);
      await source.close();
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('verifies the server certificate unless told not to', async () => {
    await expect(
      reference('secure/app:v1').newImageSource(dockerContext({ credentials: 'alice:wonder:land' })),
    ).rejects.toMatchObject({
      message: expect.stringContaining('TLS certificate verification failed'),
    });
    const insecure = await reference('secure/app:v1').newImageSource(
      dockerContext({ tlsVerify: false, credentials: 'bob:builder' }),
    );
    await insecure.close();
  });
});

describe('token authentication (real registry, test token server)', () => {
  let registry: TestRegistry;
  let directory: string;
  let image: FixtureImage;

  beforeAll(async () => {
    registry = await startTestRegistry({
      tokenAuth: {
        users: { carol: 'secret' },
        refreshTokens: { 'carol-refresh-token': 'carol' },
        anonymousActions: ['pull'],
      },
    });
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
    image = await buildImage(fixturePresets.ociMinimal, path.join(directory, 'image'));
  });

  afterAll(async () => {
    await registry?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  const context = dockerContext({ tlsVerify: false, credentials: 'carol:secret' });

  it('pushes with a token per scope set, cached across requests', async () => {
    const transport = createDockerTransport();
    try {
      registry.tokenServer!.requests.length = 0;
      await pushFixture(transport, registry, 'tokens/app:v1', image, context);
      const requests = registry.tokenServer!.requests;
      expect(requests).toEqual([
        {
          method: 'GET',
          user: 'carol',
          refused: false,
          scopes: ['repository:tokens/app:pull,push'],
          service: 'gantry-test-registry',
        },
      ]);
      const source = await transport
        .parseReference(`//${registry.host}/tokens/app:v1`)
        .newImageSource(context);
      expect(Buffer.from((await source.getManifest()).bytes).equals(Buffer.from(image.topLevel.bytes))).toBe(
        true,
      );
      await source.close();
      expect(requests.at(-1)!.scopes).toEqual(['repository:tokens/app:pull']);
    } finally {
      await transport.closeConnections();
    }
  });

  it('mounts across repositories with a token widened to the source repository', async () => {
    const transport = createDockerTransport();
    try {
      const source = await transport
        .parseReference(`//${registry.host}/tokens/app:v1`)
        .newImageSource(context);
      const destination = await transport
        .parseReference(`//${registry.host}/tokens/mounted:v1`)
        .newImageDestination(context);
      registry.tokenServer!.requests.length = 0;
      registry.clearAccessLog();
      for (const blob of image.blobs.values()) {
        expect(
          (
            await destination.tryReusingBlob!(
              { digest: blob.digest, size: blob.size },
              { isConfig: false, canSubstitute: true },
            )
          ).reused,
        ).toBe(true);
      }
      await destination.putManifest(image.topLevel.bytes, image.topLevel.mediaType);
      await destination.commit();
      await destination.close();
      await source.close();
      expect(registry.tokenServer!.requests.map((request) => request.scopes)).toContainEqual([
        'repository:tokens/app:pull',
        'repository:tokens/mounted:pull,push',
      ]);
      const log = await registry.accessLog();
      expect(log.filter((entry) => entry.method === 'POST' && entry.status === 201).length).toBe(
        image.blobs.size,
      );
      expect(log.filter((entry) => entry.method === 'PATCH')).toEqual([]);
    } finally {
      await transport.closeConnections();
    }
  });

  it('reads anonymously with an anonymous token, and refuses an anonymous push', async () => {
    const transport = createDockerTransport();
    try {
      const anonymous = dockerContext({ tlsVerify: false, noCredentials: true });
      const source = await transport
        .parseReference(`//${registry.host}/tokens/app:v1`)
        .newImageSource(anonymous);
      await source.close();
      expect(registry.tokenServer!.requests.at(-1)).toMatchObject({
        user: undefined,
        scopes: ['repository:tokens/app:pull'],
      });
      const destination = await transport
        .parseReference(`//${registry.host}/tokens/anonymous:v1`)
        .newImageDestination(anonymous);
      await expect(
        destination.putManifest(image.topLevel.bytes, image.topLevel.mediaType),
      ).rejects.toMatchObject({
        code: ErrorCodes.Unauthorized,
      });
      await destination.close();
    } finally {
      await transport.closeConnections();
    }
  });

  it('reports refused credentials from the token server as ERR_GANTRY_UNAUTHORIZED', async () => {
    const transport = createDockerTransport();
    try {
      const wrong = transport
        .parseReference(`//${registry.host}/tokens/app:v1`)
        .newImageSource(dockerContext({ tlsVerify: false, credentials: 'carol:guess' }));
      await expect(wrong).rejects.toMatchObject({
        code: ErrorCodes.Unauthorized,
        message: expect.stringMatching(
          /requesting a bearer token for .*: invalid username\/password: unauthorized: invalid username or password/,
        ),
      });
      await wrong.catch((error: Error) => expect(error.message).not.toContain('guess'));
    } finally {
      await transport.closeConnections();
    }
  });

  it('checks login credentials through the token server (login)', async () => {
    const transport = createDockerTransport();
    try {
      await transport.checkLogin(registry.host, context);
      expect(registry.tokenServer!.requests.at(-1)).toMatchObject({ user: 'carol', scopes: [] });
      await expect(
        transport.checkLogin(registry.host, dockerContext({ tlsVerify: false, credentials: 'carol:nope' })),
      ).rejects.toMatchObject({
        code: ErrorCodes.Unauthorized,
      });
    } finally {
      await transport.closeConnections();
    }
  });

  it('uses an identity token from the auth file with the OAuth2 refresh-token grant', async () => {
    const transport = createDockerTransport();
    try {
      const authFile = path.join(directory, 'identity.json');
      await writeFile(
        authFile,
        JSON.stringify({
          auths: {
            [registry.host]: {
              auth: Buffer.from('<token>:').toString('base64'),
              identitytoken: 'carol-refresh-token',
            },
          },
        }),
      );
      const context = dockerContext({ tlsVerify: false, authFilePath: authFile });
      await pushFixture(transport, registry, 'tokens/identity:v1', image, context);
      expect(registry.tokenServer!.requests.at(-1)).toMatchObject({
        method: 'POST',
        user: 'carol',
        refused: false,
        scopes: ['repository:tokens/identity:pull,push'],
        service: 'gantry-test-registry',
      });
      await writeFile(
        authFile,
        JSON.stringify({
          auths: {
            [registry.host]: { auth: Buffer.from('<token>:').toString('base64'), identitytoken: 'revoked' },
          },
        }),
      );
      // A new context: one reads the auth files once for a while (see context-memo.ts).
      const revoked = transport
        .parseReference(`//${registry.host}/tokens/identity:v1`)
        .newImageSource(dockerContext({ tlsVerify: false, authFilePath: authFile }));
      await expect(revoked).rejects.toMatchObject({
        code: ErrorCodes.Unauthorized,
        message: expect.stringContaining('the identity token was refused'),
      });
      // The token server's own words follow; Gantry's do not speak of a username/password.
      await revoked.catch((error: Error) => expect(error.message).not.toContain('invalid username/password'));
    } finally {
      await transport.closeConnections();
    }
  });

  it('lists the catalog with a registry:catalog:* token', async () => {
    const transport = createDockerTransport();
    try {
      expect(await transport.listRepositories(registry.host, context)).toEqual(
        expect.arrayContaining(['tokens/app']),
      );
      expect(registry.tokenServer!.requests.at(-1)).toMatchObject({
        user: 'carol',
        scopes: ['registry:catalog:*'],
      });
    } finally {
      await transport.closeConnections();
    }
  });

  it('uses a registry token as is (--registry-token); a refused one is named, not called a password', async () => {
    const transport = createDockerTransport();
    try {
      const bogus = transport
        .parseReference(`//${registry.host}/tokens/app:v1`)
        .newImageSource(dockerContext({ tlsVerify: false, registryToken: 'not-a-jwt' }));
      await expect(bogus).rejects.toMatchObject({
        code: ErrorCodes.Unauthorized,
        message: expect.stringContaining(
          `reading manifest v1 in ${registry.host}/tokens/app: the registry token was refused: unauthorized`,
        ),
      });
      await bogus.catch((error: Error) => expect(error.message).not.toMatch(/username|password/));
      const listing = transport.listTags(
        `//${registry.host}/tokens/app`,
        dockerContext({ tlsVerify: false, registryToken: 'not-a-jwt' }),
      );
      await expect(listing).rejects.toMatchObject({
        code: ErrorCodes.Unauthorized,
        message: expect.stringContaining('the registry token was refused'),
      });
    } finally {
      await transport.closeConnections();
    }
  });
});

describe('client certificates from the certificate directory (real registry requiring them)', () => {
  let registry: TestRegistry;
  let directory: string;

  beforeAll(async () => {
    registry = await startTestRegistry({ tls: true, requireClientCertificate: true });
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  });

  afterAll(async () => {
    await registry?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  it('presents client.cert / client.key, and fails without them', async () => {
    const transport = createDockerTransport();
    try {
      const image = await buildImage(fixturePresets.ociMinimal, path.join(directory, 'image'));
      await pushFixture(
        transport,
        registry,
        'mtls/app:v1',
        image,
        dockerContext({ certDirectory: registry.certificateDirectory! }),
      );
      const onlyCa = path.join(directory, 'only-ca');
      await mkdir(onlyCa);
      await copyFile(path.join(registry.certificateDirectory!, 'ca.crt'), path.join(onlyCa, 'ca.crt'));
      await expect(
        transport
          .parseReference(`//${registry.host}/mtls/app:v1`)
          .newImageSource(dockerContext({ certDirectory: onlyCa })),
      ).rejects.toMatchObject({
        message: expect.stringContaining(`pinging container registry ${registry.host}`),
      });
      const keyWithoutCertificate = path.join(directory, 'key-only');
      await mkdir(keyWithoutCertificate);
      await copyFile(
        path.join(registry.certificateDirectory!, 'client.key'),
        path.join(keyWithoutCertificate, 'client.key'),
      );
      await expect(
        transport
          .parseReference(`//${registry.host}/mtls/app:v1`)
          .newImageSource(dockerContext({ certDirectory: keyWithoutCertificate })),
      ).rejects.toThrow(/missing client certificate client.cert for key client.key/);
    } finally {
      await transport.closeConnections();
    }
  });
});
