import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import {
  Crc64,
  crc64,
  crc64Implementation,
  crc64UpdateJs,
  crc64UsesWasm,
  crc64WasmModuleBytes,
  wasmMinimumLength,
} from './crc64.js';

type Crc64Module = typeof import('./crc64.js');

/** A fresh instance of the module with `GANTRY_CRC64_IMPLEMENTATION` set to `implementation`. */
async function withImplementation<T>(
  implementation: 'isa-l' | 'webassembly' | 'javascript',
  run: (module: Crc64Module) => T | Promise<T>,
): Promise<T> {
  vi.resetModules();
  if (implementation !== 'isa-l') vi.stubEnv('GANTRY_CRC64_IMPLEMENTATION', implementation);
  try {
    const fresh = await import('./crc64.js');
    expect(fresh.crc64Implementation()).toBe(implementation);
    return await run(fresh);
  } finally {
    vi.unstubAllEnvs();
    vi.resetModules();
  }
}

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

  // Go's hash/crc64 golden values for the ISO table (crc64_test.go); several are longer than
  // `wasmMinimumLength`, so both implementations are checked against them.
  const goGolden: Array<[string, string]> = [
    ['0000000000000000', ''],
    ['3420000000000000', 'a'],
    ['36c4200000000000', 'ab'],
    ['3776c42000000000', 'abc'],
    ['336776c420000000', 'abcd'],
    ['32d36776c4200000', 'abcde'],
    ['3002d36776c42000', 'abcdef'],
    ['31b002d36776c420', 'abcdefg'],
    ['0e21b002d36776c4', 'abcdefgh'],
    ['8b6e21b002d36776', 'abcdefghi'],
    ['7f5b6e21b002d367', 'abcdefghij'],
    ['8ec0e7c835bf9cdf', 'Discard medicine more than two years old.'],
    ['c7db1759e2be5ab4', 'He who has a shady past knows that nice guys finish last.'],
    ['fbf9d9603a6fa020', "I wouldn't marry him with a ten foot pole."],
    ['eafc4211a6daa0ef', 'Free! Free!/A trip/to Mars/for 900/empty jars/Burma Shave'],
    ['3e05b21c7a4dc4da', 'The days of the digital watch are numbered.  -Tom Stoppard'],
    ['5255866ad6ef28a6', "Nepal premier won't resign."],
    ['8a79895be1e9c361', 'For every action there is an equal and opposite government program.'],
    ['8878963a649d4916', "His money is twice tainted: 'taint yours and 'taint mine."],
    [
      'a7b9d53ea87eb82f',
      'There is no reason for any individual to have a computer in their home. -Ken Olsen, 1977',
    ],
    ['db6805c0966a2f9c', "It's a tiny change to the code and not completely disgusting. - Bob Manchek"],
    ['f3553c65dacdadd2', 'size:  a.out:  bad magic'],
    ['9d5e034087a676b9', 'The major problem is with sendmail.  -Mark Horton'],
    ['a6db2d7f8da96417', 'Give me a rock, paper and scissors and I will move the world.  CCFestoon'],
    ['325e00cd2fe819f9', 'If the enemy is within range, then so are you.'],
    ['88c6600ce58ae4c6', "It's well we cannot hear the screams/That we create in others' dreams."],
    ['28c4a3f3b769e078', "You remind me of a TV show, but that's all right: I watch it anyway."],
    ['a698a34c9d9f1dca', 'C is as portable as Stonehedge!!'],
    [
      'f6c1e2a8c26c5cfc',
      'Even if I could be Shakespeare, I think I should still choose to be Faraday. - A. Huxley',
    ],
    [
      '0d402559dfe9b70c',
      'The fugacity of a constituent in a mixture of gases at a given temperature is proportional to its mole fraction.  Lewis-Randall Rule',
    ],
    ['db6efff26aa94946', 'How can you write a big system without C++?  -Paul Glick'],
    ['b90956c775a41001', '123456789'],
  ];

  /** The JavaScript implementation alone, as hex. */
  const javascriptCrc = (bytes: Uint8Array): string => {
    const [high, low] = crc64UpdateJs(0xffffffff, 0xffffffff, bytes);
    return `${(~high >>> 0).toString(16).padStart(8, '0')}${(~low >>> 0).toString(16).padStart(8, '0')}`;
  };

  it("matches all of Go's golden ISO values, in every implementation", async () => {
    for (const implementation of ['isa-l', 'webassembly', 'javascript'] as const) {
      await withImplementation(implementation, (fresh) => {
        for (const [expected, text] of goGolden) {
          expect(fresh.crc64(Buffer.from(text)).toString('hex'), `${implementation}: ${text}`).toBe(expected);
          expect(javascriptCrc(Buffer.from(text)), text).toBe(expected);
          // The longer ones once more unaligned in a larger buffer, and through `Crc64` in two pieces.
          const padded = Buffer.concat([Buffer.from('xyz'), Buffer.from(text)]).subarray(3);
          expect(fresh.crc64(padded).toString('hex'), `${implementation}: ${text}`).toBe(expected);
          const split = Math.floor(text.length / 3);
          const pieces = new fresh.Crc64().update(padded.subarray(0, split)).update(padded.subarray(split));
          expect(pieces.digest().toString('hex'), `${implementation}: ${text}`).toBe(expected);
        }
      });
    }
  });

  it('uses ISA-L here (libisal2 is installed), with WebAssembly available beside it', () => {
    expect(crc64Implementation()).toBe('isa-l');
    expect(crc64UsesWasm()).toBe(true);
    const api = (globalThis as { WebAssembly?: { validate: (bytes: Uint8Array) => boolean } }).WebAssembly;
    expect(api?.validate(crc64WasmModuleBytes())).toBe(true);
  });

  /** Random data of many lengths and alignments, `crc64` of each piece against the JavaScript loop. */
  const checkLengths = (fresh: Crc64Module, label: string): void => {
    const data = randomBytes(200_000);
    const lengths = [
      wasmMinimumLength - 1,
      wasmMinimumLength,
      wasmMinimumLength + 1,
      79,
      80,
      81,
      95,
      96,
      97,
      127,
      128,
      129,
      255,
      1000,
      4095,
      4096,
      4097,
      65_535,
      65_536,
      65_537,
      131_072 + 15,
      199_000,
    ];
    for (let start = 0; start < 17; start++) {
      for (const length of lengths) {
        const piece = data.subarray(start, start + length);
        expect(fresh.crc64(piece).toString('hex'), `${label}: start ${start}, length ${length}`).toBe(
          javascriptCrc(piece),
        );
      }
    }
    // Random lengths too.
    for (let round = 0; round < 300; round++) {
      const start = Math.floor(Math.random() * 64);
      const length = Math.floor(Math.random() * 20_000);
      const piece = data.subarray(start, start + length);
      expect(fresh.crc64(piece).toString('hex'), `${label}: start ${start}, length ${length}`).toBe(
        javascriptCrc(piece),
      );
    }
  };

  it('gives what the JavaScript implementation gives, for random data of many lengths and alignments (ISA-L)', () => {
    checkLengths({ crc64 } as Crc64Module, 'isa-l');
  });

  it('gives what the JavaScript implementation gives, for random data of many lengths and alignments (WebAssembly)', async () => {
    await withImplementation('webassembly', (fresh) => checkLengths(fresh, 'webassembly'));
  });

  /** Updates of mixed sizes (some below `wasmMinimumLength`, so taken by the JavaScript loop) against the whole. */
  const checkMixed = (fresh: Crc64Module): void => {
    const data = randomBytes(300_000);
    const whole = javascriptCrc(data);
    const sizes = [1, 63, 64, 65, 17, 70_000, 3, 128, 150_000];
    const mixed = new fresh.Crc64();
    let offset = 0;
    for (let index = 0; offset < data.length; index++) {
      const size = sizes[index % sizes.length] as number;
      mixed.update(data.subarray(offset, offset + size));
      offset += size;
    }
    expect(mixed.digest().toString('hex')).toBe(whole);
  };

  it('carries the state between calls whichever implementation each call takes (ISA-L and JavaScript)', () => {
    checkMixed({ Crc64 } as Crc64Module);
  });

  it('carries the state between calls whichever implementation each call takes (WebAssembly and JavaScript)', async () => {
    await withImplementation('webassembly', checkMixed);
  });

  it('carries states whose checksum is at or above 2^53 (ISA-L gives those as a BigInt)', () => {
    // Find short inputs whose checksums fall on each side of 2^53 and chain them.
    const samples = Array.from({ length: 64 }, (_, index) => randomBytes(100 + index));
    const big = samples.filter((sample) => crc64(sample).readBigUInt64BE(0) >= 2n ** 53n);
    const small = samples.filter((sample) => crc64(sample).readBigUInt64BE(0) < 2n ** 53n);
    expect(big.length).toBeGreaterThan(0);
    const chained = new Crc64();
    for (const sample of [...big.slice(0, 3), ...small.slice(0, 3), ...big.slice(3, 6)])
      chained.update(sample);
    const all = Buffer.concat([...big.slice(0, 3), ...small.slice(0, 3), ...big.slice(3, 6)]);
    expect(chained.digest().toString('hex')).toBe(javascriptCrc(all));
  });

  it('uses JavaScript only with GANTRY_CRC64_IMPLEMENTATION=javascript, with the same results', async () => {
    await withImplementation('javascript', (fresh) => {
      expect(fresh.crc64UsesWasm()).toBe(false);
      const data = randomBytes(10_000);
      expect(fresh.crc64(data).toString('hex')).toBe(crc64(data).toString('hex'));
    });
  });
});
