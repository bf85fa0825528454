/**
 * Command-line flag parsing with the rules of spf13/pflag, which skopeo uses, so that scripts written
 * for skopeo parse the same way:
 *
 * - `--name value`, `--name=value`; boolean flags take no separate value: `--name`, `--name=false`;
 * - shorthands `-q`, `-f value`, `-fvalue`, `-f=value`, combined booleans `-nq`, and `-nf value`;
 * - flags and positional arguments may be interleaved; `--` ends flags; `-` alone is positional;
 * - a repeated flag keeps the last value (string-array flags collect every value);
 * - errors are worded like pflag's (`unknown flag: --x`, `flag needs an argument: --format`,
 *   `invalid argument "x" for "--retry-times" flag: strconv.ParseInt: parsing "x": invalid syntax`).
 */
import { ErrorCodes, GantryError } from '@gantry/core';

/** How a flag's value is parsed. */
export type FlagKind = 'bool' | 'string' | 'int' | 'uint' | 'duration' | 'stringArray';

export interface FlagSpec {
  /** Long name without dashes. */
  name: string;
  /** One-letter shorthand. */
  short?: string;
  kind: FlagKind;
  description: string;
  /** Placeholder shown in help (`PATH`); default: the kind's name (`string`, `int`…). */
  valueName?: string;
  /** Default shown in help as `(default …)`. */
  defaultText?: string;
  /** Not listed in help. */
  hidden?: boolean;
  /**
   * Another name of the flag with this long name: its value is stored under that name (skopeo's
   * hidden `--screds` for `--src-creds`).
   */
  aliasOf?: string;
  /**
   * For a global flag: the commands after whose name it is also accepted (default: every command;
   * before the command name it is always accepted). skopeo's hidden `--tls-verify` is a flag of the
   * root command and of copy and sync only.
   */
  onlyAfterCommands?: readonly string[];
  /**
   * When set, the flag is recognised (so skopeo command lines do not fail with "unknown flag") but
   * using it is an error with this explanation.
   */
  unsupported?: string;
}

/** A command-line usage error (exit code 1). */
export class UsageError extends GantryError {
  constructor(message: string) {
    super(ErrorCodes.Usage, message);
  }
}

export type FlagValue = boolean | string | number | string[];

export interface ParsedArguments {
  /** Values of flags given on the command line, by long name. Durations are milliseconds. */
  values: Map<string, FlagValue>;
  positionals: string[];
  /** With `stopAtPositional`: the tokens from the first positional on (not parsed). */
  rest: string[];
}

const goBoolValues: Record<string, boolean> = {
  '1': true,
  t: true,
  T: true,
  TRUE: true,
  true: true,
  True: true,
  '0': false,
  f: false,
  F: false,
  FALSE: false,
  false: false,
  False: false,
};

function flagLabel(spec: FlagSpec): string {
  return spec.short ? `-${spec.short}, --${spec.name}` : `--${spec.name}`;
}

function invalidValue(spec: FlagSpec, value: string, reason: string): UsageError {
  return new UsageError(`invalid argument ${goQuote(value)} for "${flagLabel(spec)}" flag: ${reason}`);
}

/** Go's `%q` of a string (strconv.Quote). */
export function goQuote(value: string): string {
  let out = '"';
  for (const character of value) {
    const code = character.codePointAt(0)!;
    switch (character) {
      case '"':
        out += '\\"';
        continue;
      case '\\':
        out += '\\\\';
        continue;
      case '\n':
        out += '\\n';
        continue;
      case '\r':
        out += '\\r';
        continue;
      case '\t':
        out += '\\t';
        continue;
      case '\x07':
        out += '\\a';
        continue;
      case '\b':
        out += '\\b';
        continue;
      case '\f':
        out += '\\f';
        continue;
      case '\v':
        out += '\\v';
        continue;
    }
    if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else if (code >= 0x80 && code < 0xa0) out += `\\u00${code.toString(16).padStart(2, '0')}`;
    else if (code === 0xfffd && character !== '\ufffd') out += '\\ufffd';
    else out += character;
  }
  return `${out}"`;
}

