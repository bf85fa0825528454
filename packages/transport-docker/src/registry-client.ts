import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { findRegistryCredentials } from '@gantry/containers-config';
import {
  abortError,
  type ErrorCode,
  ErrorCodes,
  GantryError,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core/transport';
import type { Dispatcher } from 'undici';
import {
  type AuthChallenge,
  type BearerToken,
  fetchBearerToken,
  isTokenExpired,
  parseAuthChallenges,
} from './authentication.js';
import { loadTlsSettings, networkError, type TlsSettings } from './connections.js';
import { type ResolvedDockerContextOptions, resolveDockerContextOptions } from './context.js';
import { memoForContext } from './context-memo.js';
import { responseError, type SentCredentials } from './registry-errors.js';
import type { DockerTransportState } from './transport-state.js';

/** Docker Hub's API host: `docker.io` references are served by `registry-1.docker.io`. */
const dockerHubApiHost = 'registry-1.docker.io';

/** How many times a replayable request answered 429 Too Many Requests is sent again (as containers/image). */
export const maxTooManyRequestsRetries = 5;
/** The first wait after a 429 without `Retry-After`; doubled after each further 429. */
export const tooManyRequestsInitialDelayMs = 2_000;
/** The longest wait after a 429, whatever `Retry-After` asks for. */
export const maxTooManyRequestsDelayMs = 60_000;

/**
 * The wait before sending a request again after a 429 Too Many Requests: the answer's `Retry-After`
 * (seconds, or an HTTP date in the future), else `fallbackMs`; never more than
 * `maxTooManyRequestsDelayMs`, so a registry cannot hold a command for an hour.
 */
export function tooManyRequestsDelay(
  retryAfter: string | string[] | undefined,
  fallbackMs: number,
  now = Date.now(),
): number {
  const value = (Array.isArray(retryAfter) ? retryAfter[0] : retryAfter)?.trim();
  let delayMs = fallbackMs;
  if (value !== undefined && value !== '') {
    if (/^\d+$/.test(value)) delayMs = Number(value) * 1000;
    else {
      const date = Date.parse(value);
      if (!Number.isNaN(date) && date > now) delayMs = date - now;
    }
  }
  return Math.min(delayMs, maxTooManyRequestsDelayMs);
}

/** Request bodies the client can send; streams and iterables cannot be replayed after a 401. */
/** A request body; an array of pieces is sent one after the other and, like bytes, can be sent again. */
export type RequestBody =
  | string
  | Uint8Array
  | readonly Uint8Array[]
  | Readable
  | AsyncIterable<Uint8Array>
  | null;

export interface RegistryRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** A path on the registry (`/v2/…`, with query) or an absolute URL (upload locations, redirects). */
  target: string | URL;
  headers?: Record<string, string>;
  body?: RequestBody;
  /** Scopes beyond the client's own (e.g. `repository:other:pull` for a mount). */
  extraScopes?: string[];
  /** Never send `Authorization` (external URLs, CVE-2020-15157), even to the registry's origin. */
  anonymous?: boolean;
  signal?: AbortSignal | undefined;
  /** Describes the operation in error messages. */
  what: string;
}

/** What a client is for: the registry, the repository and the actions wanted on it. */
export interface RegistryClientScope {
  /** `host[:port]` as in the reference (`docker.io`, `127.0.0.1:5000`). */
  registry: string;
  /** Repository path; '' for registry-level operations (ping, login). */
  repository: string;
  /** `pull`, `pull,push` or `*`. */
  actions: string;
  /**
   * Connection pool role: reads and writes never share a pool (a destination's manifest HEAD checks
   * only read, and use `source`).
   */
  role: 'source' | 'destination';
}

/** The origin of a bearer challenge's realm (the registry's when it is missing or invalid: the token request then fails clearly). */
function realmOrigin(challenge: AuthChallenge, fallback: string): string {
  try {
    return new URL(challenge.parameters.realm ?? fallback).origin;
  } catch {
    return fallback;
  }
}

/** What registries.conf says about a registry, for `RegistryClient.open`. */
export interface RegistryAccessSettings {
  /** `insecure = true`: plain HTTP and unverified TLS allowed unless the context sets `tlsVerify`. */
  insecure?: boolean;
  /** `credential-helpers`, in order (default: the auth files). */
  credentialHelpers?: readonly string[];
}

