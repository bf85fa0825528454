/**
 * The ostree: transport against Debian's `ostree` command, on repositories of each test's own: references,
 * layers without parent directory entries (whiteout-only layers), hostile layers, repositories that are
 * not repositories, corrupt commits, missing branches.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import { ErrorCodes, GantryError, TransportRegistry } from '@gantry/core/transport';
import { handMadeTar, ociLayoutFromTars } from '@gantry/layer-tree/testing';
import { ociTransport } from '@gantry/transport-oci';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeOstreeRef, ostreeTransport } from './index.js';
import { syncFileSystem } from './native.js';
import { OstreeRepository, ostreeError, unpublish } from './repository.js';

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

/** An OCI layout (tag `t`) of one gzip-compressed layer: what the native writer takes (see destination.ts). */
async function gzipLayoutOf(name: string, tar: Buffer): Promise<{ source: string; layerDigest: string }> {
  const layout = join(root, name);
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  const blob = (bytes: Buffer) => {
    const digest = sha256(bytes);
    writeFileSync(join(layout, 'blobs', 'sha256', digest.slice(7)), bytes);
    return { digest, size: bytes.length };
  };
  const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...blob(gzipSync(tar)) };
  const config = blob(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: {},
        rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
      }),
    ),
  );
  const manifest = blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [layer],
      }),
    ),
  );
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': 't' },
        },
      ],
    }),
  );
  return { source: `oci:${layout}:t`, layerDigest: layer.digest };
}

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

  it.skipIf(process.getuid?.() !== 0)(
    'a large layer (written natively, as root into a bare repository) is fsck-clean, checks out and is regenerated exactly, as with ostree commit',
    async () => {
      const big = randomBytes(6 * 1024 * 1024 + 333);
      const layer = handMadeTar([
        { name: 'data/', type: 'directory' },
        { name: 'data/big.bin', content: big, mode: 0o4750, uid: 12, gid: 34 },
        { name: 'data/small', content: 'small\n' },
        { name: 'data/link', type: 'symlink', linkName: 'big.bin' },
        { name: 'data/hard', type: 'hardlink', linkName: 'data/big.bin' },
      ]);
      const { source, layerDigest } = await gzipLayoutOf('native', layer);
      const trees: string[] = [];
      for (const writer of ['native', 'ostree']) {
        const repo = join(root, `native-repo-${writer}`);
        const previous = process.env.GANTRY_OSTREE_WRITER;
        if (writer === 'ostree') process.env.GANTRY_OSTREE_WRITER = 'ostree';
        try {
          await copy(source, `ostree:native:1@${repo}`);
        } finally {
          if (previous === undefined) delete process.env.GANTRY_OSTREE_WRITER;
          else process.env.GANTRY_OSTREE_WRITER = previous;
        }
        ostree(`--repo=${repo}`, 'fsck');
        const branch = `ociimage/${layerDigest.slice(7)}`;
        trees.push(ostree(`--repo=${repo}`, 'ls', '-R', '-C', branch));
        const checkout = join(root, `native-checkout-${writer}`);
        ostree(`--repo=${repo}`, 'checkout', branch, checkout);
        expect(readFileSync(join(checkout, 'data', 'big.bin')).equals(big)).toBe(true);
        const out = join(root, `native-out-${writer}`);
        await copy(`ostree:native:1@${repo}`, `oci:${out}:x`);
        expect((await diffIdsOf(out)).diffIds).toEqual([sha256(layer)]);
        // Nothing of the copy is left in the repository's tmp/.
        expect(readdirSync(join(repo, 'tmp')).filter((name) => name !== 'cache')).toEqual([]);
      }
      expect(trees[0]).toBe(trees[1]);
    },
  );

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

