import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { loadUndiciDispatchers } from './undici-dispatchers.js';

describe('loadUndiciDispatchers', () => {
  it('gives pools, agents and proxy agents that can send requests', async () => {
    const { Agent, Pool, ProxyAgent } = loadUndiciDispatchers();
    for (const dispatcherClass of [Agent, Pool, ProxyAgent]) {
      expect(typeof dispatcherClass.prototype.request).toBe('function');
      expect(typeof dispatcherClass.prototype.close).toBe('function');
    }
    const server = createServer((request, response) => {
      response.setHeader('content-type', 'text/plain');
      response.end(`${request.method} ${request.url}`);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const pool = new Pool(origin, { connections: 2 });
    const agent = new Agent();
    try {
      const fromPool = await pool.request({ origin, path: '/v2/', method: 'GET' });
      expect(fromPool.statusCode).toBe(200);
      expect(await fromPool.body.text()).toBe('GET /v2/');
      const fromAgent = await agent.request({ origin, path: '/other', method: 'HEAD' });
      expect(fromAgent.statusCode).toBe(200);
      await fromAgent.body.dump();
    } finally {
      await pool.close();
      await agent.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
