/**
 * A minimal Docker Engine API client over undici: a unix socket (`unix:///var/run/docker.sock`) or plain TCP
 * (`tcp://host:port`), with API version negotiation (`GET /_ping` → `API-Version`, capped at the newest
 * version this client speaks, as the docker CLI does).
 *
 * The host is `transportOptions['docker-daemon'].host` (`--src-daemon-host` / `--dest-daemon-host`), else
 * `DOCKER_HOST`, else `unix:///var/run/docker.sock`. TLS (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`) is not
 * supported yet: such a host is refused with `ERR_GANTRY_NOT_SUPPORTED`.
 */
import type { Readable } from 'node:stream';
import { ErrorCodes, GantryError, type TransportContext } from '@gantry/core';
import { Pool } from 'undici';

/** Options read from `TransportContext.transportOptions['docker-daemon']`. */
export interface DockerDaemonTransportOptions {
  /** The daemon address: `unix:///path` or `tcp://host:port`. */
  host?: string;
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

/** A connection pool to one daemon; `close()` when done. */
export class DockerEngineClient {
  readonly host: string;
  readonly #pool: Pool;
  #apiVersion: Promise<string> | undefined;

  constructor(host: string) {
    this.host = host;
    if (host.startsWith('unix://')) {
      const socketPath = host.slice('unix://'.length);
      if (socketPath === '')
        throw new GantryError(ErrorCodes.Usage, `invalid docker host ${host}: no socket path`);
      this.#pool = new Pool('http://localhost', { socketPath });
    } else if (host.startsWith('tcp://') || host.startsWith('http://')) {
      if (process.env.DOCKER_TLS_VERIFY) {
        throw new GantryError(
          ErrorCodes.NotSupported,
          `TLS connections to the docker daemon (${host}) are not supported yet`,
        );
      }
      this.#pool = new Pool(`http://${host.replace(/^(tcp|http):\/\//, '')}`);
    } else {
      throw new GantryError(ErrorCodes.Usage, `unsupported docker host ${host}: expected unix:// or tcp://`);
    }
  }

  #connectionError(error: unknown): GantryError {
    const code = (error as NodeJS.ErrnoException).code;
    return new GantryError(
      ErrorCodes.Transient,
      `Cannot connect to the Docker daemon at ${this.host}. Is the docker daemon running? (${code ?? (error as Error).message})`,
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
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'EACCES')
        throw this.#connectionError(error);
      throw error;
    }
  }

  /** Reads a small error body (`{"message": "..."}`) into a message. */
  static async errorMessage(response: EngineResponse): Promise<string> {
    let text = '';
    for await (const chunk of response.body) {
      if (text.length < 65536) text += Buffer.from(chunk as Uint8Array).toString('utf8');
    }
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
