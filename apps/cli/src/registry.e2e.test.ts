/**
 * gantry against a real registry (Debian's docker-registry, started per file on free ports): copy
 * to and from docker://, inspect (RepoTags), list-tags, delete, login/logout, compared with the real
 * skopeo where both can run.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { startTestRegistry, type TestRegistry } from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGantry, runSkopeo } from './test-support/run.js';

/** Debian's skopeo 1.9.3 prints neither `LayersData` nor `Variant` (see cli.e2e.test.ts). */
function withoutLayersData(text: string): string {
  return text
    .replace(/\n {4}"LayersData": (?:null|\[\]|\[\n[\s\S]*?\n {4}\]),/, '')
    .replace(/\n {4}"Variant": "[^"\n]*",/, '');
}

let root: string;
let plain: TestRegistry;
let secure: TestRegistry;
let image: FixtureImage;
let layout: string;
/** The same image as a dir: directory (written by skopeo), for pushes that do not test oci:. */
let directory: string;
const user = 'alice';
const password = 's3cret:with colon';

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-'));
  [plain, secure] = await Promise.all([
    startTestRegistry(),
    startTestRegistry({ tls: true, htpasswdUsers: { [user]: password } }),
  ]);
  image = await buildFixtureImage(fixturePresets.ociMinimal!, { directory: join(root, 'blobs') });
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
  directory = join(root, 'dir-image');
  const copied = runSkopeo(['--insecure-policy', 'copy', '-q', `oci:${layout}:latest`, `dir:${directory}`]);
  if (copied.code !== 0) throw new Error(`skopeo copy to dir: failed: ${copied.stderr}`);
}, 60_000);

