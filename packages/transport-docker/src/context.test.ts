import { describe, expect, it } from 'vitest';
import { resolveDockerContextOptions } from './context.js';

const resolve = (docker: unknown) => () => resolveDockerContextOptions({ transportOptions: { docker } });

describe('docker context options for uploads and the User-Agent', () => {
  it('accepts userAgentPrefix, precomputeDigests and uploadChunkSize', () => {
    expect(
      resolveDockerContextOptions({
        transportOptions: {
          docker: { userAgentPrefix: 'acme/1.0 (ci)', precomputeDigests: true, uploadChunkSize: 65_536 },
        },
      }),
    ).toMatchObject({ userAgentPrefix: 'acme/1.0 (ci)', precomputeDigests: true, uploadChunkSize: 65_536 });
    // An empty prefix is no prefix (skopeo ignores an empty --user-agent-prefix).
    expect(resolve({ userAgentPrefix: '' })()).toMatchObject({ userAgentPrefix: undefined });
  });

  it('refuses malformed values, naming the member', () => {
    for (const size of [0, -1, 1.5, '1024', Number.NaN, 2 ** 60]) {
      expect(resolve({ uploadChunkSize: size })).toThrow(/uploadChunkSize must be a positive integer/);
    }
    expect(resolve({ precomputeDigests: 'yes' })).toThrow(/precomputeDigests must be a boolean/);
    expect(resolve({ userAgentPrefix: 7 })).toThrow(/userAgentPrefix must be a string/);
    expect(resolve({ userAgentPrefix: 'a\r\nX-Injected: 1' })).toThrow(
      /userAgentPrefix must not contain control/,
    );
  });
});

describe('docker context option idleTimeoutMs', () => {
  it('defaults to 5 minutes and accepts a positive integer', () => {
    expect(resolve(undefined)()).toMatchObject({ idleTimeoutMs: 300_000 });
    expect(resolve({ idleTimeoutMs: 1500 })()).toMatchObject({ idleTimeoutMs: 1500 });
  });

  it('refuses anything else, naming the member', () => {
    for (const value of [0, -5, 2.5, '2s', Number.POSITIVE_INFINITY]) {
      expect(resolve({ idleTimeoutMs: value })).toThrow(/idleTimeoutMs must be a positive integer/);
    }
  });
});

describe('docker context option untaggedRepositories', () => {
  it('is empty by default; a Set is kept as given (it may be filled later), an array becomes a Set', () => {
    expect(resolve(undefined)().untaggedRepositories.size).toBe(0);
    const repositories = new Set<string>();
    const resolved = resolve({ untaggedRepositories: repositories })();
    repositories.add('registry.example/mirror/app');
    expect(resolved.untaggedRepositories.has('registry.example/mirror/app')).toBe(true);
    expect([...resolve({ untaggedRepositories: ['a.example/x'] })().untaggedRepositories]).toEqual([
      'a.example/x',
    ]);
  });

  it('refuses anything else, naming the member', () => {
    for (const value of ['a.example/x', [1], { has: () => true }, 7]) {
      expect(resolve({ untaggedRepositories: value })).toThrow(
        /untaggedRepositories must be a Set or an array of strings/,
      );
    }
  });
});
