import { describe, expect, it } from 'vitest';
import { TarStreamReader } from './tar-reader.js';

/** One ustar header block for a regular file of `size` bytes, with `checksum` written (computed when not given). */
function header(name: Buffer, size: number, checksum?: (block: Buffer) => number): Buffer {
  const block = Buffer.alloc(512);
  name.copy(block, 0);
  block.write('0000644\0', 100, 'latin1');
  block.write('0000000\0', 108, 'latin1');
  block.write('0000000\0', 116, 'latin1');
  block.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  block.write('00000000000\0', 136, 'latin1');
  block.write('0', 156, 'latin1');
  block.write('ustar\0' + '00', 257, 'latin1');
  block.fill(0x20, 148, 156);
  const sum = checksum ? checksum(block) : unsignedSum(block);
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

function unsignedSum(block: Buffer): number {
  let sum = 0;
  for (const byte of block) sum += byte;
  return sum;
}

function signedSum(block: Buffer): number {
  let sum = 0;
  for (const byte of block) sum += byte > 127 ? byte - 256 : byte;
  return sum;
}

async function names(tar: Buffer): Promise<string[]> {
  const reader = new TarStreamReader(
    (async function* () {
      yield tar;
    })(),
  );
  const found: string[] = [];
  for (;;) {
    const entry = await reader.next();
    if (entry === undefined) return found;
    found.push(entry.header.nameBytes.toString('latin1'));
  }
}

const end = Buffer.alloc(1024);
// A name with bytes above 127 (Latin-1 "é"): its signed and unsigned sums differ.
const highName = Buffer.from('caf\xe9.txt', 'latin1');

describe('TarStreamReader header checksums', () => {
  it('accepts the unsigned (POSIX) checksum', async () => {
    expect(await names(Buffer.concat([header(highName, 0), end]))).toEqual(['caf\xe9.txt']);
  });

  it('accepts the signed checksum some old tars wrote', async () => {
    const block = header(highName, 0, signedSum);
    expect(
      signedSum(Buffer.concat([block.subarray(0, 148), Buffer.alloc(8, 0x20), block.subarray(156)])),
    ).not.toBe(
      unsignedSum(Buffer.concat([block.subarray(0, 148), Buffer.alloc(8, 0x20), block.subarray(156)])),
    );
    expect(await names(Buffer.concat([block, end]))).toEqual(['caf\xe9.txt']);
  });

  it('refuses a header whose checksum is neither', async () => {
    const block = header(highName, 0, (value) => unsignedSum(value) + 1);
    await expect(names(Buffer.concat([block, end]))).rejects.toThrow(/bad header checksum/);
    const corrupted = header(Buffer.from('plain.txt'), 0);
    corrupted[0] = 0x71; // the name changed after the checksum was computed
    await expect(names(Buffer.concat([corrupted, end]))).rejects.toThrow(/bad header checksum/);
  });
});
