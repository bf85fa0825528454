import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseNormalizedNamed } from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  findRegistryConfiguration,
  loadRegistriesConfiguration,
  matchRegistryPrefix,
  parseRegistriesConf,
  pullSourcesFor,
  type RegistriesConfiguration,
} from './registries-conf.js';

const manPageExample = `
unqualified-search-registries = ["example.com"]

[[registry]]
prefix = "example.com/foo"
insecure = false
blocked = false
location = "internal-registry-for-example.com/bar"

[[registry.mirror]]
location = "example-mirror-0.local/mirror-for-foo"

[[registry.mirror]]
location = "example-mirror-1.local/mirrors/foo"
insecure = true

[[registry]]
location = "registry.com"

[[registry.mirror]]
location = "mirror.registry.com"
`;

function configurationOf(text: string): RegistriesConfiguration {
  const parsed = parseRegistriesConf(text, 'test.conf');
  return {
    registries: parsed.registries,
    unqualifiedSearchRegistries: parsed.unqualifiedSearchRegistries ?? [],
    shortNameMode: parsed.shortNameMode ?? 'permissive',
    aliases: parsed.aliases,
    credentialHelpers: ['containers-auth.json'],
    files: ['test.conf'],
  };
}

const sources = (configuration: RegistriesConfiguration, reference: string) => {
  const parsed = parseNormalizedNamed(reference);
  return pullSourcesFor(findRegistryConfiguration(configuration, parsed.name), parsed).map(
    (source) => `${source.reference}${source.endpoint.insecure ? ' (insecure)' : ''}`,
  );
};

describe('registries.conf', () => {
  it('gives the man page example’s pull order', () => {
    const configuration = configurationOf(manPageExample);
    expect(sources(configuration, 'example.com/foo/image:latest')).toEqual([
      'example-mirror-0.local/mirror-for-foo/image:latest',
      'example-mirror-1.local/mirrors/foo/image:latest (insecure)',
      'internal-registry-for-example.com/bar/image:latest',
    ]);
    expect(sources(configuration, 'registry.com/image:latest')).toEqual([
      'mirror.registry.com/image:latest',
      'registry.com/image:latest',
    ]);
    expect(sources(configuration, 'other.com/image:latest')).toEqual(['other.com/image:latest']);
    expect(configuration.unqualifiedSearchRegistries).toEqual(['example.com']);
  });

  it('honours mirror-by-digest-only and pull-from-mirror', () => {
    const configuration = configurationOf(`
[[registry]]
location = "a.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.a.io"

[[registry]]
location = "b.io"
[[registry.mirror]]
location = "digest.b.io"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tag.b.io"
pull-from-mirror = "tag-only"
`);
    const digest = 'sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
    expect(sources(configuration, 'a.io/x:t')).toEqual(['a.io/x:t']);
    expect(sources(configuration, `a.io/x@${digest}`)).toEqual([`m.a.io/x@${digest}`, `a.io/x@${digest}`]);
    expect(sources(configuration, 'b.io/x:t')).toEqual(['tag.b.io/x:t', 'b.io/x:t']);
    expect(sources(configuration, `b.io/x@${digest}`)).toEqual([
      `digest.b.io/x@${digest}`,
      `b.io/x@${digest}`,
    ]);
  });

  it('matches the longest prefix, on component boundaries, and wildcard domains', () => {
    const configuration = configurationOf(`
[[registry]]
location = "example.com"
insecure = true
[[registry]]
prefix = "example.com/team"
location = "team.example.net"
[[registry]]
prefix = "*.blocked.io"
blocked = true
`);
    expect(findRegistryConfiguration(configuration, 'example.com/team/app')?.prefix).toBe('example.com/team');
    expect(findRegistryConfiguration(configuration, 'example.com/teamwork/app')?.prefix).toBe('example.com');
    expect(findRegistryConfiguration(configuration, 'a.b.blocked.io/x')?.blocked).toBe(true);
    expect(findRegistryConfiguration(configuration, 'blocked.io/x')).toBeUndefined();
    expect(sources(configuration, 'x.blocked.io/app:1')).toEqual(['x.blocked.io/app:1']);
    expect(matchRegistryPrefix('example.com:5000/x', 'example.com')).toBe(11);
    expect(matchRegistryPrefix('example.community/x', 'example.com')).toBe(-1);
  });

  it('converts the v1 format and refuses invalid settings with the file name', () => {
    const v1 = configurationOf(`
[registries.search]
registries = ["quay.io"]
[registries.insecure]
registries = ["insecure.local:5000"]
[registries.block]
registries = ["bad.io"]
`);
    expect(v1.unqualifiedSearchRegistries).toEqual(['quay.io']);
    expect(findRegistryConfiguration(v1, 'insecure.local:5000/x')).toMatchObject({
      insecure: true,
      blocked: false,
    });
    expect(findRegistryConfiguration(v1, 'bad.io/x')).toMatchObject({ blocked: true });
    const refuse = (text: string, message: RegExp) =>
      expect(() => parseRegistriesConf(text, 'bad.conf')).toThrow(message);
    refuse(
      '[[registry]]\ninsecure = true',
      /bad\.conf: invalid condition: both location and prefix are unset/,
    );
    refuse('[[registry]]\nlocation = "https://x.io"', /URI schemes are not supported/);
    refuse('[[registry]]\nprefix = "*.x.io/ns"', /Wildcarded prefix should be in the format/);
    refuse(
      '[[registry]]\nlocation = "x.io"\n[[registry.mirror]]\nlocation = "m"\npull-from-mirror = "sometimes"',
      /unsupported pull-from-mirror/,
    );
    refuse(
      '[[registry]]\nlocation = "x.io"\ninsecure = true\n[[registry]]\nprefix = "y.io"\nlocation = "x.io"',
      /conflicting 'insecure'/,
    );
    refuse('unqualified-search-registries = ["not a host"]', /Invalid unqualified-search-registries entry/);
    refuse('short-name-mode = "sometimes"', /invalid short name mode/);
    refuse('registry = 1 x', /bad\.conf: line 1/);
    expect(() => parseRegistriesConf('[registries.search]\nregistries = []', 'drop.conf', true)).toThrow(
      /must be in v2 format/,
    );
  });
});

