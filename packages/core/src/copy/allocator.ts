import { readFileSync } from 'node:fs';
import { loadKoffi } from '../koffi.js';

/**
 * glibc's allocator, set for streaming large blobs (Linux with glibc only, through koffi's `mallopt`).
 *
 * Every chunk of a blob read from a file is a new buffer (Node's file streams read into fresh 1 MiB
 * buffers), freed together with the others when the garbage collector finds them dead. glibc serves a
 * request of 1 MiB from memory mapped for it alone (its `mmap` threshold; raised after a free only up to
 * the freed size) and gives the top of its heap back to the kernel once more than twice that threshold
 * is free there: after each collection the freed chunks' memory goes back to the kernel, and the next
 * chunks fault it in again, page by page. Measured on a 2-core machine: oci → registry of a 1 GiB
 * layer took 41,000 page faults and 2.5 s of CPU, 18,500 and 2.0 s with the memory kept (oci → oci of
 * 1 GiB: 2.27 s → 2.11 s); copies of 16 MiB layers and registry pulls (socket reads of 64 KiB) did not
 * change, nor did peak memory (114 MiB both ways).
 *
 * So before a large blob is streamed the allocator is told to serve requests below 4 MiB from its heap
 * and to keep up to 32 MiB free at the heap's top. Both are process-wide and stay set; memory a
 * collection frees is then reused by the next chunks instead of being unmapped and faulted in again.
 * Not done when the user set glibc's malloc variables (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
 * `GLIBC_TUNABLES` with malloc tunables: theirs apply) or `GANTRY_MALLOC_TUNING=off`; a no-op where
 * koffi or glibc's `mallopt` is missing (other C libraries, other systems).
 */

/** Blobs at least this large (by the manifest's size) have the allocator tuned before they stream. */
export const allocatorTuningMinimumBlobBytes = 64 * 1024 * 1024;

/** Requests smaller than this are served from the heap (glibc's `M_MMAP_THRESHOLD`). */
export const tunedMmapThresholdBytes = 4 * 1024 * 1024;
/** Free memory at the heap's top kept rather than given back (glibc's `M_TRIM_THRESHOLD`). */
export const tunedTrimThresholdBytes = 32 * 1024 * 1024;

// glibc's malloc.h parameter numbers.
const mTrimThreshold = -1;
const mMmapThreshold = -3;

/** What `tuneAllocatorForLargeBlobs` did (the first call decides; later calls return the same). */
export type AllocatorTuning =
  /** `mallopt` took both settings. */
  | 'tuned'
  /** The user's environment sets the allocator, or `GANTRY_MALLOC_TUNING=off`. */
  | 'left-to-environment'
  /** No glibc `mallopt` here (not Linux, another C library, or koffi missing). */
  | 'unavailable';

let outcome: AllocatorTuning | undefined;

/** Whether the environment already chose glibc's allocator settings, or turned the tuning off. */
function environmentDecides(environment: NodeJS.ProcessEnv): boolean {
  if (environment.GANTRY_MALLOC_TUNING === 'off') return true;
  if (environment.MALLOC_MMAP_THRESHOLD_ !== undefined || environment.MALLOC_TRIM_THRESHOLD_ !== undefined)
    return true;
  return environment.GLIBC_TUNABLES?.includes('glibc.malloc.') === true;
}

interface KoffiModule {
  load(path: string): { func(signature: string): (...args: unknown[]) => unknown };
}

function tune(): AllocatorTuning {
  if (environmentDecides(process.env)) return 'left-to-environment';
  if (process.platform !== 'linux') return 'unavailable';
  let mallopt: (parameter: number, value: number) => unknown;
  try {
    const koffi = loadKoffi() as KoffiModule | null;
    if (koffi === null) return 'unavailable';
    // musl's C library has another name: only glibc's is tuned.
    mallopt = koffi.load('libc.so.6').func('int mallopt(int param, int value)') as typeof mallopt;
  } catch {
    return 'unavailable';
  }
  // glibc answers 1 when it took a setting (musl's stub, were it loaded, answers 0).
  // Either setting alone makes matters worse (a fixed threshold ends glibc's own adjustment of the
  // other): the second is set only when the first was taken (glibc takes both).
  if (mallopt(mMmapThreshold, tunedMmapThresholdBytes) !== 1) return 'unavailable';
  return mallopt(mTrimThreshold, tunedTrimThresholdBytes) === 1 ? 'tuned' : 'unavailable';
}

/**
 * Sets glibc's allocator for streaming large blobs (see the module comment), once per process; returns
 * what was done. Never throws.
 */
export function tuneAllocatorForLargeBlobs(): AllocatorTuning {
  outcome ??= tune();
  return outcome;
}

