import { describe, expect, it } from 'vitest';
import { ErrorCodes, isGantryError } from '../errors.js';
import { CompressionSlots } from './compression-slots.js';

describe('CompressionSlots', () => {
  it('hands out at most its capacity and serves waiters in arrival order', async () => {
    const slots = new CompressionSlots(2);
    const first = await slots.acquire();
    const second = await slots.acquire();
    expect(slots.held).toBe(2);
    const order: string[] = [];
    const third = slots.acquire().then((release) => {
      order.push('third');
      return release;
    });
    const fourth = slots.acquire().then((release) => {
      order.push('fourth');
      return release;
    });
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(order).toEqual([]);
    first();
    first(); // A second call gives nothing back twice.
    const releaseThird = await third;
    expect(order).toEqual(['third']);
    expect(slots.held).toBe(2);
    second();
    const releaseFourth = await fourth;
    expect(order).toEqual(['third', 'fourth']);
    releaseThird();
    releaseFourth();
    expect(slots.held).toBe(0);
  });

  it('stops waiting when the signal fires, leaving the queue as it was', async () => {
    const slots = new CompressionSlots(1);
    const held = await slots.acquire();
    const controller = new AbortController();
    const waiting = slots.acquire(controller.signal);
    controller.abort();
    const error = await waiting.catch((failure: unknown) => failure);
    expect(isGantryError(error) && error.code).toBe(ErrorCodes.Aborted);
    held();
    expect(slots.held).toBe(0);
    const again = await slots.acquire();
    expect(slots.held).toBe(1);
    again();
  });
});
