import { describe, expect, it } from 'vitest';
import {
  type FlagSpec,
  formatFlagUsages,
  goQuote,
  parseArguments,
  parseGoDuration,
  UsageError,
} from './args.js';

const flags: FlagSpec[] = [
  { name: 'raw', kind: 'bool', description: 'raw' },
  { name: 'no-tags', short: 'n', kind: 'bool', description: 'no tags' },
  { name: 'quiet', short: 'q', kind: 'bool', description: 'quiet' },
  { name: 'format', short: 'f', kind: 'string', description: 'format' },
  { name: 'retry-times', kind: 'int', description: 'retries' },
  { name: 'parallel', kind: 'uint', description: 'parallel' },
  { name: 'command-timeout', kind: 'duration', description: 'timeout' },
  { name: 'tag', kind: 'stringArray', description: 'tags' },
];

function errorOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error('expected a usage error');
}

describe('parseArguments (pflag rules)', () => {
  it('parses long flags with separate and attached values, booleans, interleaved positionals', () => {
    const parsed = parseArguments(
      ['a', '--format', '{{.Os}}', '--raw', 'b', '--retry-times=3', '--no-tags=false'],
      flags,
    );
    expect(parsed.positionals).toEqual(['a', 'b']);
    expect(Object.fromEntries(parsed.values)).toEqual({
      format: '{{.Os}}',
      raw: true,
      'retry-times': 3,
      'no-tags': false,
    });
  });

  it('parses shorthands: -q, -f value, -fvalue, -f=value, grouped -nq, -nf value, -n=true', () => {
    expect(Object.fromEntries(parseArguments(['-q', '-f', 'x'], flags).values)).toEqual({
      quiet: true,
      format: 'x',
    });
    expect(parseArguments(['-fy'], flags).values.get('format')).toBe('y');
    expect(parseArguments(['-f=z'], flags).values.get('format')).toBe('z');
    expect(Object.fromEntries(parseArguments(['-nq'], flags).values)).toEqual({
      'no-tags': true,
      quiet: true,
    });
    expect(Object.fromEntries(parseArguments(['-nf', 'v', 'p'], flags).values)).toEqual({
      'no-tags': true,
      format: 'v',
    });
    expect(parseArguments(['-n=false'], flags).values.get('no-tags')).toBe(false);
  });

  it('-- ends flags; - alone is positional; last value wins; arrays collect', () => {
    const parsed = parseArguments(['-f', 'a', '-f', 'b', '-', '--', '--raw', '-q'], flags);
    expect(parsed.values.get('format')).toBe('b');
    expect(parsed.positionals).toEqual(['-', '--raw', '-q']);
    expect(parseArguments(['--tag', 'a', '--tag=b'], flags).values.get('tag')).toEqual(['a', 'b']);
  });

  it('a flag value may start with a dash', () => {
    expect(parseArguments(['--format', '-x'], flags).values.get('format')).toBe('-x');
  });

  it('stops at the first positional when asked (global flags before the command)', () => {
    const parsed = parseArguments(['--raw', 'inspect', '--format', 'x'], flags, { stopAtPositional: true });
    expect(parsed.rest).toEqual(['inspect', '--format', 'x']);
    expect(parsed.values.get('raw')).toBe(true);
  });

  it('reports errors worded like pflag', () => {
    expect(errorOf(() => parseArguments(['--bogus'], flags))).toBe('unknown flag: --bogus');
    expect(errorOf(() => parseArguments(['-x'], flags))).toBe("unknown shorthand flag: 'x' in -x");
    expect(errorOf(() => parseArguments(['-qx'], flags))).toBe("unknown shorthand flag: 'x' in -qx");
    expect(errorOf(() => parseArguments(['--format'], flags))).toBe('flag needs an argument: --format');
    expect(errorOf(() => parseArguments(['-f'], flags))).toBe("flag needs an argument: 'f' in -f");
    expect(errorOf(() => parseArguments(['--raw=maybe'], flags))).toBe(
      'invalid argument "maybe" for "--raw" flag: strconv.ParseBool: parsing "maybe": invalid syntax',
    );
    expect(errorOf(() => parseArguments(['-n=maybe'], flags))).toBe(
      'invalid argument "maybe" for "-n, --no-tags" flag: strconv.ParseBool: parsing "maybe": invalid syntax',
    );
    expect(errorOf(() => parseArguments(['--retry-times', 'x'], flags))).toBe(
      'invalid argument "x" for "--retry-times" flag: strconv.ParseInt: parsing "x": invalid syntax',
    );
    expect(errorOf(() => parseArguments(['--parallel', '-1'], flags))).toBe(
      'invalid argument "-1" for "--parallel" flag: strconv.ParseUint: parsing "-1": invalid syntax',
    );
    expect(errorOf(() => parseArguments(['--retry-times', '99999999999999999999'], flags))).toContain(
      'value out of range',
    );
    expect(errorOf(() => parseArguments(['--command-timeout', '5'], flags))).toBe(
      'invalid argument "5" for "--command-timeout" flag: time: missing unit in duration "5"',
    );
  });

  it('accepts Go integer syntaxes and bool spellings', () => {
    expect(parseArguments(['--retry-times', '0x10'], flags).values.get('retry-times')).toBe(16);
    expect(parseArguments(['--retry-times', '-2'], flags).values.get('retry-times')).toBe(-2);
    for (const spelling of ['1', 't', 'T', 'TRUE', 'true', 'True']) {
      expect(parseArguments([`--raw=${spelling}`], flags).values.get('raw')).toBe(true);
    }
  });
});

describe('parseGoDuration', () => {
  it('parses Go durations into milliseconds', () => {
    expect(parseGoDuration('0')).toBe(0);
    expect(parseGoDuration('1.5s')).toBe(1500);
    expect(parseGoDuration('1m30s')).toBe(90_000);
    expect(parseGoDuration('2h')).toBe(7_200_000);
    expect(parseGoDuration('300ms')).toBe(300);
    expect(parseGoDuration('-1s')).toBe(-1000);
    expect(parseGoDuration('1500us')).toBeCloseTo(1.5);
  });
  it('rejects bad durations like Go', () => {
    expect(() => parseGoDuration('x')).toThrow('time: invalid duration "x"');
    expect(() => parseGoDuration('5d')).toThrow('time: unknown unit "d" in duration "5d"');
    expect(() => parseGoDuration('')).toThrow('time: invalid duration ""');
  });
});

describe('goQuote', () => {
  it('quotes like strconv.Quote', () => {
    expect(goQuote('a"b\\c\nd\te')).toBe('"a\\"b\\\\c\\nd\\te"');
    expect(goQuote('\x01\x7f')).toBe('"\\x01\\x7f"');
    expect(goQuote('héllo ☃')).toBe('"héllo ☃"');
  });
});

describe('formatFlagUsages', () => {
  it('aligns like pflag, sorted, with shorthands and value names', () => {
    expect(
      formatFlagUsages([
        { name: 'raw', kind: 'bool', description: 'output raw' },
        { name: 'format', short: 'f', kind: 'string', description: 'Format the output' },
        { name: 'shared-blob-dir', kind: 'string', valueName: 'DIRECTORY', description: 'share blobs' },
        { name: 'hidden', kind: 'bool', description: 'x', hidden: true },
      ]),
    ).toBe(
      `  -f, --format string${' '.repeat(15)}Format the output\n` +
        `      --raw${' '.repeat(25)}output raw\n` +
        '      --shared-blob-dir DIRECTORY   share blobs\n',
    );
  });
});
