/**
 * TOML for the containers configuration files (registries.conf, short-name aliases, storage.conf),
 * read with smol-toml (TOML 1.0). smol-toml is loaded when the first file is parsed: most `gantry`
 * commands read none.
 *
 * Errors are `TomlError`s naming the line and column. Dates and times are refused: no key of these
 * files holds one.
 */
import { smolTomlModule } from './lazy-modules.js';

/** A TOML value as JavaScript: tables are plain objects, arrays are arrays. */
export type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
/** A TOML table. */
export interface TomlTable {
  [key: string]: TomlValue;
}

/** A syntax error, with its 1-based position when known (`line L, column C: reason`). */
export class TomlError extends Error {
  /** 1-based line of the problem; 0 when unknown. */
  readonly line: number;
  /** 1-based column of the problem; 0 when unknown. */
  readonly column: number;
  constructor(message: string, line: number, column: number) {
    super(line > 0 ? `line ${line}, column ${column}: ${message}` : message);
    this.name = 'TomlError';
    this.line = line;
    this.column = column;
  }
}

/** Refuses dates and times (smol-toml's `TomlDate`, a `Date`), naming the key that holds one. */
function checkValues(value: unknown, key: string): void {
  if (value instanceof Date) {
    throw new TomlError(`key "${key}": dates and times are not supported`, 0, 0);
  }
  if (Array.isArray(value)) {
    for (const item of value) checkValues(item, key);
  } else if (typeof value === 'object' && value !== null) {
    for (const [name, item] of Object.entries(value)) checkValues(item, key === '' ? name : `${key}.${name}`);
  }
}

/** Parses a TOML document; throws `TomlError` with the line and column of a syntax error. */
export function parseToml(text: string): TomlTable {
  let document: unknown;
  try {
    document = smolTomlModule().parse(text);
  } catch (error) {
    const { line, column } = error as { line?: number; column?: number };
    const reason = ((error as Error).message ?? String(error))
      .split('\n')[0]!
      .replace(/^Invalid TOML document: /, '');
    throw new TomlError(reason, line ?? 0, column ?? 0);
  }
  checkValues(document, '');
  return document as TomlTable;
}
