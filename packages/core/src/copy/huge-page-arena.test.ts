import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HugePageArena, type HugePageSystem, hugePageBytes, loadHugePageSystem } from './huge-page-arena.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A system whose buffers start `misalignment` bytes past a 2 MiB boundary; records what was advised. */
function fakeSystem(misalignment: number, accepts = true) {
  const advised: Array<{ address: number; length: number }> = [];
  const base = 0x7f00_0000_0000 + misalignment;
  const system: HugePageSystem = {
    address: () => base,
    adviseHugePages: (address, length) => {
      advised.push({ address, length });
      return accepts;
    },
  };
  return { system, advised, base };
}

describe('HugePageArena', () => {
  it('hands out buffers aligned to their size from the 2 MiB-aligned region it advised, until full', () => {
    const { system, advised, base } = fakeSystem(4 * KiB);
    let asked = 0;
    const arena = new HugePageArena(2 * hugePageBytes, 128 * KiB, () => {
      asked += 1;
      return system;
    });
    const small = arena.take(128 * KiB)!;
    const large = arena.take(512 * KiB)!;
    expect(asked).toBe(1);
    expect(advised).toEqual([{ address: base + hugePageBytes - 4 * KiB, length: 2 * hugePageBytes }]);
    // The region starts at the first 2 MiB boundary of the memory; each buffer is aligned to its size.
    const start = hugePageBytes - 4 * KiB;
    expect(small.byteOffset).toBe(start);
    expect(small.byteLength).toBe(128 * KiB);
    expect(large.buffer).toBe(small.buffer);
    expect(large.byteOffset).toBe(start + 512 * KiB);
    expect(arena.slotOf(small)).toBe(0);
    expect(arena.slotOf(large)).toBe(4);
    expect(arena.slotOf(large.subarray(300 * KiB))).toBe(6);
    expect(arena.slotOf(Buffer.alloc(16))).toBe(-1);
    // Sizes it cannot align within a huge page, or that are no whole granules, are not its.
    expect(arena.take(3 * MiB)).toBeUndefined();
    expect(arena.take(100 * KiB)).toBeUndefined();
    const rest: Buffer[] = [];
    for (let buffer = arena.take(512 * KiB); buffer !== undefined; buffer = arena.take(512 * KiB))
      rest.push(buffer);
    // 4 MiB hold 8 buffers of 512 KiB; two slots went to the first one and the small one.
    expect(rest).toHaveLength(6);
    expect(rest.at(-1)!.byteOffset + 512 * KiB).toBe(start + 2 * hugePageBytes);
    expect(arena.take(128 * KiB)).toBeUndefined();
  });

  it('hands out nothing where the system has no huge pages, asking once', () => {
    let asked = 0;
    const none = new HugePageArena(hugePageBytes, 128 * KiB, () => {
      asked += 1;
      return undefined;
    });
    expect(none.take(128 * KiB)).toBeUndefined();
    expect(none.take(128 * KiB)).toBeUndefined();
    expect(asked).toBe(1);
    const refused = new HugePageArena(hugePageBytes, 128 * KiB, () => fakeSystem(0, false).system);
    expect(refused.take(128 * KiB)).toBeUndefined();
    expect(refused.slotOf(Buffer.alloc(16))).toBe(-1);
  });

  it('is turned off by GANTRY_HUGE_PAGES=off', () => {
    expect(loadHugePageSystem({ GANTRY_HUGE_PAGES: 'off' })).toBeUndefined();
  });

  const enabled = (() => {
    try {
      return /\[(always|madvise)\]/.test(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'));
    } catch {
      return false;
    }
  })();

  it.skipIf(process.platform !== 'linux' || !enabled)(
    'asks the kernel for huge pages for its region (Linux, koffi)',
    () => {
      const system = loadHugePageSystem({});
      expect(system).toBeDefined();
      const arena = new HugePageArena(hugePageBytes, 512 * KiB);
      const buffers = [arena.take(512 * KiB)!, arena.take(512 * KiB)!];
      for (const [index, buffer] of buffers.entries()) buffer.fill(index + 1);
      expect(buffers[0]![512 * KiB - 1]).toBe(1);
      expect(buffers[1]![0]).toBe(2);
      // The mapping the region lies in carries the kernel's "huge pages advised" flag (VmFlags `hg`).
      const address = system!.address(buffers[0]!);
      expect(address % hugePageBytes).toBe(0);
      const mapping = readFileSync('/proc/self/smaps', 'utf8')
        .split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)
        .find((entry) => {
          const [from, to] = entry
            .split(' ', 1)[0]!
            .split('-')
            .map((hex) => Number.parseInt(hex, 16));
          return from! <= address && address < to!;
        });
      expect(mapping).toMatch(/VmFlags:.* hg/);
    },
  );
});
