#!/usr/bin/env node
// Gantry side by side with skopeo on the same images, on this machine, and the report of it.
//
// Each row runs each tool `--runs` times (default 3), alternating gantry and skopeo run by run, and
// keeps the median wall time, the median CPU time (user + system) and the peak memory (measure.mjs).
// Beside the rows, the machine's floors on the same data (floors.mjs). Writes bench/results.json and
// docs/benchmarks.md with docs/benchmarks.svg (report.mjs). Images are made by Gantry's deterministic
// fixture builder; no network is used.
//
// Registry rows run against Debian's docker-registry started for the benchmark on a free 127.0.0.1 port
// with its own storage, stopped at the end. Pushes go to a new empty registry each run (skopeo's
// persistent blob info cache would otherwise turn them into mounts), mounts to a new repository each
// run; pulls read and re-pushes write an image pushed before any measurement. The docker-daemon row
// starts dockerd (vfs storage, its own socket and data root) and removes the image between runs; beside
// it, the `docker load` floors: the same image loaded from a docker-archive file (uncompressed layers,
// and gzip layers), the daemon's own time with no copy tool. Some rows also run, in the same runs, the
// least a Node.js program does for them (the node-floor-*.mjs scripts: medians, CPU with the registries'
// CPU), reported under Derived; the bulk rows' ones (pulls, pushes, registry → registry) are left out
// with --no-floors.
//
//   pnpm bench [-- --rows NAME,GROUP,PREFIX* --runs 5 --layer-mib 1024 --work-dir DIR --no-skopeo
//                 --quick --list --report-only --output-dir DIR --no-floors --gantry-library]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem, type } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { measureFloors } from './floors.mjs';
import { measure, summarize } from './measure.mjs';
import { renderMarkdown, renderSvg } from './report.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repositoryRoot = resolve(here, '../../..');
const gantryBin = resolve(here, '../../cli/dist/bin.cjs');
/** The installed command: bin/gantry, the launcher npm links, which runs dist/bin.cjs. */
const gantryLauncher = resolve(here, '../../cli/bin/gantry');
const gantryLibraryCopy = resolve(here, 'gantry-library-copy.mjs');
const nodeFloorSyncNoop = resolve(here, 'node-floor-sync-noop.mjs');
const nodeFloorSync = resolve(here, 'node-floor-sync.mjs');
const nodeFloorInspect = resolve(here, 'node-floor-inspect.mjs');
const nodeFloorRepush = resolve(here, 'node-floor-repush.mjs');
const nodeFloorMount = resolve(here, 'node-floor-mount.mjs');
const nodeFloorPullOci = resolve(here, 'node-floor-pull-oci.mjs');
const nodeFloorPullArchive = resolve(here, 'node-floor-pull-archive.mjs');
const nodeFloorPush = resolve(here, 'node-floor-push.mjs');
const nodeFloorRegistryCopy = resolve(here, 'node-floor-registry-copy.mjs');
const registryBinary = process.env.GANTRY_TEST_REGISTRY_BINARY ?? '/usr/bin/docker-registry';

