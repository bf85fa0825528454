/**
 * The launcher's deferral of NODE_EXTRA_CA_CERTS: `bin/gantry` starts Node without the variable
 * (checked with a stand-in `node` that reports its environment), and the CLI then trusts the
 * deferred certificates for TLS to a real registry (Debian's docker-registry serving HTTPS with a CA
 * made for the test) exactly as Node would have, without `--cert-dir`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  buildFixtureImage,
  clearDeferredNodeExtraCertificateAuthorities,
  fixturePresets,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { deferredNodeExtraCertificateAuthoritiesPath } from '@gantry/core/transport';
import { startTestRegistry, type TestRegistry } from '@gantry/transport-docker/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { adoptDeferredExtraCaCerts } from './deferred-ca-certs.js';
import { runGantry } from './test-support/run.js';

const launcher = resolve(dirname(fileURLToPath(import.meta.url)), '../bin/gantry');
let root: string;
let registry: TestRegistry;
let layout: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-'));
  registry = await startTestRegistry({ tls: true });
  const image = await buildFixtureImage(fixturePresets.ociMinimal!, { directory: join(root, 'blobs') });
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
}, 60_000);

afterAll(async () => {
  await registry?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

afterEach(() => clearDeferredNodeExtraCertificateAuthorities());

/** Runs the launcher through a relative symlink (as npm links bins) with a stand-in `node` first on PATH. */
function runLauncher(environment: Record<string, string | undefined>, args: string[]): string[] {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries({ ...process.env, ...environment })) {
    if (value !== undefined) env[name] = value;
  }
  env.PATH = `${join(root, 'fake-node')}:${process.env.PATH}`;
  return execFileSync(join(root, 'links', 'gantry'), args, { env, encoding: 'utf8' })
    .trimEnd()
    .split('\n');
}

describe('bin/gantry', () => {
  beforeAll(async () => {
    await mkdir(join(root, 'fake-node'));
    const fakeNode = join(root, 'fake-node', 'node');
    await writeFile(
      fakeNode,
      [
        '#!/bin/sh',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template.
        'echo "NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS-<unset>}"',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template.
        'echo "GANTRY_DEFERRED_NODE_EXTRA_CA_CERTS=${GANTRY_DEFERRED_NODE_EXTRA_CA_CERTS-<unset>}"',
        'for argument in "$@"; do echo "argument: $argument"; done',
        '',
      ].join('\n'),
    );
    await chmod(fakeNode, 0o755);
    await mkdir(join(root, 'links'));
    await symlink(launcher, join(root, 'links', 'gantry'));
  });

  it('starts Node without NODE_EXTRA_CA_CERTS and hands the value over', () => {
    const lines = runLauncher({ NODE_EXTRA_CA_CERTS: '/some/bundle.pem' }, ['inspect', 'docker://a b']);
    expect(lines).toEqual([
      'NODE_EXTRA_CA_CERTS=<unset>',
      'GANTRY_DEFERRED_NODE_EXTRA_CA_CERTS=/some/bundle.pem',
      // No V8 flag on Node's command line (see bin/gantry): dist/bin.cjs sets them when first needed.
      `argument: ${dirname(launcher)}/../dist/bin.cjs`,
      'argument: inspect',
      'argument: docker://a b',
    ]);
  });

  it('starts copy and sync with a 64 MiB old generation, and no other command', () => {
    const environment = { NODE_EXTRA_CA_CERTS: undefined, GANTRY_DEFERRED_NODE_EXTRA_CA_CERTS: undefined };
    for (const args of [
      ['copy', 'oci:/a', 'dir:/b'],
      ['--debug', 'sync', '--src', 'docker', '--dest', 'dir', 'r/x', '/d'],
    ]) {
      expect(runLauncher(environment, args).slice(2)).toEqual([
        'argument: --initial-old-space-size=64',
        `argument: ${dirname(launcher)}/../dist/bin.cjs`,
        ...args.map((argument) => `argument: ${argument}`),
      ]);
    }
    for (const args of [['inspect', 'docker://r/copy'], ['list-tags', 'docker://r/sync'], ['--version']]) {
      expect(runLauncher(environment, args).slice(2)).toEqual([
        `argument: ${dirname(launcher)}/../dist/bin.cjs`,
        ...args.map((argument) => `argument: ${argument}`),
      ]);
    }
  });

  it('changes nothing when NODE_EXTRA_CA_CERTS is not set', () => {
    const lines = runLauncher(
      { NODE_EXTRA_CA_CERTS: undefined, GANTRY_DEFERRED_NODE_EXTRA_CA_CERTS: undefined },
      ['--version'],
    );
    expect(lines.slice(0, 2)).toEqual([
      'NODE_EXTRA_CA_CERTS=<unset>',
      'GANTRY_DEFERRED_NODE_EXTRA_CA_CERTS=<unset>',
    ]);
    expect(lines.at(-1)).toBe('argument: --version');
  });
});