describe('creating a repository (no ostree init process)', () => {
  const layout = (repo: string): string[] =>
    execFileSync('find', [repo, '-printf', '%M %P\n'], { encoding: 'utf8' }).split('\n').sort();
  const mode = process.getuid?.() === 0 ? 'bare' : 'bare-user';

  it('makes what `ostree init` makes: the same directories, modes and config', async () => {
    const ours = join(root, 'created-by-gantry');
    const theirs = join(root, 'created-by-ostree');
    await OstreeRepository.openOrCreate(ours);
    ostree('init', `--repo=${theirs}`, `--mode=${mode}`);
    expect(layout(ours)).toEqual(layout(theirs));
    expect(readFileSync(join(ours, 'config'), 'utf8')).toBe(readFileSync(join(theirs, 'config'), 'utf8'));
    ostree(`--repo=${ours}`, 'fsck');
  });

  it('completes a repository another process was creating, keeping its config', async () => {
    const onlyTemporary = join(root, 'half-created-tmp');
    mkdirSync(join(onlyTemporary, 'tmp'), { recursive: true });
    await OstreeRepository.openOrCreate(onlyTemporary);
    ostree(`--repo=${onlyTemporary}`, 'fsck');

    const withConfig = join(root, 'half-created-config');
    mkdirSync(withConfig);
    const config = '[core]\nrepo_version=1\nmode=bare-user\nmin-free-space-percent=0\n';
    writeFileSync(join(withConfig, 'config'), config);
    const repository = await OstreeRepository.openOrCreate(withConfig);
    expect(repository.mode).toBe('bare-user');
    expect(readFileSync(join(withConfig, 'config'), 'utf8')).toBe(config);
    ostree(`--repo=${withConfig}`, 'fsck');
  });

  it('refuses a path whose parent does not exist, creating nothing', async () => {
    const missing = join(root, 'no-such-parent', 'repo');
    await expect(OstreeRepository.openOrCreate(missing)).rejects.toMatchObject({
      code: ErrorCodes.InvalidLayout,
    });
    expect(existsSync(join(root, 'no-such-parent'))).toBe(false);
  });
});

