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
});
