import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
} from 'node:http';
import type { AddressInfo } from 'node:net';

/** A fault to inject into matching responses. */
export interface ResponseFault {
  /** Which requests it applies to. */
  matches(method: string, path: string): boolean;
  /** Cut the connection after sending this many body bytes. */
  cutAfterBytes: number;
  /** How many matching responses to break (then requests pass untouched). */
  times: number;
  /**
   * Instead of cutting, stall: send nothing more and keep the connection open until the client gives
   * up (or the proxy stops) — a response that hangs mid-body.
   */
  stall?: boolean;
  /** Called once the response reached `cutAfterBytes` (e.g. to restart the registry then). */
  onReached?: () => void;
}

/** An error answer to give instead of forwarding matching requests. */
export interface StatusFault {
  /** Which requests it applies to; `headers` are the request's (e.g. to match a PATCH without `Content-Range`). */
  matches(method: string, path: string, headers: IncomingHttpHeaders): boolean;
  status: number;
  headers?: Record<string, string>;
  /** How many matching requests get the error. */
  times: number;
  /** The answer's body; default a Distribution error body with code `UNAVAILABLE`. */
  body?: string;
  /**
   * Answer as soon as the request's headers arrived, before reading its body (the rest of the body
   * is then read and discarded), as a registry refusing a request for its headers does. Default:
   * answer after the whole body.
   */
  immediate?: boolean;
  /** Never answer (the request's body is read and discarded): a server that hangs before its headers. */
  hang?: boolean;
}

/** Request headers to set (or replace) before forwarding matching requests, e.g. an expired token. */
export interface RequestHeaderFault {
  matches(method: string, path: string, headers: IncomingHttpHeaders): boolean;
  /** The headers to set, or a function of the request's headers giving them. */
  set: Record<string, string> | ((headers: IncomingHttpHeaders) => Record<string, string>);
  /** How many matching requests get them. */
  times: number;
}

/** Calls `onReached` once a matching request's body passed `afterBodyBytes` (forwarded untouched). */
export interface RequestWatch {
  matches(method: string, path: string, headers: IncomingHttpHeaders): boolean;
  afterBodyBytes: number;
  onReached: () => void;
  /** How many matching requests are watched. */
  times: number;
}

/**
 * A request whose body is cut: the first `cutAfterBytes` body bytes reach the registry, then both
 * connections (client → proxy, proxy → registry) are destroyed — a connection dropped mid-upload.
 * With `buffered`, the proxy holds each request's body until it is complete before forwarding it (as
 * nginx's default `proxy_request_buffering on`), so a cut request never reaches the registry.
 */
export interface RequestFault {
  buffered?: boolean;
  matches(method: string, path: string, headers: IncomingHttpHeaders): boolean;
  /** Body bytes let through, or a function of the request's headers giving them. */
  cutAfterBytes: number | ((headers: IncomingHttpHeaders) => number);
  /** How many matching requests are cut. */
  times: number;
  /**
   * Pass-through mode: awaited after the bytes before the cut were handed to the registry and before
   * both connections drop (default: 50 ms), e.g. to wait until the registry has stored them.
   */
  beforeCut?: () => Promise<void>;
}

/** Headers to add to the registry's answers to matching requests (e.g. `OCI-Chunk-Min-Length` to POSTs). */
export interface HeaderFault {
  matches(method: string, path: string): boolean;
  headers: Record<string, string>;
  /** How many matching answers get the headers (`Infinity` for all). */
  times: number;
}

/** One request seen by the proxy (recorded when it is answered). */
export interface ProxiedRequest {
  method: string;
  path: string;
  range: string | undefined;
  status: number;
  /** True when the proxy cut the response. */
  cut: boolean;
  /** The request's `Content-Range`, `Content-Length`, `Transfer-Encoding` and `User-Agent` headers. */
  contentRange: string | undefined;
  contentLength: string | undefined;
  transferEncoding: string | undefined;
  userAgent: string | undefined;
  /** Request body bytes the proxy received so far (all of them once the request is over). */
  readonly bodyBytes: number;
}

