/**
 * Hostile manifests, indexes and configs read by `gantry inspect` and `gantry copy` from the source
 * transports that can hold any bytes: oci, oci-archive, dir, and docker (a registry: the real test
 * registry answers the ping, a server in front of it serves the hostile manifest and blobs): wrong types, missing fields, sizes that disagree with
 * descriptors, unknown digest algorithms and wrong lengths, oversized and deeply nested JSON, an index
 * that names itself. Each must fail with exit 1 and one error naming the problem, no stack trace (the
 * CLI runs with --debug, which would print one for any non-Gantry error), and nothing written to the
 * destination.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { buildFixtureImage, fixturePresets, recordOutcome } from '@gantry/core/testing';
import { startTestRegistry, type TestRegistry } from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runGantry } from '../../test-support/run.js';
import { expectCleanFailure } from './expect-failure.js';
import { type FakeEngine, startFakeEngine } from './fake-engine.js';
import {
  type HandMadeImage,
  listTree,
  type RawTarEntry,
  rawTar,
  sha256,
  writeDirImage,
  writeOciArchive,
  writeOciLayout,
} from './hostile-images.js';
import { type MisbehavingFront, startMisbehavingFront } from './misbehaving-front.js';

const testFile = 'apps/cli/src/reliability/hostile/manifests.test.ts';
const ociManifestType = 'application/vnd.oci.image.manifest.v1+json';
const ociIndexType = 'application/vnd.oci.image.index.v1+json';

let workDirectory = '';
let validManifest: Record<string, unknown> & {
  config: { digest: string; size: number; mediaType: string };
  layers: Array<{ digest: string; size: number; mediaType: string }>;
};
let validBlobs: Array<{ digest: string; bytes: Uint8Array }> = [];
let registry: TestRegistry;
let front: MisbehavingFront;

beforeAll(async () => {
  workDirectory = mkdtempSync(join(tmpdir(), 'gantry-hostile-manifests-'));
  registry = await startTestRegistry();
  front = await startMisbehavingFront(registry.host);
  const fixture = await buildFixtureImage(fixturePresets.ociMinimal, {
    directory: join(workDirectory, 'fixture'),
  });
  validManifest = JSON.parse(Buffer.from(fixture.topLevel.bytes).toString('utf8'));
  validBlobs = [...fixture.blobs.values()].map((blob) => ({
    digest: blob.digest,
    bytes: readFileSync(blob.path),
  }));
  // The repository exists in the real registry (inspect lists its tags); hostile tags are the front's.
  const validLayout = join(workDirectory, 'valid-layout');
  writeOciLayout(validLayout, image(validManifest));
  const pushed = await runGantry([
    '--insecure-policy',
    'copy',
    '-q',
    '--dest-tls-verify=false',
    `oci:${validLayout}`,
    `docker://${registry.host}/hostile/manifests:valid`,
  ]);
  if (pushed.code !== 0) throw new Error(`push failed: ${pushed.stderr}`);
});
afterAll(async () => {
  await front?.stop();
  await registry?.stop();
  rmSync(workDirectory, { recursive: true, force: true });
});

/** A deep copy of the valid manifest to break. */
const manifestCopy = (): typeof validManifest => JSON.parse(JSON.stringify(validManifest));
const image = (manifest: unknown, extra: Partial<HandMadeImage> = {}): HandMadeImage => ({
  manifest: Buffer.from(typeof manifest === 'string' ? manifest : JSON.stringify(manifest)),
  mediaType: ociManifestType,
  blobs: validBlobs,
  ...extra,
});
const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
/** The valid manifest with its config replaced by `config` (digest and size made to match). */
function withConfig(config: string): HandMadeImage {
  const manifest = manifestCopy();
  const bytes = Buffer.from(config);
  manifest.config.digest = sha256(bytes);
  manifest.config.size = bytes.length;
  return image(manifest, { blobs: [...validBlobs, { digest: manifest.config.digest, bytes }] });
}

type Source = 'docker' | 'oci' | 'oci-archive' | 'dir';
const allSources: Source[] = ['docker', 'oci', 'oci-archive', 'dir'];

interface HostileCase {
  name: string;
  build: () => HandMadeImage;
  /** What the error must say. */
  expected: RegExp;
  /** The outcome as the table shows it. */
  outcome: string;
  /** The commands that must refuse it (default both). */
  commands?: Array<'inspect' | 'copy'>;
  /** Sources the case applies to (default all). */
  sources?: Source[];
}

