import { execFileSync } from 'node:child_process';
import http, { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  loadUndiciDispatchers,
  nodeDefaultMaxHeaderSize,
  undiciMaxHeaderSize,
} from './undici-dispatchers.js';

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

describe('loadUndiciDispatchers: the agent and the proxy agent', () => {
  it('come with the whole request API on the dispatcher prototype (the proxy agent tunnels with connect)', () => {
    const dispatchers = loadUndiciDispatchers();
    const { Pool } = dispatchers;
    expect(typeof Pool.prototype.request).toBe('function');
    expect(typeof Pool.prototype.stream).toBe('function');
    const { ProxyAgent, Agent } = dispatchers;
    for (const method of ['request', 'stream', 'pipeline', 'upgrade', 'connect'] as const) {
      expect(typeof (ProxyAgent.prototype as unknown as Record<string, unknown>)[method]).toBe('function');
      expect(typeof (Pool.prototype as unknown as Record<string, unknown>)[method]).toBe('function');
    }
    // Loaded once: the same classes on every access.
    expect(dispatchers.ProxyAgent).toBe(ProxyAgent);
    expect(dispatchers.Agent).toBe(Agent);
  });
});

describe('undiciMaxHeaderSize', () => {
  it("is Node's default, unless Node's options may change it: then undici asks node:http", () => {
    expect(undiciMaxHeaderSize([], undefined)).toBe(nodeDefaultMaxHeaderSize);
    expect(undiciMaxHeaderSize(['--max-old-space-size=100'], '--enable-source-maps')).toBe(16384);
    expect(undiciMaxHeaderSize(['--max-http-header-size=65536'], undefined)).toBeUndefined();
    expect(undiciMaxHeaderSize([], '--max-http-header-size 65536')).toBeUndefined();
    expect(undiciMaxHeaderSize(['--experimental-config-file=node.config.json'], undefined)).toBeUndefined();
  });

  it('matches the value node:http gives this Node when no option changes it', () => {
    const value = undiciMaxHeaderSize();
    if (value !== undefined) expect(value).toBe(http.maxHeaderSize);
    expect(nodeDefaultMaxHeaderSize).toBe(
      Number(
        execFileSync(process.execPath, ['-p', 'require("node:http").maxHeaderSize'], {
          encoding: 'utf8',
          env: { ...process.env, NODE_OPTIONS: '' },
        }).trim(),
      ),
    );
  });

  it('keeps a request with a 20 KiB response header failing as with node:http’s default', async () => {
    const { Pool } = loadUndiciDispatchers();
    const server = createServer((_request, response) => {
      response.setHeader('x-large', 'a'.repeat(20 * 1024));
      response.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const pool = new Pool(origin, { maxHeaderSize: undiciMaxHeaderSize() });
    try {
      await expect(pool.request({ origin, path: '/', method: 'GET' })).rejects.toMatchObject({
        code: 'UND_ERR_HEADERS_OVERFLOW',
      });
    } finally {
      await pool.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
