import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it, vi } from 'vitest';

const require = createRequire(import.meta.url);

/** Whether this process runs on glibc (the only C library the tuning applies to). */
const onGlibc =
  process.platform === 'linux' &&
  Boolean(
    (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime,
  );

/**
 * The loop the tuning is for, in C terms: `rounds` times, `count` blocks of 1 MiB are allocated,
 * written and all freed (as the chunks of a blob are when a collection finds them dead). Prints the
 * minor page faults it caused.
 */
const allocationLoop = `
const koffi = require(process.env.KOFFI_PATH);
const libc = koffi.load('libc.so.6');
const malloc = libc.func('void *malloc(size_t size)');
const free = libc.func('void free(void *pointer)');
const memset = libc.func('void *memset(void *pointer, int value, size_t size)');
function faultsOfLoop(rounds, count) {
  const before = process.resourceUsage().minorPageFault;
  for (let round = 0; round < rounds; round++) {
    const blocks = [];
    for (let index = 0; index < count; index++) {
      const block = malloc(1024 * 1024);
      memset(block, 1, 1024 * 1024);
      blocks.push(block);
    }
    for (const block of blocks) free(block);
  }
  return process.resourceUsage().minorPageFault - before;
}
`;

const rounds = 10;
const blocksPerRound = 24;
const pagesPerRound = (blocksPerRound * 1024 * 1024) / 4096;

afterEach(() => {
  vi.unstubAllEnvs();
  vi.resetModules();
});

async function freshModule(): Promise<typeof import('./allocator.js')> {
  vi.resetModules();
  return import('./allocator.js');
}

describe('tuneAllocatorForLargeBlobs', () => {
  it('leaves the allocator to the environment when GANTRY_MALLOC_TUNING=off', async () => {
    vi.stubEnv('GANTRY_MALLOC_TUNING', 'off');
    const { tuneAllocatorForLargeBlobs } = await freshModule();
    expect(tuneAllocatorForLargeBlobs()).toBe('left-to-environment');
  });

  it("leaves the allocator to the user's glibc malloc variables", async () => {
    for (const [name, value] of [
      ['MALLOC_MMAP_THRESHOLD_', '1048576'],
      ['MALLOC_TRIM_THRESHOLD_', '1048576'],
      ['GLIBC_TUNABLES', 'glibc.cpu.hwcaps=-AVX512F:glibc.malloc.trim_threshold=1048576'],
    ] as const) {
      vi.unstubAllEnvs();
      vi.stubEnv(name, value);
      const { tuneAllocatorForLargeBlobs } = await freshModule();
      expect(tuneAllocatorForLargeBlobs(), name).toBe('left-to-environment');
    }
  });

  it('without the tuning, the chunk loop faults its memory in again every round (glibc, fresh process)', () => {
    if (!onGlibc) return;
    const faults = Number(
      execFileSync(
        process.execPath,
        [
          '-e',
          `${allocationLoop}\nprocess.stdout.write(String(faultsOfLoop(${rounds}, ${blocksPerRound})));`,
        ],
        {
          env: { PATH: process.env.PATH, KOFFI_PATH: require.resolve('koffi') },
          encoding: 'utf8',
        },
      ),
    );
    // Each round's 24 MiB is given back to the kernel when freed and faulted in by the next round.
    expect(faults).toBeGreaterThan((rounds - 1) * pagesPerRound * 0.9);
  });

  it('tunes glibc so that the chunk loop reuses its memory, once per process', async () => {
    // Other glibc tunables do not count as the user's malloc settings.
    vi.stubEnv('GLIBC_TUNABLES', 'glibc.cpu.hwcaps=-AVX512F');
    for (const name of ['GANTRY_MALLOC_TUNING', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_']) {
      vi.stubEnv(name, undefined);
    }
    const { tuneAllocatorForLargeBlobs } = await freshModule();
    const outcome = tuneAllocatorForLargeBlobs();
    if (!onGlibc) {
      expect(outcome).toBe('unavailable');
      return;
    }
    expect(outcome).toBe('tuned');
    expect(tuneAllocatorForLargeBlobs()).toBe('tuned');
    process.env.KOFFI_PATH = require.resolve('koffi');
    const faultsOfLoop = new Function('require', 'process', `${allocationLoop}\nreturn faultsOfLoop;`)(
      require,
      process,
    ) as (rounds: number, count: number) => number;
    delete process.env.KOFFI_PATH;
    const faults = faultsOfLoop(rounds, blocksPerRound);
    // The first round may fault its memory in; the later ones reuse it.
    expect(faults).toBeLessThan(2 * pagesPerRound);
  });
});
