import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  authFileSearchPaths,
  credentialsLookupKeys,
  findRegistryCredentials,
  primaryAuthFilePath,
  removeAllRegistryCredentials,
  removeRegistryCredentials,
  storeRegistryCredentials,
  validateCredentialsKey,
} from './auth-file.js';

const encode = (user: string, password: string) => Buffer.from(`${user}:${password}`).toString('base64');

describe('authFileSearchPaths', () => {
  it('lists the files in containers-auth.json(5) order', () => {
    const paths = authFileSearchPaths({
      environment: { XDG_RUNTIME_DIR: '/run/user/7' },
      homeDirectory: '/home/u',
    });
    expect(paths).toEqual([
      { path: '/run/user/7/containers/auth.json', legacyFormat: false },
      { path: '/home/u/.config/containers/auth.json', legacyFormat: false },
      { path: '/home/u/.docker/config.json', legacyFormat: false },
      { path: '/home/u/.dockercfg', legacyFormat: true },
    ]);
  });

  it('honours XDG_CONFIG_HOME, DOCKER_CONFIG and the per-uid default', () => {
    const paths = authFileSearchPaths({
      environment: { XDG_CONFIG_HOME: '/cfg', DOCKER_CONFIG: '/dc' },
      homeDirectory: '/home/u',
      userId: 1234,
    });
    expect(paths.map((location) => location.path)).toEqual([
      '/run/containers/1234/auth.json',
      '/cfg/containers/auth.json',
      '/dc/config.json',
      '/home/u/.dockercfg',
    ]);
  });

  it('reads only the explicit file (--authfile, then REGISTRY_AUTH_FILE)', () => {
    expect(
      authFileSearchPaths({ authFilePath: '/a.json', environment: { REGISTRY_AUTH_FILE: '/b.json' } }),
    ).toEqual([{ path: '/a.json', legacyFormat: false }]);
    expect(authFileSearchPaths({ environment: { REGISTRY_AUTH_FILE: '/b.json' } })).toEqual([
      { path: '/b.json', legacyFormat: false },
    ]);
    expect(
      primaryAuthFilePath({ environment: { REGISTRY_AUTH_FILE: '/b.json', XDG_RUNTIME_DIR: '/r' } }),
    ).toBe('/b.json');
    expect(primaryAuthFilePath({ environment: { XDG_RUNTIME_DIR: '/r' } })).toBe('/r/containers/auth.json');
  });
});

describe('credentials keys', () => {
  it('are looked up from the most specific namespace to the registry', () => {
    expect(credentialsLookupKeys('reg.local:5000/ns/user/image')).toEqual([
      'reg.local:5000/ns/user/image',
      'reg.local:5000/ns/user',
      'reg.local:5000/ns',
      'reg.local:5000',
    ]);
  });

  it('refuses URLs, digests and tags', () => {
    expect(() => validateCredentialsKey('https://quay.io')).toThrow(/http\[s\]:\/\/ prefix/);
    expect(() => validateCredentialsKey('quay.io/a@sha256:00')).toThrow(/'@'/);
    expect(() => validateCredentialsKey('quay.io/a:tag')).toThrow(/':' character after host/);
    expect(() => validateCredentialsKey('localhost:5000/a')).not.toThrow();
  });
});