describe('staging repositories and syncing', () => {
  it('are written unsynced (fsync=false) and synced once before publishing, unless the target syncs nothing', async () => {
    const synced = join(root, 'sync-target');
    ostree('init', `--repo=${synced}`, '--mode=bare-user');
    const target = await OstreeRepository.open(synced);
    const staging = await OstreeRepository.createStaging(join(synced, 'tmp', 'staging-test'), target);
    expect(readFileSync(join(staging.path, 'config'), 'utf8')).toContain('fsync=false');
    await staging.syncBeforePublishing(); // a real syncfs of the file system

    const unsynced = join(root, 'nosync-target');
    ostree('init', `--repo=${unsynced}`, '--mode=bare-user');
    ostree(`--repo=${unsynced}`, 'config', 'set', 'core.fsync', 'false');
    const unsyncedStaging = await OstreeRepository.createStaging(
      join(unsynced, 'tmp', 'staging-test'),
      await OstreeRepository.open(unsynced),
    );
    expect(readFileSync(join(unsyncedStaging.path, 'config'), 'utf8')).toContain('fsync=false');

    const perObject = join(root, 'per-object-target');
    ostree('init', `--repo=${perObject}`, '--mode=bare-user');
    ostree(`--repo=${perObject}`, 'config', 'set', 'core.per-object-fsync', 'true');
    const perObjectStaging = await OstreeRepository.createStaging(
      join(perObject, 'tmp', 'staging-test'),
      await OstreeRepository.open(perObject),
    );
    const perObjectConfig = readFileSync(join(perObjectStaging.path, 'config'), 'utf8');
    expect(perObjectConfig).toContain('per-object-fsync=true');
    expect(perObjectConfig).not.toContain('fsync=false');
  });

  it('start writing out in the background, at most one sync at a time, and sync once more before publishing', async () => {
    const repositoryPath = join(root, 'write-out-target');
    ostree('init', `--repo=${repositoryPath}`, '--mode=bare-user');
    const staging = await OstreeRepository.createStaging(
      join(repositoryPath, 'tmp', 'staging-write-out'),
      await OstreeRepository.open(repositoryPath),
    );
    writeFileSync(join(staging.path, 'tmp', 'written'), Buffer.alloc(1 << 20, 1));
    staging.startWritingOut();
    staging.startWritingOut(); // one is running: nothing more
    await staging.syncBeforePublishing(); // waits for the one running, then syncs
    staging.startWritingOut(); // the sync descriptor is closed: nothing
    await staging.closeSyncHandle(); // again: nothing to close
  });

  it('syncFileSystem reports a path it cannot open', async () => {
    await expect(syncFileSystem(join(root, 'no-such-directory'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

/** Every file under `directory` with a hash of its bytes, every directory and link; `.lock` by name only. */
function snapshot(directory: string, prefix = ''): string[] {
  const entries: string[] = [];
  for (const entry of readdirSync(join(directory, prefix), { withFileTypes: true }).sort((a, b) =>
    a.name < b.name ? -1 : 1,
  )) {
    const relative = join(prefix, entry.name);
    if (entry.isDirectory()) entries.push(`${relative}/`, ...snapshot(directory, relative));
    else if (entry.name === '.lock') entries.push(relative);
    else if (entry.isFile()) entries.push(`${relative} ${sha256(readFileSync(join(directory, relative)))}`);
    else entries.push(`${relative} (other)`);
  }
  return entries;
}

describe('what a copy writes before its commit', () => {
  it('stays out of the repository: close() without commit() leaves it byte for byte as it was', async () => {
    const repo = join(root, 'untouched-repo');
    await copy(
      await layoutOf('untouched-first', [handMadeTar([{ name: 'first', content: 'first\n' }])]),
      `ostree:first:v1@${repo}`,
    );
    const before = snapshot(repo);
    const layers = [
      handMadeTar([
        { name: 'data/', type: 'directory' },
        { name: 'data/a', content: randomBytes(300_000) },
      ]),
      handMadeTar([{ name: 'b', content: 'b\n' }]),
    ];
    const layout = (await layoutOf('untouched-second', layers)).slice('oci:'.length, -':t'.length);
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    const blobPath = (digest: string) => join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));
    const manifest = JSON.parse(await readFile(blobPath(index.manifests[0]!.digest), 'utf8')) as {
      config: { digest: string; size: number };
      layers: { digest: string; size: number }[];
    };
    const destination = await registry.parseImageReference(`ostree:second:v1@${repo}`).newImageDestination();
    try {
      for (const layer of manifest.layers) {
        await destination.putBlob(createReadStream(blobPath(layer.digest)), layer, { isConfig: false });
      }
      await destination.putBlob(createReadStream(blobPath(manifest.config.digest)), manifest.config, {
        isConfig: true,
      });
    } finally {
      await destination.close(); // the layers' commits have finished in the staging repository by now
    }
    expect(snapshot(repo)).toEqual(before);
    ostree(`--repo=${repo}`, 'fsck');
  });

  it('publishes only what branches reach: no unreachable object after a copy', async () => {
    const repo = join(root, 'reachable-repo');
    const source = await layoutOf('reachable', [
      handMadeTar([
        { name: 'x/', type: 'directory' },
        { name: 'x/y', content: 'y\n' },
      ]),
      handMadeTar([{ name: 'z', content: 'z\n' }]),
    ]);
    await copy(source, `ostree:reachable:v1@${repo}`);
    await copy(source, `ostree:reachable:v2@${repo}`); // every blob reused: only the image commit is new
    ostree(`--repo=${repo}`, 'fsck');
    expect(ostree(`--repo=${repo}`, 'prune', '--refs-only', '--no-prune')).toContain(
      'No unreachable objects',
    );
    expect(readdirSync(join(repo, 'tmp')).filter((name) => name.includes('gantry'))).toEqual([]);
  });
});

describe('ostree errors', () => {
  it("libostree's free-space refusal and a full disk are ENOSPC, 'no space left on device'", () => {
    for (const stderr of [
      "error: ostree-tar: Failed to handle file: ostree-tar: Failed to import file: Writing content object: min-free-space-percent '3%' would be exceeded, at least 21.0 MB requested",
      'error: Writing content object: fallocate: No space left on device',
    ]) {
      const error = ostreeError(['commit', '--repo=/r'], new Error('exit status 1'), stderr);
      expect(error).toMatchObject({ code: 'ENOSPC' });
      expect(error.message).toMatch(/^ostree commit in \/r: no space left on device \(/);
    }
  });

  it("an aborted run gives the signal's reason", () => {
    const controller = new AbortController();
    controller.abort(new GantryError(ErrorCodes.Aborted, 'interrupted by SIGINT'));
    const error = ostreeError(
      ['commit'],
      Object.assign(new Error('aborted'), { code: 'ABORT_ERR' }),
      '',
      controller.signal,
    );
    expect(error.message).toBe('interrupted by SIGINT');
  });
});

describe('publishing a staging repository', () => {
  it('moves its objects in without replacing any, and unpublish moves them back', async () => {
    const repo = join(root, 'publish-repo');
    await copy(
      await layoutOf('publish-first', [handMadeTar([{ name: 'shared', content: 'shared\n' }])]),
      `ostree:first:v1@${repo}`,
    );
    const before = snapshot(repo);
    const target = await OstreeRepository.open(repo);
    const staging = await OstreeRepository.createStaging(join(root, 'publish-staging'), target);
    const tree = join(root, 'publish-tree');
    mkdirSync(tree);
    writeFileSync(join(tree, 'shared'), 'shared\n', { mode: 0o644 }); // an object the target has already
    writeFileSync(join(tree, 'new'), randomBytes(1000));
    const commit = await staging.commitDirectory(tree, new Map([['k', 'v']]));
    const moved = staging.publishInto(target);
    expect(moved.length).toBeGreaterThan(0);
    await target.setBranch('published', commit);
    ostree(`--repo=${repo}`, 'fsck');
    expect(ostree(`--repo=${repo}`, 'ls', 'published', '/new')).toContain('/new');
    await target.removeBranchIfAt('published', commit);
    unpublish(moved);
    expect(snapshot(repo)).toEqual(before);
    ostree(`--repo=${repo}`, 'fsck');
  });
});
