import { readdirSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { SecureContext } from 'node:tls';
import {
  abortError,
  defaultCertificateAuthorities,
  deferredNodeExtraCertificateAuthoritiesPath,
  ErrorCodes,
  GantryError,
  isGantryError,
  type ReadBufferReader,
  socketReadBuffers,
} from '@gantry/core/transport';
import type { Dispatcher, Pool as PoolType, ProxyAgent as ProxyAgentType } from 'undici';
import { loadUndiciDispatchers, type UndiciDispatchers, undiciMaxHeaderSize } from './undici-dispatchers.js';

/** undici's classes, loaded by the first connection (a command that opens none, `gantry transports`, never reads undici). */
let dispatchers: UndiciDispatchers | undefined;
const undici = (): UndiciDispatchers => (dispatchers ??= loadUndiciDispatchers());

/** TLS settings for one registry host. */
export interface TlsSettings {
  /** False with `--tls-verify=false`: certificates are not verified. */
  verify: boolean;
  /** CA certificates (PEM) added to Node's roots, from the certificate directory. */
  extraCertificateAuthorities: string[];
  /** A client certificate and key (PEM), from the certificate directory. */
  clientCertificate?: { certificate: string; key: string };
  /** Names the settings for pool keys; never contains key material. */
  fingerprint: string;
}

/**
 * The per-host certificate directory, as containers/image: the explicit one (`--cert-dir`), else the
 * first existing of `~/.config/containers/certs.d/<host:port>`, `/etc/containers/certs.d/<host:port>`,
 * `/etc/docker/certs.d/<host:port>`.
 */
async function certificateDirectoryFor(
  registry: string,
  explicit: string | undefined,
): Promise<string | undefined> {
  if (explicit !== undefined) return explicit;
  const candidates = [
    path.join(os.homedir(), '.config', 'containers', 'certs.d', registry),
    path.join('/etc/containers/certs.d', registry),
    path.join('/etc/docker/certs.d', registry),
  ];
  // Looked for synchronously: three local lookups, usually of missing directories, before the first
  // connection; asynchronous ones would start libuv's thread pool for them alone.
  for (const candidate of candidates) {
    try {
      readdirSync(candidate);
      return candidate;
    } catch {
      // Missing or unreadable: try the next one.
    }
  }
  return undefined;
}

/**
 * Loads TLS settings for a registry: `*.crt` files are CA certificates, a `name.cert` file with its
 * `name.key` is a client certificate (as containers/image's tlsclientconfig).
 */
export async function loadTlsSettings(
  registry: string,
  verify: boolean,
  certDirectory: string | undefined,
): Promise<TlsSettings> {
  const directory = await certificateDirectoryFor(registry, certDirectory);
  const settings: TlsSettings = {
    verify,
    extraCertificateAuthorities: [],
    fingerprint: `verify=${verify};dir=${directory ?? ''}`,
  };
  if (directory === undefined) return settings;
  let names: string[];
  try {
    names = (await readdir(directory)).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return settings;
    throw new GantryError(
      ErrorCodes.Internal,
      `reading certificate directory ${directory}: ${(error as Error).message}`,
    );
  }
  for (const name of names) {
    if (name.endsWith('.crt')) {
      settings.extraCertificateAuthorities.push(await readFile(path.join(directory, name), 'utf8'));
    } else if (name.endsWith('.cert')) {
      const keyName = `${name.slice(0, -'.cert'.length)}.key`;
      if (!names.includes(keyName)) {
        throw new GantryError(
          ErrorCodes.Internal,
          `missing key ${keyName} for client certificate ${name} in ${directory}`,
        );
      }
      settings.clientCertificate = {
        certificate: await readFile(path.join(directory, name), 'utf8'),
        key: await readFile(path.join(directory, keyName), 'utf8'),
      };
    } else if (name.endsWith('.key') && !names.includes(`${name.slice(0, -'.key'.length)}.cert`)) {
      throw new GantryError(
        ErrorCodes.Internal,
        `missing client certificate ${name.slice(0, -'.key'.length)}.cert for key ${name} in ${directory}`,
      );
    }
  }
  return settings;
}

/**
 * Socket options (`net.connect`'s `onread`) that read a plain-HTTP connection into buffers of
 * `socketReadBuffers`, each read pushed to the socket's readable side as a view of its buffer: the
 * response bodies undici parses out of it are views of those buffers, which come back to be read into
 * again once the destination wrote every byte of them (`PutBlobOptions.chunkWritten`). Without this
 * Node.js reads each 64 KiB into new memory and copies every shorter read once more into memory of its
 * size. (TLS sockets decrypt into memory of their own: not for them.) Each socket is its own
 * `ReadBufferReader`: once chunks read on it are handed back, its reads go into the larger buffers.
 *
 * The readable side holds one read at most (its mark is 1 byte; the callback's false stops reading
 * until undici took it): undici takes everything buffered at once, and two reads would be joined into
 * new memory, their buffers left to the garbage collector.
 */
const pooledReads = {
  readableHighWaterMark: 1,
  onread: {
    buffer: (): Buffer => {
      const reader = lastReader;
      lastReader = undefined;
      return socketReadBuffers.take(reader);
    },
    callback(this: Socket, bytes: number, buffer: Uint8Array): boolean {
      socketReadBuffers.filled(buffer, bytes);
      const more = this.push(buffer.subarray(0, bytes));
      lastReader = readerOf(this);
      return more;
    },
  },
};

/** Where a socket's `ReadBufferReader` is kept. */
const socketReader = Symbol('gantry.socketReader');

/** The `ReadBufferReader` of `socket`: the socket's chunks handed back get it larger read buffers. */
function readerOf(socket: Socket): ReadBufferReader {
  const holder = socket as Socket & { [socketReader]?: ReadBufferReader };
  let reader = holder[socketReader];
  if (reader === undefined) {
    reader = socketReadBuffers.reader();
    holder[socketReader] = reader;
  }
  return reader;
}

/**
 * The socket whose read just ended: Node.js asks `onread.buffer` for the next read's memory right after
 * `onread.callback` returned, with no socket to tell which one, so the callback notes it last thing (after
 * its push, which may start other connections).
 */
let lastReader: ReadBufferReader | undefined;

/** One secure context per TLS settings: parsing hundreds of CA certificates once, not per connection. */
const secureContexts = new Map<string, SecureContext>();

/**
 * undici connect options for `tls`. A secure context is made only when it differs from Node's
 * default: extra CAs (certs.d, or NODE_EXTRA_CA_CERTS deferred by the launcher) when verifying, no CA
 * at all when not verifying, or a client certificate; it is built once per settings and shared by
 * every connection. `plainHttp`
 * origins get no TLS options at all, so a plain-HTTP registry never pays for certificate parsing.
 */
function connectOptions(
  tls: TlsSettings,
  plainHttp = false,
  readsPooled = false,
): PoolType.Options['connect'] {
  const options: Record<string, unknown> = { rejectUnauthorized: tls.verify };
  if (plainHttp)
    return (readsPooled ? { ...options, ...pooledReads } : options) as PoolType.Options['connect'];
  // Without verification no CA is needed: an empty list spares Node parsing its whole root store.
  const ca = tls.verify ? defaultCertificateAuthorities(tls.extraCertificateAuthorities) : [];
  if (ca === undefined && tls.clientCertificate === undefined) return options as PoolType.Options['connect'];
  const key = `${tls.fingerprint};deferred=${deferredNodeExtraCertificateAuthoritiesPath() ?? ''}`;
  let context = secureContexts.get(key);
  if (context === undefined) {
    const contextOptions: Record<string, unknown> = {};
    if (ca !== undefined) contextOptions.ca = ca;
    if (tls.clientCertificate) {
      contextOptions.cert = tls.clientCertificate.certificate;
      contextOptions.key = tls.clientCertificate.key;
    }
    context = process.getBuiltinModule('node:tls').createSecureContext(contextOptions);
    secureContexts.set(key, context);
  }
  options.secureContext = context;
  return options as PoolType.Options['connect'];
}

/** Connections per registry origin and role; requests beyond this wait for a free connection. */
export const maxConnectionsPerOrigin = 16;
const keepAliveTimeoutMs = 30_000;

/** Environment variables, as `process.env`. */
export type Environment = Readonly<Record<string, string | undefined>>;

function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  return bare === 'localhost' || bare.endsWith('.localhost') || /^127\./.test(bare) || bare === '::1';
}

