import { createSign, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TokenSigningMaterial } from './certificates.js';

/** One request the token server answered, for assertions. */
export interface TokenRequestRecord {
  method: string;
  /** The user who authenticated, or undefined for an anonymous request. */
  user: string | undefined;
  /** Whether Basic credentials were sent but refused. */
  refused: boolean;
  scopes: string[];
  service: string | undefined;
}

export interface TestTokenServerOptions {
  /** Accepted users and their passwords. */
  users: Record<string, string>;
  /** OAuth2 refresh tokens ("identity tokens") accepted by POST, and the user each stands for. */
  refreshTokens?: Record<string, string>;
  service: string;
  issuer: string;
  signing: TokenSigningMaterial;
  /** Actions granted to anonymous requests (default: none). */
  anonymousActions?: string[];
  /** Token lifetime in seconds (default 300). */
  tokenLifetimeSeconds?: number;
}

export interface TestTokenServer {
  /** The realm URL to configure in the registry. */
  realm: string;
  requests: TokenRequestRecord[];
  /**
   * A token signed as the server signs its answers, for `user` (anonymous when undefined) with every
   * action of `scopes`, expiring `expiresInSeconds` from now (negative: already expired, e.g. -600 is
   * refused by Distribution, whose leeway is a minute). For tests that send a token the server did
   * not hand out (an expired one).
   */
  mintToken(options: { user?: string; scopes: string[]; expiresInSeconds: number }): string;
  stop(): Promise<void>;
}

function base64Url(value: string | Buffer): string {
  return Buffer.from(value).toString('base64url');
}

/** The base64 DER of a PEM certificate (the JWS `x5c` form). */
function certificateDerBase64(pem: string): string {
  return pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
}

/** Parses `repository:name:actions` (the name may contain colons only in theory; actions are last). */
function parseScope(scope: string): { type: string; name: string; actions: string[] } | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first === -1 || first === last) return undefined;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope
      .slice(last + 1)
      .split(',')
      .filter(Boolean),
  };
}

/**
 * Starts a Docker token-auth server (the protocol Distribution's `auth: token` expects) on 127.0.0.1
 * and a free port: it checks Basic credentials against `users`, grants every requested action to
 * authenticated users (anonymous ones get `anonymousActions`), and returns RS256 JWTs signed with the
 * given key, carrying the signing certificate in `x5c` so the registry can verify them against its
 * `rootcertbundle`. Wrong credentials get 401. POSTs implement the OAuth2 refresh-token grant with
 * `refreshTokens`.
 */
export async function startTestTokenServer(options: TestTokenServerOptions): Promise<TestTokenServer> {
  const requests: TokenRequestRecord[] = [];
  const lifetime = options.tokenLifetimeSeconds ?? 300;
  const anonymousActions = options.anonymousActions ?? [];

  const sign = (
    user: string | undefined,
    access: Array<{ type: string; name: string; actions: string[] }>,
    now: number,
    expiresInSeconds: number,
  ): string => {
    // An expired token was issued five minutes before it expired.
    const issued = expiresInSeconds > 0 ? now : now + expiresInSeconds - 300;
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certificateDerBase64(options.signing.certificate)] };
    const claims = {
      iss: options.issuer,
      sub: user ?? '',
      aud: options.service,
      exp: now + expiresInSeconds,
      nbf: issued - 10,
      iat: issued,
      jti: randomUUID(),
      access,
    };
    const signingInput = `${base64Url(JSON.stringify(header))}.${base64Url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(signingInput).sign(options.signing.privateKey);
    return `${signingInput}.${base64Url(signature)}`;
  };

  const handle = (request: IncomingMessage, response: ServerResponse, body: string): void => {
    const url = new URL(request.url ?? '/', 'http://token.invalid');
    let user: string | undefined;
    let refused = false;
    const authorization = request.headers.authorization;
    if (request.method === 'POST') {
      // OAuth2 refresh-token grant: the form carries service, scope (space-separated) and the token.
      const form = new URLSearchParams(body);
      const refreshToken = form.get('refresh_token') ?? '';
      if (
        form.get('grant_type') === 'refresh_token' &&
        Object.hasOwn(options.refreshTokens ?? {}, refreshToken)
      ) {
        user = options.refreshTokens![refreshToken];
      } else refused = true;
      for (const scope of (form.get('scope') ?? '').split(' ').filter(Boolean))
        url.searchParams.append('scope', scope);
      if (form.get('service')) url.searchParams.set('service', form.get('service')!);
    } else if (authorization?.startsWith('Basic ')) {
      const decoded = Buffer.from(authorization.slice('Basic '.length), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const name = decoded.slice(0, colon);
      const password = decoded.slice(colon + 1);
      if (colon !== -1 && Object.hasOwn(options.users, name) && options.users[name] === password) user = name;
      else refused = true;
    }
    const scopes = url.searchParams
      .getAll('scope')
      .flatMap((scope) => scope.split(' '))
      .filter(Boolean);
    requests.push({
      method: request.method ?? 'GET',
      user,
      refused,
      scopes,
      service: url.searchParams.get('service') ?? undefined,
    });
    if (refused) {
      response.writeHead(401, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'invalid username or password' }] }),
      );
      return;
    }
    const access = scopes
      .map(parseScope)
      .filter((scope): scope is NonNullable<typeof scope> => scope !== undefined)
      .map((scope) => ({
        type: scope.type,
        name: scope.name,
        actions:
          user !== undefined
            ? scope.actions
            : scope.actions.filter((action) => anonymousActions.includes(action)),
      }));
    const now = Math.floor(Date.now() / 1000);
    const token = sign(user, access, now, lifetime);
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(
      JSON.stringify({
        token,
        access_token: token,
        expires_in: lifetime,
        issued_at: new Date(now * 1000).toISOString(),
      }),
    );
  };

  const server = createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => {
      body += chunk;
    });
    request.on('end', () => handle(request, response, body));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    requests,
    mintToken: ({ user, scopes, expiresInSeconds }) =>
      sign(
        user,
        scopes.map(parseScope).filter((scope): scope is NonNullable<typeof scope> => scope !== undefined),
        Math.floor(Date.now() / 1000),
        expiresInSeconds,
      ),
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