const durationUnits: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Go's `time.ParseDuration`, returning milliseconds; throws an Error worded like Go's. */
export function parseGoDuration(text: string): number {
  const quoted = goQuote(text);
  let rest = text;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    sign = rest.startsWith('-') ? -1 : 1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') throw new Error(`time: invalid duration ${quoted}`);
  let total = 0;
  while (rest !== '') {
    const number = /^(\d*)(\.(\d*))?/.exec(rest)!;
    if (number[0] === '' || number[0] === '.') throw new Error(`time: invalid duration ${quoted}`);
    rest = rest.slice(number[0].length);
    const unit = /^[^0-9.]+/.exec(rest)?.[0];
    if (!unit) throw new Error(`time: missing unit in duration ${quoted}`);
    const factor = durationUnits[unit];
    if (factor === undefined) throw new Error(`time: unknown unit ${goQuote(unit)} in duration ${quoted}`);
    total += Number(`${number[1] || '0'}.${number[3] || '0'}`) * factor;
    rest = rest.slice(unit.length);
  }
  return sign * total;
}

function goFloat(value: number): string {
  return String(Number(value.toFixed(9)));
}

/** Milliseconds as Go's `time.Duration.String` writes them: `500ms`, `1s`, `1.5s`, `2m8s`, `1h0m0s`. */
export function formatGoDuration(milliseconds: number): string {
  if (milliseconds === 0) return '0s';
  const sign = milliseconds < 0 ? '-' : '';
  const value = Math.abs(milliseconds);
  if (value < 1e-3) return `${sign}${goFloat(value * 1e6)}ns`;
  if (value < 1) return `${sign}${goFloat(value * 1e3)}µs`;
  if (value < 1000) return `${sign}${goFloat(value)}ms`;
  const hours = Math.floor(value / 3_600_000);
  const minutes = Math.floor((value % 3_600_000) / 60_000);
  const seconds = (value % 60_000) / 1000;
  let text = `${goFloat(seconds)}s`;
  if (hours > 0 || minutes > 0) text = `${minutes}m${text}`;
  if (hours > 0) text = `${hours}h${text}`;
  return `${sign}${text}`;
}

function parseValue(spec: FlagSpec, raw: string): FlagValue {
  switch (spec.kind) {
    case 'bool': {
      const value = goBoolValues[raw];
      if (value === undefined)
        throw invalidValue(spec, raw, `strconv.ParseBool: parsing ${goQuote(raw)}: invalid syntax`);
      return value;
    }
    case 'int':
    case 'uint': {
      const function_ = spec.kind === 'int' ? 'strconv.ParseInt' : 'strconv.ParseUint';
      const pattern =
        spec.kind === 'int'
          ? /^[+-]?(0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO]?[0-7_]*|[1-9][0-9_]*)$/
          : /^\+?(0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO]?[0-7_]*|[1-9][0-9_]*)$/;
      if (!pattern.test(raw) || (spec.kind === 'uint' && raw.startsWith('+'))) {
        throw invalidValue(spec, raw, `${function_}: parsing ${goQuote(raw)}: invalid syntax`);
      }
      const negative = raw.startsWith('-');
      const body = raw.replace(/^[+-]/, '').replace(/_/g, '');
      let value: bigint;
      if (/^0[xX]/.test(body)) value = BigInt(`0x${body.slice(2)}`);
      else if (/^0[bB]/.test(body)) value = BigInt(`0b${body.slice(2)}`);
      else if (/^0[oO]/.test(body)) value = BigInt(`0o${body.slice(2) || '0'}`);
      else if (/^0[0-7]+$/.test(body)) value = BigInt(`0o${body.slice(1)}`);
      else value = BigInt(body);
      if (negative) value = -value;
      const limit = spec.kind === 'int' ? 2n ** 63n : 2n ** 64n;
      if (value >= limit || value < -limit)
        throw invalidValue(spec, raw, `${function_}: parsing ${goQuote(raw)}: value out of range`);
      return Number(value);
    }
    case 'duration':
      try {
        return parseGoDuration(raw);
      } catch (error) {
        throw invalidValue(spec, raw, (error as Error).message);
      }
    case 'string':
    case 'stringArray':
      return raw;
  }
}

