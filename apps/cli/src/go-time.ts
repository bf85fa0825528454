/**
 * Go's `time` package as `--format` templates see it: `Time.Format` with Go's reference-time layouts
 * (`2006-01-02 15:04:05.999999999 -0700 MST`), `time.Month` and `time.Weekday` names, `time.Duration`'s
 * `String`, and the arithmetic of the `time.Time` methods templates can call (see `timeMethod` in
 * go-template.ts). Instants are nanoseconds since the Unix epoch as bigints, with an offset from UTC in
 * seconds and a zone name (`UTC`, or '' for a fixed offset read from RFC 3339 text, which Go prints as
 * `+0200`).
 */

export const monthNames = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
] as const;

export const weekdayNames = [
  'Sunday',
  'Monday',
  'Tuesday',
  'Wednesday',
  'Thursday',
  'Friday',
  'Saturday',
] as const;

/** An instant with its zone, as a `time.Time` holds it. */
export interface GoInstant {
  /** Nanoseconds since 1970-01-01T00:00:00Z. */
  unixNanoseconds: bigint;
  /** Offset from UTC in seconds (east positive). */
  offsetSeconds: number;
  /** Zone abbreviation; '' for a fixed offset without a name. */
  zoneName: string;
}

/** The calendar fields of an instant in its zone. */
export interface GoCivilTime {
  year: number;
  /** 1–12. */
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  nanosecond: number;
  /** 0 = Sunday. */
  weekday: number;
  /** 1–366. */
  yearDay: number;
}

const nanosecondsPerSecond = 1_000_000_000n;

function floorDivide(value: bigint, divisor: bigint): bigint {
  const quotient = value / divisor;
  return value % divisor !== 0n && value < 0n !== divisor < 0n ? quotient - 1n : quotient;
}

/** The calendar fields of `instant` in its own zone. */
export function civilTime(instant: GoInstant): GoCivilTime {
  const local = instant.unixNanoseconds + BigInt(instant.offsetSeconds) * nanosecondsPerSecond;
  const seconds = floorDivide(local, nanosecondsPerSecond);
  const nanosecond = Number(local - seconds * nanosecondsPerSecond);
  const date = new Date(Number(seconds) * 1000);
  const year = date.getUTCFullYear();
  const yearStart = new Date(0);
  yearStart.setUTCFullYear(year, 0, 1);
  const yearDay = Math.floor((date.getTime() - yearStart.getTime()) / 86_400_000) + 1;
  return {
    year,
    month: date.getUTCMonth() + 1,
    day: date.getUTCDate(),
    hour: date.getUTCHours(),
    minute: date.getUTCMinutes(),
    second: date.getUTCSeconds(),
    nanosecond,
    weekday: date.getUTCDay(),
    yearDay,
  };
}

/** The instant at the given calendar fields in a zone (fields may overflow, as Go's `time.Date` normalises). */
export function instantFromCivil(
  fields: { year: number; month: number; day: number; hour: number; minute: number; second: number },
  nanosecond: number,
  offsetSeconds: number,
  zoneName: string,
): GoInstant {
  const date = new Date(0);
  date.setUTCFullYear(fields.year, fields.month - 1, fields.day);
  date.setUTCHours(fields.hour, fields.minute, fields.second, 0);
  const seconds = BigInt(date.getTime() / 1000) - BigInt(offsetSeconds);
  return {
    unixNanoseconds: seconds * nanosecondsPerSecond + BigInt(nanosecond),
    offsetSeconds,
    zoneName,
  };
}

function pad(value: number, width: number, character = '0'): string {
  const text = String(Math.abs(value)).padStart(width, character);
  return value < 0 ? `-${text}` : text;
}

type LayoutChunk =
  | { kind: 'text'; text: string }
  | { kind: 'std'; std: string }
  | { kind: 'fraction'; separator: string; digits: number; trim: boolean };

function startsWithLowerCase(text: string): boolean {
  return text.length > 0 && text[0]! >= 'a' && text[0]! <= 'z';
}

