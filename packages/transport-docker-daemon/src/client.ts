/**
 * A minimal Docker Engine API client over undici: a unix socket (`unix:///var/run/docker.sock`) or plain TCP
 * (`tcp://host:port`), with API version negotiation (`GET /_ping` → `API-Version`, capped at the newest
 * version this client speaks, as the docker CLI does).
 *
 * The host is `transportOptions['docker-daemon'].host` (`--src-daemon-host` / `--dest-daemon-host`), else
 * `DOCKER_HOST`, else `unix:///var/run/docker.sock`.
 *
 * TLS follows the docker CLI's client rules: a `tcp://` host uses TLS with verification when `tlsVerify` is
 * `true` in `transportOptions['docker-daemon']`, or, when that option is not given, when `DOCKER_TLS_VERIFY` is
 * non-empty; otherwise it is plain HTTP. The certificate directory is `certPath`, else `DOCKER_CERT_PATH`, else
 * `~/.docker`; it must hold `ca.pem` (the CA the daemon's certificate is verified against) and may hold the
 * client certificate `cert.pem` with its key `key.pem` (both or neither, as `docker` skips absent ones). A missing
 * or unreadable file is `ERR_GANTRY_USAGE` naming the file; a daemon that refuses the handshake is
 * `ERR_GANTRY_TRANSIENT` naming the host.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { ErrorCodes, GantryError, type TransportContext } from '@gantry/core/transport';
import type { Pool } from 'undici';
import { loadUndiciPool } from './undici-pool.js';

let poolClass: typeof Pool | undefined;
/** undici's Pool, loaded with the first client. */
function undiciPool(): typeof Pool {
  poolClass ??= loadUndiciPool();
  return poolClass;
}

/** Options read from `TransportContext.transportOptions['docker-daemon']`. */
export interface DockerDaemonTransportOptions {
  /** The daemon address: `unix:///path` or `tcp://host:port`. */
  host?: string;
  /** Use TLS with verification for a `tcp://` host; when absent, `DOCKER_TLS_VERIFY` non-empty decides. */
  tlsVerify?: boolean;
  /** The directory of `ca.pem`, `cert.pem`, `key.pem`; when absent `DOCKER_CERT_PATH`, else `~/.docker`. */
  certPath?: string;
}

/** The TLS settings of a `tcp://` daemon connection. */
export interface DockerDaemonTlsSettings {
  /** Whether to use TLS (with verification of the daemon's certificate). */
  verify: boolean;
  /** The certificate directory. */
  certPath: string;
}

/** The default daemon address. */
export const defaultDockerHost = 'unix:///var/run/docker.sock';

/** The newest Engine API version this client speaks (docker 20.10). */
export const maximumApiVersion = '1.41';

/** The daemon address the context selects (see the module comment). */
export function dockerHostOf(context: TransportContext): string {
  const options = context.transportOptions?.['docker-daemon'] as DockerDaemonTransportOptions | undefined;
  return options?.host || process.env.DOCKER_HOST || defaultDockerHost;
}

/** The TLS settings the context selects (see the module comment). */
export function dockerTlsSettingsOf(context: TransportContext): DockerDaemonTlsSettings {
  const options = context.transportOptions?.['docker-daemon'] as DockerDaemonTransportOptions | undefined;
  return {
    verify: options?.tlsVerify ?? Boolean(process.env.DOCKER_TLS_VERIFY),
    certPath: options?.certPath || process.env.DOCKER_CERT_PATH || path.join(os.homedir(), '.docker'),
  };
}

function fileExists(file: string): boolean {
  try {
    readFileSync(file);
    return true;
  } catch {
    return false;
  }
}

