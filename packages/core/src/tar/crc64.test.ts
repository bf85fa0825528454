import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Crc64, crc64 } from './crc64.js';

describe('crc64 (Go hash/crc64 with the ISO table)', () => {
  it('matches Go test vectors', () => {
    expect(crc64(Buffer.from('')).toString('hex')).toBe('0000000000000000');
    expect(crc64(Buffer.from('a')).toString('hex')).toBe('3420000000000000');
    expect(crc64(Buffer.from('ab')).toString('hex')).toBe('36c4200000000000');
    expect(crc64(Buffer.from('abc')).toString('hex')).toBe('3776c42000000000');
    expect(crc64(Buffer.from('abcd')).toString('hex')).toBe('336776c420000000');
  });

  it('gives the same checksum whatever the chunking (eight-byte path and byte path agree)', () => {
    const data = randomBytes(100_003);
    const whole = crc64(data).toString('hex');
    const pieces = new Crc64();
    for (let offset = 0; offset < data.length; offset += 7) pieces.update(data.subarray(offset, offset + 7));
    expect(pieces.digest().toString('hex')).toBe(whole);
    const bytewise = new Crc64();
    for (let offset = 0; offset < 1000; offset++) bytewise.update(data.subarray(offset, offset + 1));
    expect(bytewise.digest().toString('hex')).toBe(crc64(data.subarray(0, 1000)).toString('hex'));
  });

  it('agrees with a plain BigInt implementation at every alignment and length', () => {
    const table: bigint[] = [];
    for (let index = 0n; index < 256n; index++) {
      let value = index;
      for (let bit = 0; bit < 8; bit++)
        value = value & 1n ? (value >> 1n) ^ 0xd800000000000000n : value >> 1n;
      table.push(value);
    }
    const reference = (bytes: Uint8Array): string => {
      let crc = 0xffffffffffffffffn;
      for (const byte of bytes) crc = (table[Number((crc ^ BigInt(byte)) & 0xffn)] as bigint) ^ (crc >> 8n);
      return (crc ^ 0xffffffffffffffffn).toString(16).padStart(16, '0');
    };
    const data = randomBytes(4099);
    for (let start = 0; start < 9; start++) {
      for (const length of [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4000]) {
        const piece = data.subarray(start, start + length);
        expect(crc64(piece).toString('hex')).toBe(reference(piece));
      }
    }
  });
});
