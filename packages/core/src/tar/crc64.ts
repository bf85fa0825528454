/**
 * CRC-64 with the ISO 3309 polynomial, as Go's `hash/crc64` computes it with `crc64.MakeTable(crc64.ISO)`:
 * the checksum tar-split stores for every file's content.
 *
 * Three implementations, the first that is available taking inputs of `wasmMinimumLength` bytes or more:
 * - ISA-L's `crc64_iso_refl` (the system's `libisal.so.2` through koffi, see `libisalCrc64`): carry-less
 *   multiplication, ~20 GB/s here against ~1 GB/s for WebAssembly; called synchronously on the caller's
 *   buffer (nothing copied). Used when the library loads and gives Go's check values.
 * - WebAssembly (`crc64Wasm` below: a module of one function, assembled here from its opcodes),
 *   the table method with slicing-by-16 (Intel's "slicing-by-N": N lookup tables, N input bytes per
 *   step, the lookups of a step independent of each other) with the 64-bit state in one i64 register.
 *   Inputs are copied into the module's memory 64 KiB at a time. Not available under `node --jitless`.
 * - JavaScript, slicing-by-8 with the 64-bit state kept as two 32-bit halves (no BigInt in the loop) and the input read
 *   as 32-bit words (little-endian hosts): short inputs, and everything where neither of the others is.
 *
 * `GANTRY_CRC64_IMPLEMENTATION=webassembly` leaves ISA-L out, `=javascript` both ISA-L and WebAssembly.
 */
import { endianness } from 'node:os';
import { libisalCrc64 } from '../copy/libisal-inflate.js';

const littleEndian = endianness() === 'LE';
const emptyWords = new Uint32Array(0);

/** The JavaScript loop uses tables 0–7, the WebAssembly one all sixteen. */
const tableCount = 16;
// tables[t][i] as (hi, lo) halves; table 0 is the byte-at-a-time table. Built at the first checksum,
// not when the module is evaluated: most commands never compute one (~4 % of `gantry --version`).
let tables: { high: Uint32Array; low: Uint32Array } | undefined;

function crc64Tables(): { high: Uint32Array; low: Uint32Array } {
  if (tables !== undefined) return tables;
  const tableHigh = new Uint32Array(256 * tableCount);
  const tableLow = new Uint32Array(256 * tableCount);
  // Reversed ISO polynomial 0xD800000000000000.
  const polyHigh = 0xd8000000;
  for (let index = 0; index < 256; index++) {
    let high = 0;
    let low = index;
    for (let bit = 0; bit < 8; bit++) {
      const lsb = low & 1;
      low = ((low >>> 1) | ((high & 1) << 31)) >>> 0;
      high = high >>> 1;
      if (lsb) high = (high ^ polyHigh) >>> 0;
    }
    tableHigh[index] = high;
    tableLow[index] = low;
  }
  for (let index = 0; index < 256; index++) {
    let high = tableHigh[index] as number;
    let low = tableLow[index] as number;
    for (let table = 1; table < tableCount; table++) {
      const entry = low & 0xff;
      low = (((low >>> 8) | (high << 24)) ^ (tableLow[entry] as number)) >>> 0;
      high = ((high >>> 8) ^ (tableHigh[entry] as number)) >>> 0;
      tableHigh[table * 256 + index] = high;
      tableLow[table * 256 + index] = low;
    }
  }
  tables = { high: tableHigh, low: tableLow };
  return tables;
}

/**
 * The WebAssembly implementation. Memory of the module (two 64 KiB pages):
 *   [0, 32768)        the sixteen tables, table t at t × 2048, entries as little-endian i64
 *   [32768, 32776)    the state after `update` (i64)
 *   [32832, 98368)    the input being checksummed
 * `update(low, high, pointer, length)` takes the state as two 32-bit halves (no BigInt crosses the
 * boundary) and leaves the new state at 32768.
 */
const wasmStateOffset = 32768;
const wasmInputOffset = 32832;
const wasmInputCapacity = 65536;
/** Below this length the JavaScript loop costs no more than the call and the copy into the module's memory. */
export const wasmMinimumLength = 64;

