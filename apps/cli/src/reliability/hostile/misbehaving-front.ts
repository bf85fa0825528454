/**
 * A small HTTP(S) server in front of the real test registry that forwards every request unchanged
 * unless a rule answers it instead: the registry misbehaving on purpose (wrong manifest, wrong blob
 * bytes, redirects, huge error bodies). Started on 127.0.0.1 on a free port; `stop()` closes it.
 */
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  request,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

/** Answers a request itself; returns false to let it through to the registry. */
export type FrontRule = (incoming: IncomingMessage, response: ServerResponse) => boolean | Promise<boolean>;

export interface MisbehavingFront {
  /** `127.0.0.1:<port>`. */
  host: string;
  /** Tried in order for every request; add and remove them while the front runs. */
  rules: FrontRule[];
  stop(): Promise<void>;
}

export async function startMisbehavingFront(
  registryHost: string,
  tls?: { certificatePath: string; keyPath: string },
): Promise<MisbehavingFront> {
  const rules: FrontRule[] = [];
  const [registryHostname, registryPort] = registryHost.split(':') as [string, string];
  const handler = async (incoming: IncomingMessage, response: ServerResponse) => {
    for (const rule of rules) {
      if (await rule(incoming, response)) return;
    }
    const forwarded = request(
      {
        host: registryHostname,
        port: Number(registryPort),
        method: incoming.method,
        path: incoming.url,
        headers: incoming.headers,
      },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    forwarded.on('error', () => response.destroy());
    incoming.pipe(forwarded);
  };
  const server = tls
    ? createHttpsServer({ cert: readFileSync(tls.certificatePath), key: readFileSync(tls.keyPath) }, handler)
    : createHttpServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    rules,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Reads a forwarded answer from the registry itself (for rules that alter what the registry says). */
export function fetchFromRegistry(
  registryHost: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  const [hostname, port] = registryHost.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const outgoing = request({ host: hostname, port: Number(port), method, path, headers }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on('data', (chunk: Buffer) => chunks.push(chunk));
      answer.on('end', () =>
        resolve({ status: answer.statusCode ?? 0, headers: answer.headers, body: Buffer.concat(chunks) }),
      );
      answer.on('error', reject);
    });
    outgoing.on('error', reject);
    outgoing.end();
  });
}