const cases: HostileCase[] = [
  {
    name: 'manifest: "layers" is a string',
    build: () => image({ ...manifestCopy(), layers: 'x' }),
    expected: /invalid OCI image manifest: missing layers/,
    outcome: 'refused: "invalid OCI image manifest: missing layers"',
  },
  {
    name: 'manifest: schemaVersion is a string',
    build: () => image({ ...manifestCopy(), schemaVersion: '2' }),
    expected: /unsupported schema version "2"/,
    outcome: 'refused: "unsupported schema version"',
  },
  {
    name: 'manifest: config missing',
    build: () => {
      const { config: _config, ...rest } = manifestCopy();
      return image(rest);
    },
    expected: /invalid OCI image manifest: missing config/,
    outcome: 'refused: "missing config"',
  },
  {
    name: 'manifest: layer without digest',
    build: () => {
      const manifest = manifestCopy();
      delete (manifest.layers[0] as Partial<(typeof manifest.layers)[0]>).digest;
      return image(manifest);
    },
    expected: /layer 0: missing digest/,
    outcome: 'refused: "layer 0: missing digest"',
  },
  {
    name: 'manifest: layer size is a string',
    build: () => {
      const manifest = manifestCopy();
      (manifest.layers[0] as { size: unknown }).size = String(manifest.layers[0]!.size);
      return image(manifest);
    },
    expected: /layer 0: invalid size "\d+"/,
    outcome: 'refused: "layer 0: invalid size"',
  },
  {
    name: 'manifest: negative layer size',
    build: () => {
      const manifest = manifestCopy();
      manifest.layers[0]!.size = -1;
      return image(manifest);
    },
    expected: /layer 0: invalid size -1/,
    outcome: 'refused: "layer 0: invalid size -1"',
  },
  {
    name: 'manifest: layer size larger than the blob',
    build: () => {
      const manifest = manifestCopy();
      manifest.layers[0]!.size += 1;
      return image(manifest);
    },
    expected: /size mismatch/,
    outcome: 'copy refused: "size mismatch", nothing written',
    commands: ['copy'],
  },
  {
    name: 'manifest: layer size smaller than the blob',
    build: () => {
      const manifest = manifestCopy();
      manifest.layers[0]!.size -= 1;
      return image(manifest);
    },
    expected: /size mismatch/,
    outcome: 'copy refused: "size mismatch", nothing written',
    commands: ['copy'],
  },
  {
    name: 'manifest: config size of 10^15 bytes',
    build: () => {
      const manifest = manifestCopy();
      manifest.config.size = 1e15;
      return image(manifest);
    },
    expected: /size mismatch/,
    outcome: 'copy refused: "size mismatch" (nothing allocated for the claimed size)',
    commands: ['copy'],
  },
  {
    name: 'manifest: unknown digest algorithm (md5)',
    build: () => {
      const manifest = manifestCopy();
      manifest.layers[0]!.digest = `md5:${'a'.repeat(32)}`;
      return image(manifest);
    },
    expected: /unsupported digest algorithm/,
    outcome: 'refused: "unsupported digest algorithm"',
  },
  {
    name: 'manifest: sha256 digest of the wrong length',
    build: () => {
      const manifest = manifestCopy();
      manifest.layers[0]!.digest = 'sha256:abcd';
      return image(manifest);
    },
    expected: /invalid checksum digest length/,
    outcome: 'refused: "invalid checksum digest length"',
  },
  {
    name: 'manifest: digest "sha256:../../etc/passwd"',
    build: () => {
      const manifest = manifestCopy();
      manifest.layers[0]!.digest = 'sha256:../../../../etc/passwd';
      return image(manifest);
    },
    expected: /invalid checksum digest format/,
    outcome: 'refused before any path is built: "invalid checksum digest format"',
  },
  {
    name: 'manifest: not JSON',
    build: () => image('{"schemaVersion":2,'),
    expected: /not valid JSON/,
    outcome: 'refused: "not valid JSON"',
  },
  {
    name: 'manifest: 5 MiB (over the 4 MiB limit)',
    build: () => image({ ...manifestCopy(), annotations: { padding: 'a'.repeat(5 * 1024 * 1024) } }),
    expected: /too large \(.*4194304/,
    outcome: 'refused before parsing: "too large (…, at most 4194304 accepted)"',
  },
  {
    name: 'manifest: JSON nested 200 000 deep',
    build: () =>
      image(
        `{"schemaVersion":2,"mediaType":"${ociManifestType}","config":${JSON.stringify(validManifest.config)},"layers":${JSON.stringify(validManifest.layers)},"x":${nested(200_000)}}`,
      ),
    expected: /JSON nested deeper than 10000 levels/,
    outcome: 'refused: "JSON nested deeper than 10000 levels"',
  },
  {
    name: 'index.json names a digest the manifest does not have',
    build: () => image(validManifest, { storedDigest: sha256('something else') }),
    expected: /has digest sha256:[0-9a-f]{64}: the (?:layout|archive) is corrupt/,
    outcome: 'refused: "manifest … has digest …: the layout is corrupt"',
    // dir: stores no digest for its top-level manifest.
    sources: ['oci', 'oci-archive'],
  },
  {
    name: 'index.json gives the manifest a wrong size',
    build: () => image(validManifest, { declaredSize: 10 }),
    expected: /is \d+ bytes, but index.json says 10/,
    outcome: 'refused: "manifest … is N bytes, but index.json says 10"',
    sources: ['oci', 'oci-archive'],
  },
  {
    name: 'index that lists itself as its own instance',
    build: () => {
      // Its digest cannot be known before it is written: it is stored under the digest it names.
      const selfDigest = sha256('the index names this digest and is stored under it');
      const index = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: ociIndexType,
          manifests: [
            {
              mediaType: ociIndexType,
              digest: selfDigest,
              size: 300,
              platform: { os: 'linux', architecture: 'amd64' },
            },
          ],
        }),
      );
      return {
        manifest: index,
        mediaType: ociIndexType,
        storedDigest: selfDigest,
        blobs: validBlobs,
        instanceManifests: [{ digest: selfDigest, bytes: index }],
      };
    },
    expected:
      /does not match (?:its )?digest|has digest sha256:[0-9a-f]{64}: the (?:layout|archive) is corrupt/,
    outcome: 'refused: the manifest does not have the digest it is listed under (no loop)',
  },
  {
    name: 'index: "manifests" is a string',
    build: () => ({
      manifest: Buffer.from(`{"schemaVersion":2,"mediaType":"${ociIndexType}","manifests":"x"}`),
      mediaType: ociIndexType,
      blobs: validBlobs,
    }),
    expected: /invalid OCI image index: missing manifests/,
    outcome: 'refused: "invalid OCI image index: missing manifests"',
  },
  {
    name: 'config: wrong field types',
    build: () => withConfig('{"architecture":5,"os":[],"rootfs":"x","config":"y","history":7}'),
    expected: /invalid image config: config.architecture is not a string/,
    outcome: 'inspect refused: "invalid image config: …architecture is not a string"',
    commands: ['inspect'],
  },
  {
    name: 'config: a JSON array',
    build: () => withConfig('[]'),
    expected: /invalid image config: not a JSON object/,
    outcome: 'inspect refused: "invalid image config: not a JSON object"',
    commands: ['inspect'],
  },
  {
    name: 'config: JSON nested 200 000 deep',
    build: () =>
      withConfig(
        `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"x":${nested(200_000)}}`,
      ),
    expected: /invalid image config: JSON nested deeper than 10000 levels/,
    outcome: 'inspect refused: "JSON nested deeper than 10000 levels"',
    commands: ['inspect'],
  },
];

