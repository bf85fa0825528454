import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// End to end: `bench.mjs --quick` measures real runs of the built gantry CLI and of skopeo (small data,
// one run each) and writes results.json, the Markdown report and its chart. Speed is not asserted:
// only that every number was measured and reported.
const bench = resolve(import.meta.dirname, 'bench.mjs');
let directory: string;

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gantry-bench-test-'));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

function runBench(...args: string[]) {
  return spawnSync(process.execPath, [bench, ...args], { encoding: 'utf8', timeout: 600_000 });
}

/** The machine may be loaded (CI, other work): a quick run takes seconds alone, minutes when shared. */
const benchTimeoutMs = 600_000;

const positive = (value: unknown) => typeof value === 'number' && Number.isFinite(value) && value > 0;

describe('pnpm bench --quick', () => {
  it(
    'measures gantry against skopeo alternately and writes the results, the report and its chart',
    () => {
      const output = join(directory, 'with-skopeo');
      const run = runBench(
        '--quick',
        '--rows',
        'oci-to-oci-large,registry-to-oci-many-layers,recompress-zstd-to-gzip',
        '--runs',
        '2',
        '--output-dir',
        output,
        '--work-dir',
        join(directory, 'work'),
      );
      expect(run.stderr).toContain('Wrote');
      expect(run.status).toBe(0);
      const results = JSON.parse(readFileSync(join(output, 'bench', 'results.json'), 'utf8'));
      expect(results.quick).toBe(true);
      expect(results.machine.cores).toBeGreaterThan(0);
      expect(results.machine.node).toBe(process.version);
      expect(results.machine.skopeo).toMatch(/^skopeo version /);
      expect(results.rows.map((row: { name: string }) => row.name)).toEqual([
        'oci-to-oci-large',
        'registry-to-oci-many-layers',
        'recompress-zstd-to-gzip',
      ]);
      for (const row of results.rows) {
        expect(row.error).toBeUndefined();
        for (const tool of [row.gantry, row.reference]) {
          expect(tool.samples).toHaveLength(2);
          for (const key of ['medianSeconds', 'medianCpuSeconds', 'peakMiB'])
            expect(positive(tool[key])).toBe(true);
        }
        expect(row.referenceName).toBe('skopeo');
        expect(row.wallRatio).toBeCloseTo(row.gantry.medianSeconds / row.reference.medianSeconds, 10);
        expect(row.cpuRatio).toBeCloseTo(row.gantry.medianCpuSeconds / row.reference.medianCpuSeconds, 10);
        expect(positive(row.bytes)).toBe(true);
      }
      // Registry rows measure the registries' CPU time beside the tools' (in clock ticks: a quick
      // run's may round to 0) and the floor it sets: (tool + registry CPU) / cores.
      const registryRow = results.rows.find(
        (row: { name: string }) => row.name === 'registry-to-oci-many-layers',
      );
      for (const tool of [registryRow.gantry, registryRow.reference]) {
        expect(tool.medianRegistryCpuSeconds).toBeGreaterThanOrEqual(0);
        expect(positive(tool.cpuFloorSeconds)).toBe(true);
      }
      expect(results.rows[0].gantry.medianRegistryCpuSeconds).toBeUndefined();
      // The bulk pull's Node.js floor ran in the same runs, with the registry's CPU beside it.
      expect(registryRow.nodeFloor.samples).toHaveLength(2);
      for (const key of ['medianSeconds', 'medianCpuSeconds', 'medianRegistryCpuSeconds'])
        expect(positive(registryRow.nodeFloor[key])).toBe(true);
      const pullFloor = results.derived.find((line: string) =>
        line.startsWith('registry-to-oci-many-layers beside the least a Node.js program does for it'),
      );
      expect(pullFloor).toContain('node-floor-pull-oci.mjs');
      expect(pullFloor).toContain(`${registryRow.nodeFloor.medianSeconds.toFixed(3)} s wall`);
      expect(pullFloor).toContain(
        `registries ${registryRow.nodeFloor.medianRegistryCpuSeconds.toFixed(3)} s`,
      );
      expect(pullFloor).toContain(
        `so 0.8 × skopeo = ${(0.8 * registryRow.reference.medianSeconds).toFixed(3)} s is`,
      );
      const floorNames = results.floors.map((floor: { name: string }) => floor.name);
      expect(floorNames).toEqual(
        expect.arrayContaining([
          'sha256-node',
          'sha256sum',
          'file-copy',
          'http-loopback',
          'http-registry',
          'gunzip-node',
          'gunzip-gzip',
          'gzip-node',
          'gzip-gzip',
        ]),
      );
      for (const floor of results.floors) {
        expect(floor.error).toBeUndefined();
        expect(positive(floor.seconds) && positive(floor.bytes)).toBe(true);
      }
      const markdown = readFileSync(join(output, 'docs', 'benchmarks.md'), 'utf8');
      expect(markdown).toContain('**Quick mode**');
      for (const row of results.rows) expect(markdown).toContain(`| ${row.name} |`);
      expect(markdown).toContain('![Gantry ÷ reference per row](benchmarks.svg)');
      const svg = readFileSync(join(output, 'docs', 'benchmarks.svg'), 'utf8');
      for (const row of results.rows) expect(svg).toContain(`>${row.name}</text>`);

      // --report-only renders the same report again from the saved results.
      const again = runBench('--report-only', '--output-dir', output);
      expect(again.status).toBe(0);
      expect(readFileSync(join(output, 'docs', 'benchmarks.md'), 'utf8')).toBe(markdown);
    },
    benchTimeoutMs,
  );

  it(
    'measures docker load of the same image from a file beside the docker-daemon row (the daemon alone)',
    () => {
      const output = join(directory, 'daemon');
      const run = runBench(
        '--quick',
        '--rows',
        'registry-to-docker-daemon',
        '--runs',
        '1',
        '--output-dir',
        output,
        '--work-dir',
        join(directory, 'work'),
      );
      expect(run.stderr).toContain('Measuring the docker load floors');
      expect(run.status).toBe(0);
      const results = JSON.parse(readFileSync(join(output, 'bench', 'results.json'), 'utf8'));
      const [row] = results.rows;
      expect(row.name).toBe('registry-to-docker-daemon');
      expect(row.error).toBeUndefined();
      const loads = results.floors.filter((floor: { name: string }) => floor.name.startsWith('docker-load'));
      expect(loads.map((floor: { name: string }) => floor.name)).toEqual(['docker-load', 'docker-load-gzip']);
      for (const floor of loads) {
        expect(floor.error).toBeUndefined();
        expect(floor.runs).toBe(1);
        expect(positive(floor.seconds) && positive(floor.cpuSeconds)).toBe(true);
        expect(floor.bytes).toBe(row.bytes);
      }
      const derived = results.derived.find((line: string) => line.includes('docker load'));
      expect(derived).toContain(`${loads[0].seconds.toFixed(2)} s uncompressed layers`);
      expect(derived).toContain(`skopeo ${row.reference.medianSeconds.toFixed(2)} s`);
      const markdown = readFileSync(join(output, 'docs', 'benchmarks.md'), 'utf8');
      expect(markdown).toContain('docker load of the same image from a docker-archive file');
    },
    benchTimeoutMs,
  );

  it(
    'measures the least a Node.js program does for the no-op re-sync in the same runs, as a derived line',
    () => {
      const output = join(directory, 'sync-noop');
      const run = runBench(
        '--quick',
        '--rows',
        'sync-registry-tags-noop',
        '--runs',
        '2',
        '--no-floors',
        '--output-dir',
        output,
        '--work-dir',
        join(directory, 'work'),
      );
      expect(run.status, run.stderr).toBe(0);
      const results = JSON.parse(readFileSync(join(output, 'bench', 'results.json'), 'utf8'));
      const [row] = results.rows;
      expect(row.name).toBe('sync-registry-tags-noop');
      expect(row.error).toBeUndefined();
      expect(row.nodeFloor.samples).toHaveLength(2);
      for (const key of ['medianSeconds', 'medianCpuSeconds', 'medianRegistryCpuSeconds'])
        expect(positive(row.nodeFloor[key])).toBe(true);
      const derived = results.derived.find((line: string) => line.startsWith('no-op re-sync'));
      expect(derived).toContain(`${row.nodeFloor.medianSeconds.toFixed(3)} s wall`);
      expect(derived).toContain(`skopeo ${row.reference.medianSeconds.toFixed(3)} s`);
      const markdown = readFileSync(join(output, 'docs', 'benchmarks.md'), 'utf8');
      expect(markdown).toContain('no-op re-sync beside the least a Node.js program does for it');
    },
    benchTimeoutMs,
  );

  it(
    'measures the least a Node.js program does for the mounts to a new repository in the same runs, as a derived line',
    () => {
      const output = join(directory, 'mount');
      const run = runBench(
        '--quick',
        '--rows',
        'registry-to-registry-mount',
        '--runs',
        '2',
        '--no-floors',
        '--output-dir',
        output,
        '--work-dir',
        join(directory, 'work'),
      );
      expect(run.status, run.stderr).toBe(0);
      const results = JSON.parse(readFileSync(join(output, 'bench', 'results.json'), 'utf8'));
      const [row] = results.rows;
      expect(row.name).toBe('registry-to-registry-mount');
      expect(row.error).toBeUndefined();
      expect(row.nodeFloor.samples).toHaveLength(2);
      for (const key of ['medianSeconds', 'medianCpuSeconds', 'medianRegistryCpuSeconds'])
        expect(positive(row.nodeFloor[key])).toBe(true);
      const derived = results.derived.find((line: string) =>
        line.startsWith('registry-to-registry-mount beside'),
      );
      expect(derived).toContain(`${row.nodeFloor.medianSeconds.toFixed(3)} s wall`);
      expect(derived).toContain(`skopeo ${row.reference.medianSeconds.toFixed(3)} s`);
    },
    benchTimeoutMs,
  );

  it(
    'measures the least a Node.js program does for a sync into a new registry in the same runs, as a derived line',
    () => {
      const output = join(directory, 'sync-floor');
      const run = runBench(
        '--quick',
        '--rows',
        'sync-registry-tags',
        '--runs',
        '2',
        '--no-floors',
        '--output-dir',
        output,
        '--work-dir',
        join(directory, 'work'),
      );
      expect(run.status, run.stderr).toBe(0);
      const results = JSON.parse(readFileSync(join(output, 'bench', 'results.json'), 'utf8'));
      const [row] = results.rows;
      expect(row.name).toBe('sync-registry-tags');
      expect(row.error).toBeUndefined();
      expect(row.nodeFloor.samples).toHaveLength(2);
      for (const key of ['medianSeconds', 'medianCpuSeconds', 'medianRegistryCpuSeconds'])
        expect(positive(row.nodeFloor[key])).toBe(true);
      const derived = results.derived.find((line: string) => line.startsWith('sync-registry-tags beside'));
      expect(derived).toContain(`${row.nodeFloor.medianSeconds.toFixed(3)} s wall`);
      expect(derived).toContain(`registries ${row.nodeFloor.medianRegistryCpuSeconds.toFixed(3)} s`);
      expect(derived).toContain(`skopeo ${row.reference.medianSeconds.toFixed(3)} s`);
    },
    benchTimeoutMs,
  );

  it(
    "leaves the bulk rows' Node.js floors out with --no-floors",
    () => {
      const output = join(directory, 'no-bulk-floors');
      const run = runBench(
        '--quick',
        '--no-floors',
        '--rows',
        'oci-to-registry-many-layers',
        '--runs',
        '1',
        '--output-dir',
        output,
        '--work-dir',
        join(directory, 'work'),
      );
      expect(run.status, run.stderr).toBe(0);
      const results = JSON.parse(readFileSync(join(output, 'bench', 'results.json'), 'utf8'));
      const [row] = results.rows;
      expect(row.error).toBeUndefined();
      expect(positive(row.gantry.medianSeconds)).toBe(true);
      expect(row.nodeFloor).toBeUndefined();
      expect(results.derived.some((line: string) => line.includes('node-floor-push.mjs'))).toBe(false);
    },
    benchTimeoutMs,
  );

  it(
    'runs gantry alone with --no-skopeo',
    () => {
      const output = join(directory, 'alone');
      const run = runBench(
        '--quick',
        '--no-skopeo',
        '--no-floors',
        '--rows',
        'oci-to-oci-large',
        '--output-dir',
        output,
        '--work-dir',
        join(directory, 'work'),
      );
      expect(run.status).toBe(0);
      const results = JSON.parse(readFileSync(join(output, 'bench', 'results.json'), 'utf8'));
      expect(results.machine.skopeo).toBeNull();
      const [row] = results.rows;
      expect(positive(row.gantry.medianCpuSeconds)).toBe(true);
      expect(row.reference).toBeUndefined();
      expect(row.wallRatio).toBeUndefined();
      expect(readFileSync(join(output, 'docs', 'benchmarks.md'), 'utf8')).toContain(
        'no skopeo (Gantry alone)',
      );
    },
    benchTimeoutMs,
  );

  it(
    'refuses an unknown row, naming it, before doing anything',
    () => {
      const output = join(directory, 'unknown');
      const run = runBench('--quick', '--rows', 'oci-to-oci-large,no-such-row', '--output-dir', output);
      expect(run.status).toBe(2);
      expect(run.stderr).toContain('no row or group named no-such-row');
      expect(existsSync(join(output, 'bench'))).toBe(false);
    },
    benchTimeoutMs,
  );
});