describe('findRegistryCredentials', () => {
  let directory: string;
  beforeEach(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  });
  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  const options = () => ({
    environment: { XDG_RUNTIME_DIR: path.join(directory, 'run') },
    homeDirectory: path.join(directory, 'home'),
  });

  async function writeJson(relative: string, value: unknown): Promise<void> {
    const file = path.join(directory, relative);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, JSON.stringify(value));
  }

  it('prefers the most specific namespace, then falls back to the registry', async () => {
    await writeJson('run/containers/auth.json', {
      auths: {
        'reg.local/team/app': { auth: encode('app', 'p1') },
        'reg.local/team': { auth: encode('team', 'p2') },
        'reg.local': { auth: encode('all', 'p3') },
      },
    });
    expect(await findRegistryCredentials('reg.local/team/app', options())).toMatchObject({
      username: 'app',
      password: 'p1',
    });
    expect(await findRegistryCredentials('reg.local/team/other', options())).toMatchObject({
      username: 'team',
      password: 'p2',
    });
    expect(await findRegistryCredentials('reg.local/solo', options())).toMatchObject({
      username: 'all',
      password: 'p3',
    });
    expect(await findRegistryCredentials('other.local/x', options())).toBeUndefined();
  });

  it('searches the files in order and the first with credentials wins', async () => {
    await writeJson('home/.config/containers/auth.json', {
      auths: { 'reg.local': { auth: encode('config', 'c') } },
    });
    await writeJson('home/.docker/config.json', {
      auths: {
        'https://reg.local/v1/': { auth: encode('docker', 'd') },
        'https://index.docker.io/v1/': { auth: encode('hub', 'h') },
      },
    });
    await writeJson('home/.dockercfg', { 'legacy.local': { auth: encode('legacy', 'l') } });
    const found = await findRegistryCredentials('reg.local/x', options());
    expect(found).toEqual({
      username: 'config',
      password: 'c',
      source: path.join(directory, 'home/.config/containers/auth.json'),
    });
    expect(await findRegistryCredentials('docker.io/library/busybox', options())).toMatchObject({
      username: 'hub',
    });
    expect(await findRegistryCredentials('legacy.local/x', options())).toMatchObject({
      username: 'legacy',
      password: 'l',
    });
  });

  it('keeps colons in passwords, skips entries without one, and reads identity tokens', async () => {
    await writeJson('run/containers/auth.json', {
      auths: {
        'a.local': { auth: encode('user', 'pa:ss') },
        'b.local': { auth: Buffer.from('nocolon').toString('base64') },
        'c.local': { auth: encode('', ''), identitytoken: 'refresh-token' },
      },
    });
    expect(await findRegistryCredentials('a.local', options())).toMatchObject({
      username: 'user',
      password: 'pa:ss',
    });
    expect(await findRegistryCredentials('b.local', options())).toBeUndefined();
    expect(await findRegistryCredentials('c.local', options())).toMatchObject({
      identityToken: 'refresh-token',
    });
  });

  it('asks credential helpers named by credHelpers and credsStore', async () => {
    await writeJson('run/containers/auth.json', {
      credHelpers: { 'h.local': 'pass' },
      credsStore: 'desktop',
      auths: {},
    });
    const calls: string[] = [];
    const runCredentialHelper = async (name: string, registry: string) => {
      calls.push(`${name} ${registry}`);
      return name === 'pass' ? { username: 'helper', password: 'secret' } : undefined;
    };
    expect(await findRegistryCredentials('h.local/repo', { ...options(), runCredentialHelper })).toEqual({
      username: 'helper',
      password: 'secret',
      source: 'docker-credential-pass',
    });
    expect(
      await findRegistryCredentials('z.local/repo', { ...options(), runCredentialHelper }),
    ).toBeUndefined();
    expect(calls).toEqual(['pass h.local', 'desktop z.local']);
  });

  it('follows registries.conf credential-helpers order', async () => {
    await writeJson('run/containers/auth.json', { auths: { 'r.local': { auth: encode('file', 'f') } } });
    const calls: string[] = [];
    const runCredentialHelper = async (name: string, registry: string) => {
      calls.push(`${name} ${registry}`);
      if (name === 'broken') throw new Error('helper broken failed');
      return name === 'secretservice' && registry === 's.local'
        ? { username: 'ss', password: 'p' }
        : undefined;
    };
    const helpers = {
      ...options(),
      runCredentialHelper,
      credentialHelpers: ['secretservice', 'containers-auth.json'],
    };
    expect(await findRegistryCredentials('s.local/x', helpers)).toMatchObject({
      username: 'ss',
      source: 'docker-credential-secretservice',
    });
    expect(await findRegistryCredentials('r.local/x', helpers)).toMatchObject({ username: 'file' });
    expect(calls).toEqual(['secretservice s.local', 'secretservice r.local']);
    const withBroken = { ...helpers, credentialHelpers: ['broken', 'containers-auth.json'] };
    expect(await findRegistryCredentials('r.local/x', withBroken)).toMatchObject({ username: 'file' });
    await expect(findRegistryCredentials('none.local/x', withBroken)).rejects.toThrow(
      /errors looking up credentials for none.local\/x: helper broken failed/,
    );
  });

  it('reports a malformed file by name without quoting it', async () => {
    await writeFile(path.join(directory, 'bad.json'), '{"auths": {"x": {"auth": "c2VjcmV0"}');
    await expect(
      findRegistryCredentials('x', { authFilePath: path.join(directory, 'bad.json') }),
    ).rejects.toThrow(/bad\.json: invalid JSON$/);
  });

  it('reports a missing credential helper program', async () => {
    await writeJson('run/containers/auth.json', { credHelpers: { 'h.local': 'gantry-no-such-helper' } });
    await expect(findRegistryCredentials('h.local', options())).rejects.toThrow(
      /docker-credential-gantry-no-such-helper: program not found/,
    );
  });
});

describe('storing and removing credentials (login / logout)', () => {
  let directory: string;
  beforeEach(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  });
  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('writes the primary file atomically with mode 0600, keeping other members, and reads it back', async () => {
    const options = {
      environment: { XDG_RUNTIME_DIR: path.join(directory, 'run') },
      homeDirectory: path.join(directory, 'home'),
    };
    const file = path.join(directory, 'run/containers/auth.json');
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(
      file,
      JSON.stringify({
        auths: { 'old.local': { auth: encode('o', 'p') } },
        credsStore: '',
        extra: { kept: true },
      }),
    );
    expect(
      await storeRegistryCredentials('reg.local/team', { username: 'u', password: 'p:w' }, options),
    ).toBe(file);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const written = JSON.parse(await readFile(file, 'utf8'));
    expect(written.extra).toEqual({ kept: true });
    expect(Object.keys(written.auths).sort()).toEqual(['old.local', 'reg.local/team']);
    expect(await findRegistryCredentials('reg.local/team/app', options)).toMatchObject({
      username: 'u',
      password: 'p:w',
    });
    expect(await removeRegistryCredentials('reg.local/team', options)).toBe(true);
    expect(await removeRegistryCredentials('reg.local/team', options)).toBe(false);
    expect(await findRegistryCredentials('reg.local/team/app', options)).toBeUndefined();
    await removeAllRegistryCredentials(options);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({
      auths: {},
      credsStore: '',
      extra: { kept: true },
    });
  });

  it('creates the file and its directories when missing', async () => {
    const file = path.join(directory, 'new/dir/auth.json');
    await storeRegistryCredentials('reg.local', { username: 'u', password: 'p' }, { authFilePath: file });
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({
      auths: { 'reg.local': { auth: encode('u', 'p') } },
    });
  });

  it('refuses invalid keys and registries delegated to a credential helper', async () => {
    const file = path.join(directory, 'auth.json');
    await expect(
      storeRegistryCredentials('https://reg.local', { username: 'u', password: 'p' }, { authFilePath: file }),
    ).rejects.toThrow(/http\[s\]:\/\/ prefix/);
    await writeFile(file, JSON.stringify({ credHelpers: { 'h.local': 'pass' } }));
    await expect(
      storeRegistryCredentials('h.local', { username: 'u', password: 'p' }, { authFilePath: file }),
    ).rejects.toThrow(/docker-credential-pass/);
  });
});
