import { describe, expect, it } from 'vitest';
import {
  goJsonCompactRaw,
  goJsonMarshal,
  goJsonMarshalIndent,
  goJsonString,
  goTimeRoundTrip,
} from './go-json.js';

describe('goJsonString', () => {
  it.each([
    ['plain', '"plain"'],
    ['<&>', '"\\u003c\\u0026\\u003e"'],
    ['quote " backslash \\', '"quote \\" backslash \\\\"'],
    ['\n\r\t', '"\\n\\r\\t"'],
    ['\b\f\u0001\u001f', '"\\u0008\\u000c\\u0001\\u001f"'],
    ['\u2028\u2029', '"\\u2028\\u2029"'],
    ['é€😀\u007f', '"é€😀\u007f"'],
    ['lone \ud800 surrogate', '"lone \ufffd surrogate"'],
    ['/', '"/"'],
  ])('%j -> %s', (input, expected) => {
    expect(goJsonString(input)).toBe(expected);
  });
});

describe('goJsonMarshal / goJsonMarshalIndent', () => {
  const value = {
    b: 1,
    a: [true, null, 'x'],
    map: new Map<string, unknown>([
      ['b', 2],
      ['10', 1],
      ['9', 0],
      ['é', 3],
      ['Z', 4],
    ]),
    skipped: undefined,
    empty: [],
    emptyObject: {},
    float: 1.5,
    big: 1e21,
    small: 1e-7,
  };

  it('keeps struct order, sorts maps by bytes, no whitespace', () => {
    expect(goJsonMarshal(value)).toBe(
      '{"b":1,"a":[true,null,"x"],"map":{"10":1,"9":0,"Z":4,"b":2,"é":3},"empty":[],"emptyObject":{},"float":1.5,"big":1e+21,"small":1e-7}',
    );
  });

  it('indents like MarshalIndent with empty containers kept compact', () => {
    expect(goJsonMarshalIndent({ a: [], b: {}, c: [1], d: { e: null } })).toBe(
      '{\n    "a": [],\n    "b": {},\n    "c": [\n        1\n    ],\n    "d": {\n        "e": null\n    }\n}',
    );
    expect(goJsonMarshalIndent('<')).toBe('"\\u003c"');
  });
});

describe('goJsonCompactRaw', () => {
  it('removes whitespace outside strings and escapes HTML characters', () => {
    expect(goJsonCompactRaw('{ "a" : [1, 2],\n "b": "x y <\\"> \\u003c \u2028" }')).toBe(
      '{"a":[1,2],"b":"x y \\u003c\\"\\u003e \\u003c \\u2028"}',
    );
  });
});

describe('goTimeRoundTrip', () => {
  it.each([
    ['2024-01-02T03:04:05Z', '2024-01-02T03:04:05Z'],
    ['2024-01-02T03:04:05.000000000Z', '2024-01-02T03:04:05Z'],
    ['2024-01-02T03:04:05.120Z', '2024-01-02T03:04:05.12Z'],
    ['2024-01-02T03:04:05.123456789012+01:00', '2024-01-02T03:04:05.123456789+01:00'],
    ['2024-01-02T03:04:05+00:00', '2024-01-02T03:04:05Z'],
    ['2024-01-02t03:04:05z', '2024-01-02T03:04:05Z'],
  ])('%s -> %s', (input, expected) => {
    expect(goTimeRoundTrip(input)).toBe(expected);
  });

  it('rejects malformed times', () => {
    expect(() => goTimeRoundTrip('2024-01-02 03:04:05')).toThrow(/RFC 3339/);
    for (const value of [
      '2024-13-01T00:00:00Z',
      '2023-02-29T00:00:00Z',
      '2024-01-01T24:00:00Z',
      '2024-01-01T00:00:60Z',
      '2024-01-01T00:00:00+24:00',
    ]) {
      expect(() => goTimeRoundTrip(value)).toThrow(/out of range/);
    }
    expect(goTimeRoundTrip('2024-02-29T00:00:00Z')).toBe('2024-02-29T00:00:00Z');
  });
});