/**
 * Long-lived buffers in transparent huge pages (Linux on x86-64 and arm64, through koffi's `mmap`,
 * `madvise` and `view`): the 1 MiB input buffers of the block compressors (`compressorInputBuffers`), which
 * pools keep for a copy's life and which every read or decompression fills whole.
 *
 * A pooled buffer is read into many times, but its memory is faulted in once, page by page, when first
 * written: on a 2-core virtual machine a page fault costs ~13–17 µs (touching 16 MiB of fresh memory took
 * 70 ms of CPU), so the 13 MiB a compressing copy of an archive keeps in that pool cost ~3,300 faults and
 * ~50 ms of the thread pool's CPU, much of it while both cores compress. Memory `madvise`d
 * `MADV_HUGEPAGE` (where the kernel's transparent huge pages are `always` or `madvise`) is faulted in 2 MiB
 * at a time: the same 16 MiB took 1.5–7 ms. (Buffers that are only partly written, such as libdeflate's
 * output buffers sized for the worst case, would be resident whole in huge pages: those stay ordinary.)
 *
 * So such buffers are carved, page-aligned, out of one region of `hugePageRegionBytes` (2 MiB-aligned,
 * reserved with `MAP_NORESERVE`: only what is touched is resident), each an `ArrayBuffer` of its own over
 * that memory (`koffi.view`), so that pools recognise their buffers as before. The region is never
 * unmapped; a buffer the garbage collector finds dead gives its place back (a `FinalizationRegistry`) to
 * the next buffer of the same size. Once the region is full, and wherever it cannot be had (another
 * system, THP off, koffi missing, `GANTRY_HUGE_PAGES=off`), `hugePageBuffer` answers undefined and the
 * caller allocates as usual. The region's size bounds what this can add to a process's memory.
 */

/** The region `hugePageBuffer` carves buffers from: room for the pools of one compressing copy. */
export const hugePageRegionBytes = 24 * 1024 * 1024;
const hugePageBytes = 2 * 1024 * 1024;
const smallPageBytes = 4096;

// Linux's values on x86-64 and arm64 (asm-generic).
const protReadWrite = 0x1 | 0x2;
const mapPrivateAnonymousNoReserve = 0x02 | 0x20 | 0x4000;
const madvHugePage = 14;

interface HugePageRegion {
  /** A buffer over `size` bytes of the region from `offset`. */
  view(offset: number, size: number): Buffer;
}

let region: HugePageRegion | null | undefined;
/** Where the next buffer never handed out starts in the region. */
let regionUsed = 0;
/** Places of collected buffers, by size, to be handed out again. */
const freePlaces = new Map<number, number[]>();
const collected = new FinalizationRegistry<{ size: number; offset: number }>(({ size, offset }) => {
  const places = freePlaces.get(size);
  if (places) places.push(offset);
  else freePlaces.set(size, [offset]);
});

/** Whether the kernel gives transparent huge pages to memory that asks for them. */
function transparentHugePagesEnabled(): boolean {
  try {
    const setting = readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'latin1');
    return setting.includes('[always]') || setting.includes('[madvise]');
  } catch {
    return false;
  }
}

interface KoffiViews {
  load(path: string): { func(signature: string): (...args: unknown[]) => unknown };
  address(pointer: unknown): bigint;
  view(pointer: unknown, length: number): ArrayBuffer;
}

function mapRegion(): HugePageRegion | null {
  if (process.env.GANTRY_HUGE_PAGES === 'off') return null;
  if (process.platform !== 'linux' || (process.arch !== 'x64' && process.arch !== 'arm64')) return null;
  if (!transparentHugePagesEnabled()) return null;
  const koffi = loadKoffi() as KoffiViews | null;
  if (koffi === null) return null;
  try {
    const libc = koffi.load('libc.so.6');
    const mmap = libc.func(
      'void *mmap(void *address, size_t length, int protection, int flags, int descriptor, intptr_t offset)',
    );
    const munmap = libc.func('int munmap(void *address, size_t length)');
    const madvise = libc.func('int madvise(uintptr_t address, size_t length, int advice)');
    // memmove of nothing returns its destination: the pointer of an address, for `koffi.view`.
    const pointerAt = libc.func('void *memmove(uintptr_t destination, uintptr_t source, size_t length)');
    const mappedLength = hugePageRegionBytes + hugePageBytes;
    const mapped = mmap(null, mappedLength, protReadWrite, mapPrivateAnonymousNoReserve, -1, 0);
    const address = mapped === null ? 0n : koffi.address(mapped);
    // MAP_FAILED is (void *) -1.
    if (address === 0n || address === 2n ** 64n - 1n) return null;
    const start = Number((address + BigInt(hugePageBytes - 1)) & ~BigInt(hugePageBytes - 1));
    if (madvise(start, hugePageRegionBytes, madvHugePage) !== 0) {
      munmap(mapped, mappedLength);
      return null;
    }
    return {
      view: (offset, size) => Buffer.from(koffi.view(pointerAt(start + offset, 0, 0), size)),
    };
  } catch {
    return null;
  }
}

/**
 * A buffer of `size` bytes in transparent huge pages for a pool that keeps it (see above), else undefined
 * (the caller then allocates one as usual). Its contents are undefined, as `Buffer.allocUnsafe`'s.
 */
export function hugePageBuffer(size: number): Buffer | undefined {
  if (region === undefined) region = mapRegion();
  if (region === null || size <= 0) return undefined;
  let offset = freePlaces.get(size)?.pop();
  if (offset === undefined) {
    const length = Math.ceil(size / smallPageBytes) * smallPageBytes;
    if (regionUsed + length > hugePageRegionBytes) return undefined;
    offset = regionUsed;
    regionUsed += length;
  }
  const buffer = region.view(offset, size);
  collected.register(buffer.buffer, { size, offset });
  return buffer;
}