type Credentials = { username: string; password: string; identityToken?: string };

/** What a ping of `/v2/` learns. */
export interface PingResult {
  scheme: 'https' | 'http';
  challenges: readonly AuthChallenge[];
  /** Whether `/v2/` answered `X-Registry-Supports-Signatures: 1`. */
  supportsSignatureExtension: boolean;
}

/**
 * A client for one repository of one registry, with the authentication state for it:
 * - `open` pings `/v2/` (HTTPS; plain HTTP only when TLS verification is off) and learns the
 *   challenges (a ping of the same registry and TLS settings less than 10 s old is reused, see
 *   `RegistryPings`); credentials come from the context (`--creds`, `--registry-token`, `--no-creds`) or the
 *   auth files (most specific namespace first);
 * - every request carries `Authorization`: Basic credentials, a bearer token for the scopes (fetched
 *   from the realm, anonymous when there are no credentials, cached per scope set until shortly before
 *   it expires), or the context's registry token;
 * - a 401 on a replayable request renews the token (or learns the challenge) and retries once;
 * - requests to another origin (redirects) never carry `Authorization`.
 * Credentials never appear in errors.
 */
export class RegistryClient {
  readonly scope: RegistryClientScope;
  readonly options: ResolvedDockerContextOptions;
  /**
   * The `User-Agent` of every request (pings, token requests, redirects included): the transport's
   * (`gantry/<version>`), after the context's `userAgentPrefix` and a space when it has one.
   */
  readonly userAgent: string;
  private readonly state: DockerTransportState;
  private readonly tls: TlsSettings;
  private readonly credentials: Credentials | undefined;
  private challenges: AuthChallenge[] = [];
  private scheme: 'https' | 'http' = 'https';
  /** The key of this client's ping in `state.pings`. */
  private pingKey: string | undefined;
  private readonly tokens = new Map<string, BearerToken>();
  private readonly pendingTokens = new Map<string, Promise<BearerToken>>();

  private constructor(
    state: DockerTransportState,
    scope: RegistryClientScope,
    options: ResolvedDockerContextOptions,
    tls: TlsSettings,
    credentials: Credentials | undefined,
  ) {
    this.state = state;
    this.scope = scope;
    this.options = options;
    this.tls = tls;
    this.credentials = credentials;
    this.userAgent =
      options.userAgentPrefix === undefined
        ? state.userAgent
        : `${options.userAgentPrefix} ${state.userAgent}`;
  }

  /**
   * Resolves credentials and TLS settings, and pings the registry. `settings` come from
   * registries.conf: `insecure` for this registry (an explicit `tlsVerify` in the context wins over
   * it) and the `credential-helpers` order.
   */
  static async open(
    state: DockerTransportState,
    scope: RegistryClientScope,
    context: TransportContext,
    settings: RegistryAccessSettings = {},
  ): Promise<RegistryClient> {
    throwIfAborted(context.signal);
    const options = resolveDockerContextOptions(context);
    const tlsVerify = options.tlsVerify ?? !settings.insecure;
    options.tlsVerify = tlsVerify;
    let credentials: Credentials | undefined;
    if (options.credentials) credentials = options.credentials;
    else if (!options.noCredentials && options.registryToken === undefined) {
      const key = scope.repository === '' ? scope.registry : `${scope.registry}/${scope.repository}`;
      // Looked up once per context and key for a while (see context-memo.ts): a sync opens clients
      // for every image, each of which would search the auth files again.
      const found = await memoForContext(
        context,
        `credentials\n${key}\n${options.authFilePath ?? ''}\n${settings.credentialHelpers?.join(',') ?? ''}`,
        () =>
          findRegistryCredentials(key, {
            ...(options.authFilePath === undefined ? {} : { authFilePath: options.authFilePath }),
            ...(settings.credentialHelpers === undefined
              ? {}
              : { credentialHelpers: settings.credentialHelpers }),
          }),
      );
      if (found) {
        credentials = { username: found.username, password: found.password };
        if (found.identityToken) credentials.identityToken = found.identityToken;
      }
    }
    const tls = await memoForContext(
      context,
      `tls\n${scope.registry}\n${tlsVerify}\n${options.certDirectory ?? ''}`,
      () => loadTlsSettings(scope.registry, tlsVerify, options.certDirectory),
    );
    const client = new RegistryClient(state, scope, options, tls, credentials);
    client.pingKey = [client.apiHost, tlsVerify, options.certDirectory ?? ''].join('\n');
    await client.ping(context.signal);
    return client;
  }