/**
 * The proxy for a URL from the standard environment variables, with Go's `httpproxy` rules (what
 * skopeo does): `HTTPS_PROXY`/`https_proxy` for https URLs, `HTTP_PROXY`/`http_proxy` for http URLs
 * (a value without a scheme means `http://`); never for localhost or loopback addresses; never when
 * `NO_PROXY`/`no_proxy` matches: `*`, an IP, a domain (matching it and its subdomains; with a leading
 * `.`, subdomains only), each optionally with `:port`. Undefined when no proxy applies.
 */
export function proxyForUrl(url: URL, environment: Environment = process.env): string | undefined {
  const value =
    url.protocol === 'https:'
      ? environment.HTTPS_PROXY || environment.https_proxy
      : environment.HTTP_PROXY || environment.http_proxy;
  if (!value) return undefined;
  const host = url.hostname.toLowerCase();
  if (isLoopbackHost(host)) return undefined;
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  const noProxy = environment.NO_PROXY || environment.no_proxy || '';
  for (const rawEntry of noProxy.split(',')) {
    let entry = rawEntry.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return undefined;
    let entryPort: string | undefined;
    const portMatch = /^(.*[^:]):(\d+)$/.exec(entry);
    if (portMatch && !entry.includes('::')) {
      entry = portMatch[1]!;
      entryPort = portMatch[2]!;
    }
    if (entryPort !== undefined && entryPort !== port) continue;
    entry = entry.replace(/^\[|\]$/g, '');
    const bareHost = host.replace(/^\[|\]$/g, '');
    if (entry.startsWith('.')) {
      if (bareHost.endsWith(entry)) return undefined;
    } else if (entry.startsWith('*.')) {
      if (bareHost.endsWith(entry.slice(1))) return undefined;
    } else if (bareHost === entry || bareHost.endsWith(`.${entry}`)) {
      return undefined;
    }
  }
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
}

