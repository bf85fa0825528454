#!/usr/bin/env node
// Gantry side by side with skopeo, on the same images, on this machine.
//
// Each scenario runs each tool `--runs` times (default 3) under GNU time and reports the median wall
// time and the peak resident memory. Images are built with Gantry's deterministic fixture builder; no
// network is used. Results go to stdout as a table and to bench-results.json.
//
// The registry scenarios run against one real registry (Debian's docker-registry, CNCF Distribution)
// started for the benchmark on a free 127.0.0.1 port with its own storage, stopped at the end. Both
// tools get the same images in the same state: pushes and mounts go to a new repository each run,
// pulls read and re-pushes write an image pushed (by skopeo) before any measurement.
//
//   pnpm bench [-- --runs 5 --layer-mib 1024 --work-dir /var/tmp/gantry-bench --only oci-to-dir-large]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildFixtureImage, writeFixtureToOciLayout } from '@gantry/core/testing';

const here = dirname(fileURLToPath(import.meta.url));
const gantryBin = resolve(here, '../../cli/dist/bin.js');
const gantryLibraryCopy = resolve(here, 'gantry-library-copy.mjs');
const registryBinary = process.env.GANTRY_TEST_REGISTRY_BINARY ?? '/usr/bin/docker-registry';

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    'layer-mib': { type: 'string', default: '1024' },
    'work-dir': { type: 'string' },
    only: { type: 'string' },
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

/** Runs a command under GNU time; returns wall seconds and peak RSS in MiB. Throws on failure. */
function measure(command, args) {
  const result = spawnSync('/usr/bin/time', ['-f', '%e %M', command, ...args], { encoding: 'utf8' });
  const lines = result.stderr.trim().split('\n');
  const last = lines.at(-1) ?? '';
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (exit ${result.status}):\n${result.stderr}`);
  }
  const [wall, maxKiB] = last.split(' ').map(Number);
  return { seconds: wall, peakMiB: maxKiB / 1024 };
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

console.error(`Building benchmark images in ${workDirectory} (a ${largeLayerMiB} MiB layer takes a while)…`);
const layouts = {
  large: await makeLayout(`large-${largeLayerMiB}`, {
    format: 'oci',
    layers: [randomFileLayer(largeLayerMiB, 'large')],
  }),
  quarter: await makeLayout(`quarter-${Math.max(1, largeLayerMiB >> 2)}`, {
    format: 'oci',
    layers: [randomFileLayer(Math.max(1, largeLayerMiB >> 2), 'quarter')],
  }),
  manyLayers: await makeLayout('many-layers', {
    format: 'oci',
    layers: Array.from({ length: 16 }, (_, index) => randomFileLayer(16, `layer-${index}`)),
  }),
};

const policy = ['--insecure-policy'];
const scenarios = [
  {
    name: 'oci-to-dir-large',
    description: `oci → dir, one ${largeLayerMiB} MiB layer`,
    args: (destination) => [...policy, 'copy', '-q', `oci:${layouts.large}:bench`, `dir:${destination}`],
    memoryCheck: true,
  },
  {
    name: 'oci-to-dir-quarter',
    description: `oci → dir, one ${Math.max(1, largeLayerMiB >> 2)} MiB layer (memory vs layer size)`,
    args: (destination) => [...policy, 'copy', '-q', `oci:${layouts.quarter}:bench`, `dir:${destination}`],
    memoryCheck: true,
  },
  {
    name: 'oci-to-oci-many-layers',
    description: 'oci → oci, 16 layers of 16 MiB',
    args: (destination) => [
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
    args: (destination) => [...policy, 'copy', '-q', `oci:${layouts.manyLayers}:bench`, `dir:${destination}`],
  },
  {
    name: 'inspect-oci',
    description: `inspect oci: (${largeLayerMiB} MiB layer image)`,
    args: () => [...policy, 'inspect', `oci:${layouts.large}:bench`],
  },
].filter((scenario) => !flags.only || flags.only.split(',').includes(scenario.name));

const tools = [
  { name: 'gantry', command: process.execPath, prefix: [gantryBin] },
  { name: 'skopeo', command: 'skopeo', prefix: [] },
];

const results = [];
let memoryFailures = 0;
for (const scenario of scenarios) {
  const row = { scenario: scenario.name, description: scenario.description };
  for (const tool of tools) {
    const samples = [];
    for (let run = 0; run < runs; run += 1) {
      const destination = join(workDirectory, `out-${tool.name}-${scenario.name}`);
      await rm(destination, { recursive: true, force: true });
      samples.push(measure(tool.command, [...tool.prefix, ...scenario.args(destination)]));
      await rm(destination, { recursive: true, force: true });
    }
    row[tool.name] = {
      medianSeconds: median(samples.map((sample) => sample.seconds)),
      peakMiB: Math.max(...samples.map((sample) => sample.peakMiB)),
      samples,
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

const pad = (value, width) => String(value).padEnd(width);
console.log(`Gantry vs ${skopeoVersion}; ${runs} runs each; median wall time, peak RSS`);
console.log(
  `${pad('scenario', 28)}${pad('gantry s', 10)}${pad('skopeo s', 10)}${pad('ratio', 8)}${pad('gantry MiB', 12)}${pad('skopeo MiB', 12)}memory`,
);
for (const row of results) {
  console.log(
    `${pad(row.scenario, 28)}${pad(row.gantry.medianSeconds.toFixed(2), 10)}${pad(row.skopeo.medianSeconds.toFixed(2), 10)}${pad(
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
await writeFile(
  join(process.cwd(), 'bench-results.json'),
  `${JSON.stringify({ skopeoVersion, node: process.version, runs, results }, null, 2)}\n`,
);
if (!flags['work-dir']) await rm(workDirectory, { recursive: true, force: true });
process.exitCode = memoryFailures ? 1 : 0;
