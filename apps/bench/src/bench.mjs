#!/usr/bin/env node
// Gantry side by side with skopeo, on the same images, on this machine.
//
// Each scenario runs each tool `--runs` times (default 3) under GNU time and reports the median wall
// time and the peak resident memory. Images are built with Gantry's deterministic fixture builder; no
// network is used. Results go to stdout as a table and to bench-results.json.
//
// The registry scenarios run against one real registry (Debian's docker-registry, CNCF Distribution)
// started for the benchmark on a free 127.0.0.1 port with its own storage, stopped at the end. Both
// tools get the same images in the same state: pushes go to a new empty registry each run (skopeo's
// persistent blob info cache would otherwise turn them into mounts), mounts to a new repository each
// run; pulls read and re-pushes write an image pushed (by skopeo) before any measurement.
//
//   pnpm bench [-- --runs 5 --layer-mib 1024 --work-dir /var/tmp/gantry-bench --only oci-to-dir-large,registry-to-registry-mount]
//   (--gantry-library: registry rows run core's copyImage through gantry-library-copy.mjs instead of the CLI)
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildFixtureImage, writeFixtureToOciLayout } from '@gantry/core/testing';

const here = dirname(fileURLToPath(import.meta.url));
const gantryBin = resolve(here, '../../cli/dist/bin.cjs');
/** The installed command: bin/gantry, the launcher npm links, which runs dist/bin.cjs. */
const gantryLauncher = resolve(here, '../../cli/bin/gantry');
const gantryLibraryCopy = resolve(here, 'gantry-library-copy.mjs');
const registryBinary = process.env.GANTRY_TEST_REGISTRY_BINARY ?? '/usr/bin/docker-registry';

// `pnpm bench -- --runs 5` hands the `--` on: drop it.
const commandLine = process.argv.slice(2);
if (commandLine[0] === '--') commandLine.shift();
const { values: flags } = parseArgs({
  args: commandLine,
  options: {
    runs: { type: 'string', default: '3' },
    'layer-mib': { type: 'string', default: '1024' },
    'work-dir': { type: 'string' },
    only: { type: 'string' },
    'gantry-library': { type: 'boolean', default: false },
    'memory-limit-mib': { type: 'string', default: '150' },
  },
});
const runs = Number(flags.runs);
const largeLayerMiB = Number(flags['layer-mib']);
const memoryLimitMiB = Number(flags['memory-limit-mib']);

function requireCommand(path, hint) {
  if (!existsSync(path)) {
    console.error(`error: ${path} is needed by the benchmark: ${hint}`);
    process.exit(1);
  }
}
requireCommand('/usr/bin/time', 'apt-get install -y time');
requireCommand('/usr/bin/skopeo', 'apt-get install -y skopeo');
requireCommand(gantryBin, 'run `pnpm build` first (pnpm bench does)');
requireCommand(registryBinary, 'apt-get install -y docker-registry');

const skopeoVersion = execFileSync('skopeo', ['--version'], { encoding: 'utf8' }).trim();