// `pnpm bench -- --runs 5` hands the `--` on: drop it.
const commandLine = process.argv.slice(2);
if (commandLine[0] === '--') commandLine.shift();
const { values: flags } = parseArgs({
  args: commandLine,
  options: {
    runs: { type: 'string' },
    'layer-mib': { type: 'string' },
    'work-dir': { type: 'string' },
    rows: { type: 'string' },
    only: { type: 'string' },
    quick: { type: 'boolean', default: false },
    'no-skopeo': { type: 'boolean', default: false },
    'no-floors': { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
    'report-only': { type: 'boolean', default: false },
    'output-dir': { type: 'string' },
    'gantry-library': { type: 'boolean', default: false },
    'memory-limit-mib': { type: 'string', default: '150' },
  },
});
const quick = flags.quick;
const outputDirectory = resolve(flags['output-dir'] ?? repositoryRoot);
const resultsPath = join(outputDirectory, 'bench', 'results.json');
const reportPath = join(outputDirectory, 'docs', 'benchmarks.md');
const chartPath = join(outputDirectory, 'docs', 'benchmarks.svg');

async function writeReport(results) {
  await mkdir(dirname(reportPath), { recursive: true });
  await writeFile(chartPath, renderSvg(results));
  await writeFile(reportPath, renderMarkdown(results, { chartFile: 'benchmarks.svg' }));
}

if (flags['report-only']) {
  await writeReport(JSON.parse(readFileSync(resultsPath, 'utf8')));
  console.error(`Wrote ${reportPath} and ${chartPath} from ${resultsPath}`);
  process.exit(0);
}

const runs = Number(flags.runs ?? (quick ? 1 : 3));
const largeLayerMiB = Number(flags['layer-mib'] ?? (quick ? 16 : 1024));
const memoryLimitMiB = Number(flags['memory-limit-mib']);
/** Sizes of the rows' data: full, or small for `--quick` (which checks the benchmark, not speed). */
const size = quick
  ? {
      manyLayers: [4, 2],
      sliceMiB: 2,
      slices: 2,
      smallFiles: 300,
      recompress: [2, 4],
      syncTags: 3,
      fewRandomMiB: 4,
    }
  : {
      manyLayers: [16, 16],
      sliceMiB: 16,
      slices: 6,
      smallFiles: 20_000,
      recompress: [8, 64],
      syncTags: 50,
      fewRandomMiB: 64,
    };

function requireCommand(path, hint) {
  if (!existsSync(path)) {
    console.error(`error: ${path} is needed by the benchmark: ${hint}`);
    process.exit(1);
  }
}
requireCommand(gantryBin, 'run `pnpm build` first (pnpm bench does)');
const skopeoInstalled = existsSync('/usr/bin/skopeo');
const withSkopeo = skopeoInstalled && !flags['no-skopeo'];
if (!skopeoInstalled && !flags['no-skopeo']) console.error('skopeo is not installed: measuring Gantry alone');
const skopeoVersion = withSkopeo ? execFileSync('skopeo', ['--version'], { encoding: 'utf8' }).trim() : null;

/**
 * The tool that prepares data (archives, pushed images, a zstd layout, a signed image): skopeo when it
 * is there, so both tools read what the reference tool writes; Gantry's CLI otherwise.
 */
const preparer = skopeoInstalled ? 'skopeo' : gantryLauncher;
const prepare = (args, options = {}) =>
  execFileSync(preparer, args, { stdio: ['ignore', 'ignore', 'pipe'], ...options });

const workDirectory = flags['work-dir']
  ? resolve(flags['work-dir'])
  : await mkdtemp(join(process.env.TMPDIR ?? tmpdir(), 'gantry-bench-'));
await mkdir(workDirectory, { recursive: true });
const fixtureDirectory = join(workDirectory, 'fixtures');

/** The fixture builder, loaded only for a run (not for --list / --report-only). */
let fixtures;
async function makeLayout(name, spec) {
  const layout = join(workDirectory, name);
  if (existsSync(join(layout, 'index.json'))) return layout;
  fixtures ??= await import('@gantry/core/testing');
  const blobDirectory = join(fixtureDirectory, name);
  await mkdir(blobDirectory, { recursive: true });
  const image = await fixtures.buildFixtureImage(spec, { directory: blobDirectory });
  const partial = `${layout}.partial`;
  await rm(partial, { recursive: true, force: true });
  await fixtures.writeFixtureToOciLayout(image, partial, 'bench');
  renameSync(partial, layout);
  await rm(blobDirectory, { recursive: true, force: true });
  return layout;
}

/** Bytes of an OCI layout's blobs: the data a copy of its image moves. */
function layoutBytes(layout) {
  const directory = join(layout, 'blobs', 'sha256');
  return readdirSync(directory).reduce((total, name) => total + statSync(join(directory, name)).size, 0);
}

function randomFileLayer(mebibytes, seed, compression = 'gzip') {
  return {
    compression,
    entries: [{ type: 'file', path: `data/${seed}.bin`, randomSize: mebibytes * 1024 * 1024, seed }],
  };
}

/**
 * A layer of real, compressible data (a slice of the node executable, ~45 % after gzip), for rows where
 * compression speed matters: random data does not compress, so it measures only how fast a tool
 * notices that.
 */
function executableSliceLayer(index, mebibytes = size.sliceMiB) {
  const executable = readFileSync(process.execPath);
  const bytes = mebibytes * 1024 * 1024;
  const start = (index * bytes) % Math.max(1, executable.length - bytes);
  return {
    compression: 'gzip',
    entries: [
      { type: 'file', path: `bin/part-${index}`, content: executable.subarray(start, start + bytes) },
    ],
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

const quarterMiB = Math.max(1, largeLayerMiB >> 2);
const [manyCount, manyMiB] = size.manyLayers;
const [recompressCount, recompressMiB] = size.recompress;
const suffix = quick ? '-quick' : '';
/** The images, built (once, and kept with `--work-dir`) only when a selected row needs them. */
const layoutSpecs = {
  large: [`large-${largeLayerMiB}`, { format: 'oci', layers: [randomFileLayer(largeLayerMiB, 'large')] }],
  quarter: [`quarter-${quarterMiB}`, { format: 'oci', layers: [randomFileLayer(quarterMiB, 'quarter')] }],
  manyLayers: [
    `many-layers-${manyCount}x${manyMiB}`,
    {
      format: 'oci',
      layers: Array.from({ length: manyCount }, (_, index) => randomFileLayer(manyMiB, `layer-${index}`)),
    },
  ],
  executableSlices: [
    `executable-slices${suffix}`,
    { format: 'oci', layers: Array.from({ length: size.slices }, (_, index) => executableSliceLayer(index)) },
  ],
  smallFiles: [
    `small-files-${size.smallFiles}`,
    { format: 'oci', layers: [{ compression: 'gzip', entries: smallFileEntries(size.smallFiles) }] },
  ],
  fewLargeLayers: [
    `few-large-layers${suffix}`,
    {
      format: 'oci',
      layers: [
        executableSliceLayer(0),
        executableSliceLayer(1),
        executableSliceLayer(2),
        randomFileLayer(size.fewRandomMiB, 'few-large'),
      ],
    },
  ],
  // Compressible data (slices of the node executable), gzip as the fixture builder writes it.
  recompressGzip: [
    `compressible-${recompressCount}x${recompressMiB}-gzip`,
    {
      format: 'oci',
      layers: Array.from({ length: recompressCount }, (_, index) =>
        executableSliceLayer(index, recompressMiB),
      ),
    },
  ],
};
const layouts = {};
async function layoutOf(name) {
  layouts[name] ??= await makeLayout(...layoutSpecs[name]);
  return layouts[name];
}

/** The same compressible image with zstd layers, as skopeo (or Gantry without skopeo) writes it. */
async function zstdLayout() {
  if (layouts.recompressZstd) return layouts.recompressZstd;
  const gzipLayout = await layoutOf('recompressGzip');
  const layout = `${gzipLayout.replace(/-gzip$/, '')}-zstd`;
  if (!existsSync(join(layout, 'index.json'))) {
    const partial = `${layout}.partial`;
    rmSync(partial, { recursive: true, force: true });
    prepare([
      '--insecure-policy',
      'copy',
      '-q',
      '--dest-compress-format',
      'zstd',
      `oci:${gzipLayout}:bench`,
      `oci:${partial}:bench`,
    ]);
    renameSync(partial, layout);
  }
  layouts.recompressZstd = layout;
  return layout;
}

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

/** Waits until `check` resolves true, or throws `failure()` after `timeoutMs`. */
async function waitFor(check, timeoutMs, failure) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw failure();
    await new Promise((done) => setTimeout(done, 50));
  }
}

/** Clock ticks per second of /proc/PID/stat's CPU times. */
const clockTicks = (() => {
  const result = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  return Number.parseInt(result.stdout ?? '', 10) || 100;
})();

/** CPU seconds (user + system) a running process has used, from /proc/PID/stat; 0 where unreadable. */
function processCpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the command name (in parentheses, which may hold spaces): utime and stime are
    // the 14th and 15th fields of the line.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return 0;
  }
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
  // The log goes to a file, not a pipe: the measured commands run synchronously (spawnSync), so
  // nothing would drain a pipe meanwhile, and a registry logging many 404s would block on it.
  const logPath = join(directory, 'registry.log');
  const logFile = openSync(logPath, 'w');
  const child = spawn(registryBinary, ['serve', configPath], { stdio: ['ignore', 'ignore', logFile] });
  closeSync(logFile);
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.on('exit', kill);
  await waitFor(
    async () => {
      if (child.exitCode !== null)
        throw new Error(`docker-registry exited: ${readFileSync(logPath, 'utf8')}`);
      try {
        const response = await fetch(`http://127.0.0.1:${port}/v2/`);
        await response.arrayBuffer();
        return response.status === 200;
      } catch {
        return false;
      }
    },
    30_000,
    () =>
      new Error(`docker-registry did not answer within 30 s: ${readFileSync(logPath, 'utf8').slice(-4000)}`),
  );
  return {
    host: `127.0.0.1:${port}`,
    /** CPU seconds (user + system) the registry has used so far (Linux /proc; 0 elsewhere). */
    cpuSeconds: () => processCpuSeconds(child.pid),
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

/** Starts dockerd (vfs storage, no networking, its own socket and data root); `stop` ends it by PID. */
async function startDockerd() {
  const directory = await mkdtemp(join(workDirectory, 'dockerd-'));
  const socket = join(directory, 'docker.sock');
  const logPath = join(directory, 'dockerd.log');
  const log = openSync(logPath, 'w');
  const child = spawn(
    '/usr/sbin/dockerd',
    [
      '--storage-driver',
      'vfs',
      '--iptables=false',
      '--bridge=none',
      '--data-root',
      join(directory, 'data'),
      '--exec-root',
      join(directory, 'exec'),
      '--pidfile',
      join(directory, 'docker.pid'),
      '-H',
      `unix://${socket}`,
    ],
    { stdio: ['ignore', log, log] },
  );
  closeSync(log);
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.on('exit', kill);
  const host = `unix://${socket}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((done) => child.once('exit', done));
      child.kill('SIGTERM');
      const timer = setTimeout(kill, 15_000);
      await exited;
      clearTimeout(timer);
    }
    process.off('exit', kill);
    await rm(directory, { recursive: true, force: true });
  };
  try {
    await waitFor(
      () => {
        if (child.exitCode !== null)
          throw new Error(`dockerd exited: ${readFileSync(logPath, 'utf8').slice(-4000)}`);
        return spawnSync('docker', ['-H', host, 'version'], { stdio: 'ignore' }).status === 0;
      },
      60_000,
      () => new Error(`dockerd did not answer within 60 s: ${readFileSync(logPath, 'utf8').slice(-4000)}`),
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    host,
    pid: child.pid,
    stop,
    docker: (...args) => spawnSync('docker', ['-H', host, ...args], { stdio: 'ignore' }),
  };
}

const policy = ['--insecure-policy'];

/**
 * A `docker save` archive of one of the layouts, written once by skopeo (so both tools read the same
 * bytes, in the format skopeo itself produces) and reused across runs and, with `--work-dir`, across
 * invocations. Written under a temporary name and renamed, so an interrupted write is never reused.
 */
async function dockerArchiveOf(layoutName) {
  const layout = await layoutOf(layoutName);
  const archive = `${layout}.docker-archive.tar`;
  if (!existsSync(archive)) {
    console.error(`Writing ${archive}…`);
    const partial = `${archive}.partial`;
    rmSync(partial, { force: true });
    prepare([
      ...policy,
      'copy',
      '-q',
      `oci:${layout}:bench`,
      `docker-archive:${partial}:bench/${layoutName.toLowerCase()}:v1`,
    ]);
    renameSync(partial, archive);
  }
  return archive;
}

/**
 * A signed image for the signature verification rows: a small image (one 1 MiB layer, so the
 * verification is not lost in the copy's noise) copied to dir: with `--sign-by` (a GPG key made for the
 * benchmark in its own GNUPGHOME), and a policy whose dir: scope requires that key's signature.
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
  prepare(
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
  spawnSync('gpgconf', ['--kill', 'gpg-agent'], { env, stdio: 'ignore' });
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

/** Targets the issues set (ratio of Gantry to skopeo, or to the row's floor). */
const target = (ratio, source, of = 'wall') => ({ ratio, of, source });
const bulk = { memoryLimitMiB: memoryLimitMiB };

/**
 * The rows. Each has a `name`, `groups`, a `description`, and one of: `args` (the whole command line,
 * the same for both tools), `copy` (source and destination; TLS flags are added for registries), or
 * `sync` (source and destination of a registry → registry sync). `prepare` makes its data before any
 * measurement; `bytes` is the data it moves; `floor` replaces skopeo by another reference command;
 * `target` and `memoryLimitMiB` are the issues' bars; `freshRegistry` gives each run a new empty
 * registry; `freshFilesystem` gives each run of each tool a new ext4 filesystem (see mountFreshFilesystem);
 * `registry` rows need the shared benchmark registry, `daemon` rows dockerd. `nodeFloor` gives the
 * arguments (after `node`) of the least Node.js program for the row, run after both tools in each run
 * (a new registry of its own for `freshRegistry` rows, `destination` a path to write to);
 * `bulkNodeFloor` leaves it out with --no-floors.
 */
const rows = [
  {
    name: 'oci-to-oci-large',
    groups: ['bulk', 'local'],
    description: `oci → oci, one ${largeLayerMiB} MiB layer`,
    prepare: () => layoutOf('large'),
    bytes: () => layoutBytes(layouts.large),
    args: ({ destination }) => [
      ...policy,
      'copy',
      '-q',
      `oci:${layouts.large}:bench`,
      `oci:${destination}:bench`,
    ],
    target: target(0.7, 'issue 16'),
    ...bulk,
  },
  {
    name: 'oci-to-dir-large',
    groups: ['local'],
    description: `oci → dir, one ${largeLayerMiB} MiB layer`,
    prepare: () => layoutOf('large'),
    bytes: () => layoutBytes(layouts.large),
    args: ({ destination }) => [...policy, 'copy', '-q', `oci:${layouts.large}:bench`, `dir:${destination}`],
    ...bulk,
  },
  {
    name: 'oci-to-dir-quarter',
    groups: ['local'],
    description: `oci → dir, one ${quarterMiB} MiB layer (memory vs layer size)`,
    prepare: () => layoutOf('quarter'),
    bytes: () => layoutBytes(layouts.quarter),
    args: ({ destination }) => [
      ...policy,
      'copy',
      '-q',
      `oci:${layouts.quarter}:bench`,
      `dir:${destination}`,
    ],
    ...bulk,
  },
  {
    name: 'oci-to-oci-many-layers',
    groups: ['local'],
    description: `oci → oci, ${manyCount} layers of ${manyMiB} MiB`,
    prepare: () => layoutOf('manyLayers'),
    bytes: () => layoutBytes(layouts.manyLayers),
    args: ({ destination }) => [
      ...policy,
      'copy',
      '-q',
      `oci:${layouts.manyLayers}:bench`,
      `oci:${destination}:bench`,
    ],
    ...bulk,
  },
  {
    name: 'inspect-oci',
    groups: ['start-up', 'local'],
    description: `inspect oci: (${largeLayerMiB} MiB layer image)`,
    prepare: () => layoutOf('large'),
    args: () => [...policy, 'inspect', `oci:${layouts.large}:bench`],
  },
  {
    name: 'docker-archive-to-oci',
    groups: ['bulk', 'local'],
    description: `docker-archive → oci, ${manyCount} × ${manyMiB} MiB random (archive written by skopeo)`,
    prepare: () => dockerArchiveOf('manyLayers'),
    bytes: () => layoutBytes(layouts.manyLayers),
    args: async ({ destination }) => [
      ...policy,
      'copy',
      '-q',
      `docker-archive:${await dockerArchiveOf('manyLayers')}`,
      `oci:${destination}:bench`,
    ],
    target: target(0.8, 'issue 16'),
    ...bulk,
  },
  {
    name: 'docker-archive-to-oci-compressible',
    groups: ['bulk', 'local'],
    description: `docker-archive → oci, ${size.slices} × ${size.sliceMiB} MiB of compressible data (the node executable)`,
    prepare: () => dockerArchiveOf('executableSlices'),
    bytes: () => layoutBytes(layouts.executableSlices),
    args: async ({ destination }) => [
      ...policy,
      'copy',
      '-q',
      `docker-archive:${await dockerArchiveOf('executableSlices')}`,
      `oci:${destination}:bench`,
    ],
    target: target(0.8, 'issue 16'),
    ...bulk,
  },
  {
    name: 'inspect-docker-archive',
    groups: ['start-up', 'local'],
    description: `inspect docker-archive: (${largeLayerMiB} MiB layer archive)`,
    prepare: () => dockerArchiveOf('large'),
    args: async () => [...policy, 'inspect', `docker-archive:${await dockerArchiveOf('large')}`],
  },
  {
    name: 'signed-dir-to-dir-insecure',
    groups: ['signatures'],
    description: 'dir → dir, signed 1 MiB image, --insecure-policy (baseline of the next row)',
    prepare: () => signedImageFor(),
    args: ({ destination }) => [...policy, 'copy', '-q', `dir:${signedImage.image}`, `dir:${destination}`],
  },
  {
    name: 'signed-dir-to-dir-verified',
    groups: ['signatures'],
    description: 'dir → dir, signed 1 MiB image, signedBy policy (the signature is verified)',
    prepare: () => signedImageFor(),
    args: ({ destination }) => [
      '--policy',
      signedImage.policyFile,
      'copy',
      '-q',
      `dir:${signedImage.image}`,
      `dir:${destination}`,
    ],
  },
  ...['small-files', 'large-layers'].map((kind) => {
    const layoutName = kind === 'small-files' ? 'smallFiles' : 'fewLargeLayers';
    return {
      name: `oci-to-ostree-${kind}`,
      groups: ['ostree'],
      description: `oci → ostree: new repository, ${kind === 'small-files' ? `${size.smallFiles} small files in one layer` : `3 × ${size.sliceMiB} MiB compressible + ${size.fewRandomMiB} MiB random layers`}`,
      referenceName: 'ostree commit --tree=dir= of the extracted layers',
      prepare: () => extractLayersOf(layoutName),
      bytes: () => layoutBytes(layouts[layoutName]),
      args: ({ destination }) => [
        ...policy,
        'copy',
        '-q',
        `oci:${layouts[layoutName]}:bench`,
        `ostree:bench/${kind}:v1@${destination}`,
      ],
      floor: ({ destination }) => ({
        command: 'sh',
        args: [
          '-c',
          'repo=$1; shift; ostree init --repo="$repo" --mode=bare && for tree; do ostree commit --repo="$repo" --orphan --subject= --tree=dir="$tree" > /dev/null || exit 1; done',
          'ostree-floor',
          destination,
          ...ostreeFloorTrees[layoutName],
        ],
      }),
      target: target(1.5, 'issue 10'),
      freshFilesystem: true,
    };
  }),
  ...['vfs', 'overlay'].flatMap((driver) =>
    ['small-files', 'large-layers'].map((kind) => ({
      name: `registry-to-cstorage-${driver}-${kind}`,
      groups: ['containers-storage', 'registry'],
      registry: true,
      description: `registry → containers-storage (${driver}), ${kind === 'small-files' ? `${size.smallFiles} small files in one layer` : `3 × ${size.sliceMiB} MiB compressible + ${size.fewRandomMiB} MiB random layers`}`,
      pushed: [kind === 'small-files' ? 'smallFiles' : 'fewLargeLayers'],
      bytes: () => layoutBytes(layouts[kind === 'small-files' ? 'smallFiles' : 'fewLargeLayers']),
      copy: ({ registry, destination }) => [
        `docker://${registry}/bench/${kind === 'small-files' ? 'smallfiles' : 'fewlargelayers'}:v1`,
        `containers-storage:[${driver}@${destination}/root+${destination}/run]bench/${kind}:v1`,
      ],
      target: target(kind === 'small-files' ? 0.5 : 0.8, 'issue 9'),
      freshFilesystem: true,
      ...bulk,
    })),
  ),
  {
    name: 'inspect-docker',
    groups: ['start-up', 'registry'],
    registry: true,
    description: `inspect docker:// (${manyCount}-layer image; start-up and round trips)`,
    pushed: ['manyLayers'],
    args: ({ registry }) => ['inspect', '--tls-verify=false', `docker://${registry}/bench/manylayers:v1`],
    // Measured in the same runs: the least a Node.js program does for it.
    nodeFloor: ({ registry }) => [nodeFloorInspect, registry, 'bench/manylayers', 'v1'],
    target: target(1.5, 'issue 16'),
  },
  {
    name: 'registry-to-oci-many-layers',
    groups: ['bulk', 'registry'],
    registry: true,
    description: `registry → oci pull, ${manyCount} layers of ${manyMiB} MiB`,
    pushed: ['manyLayers'],
    bytes: () => layoutBytes(layouts.manyLayers),
    copy: ({ registry, destination }) => [
      `docker://${registry}/bench/manylayers:v1`,
      `oci:${destination}:bench`,
    ],
    // Measured in the same runs (not with --no-floors): the least a Node.js program does for it.
    nodeFloor: ({ registry, destination }) => [
      nodeFloorPullOci,
      registry,
      'bench/manylayers',
      'v1',
      destination,
    ],
    bulkNodeFloor: true,
    target: target(0.8, 'issue 16'),
    ...bulk,
  },
  {
    name: 'registry-to-oci-compressible',
    groups: ['bulk', 'registry'],
    registry: true,
    description: `registry → oci pull, ${recompressCount} × ${recompressMiB} MiB compressible`,
    pushed: ['recompressGzip'],
    bytes: () => layoutBytes(layouts.recompressGzip),
    copy: ({ registry, destination }) => [
      `docker://${registry}/bench/recompressgzip:v1`,
      `oci:${destination}:bench`,
    ],
    // Measured in the same runs (not with --no-floors): the least a Node.js program does for it.
    nodeFloor: ({ registry, destination }) => [
      nodeFloorPullOci,
      registry,
      'bench/recompressgzip',
      'v1',
      destination,
    ],
    bulkNodeFloor: true,
    target: target(0.8, 'issue 16'),
    ...bulk,
  },
  {
    name: 'oci-to-registry-many-layers',
    groups: ['bulk', 'registry'],
    registry: true,
    description: `oci → registry push to a new registry, ${manyCount} × ${manyMiB} MiB`,
    freshRegistry: true,
    prepare: () => layoutOf('manyLayers'),
    bytes: () => layoutBytes(layouts.manyLayers),
    copy: ({ registry, repository }) => [
      `oci:${layouts.manyLayers}:bench`,
      `docker://${registry}/${repository}:v1`,
    ],
    // Measured in the same runs (not with --no-floors), into a new registry of its own.
    nodeFloor: ({ registry, repository }) => [
      nodeFloorPush,
      layouts.manyLayers,
      `${registry}/${repository}:v1`,
    ],
    bulkNodeFloor: true,
    target: target(0.8, 'issue 16'),
    ...bulk,
  },
  {
    name: 'registry-to-registry-mount',
    groups: ['bulk', 'registry'],
    registry: true,
    description: `registry → registry, new repository (mounts), ${manyCount} × ${manyMiB} MiB`,
    pushed: ['manyLayers'],
    copy: ({ registry, repository }) => [
      `docker://${registry}/bench/manylayers:v1`,
      `docker://${registry}/${repository}:v1`,
    ],
    // Measured in the same runs: the least a Node.js program does for it (to a new repository too).
    nodeFloor: ({ registry, repository }) => [nodeFloorMount, registry, 'bench/manylayers', 'v1', repository],
    target: target(0.7, 'issue 16'),
  },
  {
    name: 'registry-to-registry-copy',
    groups: ['bulk', 'registry'],
    registry: true,
    description: `registry → another registry (every blob moves), ${manyCount} × ${manyMiB} MiB`,
    pushed: ['manyLayers'],
    freshRegistry: true,
    bytes: () => layoutBytes(layouts.manyLayers),
    copy: ({ sourceRegistry, registry, repository }) => [
      `docker://${sourceRegistry}/bench/manylayers:v1`,
      `docker://${registry}/${repository}:v1`,
    ],
    // Measured in the same runs (not with --no-floors), into a new registry of its own.
    nodeFloor: ({ sourceRegistry, registry, repository }) => [
      nodeFloorRegistryCopy,
      `${sourceRegistry}/bench/manylayers:v1`,
      `${registry}/${repository}:v1`,
    ],
    bulkNodeFloor: true,
    target: target(0.8, 'issue 16'),
    ...bulk,
  },
  {
    name: 'oci-to-registry-repush',
    groups: ['start-up', 'registry'],
    registry: true,
    description: `oci → registry re-push, image already there, ${manyCount} × ${manyMiB} MiB`,
    pushed: ['manyLayers'],
    copy: ({ registry }) => [`oci:${layouts.manyLayers}:bench`, `docker://${registry}/bench/manylayers:v1`],
    // Measured in the same runs: the least a Node.js program does for it.
    nodeFloor: ({ registry }) => [nodeFloorRepush, layouts.manyLayers, registry, 'bench/manylayers', 'v1'],
    target: target(1.5, 'issue 16'),
  },
  {
    name: 'registry-to-docker-archive',
    groups: ['bulk', 'registry'],
    registry: true,
    description: `registry → docker-archive, new file, ${manyCount} × ${manyMiB} MiB`,
    pushed: ['manyLayers'],
    bytes: () => layoutBytes(layouts.manyLayers),
    copy: ({ registry, destination }) => [
      `docker://${registry}/bench/manylayers:v1`,
      `docker-archive:${destination}:bench/many:v1`,
    ],
    // Measured in the same runs (not with --no-floors): the least a Node.js program does for it.
    nodeFloor: ({ registry, destination }) => [
      nodeFloorPullArchive,
      registry,
      'bench/manylayers',
      'v1',
      destination,
      'bench/many:v1',
    ],
    bulkNodeFloor: true,
    target: target(0.8, 'issue 16'),
    ...bulk,
  },
  {
    name: 'registry-to-docker-daemon',
    groups: ['bulk', 'registry', 'daemon'],
    registry: true,
    daemon: true,
    description: `registry → docker-daemon (docker load into dockerd, vfs), ${manyCount} × ${manyMiB} MiB`,
    pushed: ['manyLayers'],
    bytes: () => layoutBytes(layouts.manyLayers),
    extraArgs: ({ daemonHost }) => ['--dest-daemon-host', daemonHost],
    copy: ({ registry }) => [`docker://${registry}/bench/manylayers:v1`, 'docker-daemon:bench/many:v1'],
    afterRun: () => daemon?.docker('image', 'rm', '-f', 'bench/many:v1'),
    target: target(0.8, 'issue 16'),
    ...bulk,
  },
  {
    name: 'registry-to-oci-large',
    groups: ['bulk', 'registry'],
    registry: true,
    description: `registry → oci pull, one ${largeLayerMiB} MiB layer`,
    pushed: ['large'],
    bytes: () => layoutBytes(layouts.large),
    copy: ({ registry, destination }) => [`docker://${registry}/bench/large:v1`, `oci:${destination}:bench`],
    target: target(0.8, 'issue 16'),
    ...bulk,
  },
  {
    name: 'registry-to-oci-quarter',
    groups: ['registry'],
    registry: true,
    description: `registry → oci pull, one ${quarterMiB} MiB layer (memory vs layer size)`,
    pushed: ['quarter'],
    bytes: () => layoutBytes(layouts.quarter),
    copy: ({ registry, destination }) => [
      `docker://${registry}/bench/quarter:v1`,
      `oci:${destination}:bench`,
    ],
    ...bulk,
  },
  {
    name: 'oci-to-registry-large',
    groups: ['bulk', 'registry'],
    registry: true,
    description: `oci → registry push to a new registry, one ${largeLayerMiB} MiB layer`,
    freshRegistry: true,
    prepare: () => layoutOf('large'),
    bytes: () => layoutBytes(layouts.large),
    copy: ({ registry, repository }) => [
      `oci:${layouts.large}:bench`,
      `docker://${registry}/${repository}:v1`,
    ],
    // Measured in the same runs (not with --no-floors), into a new registry of its own.
    nodeFloor: ({ registry, repository }) => [nodeFloorPush, layouts.large, `${registry}/${repository}:v1`],
    bulkNodeFloor: true,
    target: target(0.8, 'issue 16'),
    ...bulk,
  },
  {
    name: 'sync-registry-tags',
    groups: ['sync', 'registry'],
    registry: true,
    description: `sync registry → new registry, a repository of ${size.syncTags} tags (shared 4 MiB base + 1 MiB each)`,
    freshRegistry: true,
    syncSource: true,
    sync: ({ sourceRegistry, registry }) => [`${sourceRegistry}/bench/sync`, `${registry}/mirror`],
    // Measured in the same runs, into a new registry of its own: the least a Node.js program does for it.
    nodeFloor: ({ sourceRegistry, registry }) => [
      nodeFloorSync,
      `${sourceRegistry}/bench/sync`,
      `${registry}/mirror`,
    ],
    target: target(0.4, 'issue 11'),
  },
  {
    name: 'sync-registry-tags-noop',
    groups: ['sync', 'registry'],
    registry: true,
    description: `sync re-run, all ${size.syncTags} images already in the destination`,
    syncSource: true,
    sync: ({ sourceRegistry }) => [`${sourceRegistry}/bench/sync`, `${sourceRegistry}/sync-noop`],
    // Measured in the same runs: the least a Node.js program does to prove the mirror up to date.
    nodeFloor: ({ sourceRegistry }) => [
      nodeFloorSyncNoop,
      `${sourceRegistry}/bench/sync`,
      `${sourceRegistry}/sync-noop`,
    ],
    target: target(0.3, 'issue 11'),
  },
  {
    name: 'recompress-gzip-to-zstd',
    groups: ['recompression', 'registry'],
    registry: true,
    description: `oci (gzip) → registry, --dest-compress-format zstd, ${recompressCount} × ${recompressMiB} MiB compressible`,
    freshRegistry: true,
    prepare: () => layoutOf('recompressGzip'),
    bytes: () => layoutBytes(layouts.recompressGzip),
    extraArgs: () => ['--dest-compress-format', 'zstd'],
    copy: ({ registry, repository }) => [
      `oci:${layouts.recompressGzip}:bench`,
      `docker://${registry}/${repository}:v1`,
    ],
    target: target(0.6, 'issue 13'),
    ...bulk,
  },
  {
    name: 'recompress-zstd-to-gzip',
    groups: ['recompression', 'registry'],
    registry: true,
    description: `oci (zstd) → registry, --dest-compress-format gzip, ${recompressCount} × ${recompressMiB} MiB compressible`,
    freshRegistry: true,
    prepare: () => zstdLayout(),
    bytes: () => layoutBytes(layouts.recompressZstd),
    extraArgs: () => ['--dest-compress-format', 'gzip'],
    copy: ({ registry, repository }) => [
      `oci:${layouts.recompressZstd}:bench`,
      `docker://${registry}/${repository}:v1`,
    ],
    target: target(0.6, 'issue 13'),
    ...bulk,
  },
];

