import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeTestCredentialHelper } from '@gantry/core/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type AuthFileSearchOptions,
  authFileSearchPaths,
  authFilesCredentialHelper,
  credentialsLookupKeys,
  findRegistryCredentials,
  primaryAuthFilePath,
  readAuthFile,
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
      /credential helper docker-credential-gantry-no-such-helper get: docker-credential-gantry-no-such-helper is not on PATH/,
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

  it('refuses invalid keys', async () => {
    const file = path.join(directory, 'auth.json');
    await expect(
      storeRegistryCredentials('https://reg.local', { username: 'u', password: 'p' }, { authFilePath: file }),
    ).rejects.toThrow(/http\[s\]:\/\/ prefix/);
    await expect(stat(file)).rejects.toThrow();
  });
});

describe('credential helpers (docker-credential-<name> get/store/erase/list)', () => {
  let directory: string;
  let helperDirectory: string;
  let file: string;
  let options: AuthFileSearchOptions;
  const secret = 'pa"ss\\word with spaces';
  beforeEach(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
    helperDirectory = path.join(directory, 'bin');
    await mkdir(helperDirectory);
    file = path.join(directory, 'auth.json');
    options = {
      authFilePath: file,
      environment: { PATH: `${helperDirectory}:${process.env.PATH}`, HOME: directory },
    };
  });
  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('login stores through credHelpers: the file keeps no secret, the helper has it, get reads it back', async () => {
    const helper = await writeTestCredentialHelper(helperDirectory, 'vault');
    await writeFile(
      file,
      JSON.stringify({
        auths: { 'h.local': { auth: encode('old', 'stale-secret') }, 'o.local': { auth: encode('o', 'p') } },
        credHelpers: { 'h.local': 'vault' },
      }),
    );
    expect(await storeRegistryCredentials('h.local', { username: 'alice', password: secret }, options)).toBe(
      'credential helper: vault',
    );
    expect(await helper.entries()).toEqual({ 'h.local': { Username: 'alice', Secret: secret } });
    const text = await readFile(file, 'utf8');
    expect(text).not.toContain(Buffer.from(`alice:${secret}`).toString('base64'));
    // The stale plain-text entry is gone, other entries and credHelpers stay.
    expect(JSON.parse(text)).toEqual({
      auths: { 'o.local': { auth: encode('o', 'p') } },
      credHelpers: { 'h.local': 'vault' },
    });
    expect(await findRegistryCredentials('h.local/some/repo', options)).toEqual({
      username: 'alice',
      password: secret,
      source: 'docker-credential-vault',
    });
    // Registries the helper is not named for still go to the file.
    expect(await storeRegistryCredentials('p.local', { username: 'u', password: 'q' }, options)).toBe(file);
    expect(JSON.parse(await readFile(file, 'utf8')).auths['p.local']).toEqual({ auth: encode('u', 'q') });
    expect(await helper.calls()).toEqual(['store h.local', 'get h.local']);
  });

  it('refuses a namespaced key for a registry whose credentials a helper holds', async () => {
    const helper = await writeTestCredentialHelper(helperDirectory, 'vault');
    await writeFile(file, JSON.stringify({ credHelpers: { 'h.local': 'vault' } }));
    const failure = storeRegistryCredentials('h.local/team', { username: 'u', password: 'p' }, options);
    await expect(failure).rejects.toMatchObject({ code: 'ERR_GANTRY_NOT_SUPPORTED' });
    await expect(failure).rejects.toThrow(/namespaced key is not supported for credential helper vault/);
    expect(await helper.calls()).toEqual([]);
  });

  it('follows registries.conf credential-helpers when storing, falling back in order', async () => {
    const helper = await writeTestCredentialHelper(helperDirectory, 'keyring');
    const ordered = { ...options, credentialHelpers: ['keyring', authFilesCredentialHelper] };
    expect(await storeRegistryCredentials('k.local', { username: 'u', password: secret }, ordered)).toBe(
      'credential helper: keyring',
    );
    await expect(stat(file)).rejects.toThrow();
    expect(await findRegistryCredentials('k.local/x', ordered)).toMatchObject({
      username: 'u',
      password: secret,
    });
    // Helpers hold registries only: a namespaced key falls to the next store, the auth file.
    expect(await storeRegistryCredentials('k.local/ns', { username: 'v', password: 'w' }, ordered)).toBe(
      file,
    );
    // When no store accepts them, every failure is named.
    await helper.failOn('store');
    const onlyHelpers = { ...options, credentialHelpers: ['keyring', 'gantry-absent'] };
    const failure = storeRegistryCredentials('k.local', { username: 'u', password: secret }, onlyHelpers);
    await expect(failure).rejects.toThrow(
      /^storing credentials for k\.local: credential helper docker-credential-keyring store: exit status 1: .*keyring is locked.*; credential helper docker-credential-gantry-absent store: docker-credential-gantry-absent is not on PATH/,
    );
  });

  it('never puts the secret into errors of a failing helper', async () => {
    const helper = await writeTestCredentialHelper(helperDirectory, 'vault');
    await writeFile(file, JSON.stringify({ credHelpers: { 'h.local': 'vault' } }));
    await helper.failOn('store');
    const error = await storeRegistryCredentials(
      'h.local',
      { username: 'u', password: secret },
      options,
    ).then(
      () => undefined,
      (caught: unknown) => caught as Error,
    );
    expect(error?.message).toMatch(/docker-credential-vault store: exit status 1: .*keyring is locked/);
    expect(error?.message).toContain('<redacted>');
    expect(error?.message).not.toContain(secret);
    expect(error?.message).not.toContain('input was');
    expect(JSON.stringify(error)).not.toContain('pa\\"ss');
    expect(await helper.entries()).toEqual({});
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ credHelpers: { 'h.local': 'vault' } });
  });

  it('logout erases from the helper and the file; "not logged in" when neither had credentials', async () => {
    const helper = await writeTestCredentialHelper(helperDirectory, 'vault');
    await writeFile(file, JSON.stringify({ credHelpers: { 'h.local': 'vault' } }));
    await storeRegistryCredentials('h.local', { username: 'u', password: secret }, options);
    expect(await removeRegistryCredentials('h.local', options)).toBe(true);
    expect(await helper.entries()).toEqual({});
    expect(await findRegistryCredentials('h.local', options)).toBeUndefined();
    expect(await removeRegistryCredentials('h.local', options)).toBe(false);
    // A plain-text entry (written before the helper was configured) goes too.
    await writeFile(
      file,
      JSON.stringify({
        auths: { 'h.local': { auth: encode('a', 'b') } },
        credHelpers: { 'h.local': 'vault' },
      }),
    );
    expect(await removeRegistryCredentials('h.local', options)).toBe(true);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({
      auths: {},
      credHelpers: { 'h.local': 'vault' },
    });
    expect(await helper.calls()).toEqual([
      'store h.local',
      'erase h.local',
      'get h.local',
      'erase h.local',
      'erase h.local',
    ]);
  });

  it('logout reports a failing helper by name and leaves the file alone', async () => {
    const helper = await writeTestCredentialHelper(helperDirectory, 'vault');
    const contents = {
      auths: { 'h.local': { auth: encode('a', 'b') } },
      credHelpers: { 'h.local': 'vault' },
    };
    await writeFile(file, JSON.stringify(contents));
    await helper.failOn('erase');
    await expect(removeRegistryCredentials('h.local', options)).rejects.toThrow(
      /^removing credentials for h\.local: updating .*auth\.json: credential helper docker-credential-vault erase: exit status 1: "keyring is locked/,
    );
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual(contents);
    await writeFile(file, JSON.stringify({ credHelpers: { 'h.local': 'gantry-absent' } }));
    await expect(removeRegistryCredentials('h.local', options)).rejects.toThrow(
      /docker-credential-gantry-absent is not on PATH/,
    );
  });

  it('logout of an external credential-helpers entry erases there, skipping namespaced keys', async () => {
    const helper = await writeTestCredentialHelper(helperDirectory, 'keyring');
    const ordered = { ...options, credentialHelpers: [authFilesCredentialHelper, 'keyring'] };
    await storeRegistryCredentials(
      'k.local',
      { username: 'u', password: 'p' },
      { ...ordered, credentialHelpers: ['keyring'] },
    );
    await storeRegistryCredentials('k.local', { username: 'f', password: 'g' }, ordered);
    // Every store is cleared, not only the first.
    expect(await removeRegistryCredentials('k.local', ordered)).toBe(true);
    expect(await helper.entries()).toEqual({});
    expect(JSON.parse(await readFile(file, 'utf8')).auths).toEqual({});
    expect(await removeRegistryCredentials('k.local/ns', ordered)).toBe(false);
    expect(await helper.calls()).toEqual(['store k.local', 'erase k.local']);
  });

  it('logout --all erases every credHelpers registry and every listed server, keeping the configuration', async () => {
    const vault = await writeTestCredentialHelper(helperDirectory, 'vault');
    const keyring = await writeTestCredentialHelper(helperDirectory, 'keyring');
    await writeFile(
      file,
      JSON.stringify({
        auths: { 'f.local': { auth: encode('f', 'g') } },
        credHelpers: { 'h.local': 'vault', 'i.local': 'vault' },
        credsStore: 'desktop',
      }),
    );
    await storeRegistryCredentials('h.local', { username: 'u', password: 'p' }, options);
    const withKeyring = {
      ...options,
      credentialHelpers: [authFilesCredentialHelper, 'keyring', 'gantry-absent'],
    };
    for (const registry of ['k1.local', 'k2.local']) {
      await storeRegistryCredentials(
        registry,
        { username: 'u', password: 'p' },
        { ...options, credentialHelpers: ['keyring'] },
      );
    }
    // i.local holds nothing ("credentials not found" is fine); gantry-absent is not installed (skipped).
    await removeAllRegistryCredentials(withKeyring);
    expect(await vault.entries()).toEqual({});
    expect(await keyring.entries()).toEqual({});
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({
      auths: {},
      credHelpers: { 'h.local': 'vault', 'i.local': 'vault' },
      credsStore: 'desktop',
    });
    expect((await vault.calls()).slice(1).sort()).toEqual(['erase h.local', 'erase i.local']);
    expect((await keyring.calls()).slice(2).sort()).toEqual([
      'erase k1.local',
      'erase k2.local',
      'list unused',
    ]);
    // A failing helper is reported and the file is left as it was.
    await writeFile(
      file,
      JSON.stringify({
        auths: { 'f.local': { auth: encode('f', 'g') } },
        credHelpers: { 'h.local': 'vault' },
      }),
    );
    await vault.failOn('erase');
    await expect(removeAllRegistryCredentials(options)).rejects.toThrow(
      /^removing all credentials: updating .*: credential helper docker-credential-vault erase: exit status 1/,
    );
    expect(JSON.parse(await readFile(file, 'utf8')).auths).toEqual({ 'f.local': { auth: encode('f', 'g') } });
  });

  it('names the helper and the problem for answers outside the protocol', async () => {
    const program = path.join(helperDirectory, 'docker-credential-odd');
    await writeFile(file, JSON.stringify({ credHelpers: { 'o.local': 'odd' } }));
    await writeFile(program, '#!/bin/sh\necho "this is not json"\n', { mode: 0o755 });
    await expect(findRegistryCredentials('o.local', options)).rejects.toThrow(
      /credential helper docker-credential-odd get: invalid answer \(not JSON\)/,
    );
    await writeFile(program, '#!/bin/sh\necho \'{"Username":"u"}\'\n', { mode: 0o755 });
    await expect(findRegistryCredentials('o.local', options)).rejects.toThrow(
      /credential helper docker-credential-odd get: invalid answer \(no Secret\)/,
    );
    await writeFile(program, '#!/bin/sh\necho \'{"Username":"u","Secret":"leaked"}\'\nexit 3\n', {
      mode: 0o755,
    });
    const failure = findRegistryCredentials('o.local', options);
    await expect(failure).rejects.toThrow(
      /credential helper docker-credential-odd get: exit status 3: \(output withheld: it may contain credentials\)/,
    );
    await expect(failure).rejects.not.toThrow(/leaked/);
    await writeFile(program, '#!/bin/sh\necho \'{"Username":"<token>","Secret":"refresh"}\'\n', {
      mode: 0o755,
    });
    expect(await findRegistryCredentials('o.local', options)).toEqual({
      username: '',
      password: '',
      identityToken: 'refresh',
      source: 'docker-credential-odd',
    });
    await chmod(program, 0o644);
    await expect(findRegistryCredentials('o.local', options)).rejects.toThrow(
      /credential helper docker-credential-odd get: docker-credential-odd is not executable/,
    );
  });
});

