/**
 * Go values for the `--format` template engine: the engine evaluates Go `text/template` over these
 * and prints them as Go's `fmt` does (`[a b]`, `map[k:v]`, `{f1 f2}`, `<nil>`), and the `json`
 * template function encodes them as Go's `encoding/json` does.
 *
 * Plain JavaScript values are accepted too, typed as Go's JSON decoder types them into `any`:
 * strings, numbers (float64, printed as integers when integral), booleans, arrays (`[]any`), plain
 * objects and `Map`s (`map[string]any`), `null` / `undefined` (a nil `any`).
 */
import { formatGoTime, type GoInstant } from './go-time.js';

/** A Go struct: fields in declaration order, each with its JSON name. */
export class GoStruct {
  constructor(
    /** Go type name used in error messages, e.g. `inspect.Output`. */
    readonly typeName: string,
    readonly fields: readonly GoField[],
  ) {}

  field(name: string): GoField | undefined {
    return this.fields.find((field) => field.name === name);
  }
}

export interface GoField {
  /** Go field name (`Os`). */
  name: string;
  /** JSON key (`Os`, `created`); undefined when the field is not encoded (`json:"-"`). */
  jsonName: string | undefined;
  /** `omitempty`: left out of JSON when empty. */
  omitEmpty: boolean;
  value: unknown;
}

/** A Go map with string keys. A nil map (`nil: true`) has no entries and prints as `map[]`. */
export class GoMap {
  constructor(
    readonly typeName: string,
    readonly entries: ReadonlyMap<string, unknown>,
    /** What indexing a missing key gives (`index` function): the element type's zero value. */
    readonly zeroElement: unknown,
    readonly nil = false,
  ) {}
}

/** A Go slice. A nil slice (`nil: true`) prints as `[]` and encodes as JSON `null`. */
export class GoSlice {
  constructor(
    readonly typeName: string,
    readonly items: readonly unknown[],
    readonly nil = false,
  ) {}
}

/** A nil pointer or interface (`<nil>`). */
export class GoNil {
  constructor(readonly typeName: string) {}
}

/** A Go `time.Time` (or `*time.Time`), kept as the RFC 3339 text it was decoded from. */
export class GoTime {
  readonly seconds: number;
  readonly nanoseconds: number;
  /** Offset from UTC in minutes. */
  readonly offsetMinutes: number;
  private readonly fields: {
    year: string;
    month: string;
    day: string;
    hour: string;
    minute: string;
    second: string;
    fraction: string;
  };

  constructor(
    readonly text: string,
    /** A `*time.Time` (inspect data's `Created`), for `%T`; methods and printing are the same. */
    readonly pointer = false,
  ) {
    const match =
      /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/.exec(text);
    if (!match) throw new TypeError(`parsing time "${text}" as RFC 3339 failed`);
    const [, year, month, day, hour, minute, second, fraction, zone] = match as unknown as string[];
    this.fields = {
      year: year!,
      month: month!,
      day: day!,
      hour: hour!,
      minute: minute!,
      second: second!,
      fraction: (fraction ?? '').slice(0, 9).replace(/0+$/, ''),
    };
    this.offsetMinutes =
      zone === 'Z' || zone === 'z'
        ? 0
        : (zone!.startsWith('-') ? -1 : 1) * (Number(zone!.slice(1, 3)) * 60 + Number(zone!.slice(4, 6)));
    const utcMilliseconds = Date.UTC(
      Number(year),
      Number(month) - 1,
      Number(day),
      Number(hour),
      Number(minute),
      Number(second),
    );
    this.seconds = Math.floor(utcMilliseconds / 1000) - this.offsetMinutes * 60;
    this.nanoseconds = Number((fraction ?? '').slice(0, 9).padEnd(9, '0') || '0');
  }

  get year(): number {
    return Number(this.fields.year);
  }

  /** Go's `time.Time.String()`: `2006-01-02 15:04:05.999999999 -0700 MST`. */
  toGoString(): string {
    const { year, month, day, hour, minute, second, fraction } = this.fields;
    const sign = this.offsetMinutes < 0 ? '-' : '+';
    const absolute = Math.abs(this.offsetMinutes);
    const offset = `${sign}${String(Math.floor(absolute / 60)).padStart(2, '0')}${String(absolute % 60).padStart(2, '0')}`;
    const zoneName = this.offsetMinutes === 0 ? 'UTC' : offset;
    return `${year}-${month}-${day} ${hour}:${minute}:${second}${fraction ? `.${fraction}` : ''} ${offset} ${zoneName}`;
  }

  /** The instant and zone, for `go-time.ts`. */
  instant(): GoInstant {
    return {
      unixNanoseconds: BigInt(this.seconds) * 1_000_000_000n + BigInt(this.nanoseconds),
      offsetSeconds: this.offsetMinutes * 60,
      zoneName: this.offsetMinutes === 0 ? 'UTC' : '',
    };
  }

