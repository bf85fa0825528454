/**
 * `gantry` with docker:// short names resolved through a registries.conf of the test's own
 * (`--registries-conf`), against two real registries: inspect prints the resolved Name, copy and
 * list-tags read through the search registries, enforcing mode refuses ambiguity.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { startTestRegistry, type TestRegistry } from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGantry } from './test-support/run.js';

let root: string;
let first: TestRegistry;
let second: TestRegistry;
let image: FixtureImage;
/** Search registries: first, then second; both insecure (plain HTTP). */
let permissive: string;
let enforcing: string;

async function writeConfiguration(name: string, mode: string): Promise<string> {
  const file = join(root, name);
  await writeFile(
    file,
    [
      `unqualified-search-registries = ["${first.host}", "${second.host}"]`,
      `short-name-mode = "${mode}"`,
      '[[registry]]',
      `location = "${first.host}"`,
      'insecure = true',
      '[[registry]]',
      `location = "${second.host}"`,
      'insecure = true',
      '',
    ].join('\n'),
  );
  return file;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-'));
  [first, second] = await Promise.all([startTestRegistry(), startTestRegistry()]);
  image = await buildFixtureImage(fixturePresets.ociMinimal!, { directory: join(root, 'blobs') });
  const layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
  // The image exists only in the second search registry.
  const pushed = await runGantry([
    '--insecure-policy',
    'copy',
    '-q',
    '--dest-tls-verify=false',
    `oci:${layout}:latest`,
    `docker://${second.host}/short/app:v1`,
  ]);
  if (pushed.code !== 0) throw new Error(`push failed: ${pushed.stderr}`);
  permissive = await writeConfiguration('permissive.conf', 'permissive');
  enforcing = await writeConfiguration('enforcing.conf', 'enforcing');
}, 60_000);

afterAll(async () => {
  await first?.stop();
  await second?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

function expectSuccess(result: { code: number; stderr: string }, what: string): void {
  expect({ what, code: result.code, stderr: result.stderr }).toEqual({ what, code: 0, stderr: '' });
}

describe('gantry with docker:// short names', () => {
  it('inspect docker://shortname --registries-conf F prints the resolved Name', async () => {
    const result = await runGantry(['inspect', 'docker://short/app:v1', '--registries-conf', permissive]);
    expectSuccess(result, 'inspect');
    const output = JSON.parse(result.stdout.toString()) as Record<string, unknown>;
    expect(output.Name).toBe(`${second.host}/short/app`);
    expect(output.Digest).toBe(image.topLevel.digest);
    expect(output.RepoTags).toEqual(['v1']);
    // The global position of the flag works too, and the digest is kept.
    const digested = await runGantry([
      '--registries-conf',
      permissive,
      'inspect',
      '--format',
      '{{.Name}} {{.Digest}}',
      `docker://short/app@${image.topLevel.digest}`,
    ]);
    expectSuccess(digested, 'inspect by digest');
    expect(digested.stdout.toString()).toBe(`${second.host}/short/app ${image.topLevel.digest}\n`);
  });

  it('enforcing mode with two search registries fails naming the candidates', async () => {
    const result = await runGantry(['inspect', 'docker://short/app:v1', '--registries-conf', enforcing]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('short-name resolution enforced but cannot prompt without a TTY');
    expect(result.stderr).toContain(`(${first.host}/short/app:v1, ${second.host}/short/app:v1)`);
    expect(result.stdout.toString()).toBe('');
  });

  it('a short name found nowhere exits 2 (image not found), naming every candidate', async () => {
    const result = await runGantry(['inspect', 'docker://short/missing:v1', '--registries-conf', permissive]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('short name resolved to 2 candidates');
    expect(result.stderr).toContain(`${first.host}/short/missing:v1: `);
    expect(result.stderr).toContain(`${second.host}/short/missing:v1: `);
  });

  it('copy and list-tags read short names through the search registries', async () => {
    const directory = join(root, 'copied');
    expectSuccess(
      await runGantry([
        '--insecure-policy',
        '--registries-conf',
        permissive,
        'copy',
        '-q',
        'docker://short/app:v1',
        `dir:${directory}`,
      ]),
      'copy',
    );
    expect((await readFile(join(directory, 'manifest.json'))).equals(Buffer.from(image.topLevel.bytes))).toBe(
      true,
    );
    const tags = await runGantry(['--registries-conf', permissive, 'list-tags', 'docker://short/app']);
    expectSuccess(tags, 'list-tags');
    // The repository that answered (the second search registry), not the name as written.
    expect(JSON.parse(tags.stdout.toString())).toEqual({
      Repository: `${second.host}/short/app`,
      Tags: ['v1'],
    });
  });
});
