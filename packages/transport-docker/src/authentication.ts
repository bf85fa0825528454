import { ErrorCodes, GantryError } from '@gantry/core/transport';
import type { Dispatcher } from 'undici';
import { networkError } from './connections.js';
import { readLimitedBody, statusError } from './registry-errors.js';

/** One `WWW-Authenticate` challenge: a lowercase scheme and its parameters (lowercase names). */
export interface AuthChallenge {
  scheme: string;
  parameters: Record<string, string>;
}

/**
 * Parses `WWW-Authenticate` header values (RFC 7235): each value may hold several challenges,
 * `Scheme param=value, param="quoted \"value\"", Other …`. Unparseable parts are skipped.
 */
export function parseAuthChallenges(headerValues: string | string[] | undefined): AuthChallenge[] {
  if (headerValues === undefined) return [];
  const challenges: AuthChallenge[] = [];
  for (const value of Array.isArray(headerValues) ? headerValues : [headerValues]) {
    let position = 0;
    let current: AuthChallenge | undefined;
    const skip = (pattern: RegExp) => {
      pattern.lastIndex = position;
      const match = pattern.exec(value);
      if (match && match.index === position) position += match[0].length;
    };
    const token = (): string => {
      const match = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/.exec(value.slice(position));
      if (!match) return '';
      position += match[0].length;
      return match[0];
    };
    while (position < value.length) {
      skip(/[\s,]+/y);
      const name = token();
      if (name === '') {
        position++;
        continue;
      }
      skip(/[ \t]*/y);
      if (value[position] === '=' && current !== undefined) {
        position++;
        skip(/[ \t]*/y);
        let parameterValue = '';
        if (value[position] === '"') {
          position++;
          while (position < value.length && value[position] !== '"') {
            if (value[position] === '\\' && position + 1 < value.length) position++;
            parameterValue += value[position];
            position++;
          }
          position++;
        } else {
          parameterValue = token();
        }
        current.parameters[name.toLowerCase()] = parameterValue;
      } else {
        current = { scheme: name.toLowerCase(), parameters: {} };
        challenges.push(current);
      }
    }
  }
  return challenges;
}

/** A bearer token and when it stops being usable (ms since the epoch). */
export interface BearerToken {
  token: string;
  expiresAt: number;
}

/** Tokens valid for less than this are treated as valid this long (the Docker token spec's minimum). */
const minimumTokenLifetimeSeconds = 60;
/** A token is renewed this long before it expires, so that it does not expire mid-request. */
const tokenRenewalMarginMs = 10_000;

/** True when a cached token should be renewed. */
export function isTokenExpired(token: BearerToken, now = Date.now()): boolean {
  return now >= token.expiresAt - tokenRenewalMarginMs;
}

/** Parses a token endpoint answer: `token` or `access_token`, `expires_in`, `issued_at`. */
export function parseTokenResponse(body: Buffer, now = Date.now()): BearerToken {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new GantryError(ErrorCodes.Internal, 'invalid answer from the token server (not JSON)');
  }
  const token = typeof value.token === 'string' && value.token !== '' ? value.token : value.access_token;
  if (typeof token !== 'string' || token === '') {
    throw new GantryError(ErrorCodes.Internal, 'invalid answer from the token server (no token)');
  }
  const expiresIn =
    typeof value.expires_in === 'number' && value.expires_in >= minimumTokenLifetimeSeconds
      ? value.expires_in
      : minimumTokenLifetimeSeconds;
  const issuedAtText = typeof value.issued_at === 'string' ? Date.parse(value.issued_at) : Number.NaN;
  // Clocks differ: never trust an issue time in the future.
  const issuedAt = Number.isFinite(issuedAtText) ? Math.min(issuedAtText, now) : now;
  return { token, expiresAt: issuedAt + expiresIn * 1000 };
}

export interface TokenRequest {
  challenge: AuthChallenge;
  /** `repository:name:actions` scopes. */
  scopes: string[];
  credentials: { username: string; password: string; identityToken?: string } | undefined;
  dispatcher: Dispatcher;
  userAgent: string;
  signal: AbortSignal | undefined;
  /** The registry, for messages. */
  registry: string;
  /** The longest wait for the answer or its next bytes (undici's default, 5 minutes, without it). */
  idleTimeoutMs?: number;
}

const maxTokenBodyBytes = 1024 * 1024;

/**
 * Gets a bearer token from the challenge's realm: GET with `service`, `scope` and `account` and Basic
 * credentials when some are known (anonymous otherwise); with an identity token, the OAuth2
 * refresh-token POST. A refused login is `ERR_GANTRY_UNAUTHORIZED` ("invalid username/password").
 */
export async function fetchBearerToken(request: TokenRequest): Promise<BearerToken> {
  const realm = request.challenge.parameters.realm;
  if (!realm)
    throw new GantryError(
      ErrorCodes.Internal,
      `registry ${request.registry}: missing realm in bearer auth challenge`,
    );
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new GantryError(
      ErrorCodes.Internal,
      `registry ${request.registry}: invalid realm in bearer auth challenge`,
    );
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new GantryError(
      ErrorCodes.Internal,
      `registry ${request.registry}: unsupported realm scheme ${url.protocol}`,
    );
  }
  const service = request.challenge.parameters.service;
  const credentials = request.credentials;
  const headers: Record<string, string> = { 'user-agent': request.userAgent };
  let method: 'GET' | 'POST' = 'GET';
  let body: string | undefined;
  if (credentials?.identityToken) {
    method = 'POST';
    const form = new URLSearchParams();
    form.set('grant_type', 'refresh_token');
    form.set('refresh_token', credentials.identityToken);
    form.set('client_id', 'gantry');
    if (service) form.set('service', service);
    if (request.scopes.length > 0) form.set('scope', request.scopes.join(' '));
    body = form.toString();
    headers['content-type'] = 'application/x-www-form-urlencoded';
  } else {
    if (credentials?.username) url.searchParams.append('account', credentials.username);
    if (service) url.searchParams.append('service', service);
    for (const scope of request.scopes) url.searchParams.append('scope', scope);
    if (credentials?.username && credentials.password) {
      headers.authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
    }
  }
  const what = `requesting a bearer token for ${request.registry} from ${url.origin}${url.pathname}`;
  let response: Dispatcher.ResponseData;
  try {
    response = await request.dispatcher.request({
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      method,
      headers,
      body,
      signal: request.signal,
      ...(request.idleTimeoutMs === undefined
        ? {}
        : { headersTimeout: request.idleTimeoutMs, bodyTimeout: request.idleTimeoutMs }),
    });
  } catch (error) {
    throw networkError(error, what, request.signal, request.idleTimeoutMs);
  }
  const responseBody = await readLimitedBody(response.body, maxTokenBodyBytes).catch((error: unknown) => {
    throw networkError(error, what, request.signal, request.idleTimeoutMs);
  });
  if (response.statusCode !== 200) {
    throw statusError(response.statusCode, responseBody, {
      what,
      credentialsSent: credentials?.identityToken
        ? 'identity-token'
        : credentials !== undefined
          ? 'password'
          : 'none',
      notFoundCode: ErrorCodes.Internal,
    });
  }
  return parseTokenResponse(responseBody);
}
