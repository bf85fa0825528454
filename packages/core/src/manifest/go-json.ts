/**
 * JSON output byte-compatible with Go's `encoding/json`, which containers/image and skopeo use to
 * serialise manifests, configs and `skopeo inspect` output. Digests of re-serialised manifests only
 * match skopeo's when the bytes are identical, hence this module.
 *
 * Value model (what the encoders accept):
 * - `null` / `undefined` -> `null` (a Go nil slice, map or pointer);
 * - strings, finite numbers, booleans;
 * - arrays -> JSON arrays;
 * - `Map<string, unknown>` -> a Go map: keys sorted by their UTF-8 bytes, like Go;
 * - plain objects -> a Go struct: keys in insertion order (callers build them in the Go field order
 *   and leave out `omitempty` fields themselves). Properties whose value is `undefined` are skipped.
 */

/** Go's encoding of a string, with HTML escaping (`<`, `>`, `&` as `\u003c`…) as `json.Marshal` does. */
export function goJsonString(value: string, escapeHtml = true): string {
  let out = '"';
  for (let index = 0; index < value.length; index++) {
    const code = value.charCodeAt(index);
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = value.charCodeAt(index + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        out += value[index]! + value[index + 1]!;
        index++;
      } else {
        out += '\ufffd'; // Go decodes a lone surrogate escape as U+FFFD and writes that rune as is
      }
      continue;
    }
    if (code >= 0xdc00 && code <= 0xdfff) {
      out += '\ufffd';
      continue;
    }
    switch (code) {
      case 0x22:
        out += '\\"';
        continue;
      case 0x5c:
        out += '\\\\';
        continue;
      case 0x0a:
        out += '\\n';
        continue;
      case 0x0d:
        out += '\\r';
        continue;
      case 0x09:
        out += '\\t';
        continue;
      case 0x2028:
        out += '\\u2028';
        continue;
      case 0x2029:
        out += '\\u2029';
        continue;
    }
    if (code < 0x20 || (escapeHtml && (code === 0x3c || code === 0x3e || code === 0x26))) {
      // Go before 1.22 (which built the skopeo this is checked against) writes \b and \f as \u0008 / \u000c.
      out += `\\u00${code.toString(16).padStart(2, '0')}`;
      continue;
    }
    out += value[index]!;
  }
  return `${out}"`;
}

function compareUtf8(left: string, right: string): number {
  return Buffer.compare(Buffer.from(left, 'utf8'), Buffer.from(right, 'utf8'));
}

function entriesOf(value: object): Array<[string, unknown]> {
  if (value instanceof Map) {
    const entries = [...(value as Map<string, unknown>).entries()];
    entries.sort((left, right) => compareUtf8(left[0], right[0]));
    return entries;
  }
  return Object.entries(value).filter(([, entryValue]) => entryValue !== undefined);
}

function encodeScalar(value: unknown): string | undefined {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return goJsonString(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`json: unsupported value: ${value}`);
    return numberToGo(value);
  }
  if (typeof value === 'bigint') return value.toString();
  return undefined;
}

/**
 * Go's encoding/json writes float64 like JavaScript's `String(number)`: plain digits for
 * 1e-6 <= |x| < 1e21, else exponent form with the shortest exponent (`1e+21`, `1e-7`).
 */
function numberToGo(value: number): string {
  return String(value);
}

/** `json.Marshal(value)`: compact, HTML-escaped. */
export function goJsonMarshal(value: unknown): string {
  const scalar = encodeScalar(value);
  if (scalar !== undefined) return scalar;
  if (Array.isArray(value)) return `[${value.map((item) => goJsonMarshal(item)).join(',')}]`;
  if (value instanceof Uint8Array) throw new TypeError('json: byte arrays are not supported');
  if (typeof value === 'object') {
    return `{${entriesOf(value as object)
      .map(([key, entryValue]) => `${goJsonString(key)}:${goJsonMarshal(entryValue)}`)
      .join(',')}}`;
  }
  throw new TypeError(`json: unsupported type: ${typeof value}`);
}

