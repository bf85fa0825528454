import { createRequire } from 'node:module';
import { gzipSync } from 'node:zlib';

/**
 * gzip decompression through Intel's ISA-L (the system's `libisal.so.2`, Debian's `libisal2`), called
 * through koffi: its `isal_inflate` decodes DEFLATE about 3–4 times faster than zlib (measured on the
 * first 64 MiB of the node executable gzipped at level 6: `igzip -d` 0.10–0.12 s of CPU, `gzip -d`
 * 0.39–0.44 s, node:zlib's gunzip 0.40 s). Each call runs on koffi's asynchronous call threads (libuv's
 * pool), never on this thread.
 *
 * The gzip framing is read here, as Go's `compress/gzip` reader (skopeo's, through containers/image)
 * reads it: a stream is one or more whole members; after a member's trailer (CRC-32 and length, checked
 * by ISA-L) the stream either ends or a next member's header starts, anything else (trailing zeros
 * included) is an invalid header; a header's name and comment are at most 511 bytes; a header CRC is
 * checked. ISA-L decodes each member's DEFLATE data and checks its trailer (`ISAL_GZIP_NO_HDR_VER`): its
 * own gzip mode is not used, because it forgets the header's flags when a header spans two calls.
 */
export interface Libisal {
  /**
   * A new gzip stream decoder (a `struct inflate_state` of its own, taken from the idle ones when there
   * are): its calls run off this thread, one at a time. Give it up with `free()` once done (also after an
   * error).
   */
  gunzipContext(): GunzipContext;
}

/** A streaming gzip decoder whose calls run off this thread (see `Libisal.gunzipContext`). */
export interface GunzipContext {
  /**
   * Decodes from `input` into `output`, resolving to the bytes written and the bytes read: it stops once
   * `output` is full or every byte of `input` is read (then all that can be decoded from the data so far
   * is in `output`). Called with an empty `input` after `output` filled up, it writes what the decoder
   * still holds. Rejects with a `GzipDataError` when the data is not valid gzip. Neither buffer may be
   * touched until it settles.
   */
  decompress(output: Uint8Array, input: Uint8Array): Promise<[written: number, read: number]>;
  /**
   * Once the input ended: undefined when it ended at the end of a member (a complete gzip stream), else
   * the error saying where it stopped (`Z_BUF_ERROR`: it is empty, or ends inside a member or a header).
   */
  end(): GzipDataError | undefined;
  /** Gives the decoder up (once; later calls of `decompress` reject): its state is kept for the next stream (a few are), else freed. */
  free(): void;
}

/**
 * Data that is not a valid gzip stream: `Z_DATA_ERROR` (corrupt: an invalid header, invalid DEFLATE data,
 * a wrong CRC-32 or length) or `Z_BUF_ERROR` (it ends inside a member), the codes node:zlib gives.
 */
export class GzipDataError extends Error {
  constructor(
    message: string,
    readonly code: 'Z_DATA_ERROR' | 'Z_BUF_ERROR',
  ) {
    super(message);
  }
}

/** ISA-L's layout of `struct inflate_state` did not check out (see `inflateStateLayout`). */
export class IsalLayoutError extends Error {
  readonly code = 'ERR_GANTRY_ISAL_LAYOUT';
}

/**
 * Offsets and size of `struct inflate_state` in ISA-L 2.30's `igzip_lib.h` (x86-64 and aarch64 Linux),
 * the fields read and written here. The library is checked against them when it loads (`selfCheck`),
 * and a C program compiled against the installed header compares them in the tests.
 */
export const inflateStateLayout = Object.freeze({
  size: 87368,
  nextOut: 0,
  availOut: 8,
  totalOut: 12,
  nextIn: 16,
  readIn: 24,
  availIn: 32,
  readInLength: 36,
  /** `lit_huff_code`: the first byte `isal_inflate_init` leaves alone. */
  litHuffCode: 40,
  blockState: 21160,
  dictLength: 21164,
  bfinal: 21168,
  crcFlag: 21172,
  crc: 21176,
  histBits: 21180,
  tmpInSize: 21206,
  tmpOutValid: 21208,
  tmpOutBuffer: 21544,
});

