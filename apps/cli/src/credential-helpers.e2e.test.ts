/**
 * login / logout through Docker credential helpers (`credHelpers` in the auth file, registries.conf
 * `credential-helpers`), against a real htpasswd registry and the real skopeo. The helper is a real
 * peer of the docker-credential-helpers protocol: an executable node script on PATH implementing
 * get/store/erase/list against a JSON file, which skopeo runs too.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  fixturePresets,
  type TestCredentialHelper,
  writeFixtureToOciLayout,
  writeTestCredentialHelper,
} from '@gantry/core/testing';
import { startTestRegistry, type TestRegistry } from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type CliRun, requireTool, runGantry } from './test-support/run.js';

const helperName = 'gantrytest';
const user = 'alice';
const password = 'h3lper "secret" with:colon';
const encodedPassword = Buffer.from(`${user}:${password}`).toString('base64');

let root: string;
let registry: TestRegistry;
let certificates: string;
let helperDirectory: string;
let helper: TestCredentialHelper;
let environment: Record<string, string | undefined>;
let reference: string;

/** The real skopeo, with the test's environment (its PATH finds the helper). */
function skopeo(args: string[]): CliRun {
  const result = spawnSync(requireTool('skopeo'), args, {
    env: environment as NodeJS.ProcessEnv,
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr.toString() };
}

function gantry(args: string[], extra: Record<string, string | undefined> = {}): Promise<CliRun> {
  return runGantry(args, { env: { ...environment, ...extra } });
}

function expectNoSecret(run: CliRun): void {
  for (const text of [run.stdout.toString(), run.stderr]) {
    expect(text).not.toContain(password);
    expect(text).not.toContain('h3lper');
    expect(text).not.toContain(encodedPassword);
    expect(text).not.toContain('input was');
  }
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-'));
  registry = await startTestRegistry({ tls: true, htpasswdUsers: { [user]: password } });
  certificates = registry.certificateDirectory!;
  const image = await buildFixtureImage(fixturePresets.ociMinimal!, { directory: join(root, 'blobs') });
  const layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
  reference = `docker://${registry.host}/private/image:t`;
  const pushed = await runGantry([
    '--insecure-policy',
    'copy',
    '-q',
    '--dest-cert-dir',
    certificates,
    '--dest-creds',
    `${user}:${password}`,
    `oci:${layout}:latest`,
    reference,
  ]);
  if (pushed.code !== 0) throw new Error(`push with --dest-creds failed: ${pushed.stderr}`);
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

let case_ = 0;
let authFile: string;
beforeEach(async () => {
  case_ += 1;
  const caseDirectory = join(root, `case-${case_}`);
  helperDirectory = join(caseDirectory, 'bin');
  await mkdir(helperDirectory, { recursive: true });
  helper = await writeTestCredentialHelper(helperDirectory, helperName);
  const home = join(caseDirectory, 'home');
  environment = {
    ...process.env,
    PATH: `${helperDirectory}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    HOME: home,
    XDG_RUNTIME_DIR: join(home, 'run'),
    XDG_CONFIG_HOME: join(home, 'config'),
    REGISTRY_AUTH_FILE: undefined,
    DOCKER_CONFIG: undefined,
    CONTAINERS_REGISTRIES_CONF: undefined,
  };
  await mkdir(join(home, 'run'), { recursive: true });
  authFile = join(caseDirectory, 'auth.json');
  await writeFile(authFile, JSON.stringify({ auths: {}, credHelpers: { [registry.host]: helperName } }));
});

describe('credHelpers in the auth file', () => {
  it('login stores through the helper; skopeo and gantry read it back through it; logout erases it', async () => {
    const login = await gantry([
      'login',
      '--debug',
      '-v',
      '--authfile',
      authFile,
      '--cert-dir',
      certificates,
      '-u',
      user,
      '-p',
      password,
      registry.host,
    ]);
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout.toString()).toBe(`Used:  credential helper: ${helperName}\nLogin Succeeded!\n`);
    expectNoSecret(login);
    expect(await helper.entries()).toEqual({ [registry.host]: { Username: user, Secret: password } });
    const fileText = await readFile(authFile, 'utf8');
    expect(fileText).not.toContain(encodedPassword);
    expect(JSON.parse(fileText)).toEqual({ auths: {}, credHelpers: { [registry.host]: helperName } });

    // The real skopeo finds the credentials through the same helper.
    const inspected = skopeo(['inspect', '--authfile', authFile, '--cert-dir', certificates, reference]);
    expect(inspected.code, inspected.stderr).toBe(0);
    expect(JSON.parse(inspected.stdout.toString()).Name).toBe(`${registry.host}/private/image`);
    const skopeoGetLogin = skopeo(['login', '--get-login', '--authfile', authFile, registry.host]);
    expect(skopeoGetLogin.stdout.toString()).toBe(`${user}\n`);

    const getLogin = await gantry(['login', '--get-login', '--authfile', authFile, registry.host]);
    expect({ code: getLogin.code, stdout: getLogin.stdout.toString() }).toEqual({
      code: 0,
      stdout: `${user}\n`,
    });
    const again = await gantry(['login', '--authfile', authFile, '--cert-dir', certificates, registry.host]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.toString()).toBe(
      `Authenticating with existing credentials for ${registry.host}\nExisting credentials are valid. Already logged in to ${registry.host}\n`,
    );
    expectNoSecret(again);

    const logout = await gantry(['logout', '--authfile', authFile, registry.host]);
    expect(logout.code, logout.stderr).toBe(0);
    expect(logout.stdout.toString()).toBe(`Removed login credentials for ${registry.host}\n`);
    expect(await helper.entries()).toEqual({});
    expect(await helper.calls()).toContain(`erase ${registry.host}`);

    // containers/common's message. (Debian's skopeo 1.9.3 cannot be compared here: its logout
    // overflows the stack in go-multierror when the helper holds nothing.)
    const twice = await gantry(['logout', '--authfile', authFile, registry.host]);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain(`msg="not logged into ${registry.host}"`);
    const denied = skopeo(['inspect', '--authfile', authFile, '--cert-dir', certificates, reference]);
    expect(denied.code).not.toBe(0);
  });

  it('gantry reads, and logs out of, credentials skopeo login stored through the helper', async () => {
    const login = skopeo([
      'login',
      '--authfile',
      authFile,
      '--cert-dir',
      certificates,
      '-u',
      user,
      '-p',
      password,
      registry.host,
    ]);
    expect(login.code, login.stderr).toBe(0);
    expect(await helper.entries()).toEqual({ [registry.host]: { Username: user, Secret: password } });
    expect(await readFile(authFile, 'utf8')).not.toContain(encodedPassword);

    const getLogin = await gantry(['login', '--get-login', '--authfile', authFile, registry.host]);
    expect(getLogin.stdout.toString()).toBe(`${user}\n`);
    // gantry inspect's registry client runs helpers with the process environment.
    const savedPath = process.env.PATH;
    process.env.PATH = environment.PATH;
    let inspected: CliRun;
    try {
      inspected = await gantry(['inspect', '--authfile', authFile, '--cert-dir', certificates, reference]);
    } finally {
      process.env.PATH = savedPath;
    }
    expect(inspected.code, inspected.stderr).toBe(0);
    expect(JSON.parse(inspected.stdout.toString()).Name).toBe(`${registry.host}/private/image`);

    const logout = await gantry(['logout', '--authfile', authFile, registry.host]);
    expect(logout.code, logout.stderr).toBe(0);
    expect(await helper.entries()).toEqual({});
    expect(skopeo(['login', '--get-login', '--authfile', authFile, registry.host]).code).not.toBe(0);
  });

  it('a wrong password fails the login and stores nothing', async () => {
    const wrong = await gantry([
      'login',
      '--authfile',
      authFile,
      '--cert-dir',
      certificates,
      '-u',
      user,
      '-p',
      'not-the-password',
      registry.host,
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`logging into \\"${registry.host}\\": invalid username/password`);
    expect(wrong.stderr).not.toContain('not-the-password');
    expect(await helper.entries()).toEqual({});
    expect(await helper.calls()).toEqual([`get ${registry.host}`]);
    expect(JSON.parse(await readFile(authFile, 'utf8'))).toEqual({
      auths: {},
      credHelpers: { [registry.host]: helperName },
    });
  });

  it('a failing helper is named, and neither its stdout secret nor its stderr reaches the output', async () => {
    await helper.failOn('store');
    const login = await gantry([
      'login',
      '--debug',
      '--authfile',
      authFile,
      '--cert-dir',
      certificates,
      '-u',
      user,
      '-p',
      password,
      registry.host,
    ]);
    expect(login.code).toBe(1);
    expect(login.stdout.toString()).toBe('');
    expect(login.stderr).toContain(`credential helper docker-credential-${helperName} store: exit status 1`);
    expect(login.stderr).toContain('keyring is locked (was given secret <redacted>)');
    expectNoSecret(login);
    expect(await helper.entries()).toEqual({});
  });

  it('a helper that is not installed is named and said to be missing from PATH', async () => {
    await writeFile(authFile, JSON.stringify({ credHelpers: { [registry.host]: 'gantry-absent' } }));
    const getLogin = await gantry(['login', '--get-login', '--authfile', authFile, registry.host]);
    expect(getLogin.code).toBe(1);
    expect(getLogin.stderr).toContain(
      'credential helper docker-credential-gantry-absent get: docker-credential-gantry-absent is not on PATH',
    );
    const logout = await gantry(['logout', '--authfile', authFile, registry.host]);
    expect(logout.code).toBe(1);
    expect(logout.stderr).toContain(`logging out of \\"${registry.host}\\"`);
    expect(logout.stderr).toContain('docker-credential-gantry-absent is not on PATH');
  });

  it('logout --all erases every registry credHelpers names and empties auths', async () => {
    const other = 'other.registry.invalid';
    await writeFile(
      authFile,
      JSON.stringify({
        auths: { 'plain.invalid': { auth: Buffer.from('p:q').toString('base64') } },
        credHelpers: { [registry.host]: helperName, [other]: helperName },
      }),
    );
    await writeFile(helper.storePath, JSON.stringify({ [other]: { Username: 'o', Secret: 'other-secret' } }));
    const login = await gantry([
      'login',
      '--authfile',
      authFile,
      '--cert-dir',
      certificates,
      '-u',
      user,
      '-p',
      password,
      registry.host,
    ]);
    expect(login.code, login.stderr).toBe(0);
    expect(Object.keys(await helper.entries()).sort()).toEqual([registry.host, other].sort());
    const all = await gantry(['logout', '--all', '--authfile', authFile]);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout.toString()).toBe('Removed login credentials for all registries\n');
    expect(await helper.entries()).toEqual({});
    expect(JSON.parse(await readFile(authFile, 'utf8'))).toEqual({
      auths: {},
      credHelpers: { [registry.host]: helperName, [other]: helperName },
    });
  });
});

describe('registries.conf credential-helpers', () => {
  it('login stores in the helper instead of the auth file; skopeo uses the same configuration', async () => {
    const registriesConf = join(root, `registries-${case_}.conf`);
    await writeFile(registriesConf, `credential-helpers = ["${helperName}"]\n`);
    const primary = join(environment.XDG_RUNTIME_DIR!, 'containers', 'auth.json');
    const login = await gantry(
      ['login', '-v', '--cert-dir', certificates, '-u', user, '-p', password, registry.host],
      { CONTAINERS_REGISTRIES_CONF: registriesConf },
    );
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout.toString()).toBe(`Used:  credential helper: ${helperName}\nLogin Succeeded!\n`);
    expect(await helper.entries()).toEqual({ [registry.host]: { Username: user, Secret: password } });
    await expect(readFile(primary)).rejects.toThrow(/ENOENT/);

    // Debian's skopeo 1.9.3 reads neither $CONTAINERS_REGISTRIES_CONF nor --registries-conf: it
    // is shown the same helper through credHelpers instead.
    const inspected = skopeo(['inspect', '--authfile', authFile, '--cert-dir', certificates, reference]);
    expect(inspected.code, inspected.stderr).toBe(0);
    environment.CONTAINERS_REGISTRIES_CONF = registriesConf;
    // --registries-conf works as well as the variable.
    const getLogin = await runGantry(
      ['--registries-conf', registriesConf, 'login', '--get-login', registry.host],
      {
        env: { ...environment, CONTAINERS_REGISTRIES_CONF: undefined },
      },
    );
    expect(getLogin.stdout.toString()).toBe(`${user}\n`);

    const logout = await gantry(['logout', registry.host]);
    expect(logout.code, logout.stderr).toBe(0);
    expect(logout.stdout.toString()).toBe(`Removed login credentials for ${registry.host}\n`);
    expect(await helper.entries()).toEqual({});
    const denied = skopeo(['inspect', '--authfile', authFile, '--cert-dir', certificates, reference]);
    expect(denied.code).not.toBe(0);
  });
});
