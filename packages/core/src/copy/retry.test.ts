import { describe, expect, it } from 'vitest';
import { ErrorCodes, GantryError } from '../errors.js';
import { isRetryableError, retryDelay, withRetry } from './retry.js';

function networkError(code: string): Error {
  return Object.assign(new Error(`socket: ${code}`), { code });
}

describe('isRetryableError', () => {
  it('accepts retryable Gantry errors and Node network errors, also as causes', () => {
    expect(isRetryableError(new GantryError(ErrorCodes.Transient, 'HTTP 503', { retryable: true }))).toBe(
      true,
    );
    for (const code of [
      'ECONNRESET',
      'ETIMEDOUT',
      'EPIPE',
      'ECONNREFUSED',
      'EHOSTUNREACH',
      'ENETUNREACH',
      'EAI_AGAIN',
    ]) {
      expect(isRetryableError(networkError(code))).toBe(true);
    }
    expect(isRetryableError(new Error('wrapped', { cause: networkError('ECONNRESET') }))).toBe(true);
  });

  it('refuses other errors, digest and size mismatches and aborts', () => {
    expect(isRetryableError(new Error('plain'))).toBe(false);
    expect(isRetryableError(networkError('ENOENT'))).toBe(false);
    expect(isRetryableError(new GantryError(ErrorCodes.BlobNotFound, 'missing'))).toBe(false);
    expect(isRetryableError(new GantryError(ErrorCodes.DigestMismatch, 'bad', { retryable: true }))).toBe(
      false,
    );
    expect(isRetryableError(new GantryError(ErrorCodes.SizeMismatch, 'bad', { retryable: true }))).toBe(
      false,
    );
    expect(
      isRetryableError(
        new GantryError(ErrorCodes.Transient, 'x', {
          retryable: true,
          cause: new GantryError(ErrorCodes.DigestMismatch, 'd'),
        }),
      ),
    ).toBe(false);
    expect(isRetryableError(new GantryError(ErrorCodes.Aborted, 'stop', { retryable: true }))).toBe(false);
  });
});

describe('retryDelay', () => {
  it('uses the fixed delay when given', () => {
    expect(retryDelay(1, 25)).toBe(25);
    expect(retryDelay(5, 0)).toBe(0);
  });

  it('backs off as skopeo does: 1 s, 2 s, 4 s, … without jitter', () => {
    expect([1, 2, 3, 4, 7].map((attempt) => retryDelay(attempt, undefined))).toEqual([
      1000, 2000, 4000, 8000, 64_000,
    ]);
  });
});

describe('withRetry', () => {
  it('retries retryable failures up to retryTimes and reports each retry', async () => {
    let calls = 0;
    const retries: number[] = [];
    const result = await withRetry(
      async () => {
        calls++;
        if (calls < 3) throw networkError('ECONNRESET');
        return 'ok';
      },
      { retryTimes: 2, retryDelayMs: 1, signal: undefined, onRetry: (attempt) => retries.push(attempt) },
    );
    expect(result).toBe('ok');
    expect(calls).toBe(3);
    expect(retries).toEqual([1, 2]);
  });

  it('gives up after retryTimes and does not retry non-retryable errors', async () => {
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          throw networkError('ETIMEDOUT');
        },
        { retryTimes: 1, retryDelayMs: 1, signal: undefined },
      ),
    ).rejects.toThrow('ETIMEDOUT');
    expect(calls).toBe(2);
    calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          throw new GantryError(ErrorCodes.DigestMismatch, 'digest mismatch');
        },
        { retryTimes: 5, retryDelayMs: 1, signal: undefined },
      ),
    ).rejects.toMatchObject({ code: ErrorCodes.DigestMismatch });
    expect(calls).toBe(1);
  });

  it('stops waiting when aborted', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const promise = withRetry(
      async () => {
        throw networkError('ECONNRESET');
      },
      { retryTimes: 3, retryDelayMs: 10_000, signal: controller.signal },
    );
    setTimeout(() => controller.abort(), 20);
    await expect(promise).rejects.toMatchObject({ code: ErrorCodes.Aborted });
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
