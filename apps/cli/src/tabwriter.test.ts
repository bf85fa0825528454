import { describe, expect, it } from 'vitest';
import { alignTabs } from './tabwriter.js';

describe('alignTabs (Go text/tabwriter, minwidth 12, padding 2)', () => {
  it('leaves text without tabs alone', () => {
    expect(alignTabs('a b\nc\n')).toBe('a b\nc\n');
  });
  it('pads cells to at least the minimum width', () => {
    expect(alignTabs('a\tb\n')).toBe(`a${' '.repeat(11)}b\n`);
  });
  it('aligns a column block across consecutive lines to the widest cell plus padding', () => {
    expect(alignTabs('NAME\tOS\nsomething-long-here\tlinux\n')).toBe(
      `NAME${' '.repeat(17)}OS\nsomething-long-here  linux\n`,
    );
  });
  it('a line without a cell in a column ends that column block', () => {
    expect(alignTabs('a\tb\nplain\nccc\td\n')).toBe(`a${' '.repeat(11)}b\nplain\nccc${' '.repeat(9)}d\n`);
  });
  it('handles nested columns and multibyte characters by rune count', () => {
    expect(alignTabs('é\tx\ty\nab\tlonger-cell-value\tz')).toBe(
      `é${' '.repeat(11)}x${' '.repeat(18)}y\nab${' '.repeat(10)}longer-cell-value  z`,
    );
  });
});