export interface FaultProxy {
  /** `127.0.0.1:<port>`: use it as the registry host in references. */
  host: string;
  requests: ProxiedRequest[];
  faults: ResponseFault[];
  statusFaults: StatusFault[];
  headerFaults: HeaderFault[];
  requestFaults: RequestFault[];
  requestHeaderFaults: RequestHeaderFault[];
  requestWatches: RequestWatch[];
  /** Request body bytes the proxy received, over every request (cut ones included). */
  readonly totalRequestBodyBytes: number;
  /** TCP connections clients opened to the proxy so far. */
  readonly connections: number;
  stop(): Promise<void>;
}

export interface FaultProxyOptions {
  /**
   * How long the proxy keeps an idle client connection open (Node's default is 5 s); longer lets a
   * test count connections without a loaded machine's pauses closing them.
   */
  keepAliveTimeoutMs?: number;
}

function requestRecord(
  incoming: IncomingMessage,
  status: number,
  cut: boolean,
  received: { bytes: number },
): ProxiedRequest {
  const header = (name: string): string | undefined => {
    const value = incoming.headers[name];
    return Array.isArray(value) ? value.join(', ') : value;
  };
  return {
    method: incoming.method ?? 'GET',
    path: incoming.url ?? '/',
    range: incoming.headers.range,
    status,
    cut,
    contentRange: header('content-range'),
    contentLength: header('content-length'),
    transferEncoding: header('transfer-encoding'),
    userAgent: header('user-agent'),
    get bodyBytes() {
      return received.bytes;
    },
  };
}

/**
 * Starts a plain-HTTP proxy on 127.0.0.1 in front of a plain-HTTP registry (`target`, `host:port`)
 * that forwards every request unchanged (Host included, so the registry's upload locations point
 * at the proxy) and can break responses: send the status, headers and the first bytes of the body,
 * then destroy the connection — a connection reset mid-download; or answer with an error status
 * (500, 503, 429 with `Retry-After`, a redirect…) without asking the registry, or never answer; stall a
 * response mid-body; replace request headers (an expired token); call back when a request or a
 * response passed a number of bytes (to restart the registry then); or add headers to answers.
 * Every request is recorded (with its upload headers, User-Agent and body size).
 */