/** The offsets of `inflateStateLayout`'s kind, for a layout check (`checkInflateStateLayout`). */
export type InflateStateLayout = { readonly [field in keyof typeof inflateStateLayout]: number };

/** `ISAL_BLOCK_FINISH`: the member's data and its trailer are read. */
const blockFinish = 5;
/** `ISAL_GZIP_NO_HDR_VER`: raw DEFLATE data followed by a gzip trailer, which is checked. */
const gzipNoHeaderVerify = 6;
/** Guard bytes after the state, checked after every call. */
const guardLength = 64;
const guardByte = 0xa5;

/** ISA-L's error codes (`igzip_lib.h`). */
const errorNames: Record<number, string> = {
  [-1]: 'invalid block',
  [-2]: 'invalid symbol',
  [-3]: 'invalid lookback distance',
  [-4]: 'invalid wrapper',
  [-5]: 'unsupported method',
  [-6]: 'incorrect checksum (CRC-32 or length)',
};

type KoffiFunction = ((...args: unknown[]) => unknown) & {
  async: (...args: unknown[]) => void;
};

interface KoffiModule {
  load(path: string): { func(signature: string): KoffiFunction };
  alloc(type: string, length: number): unknown;
  free(pointer: unknown): void;
  view(pointer: unknown, length: number): ArrayBuffer;
  address(value: unknown): bigint;
}

/** The most bytes a gzip header may take as Go reads it: base, extra field, name and comment of 512 bytes, CRC. */
const maxHeaderLength = 10 + 2 + 0xffff + 512 + 512 + 2;
/** Go's limit on a header's name and comment, terminating zero included. */
const maxHeaderStringLength = 512;

let crcTable: Uint32Array | undefined;

function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let index = 0; index < 256; index += 1) {
      let value = index;
      for (let bit = 0; bit < 8; bit += 1) value = value & 1 ? 0xedb88320 ^ (value >>> 1) : value >>> 1;
      crcTable[index] = value >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of bytes) crc = crcTable[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/**
 * The length of the gzip member header at the start of `bytes` (Go's rules, see `Libisal`), or undefined
 * when more bytes are needed to tell. Throws a `GzipDataError` for an invalid header.
 */
export function gzipHeaderLength(bytes: Uint8Array): number | undefined {
  const invalid = (): GzipDataError => new GzipDataError('gzip: invalid header', 'Z_DATA_ERROR');
  if (bytes.byteLength < 10) return undefined;
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b || bytes[2] !== 8) throw invalid();
  const flags = bytes[3]!;
  let position = 10;
  if (flags & 4) {
    if (bytes.byteLength < position + 2) return undefined;
    position += 2 + (bytes[position]! | (bytes[position + 1]! << 8));
    if (bytes.byteLength < position) return undefined;
  }
  for (const flag of [8, 16]) {
    if (!(flags & flag)) continue;
    const end = bytes.subarray(position, position + maxHeaderStringLength).indexOf(0);
    if (end < 0) {
      if (bytes.byteLength >= position + maxHeaderStringLength) throw invalid();
      return undefined;
    }
    position += end + 1;
  }
  if (flags & 2) {
    if (bytes.byteLength < position + 2) return undefined;
    const expected = bytes[position]! | (bytes[position + 1]! << 8);
    if ((crc32(bytes.subarray(0, position)) & 0xffff) !== expected) throw invalid();
    position += 2;
  }
  return position;
}

interface LoadedIsal {
  koffi: KoffiModule;
  library: ReturnType<KoffiModule['load']>;
  init: KoffiFunction;
  reset: KoffiFunction;
  inflate: KoffiFunction;
}