/** Runs a command under GNU time; returns wall seconds, CPU seconds (user + system) and peak RSS in MiB. Throws on failure. */
function measure(command, args) {
  const result = spawnSync('/usr/bin/time', ['-f', '%e %M %U %S', command, ...args], { encoding: 'utf8' });
  const lines = result.stderr.trim().split('\n');
  const last = lines.at(-1) ?? '';
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (exit ${result.status}):\n${result.stderr}`);
  }
  const [wall, maxKiB, user, system] = last.split(' ').map(Number);
  return { seconds: wall, peakMiB: maxKiB / 1024, cpuSeconds: user + system };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

const workDirectory = flags['work-dir']
  ? resolve(flags['work-dir'])
  : await mkdtemp(join(process.env.TMPDIR ?? tmpdir(), 'gantry-bench-'));
await mkdir(workDirectory, { recursive: true });
const fixtureDirectory = join(workDirectory, 'fixtures');

async function makeLayout(name, spec) {
  const layout = join(workDirectory, name);
  if (existsSync(join(layout, 'index.json'))) return layout;
  const blobDirectory = join(fixtureDirectory, name);
  await mkdir(blobDirectory, { recursive: true });
  const image = await buildFixtureImage(spec, { directory: blobDirectory });
  await writeFixtureToOciLayout(image, layout, 'bench');
  await rm(blobDirectory, { recursive: true, force: true });
  return layout;
}

function randomFileLayer(mebibytes, seed, compression = 'gzip') {
  return {
    compression,
    entries: [{ type: 'file', path: `data/${seed}.bin`, randomSize: mebibytes * 1024 * 1024, seed }],
  };
}

/**
 * A layer of real, compressible data (a 16 MiB slice of the node executable, ~45 % after gzip), for
 * scenarios where compression speed matters: random data does not compress, so it measures only how
 * fast a tool notices that.
 */
function executableSliceLayer(index, mebibytes = 16) {
  const executable = readFileSync(process.execPath);
  const size = mebibytes * 1024 * 1024;
  const start = (index * size) % Math.max(1, executable.length - size);
  return {
    compression: 'gzip',
    entries: [{ type: 'file', path: `bin/part-${index}`, content: executable.subarray(start, start + size) }],
  };
}

/** `count` small files in directories of 100 (`many/d<N>/f<i>.txt`). */
function smallFileEntries(count) {
  const entries = [{ type: 'directory', path: 'many' }];
  for (let index = 0; index < count; index += 1) {
    if (index % 100 === 0) entries.push({ type: 'directory', path: `many/d${index / 100}` });
    entries.push({
      type: 'file',
      path: `many/d${Math.floor(index / 100)}/f${index}.txt`,
      content: `file ${index}\n`,
    });
  }
  return entries;
}

console.error(`Building benchmark images in ${workDirectory} (a ${largeLayerMiB} MiB layer takes a while)…`);
/**
 * The benchmark images, built (once, and kept with `--work-dir`) only when a selected scenario needs
 * them: a scenario lists them in `needs` (scenarios without `needs` use the four original images).
 */
const layoutSpecs = {
  large: [`large-${largeLayerMiB}`, { format: 'oci', layers: [randomFileLayer(largeLayerMiB, 'large')] }],
  quarter: [
    `quarter-${Math.max(1, largeLayerMiB >> 2)}`,
    { format: 'oci', layers: [randomFileLayer(Math.max(1, largeLayerMiB >> 2), 'quarter')] },
  ],
  manyLayers: [
    'many-layers',
    {
      format: 'oci',
      layers: Array.from({ length: 16 }, (_, index) => randomFileLayer(16, `layer-${index}`)),
    },
  ],
  executableSlices: [
    'executable-slices',
    { format: 'oci', layers: Array.from({ length: 6 }, (_, index) => executableSliceLayer(index)) },
  ],
  // 20,000 small files in 200 directories, one layer (where unpacking into a store costs most).
  smallFiles: [
    'small-files-20000',
    { format: 'oci', layers: [{ compression: 'gzip', entries: smallFileEntries(20_000) }] },
  ],
  // A few large layers of compressible data (slices of the node executable, 16 MiB each) plus one of random data.
  fewLargeLayers: [
    'few-large-layers',
    {
      format: 'oci',
      layers: [
        executableSliceLayer(0),
        executableSliceLayer(1),
        executableSliceLayer(2),
        randomFileLayer(64, 'few-large'),
      ],
    },
  ],
};
const defaultNeeds = ['large', 'quarter', 'manyLayers', 'executableSlices'];
const layouts = {};

/**
 * The recompression rows' images: 512 MiB of compressible data (8 layers of 64 MiB slices of the node
 * executable), gzip as the fixture builder writes it, and zstd as skopeo writes it (made once).
 */
const recompressionLayouts = {
  gzip: () =>
    makeLayout('compressible-512-gzip', {
      format: 'oci',
      layers: Array.from({ length: 8 }, (_, index) => executableSliceLayer(index, 64)),
    }),
  zstd: async () => {
    const layout = join(workDirectory, 'compressible-512-zstd');
    if (!existsSync(join(layout, 'index.json'))) {
      const partial = `${layout}.partial`;
      rmSync(partial, { recursive: true, force: true });
      execFileSync('skopeo', [
        '--insecure-policy',
        'copy',
        '-q',
        '--dest-compress-format',
        'zstd',
        `oci:${await recompressionLayouts.gzip()}:bench`,
        `oci:${partial}:bench`,
      ]);
      renameSync(partial, layout);
    }
    return layout;
  },
};

/** A port free right now on 127.0.0.1. */
function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/**
 * Starts the real registry on plain HTTP, 127.0.0.1 and a free port, storage under the work
 * directory, access log off (it would cost both tools the same, and only add noise). Returns its
 * `host:port` and a `stop` that kills it by PID.
 */
async function startRegistry(name = 'registry') {
  const directory = join(workDirectory, name);
  await rm(directory, { recursive: true, force: true });
  await mkdir(join(directory, 'storage'), { recursive: true });
  const port = await freePort();
  const config = {
    version: 0.1,
    log: { level: 'error', formatter: 'text', accesslog: { disabled: true } },
    storage: {
      filesystem: { rootdirectory: join(directory, 'storage') },
      delete: { enabled: true },
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: { addr: `127.0.0.1:${port}`, secret: 'gantry-bench-secret' },
  };
  const configPath = join(directory, 'config.yml');
  await writeFile(configPath, JSON.stringify(config, null, 2));
  // The registry's log goes to a file, not a pipe: the measured commands run synchronously
  // (spawnSync), so nothing would drain a pipe meanwhile, and a registry logging its 404s (a sync
  // asks for many manifests that are not there yet) would block once the pipe is full.
  const logPath = join(directory, 'registry.log');
  const logFile = openSync(logPath, 'w');
  const child = spawn(registryBinary, ['serve', configPath], { stdio: ['ignore', 'ignore', logFile] });
  closeSync(logFile);
  const output = () => readFileSync(logPath, 'utf8').slice(-4000);
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.on('exit', kill);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited before answering: ${output()}`);
    try {
      const response = await fetch(`http://127.0.0.1:${port}/v2/`);
      await response.arrayBuffer();
      if (response.status === 200) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`docker-registry did not answer within 30 s: ${output()}`);
    await new Promise((done) => setTimeout(done, 50));
  }
  return {
    host: `127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((done) => child.once('exit', done));
        kill();
        await exited;
      }
      process.off('exit', kill);
      await rm(directory, { recursive: true, force: true });
    },
  };
}

const policy = ['--insecure-policy'];

/**
 * A `docker save` archive of one of the layouts, written once by skopeo (so both tools read the same
 * bytes, in the format skopeo itself produces) and reused across runs and, with `--work-dir`, across
 * invocations. Written under a temporary name and renamed, so an interrupted write is never reused.
 * Built only when a selected scenario needs it (the large one is several GiB).
 */
const archives = new Map();
function dockerArchiveOf(layoutName) {
  if (archives.has(layoutName)) return archives.get(layoutName);
  const layout = layouts[layoutName];
  const archive = join(workDirectory, `${layout.split('/').at(-1)}.docker-archive.tar`);
  if (!existsSync(archive)) {
    console.error(`Writing ${archive} with skopeo…`);
    const partial = `${archive}.partial`;
    rmSync(partial, { force: true });
    execFileSync('skopeo', [
      ...policy,
      'copy',
      '-q',
      `oci:${layout}:bench`,
      `docker-archive:${partial}:bench/${layoutName.toLowerCase()}:v1`,
    ]);
    renameSync(partial, archive);
  }
  archives.set(layoutName, archive);
  return archive;
}

const quarterMiB = Math.max(1, largeLayerMiB >> 2);
/** Tags in the sync rows' source repository. */
const syncTagCount = 50;
const localScenarios = [
  {
    name: 'oci-to-dir-large',
    description: `oci → dir, one ${largeLayerMiB} MiB layer`,
    args: ({ destination }) => [...policy, 'copy', '-q', `oci:${layouts.large}:bench`, `dir:${destination}`],
    memoryCheck: true,
  },
  {
    name: 'oci-to-dir-quarter',
    description: `oci → dir, one ${quarterMiB} MiB layer (memory vs layer size)`,
    args: ({ destination }) => [
      ...policy,
      'copy',
      '-q',
      `oci:${layouts.quarter}:bench`,
      `dir:${destination}`,
    ],
    memoryCheck: true,
  },
  {
    name: 'oci-to-oci-many-layers',
    description: 'oci → oci, 16 layers of 16 MiB',
    args: ({ destination }) => [
      ...policy,
      'copy',
      '-q',
      `oci:${layouts.manyLayers}:bench`,
      `oci:${destination}:bench`,
    ],
  },
  {
    name: 'oci-to-dir-many-layers',
    description: 'oci → dir, 16 layers of 16 MiB',
    args: ({ destination }) => [
      ...policy,
      'copy',
      '-q',
      `oci:${layouts.manyLayers}:bench`,
      `dir:${destination}`,
    ],
  },
  {
    name: 'inspect-oci',
    description: `inspect oci: (${largeLayerMiB} MiB layer image)`,
    args: () => [...policy, 'inspect', `oci:${layouts.large}:bench`],
  },
  {
    name: 'docker-archive-to-oci',
    description: 'docker-archive → oci, 16 × 16 MiB (archive written by skopeo)',
    prepare: () => dockerArchiveOf('manyLayers'),
    args: ({ destination }) => [
      ...policy,
      'copy',
      '-q',
      `docker-archive:${dockerArchiveOf('manyLayers')}`,
      `oci:${destination}:bench`,
    ],
  },
  {
    name: 'docker-archive-to-oci-compressible',
    description: 'docker-archive → oci, 6 × 16 MiB of compressible data (the node executable)',
    prepare: () => dockerArchiveOf('executableSlices'),
    args: ({ destination }) => [
      ...policy,
      'copy',
      '-q',
      `docker-archive:${dockerArchiveOf('executableSlices')}`,
      `oci:${destination}:bench`,
    ],
  },
  {
    name: 'inspect-docker-archive',
    description: `inspect docker-archive: (${largeLayerMiB} MiB layer archive)`,
    prepare: () => dockerArchiveOf('large'),
    args: () => [...policy, 'inspect', `docker-archive:${dockerArchiveOf('large')}`],
  },
];

/**
 * A signed image for the signature verification rows, made only when one of them is selected: a
 * small image (one 1 MiB layer, so the verification is not lost in the copy's noise) copied by skopeo
 * to dir: with `--sign-by` (a GPG key made for the benchmark in its own GNUPGHOME), and a policy whose
 * dir: scope requires that key's signature.
 */
let signedImage;
async function signedImageFor() {
  if (signedImage) return signedImage;
  const directory = join(workDirectory, 'signed');
  await rm(directory, { recursive: true, force: true });
  const home = join(directory, 'gnupg');
  await mkdir(home, { recursive: true, mode: 0o700 });
  const env = { ...process.env, GNUPGHOME: home };
  execFileSync(
    'gpg',
    [
      '--batch',
      '--pinentry-mode',
      'loopback',
      '--passphrase',
      '',
      '--quick-generate-key',
      'Gantry Bench <bench@example.com>',
      'rsa2048',
      'sign',
      'never',
    ],
    { env, stdio: 'ignore' },
  );
  const fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(
    execFileSync('gpg', ['--batch', '--with-colons', '--list-secret-keys'], { env, encoding: 'utf8' }),
  )[1];
  const publicKey = join(directory, 'public.asc');
  await writeFile(publicKey, execFileSync('gpg', ['--batch', '--armor', '--export', fingerprint], { env }));
  const layout = await makeLayout('signed-small', { format: 'oci', layers: [randomFileLayer(1, 'signed')] });
  const image = join(directory, 'image');
  execFileSync(
    'skopeo',
    [
      ...policy,
      'copy',
      '-q',
      '--sign-by',
      fingerprint,
      '--sign-identity',
      'bench.example/signed:v1',
      `oci:${layout}:bench`,
      `dir:${image}`,
    ],
    { env },
  );
  execFileSync('gpgconf', ['--kill', 'gpg-agent'], { env, stdio: 'ignore' });
  const policyFile = join(directory, 'policy.json');
  await writeFile(
    policyFile,
    JSON.stringify({
      default: [{ type: 'reject' }],
      transports: {
        dir: {
          '': [
            {
              type: 'signedBy',
              keyType: 'GPGKeys',
              keyPath: publicKey,
              signedIdentity: { type: 'exactReference', dockerReference: 'bench.example/signed:v1' },
            },
          ],
        },
      },
    }),
  );
  signedImage = { image, policyFile };
  return signedImage;
}

localScenarios.push(
  {
    name: 'signed-dir-to-dir-insecure',
    description: 'dir → dir, signed 1 MiB image, --insecure-policy (baseline of the next row)',
    signed: true,
    needs: [],
    args: ({ destination }) => [...policy, 'copy', '-q', `dir:${signedImage.image}`, `dir:${destination}`],
  },
  {
    name: 'signed-dir-to-dir-verified',
    description: 'dir → dir, signed 1 MiB image, signedBy policy (the signature is verified)',
    signed: true,
    needs: [],
    args: ({ destination }) => [
      '--policy',
      signedImage.policyFile,
      'copy',
      '-q',
      `dir:${signedImage.image}`,
      `dir:${destination}`,
    ],
  },
);

/**
 * Registry scenarios, with TLS verification off on the registry side (plain HTTP). `copy` scenarios:
 * `source`/`destination` name images as `transport:reference`; `registry` is `host:port`; `repository`
 * is new for every run of every tool (pushes and mounts start from an empty repository). `args`
 * scenarios give the whole command line (both tools run it as it is, gantry through its CLI).
 */
/** A containers-storage destination: a store of its own under the run's destination directory. */
const containersStorage = (driver, destination, name) =>
  `containers-storage:[${driver}@${destination}/root+${destination}/run]bench/${name}:v1`;

const registryScenarios = [
  ...['vfs', 'overlay'].flatMap((driver) => [
    {
      name: `registry-to-cstorage-${driver}-small-files`,
      description: `registry → containers-storage (${driver}), 20,000 small files in one layer`,
      needs: ['smallFiles'],
      copy: ({ registry, destination }) => [
        `docker://${registry}/bench/small-files:v1`,
        containersStorage(driver, destination, 'small-files'),
      ],
      memoryCheck: true,
    },
    {
      name: `registry-to-cstorage-${driver}-large-layers`,
      description: `registry → containers-storage (${driver}), 3 × 16 MiB compressible + 64 MiB random layers`,
      needs: ['fewLargeLayers'],
      copy: ({ registry, destination }) => [
        `docker://${registry}/bench/few-large-layers:v1`,
        containersStorage(driver, destination, 'few-large-layers'),
      ],
      memoryCheck: true,
    },
  ]),
  {
    name: 'inspect-docker',
    description: 'inspect docker:// (16-layer image; start-up and round trips)',
    args: ({ registry }) => ['inspect', '--tls-verify=false', `docker://${registry}/bench/many:v1`],
  },
  {
    name: 'registry-to-oci-many-layers',
    description: 'registry → oci pull, 16 layers of 16 MiB',
    copy: ({ registry, destination }) => [`docker://${registry}/bench/many:v1`, `oci:${destination}:bench`],
  },
  {
    name: 'oci-to-registry-many-layers',
    description: 'oci → registry push to a new repo, 16 × 16 MiB',
    freshRegistry: true,
    copy: ({ registry, repository }) => [
      `oci:${layouts.manyLayers}:bench`,
      `docker://${registry}/${repository}:v1`,
    ],
  },
  {
    name: 'registry-to-registry-mount',
    description: 'registry → registry, new repo (mounts), 16 × 16 MiB',
    copy: ({ registry, repository }) => [
      `docker://${registry}/bench/many:v1`,
      `docker://${registry}/${repository}:v1`,
    ],
  },
  {
    name: 'oci-to-registry-repush',
    description: 'oci → registry re-push, image already there, 16 × 16 MiB',
    copy: ({ registry }) => [`oci:${layouts.manyLayers}:bench`, `docker://${registry}/bench/many:v1`],
  },
  {
    name: 'registry-to-docker-archive',
    description: 'registry → docker-archive, new file, 16 × 16 MiB',
    copy: ({ registry, destination }) => [
      `docker://${registry}/bench/many:v1`,
      `docker-archive:${destination}:bench/many:v1`,
    ],
  },
  {
    name: 'registry-to-oci-large',
    description: `registry → oci pull, one ${largeLayerMiB} MiB layer`,
    copy: ({ registry, destination }) => [`docker://${registry}/bench/large:v1`, `oci:${destination}:bench`],
    memoryCheck: true,
  },
  {
    name: 'registry-to-oci-quarter',
    description: `registry → oci pull, one ${quarterMiB} MiB layer (memory vs size)`,
    copy: ({ registry, destination }) => [
      `docker://${registry}/bench/quarter:v1`,
      `oci:${destination}:bench`,
    ],
    memoryCheck: true,
  },
  {
    name: 'oci-to-registry-large',
    description: `oci → registry push to a new repo, one ${largeLayerMiB} MiB layer`,
    freshRegistry: true,
    copy: ({ registry, repository }) => [
      `oci:${layouts.large}:bench`,
      `docker://${registry}/${repository}:v1`,
    ],
    memoryCheck: true,
  },
  {
    name: 'sync-registry-50-tags',
    description: `sync registry → registry, a repository of ${syncTagCount} tags (shared 4 MiB base + 1 MiB each)`,
    // A new, empty destination registry each run: neither tool can mount from an earlier run's copy.
    freshRegistry: true,
    needs: [],
    sync: ({ sourceRegistry, registry }) => [`${sourceRegistry}/bench/sync`, `${registry}/mirror`],
  },
  {
    name: 'sync-registry-50-tags-noop',
    description: `sync re-run, all ${syncTagCount} images already in the destination`,
    needs: [],
    sync: ({ sourceRegistry }) => [`${sourceRegistry}/bench/sync`, `${sourceRegistry}/sync-noop`],
  },
  {
    name: 'recompress-gzip-to-zstd',
    description: 'oci (gzip) → registry, --dest-compress-format zstd, 8 × 64 MiB compressible',
    freshRegistry: true,
    needs: [],
    prepare: () => recompressionLayouts.gzip(),
    extraArgs: ['--dest-compress-format', 'zstd'],
    copy: ({ registry, repository, layouts: prepared }) => [
      `oci:${prepared.recompressGzip}:bench`,
      `docker://${registry}/${repository}:v1`,
    ],
  },
  {
    name: 'recompress-zstd-to-gzip',
    description: 'oci (zstd) → registry, --dest-compress-format gzip, 8 × 64 MiB compressible',
    freshRegistry: true,
    needs: [],
    prepare: () => recompressionLayouts.zstd(),
    extraArgs: ['--dest-compress-format', 'gzip'],
    copy: ({ registry, repository, layouts: prepared }) => [
      `oci:${prepared.recompressZstd}:bench`,
      `docker://${registry}/${repository}:v1`,
    ],
  },
  {
    name: 'oci-to-registry-quarter',
    description: `oci → registry push to a new repo, one ${quarterMiB} MiB layer (memory vs size)`,
    freshRegistry: true,
    copy: ({ registry, repository }) => [
      `oci:${layouts.quarter}:bench`,
      `docker://${registry}/${repository}:v1`,
    ],
    memoryCheck: true,
  },
];