/** Unsigned LEB128, as the WebAssembly binary format encodes integers. */
function leb128(value: number): number[] {
  const bytes: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    bytes.push(byte);
  } while (value !== 0);
  return bytes;
}

/** Signed LEB128 (the immediates of i32.const and i64.const), for values in the i32 range. */
function sleb128(value: number): number[] {
  const bytes: number[] = [];
  for (;;) {
    const byte = value & 0x7f;
    value >>= 7;
    if ((value === 0 && (byte & 0x40) === 0) || (value === -1 && (byte & 0x40) !== 0)) {
      bytes.push(byte);
      return bytes;
    }
    bytes.push(byte | 0x80);
  }
}

/** A section: its id, the length of its contents, its contents. */
function section(id: number, contents: number[]): number[] {
  return [id, ...leb128(contents.length), ...contents];
}

function name(text: string): number[] {
  return [...leb128(text.length), ...Array.from(text, (character) => character.charCodeAt(0))];
}

/** The module's bytes (WebAssembly 1.0): the function `update` and the memory, both exported. */
export function crc64WasmModuleBytes(): Uint8Array {
  // Opcodes, from the WebAssembly core specification's binary format (section 5.4).
  const op = {
    block: 0x02,
    loop: 0x03,
    end: 0x0b,
    brIf: 0x0d,
    localGet: 0x20,
    localSet: 0x21,
    localTee: 0x22,
    i64Load: 0x29,
    i32Load8U: 0x2d,
    i64Store: 0x37,
    i32Const: 0x41,
    i64Const: 0x42,
    i32LtU: 0x49,
    i32GeU: 0x4f,
    i32Add: 0x6a,
    i32And: 0x71,
    i32Xor: 0x73,
    i32Shl: 0x74,
    i32ShrU: 0x76,
    i64Or: 0x84,
    i64Xor: 0x85,
    i64Shl: 0x86,
    i64ShrU: 0x88,
    i32WrapI64: 0xa7,
    i64ExtendI32U: 0xad,
  };
  const emptyBlockType = 0x40;
  const i32 = 0x7f;
  const i64 = 0x7e;
  // Locals: parameters 0 low, 1 high, 2 pointer, 3 length; 4 end, 5 end of the sixteen-byte steps (i32);
  // 6 crc, 7 eight input bytes (xored with crc for the first eight of a step) (i64); 8 and 9 the low and
  // high halves of 7 (i32).
  const [low, high, pointer, length, end, end16, crc, mixed, mixedLow, mixedHigh] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
  ];
  const get = (local: number) => [op.localGet, local];
  const set = (local: number) => [op.localSet, local];
  const i32Const = (value: number) => [op.i32Const, ...sleb128(value)];
  const i64Const = (value: number) => [op.i64Const, ...sleb128(value)];
  // i64.load of table `table`'s entry for the byte at bit `shift` of the i32 local `half`: the address is
  // that byte × 8, the table's base (table × 2048) the load's offset immediate.
  const tableEntry = (half: number, shift: number, table: number) => [
    ...get(half),
    ...(shift === 0 ? [...i32Const(3), op.i32Shl] : [...i32Const(shift - 3), op.i32ShrU]),
    ...i32Const(0x7f8),
    op.i32And,
    op.i64Load,
    3,
    ...leb128(table * 2048),
  ];
  // biome-ignore format: one instruction (or one step) per line
  const body = [
    3, 2, i32, 2, i64, 2, i32, // local declarations: two i32, two i64, two i32
    // crc = high << 32 | low
    ...get(high), op.i64ExtendI32U, ...i64Const(32), op.i64Shl,
    ...get(low), op.i64ExtendI32U, op.i64Or, ...set(crc),
    // end = pointer + length; end16 = pointer + (length & ~15)
    ...get(pointer), ...get(length), op.i32Add, ...set(end),
    ...get(pointer), ...get(length), ...i32Const(-16), op.i32And, op.i32Add, ...set(end16),
    // Sixteen bytes at a time: with m = crc ^ the first eight (little-endian) and n = the next eight,
    // crc = T15[m0] ^ … ^ T8[m7] ^ T7[n0] ^ … ^ T0[n7].
    op.block, emptyBlockType,
    ...get(pointer), ...get(end16), op.i32GeU, op.brIf, 0,
    op.loop, emptyBlockType,
    ...get(crc), ...get(pointer), op.i64Load, 0, 0, op.i64Xor, ...set(mixed),
    ...get(mixed), op.i32WrapI64, ...set(mixedLow),
    ...get(mixed), ...i64Const(32), op.i64ShrU, op.i32WrapI64, ...set(mixedHigh),
    ...tableEntry(mixedLow, 0, 15),
    ...tableEntry(mixedLow, 8, 14), op.i64Xor,
    ...tableEntry(mixedLow, 16, 13), op.i64Xor,
    ...tableEntry(mixedLow, 24, 12), op.i64Xor,
    ...tableEntry(mixedHigh, 0, 11), op.i64Xor,
    ...tableEntry(mixedHigh, 8, 10), op.i64Xor,
    ...tableEntry(mixedHigh, 16, 9), op.i64Xor,
    ...tableEntry(mixedHigh, 24, 8), op.i64Xor,
    ...get(pointer), op.i64Load, 0, 8, ...set(mixed), // the next eight bytes (offset immediate 8)
    ...get(mixed), op.i32WrapI64, ...set(mixedLow),
    ...get(mixed), ...i64Const(32), op.i64ShrU, op.i32WrapI64, ...set(mixedHigh),
    ...tableEntry(mixedLow, 0, 7), op.i64Xor,
    ...tableEntry(mixedLow, 8, 6), op.i64Xor,
    ...tableEntry(mixedLow, 16, 5), op.i64Xor,
    ...tableEntry(mixedLow, 24, 4), op.i64Xor,
    ...tableEntry(mixedHigh, 0, 3), op.i64Xor,
    ...tableEntry(mixedHigh, 8, 2), op.i64Xor,
    ...tableEntry(mixedHigh, 16, 1), op.i64Xor,
    ...tableEntry(mixedHigh, 24, 0), op.i64Xor,
    ...set(crc),
    ...get(pointer), ...i32Const(16), op.i32Add, op.localTee, pointer, ...get(end16), op.i32LtU, op.brIf, 0,
    op.end, // loop
    op.end, // block
    // The rest byte by byte: crc = T0[(crc ^ byte) & 0xff] ^ crc >> 8.
    op.block, emptyBlockType,
    ...get(pointer), ...get(end), op.i32GeU, op.brIf, 0,
    op.loop, emptyBlockType,
    ...get(crc), op.i32WrapI64, ...get(pointer), op.i32Load8U, 0, 0, op.i32Xor, ...i32Const(0xff), op.i32And,
    ...i32Const(3), op.i32Shl, op.i64Load, 3, 0,
    ...get(crc), ...i64Const(8), op.i64ShrU, op.i64Xor, ...set(crc),
    ...get(pointer), ...i32Const(1), op.i32Add, op.localTee, pointer, ...get(end), op.i32LtU, op.brIf, 0,
    op.end, // loop
    op.end, // block
    // The state, for the caller.
    ...i32Const(wasmStateOffset), ...get(crc), op.i64Store, 3, 0,
    op.end, // function
  ];
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
    ...section(1, [1, 0x60, 4, i32, i32, i32, i32, 0]), // type 0: (i32 i32 i32 i32) -> ()
    ...section(3, [1, 0]), // function 0 has type 0
    ...section(5, [1, 0x00, 2]), // one memory, two pages at least, no maximum
    ...section(7, [2, ...name('update'), 0x00, 0, ...name('memory'), 0x02, 0]), // exports
    ...section(10, [1, ...leb128(body.length), ...body]), // code
  ]);
}

