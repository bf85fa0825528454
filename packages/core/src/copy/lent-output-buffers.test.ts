import { describe, expect, it } from 'vitest';
import { LentOutputBuffers, lentOutputBuffersOf, releaseCompressedChunk } from './lent-output-buffers.js';

describe('LentOutputBuffers', () => {
  it('takes a buffer back through the very chunk it lent, once, and compresses into it again', () => {
    const pool = new LentOutputBuffers(1024, 4);
    const buffer = pool.take();
    const chunk = pool.lend(buffer, 100);
    expect(chunk.byteLength).toBe(100);
    expect(chunk.buffer).toBe(buffer.buffer);
    // Another view of the same memory is not the chunk lent: ignored.
    pool.release(buffer.subarray(0, 100));
    expect(pool.idle).toBe(0);
    pool.release(chunk);
    expect(pool.idle).toBe(1);
    expect(pool.take()).toBe(buffer);
    // A stale chunk released again after its buffer was lent anew does not take the new chunk's place.
    const again = pool.lend(buffer, 50);
    pool.release(chunk);
    expect(pool.idle).toBe(0);
    pool.release(again);
    expect(pool.idle).toBe(1);
  });

  it('keeps at most `keep` idle buffers, and ignores chunks it did not lend', () => {
    const pool = new LentOutputBuffers(64, 2);
    const chunks = [0, 1, 2].map(() => pool.lend(pool.take(), 10));
    pool.release(Buffer.alloc(10));
    pool.release(new Uint8Array(10));
    for (const chunk of chunks) pool.release(chunk);
    expect(pool.idle).toBe(2);
  });

  it('gives a buffer that was not lent out (a failed compression) back as it is', () => {
    const pool = new LentOutputBuffers(64, 2);
    const buffer = pool.take();
    pool.giveBack(buffer);
    expect(pool.take()).toBe(buffer);
    pool.giveBack(Buffer.alloc(32));
    expect(pool.idle).toBe(0);
  });

  it('releases through the process-wide function whatever pool lent the chunk', () => {
    const small = lentOutputBuffersOf(4096);
    const large = lentOutputBuffersOf(8192);
    const chunks = [small.lend(small.take(), 10), large.lend(large.take(), 20)];
    const before = [small.idle, large.idle];
    for (const chunk of chunks) releaseCompressedChunk(chunk);
    expect([small.idle, large.idle]).toEqual([before[0]! + 1, before[1]! + 1]);
  });
});