  /**
   * Whether the registry's `/v2/` answer said `X-Registry-Supports-Signatures: 1` (OpenShift's API
   * extension for simple-signing signatures, `/extensions/v2/<repository>/signatures/<digest>`).
   */
  supportsSignatureExtension = false;

  /** The host and port connections go to. */
  get apiHost(): string {
    return this.scope.registry === 'docker.io' ? dockerHubApiHost : this.scope.registry;
  }

  /** `https://host[:port]` (or `http://` for an insecure registry that does not speak TLS). */
  get origin(): string {
    return `${this.scheme}://${this.apiHost}`;
  }

  /** Whether credentials (or a registry token) will be sent. */
  get hasCredentials(): boolean {
    return this.sentCredentials !== 'none';
  }

  /** What requests authenticate with (words a 401's message). */
  get sentCredentials(): SentCredentials {
    if (this.options.registryToken !== undefined) return 'registry-token';
    if (this.credentials?.identityToken) return 'identity-token';
    return this.credentials !== undefined ? 'password' : 'none';
  }

  /** The scope string of this client's repository: `repository:<name>:<actions>`. */
  get repositoryScope(): string | undefined {
    return this.scope.repository === ''
      ? undefined
      : `repository:${this.scope.repository}:${this.scope.actions}`;
  }

  private pool(): Dispatcher {
    return this.state.pools.pool(this.origin, this.tls, this.scope.role);
  }

  private async pingScheme(scheme: 'https' | 'http', signal: AbortSignal | undefined): Promise<PingResult> {
    const origin = `${scheme}://${this.apiHost}`;
    const what = `pinging container registry ${this.scope.registry}`;
    let response: Dispatcher.ResponseData;
    try {
      response = await this.state.pools.pool(origin, this.tls, this.scope.role).request({
        origin,
        path: '/v2/',
        method: 'GET',
        headers: { 'user-agent': this.userAgent },
        signal,
        headersTimeout: this.options.idleTimeoutMs,
        bodyTimeout: this.options.idleTimeoutMs,
      });
    } catch (error) {
      throw networkError(error, what, signal, this.options.idleTimeoutMs);
    }
    if (response.statusCode !== 200 && response.statusCode !== 401) {
      throw await responseError(response, { what, notFoundCode: 'ERR_GANTRY_INTERNAL' as ErrorCode });
    }
    await response.body.dump();
    const extension = response.headers['x-registry-supports-signatures'];
    return {
      scheme,
      challenges: parseAuthChallenges(response.headers['www-authenticate']),
      supportsSignatureExtension: (Array.isArray(extension) ? extension[0] : extension) === '1',
    };
  }

