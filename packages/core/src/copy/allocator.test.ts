import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fullGarbageCollection } from './buffer-pool.js';

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

/** Whether this kernel gives transparent huge pages to memory that asks for them (`madvise`). */
function transparentHugePages(): boolean {
  try {
    return /\[(always|madvise)\]/.test(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'latin1'));
  } catch {
    return false;
  }
}

describe('hugePageBuffer', () => {
  const available =
    process.platform === 'linux' &&
    (process.arch === 'x64' || process.arch === 'arm64') &&
    transparentHugePages();

  it('is off with GANTRY_HUGE_PAGES=off', async () => {
    vi.stubEnv('GANTRY_HUGE_PAGES', 'off');
    const { hugePageBuffer } = await freshModule();
    expect(hugePageBuffer(1024 * 1024)).toBeUndefined();
  });

  it('hands out separate, page-aligned buffers of their own memory until the region is full', async () => {
    vi.stubEnv('GANTRY_HUGE_PAGES', undefined);
    const { hugePageBuffer, hugePageRegionBytes } = await freshModule();
    const first = hugePageBuffer(1024 * 1024);
    if (!available) {
      expect(first).toBeUndefined();
      return;
    }
    const buffers = [first!];
    for (;;) {
      const buffer = hugePageBuffer(1024 * 1024 + 1);
      if (buffer === undefined) break;
      buffers.push(buffer);
    }
    // Each a whole ArrayBuffer of its own (pools recognise their buffers by that), page-rounded in the region.
    expect(buffers).toHaveLength(1 + Math.floor((hugePageRegionBytes - 1024 * 1024) / (1024 * 1024 + 4096)));
    for (const [index, buffer] of buffers.entries()) {
      expect(buffer.byteOffset).toBe(0);
      expect(buffer.buffer.byteLength).toBe(buffer.byteLength);
      buffer.fill(index);
    }
    for (const [index, buffer] of buffers.entries()) {
      expect(buffer[0]).toBe(index);
      expect(buffer[buffer.byteLength - 1]).toBe(index);
    }
    expect(hugePageBuffer(2 * 1024 * 1024)).toBeUndefined();
  });

  it('touches its memory 2 MiB at a time, and reuses the places of collected buffers', async () => {
    vi.stubEnv('GANTRY_HUGE_PAGES', undefined);
    const { hugePageBuffer } = await freshModule();
    const collect = fullGarbageCollection();
    if (!available || collect === undefined) return;
    /** How many of `count` 1 MiB buffers the region hands out, written and dropped at once. */
    const takeAndDrop = (count: number): number => {
      let taken = 0;
      for (let index = 0; index < count; index++) {
        const buffer = hugePageBuffer(1024 * 1024);
        if (buffer === undefined) continue;
        buffer.fill(1);
        taken += 1;
      }
      return taken;
    };
    const before = process.resourceUsage().minorPageFault;
    expect(takeAndDrop(16)).toBe(16);
    // 16 MiB in 4 KiB pages would be 4,096 faults.
    expect(process.resourceUsage().minorPageFault - before).toBeLessThan(1024);
    // The region holds 23 such buffers: without the places of the 16 collected ones, it runs out.
    let handedOut = 0;
    for (let round = 0; round < 3; round++) {
      for (let attempt = 0; attempt < 10; attempt++) {
        collect();
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      handedOut += takeAndDrop(16);
    }
    expect(handedOut).toBe(48);
  });
});
