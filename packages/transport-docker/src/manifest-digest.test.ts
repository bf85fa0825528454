import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fixturePresets } from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import { buildImage, dockerContext, pushFixture } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

describe('manifestDigest (one HEAD request)', () => {
  let registry: TestRegistry;
  let directory: string;

  beforeAll(async () => {
    registry = await startTestRegistry();
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  });

  afterAll(async () => {
    await registry?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  it('gives the digest a tag or digest names, undefined when there is none, with HEAD requests only', async () => {
    const context = dockerContext({ tlsVerify: false });
    const transport = createDockerTransport();
    try {
      const image = await buildImage(fixturePresets.dockerSchema2, path.join(directory, 'image'));
      const list = await buildImage(fixturePresets.multiArchOci, path.join(directory, 'list'));
      await (await pushFixture(transport, registry, 'heads/app:v1', image, context)).close();
      await (await pushFixture(transport, registry, 'heads/app:list', list, context)).close();
      registry.clearAccessLog();
      const at = (name: string) => transport.parseReference(`//${registry.host}/${name}`);
      expect(await transport.manifestDigest(at('heads/app:v1'), context)).toBe(image.topLevel.digest);
      expect(await transport.manifestDigest(at('heads/app:list'), context)).toBe(list.topLevel.digest);
      expect(await transport.manifestDigest(at(`heads/app@${image.topLevel.digest}`), context)).toBe(
        image.topLevel.digest,
      );
      expect(await transport.manifestDigest(at('heads/app:missing'), context)).toBeUndefined();
      expect(await transport.manifestDigest(at('heads/none:v1'), context)).toBeUndefined();
      const manifestRequests = (await registry.accessLog(300)).filter((entry) =>
        entry.path.includes('/manifests/'),
      );
      expect(manifestRequests.map((entry) => entry.method)).toEqual(['HEAD', 'HEAD', 'HEAD', 'HEAD', 'HEAD']);
    } finally {
      await transport.closeConnections();
    }
  }, 60_000);
});

describe('manifestHead with token authentication', () => {
  let registry: TestRegistry;

  beforeAll(async () => {
    registry = await startTestRegistry({ tokenAuth: { users: { erin: 'pw' } } });
  });

  afterAll(async () => {
    await registry?.stop();
  });

  it('checks of one context share one client per repository: one token, not one per check', async () => {
    const context = dockerContext({ tlsVerify: false, credentials: 'erin:pw' });
    const transport = createDockerTransport();
    try {
      const at = (name: string) => transport.parseReference(`//${registry.host}/${name}`);
      const tags = ['a', 'b', 'c', 'd', 'e'];
      for (const tag of tags) {
        expect(await transport.manifestHead(at(`tokens/app:${tag}`), context, 'pull')).toBeUndefined();
      }
      await Promise.all(tags.map((tag) => transport.manifestHead(at(`tokens/app:${tag}`), context, 'push')));
      expect(await transport.manifestHead(at('tokens/other:a'), context, 'pull')).toBeUndefined();
      const tokenScopes = registry.tokenServer!.requests.map((request) => request.scopes.join(' '));
      // One client (and token) for the checks of tokens/app, where a pull reads and where a push
      // would write alike (HEAD requests only read), one for tokens/other.
      expect(tokenScopes).toEqual(['repository:tokens/app:pull', 'repository:tokens/other:pull']);
      const manifestChecks = (await registry.accessLog(300)).filter(
        (entry) => entry.path.includes('/manifests/') && entry.status !== 401,
      );
      expect(manifestChecks).toHaveLength(2 * tags.length + 1);
    } finally {
      await transport.closeConnections();
    }
  }, 60_000);
});