/** The extracted layers of a layout, for the ostree floor (prepared once, not timed). */
const ostreeFloorTrees = {};
async function extractLayersOf(layoutName) {
  if (ostreeFloorTrees[layoutName]) return ostreeFloorTrees[layoutName];
  const layout = await layoutOf(layoutName);
  const blob = (digest) => join(layout, 'blobs', 'sha256', digest.slice(7));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0].digest), 'utf8'));
  ostreeFloorTrees[layoutName] = manifest.layers.map((layer, position) => {
    const tree = join(workDirectory, `ostree-floor-${layoutName}`, `layer-${position}`);
    rmSync(tree, { recursive: true, force: true });
    execFileSync('mkdir', ['-p', tree]);
    execFileSync('tar', ['-xf', blob(layer.digest), '-C', tree]);
    return tree;
  });
  return ostreeFloorTrees[layoutName];
}

/** Leaves nothing behind on an early exit (a work directory of our own is removed). */
function exitEarly(code) {
  if (!flags['work-dir']) rmSync(workDirectory, { recursive: true, force: true });
  process.exit(code);
}

if (flags.list) {
  for (const row of rows)
    console.log(`${row.name.padEnd(40)} ${row.groups.join(',').padEnd(32)} ${row.description}`);
  exitEarly(0);
}

