/**
 * How registry answers become exit codes and messages, next to Debian's skopeo 1.9.3 against the same
 * real registry (docker-registry, behind the fault proxy where an answer is injected):
 * - exit 2 means "the image is not there" and nothing else: a 404 on the tag list (RepoTags) that
 *   `inspect` reads after the image is a failure (exit 1), as in skopeo;
 * - a refused `--registry-token` is named as such, never as a wrong username/password.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFixtureImage, fixturePresets, writeFixtureToOciLayout } from '@gantry/core/testing';
import {
  type FaultProxy,
  startFaultProxy,
  startTestRegistry,
  type TestRegistry,
} from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGantry, runSkopeoConcurrently } from './test-support/run.js';

let root: string;
let registry: TestRegistry;
let tokenRegistry: TestRegistry;
let proxy: FaultProxy;
let layout: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-answers-'));
  [registry, tokenRegistry] = await Promise.all([
    startTestRegistry(),
    startTestRegistry({ tokenAuth: { users: { tina: 'tokens-pw' } } }),
  ]);
  const image = await buildFixtureImage(fixturePresets.ociMinimal!, { directory: join(root, 'blobs') });
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
  for (const [target, creds] of [
    [registry, []],
    [tokenRegistry, ['--dest-creds', 'tina:tokens-pw']],
  ] as const) {
    const pushed = await runSkopeoConcurrently([
      '--insecure-policy',
      'copy',
      '-q',
      '--dest-tls-verify=false',
      ...creds,
      `oci:${layout}:latest`,
      `docker://${target.host}/answers/app:v1`,
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
  }
  proxy = await startFaultProxy(registry.host);
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
  await tokenRegistry?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('inspect when the registry answers 404 for the tag list', () => {
  for (const [what, body] of [
    [
      'NAME_UNKNOWN',
      JSON.stringify({
        errors: [{ code: 'NAME_UNKNOWN', message: 'repository name not known to registry' }],
      }),
    ],
    ['no body', ''],
  ] as const) {
    it(`(${what}) fails with exit 1, not 2, as skopeo; --no-tags reads the image`, async () => {
      const reference = `docker://${proxy.host}/answers/app:v1`;
      proxy.statusFaults.push({
        matches: (method, path) => method === 'GET' && path.includes('/tags/list'),
        status: 404,
        times: 2,
        body,
      });
      const skopeo = await runSkopeoConcurrently(['inspect', '--tls-verify=false', reference]);
      const gantry = await runGantry(['inspect', '--tls-verify=false', reference]);
      expect(skopeo.code).toBe(1);
      expect(skopeo.stderr).toContain('Error determining repository tags');
      expect(gantry.code).toBe(1);
      expect(gantry.stderr).toContain('Error determining repository tags: listing tags of');
      const noTags = await runGantry(['inspect', '--no-tags', '--tls-verify=false', reference]);
      expect(noTags.code, noTags.stderr).toBe(0);
    });
  }

  it('an image that is not there still exits 2; list-tags of an unknown repository exits 1', async () => {
    const missing = await runGantry([
      'inspect',
      '--tls-verify=false',
      `docker://${registry.host}/answers/app:nope`,
    ]);
    expect(missing.code).toBe(2);
    const unknown = await runGantry([
      'list-tags',
      '--tls-verify=false',
      `docker://${registry.host}/answers/none`,
    ]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('repository name not known to registry');
  });
});

describe('inspect when the registry refuses the tag list (403)', () => {
  const refuseTags = (times: number) =>
    proxy.statusFaults.push({
      matches: (method, path) => method === 'GET' && path.includes('/tags/list'),
      status: 403,
      times,
      body: JSON.stringify({
        errors: [{ code: 'DENIED', message: 'requested access to the resource is denied' }],
      }),
    });

  it('warns and prints the image without tags, as skopeo', async () => {
    const reference = `docker://${proxy.host}/answers/app:v1`;
    refuseTags(2);
    const skopeo = await runSkopeoConcurrently(['inspect', '--tls-verify=false', reference]);
    const gantry = await runGantry(['inspect', '--tls-verify=false', reference]);
    expect(skopeo.code, skopeo.stderr).toBe(0);
    expect(skopeo.stderr).toContain('Registry disallows tag list retrieval; skipping');
    expect(gantry.code, gantry.stderr).toBe(0);
    expect(gantry.stderr).toContain('Registry disallows tag list retrieval; skipping');
    expect(JSON.parse(skopeo.stdout.toString()).RepoTags).toBeNull();
    expect(JSON.parse(gantry.stdout.toString()).RepoTags).toBeNull();
    expect(JSON.parse(gantry.stdout.toString()).Digest).toBe(JSON.parse(skopeo.stdout.toString()).Digest);
  });

  it('an image that is not there exits 2 without the warning (the tag list, read meanwhile, does not count)', async () => {
    refuseTags(1);
    const missing = await runGantry([
      'inspect',
      '--tls-verify=false',
      `docker://${proxy.host}/answers/app:nope`,
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).not.toContain('Registry disallows tag list retrieval');
    proxy.statusFaults.length = 0;
  });
});

describe('a refused registry token', () => {
  const reference = () => `docker://${tokenRegistry.host}/answers/app:v1`;

  it('inspect, copy, list-tags and delete say the registry token was refused, never username/password', async () => {
    const runs = [
      await runGantry(['inspect', '--tls-verify=false', '--registry-token', 'bogus', reference()]),
      await runGantry([
        '--insecure-policy',
        'copy',
        '--src-tls-verify=false',
        '--src-registry-token',
        'bogus',
        reference(),
        `oci:${join(root, 'never')}:x`,
      ]),
      await runGantry([
        '--insecure-policy',
        'copy',
        '-q',
        '--dest-tls-verify=false',
        '--dest-registry-token',
        'bogus',
        `oci:${layout}:latest`,
        `docker://${tokenRegistry.host}/answers/app:v2`,
      ]),
      await runGantry([
        'list-tags',
        '--tls-verify=false',
        '--registry-token',
        'bogus',
        `docker://${tokenRegistry.host}/answers/app`,
      ]),
      await runGantry(['delete', '--tls-verify=false', '--registry-token', 'bogus', reference()]),
    ];
    for (const run of runs) {
      expect(run.code).toBe(1);
      expect(run.stderr).toContain('the registry token was refused');
      expect(run.stderr).not.toMatch(/username|password/);
    }
  });

  it('wrong and missing credentials keep their own words', async () => {
    const wrong = await runGantry(['inspect', '--tls-verify=false', '--creds', 'tina:wrong', reference()]);
    expect(wrong.stderr).toContain('invalid username/password');
    const none = await runGantry(['inspect', '--tls-verify=false', '--no-creds', reference()]);
    expect(none.stderr).toContain('authentication required (no credentials found)');
  });
});
