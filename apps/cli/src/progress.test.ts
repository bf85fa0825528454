import type { CopyProgressEvent } from '@gantry/core';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createProgressReporter, fitProgressLine } from './progress.js';

const layerA = { digest: `sha256:${'a'.repeat(64)}`, size: 10 * 1024 * 1024 };
const layerB = { digest: `sha256:${'b'.repeat(64)}`, size: 151 * 1024 * 1024 };

function terminal(columns: number) {
  let clock = 0;
  let output = '';
  const reporter = createProgressReporter({
    write: (text) => {
      output += text;
    },
    isTTY: true,
    columns,
    now: () => clock,
  });
  return {
    reporter,
    advance(ms: number) {
      clock += ms;
      vi.advanceTimersByTime(ms);
    },
    /** The lines of the latest redraw (after its cursor-up / clear escape). */
    screen(): string[] {
      const last = output.split(/\x1b\[\d+A\x1b\[J/).at(-1)!;
      return last.split('\n').filter(Boolean);
    },
    written: () => output,
  };
}

const event = (value: CopyProgressEvent) => value;

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('terminal progress', () => {
  it("freezes a finished blob's line with the rate it was copied at", () => {
    const run = terminal(120);
    run.reporter(event({ type: 'blob-start', blob: layerA, kind: 'layer' }));
    run.reporter(event({ type: 'blob-start', blob: layerB, kind: 'layer' }));
    run.advance(1000);
    run.reporter(
      event({ type: 'blob-done', blob: layerA, kind: 'layer', bytes: layerA.size, result: 'copied' }),
    );
    const finished = run.screen()[0]!;
    expect(finished).toBe('Copying blob aaaaaaaaaaaa done 10.0MiB | 10.0MiB/s');
    for (let second = 1; second <= 5; second++) {
      run.reporter(
        event({
          type: 'blob-progress',
          blob: layerB,
          kind: 'layer',
          bytes: second * 1024 * 1024,
          total: layerB.size,
        }),
      );
      run.advance(1000);
      expect(run.screen()[0]).toBe(finished);
      expect(run.screen()[1]).toContain(`${second}.0MiB / 151.0MiB`);
    }
    run.reporter.close();
  });

  it('progress events write nothing; the timer redraws every 100 ms and stops when every blob is done', () => {
    const run = terminal(80);
    run.reporter(event({ type: 'blob-start', blob: layerB, kind: 'layer' }));
    const afterStart = run.written().length;
    for (let i = 1; i <= 1000; i++)
      run.reporter(
        event({ type: 'blob-progress', blob: layerB, kind: 'layer', bytes: i * 1000, total: layerB.size }),
      );
    expect(run.written().length).toBe(afterStart);
    run.advance(100);
    expect(run.written().length).toBeGreaterThan(afterStart);
    expect(run.screen()[0]).toContain('976.6KiB / 151.0MiB');
    run.reporter(
      event({ type: 'blob-done', blob: layerB, kind: 'layer', bytes: layerB.size, result: 'copied' }),
    );
    const done = run.written().length;
    run.advance(1000);
    expect(run.written().length).toBe(done);
  });

  for (const columns of [50, 200, 30]) {
    it(`at ${columns} columns every line fits and keeps the total size`, () => {
      const run = terminal(columns);
      const config = { digest: `sha256:${'c'.repeat(64)}`, size: 1469 };
      run.reporter(event({ type: 'blob-start', blob: layerA, kind: 'layer' }));
      run.reporter(event({ type: 'blob-start', blob: layerB, kind: 'layer' }));
      run.reporter(event({ type: 'blob-done', blob: config, kind: 'config', bytes: 0, result: 'reused' }));
      run.reporter(
        event({ type: 'blob-progress', blob: layerB, kind: 'layer', bytes: 123_456_789, total: layerB.size }),
      );
      run.advance(2000);
      const lines = run.screen();
      expect(lines).toHaveLength(3);
      for (const line of lines) expect(line.length).toBeLessThan(columns);
      expect(lines[0]).toContain('0.0b / 10.0MiB');
      expect(lines[1]).toContain('117.7MiB / 151.0MiB');
      if (columns >= 50) {
        expect(lines[1]).toMatch(/^Copying blob bbbbbbbbbbbb /);
        expect(lines[2]).toBe('Copying config cccccccccc skipped: already exists');
      }
      if (columns === 200) expect(lines[1]).toMatch(/\[=+>? *\] 117\.7MiB \/ 151\.0MiB \| 58\.9MiB\/s$/);
      run.reporter.close();
    });
  }
});

describe('fitProgressLine', () => {
  it('drops optional parts from the last, keeps the required ones, cuts the label last', () => {
    expect(fitProgressLine(45, 'Copying blob 0123456789ab', ['1.0MiB / 2.0MiB'], ['| 1.0MiB/s'])).toBe(
      'Copying blob 0123456789ab 1.0MiB / 2.0MiB',
    );
    expect(fitProgressLine(30, 'Copying blob 0123456789ab', ['1.0MiB / 2.0MiB'], [])).toBe(
      'Copying blob 0 1.0MiB / 2.0MiB',
    );
  });
});
