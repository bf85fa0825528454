import { describe, expect, it } from 'vitest';
import { parseToml, TomlError } from './toml.js';

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
