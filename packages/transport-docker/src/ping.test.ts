/**
 * How `RegistryClient.open` finds the scheme of a registry: HTTPS, and plain HTTP only when TLS
 * verification is off and HTTPS fails (containers/image's order), with both pings in flight at once
 * when verification is off. Real servers on 127.0.0.1: plain HTTP, HTTPS, and one port that speaks
 * both (a TLS handshake goes to the HTTPS server, anything else to the plain one), as some proxies do.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, createServer as createNetServer, type Server as NetServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient } from './registry-client.js';
import { generateTestTlsMaterial } from './testing/certificates.js';
import { dockerContext } from './testing/test-helpers.js';
import { createDockerTransportState } from './transport-state.js';

const answerV2: RequestListener = (request, response) => {
  response.setHeader('docker-distribution-api-version', 'registry/2.0');
  response.end(request.url === '/v2/' ? '{}' : '');
};

let directory: string;
let key: string;
let certificate: string;
const closers: Array<() => Promise<void>> = [];

function listen(server: Server | NetServer): Promise<string> {
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (typeof address !== 'object' || address === null) throw new Error('no address');
      closers.push(
        () =>
          new Promise((done) => {
            (server as Server).closeAllConnections?.();
            server.close(() => done());
          }),
      );
      resolve(`127.0.0.1:${address.port}`);
    });
  });
}

beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-ping-'));
  const material = await generateTestTlsMaterial(directory);
  key = await readFile(material.serverKeyPath, 'utf8');
  certificate = await readFile(material.serverCertificatePath, 'utf8');
});

afterAll(async () => {
  await Promise.all(closers.map((close) => close()));
  await rm(directory, { recursive: true, force: true });
});

/**
 * A port that speaks both: a connection opening with a TLS handshake record (0x16) is relayed to
 * `secure`, any other to `plain` (both listening on their own ports).
 */
function bothOn(plain: string, secure: string): NetServer {
  return createNetServer((socket) => {
    socket.once('data', (first) => {
      const [host, port] = (first[0] === 0x16 ? secure : plain).split(':');
      const backend = connect(Number(port), host!, () => {
        backend.write(first);
        socket.pipe(backend).pipe(socket);
      });
      backend.on('error', () => socket.destroy());
      socket.on('error', () => backend.destroy());
      socket.on('close', () => backend.destroy());
    });
  });
}

async function schemeOf(registry: string, tlsVerify: boolean): Promise<string> {
  const state = createDockerTransportState('gantry-test');
  try {
    const client = await RegistryClient.open(
      state,
      { registry, repository: 'a/b', actions: 'pull', role: 'source' },
      dockerContext({ tlsVerify, noCredentials: true }),
    );
    return new URL(client.origin).protocol;
  } finally {
    await state.pools.close();
  }
}

describe('RegistryClient.open: the scheme', () => {
  it('uses plain HTTP for a plain-HTTP registry when TLS verification is off, and refuses it otherwise', async () => {
    const registry = await listen(createHttpServer(answerV2));
    expect(await schemeOf(registry, false)).toBe('http:');
    await expect(schemeOf(registry, true)).rejects.toThrow(/does not speak TLS/);
  });

  it('uses HTTPS for an HTTPS registry with TLS verification off', async () => {
    const registry = await listen(createHttpsServer({ key, cert: certificate }, answerV2));
    expect(await schemeOf(registry, false)).toBe('https:');
  });

  it('prefers HTTPS when the port answers both, even when plain HTTP answers first or never', async () => {
    const plainRequests: string[] = [];
    // The plain side answers at once, the HTTPS side only after a while.
    const plain = createHttpServer((request, response) => {
      plainRequests.push(request.url ?? '');
      answerV2(request, response);
    });
    const secure = createHttpsServer({ key, cert: certificate }, (request, response) => {
      setTimeout(() => answerV2(request, response), 200);
    });
    const plainHost = await listen(plain);
    const secureHost = await listen(secure);
    const registry = await listen(bothOn(plainHost, secureHost));
    expect(await schemeOf(registry, false)).toBe('https:');
    expect(plainRequests).toEqual(['/v2/']);

    // A plain side that never answers: the ping still ends, over HTTPS.
    const silentBoth = bothOn(await listen(createHttpServer(() => {})), secureHost);
    expect(await schemeOf(await listen(silentBoth), false)).toBe('https:');
  });

  it('reports the HTTPS failure when neither scheme answers', async () => {
    const refusing = createNetServer((socket) => socket.destroy());
    const registry = await listen(refusing);
    await expect(schemeOf(registry, false)).rejects.toThrow(/pinging container registry/);
  });
});
