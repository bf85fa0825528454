/**
 * The ostree: transport against Debian's `ostree` command, on repositories of each test's own: references,
 * layers without parent directory entries (whiteout-only layers), hostile layers, repositories that are
 * not repositories, corrupt commits, missing branches.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import { ErrorCodes, TransportRegistry } from '@gantry/core/transport';
import { handMadeTar, ociLayoutFromTars } from '@gantry/layer-tree/testing';
import { ociTransport } from '@gantry/transport-oci';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeOstreeRef, ostreeTransport } from './index.js';

const registry = new TransportRegistry([ociTransport, ostreeTransport]);
const policy = insecureAcceptAnythingPolicy();
const ostree = (...args: string[]): string => execFileSync('ostree', args, { encoding: 'utf8' });

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-ostree-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function copy(source: string, destination: string): Promise<void> {
  await copyImage(registry.parseImageReference(source), registry.parseImageReference(destination), {
    policy,
  });
}

async function layoutOf(name: string, layers: Buffer[]): Promise<string> {
  const tars = layers.map((tar, index) => {
    const path = join(root, `${name}-${index}.tar`);
    writeFileSync(path, tar);
    return path;
  });
  const layout = join(root, name);
  await ociLayoutFromTars(layout, tars);
  return `oci:${layout}:t`;
}

const sha256 = (bytes: Uint8Array): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

async function diffIdsOf(ociDirectory: string): Promise<{ config: string; diffIds: string[] }> {
  const index = JSON.parse(await readFile(join(ociDirectory, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const blob = (digest: string) => readFile(join(ociDirectory, 'blobs', 'sha256', digest.slice(7)));
  const manifest = JSON.parse((await blob(index.manifests[0]!.digest)).toString()) as {
    config: { digest: string };
    layers: { digest: string }[];
  };
  const diffIds = await Promise.all(
    manifest.layers.map(async (layer) => {
      const bytes = await blob(layer.digest);
      return sha256(bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes) : bytes);
    }),
  );
  return { config: manifest.config.digest, diffIds };
}

describe('references', () => {
  it('parse as containers/image did: :latest added, branch encoded, default repository', () => {
    const reference = ostreeTransport.parseReference(`busybox@${root}`);
    expect(reference.image).toBe('busybox:latest');
    expect(reference.imageBranch).toBe('ociimage/busybox_3Alatest');
    expect(reference.stringWithinTransport()).toBe(`busybox:latest@${root}`);
    expect(reference.policyConfigurationIdentity()).toBe(`${root}:busybox:latest`);
    expect(
      ostreeTransport.parseReference('example.com/ns/app:v1@/tmp').policyConfigurationNamespaces(),
    ).toEqual(['/tmp:example.com/ns/app', '/tmp:example.com/ns', '/tmp:example.com']);
    expect(ostreeTransport.parseReference('app:v1').repository).toBe('/ostree/repo');
    expect(encodeOstreeRef('example.com:5000/a_b:v1.0-x')).toBe('example.com_3A5000_2Fa_5Fb_3Av1.0-x');
    expect(ostreeTransport.parseReference('app:v1@/tmp/../tmp/').stringWithinTransport()).toBe('app:v1@/tmp');
  });

  it('refuses bad names, colons in the path, relative scopes', () => {
    for (const bad of ['UPPER:v1@/tmp', 'app:v1@/tmp/a:b', '']) {
      expect(() => ostreeTransport.parseReference(bad)).toThrow(
        expect.objectContaining({ code: ErrorCodes.InvalidReference }),
      );
    }
    expect(() => ostreeTransport.validatePolicyConfigurationScope('/repo')).toThrow(/Must include a repo/);
    expect(() => ostreeTransport.validatePolicyConfigurationScope('repo:x')).toThrow(/absolute path/);
    expect(() => ostreeTransport.validatePolicyConfigurationScope('/a/../repo:x')).toThrow(/non-canonical/);
    expect(() => ostreeTransport.validatePolicyConfigurationScope('/repo:x')).not.toThrow();
  });
});

describe('layers', () => {
  it('a layer of whiteouts without parent directory entries is committed, fsck-clean, and regenerated exactly', async () => {
    const base = handMadeTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/opq/', type: 'directory' },
      { name: 'etc/opq/old', content: 'old\n' },
      { name: 'etc/gone', content: 'gone\n' },
    ]);
    const whiteouts = handMadeTar([
      { name: 'etc/opq/.wh..wh..opq', content: '' },
      { name: 'etc/.wh.gone', content: '' },
    ]);
    const source = await layoutOf('whiteouts', [base, whiteouts]);
    const repo = join(root, 'whiteouts-repo');
    await copy(source, `ostree:wh:1@${repo}`);
    ostree(`--repo=${repo}`, 'fsck');
    const checkout = join(root, 'whiteouts-checkout');
    ostree(`--repo=${repo}`, 'checkout', '--user-mode', `ociimage/${sha256(whiteouts).slice(7)}`, checkout);
    expect(readdirSync(join(checkout, 'etc')).sort()).toEqual(['.wh.gone', 'opq']);
    expect(readdirSync(join(checkout, 'etc', 'opq'))).toEqual(['.wh..wh..opq']);
    const out = join(root, 'whiteouts-out');
    await copy(`ostree:wh:1@${repo}`, `oci:${out}:x`);
    expect((await diffIdsOf(out)).diffIds).toEqual([sha256(base), sha256(whiteouts)]);
  });

  it('a hostile layer is refused: nothing written outside, no branch', async () => {
    const outside = join(root, 'outside');
    const hostile = handMadeTar([
      { name: 'link', type: 'symlink', linkName: '../../../../../../../../..' + outside },
      { name: 'link/escaped', content: 'escaped\n' },
      { name: '../escaped-too', content: 'x\n' },
    ]);
    const source = await layoutOf('hostile', [hostile]);
    const repo = join(root, 'hostile-repo');
    await expect(copy(source, `ostree:bad:1@${repo}`)).rejects.toMatchObject({
      code: ErrorCodes.InvalidLayer,
    });
    expect(existsSync(outside)).toBe(false);
    expect(existsSync(join(root, 'escaped-too'))).toBe(false);
    expect(ostree(`--repo=${repo}`, 'refs').trim()).toBe('');
  });
});

describe('a layer that fails while its blob is still arriving', () => {
  it('fails the copy: the rest of the blob is read, never waited for', async () => {
    // The hostile entry stops the layer at once; 8 MiB follow, more than the stream buffers hold.
    const tar = handMadeTar([
      { name: '../escaped', content: 'x\n' },
      { name: 'big.bin', content: randomBytes(8 * 1024 * 1024) },
    ]);
    const source = await layoutOf('stops-early', [tar]);
    await expect(copy(source, `ostree:stops:1@${join(root, 'stops-repo')}`)).rejects.toMatchObject({
      code: ErrorCodes.InvalidLayer,
    });
  }, 60_000);
});

describe('bad repositories', () => {
  it('a missing repository or branch is ERR_GANTRY_IMAGE_NOT_FOUND', async () => {
    const missingRepo = ostreeTransport.parseReference(`app:v1@${join(root, 'nothing-here')}`);
    await expect(missingRepo.newImageSource()).rejects.toMatchObject({ code: ErrorCodes.ImageNotFound });
    expect(existsSync(join(root, 'nothing-here'))).toBe(false);
    const repo = join(root, 'empty-repo');
    ostree('init', `--repo=${repo}`, '--mode=bare-user');
    await expect(ostreeTransport.parseReference(`app:v1@${repo}`).newImageSource()).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
      message: expect.stringContaining('ociimage/app_3Av1'),
    });
    await expect(ostreeTransport.parseReference(`app:v1@${repo}`).deleteImage()).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
    });
  });

  it('a directory that is not a repository is refused, for reading and writing, and left alone', async () => {
    const directory = join(root, 'not-a-repo');
    mkdirSync(directory);
    await writeFile(join(directory, 'keep'), 'mine\n');
    const reference = ostreeTransport.parseReference(`app:v1@${directory}`);
    await expect(reference.newImageSource()).rejects.toMatchObject({
      code: ErrorCodes.InvalidLayout,
      message: expect.stringContaining('is not an OSTree repository'),
    });
    await expect(reference.newImageDestination()).rejects.toMatchObject({ code: ErrorCodes.InvalidLayout });
    expect(readdirSync(directory)).toEqual(['keep']);
  });

  it('a corrupt image commit is reported as such', async () => {
    const source = await layoutOf('small', [handMadeTar([{ name: 'file', content: 'content\n' }])]);
    const repo = join(root, 'corrupt-repo');
    await copy(source, `ostree:app:v1@${repo}`);
    const commit = ostree(`--repo=${repo}`, 'rev-parse', 'ociimage/app_3Av1').trim();
    const object = join(repo, 'objects', commit.slice(0, 2), `${commit.slice(2)}.commit`);
    const bytes = await readFile(object);
    bytes[10] = bytes[10]! ^ 0xff;
    await writeFile(object, bytes);
    await expect(ostreeTransport.parseReference(`app:v1@${repo}`).newImageSource()).rejects.toMatchObject({
      code: ErrorCodes.InvalidLayout,
      message: expect.stringContaining('is corrupt'),
    });
  });

  it('creates a missing repository (bare as root, bare-user otherwise)', async () => {
    const source = await layoutOf('created', [handMadeTar([{ name: 'file', content: 'content\n' }])]);
    const repo = join(root, 'created-repo');
    await copy(source, `ostree:app:v1@${repo}`);
    const config = await readFile(join(repo, 'config'), 'utf8');
    expect(config).toContain(`mode=${process.getuid?.() === 0 ? 'bare' : 'bare-user'}`);
    ostree(`--repo=${repo}`, 'fsck');
  });
});