/**
 * Parses `tokens` against `flags`. With `stopAtPositional` parsing stops at the first positional
 * argument (used to find the command name after global flags), leaving it and what follows in `rest`.
 */
export function parseArguments(
  tokens: readonly string[],
  flags: readonly FlagSpec[],
  options: { stopAtPositional?: boolean } = {},
): ParsedArguments {
  const byName = new Map(flags.map((spec) => [spec.name, spec]));
  const byShort = new Map(flags.filter((spec) => spec.short).map((spec) => [spec.short!, spec]));
  const values = new Map<string, FlagValue>();
  const positionals: string[] = [];
  const store = (spec: FlagSpec, raw: string) => {
    const value = parseValue(spec, raw);
    const name = spec.aliasOf ?? spec.name;
    if (spec.kind === 'stringArray') {
      const previous = (values.get(name) as string[] | undefined) ?? [];
      values.set(name, [...previous, value as string]);
    } else {
      values.set(name, value);
    }
  };
  for (let index = 0; index < tokens.length; index++) {
    const token = tokens[index]!;
    if (token === '--') {
      positionals.push(...tokens.slice(index + 1));
      break;
    }
    if (!token.startsWith('-') || token === '-') {
      if (options.stopAtPositional) return { values, positionals, rest: tokens.slice(index) };
      positionals.push(token);
      continue;
    }
    if (token.startsWith('--')) {
      const body = token.slice(2);
      const equals = body.indexOf('=');
      const name = equals < 0 ? body : body.slice(0, equals);
      const spec = byName.get(name);
      if (!spec || name === '') throw new UsageError(`unknown flag: --${name}`);
      if (equals >= 0) store(spec, body.slice(equals + 1));
      else if (spec.kind === 'bool') store(spec, 'true');
      else if (index + 1 < tokens.length) store(spec, tokens[++index]!);
      else throw new UsageError(`flag needs an argument: --${name}`);
      continue;
    }
    // Shorthand group: -abc, -fvalue, -f value, -f=value.
    const shorthands = token.slice(1);
    for (let position = 0; position < shorthands.length; position++) {
      const letter = shorthands[position]!;
      const spec = byShort.get(letter);
      if (!spec) throw new UsageError(`unknown shorthand flag: '${letter}' in ${token}`);
      const after = shorthands.slice(position + 1);
      if (after.startsWith('=')) {
        store(spec, after.slice(1));
        break;
      }
      if (spec.kind === 'bool') {
        store(spec, 'true');
        continue;
      }
      if (after !== '') store(spec, after);
      else if (index + 1 < tokens.length) store(spec, tokens[++index]!);
      else throw new UsageError(`flag needs an argument: '${letter}' in ${token}`);
      break;
    }
  }
  return { values, positionals, rest: [] };
}

/** Rejects flags marked `unsupported` that were given. */
export function rejectUnsupportedFlags(parsed: ParsedArguments, flags: readonly FlagSpec[]): void {
  for (const spec of flags) {
    if (spec.unsupported && parsed.values.has(spec.name)) {
      throw new UsageError(`--${spec.name} is not supported by gantry: ${spec.unsupported}`);
    }
  }
}

/** The help lines of a flag set, formatted like pflag's `FlagUsages`. */
export function formatFlagUsages(flags: readonly FlagSpec[]): string {
  const visible = flags
    .filter((spec) => !spec.hidden)
    .sort((left, right) => left.name.localeCompare(right.name));
  const rows = visible.map((spec) => {
    let left = spec.short ? `  -${spec.short}, --${spec.name}` : `      --${spec.name}`;
    const valueName =
      spec.valueName ?? (spec.kind === 'bool' ? '' : spec.kind === 'stringArray' ? 'stringArray' : spec.kind);
    if (valueName) left += ` ${valueName}`;
    let right = spec.description;
    if (spec.defaultText !== undefined) right += ` (default ${spec.defaultText})`;
    if (spec.unsupported) right += ' [not supported by gantry yet]';
    return { left, right };
  });
  const width = Math.max(0, ...rows.map((row) => row.left.length));
  return rows.map((row) => `${row.left.padEnd(width)}   ${row.right}\n`).join('');
}