/**
 * ostree: scenarios. skopeo has no ostree: transport, so the "skopeo" column of these rows is the floor:
 * Debian's `ostree commit --tree=dir=` of the same layers, already extracted (prepared once, not timed),
 * into a new repository; Gantry's time also includes decompressing, verifying and applying the layers.
 */
const ostreeFloorTrees = {};
function extractLayersOf(layoutName) {
  if (ostreeFloorTrees[layoutName]) return ostreeFloorTrees[layoutName];
  const layout = layouts[layoutName];
  const blob = (digest) => join(layout, 'blobs', 'sha256', digest.slice(7));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0].digest), 'utf8'));
  const trees = manifest.layers.map((layer, position) => {
    const tree = join(workDirectory, `ostree-floor-${layoutName}`, `layer-${position}`);
    execFileSync('rm', ['-rf', tree]);
    execFileSync('mkdir', ['-p', tree]);
    execFileSync('tar', ['-xf', blob(layer.digest), '-C', tree]);
    return tree;
  });
  ostreeFloorTrees[layoutName] = trees;
  return trees;
}
const ostreeScenarios = [
  ['small-files', 'smallFiles', '20,000 small files in one layer'],
  ['large-layers', 'fewLargeLayers', '3 × 16 MiB compressible + 64 MiB random layers'],
].map(([suffix, layoutName, what]) => ({
  name: `oci-to-ostree-${suffix}`,
  description: `oci → ostree: new repository, ${what} (skopeo column: floor, ostree commit --tree=dir= of the extracted layers)`,
  needs: [layoutName],
  prepare: () => extractLayersOf(layoutName),
  args: ({ destination }) => [
    ...policy,
    'copy',
    '-q',
    `oci:${layouts[layoutName]}:bench`,
    `ostree:bench/${suffix}:v1@${destination}`,
  ],
  floor: ({ destination }) => ({
    command: 'sh',
    args: [
      '-c',
      'repo=$1; shift; ostree init --repo="$repo" --mode=bare && for tree; do ostree commit --repo="$repo" --orphan --subject= --tree=dir="$tree" > /dev/null || exit 1; done',
      'ostree-floor',
      destination,
      ...extractLayersOf(layoutName),
    ],
  }),
}));