describe('deferred certificates on a TLS registry', () => {
  it('are trusted as NODE_EXTRA_CA_CERTS would be, and given back to child programs', async () => {
    const caFile = join(registry.certificateDirectory!, 'ca.crt');
    const remote = `docker://${registry.host}/deferred/image:v1`;
    const pushed = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      '--dest-cert-dir',
      registry.certificateDirectory!,
      `oci:${layout}:latest`,
      remote,
    ]);
    expect(pushed.stderr).toBe('');
    // Without the CA, verification fails: the test CA is in no default store.
    const untrusted = await runGantry(['inspect', '--raw', remote]);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/certificate/i);

    const environment: NodeJS.ProcessEnv = { GANTRY_DEFERRED_NODE_EXTRA_CA_CERTS: caFile };
    adoptDeferredExtraCaCerts(environment);
    expect(environment).toEqual({ NODE_EXTRA_CA_CERTS: caFile });
    expect(deferredNodeExtraCertificateAuthoritiesPath()).toBe(caFile);
    const trusted = await runGantry(['inspect', '--raw', remote]);
    expect(trusted.stderr).toBe('');
    expect(trusted.code).toBe(0);
    expect(JSON.parse(trusted.stdout.toString()).schemaVersion).toBe(2);
  });
});

describe('the installed command: bin/gantry running the built dist/', () => {
  const builtEntry = resolve(dirname(launcher), '../dist/main.cjs');

  /** Runs the real launcher with the real node; `extra` is merged into the environment. */
  function runInstalled(args: string[], extra: Record<string, string | undefined>) {
    if (!existsSync(builtEntry)) {
      throw new Error(
        `${builtEntry} is missing: run \`pnpm build\` (turbo builds it before @gantry/cli's tests)`,
      );
    }
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries({ ...process.env, ...extra })) {
      if (value !== undefined) env[name] = value;
    }
    return spawnSync(launcher, args, { env, encoding: 'utf8', timeout: 60_000 });
  }

  it('prints its version', () => {
    const result = runInstalled(['--version'], {});
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/^gantry version \d+\.\d+\.\d+/);
  });

  it('trusts the certificates of NODE_EXTRA_CA_CERTS, which Node itself never loaded', async () => {
    const caFile = join(registry.certificateDirectory!, 'ca.crt');
    const remote = `docker://${registry.host}/installed/image:v1`;
    const pushed = runInstalled(
      [
        '--insecure-policy',
        'copy',
        '-q',
        '--dest-cert-dir',
        registry.certificateDirectory!,
        `oci:${layout}:latest`,
        remote,
      ],
      { NODE_EXTRA_CA_CERTS: undefined },
    );
    expect(pushed.stderr).toBe('');
    expect(pushed.status).toBe(0);
    const untrusted = runInstalled(['inspect', '--raw', remote], { NODE_EXTRA_CA_CERTS: undefined });
    expect(untrusted.status).toBe(1);
    expect(untrusted.stderr).toMatch(/certificate/i);
    const trusted = runInstalled(['inspect', '--raw', remote], { NODE_EXTRA_CA_CERTS: caFile });
    expect(trusted.stderr).toBe('');
    expect(trusted.status).toBe(0);
    expect(JSON.parse(trusted.stdout).schemaVersion).toBe(2);
  });
});
