import { describe, expect, it } from 'vitest';
import { sharedUploadResumeBudget, UploadResumeBudget } from './resume-budget.js';

const MiB = 1024 * 1024;

describe('UploadResumeBudget', () => {
  it('gives an upload alone its full window', () => {
    const budget = new UploadResumeBudget(16 * MiB, 8 * MiB);
    const window = budget.join();
    expect(window.bytes()).toBe(8 * MiB);
    window.release();
    expect(budget.uploads).toBe(0);
  });

  it('splits the total among the uploads in flight, and gives it back as they end', () => {
    const budget = new UploadResumeBudget(16 * MiB, 8 * MiB);
    const windows = Array.from({ length: 6 }, () => budget.join());
    // Six uploads at once keep 16 MiB between them, not 6 × 8 MiB.
    for (const window of windows) expect(window.bytes()).toBe(Math.floor((16 * MiB) / 6));
    expect(windows.reduce((total, window) => total + window.bytes(), 0)).toBeLessThanOrEqual(16 * MiB);
    for (const window of windows.slice(0, 4)) window.release();
    expect(windows[5]!.bytes()).toBe(8 * MiB);
  });

  it('counts a release once', () => {
    const budget = new UploadResumeBudget(16 * MiB, 8 * MiB);
    const first = budget.join();
    const second = budget.join();
    first.release();
    first.release();
    expect(budget.uploads).toBe(1);
    expect(second.bytes()).toBe(8 * MiB);
  });

  it('refuses sizes that are not positive', () => {
    expect(() => new UploadResumeBudget(0, 8 * MiB)).toThrow(RangeError);
    expect(() => new UploadResumeBudget(16 * MiB, Number.NaN)).toThrow(RangeError);
  });

  it('is 8 MiB for the process, all of it for an upload alone', () => {
    expect(sharedUploadResumeBudget.totalBytes).toBe(8 * MiB);
    expect(sharedUploadResumeBudget.perUploadBytes).toBe(8 * MiB);
  });
});