/** A state in native memory (koffi.alloc: it never moves), with a view of its fields. */
interface InflateState {
  pointer: unknown;
  fields: DataView;
  bytes: Uint8Array;
  layout: InflateStateLayout;
}

/** States allocated and not freed (in use or idle), for the tests. */
let liveStates = 0;

function allocateState(isal: LoadedIsal, layout: InflateStateLayout): InflateState {
  const length = layout.size + guardLength;
  const pointer = isal.koffi.alloc('uint8_t', length);
  const memory = isal.koffi.view(pointer, length);
  const bytes = new Uint8Array(memory);
  bytes.fill(guardByte, layout.size);
  liveStates += 1;
  return { pointer, fields: new DataView(memory), bytes, layout };
}

function freeState(isal: LoadedIsal, state: InflateState): void {
  liveStates -= 1;
  isal.koffi.free(state.pointer);
}

function guardIntact(state: InflateState): boolean {
  for (let index = state.layout.size; index < state.bytes.byteLength; index += 1) {
    if (state.bytes[index] !== guardByte) return false;
  }
  return true;
}

/** A 1-byte buffer passed (with a length of 0) for an empty input, so that `next_in` is never null. */
const noInput = Buffer.alloc(1);

/**
 * One synchronous or asynchronous `isal_inflate` call on `state`, from `input` into `output`; checks that
 * the library moved its pointers as its counts say (else the layout is wrong: `IsalLayoutError`).
 */
function setUpCall(isal: LoadedIsal, state: InflateState, output: Uint8Array, input: Uint8Array) {
  const { fields, layout } = state;
  const source = input.byteLength > 0 ? input : noInput;
  const inputAddress = isal.koffi.address(source);
  const outputAddress = isal.koffi.address(output);
  fields.setBigUint64(layout.nextOut, outputAddress, true);
  fields.setUint32(layout.availOut, output.byteLength, true);
  fields.setBigUint64(layout.nextIn, inputAddress, true);
  fields.setUint32(layout.availIn, input.byteLength, true);
  return (result: number): { result: number; written: number; read: number; finished: boolean } => {
    const read = input.byteLength - fields.getUint32(layout.availIn, true);
    const written = output.byteLength - fields.getUint32(layout.availOut, true);
    // (After an error ISA-L's pointers and counts may disagree: the data is rejected anyway.)
    const consistent =
      result < 0 ||
      (read >= 0 &&
        written >= 0 &&
        fields.getBigUint64(layout.nextIn, true) === inputAddress + BigInt(read) &&
        fields.getBigUint64(layout.nextOut, true) === outputAddress + BigInt(written));
    if (!consistent || !guardIntact(state)) {
      throw new IsalLayoutError(
        'libisal: the inflate state does not have the layout of ISA-L 2.30 (set GANTRY_GZIP_DECOMPRESSION=node:zlib)',
      );
    }
    return { result, written, read, finished: fields.getUint32(layout.blockState, true) === blockFinish };
  };
}

/** Starts `state` on a member's DEFLATE data (its header read), with its trailer checked. */
function startMember(isal: LoadedIsal, state: InflateState): void {
  isal.reset(state.pointer);
  state.fields.setUint32(state.layout.crcFlag, gzipNoHeaderVerify, true);
}

/**
 * Checks ISA-L's `struct inflate_state` against `inflateStateLayout`: `isal_inflate_init` must zero
 * exactly the fields where they are expected (and leave the Huffman tables alone), and a known stream
 * of several members, fed in small pieces, must decode to its bytes with the CRC-32 and length where
 * they are expected and the bytes after the state untouched. Throws an `IsalLayoutError` otherwise.
 */
