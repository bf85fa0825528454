import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync, crc32 as zlibCrc32 } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { bufferPoolOf } from './buffer-pool.js';
import { createDecompressor, throughTransform } from './compression.js';
import {
  holdLentView,
  isLentView,
  lentViewBuffersOf,
  releaseCompressedChunk,
  unholdLentView,
} from './lent-output-buffers.js';
import {
  checkInflateStateLayout,
  gzipHeaderLength,
  type InflateStateLayout,
  IsalLayoutError,
  inflateStateLayout,
  inflateStatesAllocated,
  libisal,
  libisalCrc64,
  libisalLoadFailure,
} from './libisal-inflate.js';
import { parallelGzipStage } from './parallel-gzip.js';

function chunked(bytes: Uint8Array, size: number): AsyncIterable<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length; offset += size)
    parts.push(bytes.subarray(offset, offset + size));
  return Readable.from(parts, { objectMode: true });
}

/** Compressible bytes that look like a layer: runs, text and noise. */
function layerLike(length: number, seed = 1): Buffer {
  const bytes = Buffer.alloc(length);
  let state = seed;
  for (let index = 0; index < length; index += 1) {
    state = (state * 1103515245 + 12345) >>> 0;
    bytes[index] = index % 4096 < 1024 ? (state >>> 24) & 0xff : (index * 7 + (index >> 9)) % 61;
  }
  return bytes;
}

/** A gzip member with every optional header field (extra, name, comment, header CRC). */
function memberWithAllHeaderFields(plain: Buffer): Buffer {
  const plainMember = gzipSync(plain);
  const extra = Buffer.alloc(300, 0x45);
  const header = Buffer.concat([
    Buffer.from([0x1f, 0x8b, 8, 4 | 8 | 16 | 2, 1, 2, 3, 4, 0, 3]),
    Buffer.from([extra.length & 0xff, extra.length >> 8]),
    extra,
    Buffer.from('layer.tar\0'),
    Buffer.from('a comment\0'),
  ]);
  const headerCrc = Buffer.alloc(2);
  headerCrc.writeUInt16LE(zlibCrc32(header) & 0xffff);
  return Buffer.concat([header, headerCrc, plainMember.subarray(10)]);
}

type Mode = 'fresh' | 'lent' | 'pooled';

const optionsOf = (mode: Mode) =>
  mode === 'pooled' ? { pooledOutput: true } : mode === 'lent' ? { lentOutput: true } : {};

/** The bytes decompressed (released as a reader would), or the error that ended the stream. */
async function gunzip(
  input: Uint8Array,
  inputChunkSize: number,
  mode: Mode = 'fresh',
  chunkSize = 64 * 1024,
): Promise<{ output: Buffer; failure?: { code?: string; message: string } }> {
  const parts: Buffer[] = [];
  try {
    for await (const chunk of throughTransform(
      chunked(input, inputChunkSize),
      createDecompressor('gzip', chunkSize, optionsOf(mode)),
    )) {
      parts.push(Buffer.from(chunk));
      if (mode === 'lent') releaseCompressedChunk(chunk);
      if (mode === 'pooled' && chunk.byteLength === chunkSize) bufferPoolOf(chunkSize).give(chunk as Buffer);
    }
    return { output: Buffer.concat(parts) };
  } catch (failure) {
    return { output: Buffer.concat(parts), failure: failure as { code?: string; message: string } };
  }
}

const implementations = ['libisal', 'node:zlib'] as const;

afterEach(() => {
  delete process.env.GANTRY_GZIP_DECOMPRESSION;
});

function use(implementation: (typeof implementations)[number]): void {
  if (implementation === 'node:zlib') process.env.GANTRY_GZIP_DECOMPRESSION = 'node:zlib';
  else delete process.env.GANTRY_GZIP_DECOMPRESSION;
}

