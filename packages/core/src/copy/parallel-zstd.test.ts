import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createDecompressor, throughTransform } from './compression.js';
import { zstdParametersOf } from './libzstd.js';
import { parallelZstdAvailable, parallelZstdStage } from './parallel-zstd.js';

async function zstdOf(
  input: Uint8Array,
  options: Parameters<typeof parallelZstdStage>[0],
  chunkSize = 65_521,
) {
  async function* chunks() {
    for (let offset = 0; offset < input.byteLength; offset += chunkSize) {
      yield input.subarray(offset, offset + chunkSize);
    }
  }
  const output: Uint8Array[] = [];
  for await (const chunk of parallelZstdStage(options)(chunks())) output.push(chunk);
  return Buffer.concat(output);
}

/** Decompressed by Gantry's own zstd reader (zstd-napi), as a copy reads layers. */
async function gantryDecompress(compressed: Buffer): Promise<Buffer> {
  const output: Uint8Array[] = [];
  async function* once() {
    yield compressed;
  }
  for await (const chunk of throughTransform(once(), createDecompressor('zstd'))) output.push(chunk);
  return Buffer.concat(output);
}

const executable = readFileSync(process.execPath);
const frameSize = 256 * 1024;

afterEach(() => {
  delete process.env.GANTRY_ZSTD_IMPLEMENTATION;
});