function selfCheck(isal: LoadedIsal, layout: InflateStateLayout): void {
  const state = allocateState(isal, layout);
  try {
    state.bytes.fill(0x5a, 0, layout.size);
    isal.init(state.pointer);
    const { fields } = state;
    const zeroed = [
      fields.getBigUint64(layout.nextOut, true),
      fields.getBigUint64(layout.nextIn, true),
      fields.getBigUint64(layout.readIn, true),
      ...[
        layout.availOut,
        layout.totalOut,
        layout.availIn,
        layout.readInLength,
        layout.blockState,
        layout.dictLength,
        layout.bfinal,
        layout.crcFlag,
        layout.crc,
        layout.histBits,
      ].map((offset) => BigInt(fields.getUint32(offset, true))),
      BigInt(fields.getUint16(layout.tmpInSize, true)),
      BigInt(fields.getUint32(layout.tmpOutValid, true)),
    ];
    const untouched =
      fields.getUint32(layout.litHuffCode, true) === 0x5a5a5a5a &&
      fields.getUint32(layout.tmpOutBuffer, true) === 0x5a5a5a5a;
    if (zeroed.some((value) => value !== 0n) || !untouched || !guardIntact(state)) {
      throw new IsalLayoutError(
        'libisal: isal_inflate_init did not initialise the fields where ISA-L 2.30 has them',
      );
    }
    const plain = Buffer.alloc(48_000);
    for (let index = 0; index < plain.length; index += 1) plain[index] = (index * 31 + (index >> 7)) % 251;
    const members = [plain.subarray(0, 20_000), plain.subarray(20_000)];
    let outputOffset = 0;
    const output = Buffer.alloc(plain.length);
    for (const member of members) {
      const gzipped = gzipSync(member, { level: 1 });
      const headerLength = gzipHeaderLength(gzipped)!;
      startMember(isal, state);
      let offset = headerLength;
      let finished = false;
      while (!finished) {
        const input = gzipped.subarray(offset, Math.min(gzipped.length, offset + 1021));
        const done = setUpCall(isal, state, output.subarray(outputOffset, outputOffset + 16_411), input);
        const call = done(isal.inflate(state.pointer) as number);
        if (call.result !== 0 || (call.read === 0 && call.written === 0 && !call.finished)) {
          throw new IsalLayoutError(`libisal: the check stream did not decode (${call.result})`);
        }
        offset += call.read;
        outputOffset += call.written;
        finished = call.finished;
      }
      const trailer = gzipped.subarray(gzipped.length - 8);
      if (
        offset !== gzipped.length ||
        fields.getUint32(layout.crc, true) !== trailer.readUInt32LE(0) ||
        fields.getUint32(layout.totalOut, true) !== member.length
      ) {
        throw new IsalLayoutError('libisal: the CRC-32 and length are not where ISA-L 2.30 has them');
      }
    }
    if (outputOffset !== plain.length || !output.equals(plain)) {
      throw new IsalLayoutError('libisal: the check stream decoded to other bytes');
    }
  } finally {
    freeState(isal, state);
  }
}

const libraryNames = ['libisal.so.2', 'libisal.so'];

let loaded: Libisal | null | undefined;
/** Why the library is not used although it loaded (the self-check failed), for tests and warnings. */
let loadFailure: Error | undefined;

function loadLibrary(): LoadedIsal | null {
  let koffi: KoffiModule;
  try {
    koffi = createRequire(import.meta.url)('koffi') as KoffiModule;
  } catch {
    return null;
  }
  let library: ReturnType<KoffiModule['load']> | undefined;
  for (const name of libraryNames) {
    try {
      library = koffi.load(name);
      break;
    } catch {
      // Not installed under this name: try the next.
    }
  }
  if (!library) return null;
  return {
    koffi,
    library,
    init: library.func('void isal_inflate_init(void *state)'),
    reset: library.func('void isal_inflate_reset(void *state)'),
    inflate: library.func('int isal_inflate(void *state)'),
  };
}

let library: LoadedIsal | null | undefined;