interface Crc64Wasm {
  update: (low: number, high: number, pointer: number, length: number) => void;
  memory: Uint8Array;
  state: DataView;
}

let wasmInstance: Crc64Wasm | null | undefined;

/** The part of the WebAssembly JavaScript API used here (the project's TypeScript libraries do not declare it). */
interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}

/** The WebAssembly implementation with its tables filled in (on first use); null where WebAssembly is unavailable. */
function crc64Wasm(): Crc64Wasm | null {
  if (wasmInstance !== undefined) return wasmInstance;
  wasmInstance = null;
  const api = (globalThis as { WebAssembly?: WebAssemblyApi }).WebAssembly;
  if (api === undefined || process.env.GANTRY_CRC64_IMPLEMENTATION === 'javascript') return null;
  try {
    const instance = new api.Instance(new api.Module(crc64WasmModuleBytes()));
    const buffer = (instance.exports.memory as { buffer: ArrayBuffer }).buffer;
    const view = new DataView(buffer);
    const { high: tableHigh, low: tableLow } = crc64Tables();
    for (let entry = 0; entry < 256 * tableCount; entry++) {
      view.setUint32(entry * 8, tableLow[entry] as number, true);
      view.setUint32(entry * 8 + 4, tableHigh[entry] as number, true);
    }
    wasmInstance = {
      update: instance.exports.update as Crc64Wasm['update'],
      memory: new Uint8Array(buffer),
      state: new DataView(buffer, wasmStateOffset, 8),
    };
  } catch {
    wasmInstance = null;
  }
  return wasmInstance;
}