const selected = (scenario) => !flags.only || flags.only.split(',').includes(scenario.name);
const scenarios = [
  ...localScenarios.filter(selected),
  ...ostreeScenarios.filter(selected),
  ...registryScenarios.filter(selected).map((scenario) => ({ ...scenario, registry: true })),
];

const neededLayouts = new Set(scenarios.flatMap((scenario) => scenario.needs ?? defaultNeeds));
for (const name of neededLayouts) layouts[name] = await makeLayout(...layoutSpecs[name]);

for (const scenario of scenarios) await scenario.prepare?.();
if (scenarios.some((scenario) => scenario.signed)) await signedImageFor();

const preparedLayouts = {};
if (scenarios.some((scenario) => scenario.name.startsWith('recompress-'))) {
  preparedLayouts.recompressGzip = await recompressionLayouts.gzip();
  if (scenarios.some((scenario) => scenario.name === 'recompress-zstd-to-gzip'))
    preparedLayouts.recompressZstd = await recompressionLayouts.zstd();
}

/** The sync rows' source: `bench/sync`, 50 tags of a shared base layer and one layer of their own. */
async function pushSyncRepository(host) {
  for (let index = 0; index < syncTagCount; index += 1) {
    const layout = await makeLayout(`sync-tag-${index}`, {
      format: 'oci',
      layers: [randomFileLayer(4, 'sync-base'), randomFileLayer(1, `sync-${index}`)],
    });
    execFileSync('skopeo', [
      ...policy,
      'copy',
      '-q',
      '--dest-tls-verify=false',
      `oci:${layout}:bench`,
      `docker://${host}/bench/sync:1.${index}.0`,
    ]);
  }
  // The no-op row's destination, synced once before any measurement.
  execFileSync('skopeo', [
    ...policy,
    'sync',
    '--src',
    'docker',
    '--dest',
    'docker',
    '--src-tls-verify=false',
    '--dest-tls-verify=false',
    `${host}/bench/sync`,
    `${host}/sync-noop`,
  ]);
}