export async function startFaultProxy(target: string, options: FaultProxyOptions = {}): Promise<FaultProxy> {
  const [targetHost, targetPort] = target.split(':') as [string, string];
  const requests: ProxiedRequest[] = [];
  const faults: ResponseFault[] = [];
  const statusFaults: StatusFault[] = [];
  const headerFaults: HeaderFault[] = [];
  const requestFaults: RequestFault[] = [];
  const requestHeaderFaults: RequestHeaderFault[] = [];
  const requestWatches: RequestWatch[] = [];
  let totalRequestBodyBytes = 0;
  const server: Server = createServer((incoming, outgoing) => {
    const method = incoming.method ?? 'GET';
    const path = incoming.url ?? '/';
    const received = { bytes: 0 };
    incoming.on('data', (chunk: Buffer) => {
      received.bytes += chunk.byteLength;
      totalRequestBodyBytes += chunk.byteLength;
    });
    const statusFault = statusFaults.find(
      (candidate) => candidate.times > 0 && candidate.matches(method, path, incoming.headers),
    );
    if (statusFault) {
      statusFault.times--;
      requests.push(requestRecord(incoming, statusFault.status, false, received));
      if (statusFault.hang) {
        incoming.resume();
        return;
      }
      const answer = () => {
        outgoing.writeHead(statusFault.status, {
          'content-type': 'application/json',
          ...statusFault.headers,
        });
        outgoing.end(
          statusFault.body ??
            JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'injected by the test proxy' }] }),
        );
      };
      if (statusFault.immediate) answer();
      incoming.resume();
      if (!statusFault.immediate) incoming.on('end', answer);
      return;
    }
    let forwardedHeaders = incoming.headers;
    const headerFault = requestHeaderFaults.find(
      (candidate) => candidate.times > 0 && candidate.matches(method, path, incoming.headers),
    );
    if (headerFault) {
      headerFault.times--;
      const set = typeof headerFault.set === 'function' ? headerFault.set(incoming.headers) : headerFault.set;
      forwardedHeaders = { ...incoming.headers, ...set };
    }
    const watch = requestWatches.find(
      (candidate) => candidate.times > 0 && candidate.matches(method, path, incoming.headers),
    );
    if (watch) {
      watch.times--;
      let reached = false;
      incoming.on('data', () => {
        if (!reached && received.bytes >= watch.afterBodyBytes) {
          reached = true;
          watch.onReached();
        }
      });
    }
    const forwarded = httpRequest(
      { host: targetHost, port: Number(targetPort), method, path, headers: forwardedHeaders },
      (answer: IncomingMessage) => {
        const fault = faults.find((candidate) => candidate.times > 0 && candidate.matches(method, path));
        requests.push(requestRecord(incoming, answer.statusCode ?? 0, fault !== undefined, received));
        const headers = { ...answer.headers };
        for (const headerFault of headerFaults) {
          if (headerFault.times > 0 && headerFault.matches(method, path)) {
            headerFault.times--;
            Object.assign(headers, headerFault.headers);
          }
        }
        outgoing.writeHead(answer.statusCode ?? 502, headers);
        if (!fault) {
          answer.pipe(outgoing);
          return;
        }
        fault.times--;
        let sent = 0;
        if (fault.stall) {
          answer.on('error', () => undefined);
          outgoing.on('close', () => answer.destroy());
        }
        answer.on('data', (chunk: Buffer) => {
          if (sent >= fault.cutAfterBytes) return;
          const part = chunk.subarray(0, fault.cutAfterBytes - sent);
          sent += part.byteLength;
          outgoing.write(part);
          if (sent >= fault.cutAfterBytes) {
            fault.onReached?.();
            if (fault.stall) {
              answer.pause();
              return;
            }
            answer.destroy();
            // Let the bytes leave, then reset the connection.
            setTimeout(() => outgoing.socket?.destroy(), 20);
          }
        });
      },
    );
    forwarded.on('error', () => outgoing.socket?.destroy());
    const requestFault = requestFaults.find(
      (candidate) => candidate.times > 0 && candidate.matches(method, path, incoming.headers),
    );
    if (!requestFault) {
      incoming.pipe(forwarded);
      return;
    }
    requestFault.times--;
    const cutAfterBytes =
      typeof requestFault.cutAfterBytes === 'number'
        ? requestFault.cutAfterBytes
        : requestFault.cutAfterBytes(incoming.headers);
    let forwardedBytes = 0;
    let cut = false;
    const held: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => {
      if (cut) return;
      if (requestFault.buffered) {
        const part = chunk.subarray(0, cutAfterBytes - forwardedBytes);
        forwardedBytes += part.byteLength;
        held.push(part);
        if (forwardedBytes >= cutAfterBytes) {
          cut = true;
          requests.push(requestRecord(incoming, 0, true, received));
          incoming.pause();
          forwarded.destroy();
          setTimeout(() => incoming.socket?.destroy(), 20);
        }
        return;
      }
      const part = chunk.subarray(0, cutAfterBytes - forwardedBytes);
      forwardedBytes += part.byteLength;
      if (part.byteLength > 0) forwarded.write(part);
      if (forwardedBytes >= cutAfterBytes) {
        cut = true;
        requests.push(requestRecord(incoming, 0, true, received));
        incoming.pause();
        // Let the forwarded bytes reach the registry, then drop both connections.
        const dropBoth = (): void => {
          forwarded.destroy();
          incoming.socket?.destroy();
        };
        const { beforeCut } = requestFault;
        if (beforeCut) beforeCut().then(dropBoth, dropBoth);
        else setTimeout(dropBoth, 50);
      }
    });
    incoming.on('end', () => {
      if (cut) return;
      if (requestFault.buffered) forwarded.end(Buffer.concat(held));
      else forwarded.end();
    });
  });
  let connections = 0;
  server.on('connection', () => {
    connections++;
  });
  if (options.keepAliveTimeoutMs !== undefined) server.keepAliveTimeout = options.keepAliveTimeoutMs;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    faults,
    statusFaults,
    headerFaults,
    requestFaults,
    requestHeaderFaults,
    requestWatches,
    get totalRequestBodyBytes() {
      return totalRequestBodyBytes;
    },
    get connections() {
      return connections;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