/**
 * undici dispatchers: one connection pool per registry origin (and TLS settings, and role: sources
 * and destinations use separate pools so that a registry-to-registry copy never waits on itself),
 * with keep-alive; a proxy agent instead when the environment names a proxy for the origin; agents
 * for other hosts (token realms, blob redirects). Idle sockets do not keep the process alive.
 * Shared by every source and destination of one transport instance.
 */
export class ConnectionPools {
  private readonly dispatchers = new Map<string, Dispatcher>();
  private readonly environment: Environment | undefined;

  /** `environment` replaces `process.env` for proxy settings (read at each new origin). */
  constructor(environment?: Environment) {
    this.environment = environment;
  }

  private cached<T extends Dispatcher>(key: string, create: () => T): T {
    let dispatcher = this.dispatchers.get(key) as T | undefined;
    if (dispatcher === undefined) {
      dispatcher = create();
      this.dispatchers.set(key, dispatcher);
    }
    return dispatcher;
  }

  private proxyAgent(proxy: string, tls: TlsSettings, role: string): Dispatcher {
    return this.cached(`proxy ${role} ${proxy} ${tls.fingerprint}`, () => {
      return new (undici().ProxyAgent)({
        uri: proxy,
        requestTls: connectOptions(tls) as ProxyAgentType.Options['requestTls'],
        connections: maxConnectionsPerOrigin,
        keepAliveTimeout: keepAliveTimeoutMs,
        maxHeaderSize: undiciMaxHeaderSize(),
      });
    });
  }

  /** The dispatcher for a registry origin (`https://host:port`). */
  pool(origin: string, tls: TlsSettings, role: string): Dispatcher {
    const proxy = proxyForUrl(new URL(origin), this.environment ?? process.env);
    if (proxy !== undefined) return this.proxyAgent(proxy, tls, role);
    return this.cached(`${role} ${origin} ${tls.fingerprint}`, () => {
      return new (undici().Pool)(origin, {
        connections: maxConnectionsPerOrigin,
        keepAliveTimeout: keepAliveTimeoutMs,
        maxHeaderSize: undiciMaxHeaderSize(),
        // Sources' connections read blobs: into pooled buffers (see `pooledReads`).
        connect: connectOptions(tls, origin.startsWith('http:'), role === 'source'),
      });
    });
  }

