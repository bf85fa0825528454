import { describe, expect, it } from 'vitest';
import { BufferPool, bufferPoolOf, scratchBuffer } from './buffer-pool.js';

describe('BufferPool', () => {
  it('hands a given-back buffer out again, and keeps at most `keep` idle ones', () => {
    const pool = new BufferPool(4096, 1);
    const first = pool.take();
    const second = pool.take();
    expect(first).not.toBe(second);
    pool.give(first);
    pool.give(second); // Beyond `keep`: dropped.
    expect(pool.take()).toBe(first);
    expect(pool.take()).not.toBe(second);
  });

  it('recognises its own buffers only when a view covers all of one', () => {
    const pool = new BufferPool(4096, 4);
    const buffer = pool.take();
    expect(pool.wholeBufferOf(buffer)).toBe(buffer);
    expect(pool.wholeBufferOf(new Uint8Array(buffer.buffer, 0, 4096))).toBe(buffer);
    expect(pool.wholeBufferOf(buffer.subarray(0, 4095))).toBeUndefined();
    expect(pool.wholeBufferOf(buffer.subarray(1))).toBeUndefined();
    expect(pool.wholeBufferOf(Buffer.allocUnsafeSlow(4096))).toBeUndefined();
    expect(new BufferPool(4096, 4).wholeBufferOf(buffer)).toBeUndefined();
  });

  it('gives one process-wide pool per size, which scratch buffers come from and go back to', () => {
    const size = 12_345;
    expect(bufferPoolOf(size)).toBe(bufferPoolOf(size));
    const scratch = scratchBuffer(size, true);
    expect(bufferPoolOf(size).wholeBufferOf(scratch.buffer)).toBe(scratch.buffer);
    scratch.give();
    expect(bufferPoolOf(size).take()).toBe(scratch.buffer);
    const unpooled = scratchBuffer(size, false);
    expect(bufferPoolOf(size).wholeBufferOf(unpooled.buffer)).toBeUndefined();
  });
});
