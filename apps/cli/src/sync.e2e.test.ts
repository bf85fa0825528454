/**
 * `gantry sync` against real registries (Debian's docker-registry on 127.0.0.1), compared with the real
 * `skopeo sync` (Debian's 1.9.3) run with the same arguments: the same images, names and digests.
 * Also: --dry-run writes nothing, a second sync transfers no blob, blobs shared by images of one sync
 * are uploaded once, --report, --keep-going and exit codes, errors found before anything is copied.
 */
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import {
  insecureAcceptAnythingPolicy,
  manifestDigest,
  type SyncProgressEvent,
  syncImages,
  TransportRegistry,
} from '@gantry/core';
import { buildFixtureImage, type FixtureImageSpec, fixturePresets } from '@gantry/core/testing';
import { dirTransport } from '@gantry/transport-dir';
import { createDockerTransport } from '@gantry/transport-docker';
import {
  type AccessLogEntry,
  dockerContext,
  pushFixture,
  startFaultProxy,
  startTestRegistry,
  type TestRegistry,
} from '@gantry/transport-docker/testing';
import { ociTransport } from '@gantry/transport-oci';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGantry, runSkopeo } from './test-support/run.js';

let root: string;
let source: TestRegistry;
let target: TestRegistry;
/** The base layer every `app` and `tool` image shares. */
let baseLayerDigest: string;
const appTags = ['1.0.0', '1.1.0', '1.2.0-rc1', '2.0.0', 'v3', 'latest'];
const toolTags = ['a', 'b'];

function imageSpec(name: string, format: 'docker' | 'oci'): FixtureImageSpec {
  return {
    format,
    layers: [
      { entries: [{ type: 'file', path: 'base.txt', content: 'the shared base layer\n' }] },
      { entries: [{ type: 'file', path: 'name.txt', content: `${name}\n` }] },
    ],
  };
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-sync-'));
  [source, target] = await Promise.all([startTestRegistry(), startTestRegistry()]);
  const transport = createDockerTransport();
  const context = dockerContext({ tlsVerify: false });
  const push = async (repository: string, tag: string, spec: Parameters<typeof buildFixtureImage>[0]) => {
    const image = await buildFixtureImage(spec, { directory: join(root, 'fixtures', repository, tag) });
    const destination = await pushFixture(transport, source, `${repository}:${tag}`, image, context);
    await destination.close();
    return image;
  };
  for (const [index, tag] of appTags.entries()) {
    await push('library/app', tag, imageSpec(`app ${tag}`, index % 2 === 0 ? 'docker' : 'oci'));
  }
  for (const tag of toolTags) await push('team/tool', tag, imageSpec(`tool ${tag}`, 'oci'));
  await push('multi', 'list', fixturePresets.multiArchDocker!);
  // The shared base layer: the one blob every app image has.
  const manifests = await Promise.all(
    appTags.map(async (tag) => {
      const result = await runGantry([
        'inspect',
        '--raw',
        '--tls-verify=false',
        `docker://${source.host}/library/app:${tag}`,
      ]);
      return JSON.parse(result.stdout.toString()) as { layers: Array<{ digest: string }> };
    }),
  );
  baseLayerDigest = manifests[0]!.layers[0]!.digest;
  for (const manifest of manifests) expect(manifest.layers[0]!.digest).toBe(baseLayerDigest);
  await transport.closeConnections();
}, 120_000);

