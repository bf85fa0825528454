/**
 * Secrets and trust, through the `gantry` command against real registries: Debian's docker-registry with
 * htpasswd (Basic) authentication, and with token authentication (the test token server issuing registry
 * tokens and accepting an identity token). Known secret strings are used and every output is searched for
 * them: stdout (progress included), stderr with `--debug`, error messages of failed runs. Auth files are
 * written 0600 by a rename (a new inode, no temporary file left). TLS verification stays on unless turned
 * off for that one registry.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  fixturePresets,
  recordOutcome,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { startTestRegistry, type TestRegistry } from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type CliRun, runGantry } from '../../test-support/run.js';
import { expectCleanFailure } from './expect-failure.js';

const testFile = 'apps/cli/src/reliability/hostile/secrets.test.ts';
const user = 'alice';
const password = 'Pa55:word-7f3e91c2';
const wrongPassword = 'Wr0ng-pa55-b8d41a06';
const identityToken = 'identity-token-5c2e8a91d4';
/** Every form a secret could leak in: as given, Basic-encoded, URL-encoded. */
const secretForms = [
  password,
  wrongPassword,
  identityToken,
  Buffer.from(`${user}:${password}`).toString('base64'),
  Buffer.from(`${user}:${wrongPassword}`).toString('base64'),
  encodeURIComponent(password),
  encodeURIComponent(identityToken),
];
/** A JWT (the registry tokens the token server issues): base64url of `{"` starts it. */
const jwtPattern = /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/;

const workDirectory = mkdtempSync(join(tmpdir(), 'gantry-hostile-secrets-'));
let basicRegistry: TestRegistry;
let tokenRegistry: TestRegistry;
let layout = '';