afterAll(async () => {
  await plain?.stop();
  await secure?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

function expectSuccess(result: { code: number; stderr: string }, what: string): void {
  expect({ what, code: result.code, stderr: result.stderr }).toEqual({ what, code: 0, stderr: '' });
}

describe('docker:// on a plain HTTP registry', () => {
  it('copy oci: → docker:// → oci: keeps the manifest digest', async () => {
    const pushedDigest = join(root, 'pushed.digest');
    const pulledDigest = join(root, 'pulled.digest');
    const remote = `docker://${plain.host}/round/trip:v1`;
    expectSuccess(
      await runGantry([
        '--insecure-policy',
        'copy',
        '-q',
        '--dest-tls-verify=false',
        '--digestfile',
        pushedDigest,
        `oci:${layout}:latest`,
        remote,
      ]),
      'push',
    );
    expectSuccess(
      await runGantry([
        '--insecure-policy',
        'copy',
        '-q',
        '--src-tls-verify=false',
        '--digestfile',
        pulledDigest,
        remote,
        `oci:${join(root, 'pulled')}:back`,
      ]),
      'pull',
    );
    expect(await readFile(pushedDigest, 'utf8')).toBe(image.topLevel.digest);
    expect(await readFile(pulledDigest, 'utf8')).toBe(image.topLevel.digest);
    const raw = await runGantry(['inspect', '--raw', `oci:${join(root, 'pulled')}:back`]);
    expect(Buffer.from(image.topLevel.bytes).equals(raw.stdout)).toBe(true);
    // skopeo reads what gantry pushed, byte for byte.
    const skopeoRaw = runSkopeo(['inspect', '--raw', '--tls-verify=false', remote]);
    expect(skopeoRaw.code, skopeoRaw.stderr).toBe(0);
    expect(Buffer.from(image.topLevel.bytes).equals(skopeoRaw.stdout)).toBe(true);
  });

  it('inspect docker:// equals skopeo inspect, RepoTags included; --no-tags too', async () => {
    for (const tag of ['v2', 'a-tag']) {
      expectSuccess(
        await runGantry([
          '--insecure-policy',
          'copy',
          '-q',
          '--dest-tls-verify=false',
          `dir:${directory}`,
          `docker://${plain.host}/inspected/repo:${tag}`,
        ]),
        `push ${tag}`,
      );
    }
    const reference = `docker://${plain.host}/inspected/repo:v2`;
    for (const flags of [[], ['--no-tags'], ['--config'], ['--format', '{{.Name}} {{.RepoTags}}']]) {
      const expected = runSkopeo(['inspect', '--tls-verify=false', ...flags, reference]);
      expect(expected.code, expected.stderr).toBe(0);
      const actual = await runGantry(['inspect', '--tls-verify=false', ...flags, reference]);
      expectSuccess(actual, `inspect ${flags.join(' ')}`);
      expect(withoutLayersData(actual.stdout.toString()), flags.join(' ')).toBe(expected.stdout.toString());
    }
    const parsed = JSON.parse(
      (await runGantry(['inspect', '--tls-verify=false', reference])).stdout.toString(),
    );
    expect([...parsed.RepoTags].sort()).toEqual(['a-tag', 'v2']);
  });

  it('list-tags equals skopeo byte for byte', async () => {
    const repository = `docker://${plain.host}/inspected/repo`;
    const expected = runSkopeo(['list-tags', '--tls-verify=false', repository]);
    expect(expected.code, expected.stderr).toBe(0);
    const actual = await runGantry(['list-tags', '--tls-verify=false', '--no-creds', repository]);
    expectSuccess(actual, 'list-tags');
    expect(actual.stdout.toString()).toBe(expected.stdout.toString());
    expect(JSON.parse(actual.stdout.toString()).Repository).toBe(`${plain.host}/inspected/repo`);
    const missing = await runGantry(['list-tags', '--tls-verify=false', `docker://${plain.host}/no/such`]);
    expect(missing.code).toBe(1); // as skopeo: a missing repository is not "image not found" (2) here
    expect(missing.stderr).toContain('Error listing repository tags');
    expect(missing.stderr).toContain('repository name not known to registry');
  });

  it('a registry over plain HTTP is refused unless --tls-verify=false', async () => {
    const result = await runGantry(['inspect', `docker://${plain.host}/inspected/repo:v2`]);
    expect(result.code).toBe(1);
    expect(result.stdout.length).toBe(0);
  });

  it('delete docker:// then inspect exits 2', async () => {
    const reference = `docker://${plain.host}/deleted/repo:gone`;
    expectSuccess(
      await runGantry([
        '--insecure-policy',
        'copy',
        '-q',
        '--dest-tls-verify=false',
        `dir:${directory}`,
        reference,
      ]),
      'push',
    );
    expectSuccess(await runGantry(['inspect', '--tls-verify=false', reference]), 'inspect before delete');
    expectSuccess(await runGantry(['delete', '--tls-verify=false', reference]), 'delete');
    const after = await runGantry(['inspect', '--tls-verify=false', reference]);
    expect(after.code).toBe(2);
    const skopeoAfter = runSkopeo(['inspect', '--tls-verify=false', reference]);
    expect(skopeoAfter.code).not.toBe(0);
  });
});

describe('login and logout against an htpasswd TLS registry', () => {
  let certificates: string;
  beforeAll(async () => {
    certificates = secure.certificateDirectory!;
    // An image to look at, pushed with --dest-creds.
    expectSuccess(
      await runGantry([
        '--insecure-policy',
        'copy',
        '-q',
        '--dest-cert-dir',
        certificates,
        '--dest-creds',
        `${user}:${password}`,
        `dir:${directory}`,
        `docker://${secure.host}/private/image:t`,
      ]),
      'push with --dest-creds',
    );
  });

  it('gantry login writes an auth file skopeo uses; logout removes it', async () => {
    const authFile = join(root, 'gantry-auth.json');
    const login = await runGantry([
      'login',
      '--authfile',
      authFile,
      '--cert-dir',
      certificates,
      '-u',
      user,
      '-p',
      password,
      '--debug',
      secure.host,
    ]);
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout.toString()).toBe('Login Succeeded!\n');
    expect(login.stderr).not.toContain(password);
    expect((await stat(authFile)).mode & 0o777).toBe(0o600);
    const stored = JSON.parse(await readFile(authFile, 'utf8'));
    expect(Buffer.from(stored.auths[secure.host].auth, 'base64').toString()).toBe(`${user}:${password}`);

    const reference = `docker://${secure.host}/private/image:t`;
    const skopeo = runSkopeo(['inspect', '--authfile', authFile, '--cert-dir', certificates, reference]);
    expect(skopeo.code, skopeo.stderr).toBe(0);
    const gantry = await runGantry([
      'inspect',
      '--authfile',
      authFile,
      '--cert-dir',
      certificates,
      reference,
    ]);
    expectSuccess(gantry, 'inspect with the auth file');
    expect(withoutLayersData(gantry.stdout.toString())).toBe(skopeo.stdout.toString());

    const getLogin = await runGantry(['login', '--get-login', '--authfile', authFile, secure.host]);
    expectSuccess(getLogin, '--get-login');
    expect(getLogin.stdout.toString()).toBe(`${user}\n`);

    const logout = await runGantry(['logout', '--authfile', authFile, secure.host]);
    expectSuccess(logout, 'logout');
    expect(logout.stdout.toString()).toBe(`Removed login credentials for ${secure.host}\n`);
    expect(JSON.parse(await readFile(authFile, 'utf8')).auths).toEqual({});
    const again = await runGantry(['logout', '--authfile', authFile, secure.host]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`not logged into ${secure.host}`);
    const denied = await runGantry([
      'inspect',
      '--authfile',
      authFile,
      '--cert-dir',
      certificates,
      reference,
    ]);
    expect(denied.code).not.toBe(0);
    const skopeoDenied = runSkopeo([
      'inspect',
      '--authfile',
      authFile,
      '--cert-dir',
      certificates,
      reference,
    ]);
    expect(skopeoDenied.code).not.toBe(0);
  });

  it('a wrong password fails and stores nothing; --password-stdin works', async () => {
    const authFile = join(root, 'wrong-auth.json');
    const wrong = await runGantry([
      'login',
      '--authfile',
      authFile,
      '--cert-dir',
      certificates,
      '-u',
      user,
      '-p',
      'not-the-password',
      secure.host,
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.stdout.length).toBe(0);
    expect(wrong.stderr).toContain(`logging into \\"${secure.host}\\": invalid username/password`);
    expect(wrong.stderr).not.toContain('not-the-password');
    await expect(stat(authFile)).rejects.toThrow();

    const viaStdin = await runGantry(
      [
        'login',
        '--authfile',
        authFile,
        '--cert-dir',
        certificates,
        '-u',
        user,
        '--password-stdin',
        secure.host,
      ],
      { stdin: Readable.from([`${password}\n`]) },
    );
    expect(viaStdin.code, viaStdin.stderr).toBe(0);
    expect(viaStdin.stdout.toString()).toBe('Login Succeeded!\n');
    const all = await runGantry(['logout', '--authfile', authFile, '--all']);
    expectSuccess(all, 'logout --all');
    expect(all.stdout.toString()).toBe('Removed login credentials for all registries\n');
    expect(JSON.parse(await readFile(authFile, 'utf8')).auths).toEqual({});
  });

  it('prompts for a missing password on stdin; -v names the file; logout reports docker login credentials', async () => {
    const home = join(root, 'home');
    const env = {
      ...process.env,
      HOME: home,
      XDG_RUNTIME_DIR: join(home, 'run'),
      DOCKER_CONFIG: join(home, 'docker'),
      REGISTRY_AUTH_FILE: undefined,
    };
    const prompted = await runGantry(
      ['login', '-v', '--tls-verify=false', '-u', user, `https://${secure.host}/v2/`],
      { env, stdin: Readable.from([`${password}\n`]) },
    );
    expect(prompted.code, prompted.stderr).toBe(0);
    const primary = join(home, 'run', 'containers', 'auth.json');
    expect(prompted.stdout.toString()).toBe(`Password: \nUsed:  ${primary}\nLogin Succeeded!\n`);
    const again = await runGantry(['login', '--tls-verify=false', secure.host], { env });
    expect(again.stdout.toString()).toBe(
      `Authenticating with existing credentials for ${secure.host}\nExisting credentials are valid. Already logged in to ${secure.host}\n`,
    );
    // Credentials docker login stored in $DOCKER_CONFIG/config.json are reported, not removed.
    const dockerConfig = join(home, 'docker', 'config.json');
    await mkdir(join(home, 'docker'), { recursive: true });
    const dockerAuth = {
      auths: { [secure.host]: { auth: Buffer.from(`${user}:${password}`).toString('base64') } },
    };
    await writeFile(dockerConfig, JSON.stringify(dockerAuth));
    expectSuccess(await runGantry(['logout', secure.host], { env }), 'logout');
    const reported = await runGantry(['logout', '--tls-verify=false', secure.host], { env });
    expectSuccess(reported, 'logout of docker login credentials');
    expect(reported.stdout.toString()).toBe(
      `Not logged into ${secure.host} with current tool. Existing credentials were established via docker login. Please use docker logout instead.\n`,
    );
    expect(JSON.parse(await readFile(dockerConfig, 'utf8'))).toEqual(dockerAuth);
    const notLoggedIn = await runGantry([
      'login',
      '--get-login',
      '--authfile',
      join(root, 'none.json'),
      secure.host,
    ]);
    expect(notLoggedIn.code).toBe(1);
    expect(notLoggedIn.stderr).toContain(`not logged into ${secure.host}`);
  });

  it('an auth file written by skopeo login is used by gantry', async () => {
    const authFile = join(root, 'skopeo-auth.json');
    const login = runSkopeo([
      'login',
      '--authfile',
      authFile,
      '--cert-dir',
      certificates,
      '-u',
      user,
      '-p',
      password,
      secure.host,
    ]);
    expect(login.code, login.stderr).toBe(0);
    const reference = `docker://${secure.host}/private/image`;
    const tags = await runGantry([
      'list-tags',
      '--authfile',
      authFile,
      '--cert-dir',
      certificates,
      reference,
    ]);
    expectSuccess(tags, 'list-tags with skopeo auth file');
    const skopeoTags = runSkopeo([
      'list-tags',
      '--authfile',
      authFile,
      '--cert-dir',
      certificates,
      reference,
    ]);
    expect(tags.stdout.toString()).toBe(skopeoTags.stdout.toString());
    const getLogin = await runGantry(['login', '--get-login', '--authfile', authFile, secure.host]);
    expect(getLogin.stdout.toString()).toBe(`${user}\n`);
    // Without credentials the registry refuses.
    const empty = join(root, 'empty-auth.json');
    await writeFile(empty, '{"auths":{}}');
    const anonymous = await runGantry([
      'list-tags',
      '--authfile',
      empty,
      '--cert-dir',
      certificates,
      reference,
    ]);
    expect(anonymous.code).toBe(1);
    const noCreds = await runGantry([
      'list-tags',
      '--no-creds',
      '--authfile',
      authFile,
      '--cert-dir',
      certificates,
      reference,
    ]);
    expect(noCreds.code).toBe(1);
    // Without the CA, TLS verification fails; --tls-verify=false accepts the certificate.
    const untrusted = await runGantry(['list-tags', '--authfile', authFile, reference]);
    expect(untrusted.code).toBe(1);
    const unverified = await runGantry([
      'list-tags',
      '--authfile',
      authFile,
      '--tls-verify=false',
      reference,
    ]);
    expectSuccess(unverified, 'list-tags --tls-verify=false');
  });
});

describe('token authentication, registries.conf', () => {
  let tokenRegistry: TestRegistry;
  const tokenUser = 'bob';
  const tokenPassword = 'b0b-pass';
  beforeAll(async () => {
    tokenRegistry = await startTestRegistry({ tokenAuth: { users: { [tokenUser]: tokenPassword } } });
  }, 60_000);
  afterAll(async () => {
    await tokenRegistry?.stop();
  });

  it('--username/--password, --creds and --registry-token reach a token-authenticated registry', async () => {
    const reference = `docker://${tokenRegistry.host}/tok/image:t`;
    expectSuccess(
      await runGantry([
        '--insecure-policy',
        'copy',
        '-q',
        '--dest-tls-verify=false',
        '--dest-username',
        tokenUser,
        '--dest-password',
        tokenPassword,
        `dir:${directory}`,
        reference,
      ]),
      'push with --dest-username/--dest-password',
    );
    const inspected = await runGantry([
      'inspect',
      '--tls-verify=false',
      '--creds',
      `${tokenUser}:${tokenPassword}`,
      reference,
    ]);
    expectSuccess(inspected, 'inspect --creds');
    expect(JSON.parse(inspected.stdout.toString()).RepoTags).toEqual(['t']);
    const debugged = await runGantry([
      '--debug',
      'inspect',
      '--tls-verify=false',
      '--creds',
      `${tokenUser}:${tokenPassword}`,
      reference,
    ]);
    expect(debugged.code).toBe(0);
    expect(debugged.stderr).toContain('level=debug');
    expect(debugged.stderr).not.toContain(tokenPassword);
    const anonymous = await runGantry(['inspect', '--tls-verify=false', '--no-creds', reference]);
    expect(anonymous.code).toBe(1);

    const realm = new URL(tokenRegistry.tokenServer!.realm);
    realm.searchParams.set('service', 'gantry-test-registry');
    realm.searchParams.set('scope', 'repository:tok/image:pull');
    const response = await fetch(realm, {
      headers: { authorization: `Basic ${Buffer.from(`${tokenUser}:${tokenPassword}`).toString('base64')}` },
    });
    expect(response.status).toBe(200);
    const { token } = (await response.json()) as { token: string };
    const tags = await runGantry([
      'list-tags',
      '--tls-verify=false',
      '--registry-token',
      token,
      `docker://${tokenRegistry.host}/tok/image`,
    ]);
    expectSuccess(tags, 'list-tags --registry-token');
    expect(JSON.parse(tags.stdout.toString())).toEqual({
      Repository: `${tokenRegistry.host}/tok/image`,
      Tags: ['t'],
    });
  });

  it('without --tls-verify, registries.conf decides (insecure = true allows plain HTTP)', async () => {
    const configuration = join(root, 'registries.conf');
    await writeFile(configuration, `[[registry]]\nlocation = "${plain.host}"\ninsecure = true\n`);
    const reference = `docker://${plain.host}/conf/image:t`;
    expectSuccess(
      await runGantry([
        '--insecure-policy',
        '--registries-conf',
        configuration,
        'copy',
        '-q',
        `dir:${directory}`,
        reference,
      ]),
      'push with registries.conf',
    );
    expectSuccess(
      await runGantry(['--registries-conf', configuration, 'list-tags', `docker://${plain.host}/conf/image`]),
      'list-tags',
    );
    const forced = await runGantry([
      '--registries-conf',
      configuration,
      'inspect',
      '--tls-verify=true',
      reference,
    ]);
    expect(forced.code).toBe(1);
    // The deprecated global --tls-verify applies when the command's is not given.
    expectSuccess(await runGantry(['--tls-verify=false', 'inspect', reference]), 'global --tls-verify=false');
  });
});