/**
 * ISA-L's `crc64_iso_refl(seed, buf, len)`: CRC-64 with the reflected ISO 3309 polynomial, with Go's
 * `hash/crc64` convention (the seed and the result are the checksum as `Sum64` gives it, inverted on
 * entry and on return inside the function), so `crc64_iso_refl(0, …)` is Go's `crc64.Checksum(…,
 * crc64.MakeTable(crc64.ISO))` and a result fed back as the seed continues it. Carry-less multiplication
 * (PCLMULQDQ) where the processor has it. A synchronous call on this thread; koffi passes the buffer's
 * address, nothing is copied. Koffi gives the 64-bit result as a number when it is below 2^53, else as a
 * BigInt.
 */
export type IsalCrc64 = (seed: bigint | number, data: Uint8Array, length: number) => bigint | number;

let crc64Function: IsalCrc64 | null | undefined;

/**
 * ISA-L's CRC-64/ISO (`IsalCrc64`) when koffi and the library load and the function gives Go's check
 * values (checked once per process: '123456789' whole, and continued from the checksum of '12345'); else
 * null.
 */
export function libisalCrc64(): IsalCrc64 | null {
  if (crc64Function !== undefined) return crc64Function;
  crc64Function = null;
  const isal = loadedLibrary();
  if (!isal) return null;
  try {
    const declared = isal.library.func(
      'uint64_t crc64_iso_refl(uint64_t seed, const uint8_t *buf, uint64_t len)',
    ) as unknown as IsalCrc64;
    const check = Buffer.from('123456789');
    const whole = BigInt(declared(0, check, check.length));
    const continued = BigInt(declared(declared(0, check, 5), check.subarray(5), 4));
    // Go's hash/crc64 golden value for '123456789' with the ISO table.
    if (whole === 0xb90956c775a41001n && continued === whole) crc64Function = declared;
  } catch {
    // A library without the function: the caller's fallback.
  }
  return crc64Function;
}

function loadedLibrary(): LoadedIsal | null {
  if (library === undefined) library = loadLibrary();
  return library;
}

/**
 * Runs the load-time check of ISA-L's `struct inflate_state` (`selfCheck`) against `layout`: throws an
 * `IsalLayoutError` when the library does not have it; false when the library does not load.
 */
export function checkInflateStateLayout(layout: InflateStateLayout): boolean {
  const isal = loadedLibrary();
  if (!isal) return false;
  selfCheck(isal, layout);
  return true;
}

/** `struct inflate_state`s allocated now (in use or idle), for the tests. */
export function inflateStatesAllocated(): number {
  return liveStates;
}