/** Splits a Go layout into literal text and the reference-time elements, as Go's `nextStdChunk`. */
export function parseGoLayout(layout: string): LayoutChunk[] {
  const chunks: LayoutChunk[] = [];
  let text = '';
  const push = (chunk: LayoutChunk, length: number, at: number): number => {
    if (text) chunks.push({ kind: 'text', text });
    text = '';
    chunks.push(chunk);
    return at + length;
  };
  let index = 0;
  while (index < layout.length) {
    const rest = layout.slice(index);
    const std = (name: string, length: number) => push({ kind: 'std', std: name }, length, index);
    let next: number | undefined;
    switch (rest[0]) {
      case 'J':
        if (rest.startsWith('January')) next = std('January', 7);
        else if (rest.startsWith('Jan') && !startsWithLowerCase(rest.slice(3))) next = std('Jan', 3);
        break;
      case 'M':
        if (rest.startsWith('Monday')) next = std('Monday', 6);
        else if (rest.startsWith('Mon') && !startsWithLowerCase(rest.slice(3))) next = std('Mon', 3);
        else if (rest.startsWith('MST')) next = std('MST', 3);
        break;
      case '0':
        if (rest[1] !== undefined && rest[1] >= '1' && rest[1] <= '6') next = std(rest.slice(0, 2), 2);
        else if (rest.startsWith('002')) next = std('002', 3);
        break;
      case '1':
        next = rest[1] === '5' ? std('15', 2) : std('1', 1);
        break;
      case '2':
        next = rest.startsWith('2006') ? std('2006', 4) : std('2', 1);
        break;
      case '_':
        if (rest[1] === '2') {
          if (rest.startsWith('_2006')) {
            text += '_';
            index += 1;
            next = push({ kind: 'std', std: '2006' }, 4, index);
          } else next = std('_2', 2);
        } else if (rest.startsWith('__2')) next = std('__2', 3);
        break;
      case '3':
      case '4':
      case '5':
        next = std(rest[0], 1);
        break;
      case 'P':
        if (rest[1] === 'M') next = std('PM', 2);
        break;
      case 'p':
        if (rest[1] === 'm') next = std('pm', 2);
        break;
      case '-':
      case 'Z':
        for (const candidate of ['070000', '07:00:00', '0700', '07:00', '07']) {
          if (rest.slice(1).startsWith(candidate)) {
            next = std(`${rest[0]}${candidate}`, candidate.length + 1);
            break;
          }
        }
        break;
      case '.':
      case ',':
        if (rest[1] === '0' || rest[1] === '9') {
          let end = 1;
          while (rest[end] === rest[1]) end++;
          if (!(rest[end] !== undefined && rest[end]! >= '0' && rest[end]! <= '9')) {
            next = push(
              { kind: 'fraction', separator: rest[0], digits: end - 1, trim: rest[1] === '9' },
              end,
              index,
            );
          }
        }
        break;
    }
    if (next === undefined) {
      text += rest[0];
      index += 1;
    } else index = next;
  }
  if (text) chunks.push({ kind: 'text', text });
  return chunks;
}

function formatOffset(std: string, offsetSeconds: number): string {
  if (std.startsWith('Z') && offsetSeconds === 0) return 'Z';
  const minutesTotal = Math.trunc(offsetSeconds / 60);
  const sign = minutesTotal < 0 || (minutesTotal === 0 && offsetSeconds < 0) ? '-' : '+';
  const absoluteMinutes = Math.abs(minutesTotal);
  const absoluteSeconds = Math.abs(offsetSeconds);
  const body = std.slice(1);
  const colon = body.includes(':');
  let out = `${sign}${pad(Math.floor(absoluteMinutes / 60), 2)}`;
  if (body !== '07') out += `${colon ? ':' : ''}${pad(absoluteMinutes % 60, 2)}`;
  if (body === '070000' || body === '07:00:00') out += `${colon ? ':' : ''}${pad(absoluteSeconds % 60, 2)}`;
  return out;
}