describe('libisal (the real library)', () => {
  it('loads, and its struct inflate_state passed the layout check', () => {
    expect(libisal()).not.toBeNull();
    expect(libisalLoadFailure()).toBeUndefined();
  });

  it('has the layout of the installed igzip_lib.h (a C program compiled against it)', () => {
    expect(existsSync('/usr/include/isa-l/igzip_lib.h')).toBe(true);
    const directory = mkdtempSync(join(tmpdir(), 'gantry-isal-'));
    try {
      const fields: Array<[keyof InflateStateLayout, string]> = [
        ['nextOut', 'next_out'],
        ['availOut', 'avail_out'],
        ['totalOut', 'total_out'],
        ['nextIn', 'next_in'],
        ['readIn', 'read_in'],
        ['availIn', 'avail_in'],
        ['readInLength', 'read_in_length'],
        ['litHuffCode', 'lit_huff_code'],
        ['blockState', 'block_state'],
        ['dictLength', 'dict_length'],
        ['bfinal', 'bfinal'],
        ['crcFlag', 'crc_flag'],
        ['crc', 'crc'],
        ['histBits', 'hist_bits'],
        ['tmpInSize', 'tmp_in_size'],
        ['tmpOutValid', 'tmp_out_valid'],
        ['tmpOutBuffer', 'tmp_out_buffer'],
      ];
      const source = [
        '#include <stddef.h>',
        '#include <stdio.h>',
        '#include <isa-l/igzip_lib.h>',
        'int main(void) {',
        '  printf("size %zu\\n", sizeof(struct inflate_state));',
        ...fields.map(
          ([name, field]) => `  printf("${name} %zu\\n", offsetof(struct inflate_state, ${field}));`,
        ),
        '  printf("ISAL_BLOCK_FINISH %d ISAL_GZIP_NO_HDR_VER %d\\n", ISAL_BLOCK_FINISH, ISAL_GZIP_NO_HDR_VER);',
        '  return 0;',
        '}',
      ].join('\n');
      writeFileSync(join(directory, 'layout.c'), source);
      const compiled = spawnSync('gcc', ['-o', join(directory, 'layout'), join(directory, 'layout.c')], {
        encoding: 'utf8',
      });
      expect(compiled.status, compiled.stderr).toBe(0);
      const printed = spawnSync(join(directory, 'layout'), { encoding: 'utf8' }).stdout;
      const expected = [
        `size ${inflateStateLayout.size}`,
        ...fields.map(([name]) => `${name} ${inflateStateLayout[name]}`),
        'ISAL_BLOCK_FINISH 5 ISAL_GZIP_NO_HDR_VER 6',
      ];
      expect(printed.trim().split('\n')).toEqual(expected);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('fails loudly on any other layout', () => {
    expect(checkInflateStateLayout(inflateStateLayout)).toBe(true);
    const wrong: Array<Partial<InflateStateLayout>> = [
      { blockState: inflateStateLayout.blockState + 4 },
      { crc: inflateStateLayout.crc - 4 },
      { totalOut: inflateStateLayout.totalOut + 4 },
    ];
    for (const change of wrong) {
      expect(
        () => checkInflateStateLayout({ ...inflateStateLayout, ...change }),
        JSON.stringify(change),
      ).toThrow(IsalLayoutError);
    }
  });

  it('reuses its states stream after stream, also after a stream is destroyed with a call running', async () => {
    const plain = layerLike(600_000);
    const gzipped = gzipSync(plain);
    expect((await gunzip(gzipped, 50_000)).output.equals(plain)).toBe(true);
    const before = inflateStatesAllocated();
    for (let round = 0; round < 20; round += 1) {
      expect((await gunzip(gzipped, 50_000)).output.equals(plain)).toBe(true);
    }
    for (let round = 0; round < 5; round += 1) {
      const decompressor = createDecompressor('gzip', 4096);
      for await (const _chunk of throughTransform(chunked(gzipped, 100_000), decompressor)) break;
      expect(decompressor.destroyed).toBe(true);
    }
    expect((await gunzip(gzipped, 50_000)).output.equals(plain)).toBe(true);
    expect(inflateStatesAllocated()).toBeLessThanOrEqual(Math.max(before, 4));
    const context = libisal()!.gunzipContext();
    const running = context.decompress(Buffer.alloc(1024), gzipped);
    context.free();
    await expect(running).resolves.toEqual([1024, expect.any(Number)]);
    await expect(context.decompress(Buffer.alloc(1024), gzipped)).rejects.toThrow('freed');
  });

  it('reads headers as Go does', () => {
    const member = memberWithAllHeaderFields(Buffer.from('x'));
    const length = member.byteLength - (gzipSync(Buffer.from('x')).byteLength - 10);
    expect(gzipHeaderLength(member)).toBe(length);
    for (let cut = 0; cut < length; cut += 1)
      expect(gzipHeaderLength(member.subarray(0, cut))).toBeUndefined();
    const badCrc = Buffer.from(member);
    badCrc[length - 1] = badCrc[length - 1]! ^ 1;
    expect(() => gzipHeaderLength(badCrc)).toThrow('invalid header');
    const longName = Buffer.concat([
      Buffer.from([0x1f, 0x8b, 8, 8, 0, 0, 0, 0, 0, 3]),
      Buffer.alloc(512, 0x41),
    ]);
    expect(() => gzipHeaderLength(longName)).toThrow('invalid header');
    expect(() => gzipHeaderLength(Buffer.from([0x1f, 0x8b, 9, 0, 0, 0, 0, 0, 0, 3]))).toThrow(
      'invalid header',
    );
  });
});

describe("libisal's CRC-64/ISO (crc64_iso_refl)", () => {
  it("gives Go's hash/crc64 ISO checksums, continued from a checksum given back as the seed", () => {
    const crc = libisalCrc64();
    expect(crc).not.toBeNull();
    const text = Buffer.from('The fugacity of a constituent in a mixture of gases at a given temperature');
    const hex = (value: bigint | number) => BigInt(value).toString(16).padStart(16, '0');
    // Go: crc64.Checksum([]byte("123456789"), crc64.MakeTable(crc64.ISO)).
    expect(hex(crc!(0, Buffer.from('123456789'), 9))).toBe('b90956c775a41001');
    expect(hex(crc!(0, Buffer.alloc(0), 0))).toBe('0000000000000000');
    const whole = crc!(0, text, text.length);
    let seed: bigint | number = 0;
    for (let offset = 0; offset < text.length; offset += 7) {
      const piece = text.subarray(offset, offset + 7);
      seed = crc!(seed, piece, piece.length);
    }
    expect(hex(seed)).toBe(hex(whole));
  });
});

describe('gzip decompression, ISA-L and node:zlib alike', () => {
  const plain = layerLike(700_000);
  const gzipped = gzipSync(plain);

  for (const implementation of implementations) {
    describe(implementation, () => {
      it('decompresses one member and several, whatever the input and output chunks', async () => {
        use(implementation);
        const several = Buffer.concat([
          gzipSync(plain.subarray(0, 1)),
          gzipSync(plain.subarray(1, 200_000), { level: 1 }),
          gzipSync(plain.subarray(200_000, 200_000)),
          gzipSync(plain.subarray(200_000), { level: 9 }),
        ]);
        for (const mode of ['fresh', 'lent', 'pooled'] as const) {
          for (const [input, inputChunk] of [
            [gzipped, 128 * 1024],
            [gzipped, 1000],
            [several, 7],
            [several, several.length],
          ] as const) {
            const result = await gunzip(input, inputChunk, mode, mode === 'pooled' ? 64 * 1024 : 10_001);
            expect(result.failure, `${mode} ${inputChunk}`).toBeUndefined();
            expect(result.output.equals(plain), `${mode} ${inputChunk}`).toBe(true);
          }
        }
      });

      it('reads headers with every optional field, split anywhere', async () => {
        use(implementation);
        const small = plain.subarray(0, 3000);
        const stream = Buffer.concat([gzipSync(small), memberWithAllHeaderFields(small)]);
        const expected = Buffer.concat([small, small]);
        const split = gzipSync(small).byteLength;
        for (let cut = split; cut < split + 340; cut += 1) {
          const parts = [stream.subarray(0, cut), stream.subarray(cut)];
          const output: Buffer[] = [];
          for await (const chunk of throughTransform(
            Readable.from(parts, { objectMode: true }),
            createDecompressor('gzip', 4096),
          )) {
            output.push(Buffer.from(chunk));
          }
          expect(Buffer.concat(output).equals(expected), `cut at ${cut}`).toBe(true);
        }
      });

      it('reads what Gantry’s parallel gzip writes (a member per block)', async () => {
        use(implementation);
        const input = layerLike(3 * 1024 * 1024 + 17, 7);
        const members: Uint8Array[] = [];
        for await (const chunk of parallelGzipStage({ level: 1 })(chunked(input, 1024 * 1024))) {
          members.push(Buffer.from(chunk));
        }
        const result = await gunzip(Buffer.concat(members), 128 * 1024, 'pooled', 1024 * 1024);
        expect(result.failure).toBeUndefined();
        expect(result.output.equals(input)).toBe(true);
      });

      it('rejects corrupt and truncated data with stable codes, and a wrong CRC-32 or length', async () => {
        use(implementation);
        const corrupt = Buffer.from(gzipped);
        for (let offset = 400; offset < 440; offset += 1) corrupt[offset] = 0xff - corrupt[offset]!;
        const wrongCrc = Buffer.from(gzipped);
        wrongCrc[wrongCrc.length - 8] = wrongCrc[wrongCrc.length - 8]! ^ 1;
        const wrongLength = Buffer.from(gzipped);
        wrongLength[wrongLength.length - 4] = wrongLength[wrongLength.length - 4]! ^ 1;
        const cases: Array<[string, Buffer, string]> = [
          ['corrupt', corrupt, 'Z_DATA_ERROR'],
          ['wrong CRC-32', wrongCrc, 'Z_DATA_ERROR'],
          ['wrong length', wrongLength, 'Z_DATA_ERROR'],
          ['trailing garbage', Buffer.concat([gzipped, Buffer.from('not gzip at all')]), 'Z_DATA_ERROR'],
          ['empty', Buffer.alloc(0), 'Z_BUF_ERROR'],
          ['truncated', gzipped.subarray(0, gzipped.length - 20_000), 'Z_BUF_ERROR'],
          ['truncated trailer', gzipped.subarray(0, gzipped.length - 3), 'Z_BUF_ERROR'],
          ['truncated second header', Buffer.concat([gzipped, gzipped.subarray(0, 5)]), 'Z_BUF_ERROR'],
          ['truncated second member', Buffer.concat([gzipped, gzipped.subarray(0, 5000)]), 'Z_BUF_ERROR'],
        ];
        for (const [name, input, code] of cases) {
          for (const mode of ['fresh', 'lent', 'pooled'] as const) {
            for (const inputChunk of [997, 128 * 1024]) {
              const result = await gunzip(input, inputChunk, mode);
              expect(result.failure?.code, `${name} ${mode} ${inputChunk}`).toBe(code);
            }
          }
        }
      });
    });
  }

  it('treats trailing zeros as Go does (an invalid header) with ISA-L; node:zlib ignores them', async () => {
    const padded = Buffer.concat([gzipped, Buffer.alloc(700)]);
    use('libisal');
    expect((await gunzip(padded, 4096)).failure?.code).toBe('Z_DATA_ERROR');
    use('node:zlib');
    const fallback = await gunzip(padded, 4096);
    expect(fallback.failure).toBeUndefined();
    expect(fallback.output.equals(plain)).toBe(true);
  });
});

describe('ISA-L output buffers', () => {
  it('pooled: full pooled chunks (the last one shorter)', async () => {
    const chunkSize = 32 * 1024 + 3;
    const plain = layerLike(5 * chunkSize + 100);
    const sizes: number[] = [];
    for await (const chunk of throughTransform(
      chunked(gzipSync(plain), 5000),
      createDecompressor('gzip', chunkSize, { pooledOutput: true }),
    )) {
      sizes.push(chunk.byteLength);
    }
    expect(sizes).toEqual([chunkSize, chunkSize, chunkSize, chunkSize, chunkSize, 100]);
  });

  it('lent: never writes into a buffer before every view of it is released and unheld', async () => {
    const chunkSize = 16 * 1024 + 11; // A size no other test uses: this pool is this test's.
    const plain = layerLike(6 * chunkSize + 5);
    const gzipped = gzipSync(plain);
    const pool = lentViewBuffersOf(chunkSize);
    const kept: Array<{ view: Uint8Array; copy: Buffer }> = [];
    let held: Uint8Array | undefined;
    for await (const chunk of throughTransform(
      chunked(gzipped, 3000),
      createDecompressor('gzip', chunkSize, { lentOutput: true }),
    )) {
      expect(isLentView(chunk)).toBe(true);
      kept.push({ view: chunk, copy: Buffer.from(chunk) });
      // The first view is held (as an off-thread hash holds it) and released: its buffer stays out.
      if (!held) {
        held = chunk;
        holdLentView(chunk);
      }
      releaseCompressedChunk(chunk);
    }
    expect(Buffer.concat(kept.map(({ copy }) => copy)).equals(plain)).toBe(true);
    // The next stream writes into the buffers given back, never into the held one.
    const again = await gunzip(gzipped, 3000, 'lent', chunkSize);
    expect(again.output.equals(plain)).toBe(true);
    const first = kept[0]!;
    expect(Buffer.from(first.view).equals(first.copy)).toBe(true);
    // Unheld, it comes back.
    const idleHeld = pool.idle;
    unholdLentView(held!);
    expect(pool.idle).toBe(idleHeld + 1);
  });
});