/** `--rows` (or `--only`): names, group names, or prefixes ending in `*`, comma-separated. */
const wanted = (flags.rows ?? flags.only)
  ?.split(',')
  .map((word) => word.trim())
  .filter(Boolean);
if (wanted) {
  const unknown = wanted.filter(
    (word) =>
      !rows.some(
        (row) =>
          row.name === word ||
          row.groups.includes(word) ||
          (word.endsWith('*') && row.name.startsWith(word.slice(0, -1))),
      ),
  );
  if (unknown.length > 0) {
    console.error(`error: no row or group named ${unknown.join(', ')} (pnpm bench -- --list shows them)`);
    exitEarly(2);
  }
}
const selectedRows = rows.filter(
  (row) =>
    !wanted ||
    wanted.some(
      (word) =>
        row.name === word ||
        row.groups.includes(word) ||
        (word.endsWith('*') && row.name.startsWith(word.slice(0, -1))),
    ),
);

const startedAt = new Date();
const loadAverageStart = loadavg();
const gantryVersion = JSON.parse(readFileSync(resolve(here, '../../cli/package.json'), 'utf8')).version;
const commit =
  spawnSync('git', ['-C', repositoryRoot, 'rev-parse', '--short', 'HEAD'], {
    encoding: 'utf8',
  }).stdout?.trim() || null;