/** Go's `Time.Format(layout)`. */
export function formatGoTime(instant: GoInstant, layout: string): string {
  const civil = civilTime(instant);
  let out = '';
  for (const chunk of parseGoLayout(layout)) {
    if (chunk.kind === 'text') {
      out += chunk.text;
      continue;
    }
    if (chunk.kind === 'fraction') {
      const digits = pad(civil.nanosecond, 9).slice(0, chunk.digits);
      if (!chunk.trim) out += `${chunk.separator}${digits}`;
      else {
        const trimmed = digits.replace(/0+$/, '');
        if (trimmed) out += `${chunk.separator}${trimmed}`;
      }
      continue;
    }
    const hour12 = civil.hour % 12 === 0 ? 12 : civil.hour % 12;
    switch (chunk.std) {
      case '2006':
        out += pad(civil.year, 4);
        break;
      case '06':
        out += pad(((civil.year % 100) + 100) % 100, 2);
        break;
      case 'January':
        out += monthNames[civil.month - 1];
        break;
      case 'Jan':
        out += monthNames[civil.month - 1]!.slice(0, 3);
        break;
      case '1':
        out += civil.month;
        break;
      case '01':
        out += pad(civil.month, 2);
        break;
      case 'Monday':
        out += weekdayNames[civil.weekday];
        break;
      case 'Mon':
        out += weekdayNames[civil.weekday]!.slice(0, 3);
        break;
      case '2':
        out += civil.day;
        break;
      case '_2':
        out += pad(civil.day, 2, ' ');
        break;
      case '02':
        out += pad(civil.day, 2);
        break;
      case '__2':
        out += pad(civil.yearDay, 3, ' ');
        break;
      case '002':
        out += pad(civil.yearDay, 3);
        break;
      case '15':
        out += pad(civil.hour, 2);
        break;
      case '3':
        out += hour12;
        break;
      case '03':
        out += pad(hour12, 2);
        break;
      case '4':
        out += civil.minute;
        break;
      case '04':
        out += pad(civil.minute, 2);
        break;
      case '5':
        out += civil.second;
        break;
      case '05':
        out += pad(civil.second, 2);
        break;
      case 'PM':
        out += civil.hour >= 12 ? 'PM' : 'AM';
        break;
      case 'pm':
        out += civil.hour >= 12 ? 'pm' : 'am';
        break;
      case 'MST':
        if (instant.zoneName) out += instant.zoneName;
        else {
          const minutes = Math.trunc(instant.offsetSeconds / 60);
          out += `${minutes < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(minutes) / 60), 2)}${pad(Math.abs(minutes) % 60, 2)}`;
        }
        break;
      default:
        out += formatOffset(chunk.std, instant.offsetSeconds);
    }
  }
  return out;
}

/** Go's `time.Duration.String()` (`1h2m3.5s`, `1.5µs`, `0s`). */
export function formatGoDuration(nanoseconds: bigint): string {
  if (nanoseconds === 0n) return '0s';
  const sign = nanoseconds < 0n ? '-' : '';
  const magnitude = nanoseconds < 0n ? -nanoseconds : nanoseconds;
  const fraction = (value: bigint, divisor: bigint, width: number): string => {
    const whole = value / divisor;
    const rest = (value % divisor).toString().padStart(width, '0').replace(/0+$/, '');
    return rest ? `${whole}.${rest}` : `${whole}`;
  };
  if (magnitude < 1000n) return `${sign}${magnitude}ns`;
  if (magnitude < 1_000_000n) return `${sign}${fraction(magnitude, 1000n, 3)}µs`;
  if (magnitude < nanosecondsPerSecond) return `${sign}${fraction(magnitude, 1_000_000n, 6)}ms`;
  const seconds = magnitude / nanosecondsPerSecond;
  const hours = seconds / 3600n;
  const minutes = (seconds / 60n) % 60n;
  let out = sign;
  if (hours > 0n) out += `${hours}h`;
  if (hours > 0n || minutes > 0n) out += `${minutes}m`;
  return `${out}${fraction(magnitude % (60n * nanosecondsPerSecond), nanosecondsPerSecond, 9)}s`;
}

/** Nanoseconds from Go's zero time (January 1, year 1, UTC) to the Unix epoch. */
const zeroTimeToUnixNanoseconds = 62_135_596_800n * nanosecondsPerSecond;

/** Go's `Time.Truncate(d)` / `Time.Round(d)`: relative to the zero time; d ≤ 0 leaves the time as is. */
export function roundGoTime(instant: GoInstant, duration: bigint, mode: 'truncate' | 'round'): GoInstant {
  if (duration <= 0n) return instant;
  const sinceZero = instant.unixNanoseconds + zeroTimeToUnixNanoseconds;
  const remainder = ((sinceZero % duration) + duration) % duration;
  let result = instant.unixNanoseconds - remainder;
  if (mode === 'round' && remainder + remainder >= duration) result += duration;
  return { ...instant, unixNanoseconds: result };
}
