import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { bufferPoolOf, transientBuffers } from './buffer-pool.js';
import { releaseCompressedChunk } from './lent-output-buffers.js';
import {
  combineCrc32,
  contiguousView,
  gzipImplementation,
  inBlocks,
  looksIncompressible,
  parallelGzipStage,
} from './parallel-gzip.js';

async function gzipOf(input: Uint8Array, options: Parameters<typeof parallelGzipStage>[0], chunkSize = 7919) {
  async function* chunks() {
    for (let offset = 0; offset < input.byteLength; offset += chunkSize) {
      yield input.subarray(offset, offset + chunkSize);
    }
  }
  const output: Uint8Array[] = [];
  for await (const chunk of parallelGzipStage(options)(chunks())) output.push(chunk);
  return Buffer.concat(output);
}

/** Text-like data that compresses, with repeats that cross block boundaries. */
function compressibleBytes(length: number): Buffer {
  const words = ['layer', 'config', 'manifest', 'digest', 'sha256', 'blob', 'registry', '\n', ' ', '{"a":1}'];
  const parts: string[] = [];
  let size = 0;
  let state = 12345;
  while (size < length) {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    const word = words[state % words.length]!;
    parts.push(word);
    size += word.length;
  }
  return Buffer.from(parts.join('')).subarray(0, length);
}

const implementations = ['libdeflate', 'node:zlib'] as const;

afterEach(() => {
  delete process.env.GANTRY_GZIP_IMPLEMENTATION;
});

it('uses libdeflate where it loads (the test machine has libdeflate0)', () => {
  expect(gzipImplementation()).toBe('libdeflate');
  process.env.GANTRY_GZIP_IMPLEMENTATION = 'node:zlib';
  expect(gzipImplementation()).toBe('node:zlib');
});