function load(): Libisal | null {
  const isal = loadedLibrary();
  if (!isal) return null;
  try {
    selfCheck(isal, inflateStateLayout);
  } catch (error) {
    loadFailure = error as Error;
    process.emitWarning(
      `${(error as Error).message}: gzip is decompressed with node:zlib instead`,
      'GantryWarning',
    );
    return null;
  }
  /**
   * Idle states (~85 KiB each, initialised by the next stream): a stream takes one and gives it back once
   * done, so that stream after stream reuses the same native memory.
   */
  const idle: InflateState[] = [];
  const keptStates = 4;
  const release = (state: InflateState): void => {
    if (idle.length < keptStates && guardIntact(state)) idle.push(state);
    else freeState(isal, state);
  };
  return {
    gunzipContext() {
      let state: InflateState | undefined = idle.pop() ?? allocateState(isal, inflateStateLayout);
      isal.init(state.pointer);
      let busy = false;
      /** Where the stream is: in a member's header, in its DEFLATE data, or after a member's trailer. */
      let phase: 'header' | 'data' | 'between' = 'header';
      /** A header's first bytes, copied while it spans input chunks. */
      let pendingHeader: Buffer | undefined;
      let failed: GzipDataError | undefined;
      /** Reads a header from `input`: the bytes it took (all of them while the header is incomplete). */
      const readHeader = (input: Uint8Array): number => {
        if (!pendingHeader) {
          const length = gzipHeaderLength(input);
          if (length !== undefined) return length;
          pendingHeader = Buffer.from(input.subarray(0, maxHeaderLength));
          return pendingHeader.byteLength;
        }
        const before = pendingHeader.byteLength;
        const joined = Buffer.concat([pendingHeader, input.subarray(0, maxHeaderLength - before)]);
        const length = gzipHeaderLength(joined);
        if (length === undefined) {
          pendingHeader = joined;
          return joined.byteLength - before;
        }
        pendingHeader = undefined;
        return length - before;
      };
      const call = (
        current: InflateState,
        output: Uint8Array,
        input: Uint8Array,
      ): Promise<{ result: number; written: number; read: number; finished: boolean }> => {
        const done = setUpCall(isal, current, output, input);
        return new Promise((resolve, reject) => {
          isal.inflate.async(current.pointer, (error: unknown, result: number) => {
            // `input` and `output` are referenced by this closure until the call returns.
            try {
              if (error) reject(error);
              else resolve(done(result));
            } catch (failure) {
              reject(failure);
            }
          });
        });
      };
      const run = async (output: Uint8Array, input: Uint8Array): Promise<[number, number]> => {
        let written = 0;
        let read = 0;
        let called = false;
        for (;;) {
          if (!state) throw new Error('libisal: the gunzip context was freed');
          if (phase !== 'data') {
            if (read === input.byteLength) break;
            phase = 'header';
            read += readHeader(input.subarray(read));
            if (pendingHeader) continue;
            startMember(isal, state);
            phase = 'data';
          }
          if (written === output.byteLength) break;
          // A call with all input read only when none ran yet: it writes what the decoder still holds.
          if (called && read === input.byteLength) break;
          called = true;
          const step = await call(state, output.subarray(written), input.subarray(read));
          written += step.written;
          read += step.read;
          if (step.result < 0) {
            throw new GzipDataError(
              `gzip: ${errorNames[step.result] ?? `error ${step.result}`}`,
              'Z_DATA_ERROR',
            );
          }
          if (step.finished) {
            phase = 'between';
            called = false;
            continue;
          }
          if (written === output.byteLength || read === input.byteLength) break;
          if (step.read === 0 && step.written === 0) {
            throw new GzipDataError('gzip: the decoder made no progress', 'Z_DATA_ERROR');
          }
        }
        return [written, read];
      };
      return {
        decompress(output, input) {
          if (!state) return Promise.reject(new Error('libisal: the gunzip context was freed'));
          if (busy) return Promise.reject(new Error('libisal: a gunzip call is already running'));
          if (failed) return Promise.reject(failed);
          busy = true;
          const current = state;
          return run(output, input).then(
            (result) => {
              busy = false;
              if (!state) release(current);
              return result;
            },
            (error: unknown) => {
              busy = false;
              if (!state) release(current);
              if (error instanceof GzipDataError) failed = error;
              throw error;
            },
          );
        },
        end() {
          if (failed) return failed;
          // At least one member, and nothing after the last one's trailer.
          if (phase === 'between') return undefined;
          return new GzipDataError('gzip: unexpected end of file', 'Z_BUF_ERROR');
        },
        free() {
          if (!state) return;
          const current = state;
          state = undefined;
          if (!busy) release(current);
        },
      };
    },
  };
}

/**
 * ISA-L's gzip decoder when koffi and the library load and its layout checks out (once per process),
 * else null. `GANTRY_GZIP_DECOMPRESSION=node:zlib` makes it null (gzip is then decompressed by node:zlib).
 */
export function libisal(): Libisal | null {
  if (process.env.GANTRY_GZIP_DECOMPRESSION === 'node:zlib') return null;
  if (loaded === undefined) loaded = load();
  return loaded;
}

/** Why ISA-L loaded but is not used (its layout check failed), if it did. */
export function libisalLoadFailure(): Error | undefined {
  return loadFailure;
}
