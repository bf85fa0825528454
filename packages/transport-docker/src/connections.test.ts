import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { socketReadBuffers } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionPools, type TlsSettings } from './connections.js';

const plain: TlsSettings = { verify: false, extraCertificateAuthorities: [], fingerprint: 'plain' };
const body = Buffer.alloc(8 * 1024 * 1024);
for (let index = 0; index < body.length; index += 4) body.writeUInt32LE(index, index);

let server: Server;
let origin: string;

beforeAll(async () => {
  server = createServer((_request, response) => {
    response.writeHead(200, { 'content-length': String(body.length) });
    response.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

/** The body of a GET through `role`'s pool, chunk by chunk, each handed to `onChunk` as it comes. */
async function get(
  pools: ConnectionPools,
  role: string,
  onChunk: (chunk: Uint8Array) => void = () => {},
): Promise<Uint8Array[]> {
  const response = await pools.pool(origin, plain, role).request({ method: 'GET', path: '/blob' });
  const chunks: Uint8Array[] = [];
  // 'data' events hand on each chunk as parsed (an async iterator would join chunks buffered meanwhile).
  await new Promise<void>((resolve, reject) => {
    response.body.on('data', (chunk: Uint8Array) => {
      chunks.push(chunk);
      onChunk(chunk);
    });
    response.body.once('end', resolve);
    response.body.once('error', reject);
  });
  return chunks;
}

describe('ConnectionPools: pooled reads of plain-HTTP sources', () => {
  it("reads a source's responses into socketReadBuffers, whose buffers come back once released", async () => {
    const pools = new ConnectionPools({});
    try {
      const chunks = await get(pools, 'source');
      const all = Buffer.concat(chunks);
      expect(createHash('sha256').update(all).digest('hex')).toBe(
        createHash('sha256').update(body).digest('hex'),
      );
      // Views of the pool's buffers (fewer, larger chunks than Node's own 64 KiB reads).
      const buffers = new Set(chunks.map((chunk) => socketReadBuffers.bufferOf(chunk)));
      expect(buffers.has(undefined)).toBe(false);
      for (const buffer of buffers) expect(buffer!.byteLength).toBe(socketReadBuffers.size);
      for (const chunk of chunks) socketReadBuffers.release(chunk);
      // Every buffer that held body bytes only is read into again (the first also held the headers; the
      // socket's next read goes into the rest of the last).
      const taken = Array.from({ length: buffers.size }, () => socketReadBuffers.take());
      expect(buffers.size).toBeGreaterThan(4);
      expect(taken.filter((buffer) => buffers.has(buffer)).length).toBeGreaterThanOrEqual(
        Math.min(buffers.size - 2, socketReadBuffers.keep),
      );
    } finally {
      await pools.close();
    }
  });

  it('reads into the large buffers once the chunks read are handed back, and only then', async () => {
    const large = socketReadBuffers.large!;
    const pools = new ConnectionPools({});
    try {
      // Each chunk released as it comes (as a destination does once it wrote it): read before that.
      const hash = createHash('sha256');
      const bufferOf = new Map<Uint8Array, Buffer | undefined>();
      const released = await get(pools, 'source', (chunk) => {
        hash.update(chunk);
        bufferOf.set(chunk, socketReadBuffers.bufferOf(chunk));
        socketReadBuffers.release(chunk);
      });
      expect(hash.digest('hex')).toBe(createHash('sha256').update(body).digest('hex'));
      expect(bufferOf.get(released[0]!)!.byteLength).toBe(socketReadBuffers.size);
      const inLarge = released.filter((chunk) => bufferOf.get(chunk)?.byteLength === large.size);
      // Fewer, longer reads: most of the body went into large buffers, read into again and again.
      expect(inLarge.reduce((bytes, chunk) => bytes + chunk.byteLength, 0)).toBeGreaterThan(body.length / 2);
      expect(new Set(inLarge.map((chunk) => bufferOf.get(chunk))).size).toBeLessThanOrEqual(large.maxOut + 1);
      // Kept, never released: the connection's reads stay in small buffers.
      const kept = await get(pools, 'source');
      expect(Buffer.concat(kept).equals(body)).toBe(true);
      const keptInLarge = kept.filter(
        (chunk) => socketReadBuffers.bufferOf(chunk)?.byteLength === large.size,
      );
      expect(keptInLarge.length).toBeLessThanOrEqual(large.maxOut);
      expect(kept.length - keptInLarge.length).toBeGreaterThan(body.length / socketReadBuffers.size / 2);
    } finally {
      await pools.close();
    }
  });

  it("leaves a destination's connections to Node's own reads", async () => {
    const pools = new ConnectionPools({});
    try {
      const chunks = await get(pools, 'destination');
      expect(Buffer.concat(chunks).equals(body)).toBe(true);
      for (const chunk of chunks) expect(socketReadBuffers.bufferOf(chunk)).toBeUndefined();
    } finally {
      await pools.close();
    }
  });
});