describe('readAuthFile', () => {
  let directory: string;
  beforeEach(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'auth-read-'));
  });
  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('reads a file again only when it changed, always when it changed in the last 2 s, and a removed file as empty', async () => {
    const location = { path: path.join(directory, 'auth.json'), legacyFormat: false };
    const write = (password: string) =>
      writeFile(location.path, JSON.stringify({ auths: { 'r.example': { auth: encode('u', password) } } }));
    const password = async () => (await readAuthFile(location)).auths['r.example']?.auth;
    expect(await readAuthFile(location)).toEqual({ auths: {}, credHelpers: {} });
    // Just written: read each time, since its times may not move on the next write (same size here).
    await write('first');
    expect(await password()).toBe(encode('u', 'first'));
    await write('other');
    expect(await password()).toBe(encode('u', 'other'));
    // Unchanged for more than 2 s: read once.
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    const settled = await readAuthFile(location);
    expect(await readAuthFile(location)).toBe(settled);
    await write('third');
    expect(await password()).toBe(encode('u', 'third'));
    await rm(location.path);
    expect(await readAuthFile(location)).toEqual({ auths: {}, credHelpers: {} });
    await writeFile(location.path, '{not json');
    await expect(readAuthFile(location)).rejects.toThrow(/invalid JSON/);
  });
});
