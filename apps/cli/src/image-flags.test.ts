import { describe, expect, it } from 'vitest';
import type { FlagValue } from './args.js';
import type { GlobalOptions } from './context.js';
import { dockerOptionsFrom, transportContextFrom } from './image-flags.js';

const global: GlobalOptions = {
  debug: false,
  policyPath: undefined,
  insecurePolicy: false,
  registriesConfPath: undefined,
  temporaryDirectory: undefined,
  userAgentPrefix: undefined,
  platform: {},
  commandTimeoutMs: undefined,
  tlsVerify: undefined,
};

function flags(entries: Record<string, FlagValue>): Map<string, FlagValue> {
  return new Map(Object.entries(entries));
}

describe('registry flags → transportOptions.docker', () => {
  it('maps every registry flag of one side', () => {
    expect(
      dockerOptionsFrom(
        global,
        flags({
          'src-creds': 'u:p:q',
          'src-tls-verify': false,
          'src-cert-dir': '/certs',
          'src-authfile': '/auth.json',
          'dest-registry-token': 'tok',
        }),
        'src-',
      ),
    ).toEqual({
      credentials: 'u:p:q',
      tlsVerify: false,
      certDirectory: '/certs',
      authFilePath: '/auth.json',
    });
    expect(
      dockerOptionsFrom(global, flags({ username: 'u', password: 'p', 'tls-verify': true }), ''),
    ).toEqual({
      credentials: { username: 'u', password: 'p' },
      tlsVerify: true,
    });
    expect(dockerOptionsFrom(global, flags({ 'registry-token': 't', 'no-creds': false }), '')).toEqual({
      registryToken: 't',
    });
    expect(dockerOptionsFrom(global, flags({ 'dest-no-creds': true }), 'dest-')).toEqual({
      noCredentials: true,
    });
  });

  it('unset --tls-verify stays unset (registries.conf decides); the global flag is the fallback', () => {
    expect(dockerOptionsFrom(global, flags({}), '')).toEqual({});
    expect(dockerOptionsFrom({ ...global, tlsVerify: false }, flags({}), 'dest-')).toEqual({
      tlsVerify: false,
    });
    expect(
      dockerOptionsFrom({ ...global, tlsVerify: false }, flags({ 'dest-tls-verify': true }), 'dest-'),
    ).toEqual({
      tlsVerify: true,
    });
  });

  it('copy --authfile applies to a side without its own', () => {
    const values = flags({ authfile: '/shared.json', 'dest-authfile': '/dest.json' });
    expect(dockerOptionsFrom(global, values, 'src-')).toEqual({ authFilePath: '/shared.json' });
    expect(dockerOptionsFrom(global, values, 'dest-')).toEqual({ authFilePath: '/dest.json' });
  });

  it('refuses conflicting credentials as skopeo does', () => {
    expect(() => dockerOptionsFrom(global, flags({ creds: 'u:p', 'no-creds': true }), '')).toThrow(
      'creds and no-creds cannot be specified at the same time',
    );
    expect(() =>
      dockerOptionsFrom(global, flags({ username: 'u', password: 'p', 'no-creds': true }), ''),
    ).toThrow('username and no-creds cannot be specified at the same time');
    expect(() => dockerOptionsFrom(global, flags({ creds: 'u', username: 'u', password: 'p' }), '')).toThrow(
      'creds and username cannot be specified at the same time',
    );
    expect(() => dockerOptionsFrom(global, flags({ password: 'p' }), '')).toThrow(
      'username must be specified when password is specified',
    );
  });

  it('transportContextFrom sets transportOptions only when a registry flag is given', () => {
    expect(transportContextFrom(global, flags({}), '', undefined).transportOptions).toBeUndefined();
    expect(transportContextFrom(global, flags({ 'no-creds': true }), '', undefined).transportOptions).toEqual(
      {
        docker: { noCredentials: true },
      },
    );
  });

  it('passes --user-agent-prefix to every side and --dest-precompute-digests to the destination only', () => {
    const prefixed: GlobalOptions = { ...global, userAgentPrefix: 'acme/1.0' };
    const values = flags({ 'dest-precompute-digests': true });
    expect(dockerOptionsFrom(prefixed, values, 'src-')).toEqual({ userAgentPrefix: 'acme/1.0' });
    expect(dockerOptionsFrom(prefixed, values, 'dest-')).toEqual({
      userAgentPrefix: 'acme/1.0',
      precomputeDigests: true,
    });
    expect(dockerOptionsFrom(prefixed, flags({}), '')).toEqual({ userAgentPrefix: 'acme/1.0' });
    expect(dockerOptionsFrom(global, flags({ 'dest-precompute-digests': false }), 'dest-')).toEqual({});
  });
});