console.error(`Preparing data in ${workDirectory}${quick ? ' (quick mode)' : ''}…`);
const rowErrors = new Map();
for (const row of selectedRows) {
  try {
    for (const name of row.pushed ?? []) await layoutOf(name);
    await row.prepare?.();
  } catch (error) {
    rowErrors.set(row.name, `preparing: ${error.message}`);
  }
}

let registry;
let daemon;
/** Layouts pushed to the benchmark registry (as `bench/<name in lower case>:v1`). */
const pushedNames = new Set();
const gantryRegistryMode = flags['gantry-library'] ? 'library' : 'cli';

/** The sync rows' source: `bench/sync`, tags of a shared base layer and one layer of their own. */
async function pushSyncRepository(host) {
  for (let index = 0; index < size.syncTags; index += 1) {
    const layout = await makeLayout(`sync-tag-${index}`, {
      format: 'oci',
      layers: [randomFileLayer(4, 'sync-base'), randomFileLayer(1, `sync-${index}`)],
    });
    prepare([
      ...policy,
      'copy',
      '-q',
      '--dest-tls-verify=false',
      `oci:${layout}:bench`,
      `docker://${host}/bench/sync:1.${index}.0`,
    ]);
  }
  prepare([
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

const runnable = () => selectedRows.filter((row) => !rowErrors.has(row.name));
try {
  if (runnable().some((row) => row.registry)) {
    registry = await startRegistry();
    console.error(`Registry at ${registry.host}; pushing the benchmark images…`);
    for (const name of runnable().flatMap((row) => row.pushed ?? [])) {
      if (pushedNames.has(name)) continue;
      pushedNames.add(name);
      prepare([
        ...policy,
        'copy',
        '-q',
        '--dest-tls-verify=false',
        `oci:${layouts[name]}:bench`,
        `docker://${registry.host}/bench/${name.toLowerCase()}:v1`,
      ]);
    }
    if (runnable().some((row) => row.syncSource)) {
      console.error(`Pushing the ${size.syncTags} tags of bench/sync…`);
      await pushSyncRepository(registry.host);
    }
  }
  if (runnable().some((row) => row.daemon)) {
    try {
      daemon = await startDockerd();
    } catch (error) {
      for (const row of runnable().filter((row) => row.daemon))
        rowErrors.set(row.name, `dockerd: ${error.message}`);
    }
  }
} catch (error) {
  await registry?.stop();
  await daemon?.stop();
  throw error;
}

/** The command line of one run: `{ command, args }` for each tool. */
async function commandFor(tool, row, parameters) {
  if (tool.name === 'skopeo' && row.floor) return row.floor(parameters);
  if (row.args) return { command: tool.command, args: await row.args(parameters) };
  if (row.sync) {
    const [source, destination] = row.sync(parameters);
    return {
      command: tool.command,
      args: [
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
      ],
    };
  }
  const [source, destination] = row.copy(parameters);
  if (tool.name === 'gantry' && gantryRegistryMode === 'library' && !row.extraArgs)
    return { command: process.execPath, args: [gantryLibraryCopy, source, destination] };
  const tlsFlags = [
    ...(source.startsWith('docker://') ? ['--src-tls-verify=false'] : []),
    ...(destination.startsWith('docker://') ? ['--dest-tls-verify=false'] : []),
  ];
  const extra = row.extraArgs?.(parameters) ?? [];
  return {
    command: tool.command,
    args: [...policy, 'copy', '-q', ...tlsFlags, ...extra, source, destination],
  };
}

const tools = [
  { name: 'gantry', command: gantryLauncher },
  ...(withSkopeo ? [{ name: 'skopeo', command: 'skopeo' }] : []),
];

/**
 * containers/storage's overlay driver (skopeo's, podman's) bind-mounts its home onto itself and may
 * leave it mounted after the command: unmount whatever is mounted under `directory` before removing it.
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

/**
 * A new ext4 filesystem (journaled, as mkfs.ext4 makes it, inode tables written up front so no background
 * initialisation runs during the measurement), loop-mounted at `mountPoint`, for rows that create tens of
 * thousands of files. Without it every run writes where earlier runs deleted: on an ext4 without a journal
 * (as this machine's root filesystem is) the kernel then skips each inode freed in the last minutes when it
 * allocates a new one, and that cost grows run after run, for whichever tool comes later. Each run of each
 * tool gets an identical fresh filesystem instead. Returns undefined (the row runs in the work directory)
 * when not root or mkfs.ext4 / loop devices are missing.
 */
function mountFreshFilesystem(mountPoint) {
  if (process.getuid?.() !== 0) return undefined;
  const image = `${mountPoint}.ext4`;
  rmSync(image, { force: true });
  mkdirSync(mountPoint, { recursive: true });
  const created =
    spawnSync('truncate', ['-s', `${freshFilesystemGiB}G`, image]).status === 0 &&
    spawnSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', image]).status ===
      0 &&
    spawnSync('mount', ['-o', 'loop', image, mountPoint]).status === 0;
  if (!created) {
    rmSync(image, { force: true });
    if (!freshFilesystemWarned) {
      freshFilesystemWarned = true;
      console.error(
        '  (no fresh ext4 filesystem per run: mkfs.ext4 or a loop mount failed; rows run in the work directory)',
      );
    }
    return undefined;
  }
  mkdirSync(join(mountPoint, 'destination'));
  return {
    remove() {
      spawnSync('umount', [mountPoint]);
      rmSync(image, { force: true });
    },
  };
}
const freshFilesystemGiB = 8;
let freshFilesystemWarned = false;

/**
 * The start-up floors, beside the start-up rows: a process that does nothing (`node -e 0`, the least any
 * Node.js program costs), Gantry's command printing its version (Node loading the bundle, no work), and
 * skopeo doing the same. Alternating, at least 5 runs each; medians.
 *
 * `node -e 0` runs as bin/gantry runs Node: without NODE_EXTRA_CA_CERTS (the launcher hands the variable
 * over and Gantry reads the certificates on its first verified TLS connection), since Node parses every
 * certificate the variable names before any JavaScript runs. Where the variable is set, the same process
 * with it is measured too, to show what the launcher saves.
 */
function measureStartupFloors() {
  const { NODE_EXTRA_CA_CERTS: extraCaCerts, ...environmentWithoutExtraCaCerts } = process.env;
  const commands = [
    {
      name: 'node-empty',
      description:
        'node -e 0 (the least a Node.js program costs; run as bin/gantry runs Node, without NODE_EXTRA_CA_CERTS)',
      command: process.execPath,
      args: ['-e', '0'],
      env: environmentWithoutExtraCaCerts,
    },
    ...(extraCaCerts
      ? [
          {
            name: 'node-empty-extra-ca-certs',
            description:
              'node -e 0 with NODE_EXTRA_CA_CERTS set (Node parses the bundle before any JavaScript)',
            command: process.execPath,
            args: ['-e', '0'],
          },
        ]
      : []),
    {
      name: 'gantry-version',
      description: 'gantry --version (Node loading the bundle, no work)',
      command: gantryLauncher,
      args: ['--version'],
    },
    ...(withSkopeo
      ? [{ name: 'skopeo-version', description: 'skopeo --version', command: 'skopeo', args: ['--version'] }]
      : []),
  ];
  const samples = commands.map(() => []);
  for (let run = 0; run < Math.max(5, runs * 3); run += 1)
    for (const [index, entry] of commands.entries())
      samples[index].push(measure(entry.command, entry.args, { env: entry.env }));
  return commands.map(({ name, description }, index) => ({
    name,
    description,
    ...summarize(samples[index]),
  }));
}

/**
 * The docker-daemon row's floors: `docker load` of the same image from a docker-archive file, so the
 * daemon's own work with no copy tool at all (its time is what any tool's copy into the daemon waits
 * for). Two archives of the same image: the one skopeo writes (uncompressed layers, what skopeo sends
 * the daemon) and the same with each layer file replaced by the registry's gzip blob (what Gantry sends:
 * `docker load` decompresses it). `runs` loads each, alternating, the image removed after each; median
 * wall, and the CPU of the docker command plus the daemon's (read from /proc around the load).
 */
async function measureDockerLoadFloors() {
  const layout = await layoutOf('manyLayers');
  const plainArchive = await dockerArchiveOf('manyLayers');
  const gzipArchive = await gzipLayerArchiveOf(layout, plainArchive);
  const archives = [
    {
      name: 'docker-load',
      description: `docker load of the same image from a docker-archive file, uncompressed layers (dockerd alone, vfs; CPU: docker + dockerd)`,
      path: plainArchive,
    },
    {
      name: 'docker-load-gzip',
      description: `the same with gzip layers in the archive (dockerd decompresses them)`,
      path: gzipArchive,
    },
  ];
  const samples = archives.map(() => []);
  const bytes = layoutBytes(layout);
  const errors = new Map();
  for (let run = 0; run < runs; run += 1) {
    for (const [index, archive] of archives.entries()) {
      if (errors.has(index)) continue;
      try {
        const before = processCpuSeconds(daemon.pid);
        const sample = measure('docker', ['-H', daemon.host, 'load', '-q', '-i', archive.path]);
        const after = processCpuSeconds(daemon.pid);
        sample.cpuSeconds += after - before;
        samples[index].push(sample);
      } catch (error) {
        errors.set(index, error.message);
      } finally {
        daemon.docker('image', 'rm', '-f', 'bench/manylayers:v1');
      }
    }
  }
  return archives.map((archive, index) => {
    if (errors.has(index))
      return { name: archive.name, description: archive.description, bytes, error: errors.get(index) };
    const summary = summarize(samples[index]);
    return {
      name: archive.name,
      description: archive.description,
      bytes,
      seconds: summary.medianSeconds,
      cpuSeconds: summary.medianCpuSeconds,
      peakMiB: summary.peakMiB,
      runs: samples[index].length,
    };
  });
}

/**
 * `plainArchive` (skopeo's docker-archive of `layout`) with each layer file replaced by the layout's gzip
 * blob of the same layer (same names, same manifest.json; `docker load` sniffs the compression). Written
 * once beside the plain one, under a temporary name and renamed.
 */
async function gzipLayerArchiveOf(layout, plainArchive) {
  const archive = plainArchive.replace(/\.tar$/, '.gzip-layers.tar');
  if (existsSync(archive)) return archive;
  const directory = `${archive}.d`;
  rmSync(directory, { recursive: true, force: true });
  await mkdir(directory, { recursive: true });
  execFileSync('tar', ['-xf', plainArchive, '-C', directory]);
  const blob = (digest) => join(layout, 'blobs', 'sha256', digest.slice(7));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0].digest), 'utf8'));
  const config = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8'));
  for (const [position, layer] of manifest.layers.entries()) {
    const layerFile = join(directory, `${config.rootfs.diff_ids[position].slice(7)}.tar`);
    if (!existsSync(layerFile)) throw new Error(`${plainArchive} has no ${layerFile}`);
    execFileSync('cp', [blob(layer.digest), layerFile]);
  }
  const partial = `${archive}.partial`;
  execFileSync('tar', ['--format=ustar', '-cf', partial, '-C', directory, '.']);
  renameSync(partial, archive);
  rmSync(directory, { recursive: true, force: true });
  return archive;
}

