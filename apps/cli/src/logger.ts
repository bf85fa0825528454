/**
 * Diagnostics on stderr in the format skopeo's logger (logrus' text formatter) uses, so tools that
 * parse skopeo's stderr keep working:
 *
 * - not a terminal: `time="2006-01-02T15:04:05Z07:00" level=fatal msg="the message"`, the message
 *   written bare when it has only `[A-Za-z0-9-._/@^+]` characters, else quoted like Go's `%q`;
 * - a terminal: `\x1b[31mFATA\x1b[0m[0000] the message` (level colour, seconds since start, the
 *   message padded to 44 columns).
 */
import { goQuote } from './args.js';

export type LogLevel = 'debug' | 'info' | 'warning' | 'error' | 'fatal';

export interface Logger {
  readonly debugEnabled: boolean;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  /** Logs at level fatal; the caller exits. */
  fatal(message: string): void;
}

export interface LoggerOptions {
  write(text: string): void;
  /** Whether stderr is a terminal (coloured, compact format). */
  isTTY: boolean;
  debug: boolean;
  /** Clock, for tests. */
  now?: () => Date;
  startTime?: Date;
}

const levelColors: Record<LogLevel, number> = { debug: 37, info: 36, warning: 33, error: 31, fatal: 31 };

function needsQuoting(text: string): boolean {
  return !/^[A-Za-z0-9\-._/@^+]*$/.test(text);
}

/** RFC 3339 with the local offset, seconds precision (Go's time.RFC3339). */
export function formatLocalRfc3339(date: Date): string {
  const pad = (value: number) => String(value).padStart(2, '0');
  const offset = -date.getTimezoneOffset();
  const zone =
    offset === 0
      ? 'Z'
      : `${offset < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}${zone}`;
}

/** One log line (with its newline) as logrus' text formatter writes it. */
export function formatLogLine(
  level: LogLevel,
  message: string,
  options: Pick<LoggerOptions, 'isTTY' | 'now' | 'startTime'>,
): string {
  const now = options.now?.() ?? new Date();
  const text = message.replace(/\n$/, '');
  if (options.isTTY) {
    const elapsed = Math.floor((now.getTime() - (options.startTime ?? now).getTime()) / 1000);
    const label = level.slice(0, 4).toUpperCase();
    return `\x1b[${levelColors[level]}m${label}\x1b[0m[${String(elapsed).padStart(4, '0')}] ${text.padEnd(44)} \n`;
  }
  const value = needsQuoting(text) ? goQuote(text) : text;
  return `time="${formatLocalRfc3339(now)}" level=${level} msg=${value}\n`;
}

export function createLogger(options: LoggerOptions): Logger {
  const startTime = options.startTime ?? new Date();
  const log = (level: LogLevel, message: string) =>
    options.write(formatLogLine(level, message, { isTTY: options.isTTY, now: options.now, startTime }));
  return {
    debugEnabled: options.debug,
    debug: (message) => {
      if (options.debug) log('debug', message);
    },
    info: (message) => log('info', message),
    warn: (message) => log('warning', message),
    error: (message) => log('error', message),
    fatal: (message) => log('fatal', message),
  };
}
