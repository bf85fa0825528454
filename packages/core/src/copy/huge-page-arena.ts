import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/**
 * Memory in transparent huge pages for buffers that are read into again and again (the socket read
 * buffers of `socketReadBuffers`).
 *
 * A fresh buffer's memory is mapped by the kernel page by page as it is first written: for a registry
 * pull's ~20 MiB of read buffers that is ~5,000 page faults, each costing ~13 µs on the paravirtualized
 * 2-core machine the benchmarks run on (~65 ms of the main thread's CPU, as the kernel copies socket
 * reads into them). Memory the kernel is asked to back with huge pages (`madvise(MADV_HUGEPAGE)`, 2 MiB
 * aligned) is mapped 2 MiB per fault instead: 20 MiB in ~3 ms. Linux offers that when
 * `/sys/kernel/mm/transparent_hugepage/enabled` says `always` or `madvise`; Node.js has no call for it,
 * so it is asked through koffi (libc's `madvise`), as `allocator.ts` asks for `mallopt`.
 *
 * An arena is one such region, reserved on the first `take` and handed out in buffers by a bump
 * allocator (each aligned to its size): its memory is never given back while the process lives, so it is
 * only for buffers that are kept and reused (a pool's idle ones); a buffer the garbage collector would
 * otherwise free stays part of the arena, which bounds what it can hold on to by the arena's size. Pages
 * the kernel could not back with a huge page stay ordinary pages. `GANTRY_HUGE_PAGES=off` turns arenas
 * off (buffers then come from `Buffer.allocUnsafeSlow`, as everywhere else).
 */

/** The size of a transparent huge page (x86-64, and arm64 with 4 KiB pages). */
export const hugePageBytes = 2 * 1024 * 1024;

/** Linux's `MADV_HUGEPAGE`. */
const madviseHugePage = 14;

/** What an arena needs of the system. */
export interface HugePageSystem {
  /** The address of `buffer`'s first byte. */
  address(buffer: Uint8Array): number;
  /** `madvise(address, length, MADV_HUGEPAGE)`; true when the kernel took it. */
  adviseHugePages(address: number, length: number): boolean;
}

interface KoffiModule {
  load(path: string): { func(signature: string): (...args: unknown[]) => unknown };
  address(value: unknown): bigint | number;
}

/** Whether the kernel backs memory with transparent huge pages when asked (`always` or `madvise`). */
function transparentHugePagesOffered(): boolean {
  try {
    const setting = readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');
    return setting.includes('[always]') || setting.includes('[madvise]');
  } catch {
    return false;
  }
}

/**
 * The system's huge pages through koffi and glibc's `madvise`, or undefined where they cannot be had:
 * not Linux, transparent huge pages off, no koffi or no glibc, or `GANTRY_HUGE_PAGES=off`.
 */
export function loadHugePageSystem(environment: NodeJS.ProcessEnv = process.env): HugePageSystem | undefined {
  if (environment.GANTRY_HUGE_PAGES === 'off' || process.platform !== 'linux') return undefined;
  if (!transparentHugePagesOffered()) return undefined;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as KoffiModule;
    const madvise = koffi
      .load('libc.so.6')
      .func('int madvise(uintptr_t addr, size_t length, int advice)') as (
      address: number,
      length: number,
      advice: number,
    ) => number;
    return {
      address: (buffer) => Number(koffi.address(buffer)),
      adviseHugePages: (address, length) => madvise(address, length, madviseHugePage) === 0,
    };
  } catch {
    return undefined;
  }
}

/**
 * A region of `bytes` bytes (a multiple of `hugePageBytes`) in huge pages where the system offers them,
 * handed out by `take` in buffers of `granule`-byte multiples (see the module comment). `slotOf` tells
 * which granule of the arena a view starts in.
 */
export class HugePageArena {
  #memory: Buffer | undefined;
  /** Where the 2 MiB-aligned region starts in `#memory`, where the next buffer may start, where it ends. */
  #start = 0;
  #next = 0;
  #end = 0;
  #unavailable = false;

  constructor(
    readonly bytes: number,
    readonly granule: number,
    private readonly system: () => HugePageSystem | undefined = loadHugePageSystem,
  ) {
    if (bytes % hugePageBytes !== 0 || hugePageBytes % granule !== 0) {
      throw new RangeError('an arena is whole huge pages of whole granules');
    }
  }

  /** Granules in the arena. */
  get granules(): number {
    return this.bytes / this.granule;
  }

  /**
   * A buffer of `size` bytes (a multiple of `granule`, at most a huge page) in the arena, aligned to its
   * size; undefined when the arena is full or the system has no huge pages to offer.
   */
  take(size: number): Buffer | undefined {
    if (size <= 0 || size % this.granule !== 0 || size > hugePageBytes) return undefined;
    const memory = this.#memory ?? this.#reserve();
    if (memory === undefined) return undefined;
    const offset = this.#start + Math.ceil((this.#next - this.#start) / size) * size;
    if (offset + size > this.#end) return undefined;
    this.#next = offset + size;
    return memory.subarray(offset, offset + size);
  }

  /** The granule of the arena that `view`'s first byte lies in, or -1 for other memory. */
  slotOf(view: Uint8Array): number {
    const memory = this.#memory;
    if (memory === undefined || view.buffer !== memory.buffer) return -1;
    const offset = view.byteOffset - memory.byteOffset - this.#start;
    if (offset < 0 || offset >= this.bytes) return -1;
    return Math.floor(offset / this.granule);
  }

  #reserve(): Buffer | undefined {
    if (this.#unavailable) return undefined;
    const system = this.system();
    if (system !== undefined) {
      // One huge page more than asked for: the region starts at the first 2 MiB boundary in it.
      const memory = Buffer.allocUnsafeSlow(this.bytes + hugePageBytes);
      const address = system.address(memory);
      const start = (hugePageBytes - (address % hugePageBytes)) % hugePageBytes;
      if (system.adviseHugePages(address + start, this.bytes)) {
        this.#memory = memory;
        this.#start = start;
        this.#next = start;
        this.#end = start + this.bytes;
        return memory;
      }
    }
    this.#unavailable = true;
    return undefined;
  }
}