let registry;
/** Names of the images pushed to the benchmark registry (`bench/<name>:v1`). */
let pushedImages = [];
/**
 * How gantry runs registry copies: its CLI, or with `--gantry-library` the library script
 * gantry-library-copy.mjs (core's copyImage, same packages, no CLI start-up: shows what the CLI adds).
 */
const gantryRegistryMode = flags['gantry-library'] ? 'library' : 'cli';
if (scenarios.some((scenario) => scenario.registry)) {
  registry = await startRegistry();
  console.error(`Registry at ${registry.host}; pushing the benchmark images with skopeo…`);
  pushedImages = [];
  for (const [name, layout] of [
    ['many', layouts.manyLayers],
    ['large', layouts.large],
    ['quarter', layouts.quarter],
    ['small-files', layouts.smallFiles],
    ['few-large-layers', layouts.fewLargeLayers],
  ].filter(([, layout]) => layout !== undefined)) {
    execFileSync('skopeo', [
      ...policy,
      'copy',
      '-q',
      '--dest-tls-verify=false',
      `oci:${layout}:bench`,
      `docker://${registry.host}/bench/${name}:v1`,
    ]);
    pushedImages.push(name);
  }
  if (scenarios.some((scenario) => scenario.sync)) {
    console.error(`Pushing the ${syncTagCount} tags of bench/sync with skopeo…`);
    await pushSyncRepository(registry.host);
  }
  if (gantryRegistryMode === 'cli') {
    const probe = spawnSync(
      process.execPath,
      [
        gantryBin,
        ...policy,
        'inspect',
        '--tls-verify=false',
        pushedImages.length > 0
          ? `docker://${registry.host}/bench/${pushedImages[0]}:v1`
          : `docker://${registry.host}/bench/sync:1.0.0`,
      ],
      { encoding: 'utf8' },
    );
    if (probe.status !== 0) {
      await registry.stop();
      console.error(
        `error: the gantry CLI cannot read this registry (${probe.stderr.trim().split('\n').at(-1)}); ` +
          'use --gantry-library to measure the library without the CLI',
      );
      process.exit(1);
    }
  }
}

