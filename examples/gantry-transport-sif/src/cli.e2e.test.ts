/**
 * The package as a user installs it: the built `gantry` command in a project's node_modules, with
 * `gantry-transport-sif` beside it (linked there as `npm link` / a workspace does). The CLI finds it by
 * its package name, lists it, copies and inspects SIF files with it; the same files copied by the real
 * skopeo (Debian's 1.9.3, whose `sif:` transport is containers/image's) give the same layer files and the
 * same config apart from the layer digest.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CopiedImage,
  configBytesWithoutLayerDigest,
  configWithoutLayerDigest,
  readCopiedImage,
} from './test-support/oci-image.js';
import { buildSquashfs, buildTestSif, singularityMetadataEntries } from './test-support/sif-writer.js';
import { writeSifWithSiftool } from './test-support/siftool.js';

const packageDirectory = path.resolve(import.meta.dirname, '..');
const cliDirectory = path.dirname(createRequire(import.meta.url).resolve('@gantry/cli/package.json'));
let root: string;
let gantryBinary: string;
let environment: NodeJS.ProcessEnv;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function gantry(...args: string[]): Run {
  const result = spawnSync(gantryBinary, args, { env: environment, encoding: 'utf8', cwd: root });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function skopeo(...args: string[]): Run {
  const result = spawnSync('skopeo', args, {
    env: environment,
    encoding: 'utf8',
    cwd: root,
    maxBuffer: 1 << 26,
  });
  if (result.error)
    throw new Error(`skopeo is required for this test (apt-get install skopeo): ${result.error.message}`);
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function expectSuccess(run: Run, what: string): string {
  expect(run.status, `${what} failed: ${run.stderr}`).toBe(0);
  return run.stdout;
}

beforeAll(async () => {
  for (const built of [
    path.join(cliDirectory, 'dist', 'main.cjs'),
    path.join(packageDirectory, 'dist', 'index.js'),
  ]) {
    if (!existsSync(built))
      throw new Error(`${built} is missing: run \`pnpm build\` first (turbo runs it before this test)`);
  }
  root = await mkdtemp(path.join(tmpdir(), 'gantry-sif-cli-'));
  const modules = path.join(root, 'project', 'node_modules');
  // What `npm install @gantry/cli` puts in node_modules (see apps/cli's bundle test): package.json, bin/ and
  // the dist files (bin.cjs, main.cjs and the lazily required packages' main-lazy-*.cjs).
  const cli = path.join(modules, '@gantry', 'cli');
  await mkdir(path.join(cli, 'dist'), { recursive: true });
  await cp(path.join(cliDirectory, 'package.json'), path.join(cli, 'package.json'));
  await cp(path.join(cliDirectory, 'bin'), path.join(cli, 'bin'), { recursive: true });
  for (const file of readdirSync(path.join(cliDirectory, 'dist')).filter((name) => name.endsWith('.cjs')))
    await cp(path.join(cliDirectory, 'dist', file), path.join(cli, 'dist', file));
  // The transport, linked beside it.
  await symlink(packageDirectory, path.join(modules, 'gantry-transport-sif'), 'dir');
  // And a plugin written for a contract version this Gantry does not know.
  const future = path.join(modules, 'gantry-transport-future');
  await mkdir(future);
  await writeFile(
    path.join(future, 'package.json'),
    JSON.stringify({
      name: 'gantry-transport-future',
      version: '2.0.0',
      type: 'module',
      exports: './index.js',
      gantry: { transports: ['future'] },
    }),
  );
  await writeFile(
    path.join(future, 'index.js'),
    "export default { specificationVersion: 'v2', name: 'future', parseReference() { throw new Error('unreachable'); }, validatePolicyConfigurationScope() {} };\n",
  );
  gantryBinary = path.join(cli, 'bin', 'gantry');
  const { GANTRY_TRANSPORTS: _ignored, ...inherited } = process.env;
  environment = {
    ...inherited,
    HOME: path.join(root, 'home'),
    XDG_CONFIG_HOME: path.join(root, 'config'),
    GANTRY_BLOB_INFO_CACHE: 'off',
    TMPDIR: root,
  };
});

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

/** The SIF files compared: skopeo's own test file, and ones made here with the files skopeo must carry over. */
async function sifFiles(): Promise<Array<{ name: string; file: string }>> {
  const rich = path.join(root, 'rich.sif');
  await writeFile(
    rich,
    await buildTestSif({
      architecture: 'arm64',
      modifiedAt: 1_690_000_000,
      definitionFile: [
        'Bootstrap: docker',
        'From: busybox',
        '%environment',
        '    export GREETING="hello world"',
        '    # not kept',
        '%runscript',
        '    echo "$GREETING" "$@"',
        '%labels',
        '    Author test',
        '',
      ].join('\n'),
      entries: [
        ...singularityMetadataEntries('#!/bin/sh\necho "$GREETING"\n'),
        { type: 'directory', path: 'bin' },
        { type: 'file', path: 'bin/busybox', content: 'pretend binary', mode: 0o4755 },
        { type: 'hardlink', path: 'bin/sh', target: 'bin/busybox' },
        { type: 'hardlink', path: 'bin/ls', target: 'bin/busybox' },
        { type: 'symlink', path: 'bin/cat', target: 'busybox' },
        { type: 'directory', path: 'home/user', mode: 0o700, uid: 1000, gid: 1000 },
        { type: 'file', path: 'home/user/notes', content: 'mine', mode: 0o600, uid: 1000, gid: 100 },
        { type: 'file', path: 'etc/shadow', content: 'root:*:1::::::\n', mode: 0o640, gid: 42 },
        { type: 'file', path: 'etc/tagged', content: 'x', xattrs: { 'user.origin': 'sif-test' } },
        { type: 'file', path: 'opt/ünïcödé name with spaces', content: 'unicode' },
        { type: 'file', path: `opt/${'long-directory-name/'.repeat(6)}file`, content: 'deep' },
        { type: 'char-device', path: 'dev/null', major: 1, minor: 3, mode: 0o666 },
        { type: 'block-device', path: 'dev/loop0', major: 7, minor: 0 },
        { type: 'fifo', path: 'run/initctl', mode: 0o600 },
        { type: 'directory', path: 'tmp', mode: 0o1777 },
        { type: 'file', path: 'empty', content: '' },
      ],
      squashfs: { compressor: 'xz', time: 1_680_000_000 },
    }),
  );
  const plain = path.join(root, 'plain.sif');
  await writeFile(
    plain,
    await buildTestSif({
      entries: [{ type: 'file', path: 'hello', content: 'hello\n' }],
      squashfs: { compressor: 'zstd' },
    }),
  );
  const bySiftool = path.join(root, 'siftool.sif');
  await writeSifWithSiftool(bySiftool, {
    architecture: 'ppc64le',
    definitionFile: 'Bootstrap: scratch\n%environment\n  export PATH=/bin\n',
    squashfs: await buildSquashfs([
      ...singularityMetadataEntries('#!/bin/sh\nexec /bin/app\n'),
      { type: 'file', path: 'bin/app', content: 'app', mode: 0o755 },
    ]),
  });
  return [
    { name: 'written by sylabs/sif (siftool), environment only', file: bySiftool },
    {
      name: 'busybox (skopeo’s test data, made by singularity)',
      file: path.join(packageDirectory, 'testdata', 'busybox_latest.sif'),
    },
    { name: 'definition file, owners, links, devices, xattrs (xz)', file: rich },
    { name: 'no definition file (zstd)', file: plain },
  ];
}

