import { describe, expect, it } from 'vitest';
import { maxTooManyRequestsDelayMs, tooManyRequestsDelay } from './registry-client.js';

describe('tooManyRequestsDelay (the wait after a 429)', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');

  it('takes Retry-After in seconds or as an HTTP date in the future', () => {
    expect(tooManyRequestsDelay('3', 2000, now)).toBe(3000);
    expect(tooManyRequestsDelay('0', 2000, now)).toBe(0);
    expect(tooManyRequestsDelay(['7', '9'], 2000, now)).toBe(7000);
    expect(tooManyRequestsDelay('Thu, 01 Jan 2026 00:00:12 GMT', 2000, now)).toBe(12_000);
  });

  it('falls back to its own delay without a usable Retry-After', () => {
    for (const value of [undefined, '', 'soon', '-5', '1.5', 'Wed, 31 Dec 2025 23:59:00 GMT']) {
      expect(tooManyRequestsDelay(value, 4000, now)).toBe(4000);
    }
  });

  it('never waits longer than a minute, whatever the registry asks', () => {
    expect(maxTooManyRequestsDelayMs).toBe(60_000);
    expect(tooManyRequestsDelay('3600', 2000, now)).toBe(60_000);
    expect(tooManyRequestsDelay('Fri, 02 Jan 2026 00:00:00 GMT', 2000, now)).toBe(60_000);
    expect(tooManyRequestsDelay(undefined, 128_000, now)).toBe(60_000);
  });
});