const resultRows = [];
const runId = Date.now().toString(36);
let floors = [];
let startupFloors = [];
try {
  for (const row of selectedRows) {
    const rowStartedAt = Date.now();
    const result = { name: row.name, groups: row.groups, description: row.description };
    if (row.target) result.target = row.target;
    if (row.memoryLimitMiB !== undefined) result.memoryLimitMiB = row.memoryLimitMiB;
    if (row.floor) result.referenceName = row.referenceName;
    else if (withSkopeo) result.referenceName = 'skopeo';
    if (row.registry && !row.args && !row.sync)
      result.gantryRuns = gantryRegistryMode === 'library' ? 'library script' : 'cli';
    resultRows.push(result);
    if (rowErrors.has(row.name)) {
      result.error = rowErrors.get(row.name);
      console.error(`  ${row.name}: not run (${result.error.split('\n')[0]})`);
      continue;
    }
    const rowTools = row.floor && !withSkopeo ? [...tools, { name: 'skopeo', command: 'sh' }] : tools;
    const samples = Object.fromEntries(rowTools.map((tool) => [tool.name, []]));
    const nodeFloorSamples = [];
    try {
      for (let run = 0; run < runs; run += 1) {
        for (const tool of rowTools) {
          const outside = join(workDirectory, `out-${tool.name}-${row.name}`);
          unmountUnder(outside);
          await rm(outside, { recursive: true, force: true });
          const freshFilesystem = row.freshFilesystem ? mountFreshFilesystem(outside) : undefined;
          const destination = freshFilesystem ? join(outside, 'destination') : outside;
          const parameters = {
            destination,
            registry: registry?.host,
            sourceRegistry: registry?.host,
            repository: `bench-${runId}/${row.name}-${tool.name}-${run}`,
            daemonHost: daemon?.host,
          };
          // A push goes to a registry of its own, new and empty, on a new port: skopeo's blob info
          // cache (which outlives the process) then knows no repository to mount from.
          const pushRegistry = row.freshRegistry ? await startRegistry('push-registry') : undefined;
          if (pushRegistry) parameters.registry = pushRegistry.host;
          try {
            const { command, args } = await commandFor(tool, row, parameters);
            // The registries' CPU time during the run: on a machine of few cores they share the CPUs
            // with the tool, so (tool CPU + registry CPU) / cores is a floor under the wall time.
            const registries = row.registry ? [registry, pushRegistry].filter(Boolean) : [];
            const registryCpuBefore = registries.reduce((sum, server) => sum + server.cpuSeconds(), 0);
            // Gantry's blob-info cache stays out of the measurements, as skopeo's is defeated by fresh registries.
            const sample = measure(command, args, {
              env: { ...process.env, GANTRY_BLOB_INFO_CACHE: 'off' },
            });
            if (registries.length > 0) {
              sample.registryCpuSeconds =
                registries.reduce((sum, server) => sum + server.cpuSeconds(), 0) - registryCpuBefore;
            }
            samples[tool.name].push(sample);
          } finally {
            await pushRegistry?.stop();
            row.afterRun?.();
            unmountUnder(outside);
            freshFilesystem?.remove();
            await rm(outside, { recursive: true, force: true });
          }
        }
        if (row.nodeFloor && !(row.bulkNodeFloor && flags['no-floors'])) {
          // As bin/gantry starts Node: without NODE_EXTRA_CA_CERTS.
          const { NODE_EXTRA_CA_CERTS: _unused, ...environment } = process.env;
          // A row that writes to a new registry gets one for the floor too.
          const pushRegistry = row.freshRegistry ? await startRegistry('push-registry') : undefined;
          const destination = join(workDirectory, `out-node-floor-${row.name}`);
          await rm(destination, { recursive: true, force: true });
          try {
            const registries = [registry, pushRegistry].filter(Boolean);
            const registryCpuBefore = registries.reduce((sum, server) => sum + server.cpuSeconds(), 0);
            const sample = measure(
              process.execPath,
              row.nodeFloor({
                sourceRegistry: registry.host,
                registry: (pushRegistry ?? registry).host,
                repository: `bench-${runId}/${row.name}-node-floor-${run}`,
                destination,
              }),
              {
                env: environment,
              },
            );
            sample.registryCpuSeconds =
              registries.reduce((sum, server) => sum + server.cpuSeconds(), 0) - registryCpuBefore;
            nodeFloorSamples.push(sample);
          } finally {
            await pushRegistry?.stop();
            await rm(destination, { recursive: true, force: true });
          }
        }
      }
    } catch (error) {
      result.error = error.message;
      console.error(`  ${row.name}: failed: ${error.message.split('\n').slice(0, 3).join(' ')}`);
      continue;
    }
    result.gantry = summarize(samples.gantry, { cores: availableParallelism() });
    if (samples.skopeo) {
      result.reference = summarize(samples.skopeo, { cores: availableParallelism() });
      result.wallRatio = result.gantry.medianSeconds / result.reference.medianSeconds;
      result.cpuRatio = result.gantry.medianCpuSeconds / result.reference.medianCpuSeconds;
    }
    if (nodeFloorSamples.length > 0)
      result.nodeFloor = summarize(nodeFloorSamples, { cores: availableParallelism() });
    if (row.bytes) result.bytes = row.bytes();
    result.elapsedSeconds = (Date.now() - rowStartedAt) / 1000;
    const registryCpu = (summary) =>
      summary.medianRegistryCpuSeconds === undefined
        ? ''
        : `, registry CPU ${summary.medianRegistryCpuSeconds.toFixed(2)} s, CPU floor ${summary.cpuFloorSeconds.toFixed(2)} s`;
    console.error(
      `  ${row.name} (${result.elapsedSeconds.toFixed(0)} s): gantry ${result.gantry.medianSeconds.toFixed(2)} s (CPU ${result.gantry.medianCpuSeconds.toFixed(2)} s, ${result.gantry.peakMiB.toFixed(0)} MiB${registryCpu(result.gantry)})` +
        (result.reference
          ? `, ${result.referenceName === 'skopeo' ? 'skopeo' : 'reference'} ${result.reference.medianSeconds.toFixed(2)} s (CPU ${result.reference.medianCpuSeconds.toFixed(2)} s, ${result.reference.peakMiB.toFixed(0)} MiB${registryCpu(result.reference)})`
          : '') +
        (result.nodeFloor
          ? `, Node.js floor ${result.nodeFloor.medianSeconds.toFixed(2)} s (CPU ${result.nodeFloor.medianCpuSeconds.toFixed(2)} s, ${result.nodeFloor.peakMiB.toFixed(0)} MiB${registryCpu(result.nodeFloor)})`
          : ''),
    );
  }
  if (!flags['no-floors'] && selectedRows.some((row) => row.groups.includes('start-up'))) {
    console.error('Measuring the start-up floors…');
    startupFloors = measureStartupFloors();
  }
  if (!flags['no-floors']) {
    console.error('Measuring the floors…');
    const random = await layoutOf('large');
    const compressible = await layoutOf('recompressGzip');
    const biggestBlob = (layout) => {
      const directory = join(layout, 'blobs', 'sha256');
      return readdirSync(directory)
        .map((name) => ({ name, size: statSync(join(directory, name)).size }))
        .sort((a, b) => b.size - a.size)[0].name;
    };
    const randomBlob = biggestBlob(random);
    if (registry && !pushedNames.has('large')) {
      prepare([
        ...policy,
        'copy',
        '-q',
        '--dest-tls-verify=false',
        `oci:${random}:bench`,
        `docker://${registry.host}/bench/large:v1`,
      ]);
    }
    floors = await measureFloors({
      workDirectory,
      random: join(random, 'blobs', 'sha256', randomBlob),
      compressed: join(compressible, 'blobs', 'sha256', biggestBlob(compressible)),
      registryBlobUrl: registry
        ? `http://${registry.host}/v2/bench/large/blobs/sha256:${randomBlob}`
        : undefined,
    });
  }
  if (!flags['no-floors'] && daemon && runnable().some((row) => row.daemon)) {
    console.error('Measuring the docker load floors…');
    floors.push(...(await measureDockerLoadFloors()));
  }
} finally {
  await registry?.stop();
  await daemon?.stop();
}