afterAll(async () => {
  await source?.stop();
  await target?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

function expectSuccess(result: { code: number; stderr: string }, what: string): void {
  expect({ what, code: result.code }, result.stderr).toEqual({ what, code: 0 });
}

/** Every dir: image below `directory`: relative path → manifest digest. */
async function dirImages(directory: string): Promise<Record<string, string>> {
  const images: Record<string, string> = {};
  const walk = async (current: string) => {
    const entries = await readdir(current, { withFileTypes: true });
    if (entries.some((entry) => entry.name === 'manifest.json')) {
      images[relative(directory, current)] = manifestDigest(await readFile(join(current, 'manifest.json')));
      return;
    }
    for (const entry of entries) if (entry.isDirectory()) await walk(join(current, entry.name));
  };
  await walk(directory);
  return images;
}

/** Every tag of the target registry's repositories below `namespace`: `repository:tag` → manifest digest. */
async function registryImages(namespace: string): Promise<Record<string, string>> {
  const catalog = (await (await fetch(`${target.url}/v2/_catalog?n=1000`)).json()) as {
    repositories: string[];
  };
  const images: Record<string, string> = {};
  for (const repository of catalog.repositories.filter((name) => name.startsWith(`${namespace}/`))) {
    const { tags } = (await (await fetch(`${target.url}/v2/${repository}/tags/list`)).json()) as {
      tags: string[];
    };
    for (const tag of tags) {
      const response = await fetch(`${target.url}/v2/${repository}/manifests/${tag}`, {
        method: 'HEAD',
        headers: {
          accept: [
            'application/vnd.oci.image.manifest.v1+json',
            'application/vnd.oci.image.index.v1+json',
            'application/vnd.docker.distribution.manifest.v2+json',
            'application/vnd.docker.distribution.manifest.list.v2+json',
          ].join(', '),
        },
      });
      images[`${repository.slice(namespace.length + 1)}:${tag}`] =
        response.headers.get('docker-content-digest')!;
    }
  }
  return images;
}

/** How the base layer reached the target registry: uploads (closing PUTs) and cross-repository mounts. */
function baseLayerArrivals(log: AccessLogEntry[]): { uploads: number; total: number } {
  const encoded = encodeURIComponent(baseLayerDigest);
  const uploads = log.filter(
    (entry) => entry.method === 'PUT' && entry.path.includes(`digest=${encoded}`),
  ).length;
  const mounts = log.filter(
    (entry) => entry.method === 'POST' && entry.path.includes(`mount=${encoded}`) && entry.status === 201,
  ).length;
  return { uploads, total: uploads + mounts };
}

const insecure = ['--insecure-policy'];
const tls = ['--src-tls-verify=false', '--dest-tls-verify=false'];

describe('gantry sync gives what skopeo sync gives', () => {
  it('docker → dir, unscoped', async () => {
    const ours = join(root, 'dir-unscoped-gantry');
    const theirs = join(root, 'dir-unscoped-skopeo');
    expectSuccess(
      await runGantry([
        ...insecure,
        'sync',
        '--src',
        'docker',
        '--dest',
        'dir',
        ...tls,
        `${source.host}/library/app`,
        ours,
      ]),
      'gantry',
    );
    expectSuccess(
      runSkopeo([
        ...insecure,
        'sync',
        '--src',
        'docker',
        '--dest',
        'dir',
        ...tls,
        `${source.host}/library/app`,
        theirs,
      ]),
      'skopeo',
    );
    const expected = await dirImages(theirs);
    expect(Object.keys(expected).sort()).toEqual(appTags.map((tag) => `app:${tag}`).sort());
    expect(await dirImages(ours)).toEqual(expected);
  }, 120_000);

  it('docker → dir, scoped, and dir refuses to overwrite an image it does not have', async () => {
    const ours = join(root, 'dir-scoped-gantry');
    const theirs = join(root, 'dir-scoped-skopeo');
    const args = ['sync', '--scoped', '--src', 'docker', '--dest', 'dir', ...tls];
    expectSuccess(await runGantry([...insecure, ...args, `${source.host}/team/tool`, ours]), 'gantry');
    expectSuccess(runSkopeo([...insecure, ...args, `${source.host}/team/tool`, theirs]), 'skopeo');
    const expected = await dirImages(theirs);
    expect(Object.keys(expected).sort()).toEqual(toolTags.map((tag) => `${source.host}/team/tool:${tag}`));
    expect(await dirImages(ours)).toEqual(expected);
    // Again: both images are there with the same digests, so they are skipped, not refused.
    const again = await runGantry([...insecure, ...args, `${source.host}/team/tool`, ours]);
    expectSuccess(again, 'second sync');
    expect(again.stderr).toContain('copied 0, skipped 2, failed 0');
    // A directory holding something else is refused before anything is copied.
    const other = join(root, 'dir-occupied');
    await runGantry([
      ...insecure,
      'sync',
      '--src',
      'docker',
      '--dest',
      'dir',
      ...tls,
      `${source.host}/team/tool:a`,
      other,
    ]);
    await rm(join(other, 'tool:a', 'manifest.json'));
    const refused = await runGantry([
      ...insecure,
      'sync',
      '--src',
      'docker',
      '--dest',
      'dir',
      ...tls,
      `${source.host}/team/tool`,
      other,
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr.replaceAll('\\"', '"')).toContain(
      `Refusing to overwrite destination directory "${join(other, 'tool:a')}"`,
    );
    await expect(stat(join(other, 'tool:b'))).rejects.toThrow(/ENOENT/);
  }, 120_000);

  it('dir → docker', async () => {
    const tree = join(root, 'dir-unscoped-skopeo');
    const args = ['sync', '--src', 'dir', '--dest', 'docker', ...tls];
    expectSuccess(await runGantry([...insecure, ...args, tree, `${target.host}/from-dir-gantry`]), 'gantry');
    expectSuccess(runSkopeo([...insecure, ...args, tree, `${target.host}/from-dir-skopeo`]), 'skopeo');
    const expected = await registryImages('from-dir-skopeo');
    expect(Object.keys(expected).sort()).toEqual(appTags.map((tag) => `app:${tag}`).sort());
    expect(await registryImages('from-dir-gantry')).toEqual(expected);
  }, 120_000);

  it('docker → docker, uploading the shared base layer once', async () => {
    const args = ['sync', '--src', 'docker', '--dest', 'docker', ...tls];
    target.clearAccessLog();
    expectSuccess(
      await runGantry([...insecure, ...args, `${source.host}/library/app`, `${target.host}/d2d-gantry`]),
      'gantry',
    );
    // The base layer all six images share reaches the repository once: one upload, or one mount from a
    // repository where this process saw it before (the transport remembers blob locations).
    expect(baseLayerArrivals(await target.accessLog(500))).toEqual({ uploads: expect.any(Number), total: 1 });
    expectSuccess(
      runSkopeo([...insecure, ...args, `${source.host}/library/app`, `${target.host}/d2d-skopeo`]),
      'skopeo',
    );
    const expected = await registryImages('d2d-skopeo');
    expect(Object.keys(expected)).toHaveLength(appTags.length);
    expect(await registryImages('d2d-gantry')).toEqual(expected);
  }, 120_000);

  it('a manifest list: the system image, or with --all the list, as skopeo', async () => {
    for (const all of [[], ['--all']]) {
      const name = all.length > 0 ? 'all' : 'system';
      const args = [
        'sync',
        ...all,
        '--src',
        'docker',
        '--dest',
        'docker',
        ...tls,
        `${source.host}/multi:list`,
      ];
      expectSuccess(await runGantry([...insecure, ...args, `${target.host}/multi-${name}-gantry`]), 'gantry');
      expectSuccess(runSkopeo([...insecure, ...args, `${target.host}/multi-${name}-skopeo`]), 'skopeo');
      const expected = await registryImages(`multi-${name}-skopeo`);
      expect(Object.keys(expected)).toEqual(['multi:list']);
      expect(await registryImages(`multi-${name}-gantry`)).toEqual(expected);
    }
  }, 120_000);

  it('a list synced again: skipped by HEAD requests with --all; without --all the system image replaces it, as skopeo', async () => {
    const base = ['sync', '--src', 'docker', '--dest', 'docker', ...tls, `${source.host}/multi:list`];
    for (const tool of ['gantry', 'skopeo'] as const) {
      const run = async (args: string[], what: string) => {
        const full = [...insecure, ...args, `${target.host}/relist-${tool}`];
        expectSuccess(tool === 'gantry' ? await runGantry(full) : runSkopeo(full), `${tool} ${what}`);
      };
      await run(['sync', '--all', ...base.slice(1)], 'first --all');
      if (tool === 'gantry') {
        source.clearAccessLog();
        target.clearAccessLog();
      }
      await run(['sync', '--all', ...base.slice(1)], 'second --all');
      if (tool === 'gantry') {
        const manifestMethods = async (registry: TestRegistry) =>
          (await registry.accessLog(500))
            .filter((entry) => entry.path.includes('/manifests/'))
            .map((entry) => entry.method);
        expect(await manifestMethods(source)).toEqual(['HEAD']);
        expect(await manifestMethods(target)).toEqual(['HEAD']);
      }
      // The destination has the list; without --all the copy writes the system instance instead.
      await run(base, 'without --all');
    }
    const expected = await registryImages('relist-skopeo');
    expect(Object.keys(expected)).toEqual(['multi:list']);
    expect(await registryImages('relist-gantry')).toEqual(expected);
  }, 180_000);

  it('YAML with images and images-by-tag-regex, to several repositories sharing blobs', async () => {
    const file = join(root, 'regex.yml');
    await writeFile(
      file,
      [
        `${source.host}:`,
        '  tls-verify: false',
        '  images-by-tag-regex:',
        '    library/app: ^1\\.',
        '  images:',
        '    team/tool: [a]',
        '',
      ].join('\n'),
    );
    target.clearAccessLog();
    const args = ['sync', '--src', 'yaml', '--dest', 'docker', '--dest-tls-verify=false', file];
    expectSuccess(await runGantry([...insecure, ...args, `${target.host}/yaml-gantry`]), 'gantry');
    // The base layer both repositories share: uploaded once, mounted into the other repository.
    const arrivals = baseLayerArrivals(await target.accessLog(500));
    expect(arrivals.total).toBe(2);
    expect(arrivals.uploads).toBeLessThanOrEqual(1);
    expectSuccess(runSkopeo([...insecure, ...args, `${target.host}/yaml-skopeo`]), 'skopeo');
    const expected = await registryImages('yaml-skopeo');
    expect(Object.keys(expected).sort()).toEqual(['app:1.0.0', 'app:1.1.0', 'app:1.2.0-rc1', 'tool:a']);
    expect(await registryImages('yaml-gantry')).toEqual(expected);
  }, 120_000);

  it('YAML with images-by-semver: the tags Masterminds/semver selects (skopeo 1.9.3 lacks the key: compared with the same tags listed)', async () => {
    const semverFile = join(root, 'semver.yml');
    await writeFile(
      semverFile,
      `${source.host}:\n  tls-verify: false\n  images-by-semver:\n    library/app: ">= 1.1.0"\n`,
    );
    // 1.1.0, 2.0.0 and v3 (3.0.0) satisfy ">= 1.1.0"; 1.2.0-rc1 is a pre-release, latest is no version.
    const listedFile = join(root, 'listed.yml');
    await writeFile(
      listedFile,
      `${source.host}:\n  tls-verify: false\n  images:\n    library/app: ["1.1.0", "2.0.0", "v3"]\n`,
    );
    const args = ['sync', '--src', 'yaml', '--dest', 'dir'];
    expectSuccess(await runGantry([...insecure, ...args, semverFile, join(root, 'semver-gantry')]), 'gantry');
    expectSuccess(runSkopeo([...insecure, ...args, listedFile, join(root, 'semver-skopeo')]), 'skopeo');
    const expected = await dirImages(join(root, 'semver-skopeo'));
    expect(Object.keys(expected).sort()).toEqual(['app:1.1.0', 'app:2.0.0', 'app:v3']);
    expect(await dirImages(join(root, 'semver-gantry'))).toEqual(expected);
  }, 120_000);
});

describe('incremental, dry run, report', () => {
  it('--dry-run lists what would be copied and writes nothing', async () => {
    const directory = join(root, 'dry-run-dir');
    const dry = await runGantry([
      ...insecure,
      'sync',
      '--dry-run',
      '--src',
      'docker',
      '--dest',
      'dir',
      ...tls,
      `${source.host}/library/app`,
      directory,
    ]);
    expectSuccess(dry, 'dry run to dir');
    await expect(stat(directory)).rejects.toThrow(/ENOENT/);
    const lines = dry.stdout.toString().trim().split('\n').sort();
    expect(lines).toEqual(
      appTags
        .map((tag) => `docker://${source.host}/library/app:${tag} dir:${join(directory, `app:${tag}`)}`)
        .sort(),
    );
    target.clearAccessLog();
    const toRegistry = await runGantry([
      ...insecure,
      'sync',
      '--dry-run',
      '--src',
      'docker',
      '--dest',
      'docker',
      ...tls,
      `${source.host}/library/app`,
      `${target.host}/dry`,
    ]);
    expectSuccess(toRegistry, 'dry run to docker');
    expect(toRegistry.stdout.toString().trim().split('\n')).toHaveLength(appTags.length);
    const writes = (await target.accessLog(500)).filter((entry) => !['GET', 'HEAD'].includes(entry.method));
    expect(writes).toEqual([]);
  }, 120_000);

  it('a second sync of an unchanged source transfers no blob: HEAD requests only, on both registries', async () => {
    const args = [
      ...insecure,
      'sync',
      '--src',
      'docker',
      '--dest',
      'docker',
      ...tls,
      `${source.host}/library/app`,
      `${target.host}/again`,
    ];
    expectSuccess(await runGantry(args), 'first');
    source.clearAccessLog();
    target.clearAccessLog();
    const report = join(root, 'again.json');
    const second = await runGantry([...args, '--report', report]);
    expectSuccess(second, 'second');
    expect(second.stderr).toContain(`copied 0, skipped ${appTags.length}, failed 0`);
    const sourceLog = await source.accessLog(500);
    const targetLog = await target.accessLog(500);
    expect(sourceLog.filter((entry) => entry.path.includes('/blobs/'))).toEqual([]);
    expect(
      sourceLog.filter((entry) => entry.path.includes('/manifests/')).map((entry) => entry.method),
    ).toEqual(appTags.map(() => 'HEAD'));
    expect(
      targetLog
        .filter((entry) => entry.path.startsWith('/v2/again/'))
        .map((entry) => `${entry.method} ${entry.path.includes('/manifests/') ? 'manifest' : entry.path}`)
        .sort(),
    ).toEqual(['GET /v2/again/app/tags/list', ...appTags.map(() => 'HEAD manifest')]);
    const written = JSON.parse(await readFile(report, 'utf8')) as {
      skipped: number;
      images: Array<{ source: string; destination: string; digest: string; result: string }>;
    };
    expect(written.skipped).toBe(appTags.length);
    const expected = await registryImages('again');
    for (const entry of written.images) {
      expect(entry.result).toBe('skipped');
      const tag = entry.destination.slice(entry.destination.lastIndexOf(':') + 1);
      expect(entry.digest).toBe(expected[`app:${tag}`]);
    }
  }, 120_000);

  it('--keep-going copies the rest and exits 1; without it nothing is copied when planning fails', async () => {
    const file = join(root, 'missing.yml');
    await writeFile(
      file,
      `${source.host}:\n  tls-verify: false\n  images:\n    team/tool: [a, does-not-exist]\n`,
    );
    const stop = await runGantry([
      ...insecure,
      'sync',
      '--src',
      'yaml',
      '--dest',
      'docker',
      '--dest-tls-verify=false',
      file,
      `${target.host}/stop`,
    ]);
    expect(stop.code).toBe(1);
    expect(stop.stderr).toMatch(/Failed docker:.*team\/tool:does-not-exist/);
    expect(await registryImages('stop')).toEqual({});
    const report = join(root, 'keep-going.json');
    const going = await runGantry([
      ...insecure,
      'sync',
      '--keep-going',
      '--report',
      report,
      '--src',
      'yaml',
      '--dest',
      'docker',
      '--dest-tls-verify=false',
      file,
      `${target.host}/going`,
    ]);
    expect(going.code).toBe(1);
    expect(Object.keys(await registryImages('going'))).toEqual(['tool:a']);
    const written = JSON.parse(await readFile(report, 'utf8')) as {
      images: Array<{ source: string; result: string; error?: { code: string } }>;
    };
    expect(
      written.images.map((entry) => [entry.source.replace(/^.*:/, ''), entry.result, entry.error?.code]),
    ).toEqual([
      ['a', 'copied', undefined],
      ['does-not-exist', 'failed', 'ERR_GANTRY_IMAGE_NOT_FOUND'],
    ]);
  }, 120_000);

  it('--dest oci: one layout holding every image, skipped when synced again', async () => {
    const layout = join(root, 'layout');
    const args = [
      ...insecure,
      'sync',
      '--scoped',
      '--src',
      'docker',
      '--dest',
      'oci',
      ...tls,
      `${source.host}/team/tool`,
      layout,
    ];
    expectSuccess(await runGantry(args), 'first');
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
      manifests: Array<{ annotations: Record<string, string> }>;
    };
    expect(
      index.manifests.map((entry) => entry.annotations['org.opencontainers.image.ref.name']).sort(),
    ).toEqual(toolTags.map((tag) => `${source.host}/team/tool:${tag}`));
    // skopeo reads each image back.
    for (const tag of toolTags) {
      expectSuccess(
        runSkopeo(['inspect', `oci:${layout}:${source.host}/team/tool:${tag}`]),
        `skopeo inspect ${tag}`,
      );
    }
    const again = await runGantry(args);
    expectSuccess(again, 'second');
    expect(again.stderr).toContain('copied 0, skipped 2, failed 0');
  }, 120_000);
});

describe('bad input is refused before anything is copied', () => {
  const cases: Array<[string, () => Promise<string[]>, RegExp]> = [
    [
      'malformed YAML, with its line',
      async () => {
        const file = join(root, 'bad.yml');
        await writeFile(file, 'r.example:\n  images:\n    app: [1, 2\n');
        return ['sync', '--src', 'yaml', '--dest', 'dir', file, join(root, 'never')];
      },
      /bad\.yml: line \d+, column \d+: invalid YAML/,
    ],
    [
      'an invalid regex in YAML',
      async () => {
        const file = join(root, 'bad-regex.yml');
        await writeFile(file, `${source.host}:\n  images-by-tag-regex:\n    library/app: "(unclosed"\n`);
        return ['sync', '--src', 'yaml', '--dest', 'dir', file, join(root, 'never')];
      },
      /bad-regex\.yml: line 3, column 18: registry 127\.0\.0\.1:\d+, images-by-tag-regex, library\/app: invalid regular expression "\(unclosed"/,
    ],
    [
      'an invalid semver range',
      async () => {
        const file = join(root, 'bad-semver.yml');
        await writeFile(file, `${source.host}:\n  images-by-semver:\n    library/app: ">=> 1"\n`);
        return ['sync', '--src', 'yaml', '--dest', 'dir', file, join(root, 'never')];
      },
      /line 3, column 18: .*invalid semantic version constraint ">=> 1"/,
    ],
    [
      'an invalid --exclude-tag',
      async () => [
        'sync',
        '--exclude-tag',
        '[',
        '--src',
        'docker',
        '--dest',
        'dir',
        `${source.host}/library/app`,
        join(root, 'never'),
      ],
      /tag exclusion: invalid regular expression "\["/,
    ],
    [
      'a repository that does not exist',
      async () => [
        'sync',
        '--src',
        'docker',
        '--dest',
        'dir',
        ...tls,
        `${source.host}/no/such`,
        join(root, 'never'),
      ],
      /Error determining repository tags for image 127\.0\.0\.1:\d+\/no\/such/,
    ],
    [
      'two sources with one destination',
      async () => {
        const file = join(root, 'clash.yml');
        await writeFile(
          file,
          `${source.host}:\n  tls-verify: false\n  images:\n    library/app: [latest]\n    other/app: [latest]\n`,
        );
        return ['sync', '--src', 'yaml', '--dest', 'dir', file, join(root, 'never')];
      },
      /would both be written to dir:.*app:latest \(use --scoped to keep them apart\)/,
    ],
    [
      'dir to dir',
      async () => ['sync', '--src', 'dir', '--dest', 'dir', root, join(root, 'never')],
      /sync from 'dir' to 'dir' not implemented/,
    ],
    [
      'a bad shard',
      async () => ['sync', '--shard', '4/4', '--src', 'docker', '--dest', 'dir', 'x', join(root, 'never')],
      /INDEX must be between 0 and 3/,
    ],
  ];
  for (const [what, argv, message] of cases) {
    it(what, async () => {
      const result = await runGantry([...insecure, ...(await argv())]);
      expect(result.code).toBe(1);
      expect(result.stderr.replaceAll('\\"', '"')).toMatch(message);
      await expect(stat(join(root, 'never'))).rejects.toThrow(/ENOENT/);
    }, 60_000);
  }
});

describe('tag lists in pages', () => {
  it("follows the registry's pages: every tag of a repository listed 2 per page is synced", async () => {
    // Debian's registry (distribution 2.8) answers the whole list at once; a proxy in front of it serves
    // its tag lists in pages of 2 with `Link: <…>; rel="next"` (the distribution spec's pagination), as
    // registries with many tags do, and forwards everything else.
    const seen: string[] = [];
    const server = createServer((request, response) => {
      const url = new URL(request.url ?? '/', `http://${source.host}`);
      if (url.pathname.endsWith('/tags/list')) {
        seen.push(`${url.pathname}${url.search}`);
        void fetch(`${source.url}${url.pathname}`).then(async (answer) => {
          const { name, tags } = (await answer.json()) as { name: string; tags: string[] };
          const last = url.searchParams.get('last');
          const start = last === null ? 0 : tags.indexOf(last) + 1;
          const page = tags.slice(start, start + 2);
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          if (start + 2 < tags.length) headers.link = `<${url.pathname}?last=${page.at(-1)}&n=2>; rel="next"`;
          response.writeHead(200, headers);
          response.end(JSON.stringify({ name, tags: page }));
        });
        return;
      }
      const forwarded = httpRequest(
        {
          host: '127.0.0.1',
          port: source.port,
          method: request.method,
          path: `${url.pathname}${url.search}`,
          headers: request.headers,
        },
        (answer) => {
          response.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(response);
        },
      );
      request.pipe(forwarded);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      const result = await runGantry([
        ...insecure,
        'sync',
        '--dry-run',
        '--src',
        'docker',
        '--dest',
        'dir',
        ...tls,
        `${host}/library/app`,
        join(root, 'paged'),
      ]);
      expectSuccess(result, 'paged');
      expect(
        result.stdout
          .toString()
          .trim()
          .split('\n')
          .map((line) => line.split(' ')[0])
          .sort(),
      ).toEqual(appTags.map((tag) => `docker://${host}/library/app:${tag}`).sort());
      expect(seen).toHaveLength(Math.ceil(appTags.length / 2));
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 60_000);
});

describe('syncImages (the library)', () => {
  it('reports progress events in order and resolves with the result', async () => {
    const events: SyncProgressEvent[] = [];
    const result = await syncImages({
      transports: new TransportRegistry([createDockerTransport(), dirTransport, ociTransport]),
      sourceKind: 'docker',
      source: `${source.host}/team/tool`,
      destinationKind: 'docker',
      destination: `${target.host}/library-api`,
      sourceContext: dockerContext({ tlsVerify: false }),
      destinationContext: dockerContext({ tlsVerify: false }),
      policy: insecureAcceptAnythingPolicy(),
      imageConcurrency: 1,
      onProgress: (event) => events.push(event),
    });
    expect(result).toMatchObject({ copied: 2, skipped: 0, failed: 0, dryRun: false });
    expect(result.bytes).toBeGreaterThan(0);
    const kinds = events.map((event) => event.type).filter((type, index, all) => type !== all[index - 1]);
    expect(kinds).toEqual([
      'list-tags',
      'planned',
      'image-start',
      'image-progress',
      'image-done',
      'image-start',
      'image-progress',
      'image-done',
    ]);
  }, 60_000);

  it('with an AbortSignal, many requests and copies in flight add no listener warning', async () => {
    // A repository of 18 tags: the app images and one of them tagged 12 times more.
    const copied = await syncImages({
      transports: new TransportRegistry([createDockerTransport(), dirTransport, ociTransport]),
      sourceKind: 'docker',
      source: `${source.host}/library/app`,
      destinationKind: 'docker',
      destination: `${target.host}/listeners`,
      sourceContext: dockerContext({ tlsVerify: false }),
      destinationContext: dockerContext({ tlsVerify: false }),
      policy: insecureAcceptAnythingPolicy(),
    });
    expect(copied).toMatchObject({ copied: appTags.length, failed: 0 });
    const manifestUrl = (tag: string) => `${target.url}/v2/listeners/app/manifests/${tag}`;
    const manifest = await fetch(manifestUrl(appTags[0]!), {
      headers: {
        accept:
          'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json',
      },
    });
    const bytes = new Uint8Array(await manifest.arrayBuffer());
    const extraTags = Array.from({ length: 12 }, (_, index) => `extra-${index}`);
    for (const tag of extraTags) {
      const put = await fetch(manifestUrl(tag), {
        method: 'PUT',
        headers: { 'content-type': manifest.headers.get('content-type')! },
        body: bytes,
      });
      expect(put.status).toBe(201);
    }
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    try {
      const controller = new AbortController();
      const sync = () =>
        syncImages({
          transports: new TransportRegistry([createDockerTransport(), dirTransport, ociTransport]),
          sourceKind: 'docker',
          source: `${target.host}/listeners/app`,
          destinationKind: 'docker',
          destination: `${target.host}/listeners-mirror`,
          sourceContext: dockerContext({ tlsVerify: false }),
          destinationContext: dockerContext({ tlsVerify: false }),
          policy: insecureAcceptAnythingPolicy(),
          imageConcurrency: 16,
          signal: controller.signal,
        });
      const images = appTags.length + extraTags.length;
      expect(await sync()).toMatchObject({ copied: images, failed: 0 });
      // Planning only: 16 images checked at once, a HEAD request on each registry for each.
      expect(await sync()).toMatchObject({ skipped: images, failed: 0 });
      // Warnings are emitted on a later tick.
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(warnings.filter((warning) => warning.includes('MaxListeners'))).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  }, 60_000);

  it('an AbortSignal stops the sync: it rejects with ERR_GANTRY_ABORTED and no tag is half-written', async () => {
    const controller = new AbortController();
    const promise = syncImages({
      transports: new TransportRegistry([createDockerTransport(), dirTransport, ociTransport]),
      sourceKind: 'docker',
      source: `${source.host}/library/app`,
      destinationKind: 'docker',
      destination: `${target.host}/aborted`,
      sourceContext: dockerContext({ tlsVerify: false }),
      destinationContext: dockerContext({ tlsVerify: false }),
      policy: insecureAcceptAnythingPolicy(),
      imageConcurrency: 1,
      signal: controller.signal,
      onProgress: (event) => {
        if (event.type === 'image-progress' && event.event.type === 'blob-start') controller.abort();
      },
    });
    await expect(promise).rejects.toMatchObject({ code: 'ERR_GANTRY_ABORTED' });
    // The first image's copy was abandoned before its manifest: its tag was never written.
    expect(await registryImages('aborted')).toEqual({});
  }, 60_000);
});

describe('the requests of a sync', () => {
  it('a new mirror: one tag list instead of a HEAD per image, no blob asked for, small blobs sent by POST and PUT', async () => {
    const targetProxy = await startFaultProxy(target.host, { keepAliveTimeoutMs: 120_000 });
    try {
      const result = await syncImages({
        transports: new TransportRegistry([createDockerTransport(), dirTransport, ociTransport]),
        sourceKind: 'docker',
        source: `${source.host}/library/app`,
        destinationKind: 'docker',
        destination: `${targetProxy.host}/first`,
        sourceContext: dockerContext({ tlsVerify: false }),
        destinationContext: dockerContext({ tlsVerify: false }),
        policy: insecureAcceptAnythingPolicy(),
      });
      expect(result).toMatchObject({ copied: appTags.length, failed: 0 });
      const requests = targetProxy.requests.map((request) => ({
        method: request.method,
        path: request.path,
      }));
      const count = (method: string, part: string) =>
        requests.filter((request) => request.method === method && request.path.includes(part)).length;
      // Blobs: the shared base layer, and each image's own layer and config.
      const blobs = 1 + 2 * appTags.length;
      expect(count('GET', '/v2/first/app/tags/list')).toBe(1);
      expect(count('HEAD', '/manifests/')).toBe(0);
      // The repository had no tag: a small blob can be there only if this sync put it there (the
      // images after the one that put the base layer there know it is there), so none is asked for.
      expect(count('HEAD', '/blobs/')).toBe(0);
      expect(count('POST', '/blobs/uploads/')).toBe(blobs);
      expect(count('PATCH', '/blobs/uploads/')).toBe(0);
      expect(count('PUT', '/blobs/uploads/')).toBe(blobs);
      expect(count('PUT', '/manifests/')).toBe(appTags.length);
      // What a registry reads back is what skopeo reads from the source.
      const copied = await registryImages('first');
      for (const tag of appTags) {
        const inspected = runSkopeo([
          'inspect',
          '--raw',
          '--tls-verify=false',
          `docker://${source.host}/library/app:${tag}`,
        ]);
        expect(copied[`app:${tag}`]).toBe(manifestDigest(inspected.stdout));
      }
    } finally {
      await targetProxy.stop();
    }
  }, 120_000);

  it('blobs are asked for in a repository that has tags, and blobs above wholeUploadMaxBytes in any', async () => {
    const targetProxy = await startFaultProxy(target.host, { keepAliveTimeoutMs: 120_000 });
    try {
      const sync = (
        source: string,
        destination: string,
        destinationContext = dockerContext({ tlsVerify: false }),
      ) =>
        syncImages({
          transports: new TransportRegistry([createDockerTransport(), dirTransport, ociTransport]),
          sourceKind: 'docker',
          source,
          destinationKind: 'docker',
          destination,
          sourceContext: dockerContext({ tlsVerify: false }),
          destinationContext,
          policy: insecureAcceptAnythingPolicy(),
        });
      const count = (method: string, part: string) =>
        targetProxy.requests.filter((request) => request.method === method && request.path.includes(part))
          .length;
      // A repository with one tag already (a new transport instance each time: nothing is known).
      expect(
        await sync(`${source.host}/library/app:${appTags[0]}`, `${targetProxy.host}/tagged`),
      ).toMatchObject({
        copied: 1,
      });
      targetProxy.requests.length = 0;
      expect(await sync(`${source.host}/library/app`, `${targetProxy.host}/tagged`)).toMatchObject({
        copied: appTags.length - 1,
        skipped: 1,
        failed: 0,
      });
      // The base layer (found: not uploaded again), then each new image's layer and config.
      const newBlobs = 2 * (appTags.length - 1);
      expect(count('HEAD', '/blobs/')).toBe(1 + newBlobs);
      expect(count('POST', '/blobs/uploads/')).toBe(newBlobs);

      // A new repository, blobs above the whole-upload limit: asked for, then streamed.
      targetProxy.requests.length = 0;
      const blobs = 1 + 2 * appTags.length;
      expect(
        await sync(
          `${source.host}/library/app`,
          `${targetProxy.host}/streamed`,
          dockerContext({ tlsVerify: false, wholeUploadMaxBytes: 1 }),
        ),
      ).toMatchObject({ copied: appTags.length, failed: 0 });
      expect(count('HEAD', '/blobs/')).toBe(blobs);
      expect(count('PATCH', '/blobs/uploads/')).toBe(blobs);
      expect(await registryImages('streamed')).toEqual(await registryImages('tagged'));
    } finally {
      await targetProxy.stop();
    }
  }, 120_000);

  it('an unchanged mirror costs one ping, one tag list and one HEAD per image on each registry, over kept-alive connections', async () => {
    const sourceProxy = await startFaultProxy(source.host, { keepAliveTimeoutMs: 120_000 });
    const targetProxy = await startFaultProxy(target.host, { keepAliveTimeoutMs: 120_000 });
    try {
      const sync = () =>
        syncImages({
          // A new transport instance: its connections and pings start from nothing.
          transports: new TransportRegistry([createDockerTransport(), dirTransport, ociTransport]),
          sourceKind: 'docker',
          source: `${sourceProxy.host}/library/app`,
          destinationKind: 'docker',
          destination: `${targetProxy.host}/requests`,
          sourceContext: dockerContext({ tlsVerify: false }),
          destinationContext: dockerContext({ tlsVerify: false }),
          policy: insecureAcceptAnythingPolicy(),
          // At most two checks in flight per registry while planning.
          registryConcurrency: 1,
        });
      expect(await sync()).toMatchObject({ copied: appTags.length, failed: 0 });
      sourceProxy.requests.length = 0;
      targetProxy.requests.length = 0;
      const sourceConnectionsBefore = sourceProxy.connections;
      const targetConnectionsBefore = targetProxy.connections;

      expect(await sync()).toMatchObject({ copied: 0, skipped: appTags.length, failed: 0 });
      const requests = (proxy: typeof sourceProxy) =>
        proxy.requests.map((request) => `${request.method} ${request.path}`).sort();
      expect(requests(sourceProxy)).toEqual(
        [
          'GET /v2/',
          'GET /v2/library/app/tags/list',
          ...appTags.map((tag) => `HEAD /v2/library/app/manifests/${tag}`),
        ].sort(),
      );
      expect(requests(targetProxy)).toEqual(
        [
          'GET /v2/',
          'GET /v2/requests/app/tags/list',
          ...appTags.map((tag) => `HEAD /v2/requests/app/manifests/${tag}`),
        ].sort(),
      );
      // Connections are kept alive after HEAD requests: the ping's HTTPS attempt (refused: this
      // registry speaks plain HTTP), the ping's, and one per check in flight (two), at most; not one
      // per request (undici closes the connection after each HEAD unless told otherwise: 8 here);
      // on the destination one more, the tag list's (a listing reads, on the reading connections).
      expect(sourceProxy.connections - sourceConnectionsBefore).toBeLessThanOrEqual(4);
      expect(targetProxy.connections - targetConnectionsBefore).toBeLessThanOrEqual(5);
    } finally {
      await sourceProxy.stop();
      await targetProxy.stop();
    }
  }, 120_000);
});

/**
 * A proxy to a registry that holds each request `holdUntil` names until the promise it returns
 * settles, then forwards it; every request's `METHOD path` is passed to `onRequest` when it arrives.
 */
async function startGateProxy(
  registry: TestRegistry,
  holdUntil: (method: string, path: string) => Promise<void> | undefined,
  onRequest: (method: string, path: string) => void,
): Promise<{ host: string; stop(): Promise<void> }> {
  const server = createServer((request, response) => {
    const method = request.method ?? 'GET';
    const path = request.url ?? '/';
    onRequest(method, path);
    const forward = () => {
      const forwarded = httpRequest(
        { host: '127.0.0.1', port: registry.port, method, path, headers: request.headers },
        (answer) => {
          response.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(response);
        },
      );
      forwarded.on('error', () => response.socket?.destroy());
      request.pipe(forwarded);
    };
    const gate = holdUntil(method, path);
    if (gate === undefined) forward();
    else void gate.then(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('what a sync does at the same time', () => {
  it("lists the destination's tags while the source's, and asks the source while the destination for an image it lists", async () => {
    // Populate the mirror first.
    const sync = (sourceHost: string, targetHost: string) =>
      syncImages({
        transports: new TransportRegistry([createDockerTransport(), dirTransport, ociTransport]),
        sourceKind: 'docker',
        source: `${sourceHost}/library/app`,
        destinationKind: 'docker',
        destination: `${targetHost}/together`,
        sourceContext: dockerContext({ tlsVerify: false }),
        destinationContext: dockerContext({ tlsVerify: false }),
        policy: insecureAcceptAnythingPolicy(),
      });
    expect(await sync(source.host, target.host)).toMatchObject({ copied: appTags.length, failed: 0 });

    // Requests seen by either proxy, and waiters for them.
    const seen = new Set<string>();
    const waiters = new Map<string, Array<() => void>>();
    const arrived = (key: string) => {
      seen.add(key);
      for (const wake of waiters.get(key) ?? []) wake();
      waiters.delete(key);
    };
    // A gate a serial implementation never opens: it deadlocks. After this long every gate opens
    // anyway (the sync then finishes) and the test fails, naming the gates that timed out.
    const timedOut: string[] = [];
    const releaseAll: Array<() => void> = [];
    let gatesOpen = false;
    const whenSeen = (key: string, held: string): Promise<void> => {
      if (seen.has(key)) return Promise.resolve();
      if (gatesOpen) {
        timedOut.push(held);
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => {
        waiters.set(key, [...(waiters.get(key) ?? []), resolve]);
        releaseAll.push(() => {
          if (!seen.has(key)) timedOut.push(held);
          resolve();
        });
      });
    };
    const openGates = () => {
      gatesOpen = true;
      for (const release of releaseAll.splice(0)) release();
    };
    const fallback = setTimeout(openGates, 30_000);
    const sourceProxy = await startGateProxy(
      source,
      (method, path) => {
        // The source's tag list is answered only once the destination's was asked for.
        if (method === 'GET' && path.startsWith('/v2/library/app/tags/list'))
          return whenSeen('target GET /v2/together/app/tags/list', `source ${method} ${path}`);
        return undefined;
      },
      (method, path) => arrived(`source ${method} ${path.replace(/\?.*/, '')}`),
    );
    const targetProxy = await startGateProxy(
      target,
      (method, path) => {
        // The destination's HEAD for a tag is answered only once the source was asked for that tag.
        const head = /^\/v2\/together\/app\/manifests\/([^/?]+)$/.exec(path);
        if (method === 'HEAD' && head)
          return whenSeen(`source HEAD /v2/library/app/manifests/${head[1]}`, `target ${method} ${path}`);
        return undefined;
      },
      (method, path) => arrived(`target ${method} ${path.replace(/\?.*/, '')}`),
    );
    try {
      expect(await sync(sourceProxy.host, targetProxy.host)).toMatchObject({
        copied: 0,
        skipped: appTags.length,
        failed: 0,
      });
      expect(timedOut).toEqual([]);
      for (const tag of appTags) {
        expect(seen).toContain(`target HEAD /v2/together/app/manifests/${tag}`);
        expect(seen).toContain(`source HEAD /v2/library/app/manifests/${tag}`);
      }
    } finally {
      clearTimeout(fallback);
      openGates();
      await sourceProxy.stop();
      await targetProxy.stop();
    }
  }, 120_000);
});

describe('--shard', () => {
  it('n runs together copy every image once', async () => {
    const parts = await Promise.all(
      [0, 1, 2].map(async (index) => {
        const result = await runGantry([
          ...insecure,
          'sync',
          '--dry-run',
          '--shard',
          `${index}/3`,
          '--src',
          'docker',
          '--dest',
          'dir',
          ...tls,
          `${source.host}/library/app`,
          join(root, 'shards'),
        ]);
        expectSuccess(result, `shard ${index}`);
        return result.stdout
          .toString()
          .trim()
          .split('\n')
          .filter((line) => line !== '');
      }),
    );
    const all = parts.flat();
    expect(new Set(all).size).toBe(all.length);
    expect(all.map((line) => line.split(' ')[0]).sort()).toEqual(
      appTags.map((tag) => `docker://${source.host}/library/app:${tag}`).sort(),
    );
  }, 120_000);
});
