import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A fault to inject into matching responses. */
export interface ResponseFault {
  /** Which requests it applies to. */
  matches(method: string, path: string): boolean;
  /** Cut the connection after sending this many body bytes. */
  cutAfterBytes: number;
  /** How many matching responses to break (then requests pass untouched). */
  times: number;
}

/** An error answer to give instead of forwarding matching requests. */
export interface StatusFault {
  matches(method: string, path: string): boolean;
  status: number;
  headers?: Record<string, string>;
  /** How many matching requests get the error. */
  times: number;
}

/** One request seen by the proxy. */
export interface ProxiedRequest {
  method: string;
  path: string;
  range: string | undefined;
  status: number;
  /** True when the proxy cut the response. */
  cut: boolean;
}

export interface FaultProxy {
  /** `127.0.0.1:<port>`: use it as the registry host in references. */
  host: string;
  requests: ProxiedRequest[];
  faults: ResponseFault[];
  statusFaults: StatusFault[];
  stop(): Promise<void>;
}

/**
 * Starts a plain-HTTP proxy on 127.0.0.1 in front of a plain-HTTP registry (`target`, `host:port`)
 * that forwards every request unchanged (Host included, so the registry's upload locations point
 * at the proxy) and can break responses: send the status, headers and the first bytes of the body,
 * then destroy the connection — a connection reset mid-download; or answer with an error status
 * (500, 503, 429 with `Retry-After`…) without asking the registry.
 */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const [targetHost, targetPort] = target.split(':') as [string, string];
  const requests: ProxiedRequest[] = [];
  const faults: ResponseFault[] = [];
  const statusFaults: StatusFault[] = [];
  const server: Server = createServer((incoming, outgoing) => {
    const method = incoming.method ?? 'GET';
    const path = incoming.url ?? '/';
    const statusFault = statusFaults.find(
      (candidate) => candidate.times > 0 && candidate.matches(method, path),
    );
    if (statusFault) {
      statusFault.times--;
      requests.push({ method, path, range: incoming.headers.range, status: statusFault.status, cut: false });
      incoming.resume();
      incoming.on('end', () => {
        outgoing.writeHead(statusFault.status, {
          'content-type': 'application/json',
          ...statusFault.headers,
        });
        outgoing.end(
          JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'injected by the test proxy' }] }),
        );
      });
      return;
    }
    const forwarded = httpRequest(
      { host: targetHost, port: Number(targetPort), method, path, headers: incoming.headers },
      (answer: IncomingMessage) => {
        const fault = faults.find((candidate) => candidate.times > 0 && candidate.matches(method, path));
        const record: ProxiedRequest = {
          method,
          path,
          range: incoming.headers.range,
          status: answer.statusCode ?? 0,
          cut: fault !== undefined,
        };
        requests.push(record);
        outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
        if (!fault) {
          answer.pipe(outgoing);
          return;
        }
        fault.times--;
        let sent = 0;
        answer.on('data', (chunk: Buffer) => {
          if (sent >= fault.cutAfterBytes) return;
          const part = chunk.subarray(0, fault.cutAfterBytes - sent);
          sent += part.byteLength;
          outgoing.write(part);
          if (sent >= fault.cutAfterBytes) {
            answer.destroy();
            // Let the bytes leave, then reset the connection.
            setTimeout(() => outgoing.socket?.destroy(), 20);
          }
        });
      },
    );
    forwarded.on('error', () => outgoing.socket?.destroy());
    incoming.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    faults,
    statusFaults,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