/** Numbers computed from pairs of rows. */
const derived = [];
const byName = new Map(resultRows.map((row) => [row.name, row]));
const insecure = byName.get('signed-dir-to-dir-insecure');
const verified = byName.get('signed-dir-to-dir-verified');
if (insecure?.gantry && verified?.gantry) {
  const overhead = (key, tool) => ((verified[tool][key] - insecure[tool][key]) * 1000).toFixed(0);
  derived.push(
    `signature verification (verified − insecure medians): Gantry ${overhead('medianSeconds', 'gantry')} ms wall, ${overhead('medianCpuSeconds', 'gantry')} ms CPU` +
      (verified.reference && insecure.reference
        ? `; skopeo ${overhead('medianSeconds', 'reference')} ms wall, ${overhead('medianCpuSeconds', 'reference')} ms CPU`
        : '') +
      ' (target for Gantry, issue 12: ≤ 50 ms)',
  );
}
const daemonRow = byName.get('registry-to-docker-daemon');
const dockerLoad = floors.find((floor) => floor.name === 'docker-load' && floor.seconds !== undefined);
if (daemonRow?.gantry && dockerLoad) {
  const gzipLoad = floors.find((floor) => floor.name === 'docker-load-gzip' && floor.seconds !== undefined);
  derived.push(
    `registry → docker-daemon beside \`docker load\` of the same image from a file (the daemon alone): ${dockerLoad.seconds.toFixed(2)} s uncompressed layers` +
      (gzipLoad ? `, ${gzipLoad.seconds.toFixed(2)} s gzip layers` : '') +
      `; Gantry ${daemonRow.gantry.medianSeconds.toFixed(2)} s` +
      (daemonRow.reference
        ? `, skopeo ${daemonRow.reference.medianSeconds.toFixed(2)} s, so 0.8 × skopeo = ${(0.8 * daemonRow.reference.medianSeconds).toFixed(2)} s is ${0.8 * daemonRow.reference.medianSeconds < dockerLoad.seconds ? 'below' : 'above'} what the daemon alone needs`
        : ''),
  );
}

