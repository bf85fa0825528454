/**
 * Acceptance checks of the foundation, end to end through the `gantry` command and the real skopeo
 * and umoci: images written by the fixture builder, by skopeo and by umoci are inspected alike; copies
 * keep digests both ways; a corrupted blob fails the copy and leaves no image behind.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  writeFixtureToDestination,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { dirTransport } from '@gantry/transport-dir';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireTool, runGantry, runSkopeo } from './test-support/run.js';

let root: string;

/** Newer skopeo prints LayersData (and Variant); Debian's 1.9.3 prints neither: drop exactly those. */
function withoutNewerSkopeoFields(text: string): string {
  return text
    .replace(/\n {4}"LayersData": (?:null|\[\]|\[\n[\s\S]*?\n {4}\]),/, '')
    .replace(/\n {4}"Variant": "[^"\n]*",/, '');
}

function runUmoci(args: string[]): string {
  return execFileSync(requireTool('umoci'), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function sha256File(path: string): Promise<string> {
  return readFile(path).then((bytes) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`);
}

async function expectSameInspect(reference: string): Promise<void> {
  for (const flags of [[], ['--raw'], ['--config'], ['--config', '--raw']]) {
    const expected = runSkopeo(['inspect', ...flags, reference]);
    expect(expected.code, `skopeo inspect ${flags.join(' ')} ${reference}: ${expected.stderr}`).toBe(0);
    const actual = await runGantry(['inspect', ...flags, reference]);
    expect(actual.code, actual.stderr).toBe(0);
    expect(
      withoutNewerSkopeoFields(actual.stdout.toString()),
      `inspect ${flags.join(' ')} ${reference}`,
    ).toBe(expected.stdout.toString());
  }
}

const images = new Map<string, FixtureImage>();

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-acceptance-'));
  for (const [name, spec] of Object.entries(fixturePresets)) {
    images.set(name, await buildFixtureImage(spec, { directory: join(root, 'blobs', name) }));
  }
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('inspect of Docker-format fixture images matches skopeo', () => {
  // skopeo 1.9 reads Docker manifests from dir: but not from an OCI layout's index.json, so these
  // presets are written through Gantry's dir: destination and inspected there.
  const dockerPresets = Object.entries(fixturePresets)
    .filter(([, spec]) => spec.format === 'docker')
    .map(([name]) => name);

  it('covers every Docker-format preset', () => {
    expect(dockerPresets.length).toBeGreaterThanOrEqual(3);
  });

  for (const name of dockerPresets) {
    it(`inspect dir: ${name}`, async () => {
      const directory = join(root, 'docker-dir', name);
      await mkdir(join(root, 'docker-dir'), { recursive: true });
      const destination = await dirTransport.parseReference(directory).newImageDestination();
      await writeFixtureToDestination(images.get(name)!, destination);
      await expectSameInspect(`dir:${directory}`);
    });
  }
});

describe('images written by umoci', () => {
  it('inspects and copies a umoci-built image like skopeo does', async () => {
    const layout = join(root, 'umoci-layout');
    runUmoci(['init', '--layout', layout]);
    runUmoci(['new', '--image', `${layout}:base`]);
    const content = join(root, 'umoci-content');
    await mkdir(content, { recursive: true });
    await writeFile(join(content, 'greeting.txt'), 'hello from umoci\n');
    runUmoci(['insert', '--image', `${layout}:base`, join(content, 'greeting.txt'), '/greeting.txt']);
    runUmoci([
      'config',
      '--image',
      `${layout}:base`,
      '--config.env',
      'GREETING=hello',
      '--config.label',
      'a=<b&c>',
    ]);
    expect(runUmoci(['ls', '--layout', layout]).trim()).toBe('base');

    await expectSameInspect(`oci:${layout}:base`);

    // gantry copies it to dir:, skopeo copies that back to oci:, and the manifest digest stays.
    const directory = join(root, 'umoci-to-dir');
    const digestFile = join(root, 'umoci-digest');
    const copied = await runGantry([
      '--insecure-policy',
      'copy',
      '--digestfile',
      digestFile,
      `oci:${layout}:base`,
      `dir:${directory}`,
    ]);
    expect(copied.code, copied.stderr).toBe(0);
    const back = runSkopeo([
      '--insecure-policy',
      'copy',
      '--digestfile',
      join(root, 'umoci-back-digest'),
      `dir:${directory}`,
      `oci:${join(root, 'umoci-back')}:t`,
    ]);
    expect(back.code, back.stderr).toBe(0);
    const original = runSkopeo(['inspect', '--format', '{{.Digest}}', `oci:${layout}:base`])
      .stdout.toString()
      .trim();
    expect(await readFile(digestFile, 'utf8')).toBe(original);
    expect(await readFile(join(root, 'umoci-back-digest'), 'utf8')).toBe(original);
  });
});

describe('copies read what skopeo wrote and keep digests', () => {
  it('skopeo dir: and oci: output → gantry → skopeo keeps the manifest digest', async () => {
    const layout = join(root, 'fixture-layout');
    await writeFixtureToOciLayout(images.get('whiteoutLayers')!, layout, 'latest');
    const expectedDigest = images.get('whiteoutLayers')!.topLevel.digest;

    const skopeoDir = join(root, 'skopeo-written-dir');
    const skopeoOci = join(root, 'skopeo-written-oci');
    expect(runSkopeo(['--insecure-policy', 'copy', `oci:${layout}:latest`, `dir:${skopeoDir}`]).code).toBe(0);
    expect(runSkopeo(['--insecure-policy', 'copy', `oci:${layout}:latest`, `oci:${skopeoOci}:s`]).code).toBe(
      0,
    );

    for (const [source, target] of [
      [`dir:${skopeoDir}`, `oci:${join(root, 'from-skopeo-dir')}:g`],
      [`oci:${skopeoOci}:s`, `dir:${join(root, 'from-skopeo-oci')}`],
    ] as const) {
      const digestFile = join(root, `digest-${target.length}`);
      const copied = await runGantry([
        '--insecure-policy',
        'copy',
        '--digestfile',
        digestFile,
        source,
        target,
      ]);
      expect(copied.code, copied.stderr).toBe(0);
      expect(await readFile(digestFile, 'utf8')).toBe(expectedDigest);
      const reread = runSkopeo(['inspect', '--format', '{{.Digest}}', target]);
      expect(reread.code, reread.stderr).toBe(0);
      expect(reread.stdout.toString().trim()).toBe(expectedDigest);
    }
    // Gantry's dir: output has exactly skopeo's files, byte for byte.
    const ours = join(root, 'from-skopeo-oci');
    const names = (await readdir(ours)).sort();
    expect(names).toEqual((await readdir(skopeoDir)).sort());
    for (const name of names) {
      expect(await readFile(join(ours, name)), name).toEqual(await readFile(join(skopeoDir, name)));
    }
  });

  it('copy --all of a multi-arch layout keeps the index digest and umoci lists the result', async () => {
    const layout = join(root, 'multi-arch');
    const image = images.get('multiArchOci')!;
    await writeFixtureToOciLayout(image, layout, 'latest');
    const target = join(root, 'multi-arch-copy');
    for (const tag of ['one', 'two']) {
      const copied = await runGantry([
        '--insecure-policy',
        'copy',
        '-q',
        '--all',
        `oci:${layout}:latest`,
        `oci:${target}:${tag}`,
      ]);
      expect(copied.code, copied.stderr).toBe(0);
    }
    expect(runUmoci(['ls', '--layout', target]).trim().split('\n').sort()).toEqual(['one', 'two']);
    const raw = runSkopeo(['inspect', '--raw', `oci:${target}:two`]);
    expect(raw.code, raw.stderr).toBe(0);
    expect(`sha256:${createHash('sha256').update(raw.stdout).digest('hex')}`).toBe(image.topLevel.digest);
    // Every instance made it too.
    for (const instance of image.images) {
      expect((await stat(join(target, 'blobs/sha256', instance.manifestDigest.slice(7)))).isFile()).toBe(
        true,
      );
    }
  });
});

describe('a blob whose bytes do not match its digest', () => {
  async function corruptedLayout(): Promise<{ layout: string; layerDigest: string }> {
    const layout = join(root, `corrupt-${Math.random().toString(36).slice(2)}`);
    const image = images.get('ociMinimal')!;
    await writeFixtureToOciLayout(image, layout, 'latest');
    const layerDigest = image.images[0]!.layerDigests[0]!;
    const blobPath = join(layout, 'blobs/sha256', layerDigest.slice(7));
    const bytes = await readFile(blobPath);
    const middle = bytes.length >> 1;
    bytes[middle] = bytes[middle]! ^ 0xff; // same size, different content
    await writeFile(blobPath, bytes);
    expect(await sha256File(blobPath)).not.toBe(layerDigest);
    return { layout, layerDigest };
  }

  it('fails the copy to oci: naming the digest, exit code 1, and the layout shows no new image', async () => {
    const { layout, layerDigest } = await corruptedLayout();
    const target = join(root, 'corrupt-target-oci');
    // An existing image in the target layout must stay exactly as it was.
    await writeFixtureToOciLayout(images.get('everyEntryType')!, target, 'existing');
    const indexBefore = await readFile(join(target, 'index.json'));
    const blobsBefore = (await readdir(join(target, 'blobs/sha256'))).sort();

    const result = await runGantry([
      '--insecure-policy',
      'copy',
      `oci:${layout}:latest`,
      `oci:${target}:new`,
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(layerDigest);
    expect(result.stderr).toMatch(/digest mismatch/i);
    expect(await readFile(join(target, 'index.json'))).toEqual(indexBefore);
    expect((await readdir(join(target, 'blobs/sha256'))).sort()).toEqual(blobsBefore);
    expect(runUmoci(['ls', '--layout', target]).trim()).toBe('existing');
  });

  it('fails the copy to dir: and leaves no directory behind', async () => {
    const { layout, layerDigest } = await corruptedLayout();
    const target = join(root, 'corrupt-target-dir');
    const result = await runGantry(['--insecure-policy', 'copy', `oci:${layout}:latest`, `dir:${target}`]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(layerDigest);
    await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('delete', () => {
  it('removes an oci: image and the blobs only it used, keeping the others', async () => {
    const layout = join(root, 'delete-layout');
    await writeFixtureToOciLayout(images.get('ociMinimal')!, layout, 'one');
    await writeFixtureToOciLayout(images.get('whiteoutLayers')!, layout, 'two');
    const removed = images.get('ociMinimal')!;
    const kept = images.get('whiteoutLayers')!;
    const result = await runGantry(['delete', `oci:${layout}:one`]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(runUmoci(['ls', '--layout', layout]).trim()).toBe('two');
    const blobs = new Set(await readdir(join(layout, 'blobs/sha256')));
    expect(blobs.has(removed.topLevel.digest.slice(7))).toBe(false);
    for (const digest of [kept.topLevel.digest, ...kept.blobs.keys()])
      expect(blobs.has(digest.slice(7))).toBe(true);
    expect(runSkopeo(['inspect', '--raw', `oci:${layout}:two`]).code).toBe(0);

    const again = await runGantry(['delete', `oci:${layout}:one`]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('one');
  });

  it('refuses a usage error with exit code 1', async () => {
    const result = await runGantry(['delete']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('delete');
  });
});
