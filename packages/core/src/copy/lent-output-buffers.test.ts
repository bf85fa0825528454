import { describe, expect, it } from 'vitest';
import {
  holdLentView,
  isLentView,
  LentOutputBuffers,
  LentViewBuffers,
  lentOutputBuffersOf,
  lentViewBuffersOf,
  releaseCompressedChunk,
  unholdLentView,
} from './lent-output-buffers.js';

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

describe('LentViewBuffers', () => {
  it('takes a buffer back once it is closed and every byte lent from it was released, each view once', () => {
    const pool = new LentViewBuffers(1024, 4);
    const buffer = pool.take();
    const views = [buffer.subarray(0, 100), buffer.subarray(100, 400), buffer.subarray(400, 1024)];
    for (const view of views) expect(pool.lend(view)).toBe(true);
    // Not the next view (a gap, or memory it did not hand out): not lent.
    expect(pool.lend(buffer.subarray(0, 10))).toBe(false);
    expect(pool.lend(Buffer.alloc(10))).toBe(false);
    expect(views.every((view) => pool.lends(view))).toBe(true);
    pool.release(views[0]!);
    // Released twice: counted once.
    pool.release(views[0]!);
    pool.release(views[1]!);
    pool.close(buffer);
    expect(pool.idle).toBe(0);
    pool.release(views[2]!);
    expect(pool.idle).toBe(1);
    expect(pool.lends(views[2]!)).toBe(false);
    expect(pool.take()).toBe(buffer);
  });

  it('keeps a buffer whose views are all released until it is closed, and until every hold ended', () => {
    const pool = new LentViewBuffers(256, 4);
    const buffer = pool.take();
    const first = buffer.subarray(0, 100);
    const second = buffer.subarray(100, 200);
    pool.lend(first);
    pool.lend(second);
    pool.hold(first);
    pool.hold(second);
    pool.release(first);
    pool.release(second);
    // Still being written into: more views may come.
    expect(pool.idle).toBe(0);
    pool.close(buffer);
    expect(pool.idle).toBe(0);
    // Both holds end with the run they were read in.
    pool.unhold(new Uint8Array(buffer.buffer, 0, 200), 2);
    expect(pool.idle).toBe(1);
  });

  it('gives a closed buffer with nothing lent back at once, and keeps at most `keep` idle', () => {
    const pool = new LentViewBuffers(64, 1);
    const buffers = [pool.take(), pool.take()];
    for (const buffer of buffers) pool.close(buffer);
    expect(pool.idle).toBe(1);
    // A buffer it did not hand out is ignored.
    pool.close(Buffer.alloc(64));
    expect(pool.idle).toBe(1);
  });

  it('releases, holds and tells lent views through the process-wide functions', () => {
    const pool = lentViewBuffersOf(4096 + 7);
    const buffer = pool.take();
    const view = buffer.subarray(0, 10);
    pool.lend(view);
    expect(isLentView(view)).toBe(true);
    expect(isLentView(Buffer.alloc(10))).toBe(false);
    holdLentView(view);
    pool.close(buffer);
    const before = pool.idle;
    releaseCompressedChunk(view);
    expect(pool.idle).toBe(before);
    unholdLentView(view);
    expect(pool.idle).toBe(before + 1);
  });
});