/** `json.MarshalIndent(value, prefix, indent)`: empty arrays and objects stay `[]` / `{}`. */
export function goJsonMarshalIndent(value: unknown, prefix = '', indent = '    ', depth = 0): string {
  const scalar = encodeScalar(value);
  if (scalar !== undefined) return scalar;
  const inner = `\n${prefix}${indent.repeat(depth + 1)}`;
  const outer = `\n${prefix}${indent.repeat(depth)}`;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[${value.map((item) => inner + goJsonMarshalIndent(item, prefix, indent, depth + 1)).join(',')}${outer}]`;
  }
  if (typeof value === 'object' && !(value instanceof Uint8Array)) {
    const entries = entriesOf(value as object);
    if (entries.length === 0) return '{}';
    return `{${entries
      .map(
        ([key, entryValue]) =>
          `${inner}${goJsonString(key)}: ${goJsonMarshalIndent(entryValue, prefix, indent, depth + 1)}`,
      )
      .join(',')}${outer}}`;
  }
  throw new TypeError(`json: unsupported type: ${typeof value}`);
}

/**
 * Go's `json.Compact` with HTML escaping, as `json.Marshal` applies to a `json.RawMessage`: removes
 * whitespace outside strings and escapes `<`, `>`, `&`, U+2028 and U+2029; leaves every other
 * character and escape sequence as written.
 */
export function goJsonCompactRaw(text: string): string {
  let out = '';
  let inString = false;
  for (let index = 0; index < text.length; index++) {
    const character = text[index]!;
    if (inString) {
      if (character === '\\') {
        out += character + (text[index + 1] ?? '');
        index++;
        continue;
      }
      if (character === '"') inString = false;
    } else if (character === ' ' || character === '\t' || character === '\n' || character === '\r') {
      continue;
    } else if (character === '"') {
      inString = true;
    }
    switch (character) {
      case '<':
        out += '\\u003c';
        break;
      case '>':
        out += '\\u003e';
        break;
      case '&':
        out += '\\u0026';
        break;
      case '\u2028':
        out += '\\u2028';
        break;
      case '\u2029':
        out += '\\u2029';
        break;
      default:
        out += character;
    }
  }
  return out;
}

/** A JSON value kept as its raw (compacted) text, like Go's `json.RawMessage`. */
export class RawJson {
  constructor(readonly text: string) {}
}

/** Like `goJsonMarshal`, also accepting `RawJson` values which are compacted and inserted as they are. */
export function goJsonMarshalWithRaw(value: unknown): string {
  if (value instanceof RawJson) return goJsonCompactRaw(value.text);
  if (Array.isArray(value)) return `[${value.map((item) => goJsonMarshalWithRaw(item)).join(',')}]`;
  if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array)) {
    return `{${entriesOf(value as object)
      .map(([key, entryValue]) => `${goJsonString(key)}:${goJsonMarshalWithRaw(entryValue)}`)
      .join(',')}}`;
  }
  return goJsonMarshal(value);
}

const rfc3339Pattern =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Parses an RFC 3339 time as Go's `time.Time.UnmarshalJSON` does and re-formats it as Go's
 * `MarshalJSON` (RFC3339Nano: fraction without trailing zeros, at most 9 digits; `Z` for a zero
 * offset, else the offset as written). Throws a TypeError on malformed input.
 */
export function goTimeRoundTrip(value: string): string {
  const match = rfc3339Pattern.exec(value);
  if (!match) throw new TypeError(`parsing time "${value}" as RFC 3339 failed`);
  const [, year, month, day, hour, minute, second, fraction, zone] = match;
  const yearNumber = Number(year);
  const monthNumber = Number(month);
  const daysInMonth = new Date(Date.UTC(yearNumber, monthNumber, 0)).getUTCDate();
  const zoneHours = zone!.length === 6 ? Number(zone!.slice(1, 3)) : 0;
  const zoneMinutes = zone!.length === 6 ? Number(zone!.slice(4, 6)) : 0;
  if (
    monthNumber < 1 ||
    monthNumber > 12 ||
    Number(day) < 1 ||
    Number(day) > daysInMonth ||
    Number(hour) > 23 ||
    Number(minute) > 59 ||
    Number(second) > 59 ||
    zoneHours > 23 ||
    zoneMinutes > 59
  ) {
    throw new TypeError(`parsing time "${value}": value out of range`);
  }
  let fractionText = (fraction ?? '').slice(0, 9).replace(/0+$/, '');
  if (fractionText !== '') fractionText = `.${fractionText}`;
  const zoneText = zone === 'Z' || zone === 'z' || zone === '+00:00' || zone === '-00:00' ? 'Z' : zone!;
  return `${year}-${month}-${day}T${hour}:${minute}:${second}${fractionText}${zoneText}`;
}

/** Go's zero `time.Time` as `MarshalJSON` writes it. */
export const goZeroTime = '0001-01-01T00:00:00Z';