describe('parallelZstdStage', () => {
  it('loads the system libzstd (the test machine has libzstd1), and not when another implementation is named', () => {
    expect(parallelZstdAvailable()).toBe(true);
    process.env.GANTRY_ZSTD_IMPLEMENTATION = 'zstd-napi';
    expect(parallelZstdAvailable()).toBe(false);
    process.env.GANTRY_ZSTD_IMPLEMENTATION = 'none';
    expect(parallelZstdAvailable()).toBe(false);
  });

  const cases: Array<[string, Buffer]> = [
    ['empty input', Buffer.alloc(0)],
    ['one byte', Buffer.from('z')],
    ['exactly one frame', executable.subarray(0, frameSize)],
    ['many frames and a bit', executable.subarray(0, frameSize * 7 + 99)],
    ['random data', randomBytes(frameSize * 3 + 5)],
  ];
  for (const [name, input] of cases) {
    it(`round-trips ${name} through Gantry's zstd reader and the zstd program`, async () => {
      const compressed = await zstdOf(input, { frameSize, concurrency: 3 });
      expect(compressed.subarray(0, 4)).toEqual(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]));
      expect((await gantryDecompress(compressed)).equals(input)).toBe(true);
      const directory = await mkdtemp(join(tmpdir(), 'gantry-zstd-'));
      try {
        const file = join(directory, 'data.zst');
        await writeFile(file, compressed);
        execFileSync('zstd', ['-q', '-t', file]);
        const output = execFileSync('zstd', ['-q', '-d', '-c', file], { maxBuffer: 64 * 1024 * 1024 });
        expect(output.equals(input)).toBe(true);
      } finally {
        await rm(directory, { recursive: true, force: true });
      }
    });
  }

  it('writes one frame per block, about as small as one zstd stream', async () => {
    const input = executable.subarray(0, 4 * 1024 * 1024);
    const compressed = await zstdOf(input, {});
    const single = execFileSync('zstd', ['-3', '-q', '-c'], { input, maxBuffer: 64 * 1024 * 1024 });
    // libzstd's level 3 in 4 MiB frames: about the size of zstd -3 over the whole input, smaller than -2.
    expect(compressed.byteLength).toBeLessThan(single.byteLength * 1.01);
    const levelTwo = execFileSync('zstd', ['-2', '-q', '-c'], { input, maxBuffer: 64 * 1024 * 1024 });
    expect(compressed.byteLength).toBeLessThan(levelTwo.byteLength);
    const framed = await zstdOf(input, { frameSize: 1024 * 1024 });
    // Four frames: four frame magic numbers where one stream has one.
    let frames = 0;
    for (let offset = framed.indexOf(0x28); offset >= 0; offset = framed.indexOf(0x28, offset + 1)) {
      if (framed.readUInt32LE(offset) === 0xfd2fb528) frames += 1;
    }
    expect(frames).toBeGreaterThanOrEqual(4);
  });

  it('writes the same bytes for the same input, whatever the chunking and the concurrency', async () => {
    const input = Buffer.concat([executable.subarray(0, frameSize * 5), randomBytes(frameSize + 3)]);
    const first = await zstdOf(input, { frameSize, concurrency: 1 }, 4096);
    for (const [concurrency, chunkSize] of [
      [2, 65_536],
      [5, 1_000_003],
      [8, 333],
    ] as const) {
      expect((await zstdOf(input, { frameSize, concurrency }, chunkSize)).equals(first)).toBe(true);
    }
  });

  it('compresses several layers at once (sharing pooled block buffers) without mixing their bytes', async () => {
    const inputs = [0, 1, 2, 3].map((index) =>
      Buffer.concat([
        executable.subarray(index * frameSize, (index + 6) * frameSize),
        randomBytes(frameSize),
      ]),
    );
    const outputs = await Promise.all(
      inputs.map((input) => zstdOf(input, { frameSize, concurrency: 2 }, 1000)),
    );
    for (const [index, output] of outputs.entries()) {
      expect((await gantryDecompress(output)).equals(inputs[index]!)).toBe(true);
    }
  });

  it('hands out each frame in a buffer of its own size, not a view of the bound-sized scratch', async () => {
    // Frames of compressible data are a fraction of the scratch (zstd's bound, a bit over the frame
    // size): a view would keep the whole scratch alive downstream instead of giving it back to the pool.
    const text = Array.from({ length: 80_000 }, (_, index) => `line ${index} of a compressible layer\n`);
    const input = Buffer.from(text.join('')).subarray(0, frameSize * 6);
    const frames: Uint8Array[] = [];
    async function* chunks() {
      yield input;
    }
    for await (const frame of parallelZstdStage({ frameSize, concurrency: 2 })(chunks())) frames.push(frame);
    expect(frames.length).toBe(6);
    for (const frame of frames) {
      expect(frame.byteLength).toBeLessThan(frameSize * 0.8);
      // Node.js puts buffers under 4 KiB in a shared 8 KiB slab; larger ones have their own memory.
      expect(frame.buffer.byteLength).toBeLessThanOrEqual(Math.max(8192, frame.byteLength));
    }
    expect((await gantryDecompress(Buffer.concat(frames))).equals(input)).toBe(true);
  });

  it('writes frames no larger than the zstd program at the same level (what skopeo is measured against)', async () => {
    const input = executable.subarray(0, 4 * 1024 * 1024);
    const compressed = await zstdOf(input, { frameSize: 4 * 1024 * 1024 });
    const cli = execFileSync('zstd', ['-3', '--no-check', '-q', '-c'], {
      input,
      maxBuffer: 64 * 1024 * 1024,
    });
    // Equal but for a few bytes of frame header (2^16 hash and 2^15 chain entries would write ~1 % more).
    expect(compressed.byteLength).toBeLessThanOrEqual(cli.byteLength + 16);
  });

  it("compresses every level with libzstd's own parameters", async () => {
    expect(zstdParametersOf(3)).toEqual([[100, 3]]);
    expect(zstdParametersOf(5)).toEqual([[100, 5]]);
    const input = executable.subarray(0, 1024 * 1024);
    const compressed = await zstdOf(input, { level: 5, frameSize: 1024 * 1024 });
    const cli = execFileSync('zstd', ['-5', '-q', '-c'], { input, maxBuffer: 64 * 1024 * 1024 });
    expect(Math.abs(compressed.byteLength - cli.byteLength)).toBeLessThan(cli.byteLength * 0.005);
  });

  it('refuses a level zstd does not have', () => {
    expect(() => parallelZstdStage({ level: 23 })).toThrow(/-7 to 22/);
    expect(() => parallelZstdStage({ level: 1.5 })).toThrow(/-7 to 22/);
  });
});