  /**
   * Pings `/v2/` over HTTPS and, when TLS verification is off and HTTPS fails, over plain HTTP (as
   * containers/image: HTTPS wins whenever it answers). With verification off both pings go out at
   * once, plain HTTP first: it needs no TLS set-up, so its answer is usually in when the HTTPS attempt
   * fails on a plain-HTTP registry, and one round trip is spared. Its answer is used only after HTTPS
   * failed; when HTTPS answers, the plain request is aborted (a TLS server may never answer it).
   */
  private async pingUncached(signal: AbortSignal | undefined): Promise<PingResult> {
    if (this.options.tlsVerify) return await this.pingScheme('https', signal);
    throwIfAborted(signal);
    const plainController = new AbortController();
    const plainSignal =
      signal === undefined ? plainController.signal : AbortSignal.any([signal, plainController.signal]);
    const plain = this.pingScheme('http', plainSignal).then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );
    try {
      const result = await this.pingScheme('https', signal);
      plainController.abort();
      return result;
    } catch (httpsError) {
      if (signal?.aborted) {
        plainController.abort();
        throw httpsError;
      }
      const outcome = await plain;
      if ('result' in outcome) return outcome.result;
      throw httpsError;
    }
  }

  /**
   * Pings `/v2/` over HTTPS and, when TLS verification is off and HTTPS fails, over plain HTTP, to
   * learn the scheme, the authentication challenges (answers 200 and 401 are both fine) and the
   * signature API extension. The answer is shared through `state.pings` (`RegistryPings`) by every
   * client of the transport instance for the same registry and TLS settings while it is fresh, so a
   * command that opens several clients (a copy between two repositories of one registry, `inspect` with its
   * tag list, a sync) pings once; a failed ping is not kept. Challenges that change later are learnt
   * again from the 401 that follows.
   */
  async ping(signal: AbortSignal | undefined): Promise<void> {
    const key =
      this.pingKey ?? [this.apiHost, this.options.tlsVerify, this.options.certDirectory ?? ''].join('\n');
    this.pingKey = key;
    let shared = true;
    let result: PingResult;
    try {
      result = await this.state.pings.get(key, () => {
        shared = false;
        return this.pingUncached(signal);
      });
    } catch (error) {
      // Another client's ping failed (perhaps only its caller was aborted): this one pings for itself.
      if (!shared || signal?.aborted) throw error;
      result = await this.pingUncached(signal);
    }
    this.scheme = result.scheme;
    this.challenges = [...result.challenges];
    this.supportsSignatureExtension = result.supportsSignatureExtension;
  }

  private tokenFor(
    challenge: AuthChallenge,
    scopes: string[],
    signal: AbortSignal | undefined,
  ): Promise<BearerToken> {
    const key = scopes.join(' ');
    const cached = this.tokens.get(key);
    if (cached && !isTokenExpired(cached)) return Promise.resolve(cached);
    let pending = this.pendingTokens.get(key);
    if (pending === undefined) {
      pending = fetchBearerToken({
        challenge,
        scopes,
        credentials: this.credentials,
        dispatcher: this.state.pools.other(realmOrigin(challenge, this.origin), this.tls),
        userAgent: this.userAgent,
        signal,
        registry: this.scope.registry,
        idleTimeoutMs: this.options.idleTimeoutMs,
      }).then(
        (token) => {
          this.tokens.set(key, token);
          this.pendingTokens.delete(key);
          return token;
        },
        (error: unknown) => {
          this.pendingTokens.delete(key);
          throw error;
        },
      );
      this.pendingTokens.set(key, pending);
    }
    return pending;
  }

  private scopesFor(extraScopes: string[] | undefined): string[] {
    const scopes = [this.repositoryScope, ...(extraScopes ?? [])].filter(
      (scope): scope is string => scope !== undefined,
    );
    return [...new Set(scopes)].sort();
  }

  /** The `Authorization` header value for a request with these scopes, if any. */
  private async authorization(
    extraScopes: string[] | undefined,
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    if (this.options.registryToken !== undefined) return `Bearer ${this.options.registryToken}`;
    for (const challenge of this.challenges) {
      if (challenge.scheme === 'basic') {
        if (!this.credentials) return undefined;
        return `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64')}`;
      }
      if (challenge.scheme === 'bearer') {
        const token = await this.tokenFor(challenge, this.scopesFor(extraScopes), signal);
        return `Bearer ${token.token}`;
      }
    }
    return undefined;
  }

  private resolveTarget(target: string | URL): URL {
    return typeof target === 'string' ? new URL(target, `${this.origin}/`) : target;
  }

  /**
   * Sends a request and returns the response, whatever its status (the caller consumes or dumps the
   * body). Network failures become Gantry errors (`ERR_GANTRY_TRANSIENT` when retrying may help),
   * and so does a server that stays silent longer than the idle timeout (`idleTimeoutMs`), waiting
   * for the answer or for the next body bytes. A replayable request answered 429 Too Many Requests
   * is sent again up to `maxTooManyRequestsRetries` times, after the wait `Retry-After` asks for
   * (bounded, see `tooManyRequestsDelay`; 2 s, 4 s, … without it); the 429 that remains is returned.
   * A replayable request answered 401 gets a new token and is sent once more; a request with a body
   * that cannot be sent again, refused for an invalid (expired) bearer token, fails with a retryable
   * `ERR_GANTRY_TRANSIENT` after the token is forgotten, so a retry of the operation fetches a new one.
   */
  async request(request: RegistryRequest): Promise<Dispatcher.ResponseData> {
    const url = this.resolveTarget(request.target);
    const sameOrigin = url.origin === this.origin && request.anonymous !== true;
    const replayable =
      request.body === undefined ||
      request.body === null ||
      typeof request.body === 'string' ||
      request.body instanceof Uint8Array ||
      Array.isArray(request.body);
    let authenticatedAgain = false;
    let tooManyRequests = 0;
    let tooManyRequestsFallbackMs = tooManyRequestsInitialDelayMs;
    for (;;) {
      throwIfAborted(request.signal);
      const headers: Record<string, string> = { 'user-agent': this.userAgent, ...request.headers };
      if (sameOrigin) {
        const authorization = await this.authorization(request.extraScopes, request.signal);
        if (authorization !== undefined) headers.authorization = authorization;
      }
      const dispatcher: Dispatcher = sameOrigin ? this.pool() : this.state.pools.other(url.origin, this.tls);
      let response: Dispatcher.ResponseData;
      try {
        response = await dispatcher.request({
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method: request.method,
          headers,
          body: (request.body ?? null) as Dispatcher.RequestOptions['body'],
          signal: request.signal,
          headersTimeout: this.options.idleTimeoutMs,
          bodyTimeout: this.options.idleTimeoutMs,
          // undici closes the connection after every HEAD (for servers that wrongly send a body with
          // the answer), so each HEAD would open a connection of its own: a sync's manifest checks
          // and a copy's blob checks are mostly HEADs. Registries answer HEAD correctly, and
          // skopeo's client keeps those connections too.
          ...(request.method === 'HEAD' ? { reset: false } : {}),
        });
      } catch (error) {
        if (this.pingKey !== undefined && !request.signal?.aborted) this.state.pings.forget(this.pingKey);
        throw networkError(
          error,
          `${request.what} (${request.method} ${url.origin}${url.pathname})`,
          request.signal,
          this.options.idleTimeoutMs,
        );
      }
      if (response.statusCode === 429 && replayable && tooManyRequests < maxTooManyRequestsRetries) {
        const delayMs = tooManyRequestsDelay(response.headers['retry-after'], tooManyRequestsFallbackMs);
        tooManyRequests++;
        tooManyRequestsFallbackMs *= 2;
        await response.body.dump();
        try {
          await sleep(delayMs, undefined, request.signal ? { signal: request.signal } : undefined);
        } catch (error) {
          if (request.signal?.aborted) throw abortError(request.signal);
          throw error;
        }
        continue;
      }
      if (
        response.statusCode === 401 &&
        sameOrigin &&
        !replayable &&
        this.options.registryToken === undefined
      ) {
        // A body that cannot be sent again (a blob stream) was refused because the registry found the
        // token invalid (expired early, by its clock, or revoked): forget the token and let the
        // operation be retried (`--retry-times`), which fetches a new one.
        const refused = parseAuthChallenges(response.headers['www-authenticate']).some(
          (challenge) => challenge.scheme === 'bearer' && challenge.parameters.error === 'invalid_token',
        );
        if (refused) {
          await response.body.dump();
          this.tokens.delete(this.scopesFor(request.extraScopes).join(' '));
          throw new GantryError(
            ErrorCodes.Transient,
            `${request.what} (${request.method} ${url.origin}${url.pathname}): the registry refused the bearer token as invalid or expired; a new token is fetched when the operation is retried`,
            { retryable: true },
          );
        }
      }
      if (
        response.statusCode !== 401 ||
        !sameOrigin ||
        !replayable ||
        authenticatedAgain ||
        this.options.registryToken !== undefined
      ) {
        return response;
      }
      // A token may have been revoked or lack a scope, or the registry wants authentication it did
      // not announce at ping time: learn the challenge again, forget cached tokens, retry once.
      const challenges = parseAuthChallenges(response.headers['www-authenticate']);
      const canRetry =
        challenges.some((challenge) => challenge.scheme === 'bearer') ||
        (this.challenges.length === 0 && challenges.length > 0 && this.credentials !== undefined);
      if (!canRetry) return response;
      await response.body.dump();
      authenticatedAgain = true;
      if (challenges.length > 0) this.challenges = challenges;
      this.tokens.delete(this.scopesFor(request.extraScopes).join(' '));
    }
  }

  /** `request`, then `responseError` unless the status is one of `expected`. */
  async requestExpecting(
    request: RegistryRequest,
    expected: readonly number[],
    notFoundCode?: ErrorCode,
  ): Promise<Dispatcher.ResponseData> {
    const response = await this.request(request);
    if (!expected.includes(response.statusCode)) {
      throw await responseError(response, {
        what: request.what,
        credentialsSent: this.sentCredentials,
        ...(notFoundCode === undefined ? {} : { notFoundCode }),
      });
    }
    return response;
  }
}
