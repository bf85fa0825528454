import { describe, expect, it } from 'vitest';
import { hasErrorCode } from '../errors.js';
import { parseSyncConfig } from './config.js';

describe('parseSyncConfig', () => {
  it("reads skopeo's example file, scalars as YAML 1.1 text", () => {
    const config = parseSyncConfig(
      [
        'registry.example.com:',
        '    images:',
        '        busybox: []',
        '        redis:',
        '            - "1.0"',
        '            - 2.0',
        '            - "sha256:0000000000000000000000000000000011111111111111111111111111111111"',
        '    images-by-tag-regex:',
        '        nginx: ^1\\.13\\.[12]-alpine-perl$',
        '    images-by-semver:',
        '        alpine: ">= 3.12.0"',
        '    credentials:',
        '        username: john',
        '        password: this is a secret',
        '    tls-verify: yes',
        '    cert-dir: /home/john/certs',
        'quay.io:',
        '    tls-verify: false',
        '    images:',
        '        coreos/etcd:',
        '            - latest',
        '',
      ].join('\n'),
      'sync.yml',
    );
    expect(config).toHaveLength(2);
    const [first, second] = config as [(typeof config)[0], (typeof config)[0]];
    expect(first.images).toEqual([
      { repository: 'busybox', references: [] },
      {
        repository: 'redis',
        references: ['1.0', '2.0', 'sha256:0000000000000000000000000000000011111111111111111111111111111111'],
      },
    ]);
    expect(first.imagesByTagRegex[0]!.pattern.test('1.13.2-alpine-perl')).toBe(true);
    expect(first.imagesByTagRegex[0]!.pattern.test('1.13.3-alpine-perl')).toBe(false);
    expect(first.imagesBySemver[0]!.repository).toBe('alpine');
    expect(first.credentials).toEqual({ username: 'john', password: 'this is a secret' });
    expect(first.tlsVerify).toBe(true);
    expect(first.certDirectory).toBe('/home/john/certs');
    expect(second).toMatchObject({ registry: 'quay.io', tlsVerify: false });
    expect(second.images).toEqual([{ repository: 'coreos/etcd', references: ['latest'] }]);
  });

  it("reads Gantry's exclude-tags and newest-tags", () => {
    const [registry] = parseSyncConfig(
      'r.example:\n  images:\n    app: []\n  exclude-tags: ["-rc", "^sha-"]\n  newest-tags: 3\n',
      'f.yml',
    );
    expect(registry!.newestTags).toBe(3);
    expect(registry!.excludeTags.map((pattern) => pattern.source)).toEqual(['-rc', '^sha-']);
  });

  const bad: Array<[string, string, RegExp]> = [
    [
      'malformed YAML',
      'r.example:\n  images:\n    app: [1, 2\n',
      /^f\.yml: line \d+, column \d+: invalid YAML: /,
    ],
    [
      'unknown key',
      'r.example:\n  image:\n    app: []\n',
      /^f\.yml: line 2, column 3: registry r\.example: unknown key "image"/,
    ],
    [
      'invalid regex',
      'r.example:\n  images-by-tag-regex:\n    app: "^(1"\n',
      /^f\.yml: line 3, column 10: registry r\.example, images-by-tag-regex, app: invalid regular expression "\^\(1"/,
    ],
    [
      'invalid semver',
      'r.example:\n  images-by-semver:\n    app: ">= banana"\n',
      /^f\.yml: line 3, column 10: .*invalid semantic version constraint ">= banana"/,
    ],
    [
      'tags not a list',
      'r.example:\n  images:\n    app: latest\n',
      /line 3, column 10: registry r\.example, images, app: expected a list of tags or digests/,
    ],
    [
      'tls-verify not a boolean',
      'r.example:\n  tls-verify: maybe\n',
      /line 2, column 15: registry r\.example, tls-verify: expected true or false/,
    ],
    ['newest-tags zero', 'r.example:\n  newest-tags: 0\n', /line 2, column 16: .*at least 1/],
    ['top level a list', '- a\n- b\n', /^f\.yml: line 1, column 1: expected a mapping of registry names/],
    [
      'duplicate key',
      'r.example:\n  images: {}\n  images: {}\n',
      /^f\.yml: line 3, column \d+: invalid YAML: Map keys must be unique/,
    ],
  ];
  for (const [what, text, message] of bad) {
    it(`refuses ${what}, naming the line`, () => {
      let caught: unknown;
      try {
        parseSyncConfig(text, 'f.yml');
      } catch (error) {
        caught = error;
      }
      expect(hasErrorCode(caught, 'ERR_GANTRY_USAGE')).toBe(true);
      expect((caught as Error).message).toMatch(message);
    });
  }

  it('reads an empty file as no registries', () => {
    expect(parseSyncConfig('', 'f.yml')).toEqual([]);
  });
});