  /** The `time.Time` of an instant (a zone with offset 0 is `UTC`, any other a fixed offset). */
  static fromInstant(instant: GoInstant): GoTime {
    return new GoTime(formatGoTime(instant, '2006-01-02T15:04:05.999999999Z07:00'));
  }

  /** Go's `MarshalJSON` (RFC3339Nano). */
  toJsonText(): string {
    const { year, month, day, hour, minute, second, fraction } = this.fields;
    let zone = 'Z';
    if (this.offsetMinutes !== 0) {
      const absolute = Math.abs(this.offsetMinutes);
      zone = `${this.offsetMinutes < 0 ? '-' : '+'}${String(Math.floor(absolute / 60)).padStart(2, '0')}:${String(absolute % 60).padStart(2, '0')}`;
    }
    return `${year}-${month}-${day}T${hour}:${minute}:${second}${fraction ? `.${fraction}` : ''}${zone}`;
  }
}

/** A Go named string type with methods, such as `digest.Digest`. */
export class GoNamedString {
  constructor(
    readonly typeName: string,
    readonly value: string,
  ) {}
}

/** A Go integer (`int`, `int64`): printed without a fraction, distinct from float64. */
export class GoInt {
  constructor(
    readonly value: number,
    /** The Go type (`int`, `int64`), for `%T` and messages. */
    readonly typeName = 'int',
  ) {}
}

/**
 * A Go named integer type with a `String` method (`time.Month`, `time.Weekday`, `time.Duration`):
 * compares and formats with `%d` as its number, prints (`%v`, `{{.}}`) as `text`.
 */
export class GoNamedInt {
  constructor(
    readonly typeName: string,
    readonly value: number,
    readonly text: string,
  ) {}
}

/** The Go type name of a value, as Go's error messages show it. */
export function goTypeName(value: unknown): string {
  if (
    value instanceof GoStruct ||
    value instanceof GoMap ||
    value instanceof GoSlice ||
    value instanceof GoNil
  ) {
    return value.typeName;
  }
  if (value instanceof GoTime) return value.pointer ? '*time.Time' : 'time.Time';
  if (value instanceof GoNamedString) return value.typeName;
  if (value instanceof GoInt) return value.typeName;
  if (value instanceof GoNamedInt) return value.typeName;
  if (typeof value === 'bigint') return 'int64';
  if (value === null || value === undefined) return 'interface {}';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'boolean') return 'bool';
  if (typeof value === 'number') return 'float64';
  if (Array.isArray(value)) return '[]interface {}';
  if (value instanceof Map || typeof value === 'object') return 'map[string]interface {}';
  return typeof value;
}

/** Entries of a map-like value, sorted by key (Go sorts map keys when printing and ranging). */
export function sortedMapEntries(
  value: GoMap | Map<string, unknown> | Record<string, unknown>,
): Array<[string, unknown]> {
  let entries: Array<[string, unknown]>;
  if (value instanceof GoMap) entries = [...value.entries.entries()];
  else if (value instanceof Map) entries = [...value.entries()];
  else entries = Object.entries(value);
  return entries.sort(([left], [right]) => Buffer.compare(Buffer.from(left), Buffer.from(right)));
}

/** True for plain objects and Maps decoded from JSON (Go `map[string]any`). */
export function isPlainMap(value: unknown): value is Map<string, unknown> | Record<string, unknown> {
  if (value instanceof Map) return true;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** A float64 as `fmt` `%v` prints it: shortest digits, exponent form below 1e-4 and from 1e6 (`1e+06`). */
export function formatGoFloat(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  if (value === 0) return Object.is(value, -0) ? '-0' : '0';
  const [mantissa, power] = value.toExponential().split('e') as [string, string];
  const exponent = Number(power);
  if (exponent < -4 || exponent >= 6) {
    const sign = power.startsWith('-') ? '-' : '+';
    const digits = power.replace(/^[+-]/, '').padStart(2, '0');
    return `${mantissa}e${sign}${digits}`;
  }
  return String(value);
}

/** Formats a value as Go's `fmt.Sprint` (`%v`) does. */
export function formatGoValue(value: unknown): string {
  if (value === undefined || value === null) return '<nil>';
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return formatGoFloat(value);
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof GoInt) return String(value.value);
  if (value instanceof GoNamedInt) return value.text;
  if (value instanceof GoNamedString) return value.value;
  if (value instanceof GoTime) return value.toGoString();
  if (value instanceof GoNil) return '<nil>';
  if (value instanceof GoSlice) return `[${value.items.map(formatGoValue).join(' ')}]`;
  if (Array.isArray(value)) return `[${value.map(formatGoValue).join(' ')}]`;
  if (value instanceof GoStruct)
    return `{${value.fields.map((field) => formatGoValue(field.value)).join(' ')}}`;
  if (value instanceof GoMap || isPlainMap(value)) {
    return `map[${sortedMapEntries(value)
      .map(([key, entry]) => `${key}:${formatGoValue(entry)}`)
      .join(' ')}]`;
  }
  if (value instanceof Uint8Array) return `[${[...value].join(' ')}]`;
  return String(value);
}

