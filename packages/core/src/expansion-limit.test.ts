import { pipeline } from 'node:stream/promises';
import { createGunzip, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { defaultExpansionLimit, ExpansionGuard, expansionLimitFromEnvironment } from './expansion-limit.js';

const MiB = 1024 * 1024;

describe('expansionLimitFromEnvironment', () => {
  it('is 100:1 past the first GiB by default', () => {
    expect(expansionLimitFromEnvironment({})).toEqual({ maxRatio: 100, allowanceBytes: 1024 * MiB });
    expect(defaultExpansionLimit).toEqual({ maxRatio: 100, allowanceBytes: 1024 * MiB });
  });

  it('reads GANTRY_MAX_EXPANSION_RATIO and GANTRY_EXPANSION_ALLOWANCE_MIB', () => {
    expect(
      expansionLimitFromEnvironment({
        GANTRY_MAX_EXPANSION_RATIO: '20',
        GANTRY_EXPANSION_ALLOWANCE_MIB: '1.5',
      }),
    ).toEqual({ maxRatio: 20, allowanceBytes: 1.5 * MiB });
    expect(expansionLimitFromEnvironment({ GANTRY_MAX_EXPANSION_RATIO: '0' }).maxRatio).toBe(0);
  });

  it.each(['-1', 'ten', '1e3', 'Infinity', '0x10'])('refuses %s, naming the variable', (value) => {
    expect(() => expansionLimitFromEnvironment({ GANTRY_MAX_EXPANSION_RATIO: value })).toThrow(
      expect.objectContaining({
        code: 'ERR_GANTRY_INVALID_CONFIGURATION',
        message: expect.stringContaining('GANTRY_MAX_EXPANSION_RATIO'),
      }),
    );
  });
});

describe('ExpansionGuard', () => {
  it('allows the allowance whatever the ratio, then the ratio of what was read', () => {
    const guard = new ExpansionGuard('blob x', 'ERR_GANTRY_INVALID_LAYER', {
      maxRatio: 10,
      allowanceBytes: 1000,
    });
    guard.compressed(1);
    guard.decompressed(1000); // the allowance
    guard.compressed(199);
    guard.decompressed(1000); // 2000 = 10 × 200
    expect(() => guard.decompressed(1)).toThrow(
      expect.objectContaining({
        code: 'ERR_GANTRY_INVALID_LAYER',
        message:
          'blob x: decompression bomb refused: 200 compressed bytes expanded to at least 2001 bytes, over the limit of 10:1 past the first 1000 bytes (GANTRY_MAX_EXPANSION_RATIO, GANTRY_EXPANSION_ALLOWANCE_MIB)',
      }),
    );
  });

  it('has no limit with a ratio of 0', () => {
    const guard = new ExpansionGuard('x', 'ERR_GANTRY_INVALID_LAYER', { maxRatio: 0, allowanceBytes: 0 });
    guard.compressed(1);
    expect(() => guard.decompressed(1e12)).not.toThrow();
  });

  it('stops a gzip bomb in a stream pipeline early, without holding it', async () => {
    const bomb = gzipSync(Buffer.alloc(64 * MiB)); // about 64 KiB
    const guard = new ExpansionGuard('archive bomb.tar.gz', 'ERR_GANTRY_INVALID_LAYOUT', {
      maxRatio: 100,
      allowanceBytes: 4 * MiB,
    });
    const { input, output } = guard.stages();
    let received = 0;
    await expect(
      pipeline([bomb], input, createGunzip(), output, async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) received += chunk.byteLength;
      }),
    ).rejects.toMatchObject({
      code: 'ERR_GANTRY_INVALID_LAYOUT',
      message: /archive bomb\.tar\.gz: decompression bomb refused/,
    });
    // Stopped at 100 × the compressed bytes read (all of them here: one chunk), far short of 64 MiB.
    expect(received).toBeLessThanOrEqual(Math.max(4 * MiB, 100 * bomb.byteLength) + 64 * 1024);
    expect(received).toBeLessThan(16 * MiB);
  });
});