let sourceCounter = 0;
function writeSource(source: Source, hostile: HandMadeImage): string {
  const path = join(workDirectory, `source-${++sourceCounter}`);
  if (source === 'docker') {
    // The front serves this image's manifest by tag, its instance manifests and blobs by digest.
    const tag = `case-${sourceCounter}`;
    const byDigest = new Map<string, { bytes: Uint8Array; type: string }>();
    for (const blob of hostile.blobs)
      byDigest.set(`blobs/${blob.digest}`, { bytes: blob.bytes, type: 'application/octet-stream' });
    for (const instance of hostile.instanceManifests ?? []) {
      byDigest.set(`manifests/${instance.digest}`, { bytes: instance.bytes, type: hostile.mediaType });
    }
    byDigest.set(`manifests/${tag}`, { bytes: hostile.manifest, type: hostile.mediaType });
    front.rules.splice(0, front.rules.length, (incoming, response) => {
      const served = byDigest.get((incoming.url ?? '').replace(/^\/v2\/hostile\/manifests\//, ''));
      if (served === undefined || (incoming.method !== 'GET' && incoming.method !== 'HEAD')) return false;
      response.writeHead(200, { 'content-type': served.type, 'content-length': served.bytes.byteLength });
      response.end(incoming.method === 'HEAD' ? undefined : served.bytes);
      return true;
    });
    return `docker://${front.host}/hostile/manifests:${tag}`;
  }
  if (source === 'oci') writeOciLayout(path, hostile);
  else if (source === 'dir') writeDirImage(path, hostile);
  else writeOciArchive(path, hostile, workDirectory);
  return `${source}:${path}`;
}

/** Flags a plain-HTTP test registry needs (for `docker` only). */
function registryFlags(source: Source, command: 'inspect' | 'copy'): string[] {
  if (source !== 'docker') return [];
  return command === 'inspect'
    ? ['--tls-verify=false', '--retry-times=0']
    : ['--src-tls-verify=false', '--retry-times=0'];
}

describe.each(cases)('$name', (hostileCase) => {
  const sources = hostileCase.sources ?? allSources;
  test.each(sources)('from %s: exit 1, the problem named, nothing written', async (source) => {
    const reference = writeSource(source, hostileCase.build());
    for (const command of hostileCase.commands ?? ['inspect', 'copy']) {
      const destination = join(workDirectory, `destination-${sourceCounter}-${command}`);
      const argv =
        command === 'inspect'
          ? ['--debug', 'inspect', ...registryFlags(source, command), reference]
          : ['--debug', 'copy', ...registryFlags(source, command), '--all', reference, `oci:${destination}`];
      const result = await runGantry(argv);
      expectCleanFailure(result, hostileCase.expected);
      expect(listTree(destination), 'nothing written to the destination').toEqual([]);
    }
    recordOutcome({
      suite: 'hostile-input',
      case: hostileCase.name,
      transport: source,
      outcome: hostileCase.outcome,
      ok: true,
      testFile,
    });
  });
});

test('the unbroken image these cases start from copies from every source', async () => {
  for (const source of allSources) {
    const reference = writeSource(source, image(validManifest));
    const destination = join(workDirectory, `valid-destination-${source}`);
    const result = await runGantry([
      'copy',
      ...registryFlags(source, 'copy'),
      reference,
      `oci:${destination}`,
    ]);
    expect(result.code, result.stderr).toBe(0);
  }
});

describe('docker-archive and docker-daemon: a hostile manifest.json', () => {
  let engine: FakeEngine;
  beforeAll(async () => {
    engine = await startFakeEngine(join(workDirectory, 'engine.sock'));
  });
  afterAll(() => engine?.stop());

  /** A `docker save` archive of the valid image whose manifest.json is `manifestJson` (a function of the real names). */
  function dockerArchive(
    manifestJson: (names: { config: string; layer: string }) => string,
    extra: RawTarEntry[] = [],
  ): string {
    const config = validBlobs.find((blob) => blob.digest === validManifest.config.digest)!;
    const layer = validBlobs.find((blob) => blob.digest === validManifest.layers[0]!.digest)!;
    const names = { config: `${config.digest.slice(7)}.json`, layer: `${layer.digest.slice(7)}/layer.tar` };
    const path = join(workDirectory, `archive-${++sourceCounter}.tar`);
    writeFileSync(
      path,
      rawTar([
        { name: 'manifest.json', content: manifestJson(names) },
        { name: names.config, content: config.bytes },
        { name: names.layer, content: gunzipSync(layer.bytes) },
        ...extra,
      ]),
    );
    return `docker-archive:${path}`;
  }

  const archiveCases: Array<[string, () => string, RegExp, string]> = [
    [
      'manifest.json: not JSON',
      () => dockerArchive(() => '[{"Config":'),
      /invalid manifest\.json: Unexpected end of JSON input/,
      'refused: "invalid manifest.json: …"',
    ],
    [
      'manifest.json: an object, not an array',
      () => dockerArchive(() => '{"Config":"x"}'),
      /invalid manifest\.json: not a JSON array/,
      'refused: "invalid manifest.json: …"',
    ],
    [
      'manifest.json: Config path climbing out with ../',
      () =>
        dockerArchive(({ layer }) =>
          JSON.stringify([{ Config: '../../../etc/passwd', RepoTags: null, Layers: [layer] }]),
        ),
      /invalid config path "(?:\.\.\/){3}etc\/passwd".*"\.\." component/,
      'refused: "invalid config path …: path contains a .. component"',
    ],
    [
      'manifest.json: absolute layer path',
      () =>
        dockerArchive(({ config }) =>
          JSON.stringify([{ Config: config, RepoTags: null, Layers: ['/etc/passwd'] }]),
        ),
      /invalid layer path "\/etc\/passwd".*absolute path/,
      'refused: "invalid layer path …: absolute path"',
    ],
    [
      'manifest.json: more layers than the config has DiffIDs',
      () =>
        dockerArchive(({ config, layer }) =>
          JSON.stringify([{ Config: config, RepoTags: null, Layers: [layer, layer] }]),
        ),
      /Inconsistent layer count .*: 2 in manifest, 1 in config/,
      'refused: "Inconsistent layer count …: 2 in manifest, 1 in config"',
    ],
    [
      'manifest.json: RepoTags is a number',
      () =>
        dockerArchive(({ config, layer }) =>
          JSON.stringify([{ Config: config, RepoTags: 5, Layers: [layer] }]),
        ),
      /RepoTags is not an array of strings/,
      'refused: "RepoTags is not an array of strings"',
    ],
  ];

  test.each(archiveCases)(
    '%s: exit 1, the problem named, nothing written',
    async (caseName, build, expected, outcome) => {
      const reference = build();
      // docker-daemon: reads the same `docker save` stream from the (fake) Engine API.
      const daemonName = `hostile/archive-${sourceCounter}:latest`;
      const saved = readFileSync(reference.slice('docker-archive:'.length));
      engine.images.set(daemonName, (response) => {
        response.writeHead(200, { 'content-type': 'application/x-tar' });
        response.end(saved);
      });
      const sources: Array<[string, string[]]> = [
        ['docker-archive', [reference]],
        ['docker-daemon', [`--src-daemon-host=${engine.host}`, `docker-daemon:${daemonName}`]],
      ];
      for (const [transport, sourceArguments] of sources) {
        for (const command of ['inspect', 'copy'] as const) {
          const destination = join(workDirectory, `destination-${sourceCounter}-${transport}-${command}`);
          const argv =
            command === 'inspect'
              ? [
                  '--debug',
                  'inspect',
                  ...sourceArguments.map((a) => a.replace('--src-daemon-host', '--daemon-host')),
                ]
              : ['--debug', 'copy', ...sourceArguments, `oci:${destination}`];
          expectCleanFailure(await runGantry(argv), expected);
          expect(listTree(destination)).toEqual([]);
        }
        recordOutcome({ suite: 'hostile-input', case: caseName, transport, outcome, ok: true, testFile });
      }
    },
  );

  test('docker-daemon: an error answer with an endless body fails at once, the message bounded', async () => {
    let written = 0;
    engine.images.set('hostile/endless-error:latest', (response) => {
      response.writeHead(500, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 'x');
      const pump = () => {
        while (!response.destroyed && written < 1024 * 1024 * 1024) {
          written += chunk.length;
          if (!response.write(chunk)) return void response.once('drain', pump);
        }
        response.end();
      };
      pump();
    });
    const run = await runGantry([
      '--debug',
      'copy',
      '--retry-times=0',
      `--src-daemon-host=${engine.host}`,
      'docker-daemon:hostile/endless-error:latest',
      `oci:${join(workDirectory, 'endless-error-destination')}`,
    ]);
    const message = expectCleanFailure(run, /docker-daemon:hostile\/endless-error:latest: x+/);
    expect(message.length).toBeLessThan(70 * 1024);
    expect(written, 'the body was not read to its end').toBeLessThan(64 * 1024 * 1024);
    recordOutcome({
      suite: 'hostile-input',
      case: 'Engine API error with an endless body',
      transport: 'docker-daemon',
      outcome: 'fails at once; message cut at 64 KiB; the body is not read further',
      ok: true,
      testFile,
    });
  });

  test('docker-daemon: a save stream cut in the middle', async () => {
    const whole = readFileSync(
      dockerArchive(({ config, layer }) =>
        JSON.stringify([{ Config: config, RepoTags: null, Layers: [layer] }]),
      ).slice('docker-archive:'.length),
    );
    engine.images.set('hostile/cut:latest', (response) => {
      response.writeHead(200, { 'content-type': 'application/x-tar' });
      response.end(whole.subarray(0, 1536 + 100));
    });
    const destination = join(workDirectory, 'cut-destination');
    const run = await runGantry([
      '--debug',
      'copy',
      '--retry-times=0',
      `--src-daemon-host=${engine.host}`,
      'docker-daemon:hostile/cut:latest',
      `oci:${destination}`,
    ]);
    expectCleanFailure(run, /truncated/i);
    expect(listTree(destination)).toEqual([]);
    recordOutcome({
      suite: 'hostile-input',
      case: 'save stream cut in the middle',
      transport: 'docker-daemon',
      outcome: 'refused: "truncated tar archive"; nothing written',
      ok: true,
      testFile,
    });
  });

  test('the unbroken archive these cases start from copies', async () => {
    const reference = dockerArchive(({ config, layer }) =>
      JSON.stringify([{ Config: config, RepoTags: ['x/y:1'], Layers: [layer] }]),
    );
    const result = await runGantry(['copy', reference, `oci:${join(workDirectory, 'valid-archive-copy')}`]);
    expect(result.code, result.stderr).toBe(0);
  });
});