/**
 * Adds `data` to the (inverted) state `high:low`, in JavaScript; returns the new state. Exported for the
 * tests, which check the two implementations against each other.
 */
export function crc64UpdateJs(high: number, low: number, data: Uint8Array): [high: number, low: number] {
  const { high: th, low: tl } = crc64Tables();
  let offset = 0;
  const length = data.length;
  if (littleEndian) {
    // Byte by byte up to a 4-byte boundary, then eight bytes at a time read as two 32-bit words.
    while (offset < length && ((data.byteOffset + offset) & 3) !== 0) {
      const entry = (low ^ (data[offset] as number)) & 0xff;
      low = (((low >>> 8) | (high << 24)) ^ (tl[entry] as number)) >>> 0;
      high = ((high >>> 8) ^ (th[entry] as number)) >>> 0;
      offset++;
    }
    const pairs = (length - offset) >>> 3;
    const words =
      pairs === 0 ? emptyWords : new Uint32Array(data.buffer, data.byteOffset + offset, pairs * 2);
    for (let word = 0; word < words.length; word += 2) {
      const l = low ^ (words[word] as number);
      const h = high ^ (words[word + 1] as number);
      const i0 = 1792 + (l & 0xff);
      const i1 = 1536 + ((l >>> 8) & 0xff);
      const i2 = 1280 + ((l >>> 16) & 0xff);
      const i3 = 1024 + (l >>> 24);
      const i4 = 768 + (h & 0xff);
      const i5 = 512 + ((h >>> 8) & 0xff);
      const i6 = 256 + ((h >>> 16) & 0xff);
      const i7 = h >>> 24;
      low =
        (tl[i0] as number) ^
        (tl[i1] as number) ^
        (tl[i2] as number) ^
        (tl[i3] as number) ^
        (tl[i4] as number) ^
        (tl[i5] as number) ^
        (tl[i6] as number) ^
        (tl[i7] as number);
      high =
        (th[i0] as number) ^
        (th[i1] as number) ^
        (th[i2] as number) ^
        (th[i3] as number) ^
        (th[i4] as number) ^
        (th[i5] as number) ^
        (th[i6] as number) ^
        (th[i7] as number);
    }
    offset += pairs * 8;
  }
  while (offset < length) {
    const entry = (low ^ (data[offset] as number)) & 0xff;
    low = (((low >>> 8) | (high << 24)) ^ (tl[entry] as number)) >>> 0;
    high = ((high >>> 8) ^ (th[entry] as number)) >>> 0;
    offset++;
  }
  return [high >>> 0, low >>> 0];
}

let isalInstance: ReturnType<typeof libisalCrc64> | undefined;