  /** The dispatcher for any other origin (token realms, blob redirects, external URLs). */
  other(origin: string, tls: TlsSettings): Dispatcher {
    const proxy = proxyForUrl(new URL(origin), this.environment ?? process.env);
    if (proxy !== undefined) return this.proxyAgent(proxy, tls, 'other');
    return this.cached(`other ${tls.fingerprint}`, () => {
      return new (undici().Agent)({
        keepAliveTimeout: keepAliveTimeoutMs,
        maxHeaderSize: undiciMaxHeaderSize(),
        connect: connectOptions(tls),
      });
    });
  }

  /** Closes every connection (waiting for requests in flight). Dispatchers are re-created on next use. */
  async close(): Promise<void> {
    const all = [...this.dispatchers.values()];
    this.dispatchers.clear();
    await Promise.all(all.map((dispatcher) => dispatcher.close()));
  }
}

let cachedUserAgent: string | undefined;

/** `gantry/<version of this package>`. */
export function gantryUserAgent(): string {
  if (cachedUserAgent === undefined) {
    let version = '0.0.0';
    try {
      const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
        version?: unknown;
      };
      if (typeof manifest.version === 'string') version = manifest.version;
    } catch {
      // Keep the fallback version.
    }
    cachedUserAgent = `gantry/${version}`;
  }
  return cachedUserAgent;
}

const transientCodes = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

const tlsVerificationCodes = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function errorCodeOf(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** True when a network error looks like TLS spoken to a plain HTTP server. */
export function isPlainHttpResponseToTls(error: unknown): boolean {
  const code = errorCodeOf(error);
  const message = error instanceof Error ? error.message : '';
  return (
    code === 'ERR_SSL_WRONG_VERSION_NUMBER' ||
    code === 'EPROTO' ||
    /wrong version number|packet length too long/i.test(message)
  );
}

/**
 * Converts an error thrown by undici while talking to `what` into a Gantry error: the abort error
 * when the signal fired, `ERR_GANTRY_TRANSIENT` (retryable) for connection failures and timeouts
 * (a server silent longer than `idleTimeoutMs` is said to have stalled),
 * `ERR_GANTRY_INTERNAL` with advice for certificate problems and TLS spoken to a plain HTTP server.
 */
export function networkError(
  error: unknown,
  what: string,
  signal: AbortSignal | undefined,
  idleTimeoutMs?: number,
): GantryError {
  if (signal?.aborted) return abortError(signal);
  if (isGantryError(error)) return error;
  const code = errorCodeOf(error);
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    const limit =
      idleTimeoutMs === undefined ? 'the idle timeout' : `${idleTimeoutMs / 1000} s (idle timeout)`;
    const waited = code === 'UND_ERR_HEADERS_TIMEOUT' ? 'no answer' : 'no more data';
    return new GantryError(ErrorCodes.Transient, `${what}: the server stalled: ${waited} within ${limit}`, {
      cause: error,
      retryable: true,
    });
  }
  if (code !== undefined && tlsVerificationCodes.has(code)) {
    return new GantryError(
      ErrorCodes.Internal,
      `${what}: TLS certificate verification failed (${message}); give the CA certificate with a certificate directory, or disable verification (--tls-verify=false)`,
      { cause: error },
    );
  }
  if (isPlainHttpResponseToTls(error)) {
    const reason = (error as { reason?: unknown }).reason;
    return new GantryError(
      ErrorCodes.Internal,
      `${what}: the server does not speak TLS (${typeof reason === 'string' ? reason : message.trim()}); if this registry serves plain HTTP, disable TLS verification (--tls-verify=false) to allow it`,
      { cause: error },
    );
  }
  if (code !== undefined && transientCodes.has(code)) {
    return new GantryError(ErrorCodes.Transient, `${what}: ${message}`, { cause: error, retryable: true });
  }
  return new GantryError(ErrorCodes.Internal, `${what}: ${message}`, { cause: error });
}
