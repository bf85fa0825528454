import type { TransportContext } from '@gantry/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { contextMemoLifetimeMs, memoForContext } from './context-memo.js';

describe('memoForContext', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('loads once per context object and key, concurrent callers sharing the load', async () => {
    let loads = 0;
    const load = async () => {
      loads += 1;
      return { read: loads };
    };
    const context: TransportContext = {};
    const [first, second] = await Promise.all([
      memoForContext(context, 'a', load),
      memoForContext(context, 'a', load),
    ]);
    expect(first).toBe(second);
    expect(await memoForContext(context, 'a', load)).toBe(first);
    expect(loads).toBe(1);
    expect(await memoForContext(context, 'b', load)).toEqual({ read: 2 });
    expect(await memoForContext({}, 'a', load)).toEqual({ read: 3 });
  });

  it('forgets a failed load at once, and any value after its lifetime', async () => {
    vi.useFakeTimers({ toFake: ['hrtime'] });
    const context: TransportContext = {};
    await expect(
      memoForContext(context, 'key', async () => {
        throw new Error('unreadable');
      }),
    ).rejects.toThrow('unreadable');
    expect(await memoForContext(context, 'key', async () => 'second')).toBe('second');
    vi.advanceTimersByTime(contextMemoLifetimeMs - 1);
    expect(await memoForContext(context, 'key', async () => 'third')).toBe('second');
    vi.advanceTimersByTime(2);
    expect(await memoForContext(context, 'key', async () => 'fourth')).toBe('fourth');
  });
});