describe.each(implementations)('parallelGzipStage with %s', (implementation) => {
  const useImplementation = (): void => {
    process.env.GANTRY_GZIP_IMPLEMENTATION = implementation;
  };
  const blockSize = 64 * 1024;
  const cases: Array<[string, Buffer]> = [
    ['empty input', Buffer.alloc(0)],
    ['one byte', Buffer.from('x')],
    ['just under a block', compressibleBytes(blockSize - 1)],
    ['exactly one block', compressibleBytes(blockSize)],
    ['one block and a byte', compressibleBytes(blockSize + 1)],
    ['many compressible blocks', compressibleBytes(blockSize * 9 + 123)],
    ['random blocks', randomBytes(blockSize * 5 + 17)],
    [
      'random then compressible',
      Buffer.concat([randomBytes(blockSize * 2), compressibleBytes(blockSize * 3)]),
    ],
    ['zeros', Buffer.alloc(blockSize * 4 + 5)],
  ];
  for (const [name, input] of cases) {
    it(`round-trips ${name} through gunzip`, async () => {
      useImplementation();
      for (const level of [0, 1, 6, 9]) {
        const compressed = await gzipOf(input, { level, blockSize, concurrency: 3 });
        expect(compressed.subarray(0, 3)).toEqual(Buffer.from([0x1f, 0x8b, 0x08]));
        expect(gunzipSync(compressed).equals(input)).toBe(true);
      }
    });
  }

  it('compresses text nearly as well as one zlib stream, and stores random data at no cost', async () => {
    useImplementation();
    const text = compressibleBytes(1024 * 1024);
    const compressed = await gzipOf(text, { level: 6, blockSize });
    expect(compressed.byteLength).toBeLessThan(text.byteLength / 2);
    const random = randomBytes(512 * 1024);
    const stored = await gzipOf(random, { level: 6, blockSize });
    // Stored blocks cost 5 bytes per 64 KiB, plus the gzip header and trailer (once, or once per block).
    expect(stored.byteLength).toBeLessThan(random.byteLength + (random.byteLength / blockSize) * 40);
  });

  it('writes what the gzip program accepts (gzip -t) and decompresses to the same bytes', async () => {
    useImplementation();
    const directory = await mkdtemp(join(tmpdir(), 'gantry-'));
    try {
      const input = Buffer.concat([
        compressibleBytes(300_000),
        randomBytes(200_000),
        compressibleBytes(100_000),
      ]);
      const file = join(directory, 'data.gz');
      await writeFile(file, await gzipOf(input, { blockSize }));
      execFileSync('gzip', ['-t', file]);
      const output = execFileSync('gzip', ['-dc', file], { maxBuffer: 64 * 1024 * 1024 });
      expect(createHash('sha256').update(output).digest('hex')).toBe(
        createHash('sha256').update(input).digest('hex'),
      );
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  it('writes the same bytes for the same input, whatever the chunking and the concurrency', async () => {
    useImplementation();
    const input = Buffer.concat([
      compressibleBytes(700_000),
      randomBytes(300_000),
      compressibleBytes(123_457),
    ]);
    const first = await gzipOf(input, { blockSize, concurrency: 1 }, 4096);
    for (const [concurrency, chunkSize] of [
      [2, 65_536],
      [4, 1_000_003],
      [8, 77],
    ] as const) {
      expect((await gzipOf(input, { blockSize, concurrency }, chunkSize)).equals(first)).toBe(true);
    }
    expect(gunzipSync(first).equals(input)).toBe(true);
  });

  it('compresses several inputs at once (sharing pooled block buffers) without mixing their bytes', async () => {
    useImplementation();
    const inputs = [1, 2, 3].map((seed) =>
      Buffer.concat([compressibleBytes(blockSize * (3 + seed)), randomBytes(blockSize)]),
    );
    const outputs = await Promise.all(
      inputs.map((input) => gzipOf(input, { blockSize, concurrency: 2 }, 999)),
    );
    for (const [index, output] of outputs.entries())
      expect(gunzipSync(output).equals(inputs[index]!)).toBe(true);
  });

  it('refuses a level outside 0–9', () => {
    expect(() => parallelGzipStage({ level: 10 })).toThrow(/0 to 9/);
    expect(() => parallelGzipStage({ level: -1 })).toThrow(/0 to 9/);
  });

  it('stores random data even behind a small header, and compresses text and executables', () => {
    const megabyte = 1024 * 1024;
    expect(looksIncompressible(randomBytes(megabyte))).toBe(true);
    // A tar entry: a 512-byte header (mostly zeros) in front of random data.
    expect(looksIncompressible(Buffer.concat([Buffer.alloc(512), randomBytes(megabyte - 512)]))).toBe(true);
    expect(looksIncompressible(compressibleBytes(megabyte))).toBe(false);
    expect(looksIncompressible(readFileSync(process.execPath).subarray(0, megabyte))).toBe(false);
    // Half random, half text: worth compressing.
    expect(
      looksIncompressible(Buffer.concat([randomBytes(megabyte / 2), compressibleBytes(megabyte / 2)])),
    ).toBe(false);
    expect(looksIncompressible(randomBytes(1000))).toBe(false); // too short to be judged dense: compressed
  });
});

describe('combineCrc32', () => {
  it('gives the CRC-32 of two strings one after the other, as zlib computes it', () => {
    for (const [firstLength, secondLength] of [
      [0, 0],
      [5, 0],
      [0, 7],
      [1, 1],
      [1000, 65535],
      [3, 1024 * 1024 + 3],
      [123_457, 999_331],
    ] as const) {
      const first = randomBytes(firstLength);
      const second = randomBytes(secondLength);
      expect(combineCrc32(crc32(first) >>> 0, crc32(second) >>> 0, secondLength)).toBe(
        crc32(Buffer.concat([first, second])) >>> 0,
      );
    }
  });
});

describe.each(implementations)('parallelGzipStage with %s and full-size blocks', (implementation) => {
  it('stores 1 MiB random blocks (made on the thread pool) that gzip -t accepts', async () => {
    process.env.GANTRY_GZIP_IMPLEMENTATION = implementation;
    const directory = await mkdtemp(join(tmpdir(), 'gantry-'));
    try {
      const input = Buffer.concat([randomBytes(3 * 1024 * 1024 + 999), compressibleBytes(500_000)]);
      const compressed = await gzipOf(input, {}, 256 * 1024);
      expect(compressed.byteLength).toBeLessThan(input.byteLength);
      const file = join(directory, 'data.gz');
      await writeFile(file, compressed);
      execFileSync('gzip', ['-t', file]);
      expect(gunzipSync(compressed).equals(input)).toBe(true);
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});

describe('inBlocks', () => {
  const executable = readFileSync(process.execPath);

  it('takes consecutive views of one buffer as one block without copying, and copies anything else', async () => {
    const buffer = Buffer.from(executable.subarray(0, 4096));
    const other = Buffer.from(executable.subarray(4096, 4096 + 1024));
    expect(contiguousView([buffer.subarray(0, 100), buffer.subarray(100, 1024)], 1024)?.buffer).toBe(
      buffer.buffer,
    );
    expect(contiguousView([buffer.subarray(0, 100), buffer.subarray(101, 1024)], 1023)).toBeUndefined();
    expect(contiguousView([buffer.subarray(0, 100), other.subarray(0, 100)], 200)).toBeUndefined();
    expect(contiguousView([], 0)).toBeUndefined();

    // Two 1 KiB blocks from consecutive views of `buffer` (as a decompressor hands over one output
    // buffer in parts), then one from two separate buffers.
    async function* parts() {
      yield buffer.subarray(0, 300);
      yield buffer.subarray(300, 1500);
      yield buffer.subarray(1500, 2048);
      yield other.subarray(0, 512);
      yield Buffer.from(other.subarray(512, 1024));
    }
    const blocks: Uint8Array[] = [];
    for await (const block of inBlocks(parts(), 1024, 2, async (block) => block, true)) blocks.push(block);
    expect(blocks.map((block) => block.byteLength)).toEqual([1024, 1024, 1024]);
    expect(blocks[0]!.buffer).toBe(buffer.buffer);
    expect(blocks[1]!.buffer).toBe(buffer.buffer);
    expect(Buffer.from(blocks[1]!).equals(buffer.subarray(1024, 2048))).toBe(true);
    expect(blocks[2]!.buffer).not.toBe(other.buffer);
    expect(Buffer.from(blocks[2]!).equals(other)).toBe(true);
  });

  it('gives a chunk that is a whole buffer of the block pool back once its job ended, and nothing else', async () => {
    const blockSize = 8 * 1024 + 3; // A size no other test uses: this pool is this test's.
    const pool = bufferPoolOf(blockSize);
    const pooledChunks = [pool.take(), pool.take()];
    const foreign = Buffer.allocUnsafeSlow(blockSize);
    const last = pool.take(); // Handed over in part (a decompressor's last chunk): never given back.
    async function* chunks() {
      yield* pooledChunks;
      yield foreign;
      yield last.subarray(0, 100);
    }
    const finish: Array<() => void> = [];
    const started: Uint8Array[] = [];
    const blocks = inBlocks(
      chunks(),
      blockSize,
      4,
      (block) => {
        started.push(block);
        return new Promise<number>((resolve) => finish.push(() => resolve(block.byteLength)));
      },
      true,
    );
    const first = blocks.next();
    // Every block is started (4 in flight at most) before the first result is awaited.
    await new Promise((resolve) => setImmediate(resolve));
    expect(started.map((block) => block.buffer)).toEqual([
      pooledChunks[0]!.buffer,
      pooledChunks[1]!.buffer,
      foreign.buffer,
      last.buffer,
    ]);
    // Jobs still running: their buffers are not back in the pool.
    const meanwhile = pool.take();
    expect([...pooledChunks, last]).not.toContain(meanwhile);
    for (const end of finish) end();
    expect((await first).value).toBe(blockSize);
    const rest: number[] = [];
    for await (const length of blocks) rest.push(length);
    expect(rest).toEqual([blockSize, blockSize, 100]);
    const idle = [pool.take(), pool.take(), pool.take()];
    expect(idle).toContain(pooledChunks[0]);
    expect(idle).toContain(pooledChunks[1]);
    expect(idle).not.toContain(foreign);
    expect(idle).not.toContain(last);
  });

  it('writes libdeflate members into lent buffers that come back once the destination released them', async () => {
    const blockSize = 64 * 1024 + 11; // A size no other test uses: its output buffers are this test's.
    const input = compressibleBytes(blockSize * 6);
    const members: Uint8Array[] = [];
    async function* chunks() {
      yield input;
    }
    // Each member released as soon as it is read, as a destination does once it wrote it.
    for await (const member of parallelGzipStage({ blockSize, concurrency: 2 })(chunks())) {
      members.push(Buffer.from(member));
      expect(member.byteOffset).toBe(0);
      releaseCompressedChunk(member);
      members.push(member);
    }
    // Each member's copy is followed by the member: its memory was compressed into again for a later one.
    const copies = members.filter((_, index) => index % 2 === 0);
    const lent = members.filter((_, index) => index % 2 === 1);
    expect(new Set(lent.map((member) => member.buffer)).size).toBeLessThan(lent.length);
    expect(gunzipSync(Buffer.concat(copies)).equals(input)).toBe(true);
    // Not released: every member keeps a buffer of its own.
    const kept: Uint8Array[] = [];
    for await (const member of parallelGzipStage({ blockSize, concurrency: 2 })(chunks())) kept.push(member);
    expect(new Set(kept.map((member) => member.buffer)).size).toBe(kept.length);
    expect(gunzipSync(Buffer.concat(kept)).equals(input)).toBe(true);
  });

  it('notes the bytes of the blocks it does not give back to the pool, once their job ended', async () => {
    const blockSize = 8 * 1024 + 7; // A size no other test uses: this pool is this test's.
    const pool = bufferPoolOf(blockSize);
    const pooledChunk = pool.take();
    const foreign = Buffer.allocUnsafeSlow(blockSize);
    async function* chunks() {
      yield pooledChunk;
      yield foreign;
      yield Buffer.alloc(100);
    }
    const note = vi.spyOn(transientBuffers, 'note');
    try {
      const finish: Array<() => void> = [];
      const blocks = inBlocks(
        chunks(),
        blockSize,
        4,
        (block) => new Promise<number>((resolve) => finish.push(() => resolve(block.byteLength))),
        true,
      );
      const first = blocks.next();
      await new Promise((resolve) => setImmediate(resolve));
      expect(finish).toHaveLength(3);
      // Nothing noted while the jobs run.
      expect(note).not.toHaveBeenCalled();
      for (const end of finish) end();
      await first;
      for await (const _ of blocks) {
        // Consumed.
      }
      expect(note.mock.calls.map(([bytes]) => bytes)).toEqual([blockSize, 100]);
    } finally {
      note.mockRestore();
    }
  });

  it('gives nothing back without `pooled` (a block may then be kept past its job)', async () => {
    const blockSize = 8 * 1024 + 5;
    const pool = bufferPoolOf(blockSize);
    const chunk = pool.take();
    async function* chunks() {
      yield chunk;
    }
    for await (const _ of inBlocks(chunks(), blockSize, 2, async (block) => block, false)) {
      // Consumed.
    }
    expect(pool.take()).not.toBe(chunk);
  });
});
