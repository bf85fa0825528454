import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { type FixtureImage, fixturePresets } from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { proxyForUrl } from './connections.js';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import { buildImage, digestStream, dockerContext, pushFixture } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

describe('proxyForUrl (Go httpproxy rules)', () => {
  const environment = {
    HTTPS_PROXY: 'proxy.local:3128',
    HTTP_PROXY: 'http://plain-proxy:8080',
    NO_PROXY: 'internal.example, .corp,10.1.2.3, reg.example:5000',
  };
  const proxy = (url: string, env: Record<string, string> = environment) => proxyForUrl(new URL(url), env);

  it('picks the variable for the scheme and adds http:// to bare values', () => {
    expect(proxy('https://quay.io/v2/')).toBe('http://proxy.local:3128');
    expect(proxy('http://quay.io/v2/')).toBe('http://plain-proxy:8080');
    expect(proxy('https://quay.io/v2/', { https_proxy: 'http://lower:1' })).toBe('http://lower:1');
    expect(proxy('https://quay.io/v2/', {})).toBeUndefined();
  });

  it('never proxies loopback and honours NO_PROXY', () => {
    expect(proxy('https://localhost:5000/v2/')).toBeUndefined();
    expect(proxy('https://127.0.0.1:5000/v2/')).toBeUndefined();
    expect(proxy('https://[::1]:5000/v2/')).toBeUndefined();
    expect(proxy('https://internal.example/v2/')).toBeUndefined();
    expect(proxy('https://a.internal.example/v2/')).toBeUndefined();
    expect(proxy('https://notinternal.example/v2/')).toBe('http://proxy.local:3128');
    expect(proxy('https://x.corp/v2/')).toBeUndefined();
    expect(proxy('https://corp/v2/')).toBe('http://proxy.local:3128');
    expect(proxy('https://10.1.2.3/v2/')).toBeUndefined();
    expect(proxy('https://reg.example:5000/v2/')).toBeUndefined();
    expect(proxy('https://reg.example/v2/')).toBe('http://proxy.local:3128');
    expect(proxy('https://quay.io/v2/', { ...environment, NO_PROXY: '*' })).toBeUndefined();
  });
});

describe('registry access through an HTTP CONNECT proxy (real registry)', () => {
  let registry: TestRegistry;
  let proxyServer: Server;
  let proxyUrl: string;
  let directory: string;
  let image: FixtureImage;
  const tunnels: string[] = [];
  const savedEnvironment = { ...process.env };

  beforeAll(async () => {
    registry = await startTestRegistry();
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
    image = await buildImage(fixturePresets.ociMinimal, path.join(directory, 'image'));
    // The proxy resolves the made-up host name registry.test to the test registry.
    proxyServer = createServer((_request, response) => response.writeHead(405).end());
    proxyServer.on('connect', (request, clientSocket: Socket, head: Buffer) => {
      const target = request.url ?? '';
      tunnels.push(target);
      const [host, port] = target.split(':');
      const upstream = connect(Number(port), host === 'registry.test' ? '127.0.0.1' : host!, () => {
        clientSocket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(clientSocket);
        clientSocket.pipe(upstream);
      });
      upstream.on('error', () => clientSocket.destroy());
      clientSocket.on('error', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxyServer.listen(0, '127.0.0.1', resolve));
    proxyUrl = `http://127.0.0.1:${(proxyServer.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    process.env = savedEnvironment;
    proxyServer?.closeAllConnections();
    await new Promise((resolve) => proxyServer?.close(resolve));
    await registry?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  it('pushes and pulls through HTTPS_PROXY / HTTP_PROXY, and goes direct for NO_PROXY hosts', async () => {
    process.env.HTTPS_PROXY = proxyUrl;
    process.env.HTTP_PROXY = proxyUrl;
    delete process.env.NO_PROXY;
    delete process.env.no_proxy;
    const transport = createDockerTransport();
    const host = `registry.test:${registry.port}`;
    const context = dockerContext({ tlsVerify: false });
    try {
      await pushFixture(transport, { ...registry, host }, 'proxied/app:v1', image, context);
      const source = await transport.parseReference(`//${host}/proxied/app:v1`).newImageSource(context);
      const [blob] = image.blobs.values();
      expect(
        (await digestStream((await source.getBlob({ digest: blob!.digest, size: blob!.size })).stream))
          .digest,
      ).toBe(blob!.digest);
      await source.close();
      expect(tunnels.length).toBeGreaterThan(0);
      expect(new Set(tunnels)).toEqual(new Set([host]));
    } finally {
      await transport.closeConnections();
    }
    process.env.NO_PROXY = 'registry.test';
    const direct = createDockerTransport();
    tunnels.length = 0;
    try {
      // registry.test does not resolve without the proxy.
      await expect(direct.parseReference(`//${host}/proxied/app:v1`).newImageSource(context)).rejects.toThrow(
        /ENOTFOUND|EAI_AGAIN|getaddrinfo/,
      );
      expect(tunnels).toEqual([]);
    } finally {
      await direct.closeConnections();
    }
  });
});
