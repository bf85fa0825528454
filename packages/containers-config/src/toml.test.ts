import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cacheDirectoryKey, parseToml, TomlError, type TomlTable, tomlCacheFileName } from './toml.js';

describe('parseToml', () => {
  it('reads registries.conf-style documents', () => {
    const text = `# comment
unqualified-search-registries = ["registry.fedoraproject.org", 'quay.io', # trailing comment
  "docker.io",
]
short-name-mode = "enforcing"

[aliases]
  "fedora" = "registry.fedoraproject.org/fedora"
  "opensuse/leap" = "registry.opensuse.org/opensuse/leap"

[[registry]]
prefix = "example.com/foo"
insecure = false
blocked = true # inline comment
location = "internal.example.net/bar"

[[registry.mirror]]
location = "mirror-0.local/foo"

[[registry.mirror]]
location = "mirror-1.local/foo"
insecure = true
pull-from-mirror = "digest-only"

[[registry]]
location = "registry.com"
mirror = [{ location = "mirror.registry.com" }]
`;
    expect(parseToml(text)).toEqual({
      'unqualified-search-registries': ['registry.fedoraproject.org', 'quay.io', 'docker.io'],
      'short-name-mode': 'enforcing',
      aliases: {
        fedora: 'registry.fedoraproject.org/fedora',
        'opensuse/leap': 'registry.opensuse.org/opensuse/leap',
      },
      registry: [
        {
          prefix: 'example.com/foo',
          insecure: false,
          blocked: true,
          location: 'internal.example.net/bar',
          mirror: [
            { location: 'mirror-0.local/foo' },
            { location: 'mirror-1.local/foo', insecure: true, 'pull-from-mirror': 'digest-only' },
          ],
        },
        { location: 'registry.com', mirror: [{ location: 'mirror.registry.com' }] },
      ],
    });
  });

  it('reads strings, numbers, dotted keys and nested tables', () => {
    const text = [
      'a.b.c = 1',
      'str = "tab\\tquote\\" \\u00e9 \\U0001F600"',
      "lit = 'C:\\\\path'",
      'multi = """',
      'one\\',
      '   two"""',
      "raw = '''",
      "x\\ny'''",
      'hex = 0xff_ff',
      'float = -1.5e3',
      'big = 1_000',
      '[t.u]',
      'v = [[1, 2], ["a"]]',
      '[x]',
      'y = { z = true, "q r" = false }',
    ].join('\n');
    expect(parseToml(text)).toEqual({
      a: { b: { c: 1 } },
      str: 'tab\tquote" é 😀',
      lit: 'C:\\\\path',
      multi: 'onetwo',
      raw: 'x\\ny',
      hex: 0xffff,
      float: -1500,
      big: 1000,
      t: { u: { v: [[1, 2], ['a']] } },
      x: { y: { z: true, 'q r': false } },
    });
  });

  it('refuses malformed documents with a position', () => {
    const refuse = (text: string, message: RegExp) => {
      expect(() => parseToml(text), text).toThrow(TomlError);
      expect(() => parseToml(text), text).toThrow(message);
    };
    refuse('a = 1\na = 2', /^line 2, column 1: trying to redefine an already defined table or value$/);
    refuse('[t]\n[t]', /^line 2, column 2: trying to redefine/);
    refuse('a = "open', /^line 1, column 5: unfinished string/);
    refuse('a = [1, 2', /^line 1, column 10: expected comma or end of structure/);
    refuse('a = 1979-05-27', /^key "a": dates and times are not supported$/);
    refuse('[t]\nb = [1979-05-27]', /^key "t.b": dates and times are not supported$/);
    refuse('a = 1 b = 2', /^line 1, column 7: each key-value declaration must be followed by an end-of-line/);
    refuse('a = "\\q"', /^line 1, column 7: unrecognised escape sequence/);
    refuse('a = nope', /^line 1, column 5: invalid value/);
    refuse('a = 1\n[[a]]', /^line 2, column 3: trying to redefine/);
  });
});

describe('parseToml with a cache directory (the gantry command sets one)', () => {
  const key = cacheDirectoryKey as unknown as string;
  const globals = globalThis as unknown as Record<string, unknown>;
  let directory: string;
  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'gantry-toml-cache-'));
    globals[key] = directory;
  });
  afterEach(async () => {
    delete globals[key];
    await rm(directory, { recursive: true, force: true });
  });
  const cacheFile = () => join(directory, tomlCacheFileName);
  const storedEntries = () =>
    (JSON.parse(readFileSync(cacheFile(), 'utf8')) as { entries: Array<{ text: string; json: string }> })
      .entries;
  /** Another run: the same directory read afresh (the cache is read once per directory). */
  const nextRun = () => {
    globals[key] = `${directory}/.`;
  };

  it('keeps a parsed document and gives it back for the same text, tables with a null prototype', () => {
    const text =
      'unqualified-search-registries = ["docker.io"]\n[[registry]]\nlocation = "a.example"\ninsecure = true\n';
    const parsed = parseToml(text);
    expect(storedEntries().map((entry) => entry.text)).toEqual([text]);
    nextRun();
    const again = parseToml(text);
    expect(again).toEqual(parsed);
    expect(Object.getPrototypeOf(again)).toBeNull();
    expect(Object.getPrototypeOf((again.registry as TomlTable[])[0])).toBeNull();
    expect(Object.getPrototypeOf(again.registry)).toBe(Array.prototype);
  });

  it('uses an entry only for its exact text: a changed file is parsed again', () => {
    const text = 'a = "from the file"\n';
    writeFileSync(cacheFile(), JSON.stringify({ entries: [{ text, json: '{"a":"from the cache"}' }] }));
    nextRun();
    expect(parseToml(text)).toEqual({ a: 'from the cache' });
    expect(parseToml(`${text}b = 1\n`)).toEqual({ a: 'from the file', b: 1 });
    expect(storedEntries().map((entry) => entry.text)).toEqual([`${text}b = 1\n`, text]);
  });

  it('keeps no document JSON would change (inf, nan, -0), and still parses it', () => {
    const text = 'a = inf\nb = nan\nc = -0.0\n';
    const parsed = parseToml(text);
    expect(parsed.a).toBe(Number.POSITIVE_INFINITY);
    expect(Number.isNaN(parsed.b)).toBe(true);
    expect(Object.is(parsed.c, -0)).toBe(true);
    expect(existsSync(cacheFile())).toBe(false);
  });

  it('parses again over a damaged cache file or entry, and rewrites it', () => {
    writeFileSync(cacheFile(), '{not json');
    nextRun();
    expect(parseToml('a = 1\n')).toEqual({ a: 1 });
    expect(storedEntries()).toHaveLength(1);
    writeFileSync(cacheFile(), JSON.stringify({ entries: [{ text: 'a = 1\n', json: '[1]' }] }));
    globals[key] = `${directory}/./.`;
    expect(parseToml('a = 1\n')).toEqual({ a: 1 });
  });

  it('still refuses malformed documents, and keeps nothing for them', () => {
    expect(() => parseToml('a = \n')).toThrow(TomlError);
    expect(existsSync(cacheFile())).toBe(false);
  });

  it('writes nothing without a cache directory', () => {
    delete globals[key];
    parseToml('a = 2\n');
    expect(readdirSync(directory)).toEqual([]);
  });
});