let copies: Promise<Array<{ name: string; file: string }>> | undefined;

/** Copies every SIF file of `sifFiles` with gantry and with skopeo to `oci:<root>/by-<tool>:<file name>`, once. */
function copiedByBoth(): Promise<Array<{ name: string; file: string }>> {
  copies ??= (async () => {
    const files = await sifFiles();
    for (const { name, file } of files) {
      const tag = path.basename(file, '.sif');
      expectSuccess(
        gantry('copy', '--quiet', `sif:${file}`, `oci:${root}/by-gantry:${tag}`),
        `gantry copy (${name})`,
      );
      expectSuccess(
        skopeo('copy', '--quiet', `sif:${file}`, `oci:${root}/by-skopeo:${tag}`),
        `skopeo copy (${name})`,
      );
    }
    return files;
  })();
  return copies;
}

/** Entries compared: everything but the dates skopeo gives what it adds (the time of its run). */
function comparableEntries(image: CopiedImage, addedByConversion: boolean) {
  const entries = Object.fromEntries(image.entries);
  if (addedByConversion) {
    for (const name of ['podman', 'podman/runscript']) {
      const entry = entries[name];
      if (entry) entries[name] = { ...entry, mtime: -1 };
    }
  }
  return entries;
}

describe('gantry with gantry-transport-sif installed beside it', () => {
  it('lists the sif transport and the package it comes from', () => {
    const listed = expectSuccess(gantry('transports'), 'gantry transports');
    expect(listed).toMatch(/^sif\s+gantry-transport-sif@0\.1\.0$/m);
    expect(listed).toMatch(/^oci\s+@gantry\/transport-oci@/m);
  });

  it('refuses, with a message naming it and its version, a plugin written for an unknown contract version', () => {
    const listed = gantry('transports');
    expect(listed.status, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/^sif\s+gantry-transport-sif@0\.1\.0$/m);
    expect(listed.stdout).not.toMatch(/^future\s/m);
    // Log lines quote their message as logrus does (\"): compare without that quoting.
    const unquoted = (text: string) => text.replaceAll('\\"', '"');
    expect(unquoted(listed.stderr)).toContain(
      'gantry-transport-future@2.0.0 is not a valid Gantry transport: specificationVersion is "v2", this Gantry supports "v1"',
    );
    const used = gantry('inspect', 'future:anything');
    expect(used.status).not.toBe(0);
    expect(unquoted(used.stderr)).toContain('specificationVersion is "v2", this Gantry supports "v1"');
  });

  it('copies SIF files to oci: with the same layer files and config as skopeo copy', async () => {
    for (const { name, file } of await copiedByBoth()) {
      const tag = path.basename(file, '.sif');
      const ours = await readCopiedImage(`${root}/by-gantry`, tag);
      const theirs = await readCopiedImage(`${root}/by-skopeo`, tag);
      expect(ours.layerDigests, name).toHaveLength(1);
      expect(ours.entries.size, name).toBeGreaterThan(1);
      const injected = (theirs.config.config as { Cmd: string[] }).Cmd[0] === '/podman/runscript';
      expect(comparableEntries(ours, injected), name).toEqual(comparableEntries(theirs, injected));
      expect(configWithoutLayerDigest(ours.config), name).toEqual(configWithoutLayerDigest(theirs.config));
      // Byte for byte too (Go's member order and escaping), apart from the layer digest.
      expect(configBytesWithoutLayerDigest(ours), name).toBe(configBytesWithoutLayerDigest(theirs));
    }
  });

  it('carries over what the SIF file holds (checked on the copy, not only against skopeo)', async () => {
    await copiedByBoth();
    const copied = await readCopiedImage(`${root}/by-gantry`, 'rich');
    const entry = (name: string) => copied.entries.get(name);
    expect(copied.config).toMatchObject({
      created: '2023-07-22T04:26:40Z',
      architecture: 'arm64',
      os: 'linux',
      config: { Cmd: ['/podman/runscript'] },
    });
    expect(entry('podman/runscript')).toMatchObject({
      type: 'file',
      mode: '755',
      uid: 0,
      mtime: 1_690_000_000,
    });
    expect(entry('bin/busybox')).toMatchObject({
      type: 'file',
      mode: '4755',
      linkGroup: ['bin/busybox', 'bin/ls', 'bin/sh'],
    });
    expect(entry('bin/cat')).toMatchObject({ type: 'symlink', target: 'busybox' });
    expect(entry('home/user')).toMatchObject({ type: 'directory', mode: '700', uid: 1000, gid: 1000 });
    expect(entry('home/user/notes')).toMatchObject({
      mode: '600',
      uid: 1000,
      gid: 100,
      mtime: 1_680_000_000,
    });
    expect(entry('dev/null')).toMatchObject({ type: 'character-device', device: '1,3', mode: '666' });
    expect(entry('dev/loop0')).toMatchObject({ type: 'block-device', device: '7,0' });
    expect(entry('run/initctl')).toMatchObject({ type: 'fifo', mode: '600' });
    expect(entry('tmp')).toMatchObject({ type: 'directory', mode: '1777' });
    expect(entry('etc/tagged')?.xattrs).toEqual({ 'SCHILY.xattr.user.origin': 'sif-test' });
    expect(entry('opt/ünïcödé name with spaces')).toMatchObject({ type: 'file', size: 7 });
    expect(entry(`opt/${'long-directory-name/'.repeat(6)}file`)).toMatchObject({ type: 'file', size: 4 });
    expect(entry('.singularity.d/env/90-environment.sh')).toMatchObject({ type: 'file', mode: '755' });
  });

  it('inspects a SIF file as skopeo does, apart from the layer digest', async () => {
    const busybox = path.join(packageDirectory, 'testdata', 'busybox_latest.sif');
    const ours = JSON.parse(expectSuccess(gantry('inspect', `sif:${busybox}`), 'gantry inspect')) as Record<
      string,
      unknown
    >;
    const theirs = JSON.parse(expectSuccess(skopeo('inspect', `sif:${busybox}`), 'skopeo inspect')) as Record<
      string,
      unknown
    >;
    const withoutDigests = (output: Record<string, unknown>) => {
      const { Digest: _digest, Layers: layers, LayersData: _data, ...rest } = output;
      expect(layers).toHaveLength(1);
      return rest;
    };
    expect(withoutDigests(ours)).toEqual(withoutDigests(theirs));
    expect(ours).toMatchObject({ Architecture: 'amd64', Os: 'linux', Created: '2021-08-02T19:09:36Z' });
    const config = JSON.parse(
      expectSuccess(gantry('inspect', '--config', `sif:${busybox}`), 'gantry inspect --config'),
    );
    expect(config).toMatchObject({
      config: { Cmd: ['bash'] },
      rootfs: { diff_ids: ours.Layers as string[] },
    });
  });

  it('refuses sif: as a destination with skopeo’s message, leaving no file', async () => {
    const target = path.join(root, 'written.sif');
    const run = gantry(
      'copy',
      `sif:${path.join(packageDirectory, 'testdata', 'busybox_latest.sif')}`,
      `sif:${target}`,
    );
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain('locations can only be read from, not written to');
    expect(existsSync(target)).toBe(false);
    const missing = gantry('inspect', `sif:${path.join(root, 'missing.sif')}`);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('no such file or directory');
  });
});