beforeAll(async () => {
  [basicRegistry, tokenRegistry] = await Promise.all([
    startTestRegistry({ tls: true, htpasswdUsers: { [user]: password } }),
    startTestRegistry({
      tls: true,
      tokenAuth: { users: { [user]: password }, refreshTokens: { [identityToken]: user } },
    }),
  ]);
  const image = await buildFixtureImage(fixturePresets.ociMinimal, {
    directory: join(workDirectory, 'fixture'),
  });
  layout = join(workDirectory, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
}, 120_000);

afterAll(async () => {
  await basicRegistry?.stop();
  await tokenRegistry?.stop();
  rmSync(workDirectory, { recursive: true, force: true });
});

/** Asserts no secret appears in `texts`; returns how many bytes were searched. */
function expectNoSecrets(what: string, texts: string[]): number {
  const all = texts.join('\n');
  for (const secret of secretForms) expect(all.includes(secret), `${what}: leaked ${secret}`).toBe(false);
  expect(all, `${what}: leaked a registry token`).not.toMatch(jwtPattern);
  expect(all.toLowerCase(), `${what}: printed an Authorization header`).not.toMatch(
    /authorization:\s*(basic|bearer)\s+\S/,
  );
  return all.length;
}

const outputs = (run: CliRun) => [run.stdout.toString('utf8'), run.stderr];
const certificateFlags = (prefix: string, registry: TestRegistry) => [
  `--${prefix}cert-dir=${registry.certificateDirectory}`,
];
let counter = 0;

describe.each([
  ['htpasswd (Basic)', () => basicRegistry],
  ['token (Bearer)', () => tokenRegistry],
] as const)('credentials never appear in output: %s registry', (kind, registryOf) => {
  test('push, pull, inspect, list-tags and sync with --debug: succeed, no secret in stdout (progress) or stderr (debug log)', async () => {
    const registry = registryOf();
    const remote = `docker://${registry.host}/secret/image:v1`;
    const runs = [
      await runGantry([
        '--debug',
        '--insecure-policy',
        'copy',
        ...certificateFlags('dest-', registry),
        `--dest-creds=${user}:${password}`,
        `oci:${layout}:latest`,
        remote,
      ]),
      await runGantry([
        '--debug',
        '--insecure-policy',
        'copy',
        ...certificateFlags('src-', registry),
        `--src-creds=${user}:${password}`,
        remote,
        `oci:${join(workDirectory, `pulled-${++counter}`)}`,
      ]),
      await runGantry([
        '--debug',
        'inspect',
        ...certificateFlags('', registry),
        `--creds=${user}:${password}`,
        remote,
      ]),
      await runGantry([
        '--debug',
        'list-tags',
        ...certificateFlags('', registry),
        `--creds=${user}:${password}`,
        `docker://${registry.host}/secret/image`,
      ]),
    ];
    // sync, with the credentials as a flag and in a YAML source (skopeo sync's `credentials`).
    const syncYaml = join(workDirectory, `sync-${counter}.yaml`);
    writeFileSync(
      syncYaml,
      `${registry.host}:\n  images:\n    secret/image: [v1]\n  credentials:\n    username: ${user}\n    password: "${password}"\n  cert-dir: ${registry.certificateDirectory}\n`,
    );
    runs.push(
      await runGantry([
        '--debug',
        '--insecure-policy',
        'sync',
        '--src',
        'docker',
        '--dest',
        'dir',
        ...certificateFlags('src-', registry),
        `--src-creds=${user}:${password}`,
        `${registry.host}/secret/image`,
        join(workDirectory, `synced-${counter}`),
      ]),
      await runGantry([
        '--debug',
        '--insecure-policy',
        'sync',
        '--src',
        'yaml',
        '--dest',
        'dir',
        syncYaml,
        join(workDirectory, `synced-yaml-${counter}`),
      ]),
    );
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    expect(outputs(runs[0]!).join('')).toMatch(/Copying blob/);
    expect(runs[0]!.stderr).toMatch(/level=debug/);
    expect(expectNoSecrets(kind, runs.flatMap(outputs))).toBeGreaterThan(2000);
    recordOutcome({
      suite: 'secrets',
      case: `password in --debug logs, progress and output (${kind})`,
      transport: 'docker',
      outcome:
        'copy, inspect, list-tags, sync (flag and YAML credentials): no password, Basic value or token in any output',
      ok: true,
      testFile,
    });
  });

  test('a refused password: exit 1, the error names the registry, not the password', async () => {
    const registry = registryOf();
    const run = await runGantry([
      '--debug',
      'inspect',
      ...certificateFlags('', registry),
      `--creds=${user}:${wrongPassword}`,
      `docker://${registry.host}/secret/image:v1`,
    ]);
    expectCleanFailure(run, /unauthorized|authentication required|denied|401/i);
    expectNoSecrets(`${kind} refused`, outputs(run));
    recordOutcome({
      suite: 'secrets',
      case: `wrong password in the error message (${kind})`,
      transport: 'docker',
      outcome: 'exit 1, "unauthorized" naming what was sent (a password), never its value',
      ok: true,
      testFile,
    });
  });
});

test('an identity token from the auth file is used and never printed', async () => {
  const authFile = join(workDirectory, 'identity-auth.json');
  writeFileSync(
    authFile,
    JSON.stringify({
      auths: {
        [tokenRegistry.host]: {
          identitytoken: identityToken,
          auth: Buffer.from(`${user}:`).toString('base64'),
        },
      },
    }),
    { mode: 0o600 },
  );
  const remote = `docker://${tokenRegistry.host}/secret/image:v1`;
  const pushed = await runGantry([
    '--debug',
    '--insecure-policy',
    'copy',
    ...certificateFlags('dest-', tokenRegistry),
    `--dest-authfile=${authFile}`,
    `oci:${layout}:latest`,
    remote,
  ]);
  expect(pushed.code, pushed.stderr).toBe(0);
  const inspected = await runGantry([
    '--debug',
    'inspect',
    ...certificateFlags('', tokenRegistry),
    `--authfile=${authFile}`,
    remote,
  ]);
  expect(inspected.code, inspected.stderr).toBe(0);
  expect(
    tokenRegistry.tokenServer?.requests.some((request) => request.method === 'POST' && request.user === user),
  ).toBe(true);
  // A refused identity token: the error must not print it either.
  writeFileSync(
    authFile,
    JSON.stringify({ auths: { [tokenRegistry.host]: { identitytoken: `${identityToken}-revoked` } } }),
  );
  const refused = await runGantry([
    '--debug',
    'inspect',
    ...certificateFlags('', tokenRegistry),
    `--authfile=${authFile}`,
    remote,
  ]);
  expect(refused.code).toBe(1);
  expectNoSecrets('identity token', [...outputs(pushed), ...outputs(inspected), ...outputs(refused)]);
  recordOutcome({
    suite: 'secrets',
    case: 'identity token (OAuth2 refresh token) in output',
    transport: 'docker',
    outcome: 'used (POST to the token server); absent from --debug logs, progress and errors',
    ok: true,
    testFile,
  });
});

test('login writes the auth file 0600 by an atomic rename and prints no secret; logout likewise', async () => {
  const configDirectory = join(workDirectory, 'login');
  const authFile = join(configDirectory, 'auth.json');
  const login = () =>
    runGantry([
      '--debug',
      'login',
      ...certificateFlags('', basicRegistry),
      `--authfile=${authFile}`,
      '-u',
      user,
      '-p',
      password,
      basicRegistry.host,
    ]);
  const first = await login();
  expect(first.code, first.stderr).toBe(0);
  expect(first.stdout.toString()).toMatch(/Login Succeeded/);
  expect(statSync(authFile).mode & 0o777).toBe(0o600);
  const firstInode = statSync(authFile).ino;
  const second = await login();
  expect(second.code, second.stderr).toBe(0);
  expect(statSync(authFile).mode & 0o777).toBe(0o600);
  expect(statSync(authFile).ino, 'rewritten by a rename, not in place').not.toBe(firstInode);
  expect(readdirSync(configDirectory)).toEqual(['auth.json']);
  expect(JSON.parse(readFileSync(authFile, 'utf8')).auths[basicRegistry.host].auth).toBe(
    Buffer.from(`${user}:${password}`).toString('base64'),
  );
  const refused = await runGantry([
    '--debug',
    'login',
    ...certificateFlags('', basicRegistry),
    `--authfile=${authFile}`,
    '-u',
    user,
    '-p',
    wrongPassword,
    basicRegistry.host,
  ]);
  expect(refused.code).toBe(1);
  const logout = await runGantry(['--debug', 'logout', `--authfile=${authFile}`, basicRegistry.host]);
  expect(logout.code, logout.stderr).toBe(0);
  expect(statSync(authFile).mode & 0o777).toBe(0o600);
  expect(readdirSync(configDirectory)).toEqual(['auth.json']);
  expectNoSecrets('login/logout', [first, second, refused, logout].flatMap(outputs));
  recordOutcome({
    suite: 'secrets',
    case: 'auth file written by login and logout',
    transport: 'docker',
    outcome: 'mode 0600, replaced by rename (new inode), no temporary file left; no secret printed',
    ok: true,
    testFile,
  });
});

describe('TLS verification', () => {
  test('stays on by default: a registry whose CA is not trusted is refused, naming the certificate problem', async () => {
    const run = await runGantry([
      '--debug',
      'inspect',
      `--creds=${user}:${password}`,
      `docker://${basicRegistry.host}/secret/image:v1`,
    ]);
    expectCleanFailure(run, /certificate/i);
    expectNoSecrets('untrusted CA', outputs(run));
    recordOutcome({
      suite: 'secrets',
      case: 'TLS certificate from an unknown CA',
      transport: 'docker',
      outcome: 'refused with the certificate error; credentials not sent',
      ok: true,
      testFile,
    });
  });

  test('turned off for one registry (registries.conf insecure) does not turn it off for another', async () => {
    const registriesConf = join(workDirectory, 'registries.conf');
    writeFileSync(registriesConf, `[[registry]]\nlocation = "${basicRegistry.host}"\ninsecure = true\n`);
    const pulled = await runGantry([
      '--insecure-policy',
      `--registries-conf=${registriesConf}`,
      'inspect',
      `--creds=${user}:${password}`,
      `docker://${basicRegistry.host}/secret/image:v1`,
    ]);
    expect(pulled.code, pulled.stderr).toBe(0);
    const copied = await runGantry([
      '--debug',
      '--insecure-policy',
      `--registries-conf=${registriesConf}`,
      'copy',
      '--retry-times=0',
      `--src-creds=${user}:${password}`,
      `--dest-creds=${user}:${password}`,
      `docker://${basicRegistry.host}/secret/image:v1`,
      `docker://${tokenRegistry.host}/secret/copied:v1`,
    ]);
    expectCleanFailure(copied, /certificate/i);
    expectNoSecrets('insecure for one registry', [...outputs(pulled), ...outputs(copied)]);
    recordOutcome({
      suite: 'secrets',
      case: 'TLS verification turned off for one registry only',
      transport: 'docker',
      outcome: 'the insecure registry is read; the other still refuses its untrusted certificate',
      ok: true,
      testFile,
    });
  });
});
