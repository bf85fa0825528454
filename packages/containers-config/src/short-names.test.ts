import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ErrorCodes } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RegistriesConfiguration, ShortNameMode } from './registries-conf.js';
import {
  describeShortNameResolution,
  isShortName,
  loadShortNameAliasCache,
  resolveShortName,
  shortNameAliasCachePath,
} from './short-names.js';

const digest = 'sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';

function configuration(
  overrides: { search?: string[]; aliases?: Record<string, string>; mode?: ShortNameMode } = {},
): RegistriesConfiguration {
  return {
    registries: [],
    unqualifiedSearchRegistries: overrides.search ?? [],
    shortNameMode: overrides.mode ?? 'permissive',
    aliases: overrides.aliases ?? {},
    credentialHelpers: ['containers-auth.json'],
    files: ['/test/registries.conf'],
  };
}

const candidatesOf = (
  input: string,
  config: RegistriesConfiguration,
  purpose: 'pull' | 'push' = 'pull',
): string[] => resolveShortName(input, config, { purpose }).candidates.map(String);

describe('isShortName', () => {
  it('follows containers/image: no registry in the first component', () => {
    for (const name of ['busybox', 'busybox:1', `busybox@${digest}`, 'library/busybox', 'user/app/x']) {
      expect(isShortName(name), name).toBe(true);
    }
    for (const name of [
      'docker.io/library/busybox',
      'docker.io/busybox',
      'quay.io/a',
      'localhost/app:tag',
      'localhost:5000/app',
      'server.org:5000/lib/image',
      '127.0.0.1:5000/x',
      'UPPER',
      '',
    ]) {
      expect(isShortName(name), name).toBe(false);
    }
  });
});

describe('resolveShortName', () => {
  it('returns fully qualified names as they are, normalised, with :latest added', () => {
    const config = configuration({ search: ['quay.io', 'example.com'], aliases: { x: 'quay.io/x/x' } });
    expect(resolveShortName('docker.io/x', config, { purpose: 'pull' })).toMatchObject({
      rationale: 'fully-qualified',
    });
    expect(candidatesOf('docker.io/x', config)).toEqual(['docker.io/library/x:latest']);
    expect(candidatesOf(`localhost/x@${digest}`, config)).toEqual([`localhost/x@${digest}`]);
    expect(() => candidatesOf('Bad Name', config)).toThrow(/invalid reference format/);
  });

  it('falls back to skopeo’s normalisation without aliases and search registries', () => {
    const config = configuration({ mode: 'enforcing' });
    expect(candidatesOf('busybox', config)).toEqual(['docker.io/library/busybox:latest']);
    expect(candidatesOf('user/app:1', config, 'push')).toEqual(['docker.io/user/app:1']);
    expect(resolveShortName('busybox', config, { purpose: 'pull' }).rationale).toBe('default-normalisation');
  });

  it('builds one candidate per search registry, library/ only for docker.io', () => {
    const config = configuration({ search: ['registry.example.com', 'docker.io', '127.0.0.1:5000'] });
    expect(candidatesOf('busybox', config)).toEqual([
      'registry.example.com/busybox:latest',
      'docker.io/library/busybox:latest',
      '127.0.0.1:5000/busybox:latest',
    ]);
    expect(candidatesOf('user/app:v2', config)).toEqual([
      'registry.example.com/user/app:v2',
      'docker.io/user/app:v2',
      '127.0.0.1:5000/user/app:v2',
    ]);
    expect(candidatesOf(`app@${digest}`, config)).toEqual([
      `registry.example.com/app@${digest}`,
      `docker.io/library/app@${digest}`,
      `127.0.0.1:5000/app@${digest}`,
    ]);
    // The name as written is kept: library/ is not dropped for other registries.
    expect(candidatesOf('library/app', config)[0]).toBe('registry.example.com/library/app:latest');
  });

  it('uses an alias (exact match on the name without tag or digest) before the search registries', () => {
    const config = configuration({
      search: ['a.example.com', 'b.example.com'],
      aliases: { app: 'quay.io/team/app', 'ns/tool': 'docker.io/tool', other: 'localhost/other' },
      mode: 'enforcing',
    });
    const resolution = resolveShortName('app:1.2', config, { purpose: 'pull' });
    expect(resolution.rationale).toBe('alias');
    expect(resolution.candidates.map(String)).toEqual(['quay.io/team/app:1.2']);
    expect(describeShortNameResolution(resolution)).toBe(
      'Resolved "app" as an alias (/test/registries.conf)',
    );
    expect(candidatesOf(`app@${digest}`, config, 'push')).toEqual([`quay.io/team/app@${digest}`]);
    expect(candidatesOf('ns/tool', config)).toEqual(['docker.io/library/tool:latest']);
    expect(candidatesOf('other', config)).toEqual(['localhost/other:latest']);
    // Not an exact match: the search registries apply (and enforcing refuses two of them).
    expect(() => candidatesOf('tool', config)).toThrow(
      /a\.example\.com\/tool:latest, b\.example\.com\/tool:latest/,
    );
  });

  it('consults the alias cache first; an empty value there hides registries.conf’s alias', () => {
    const config = configuration({ search: ['search.example.com'], aliases: { app: 'quay.io/conf/app' } });
    const aliasCache = {
      path: '/cache/short-name-aliases.conf',
      aliases: { app: 'quay.io/cache/app', gone: '' },
    };
    expect(resolveShortName('app', config, { purpose: 'pull', aliasCache }).candidates.map(String)).toEqual([
      'quay.io/cache/app:latest',
    ]);
    const hidden = configuration({ search: ['search.example.com'], aliases: { gone: 'quay.io/conf/gone' } });
    const resolution = resolveShortName('gone', hidden, { purpose: 'pull', aliasCache });
    expect(resolution.rationale).toBe('search-registries');
    expect(resolution.candidates.map(String)).toEqual(['search.example.com/gone:latest']);
    // An empty alias value in registries.conf is no alias either.
    expect(candidatesOf('x', configuration({ aliases: { x: '' } }))).toEqual(['docker.io/library/x:latest']);
  });

  it('applies the short-name mode to several search candidates when reading', () => {
    const search = ['one.example.com', 'two.example.com'];
    expect(candidatesOf('app', configuration({ search, mode: 'permissive' }))).toEqual([
      'one.example.com/app:latest',
      'two.example.com/app:latest',
    ]);
    expect(candidatesOf('app', configuration({ search, mode: 'disabled' }))).toHaveLength(2);
    const enforcing = configuration({ search, mode: 'enforcing' });
    expect(() => candidatesOf('app', enforcing)).toThrow(
      /short-name resolution enforced but cannot prompt without a TTY: short name "app" has 2 candidates .*\(one\.example\.com\/app:latest, two\.example\.com\/app:latest\)/,
    );
    try {
      candidatesOf('app', enforcing);
    } catch (error) {
      expect((error as { code?: string }).code).toBe(ErrorCodes.InvalidReference);
    }
    // One search registry is not ambiguous, even when enforcing.
    expect(candidatesOf('app', configuration({ search: ['one.example.com'], mode: 'enforcing' }))).toEqual([
      'one.example.com/app:latest',
    ]);
  });

  it('needs exactly one candidate when writing, in every mode', () => {
    const search = ['one.example.com', 'two.example.com'];
    for (const mode of ['disabled', 'permissive', 'enforcing'] as const) {
      expect(() => candidatesOf('app:v1', configuration({ search, mode }), 'push'), mode).toThrow(
        /short name "app:v1" is ambiguous for writing: .*2 candidates \(one\.example\.com\/app:v1, two\.example\.com\/app:v1\)/,
      );
    }
    expect(candidatesOf('app:v1', configuration({ search: ['one.example.com'] }), 'push')).toEqual([
      'one.example.com/app:v1',
    ]);
  });

  it('refuses invalid aliases with containers/image’s reasons', () => {
    const resolve = (aliases: Record<string, string>) => () =>
      candidatesOf('anything', configuration({ aliases }));
    expect(resolve({ app: 'app2' })).toThrow(/invalid alias "app2": must contain registry and repository/);
    expect(resolve({ app: 'quay.io/app:tag' })).toThrow(
      /invalid alias "quay.io\/app:tag": must not contain tag/,
    );
    expect(resolve({ app: `quay.io/app@${digest}` })).toThrow(/must not contain digest/);
    expect(resolve({ 'quay.io/app': 'quay.io/app' })).toThrow(
      /invalid short name "quay.io\/app": must not contain registry/,
    );
    expect(resolve({ 'app:1': 'quay.io/app' })).toThrow(/invalid short name "app:1": must not contain tag/);
  });
});