const noop = byName.get('sync-registry-tags-noop');
if (noop?.gantry && noop.nodeFloor) {
  const floor = noop.nodeFloor;
  const bar = noop.reference ? 0.3 * noop.reference.medianSeconds : undefined;
  derived.push(
    `no-op re-sync beside the least a Node.js program does for it (apps/bench/src/node-floor-sync-noop.mjs: node:http, a ping, 2 tag lists, 2 HEAD requests per image, 16 images at once; no configuration, no HTTPS probe): ${floor.medianSeconds.toFixed(3)} s wall, CPU ${floor.medianCpuSeconds.toFixed(3)} s + registry ${floor.medianRegistryCpuSeconds.toFixed(3)} s; Gantry ${noop.gantry.medianSeconds.toFixed(3)} s (CPU ${noop.gantry.medianCpuSeconds.toFixed(3)} s)` +
      (bar !== undefined
        ? `, skopeo ${noop.reference.medianSeconds.toFixed(3)} s, so 0.3 × skopeo = ${bar.toFixed(3)} s is ${bar < floor.medianSeconds ? 'below' : 'above'} what Node.js alone needs`
        : ''),
  );
}

for (const [rowName, floorScript, what, withRegistries = false, withCpuFloor = false] of [
  [
    'inspect-docker',
    'node-floor-inspect.mjs',
    'node:http, ping, manifest, config and tag list; no configuration, no HTTPS probe',
  ],
  [
    'sync-registry-tags',
    'node-floor-sync.mjs',
    'node:http, 2 pings, 2 tag lists, per image a manifest GET, per blob not yet sent a GET, a POST and a PUT with the bytes, the manifest PUT, 4 images at once; no configuration, no signatures, blobs whole in memory',
    true,
  ],
  [
    'oci-to-registry-repush',
    'node-floor-repush.mjs',
    'node:http, ping, a HEAD per blob, the manifest PUT; no configuration, no verification',
  ],
  [
    'registry-to-registry-mount',
    'node-floor-mount.mjs',
    'node:http, ping, the manifest GET, a mount per blob, the manifest PUT; no configuration, no verification',
  ],
  ...['registry-to-oci-many-layers', 'registry-to-oci-compressible'].map((rowName) => [
    rowName,
    'node-floor-pull-oci.mjs',
    'the manifest GET, then the config and the layers 6 at a time over a raw HTTP/1.1 client on node:net reading into pooled buffers, each streamed to a file with its SHA-256 and size checked before the rename; index.json, oci-layout; no configuration, no ping',
    true,
    true,
  ]),
  [
    'registry-to-docker-archive',
    'node-floor-pull-archive.mjs',
    'the manifest and config GETs, a 4-byte range GET per layer for its gzip trailer (the uncompressed size), then the layers 6 at a time over a raw HTTP/1.1 client on node:net, gunzipped (node:zlib) straight to their place in the tar with positional writes, digest, DiffID and sizes checked before the rename; no configuration, no ping',
    true,
    true,
  ],
  [
    'registry-to-registry-copy',
    'node-floor-registry-copy.mjs',
    'the manifest GET, then per blob, 6 at a time: a GET over a raw HTTP/1.1 client on node:net streamed into one PATCH (node:http, Content-Length), its SHA-256 checked before the PUT ?digest=; the manifest PUT; no configuration, no ping, no existence checks',
    true,
    true,
  ],
  ...['oci-to-registry-many-layers', 'oci-to-registry-large'].map((rowName) => [
    rowName,
    'node-floor-push.mjs',
    'per blob, 6 at a time: POST, one PATCH (node:http, Content-Length) streaming the file through pooled read buffers with its SHA-256 checked on the way, PUT ?digest=; the manifest PUT; no configuration, no ping, no existence checks',
    true,
    true,
  ]),
]) {
  const row = byName.get(rowName);
  if (!row?.gantry || !row.nodeFloor) continue;
  const floor = row.nodeFloor;
  const bar = row.reference && row.target ? row.target.ratio * row.reference.medianSeconds : undefined;
  // Where the registries share the CPUs with the program: their CPU time beside it.
  // Bulk rows: that CPU spread over the cores too, the least wall time the run could take (the wall
  // times of a loaded machine say more about the load).
  const registriesOf = (summary) =>
    withRegistries && summary.medianRegistryCpuSeconds !== undefined
      ? ` + registries ${summary.medianRegistryCpuSeconds.toFixed(3)} s` +
        (withCpuFloor && summary.cpuFloorSeconds !== undefined
          ? `, ÷ ${availableParallelism()} cores = ${summary.cpuFloorSeconds.toFixed(3)} s`
          : '')
      : '';
  derived.push(
    `${rowName} beside the least a Node.js program does for it (apps/bench/src/${floorScript}: ${what}): ${floor.medianSeconds.toFixed(3)} s wall, CPU ${floor.medianCpuSeconds.toFixed(3)} s${registriesOf(floor)}; Gantry ${row.gantry.medianSeconds.toFixed(3)} s (CPU ${row.gantry.medianCpuSeconds.toFixed(3)} s${registriesOf(row.gantry)})` +
      (bar !== undefined
        ? `, skopeo ${row.reference.medianSeconds.toFixed(3)} s, so ${row.target.ratio} × skopeo = ${bar.toFixed(3)} s is ${bar < floor.medianSeconds ? 'below' : 'above'} what Node.js alone needs`
        : ''),
  );
}

const results = {
  schema: 1,
  quick,
  runs,
  startedAt: startedAt.toISOString(),
  durationSeconds: (Date.now() - startedAt.getTime()) / 1000,
  gantryRegistryMode,
  machine: {
    cores: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: totalmem() / 1024 ** 3,
    kernel: `${type()} ${release()}`,
    node: process.version,
    gantry: gantryVersion,
    commit,
    skopeo: skopeoVersion,
    loadAverageStart,
    loadAverageEnd: loadavg(),
  },
  rowsInBenchmark: rows.length,
  rows: resultRows,
  derived,
  floors,
  startupFloors,
};
await mkdir(dirname(resultsPath), { recursive: true });
await writeFile(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
await writeReport(results);
console.error(`Wrote ${resultsPath}, ${reportPath} and ${chartPath}`);
if (!flags['work-dir']) await rm(workDirectory, { recursive: true, force: true });
process.exitCode = resultRows.some((row) => row.error) ? 1 : 0;