describe('loadRegistriesConfiguration', () => {
  let directory: string;
  beforeEach(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  });
  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  const write = async (relative: string, text: string) => {
    const file = path.join(directory, relative);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, text);
  };
  const options = () => ({
    environment: {},
    homeDirectory: path.join(directory, 'home'),
    systemPath: path.join(directory, 'etc/registries.conf'),
    systemDirectory: path.join(directory, 'etc/registries.conf.d'),
  });

  it('merges the system file with drop-ins in order', async () => {
    await write(
      'etc/registries.conf',
      'unqualified-search-registries = ["a.io"]\n[aliases]\n"x" = "a.io/x"\n"y" = "a.io/y"\n[[registry]]\nlocation = "r.io"\n',
    );
    await write(
      'etc/registries.conf.d/10-first.conf',
      '[[registry]]\nlocation = "r.io"\ninsecure = true\n[aliases]\n"y" = ""\n',
    );
    await write('etc/registries.conf.d/20-second.conf', 'short-name-mode = "enforcing"\n');
    await write('etc/registries.conf.d/ignored.txt', 'not toml at all [');
    await write(
      'home/.config/containers/registries.conf.d/30-user.conf',
      'unqualified-search-registries = ["b.io"]\n',
    );
    const configuration = await loadRegistriesConfiguration(options());
    expect(configuration.unqualifiedSearchRegistries).toEqual(['b.io']);
    expect(configuration.shortNameMode).toBe('enforcing');
    expect(configuration.aliases).toEqual({ x: 'a.io/x' });
    expect(findRegistryConfiguration(configuration, 'r.io/app')?.insecure).toBe(true);
    expect(configuration.files.map((file) => path.relative(directory, file))).toEqual([
      'etc/registries.conf',
      'etc/registries.conf.d/10-first.conf',
      'etc/registries.conf.d/20-second.conf',
      'home/.config/containers/registries.conf.d/30-user.conf',
    ]);
  });

  it('uses the user file instead of the system file and directory when it exists', async () => {
    await write('etc/registries.conf', 'unqualified-search-registries = ["system.io"]\n');
    await write('etc/registries.conf.d/10.conf', 'short-name-mode = "disabled"\n');
    await write('home/.config/containers/registries.conf', 'unqualified-search-registries = ["user.io"]\n');
    const configuration = await loadRegistriesConfiguration(options());
    expect(configuration.unqualifiedSearchRegistries).toEqual(['user.io']);
    expect(configuration.shortNameMode).toBe('permissive');
  });

  it('reads an explicit file, which must exist, and defaults when no file exists', async () => {
    await write('explicit.conf', '[[registry]]\nlocation = "e.io"\nblocked = true\n');
    const explicit = await loadRegistriesConfiguration({
      ...options(),
      registriesConfPath: path.join(directory, 'explicit.conf'),
    });
    expect(findRegistryConfiguration(explicit, 'e.io/x')?.blocked).toBe(true);
    const fromEnvironment = await loadRegistriesConfiguration({
      ...options(),
      environment: { CONTAINERS_REGISTRIES_CONF: path.join(directory, 'explicit.conf') },
    });
    expect(fromEnvironment.registries).toHaveLength(1);
    await expect(
      loadRegistriesConfiguration({ ...options(), registriesConfPath: path.join(directory, 'missing.conf') }),
    ).rejects.toThrow(/missing\.conf: no such file/);
    expect(await loadRegistriesConfiguration(options())).toEqual({
      registries: [],
      unqualifiedSearchRegistries: [],
      shortNameMode: 'permissive',
      aliases: {},
      credentialHelpers: ['containers-auth.json'],
      files: [],
    });
  });
});
