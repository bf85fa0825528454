/**
 * TOML for the containers configuration files (registries.conf, short-name aliases, storage.conf),
 * read with smol-toml (TOML 1.0). smol-toml is loaded when the first file is parsed: most `gantry`
 * commands read none.
 *
 * Errors are `TomlError`s naming the line and column. Dates and times are refused: no key of these
 * files holds one.
 *
 * Parsed documents are kept between runs when the program names a cache directory (the `gantry`
 * command does: dist/bin.cjs sets `Symbol.for('gantry.cacheDirectory')` on `globalThis` to its
 * compiled-code cache directory, private to the user): a command reads registries.conf and its
 * drop-ins on every run, and loading smol-toml and parsing them costs ~5 ms of CPU each time, where
 * reading the parsed form back costs well under 1 ms. An entry holds the whole text it was parsed
 * from and is used only for that exact text, so a changed file is parsed again; only documents that
 * JSON represents exactly are kept (strings, booleans, finite numbers other than -0, arrays, tables,
 * which come back with the null prototype smol-toml gives them). A cache that cannot be read or
 * written is skipped.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
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

/** Where the program keeps its caches (see the module comment); unset: parsed documents are not kept. */
export const cacheDirectoryKey = Symbol.for('gantry.cacheDirectory');
/** The cache file in that directory (its format is in the name). */
export const tomlCacheFileName = 'gantry-toml-v1.json';
/** At most this many documents are kept (the most recently parsed), each of at most this many characters. */
const maximumCacheEntries = 32;
const maximumCachedText = 256 * 1024;

interface CacheEntry {
  /** The document's text. */
  text: string;
  /** The parsed document, as JSON. */
  json: string;
}

/** The cache of this run: its directory, file and entries (read once), or undefined before the first parse. */
let cache: { directory: string | undefined; file?: string; entries: CacheEntry[] } | undefined;

function cacheOfThisRun(): { directory: string | undefined; file?: string; entries: CacheEntry[] } {
  const directory = (globalThis as Record<symbol, unknown>)[cacheDirectoryKey];
  const current = typeof directory === 'string' && directory !== '' ? directory : undefined;
  if (cache !== undefined && cache.directory === current) return cache;
  if (current === undefined) {
    cache = { directory: undefined, entries: [] };
    return cache;
  }
  const file = path.join(current, tomlCacheFileName);
  let entries: CacheEntry[] = [];
  try {
    const stored = JSON.parse(readFileSync(file, 'utf8')) as { entries?: unknown };
    if (Array.isArray(stored.entries)) {
      entries = stored.entries.filter(
        (entry): entry is CacheEntry =>
          typeof entry === 'object' &&
          entry !== null &&
          typeof (entry as CacheEntry).text === 'string' &&
          typeof (entry as CacheEntry).json === 'string',
      );
    }
  } catch {
    // No cache yet, or an unreadable one: it is rewritten by the next new document.
  }
  cache = { directory: current, file, entries };
  return cache;
}

/**
 * A value JSON.parse made, with its tables given smol-toml's null prototype. (A loop rather than a
 * JSON.parse reviver: V8 runs a reviver on a slow path, ~6 ms for the short-name aliases' table.)
 */
function asTomlTables(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index += 1) value[index] = asTomlTables(value[index]);
    return value;
  }
  const table = Object.create(null) as Record<string, unknown>;
  for (const key of Object.keys(value)) table[key] = asTomlTables((value as Record<string, unknown>)[key]);
  return table;
}

/** Whether JSON gives `value` back exactly (see the module comment). */
function representedByJson(value: unknown): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value) && !Object.is(value, -0);
    case 'object':
      if (value === null) return false;
      if (Array.isArray(value)) {
        return Object.getPrototypeOf(value) === Array.prototype && value.every(representedByJson);
      }
      return (
        Object.getPrototypeOf(value) === null &&
        Object.getOwnPropertySymbols(value).length === 0 &&
        Object.values(value).every(representedByJson)
      );
    default:
      return false;
  }
}

/** Keeps `document`, parsed from `text`, in the cache file (first, dropping the oldest beyond the maximum). */
function remember(run: { file?: string; entries: CacheEntry[] }, text: string, document: TomlTable): void {
  if (run.file === undefined || text.length > maximumCachedText || !representedByJson(document)) return;
  run.entries = [
    { text, json: JSON.stringify(document) },
    ...run.entries.filter((entry) => entry.text !== text),
  ].slice(0, maximumCacheEntries);
  const temporary = `${run.file}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, JSON.stringify({ entries: run.entries }), { mode: 0o600 });
    renameSync(temporary, run.file);
  } catch {
    // Not kept this time.
  }
}

/**
 * Parses a TOML document; throws `TomlError` with the line and column of a syntax error. A document
 * parsed from the same text by an earlier run comes from the cache (see the module comment).
 */
export function parseToml(text: string): TomlTable {
  const run = cacheOfThisRun();
  if (run.file !== undefined) {
    const known = run.entries.find((entry) => entry.text === text);
    if (known !== undefined) {
      try {
        const document = asTomlTables(JSON.parse(known.json));
        if (typeof document === 'object' && !Array.isArray(document) && representedByJson(document)) {
          return document as TomlTable;
        }
      } catch {
        // A damaged entry: parsed again below, and replaced.
      }
    }
  }
  const document = parseUncached(text);
  remember(run, text, document);
  return document;
}

/** Parses with smol-toml. */
function parseUncached(text: string): TomlTable {
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