function readCertificateFile(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new GantryError(
      ErrorCodes.Usage,
      `cannot read docker TLS file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      { cause: error },
    );
  }
}

function tlsConnectOptions(
  hostname: string,
  certPath: string,
): { ca: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized: true; servername?: string } {
  const ca = readCertificateFile(path.join(certPath, 'ca.pem'));
  const certificateFile = path.join(certPath, 'cert.pem');
  const keyFile = path.join(certPath, 'key.pem');
  const hasCertificate = fileExists(certificateFile);
  const hasKey = fileExists(keyFile);
  const client =
    hasCertificate || hasKey
      ? { cert: readCertificateFile(certificateFile), key: readCertificateFile(keyFile) }
      : {};
  return {
    ca,
    ...client,
    rejectUnauthorized: true,
    ...(isIP(hostname) === 0 ? { servername: hostname } : {}),
  };
}

/** The connection-level error codes that mean the daemon could not be reached or refused the TLS handshake. */
function isConnectionFailure(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  return (
    code === 'ECONNREFUSED' ||
    code === 'ENOENT' ||
    code === 'EACCES' ||
    code === 'ECONNRESET' ||
    code === 'EPROTO' ||
    code === 'UND_ERR_SOCKET' ||
    code.startsWith('ERR_SSL_') ||
    code.startsWith('ERR_TLS_') ||
    code.startsWith('UNABLE_TO_') ||
    code.startsWith('DEPTH_ZERO_') ||
    code.startsWith('SELF_SIGNED_') ||
    code.startsWith('CERT_')
  );
}

function compareVersions(left: string, right: string): number {
  const a = left.split('.').map(Number);
  const b = right.split('.').map(Number);
  for (let index = 0; index < Math.max(a.length, b.length); index++) {
    const difference = (a[index] ?? 0) - (b[index] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

/** A response of the daemon: status, headers and the body stream (which the caller must consume or destroy). */
export interface EngineResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

/** The most of an error answer's body read (characters); the rest is never read. */
const maximumErrorBodyLength = 64 * 1024;

/** A connection pool to one daemon; `close()` when done. */
export class DockerEngineClient {
  readonly host: string;
  readonly #pool: Pool;
  #apiVersion: Promise<string> | undefined;

  readonly tls: boolean;

  /**
   * `tls` applies to a `tcp://` host only (default: the environment, see `dockerTlsSettingsOf`); reads the
   * certificate files at once.
   */
  constructor(host: string, tls: DockerDaemonTlsSettings = dockerTlsSettingsOf({})) {
    const PoolClass = undiciPool();
    this.host = host;
    this.tls = false;
    if (host.startsWith('unix://')) {
      const socketPath = host.slice('unix://'.length);
      if (socketPath === '')
        throw new GantryError(ErrorCodes.Usage, `invalid docker host ${host}: no socket path`);
      this.#pool = new PoolClass('http://localhost', { socketPath });
    } else if (host.startsWith('tcp://') || host.startsWith('http://')) {
      const address = host.replace(/^(tcp|http):\/\//, '').replace(/\/+$/, '');
      if (address === '') throw new GantryError(ErrorCodes.Usage, `invalid docker host ${host}: no address`);
      if (tls.verify && host.startsWith('tcp://')) {
        const origin = new URL(`https://${address}`);
        const hostname = origin.hostname.replace(/^\[|\]$/g, '');
        this.tls = true;
        this.#pool = new PoolClass(origin.origin, { connect: tlsConnectOptions(hostname, tls.certPath) });
      } else {
        this.#pool = new PoolClass(`http://${address}`);
      }
    } else {
      throw new GantryError(ErrorCodes.Usage, `unsupported docker host ${host}: expected unix:// or tcp://`);
    }
  }

  #connectionError(error: unknown): GantryError {
    const code = (error as NodeJS.ErrnoException).code;
    const detail = `${code ?? ''}${code ? ': ' : ''}${(error as Error).message}`;
    return new GantryError(
      ErrorCodes.Transient,
      this.tls
        ? `Cannot connect to the Docker daemon at ${this.host} over TLS (check DOCKER_CERT_PATH / certPath: ca.pem, cert.pem, key.pem). (${detail})`
        : `Cannot connect to the Docker daemon at ${this.host}. Is the docker daemon running? (${code ?? (error as Error).message})`,
      { cause: error },
    );
  }

  /** The negotiated API version (asked once). */
  apiVersion(signal?: AbortSignal): Promise<string> {
    this.#apiVersion ??= (async () => {
      let response: EngineResponse;
      try {
        response = (await this.#pool.request({
          method: 'GET',
          path: '/_ping',
          ...(signal ? { signal } : {}),
        })) as EngineResponse;
      } catch (error) {
        throw this.#connectionError(error);
      }
      await response.body.resume();
      const header = response.headers['api-version'];
      const version = Array.isArray(header) ? header[0] : header;
      if (response.statusCode !== 200 || !version) {
        throw new GantryError(
          ErrorCodes.Transient,
          `docker daemon at ${this.host} answered /_ping with status ${response.statusCode}${version ? '' : ' and no API-Version'}`,
        );
      }
      return compareVersions(version, maximumApiVersion) < 0 ? version : maximumApiVersion;
    })();
    this.#apiVersion.catch(() => {
      this.#apiVersion = undefined;
    });
    return this.#apiVersion;
  }

  /** Sends `method /v{version}{path}`; connection failures become a clear `ERR_GANTRY_TRANSIENT`. */
  async request(
    method: 'GET' | 'POST',
    path: string,
    options: { body?: Readable; headers?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<EngineResponse> {
    const version = await this.apiVersion(options.signal);
    try {
      return (await this.#pool.request({
        method,
        path: `/v${version}${path}`,
        ...(options.body ? { body: options.body } : {}),
        ...(options.headers ? { headers: options.headers } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      })) as EngineResponse;
    } catch (error) {
      if (isConnectionFailure(error)) throw this.#connectionError(error);
      throw error;
    }
  }

  /** Reads a small error body (`{"message": "..."}`) into a message. */
  static async errorMessage(response: EngineResponse): Promise<string> {
    let text = '';
    for await (const chunk of response.body) {
      text += Buffer.from(chunk as Uint8Array).toString('utf8');
      // Leaving the loop destroys the body: a huge or endless error body is never read to its end.
      if (text.length >= maximumErrorBodyLength) break;
    }
    text = text.slice(0, maximumErrorBodyLength);
    try {
      const parsed = JSON.parse(text) as { message?: unknown };
      if (typeof parsed.message === 'string') return parsed.message;
    } catch {
      // not JSON: use the text
    }
    return text.trim() || `status ${response.statusCode}`;
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }

  /** Closes at once, aborting requests in flight. */
  async destroy(error?: Error): Promise<void> {
    await this.#pool.destroy(error ?? null);
  }
}