/** The command line of one run: `{ command, args }` for each tool. */
function commandFor(tool, scenario, parameters) {
  if (tool.name === 'skopeo' && scenario.floor) return scenario.floor(parameters);
  if (!scenario.registry || scenario.args)
    return { command: tool.command, args: [...tool.prefix, ...scenario.args(parameters)] };
  if (scenario.sync) {
    // Sync rows always run the CLI: the same command line for both tools.
    const [source, destination] = scenario.sync(parameters);
    const args = [
      ...policy,
      'sync',
      '--src',
      'docker',
      '--dest',
      'docker',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      source,
      destination,
    ];
    return { command: tool.command, args: [...tool.prefix, ...args] };
  }
  const [source, destination] = scenario.copy(parameters);
  if (tool.name === 'gantry' && gantryRegistryMode === 'library')
    return { command: process.execPath, args: [gantryLibraryCopy, source, destination] };
  // The same flags for both tools: TLS verification off on the side(s) that are the registry.
  const tlsFlags = [
    ...(source.startsWith('docker://') ? ['--src-tls-verify=false'] : []),
    ...(destination.startsWith('docker://') ? ['--dest-tls-verify=false'] : []),
  ];
  const args = [...policy, 'copy', '-q', ...tlsFlags, ...(scenario.extraArgs ?? []), source, destination];
  return { command: tool.command, args: [...tool.prefix, ...args] };
}