/** Go's JSON encoding of a string; `escapeHtml` as `json.Marshal` (true) or an Encoder with SetEscapeHTML(false). */
export function goJsonString(value: string, escapeHtml: boolean): string {
  let out = '"';
  for (let index = 0; index < value.length; index++) {
    const code = value.charCodeAt(index);
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = value.charCodeAt(index + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        out += value[index]! + value[index + 1]!;
        index++;
      } else {
        out += '\\ufffd';
      }
      continue;
    }
    if (code >= 0xdc00 && code <= 0xdfff) {
      out += '\\ufffd';
      continue;
    }
    if (code === 0x22) out += '\\"';
    else if (code === 0x5c) out += '\\\\';
    else if (code === 0x0a) out += '\\n';
    else if (code === 0x0d) out += '\\r';
    else if (code === 0x09) out += '\\t';
    else if (code === 0x2028 || code === 0x2029) out += `\\u${code.toString(16)}`;
    else if (code < 0x20 || (escapeHtml && (code === 0x3c || code === 0x3e || code === 0x26))) {
      out += `\\u00${code.toString(16).padStart(2, '0')}`;
    } else out += value[index]!;
  }
  return `${out}"`;
}

function isEmptyForOmit(value: unknown): boolean {
  if (value === undefined || value === null || value === '' || value === 0 || value === false) return true;
  if (value instanceof GoNil) return true;
  if (value instanceof GoInt) return value.value === 0;
  if (value instanceof GoNamedString) return value.value === '';
  if (value instanceof GoSlice) return value.items.length === 0;
  if (value instanceof GoMap) return value.entries.size === 0;
  if (Array.isArray(value)) return value.length === 0;
  return false;
}

function goJsonEntries(value: unknown): Array<[string, unknown]> | undefined {
  if (value instanceof GoStruct) {
    return value.fields
      .filter((field) => field.jsonName !== undefined && !(field.omitEmpty && isEmptyForOmit(field.value)))
      .map((field) => [field.jsonName!, field.value]);
  }
  if (value instanceof GoMap) return value.nil ? undefined : sortedMapEntries(value);
  if (isPlainMap(value)) return sortedMapEntries(value).filter(([, entry]) => entry !== undefined);
  return undefined;
}

function goJsonItems(value: unknown): readonly unknown[] | undefined {
  if (value instanceof GoSlice) return value.nil ? undefined : value.items;
  if (Array.isArray(value)) return value;
  return undefined;
}

function goJsonScalar(value: unknown, escapeHtml: boolean): string | undefined {
  if (value === null || value === undefined || value instanceof GoNil) return 'null';
  if ((value instanceof GoMap && value.nil) || (value instanceof GoSlice && value.nil)) return 'null';
  if (typeof value === 'string') return goJsonString(value, escapeHtml);
  if (value instanceof GoNamedString) return goJsonString(value.value, escapeHtml);
  if (value instanceof GoTime) return goJsonString(value.toJsonText(), escapeHtml);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (value instanceof GoInt) return String(value.value);
  if (value instanceof GoNamedInt) return String(value.value);
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`json: unsupported value: ${formatGoFloat(value)}`);
    return String(value).replace(/e([+-])(\d)$/, 'e$10$2');
  }
  return undefined;
}

/**
 * Go's `encoding/json` encoding of a value: compact when `indent` is undefined (json.Marshal /
 * Encoder), else `json.MarshalIndent(value, "", indent)`. Structs keep field order and honour
 * `omitempty`; maps are sorted by key.
 */
export function goJsonEncode(
  value: unknown,
  options: { escapeHtml: boolean; indent?: string },
  depth = 0,
): string {
  const scalar = goJsonScalar(value, options.escapeHtml);
  if (scalar !== undefined) return scalar;
  const indent = options.indent;
  const inner = indent === undefined ? '' : `\n${indent.repeat(depth + 1)}`;
  const outer = indent === undefined ? '' : `\n${indent.repeat(depth)}`;
  const items = goJsonItems(value);
  if (items) {
    if (items.length === 0) return '[]';
    return `[${items.map((item) => inner + goJsonEncode(item, options, depth + 1)).join(',')}${outer}]`;
  }
  const entries = goJsonEntries(value);
  if (entries) {
    if (entries.length === 0) return '{}';
    const separator = indent === undefined ? ':' : ': ';
    return `{${entries
      .map(
        ([key, entry]) =>
          `${inner}${goJsonString(key, options.escapeHtml)}${separator}${goJsonEncode(entry, options, depth + 1)}`,
      )
      .join(',')}${outer}}`;
  }
  throw new TypeError(`json: unsupported type: ${goTypeName(value)}`);
}