/** ISA-L's CRC-64 (on first use); null where it does not load or is switched off. */
function crc64Isal(): ReturnType<typeof libisalCrc64> {
  if (isalInstance !== undefined) return isalInstance;
  const chosen = process.env.GANTRY_CRC64_IMPLEMENTATION;
  isalInstance = chosen === 'javascript' || chosen === 'webassembly' ? null : libisalCrc64();
  return isalInstance;
}

const low32 = 0xffffffffn;

/** Incremental CRC-64/ISO (Go `crc64.New(crc64.MakeTable(crc64.ISO))`). */
export class Crc64 {
  // Stored inverted, as Go's update does on entry and exit.
  private high = 0xffffffff;
  private low = 0xffffffff;

  /** Adds `data` to the checksum; returns this checksum, so calls can be chained. */
  update(data: Uint8Array): this {
    if (data.length >= wasmMinimumLength) {
      const isal = crc64Isal();
      if (isal !== null) {
        // ISA-L takes and gives the checksum itself (not inverted).
        const seed = (BigInt(~this.high >>> 0) << 32n) | BigInt(~this.low >>> 0);
        const result = BigInt(isal(seed, data, data.length));
        this.high = ~Number(result >> 32n) >>> 0;
        this.low = ~Number(result & low32) >>> 0;
        return this;
      }
    }
    const wasm = data.length >= wasmMinimumLength ? crc64Wasm() : null;
    if (wasm === null) {
      [this.high, this.low] = crc64UpdateJs(this.high, this.low, data);
      return this;
    }
    let high = this.high;
    let low = this.low;
    for (let offset = 0; offset < data.length; offset += wasmInputCapacity) {
      const piece = data.subarray(offset, offset + wasmInputCapacity);
      wasm.memory.set(piece, wasmInputOffset);
      wasm.update(low, high, wasmInputOffset, piece.length);
      low = wasm.state.getUint32(0, true);
      high = wasm.state.getUint32(4, true);
    }
    this.high = high;
    this.low = low;
    return this;
  }

  /** The checksum as Go's `Sum(nil)` returns it: 8 bytes, big-endian. */
  digest(): Buffer {
    const out = Buffer.allocUnsafe(8);
    out.writeUInt32BE(~this.high >>> 0, 0);
    out.writeUInt32BE(~this.low >>> 0, 4);
    return out;
  }
}

/** CRC-64/ISO of `data`, 8 bytes big-endian. */
export function crc64(data: Uint8Array): Buffer {
  if (data.length >= smallInputLength) {
    const isal = crc64Isal();
    if (isal === null) return new Crc64().update(data).digest();
    const out = Buffer.allocUnsafe(8);
    out.writeBigUInt64BE(BigInt(isal(0, data, data.length)), 0);
    return out;
  }
  // Small inputs (the contents of small files, one call each): byte by byte, nothing allocated but the
  // result.
  const { high: th, low: tl } = crc64Tables();
  let high = 0xffffffff;
  let low = 0xffffffff;
  for (let offset = 0; offset < data.length; offset++) {
    const entry = (low ^ (data[offset] as number)) & 0xff;
    low = (((low >>> 8) | (high << 24)) ^ (tl[entry] as number)) >>> 0;
    high = ((high >>> 8) ^ (th[entry] as number)) >>> 0;
  }
  const out = Buffer.allocUnsafe(8);
  out.writeUInt32BE(~high >>> 0, 0);
  out.writeUInt32BE(~low >>> 0, 4);
  return out;
}

/** Inputs shorter than this are checksummed by `crc64` byte by byte. */
const smallInputLength = 64;

/** Whether WebAssembly is there for inputs of `wasmMinimumLength` bytes or more when ISA-L is not. */
export function crc64UsesWasm(): boolean {
  return crc64Wasm() !== null;
}

/** Which implementation checksums inputs of `wasmMinimumLength` bytes or more. */
export function crc64Implementation(): 'isa-l' | 'webassembly' | 'javascript' {
  if (crc64Isal() !== null) return 'isa-l';
  return crc64Wasm() !== null ? 'webassembly' : 'javascript';
}