describe('the short-name alias cache file', () => {
  let directory: string;
  beforeAll(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  });
  afterAll(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('lives where containers/image keeps it', () => {
    expect(shortNameAliasCachePath({ effectiveUserId: 0, environment: { HOME: '/home/u' } })).toBe(
      '/var/cache/containers/short-name-aliases.conf',
    );
    expect(shortNameAliasCachePath({ effectiveUserId: 1000, environment: { HOME: '/home/u' } })).toBe(
      '/home/u/.cache/containers/short-name-aliases.conf',
    );
    expect(
      shortNameAliasCachePath({
        effectiveUserId: 1000,
        environment: { HOME: '/home/u', XDG_CACHE_HOME: '/xdg' },
      }),
    ).toBe('/xdg/containers/short-name-aliases.conf');
  });

  it('reads [aliases], treats a missing file as empty and refuses invalid entries', async () => {
    const file = path.join(directory, 'short-name-aliases.conf');
    await writeFile(file, '[aliases]\n  app = "quay.io/team/app"\n  gone = ""\n');
    expect(await loadShortNameAliasCache(file)).toEqual({
      path: file,
      aliases: { app: 'quay.io/team/app', gone: '' },
    });
    expect(await loadShortNameAliasCache(path.join(directory, 'missing.conf'))).toEqual({
      path: path.join(directory, 'missing.conf'),
      aliases: {},
    });
    await writeFile(file, '[aliases]\n  app = "app"\n');
    await expect(loadShortNameAliasCache(file)).rejects.toThrow(
      /loading short-name aliases config file .*short-name-aliases\.conf: invalid alias "app": must contain registry and repository/,
    );
    await writeFile(file, '[aliases\n');
    await expect(loadShortNameAliasCache(file)).rejects.toThrow(/loading short-name aliases config file/);
  });
});
