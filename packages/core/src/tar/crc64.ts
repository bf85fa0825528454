/**
 * CRC-64 with the ISO 3309 polynomial, as Go's `hash/crc64` computes it with `crc64.MakeTable(crc64.ISO)`:
 * the checksum tar-split stores for every file's content. The 64-bit state is kept as two 32-bit halves
 * (no BigInt in the loop), and the input is consumed eight bytes at a time, read as two 32-bit words
 * (little-endian hosts), with eight lookup tables.
 */
import { endianness } from 'node:os';

const littleEndian = endianness() === 'LE';
const emptyWords = new Uint32Array(0);

const tableCount = 8;
// tables[t][i] as (hi, lo) halves; table 0 is the byte-at-a-time table.
const tableHigh = new Uint32Array(256 * tableCount);
const tableLow = new Uint32Array(256 * tableCount);

(function buildTables(): void {
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
})();

/** Incremental CRC-64/ISO (Go `crc64.New(crc64.MakeTable(crc64.ISO))`). */
export class Crc64 {
  // Stored inverted, as Go's update does on entry and exit.
  private high = 0xffffffff;
  private low = 0xffffffff;

  /** Adds `data` to the checksum; returns this checksum, so calls can be chained. */
  update(data: Uint8Array): this {
    let high = this.high;
    let low = this.low;
    const th = tableHigh;
    const tl = tableLow;
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
    this.high = high >>> 0;
    this.low = low >>> 0;
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
  return new Crc64().update(data).digest();
}