const tools = [
  { name: 'gantry', command: gantryLauncher, prefix: [] },
  { name: 'skopeo', command: 'skopeo', prefix: [] },
];

/**
 * containers/storage's overlay driver (skopeo's, podman's) bind-mounts its home onto itself and may leave
 * it mounted after the command: unmount whatever is mounted under `directory` before removing it.
 */
function unmountUnder(directory) {
  if (!existsSync('/proc/self/mountinfo')) return;
  const mountPoints = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((mountPoint) => mountPoint.startsWith(`${directory}/`))
    .sort((a, b) => b.length - a.length);
  for (const mountPoint of mountPoints) spawnSync('umount', [mountPoint]);
}

const results = [];
let memoryFailures = 0;
const runId = Date.now().toString(36);
try {
  for (const scenario of scenarios) {
    const row = { scenario: scenario.name, description: scenario.description };
    if (scenario.registry)
      row.gantryRuns = gantryRegistryMode === 'cli' || scenario.args ? 'cli' : 'library script';
    // Alternate the tools run by run, so that a slow spell of the machine hits both.
    const samples = { gantry: [], skopeo: [] };
    for (let run = 0; run < runs; run += 1) {
      for (const tool of tools) {
        const destination = join(workDirectory, `out-${tool.name}-${scenario.name}`);
        unmountUnder(destination);
        await rm(destination, { recursive: true, force: true });
        const parameters = {
          destination,
          registry: registry?.host,
          sourceRegistry: registry?.host,
          repository: `bench-${runId}/${scenario.name}-${tool.name}-${run}`,
          layouts: preparedLayouts,
        };
        // A push goes to a registry of its own, new and empty, on a new port: skopeo's blob info
        // cache (which outlives the process) then knows no repository to mount from, and gantry
        // (which keeps no such cache) has nothing to find either; both upload every blob.
        const pushRegistry = scenario.freshRegistry ? await startRegistry('push-registry') : undefined;
        if (pushRegistry) parameters.registry = pushRegistry.host;
        const { command, args } = commandFor(tool, scenario, parameters);
        try {
          samples[tool.name].push(measure(command, args));
        } finally {
          await pushRegistry?.stop();
        }
        unmountUnder(destination);
        await rm(destination, { recursive: true, force: true });
      }
    }
    for (const tool of tools) {
      row[tool.name] = {
        medianSeconds: median(samples[tool.name].map((sample) => sample.seconds)),
        medianCpuSeconds: median(samples[tool.name].map((sample) => sample.cpuSeconds)),
        peakMiB: Math.max(...samples[tool.name].map((sample) => sample.peakMiB)),
        samples: samples[tool.name],
      };
    }
    row.ratio = row.gantry.medianSeconds / row.skopeo.medianSeconds;
    if (scenario.memoryCheck) {
      row.memoryWithinLimit = row.gantry.peakMiB < memoryLimitMiB;
      if (!row.memoryWithinLimit) memoryFailures += 1;
    }
    results.push(row);
    console.error(
      `  ${scenario.name}: gantry ${row.gantry.medianSeconds.toFixed(2)} s, skopeo ${row.skopeo.medianSeconds.toFixed(2)} s`,
    );
  }
} finally {
  await registry?.stop();
}

const pad = (value, width) => String(value).padEnd(width);
const nameWidth = Math.max(30, ...results.map((row) => row.scenario.length + 2));
console.log(`Gantry vs ${skopeoVersion}; ${runs} runs each; median wall time, peak RSS`);
if (registry && gantryRegistryMode === 'library') {
  console.log(
    'rows with a registry: gantry ran as core copyImage through gantry-library-copy.mjs (--gantry-library), not the CLI',
  );
}
console.log(
  `${pad('scenario', nameWidth)}${pad('gantry s', 10)}${pad('skopeo s', 10)}${pad('ratio', 8)}${pad('gantry MiB', 12)}${pad('skopeo MiB', 12)}memory`,
);
for (const row of results) {
  console.log(
    `${pad(row.scenario, nameWidth)}${pad(row.gantry.medianSeconds.toFixed(2), 10)}${pad(row.skopeo.medianSeconds.toFixed(2), 10)}${pad(
      row.ratio.toFixed(2),
      8,
    )}${pad(row.gantry.peakMiB.toFixed(0), 12)}${pad(row.skopeo.peakMiB.toFixed(0), 12)}${
      row.memoryWithinLimit === undefined
        ? ''
        : row.memoryWithinLimit
          ? `< ${memoryLimitMiB} MiB ok`
          : `>= ${memoryLimitMiB} MiB FAIL`
    }`,
  );
}
const insecureRow = results.find((row) => row.scenario === 'signed-dir-to-dir-insecure');
const verifiedRow = results.find((row) => row.scenario === 'signed-dir-to-dir-verified');
if (insecureRow && verifiedRow) {
  // CPU time (user + system) as well as wall time: on a shared, loaded machine the wall time difference
  // is mostly waiting for a core, while the CPU time difference is the work verification adds.
  const overhead = (tool, key) => ((verifiedRow[tool][key] - insecureRow[tool][key]) * 1000).toFixed(0);
  console.log(
    `signature verification overhead (verified − insecure medians): gantry ${overhead('gantry', 'medianSeconds')} ms wall, ` +
      `${overhead('gantry', 'medianCpuSeconds')} ms CPU; skopeo ${overhead('skopeo', 'medianSeconds')} ms wall, ` +
      `${overhead('skopeo', 'medianCpuSeconds')} ms CPU (target for gantry: ≤ 50 ms)`,
  );
}
await writeFile(
  join(process.cwd(), 'bench-results.json'),
  `${JSON.stringify({ skopeoVersion, node: process.version, runs, gantryRegistryMode, results }, null, 2)}\n`,
);
if (!flags['work-dir']) await rm(workDirectory, { recursive: true, force: true });
process.exitCode = memoryFailures ? 1 : 0;
