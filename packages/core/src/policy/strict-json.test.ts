import { describe, expect, it } from 'vitest';
import { JsonSyntaxError, parseStrictJson } from './strict-json.js';

describe('parseStrictJson', () => {
  it('reads every JSON type, keeping objects as ordered Maps', () => {
    const value = parseStrictJson(
      ' {"b": [1, -2.5e3, true, false, null], "a": {"x": "y"}, "__proto__": "p"} ',
    );
    expect(value).toBeInstanceOf(Map);
    const object = value as Map<string, unknown>;
    expect([...object.keys()]).toEqual(['b', 'a', '__proto__']);
    expect(object.get('b')).toEqual([1, -2500, true, false, null]);
    expect(object.get('a')).toEqual(new Map([['x', 'y']]));
    expect(object.get('__proto__')).toBe('p');
  });

  it('decodes string escapes like JSON.parse', () => {
    const text = '"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"';
    expect(parseStrictJson(text)).toBe(JSON.parse(text));
  });

  it.each([
    ['{"a": 1, "a": 2}', 'Duplicate key "a" at line 1, column 10'],
    ['{"a": 1}\n x', 'unexpected data after the JSON value at line 2, column 2'],
    ['{"a": 1,}', 'invalid character "}" looking for beginning of object key string'],
    ['[1 2]', 'invalid character "2" after array element'],
    ['{"a" 1}', 'invalid character "1" after object key'],
    ['"abc', 'unexpected end of JSON input in string literal'],
    ['"a\tb"', 'invalid control character in string literal'],
    ['"\\x"', 'invalid escape in string literal'],
    ['"\\u12"', 'invalid \\u escape in string literal'],
    ['01', 'unexpected data after the JSON value'],
    ['tru', 'invalid character "t" in literal true'],
    ['', 'unexpected end of JSON input looking for the beginning of a value'],
    ['\ufeff{}', 'invalid character "\ufeff" looking for the beginning of a value'],
    ['{"a": {"a": 1, "b": 2, "b": 3}}', 'Duplicate key "b"'],
  ])('refuses %j', (text, message) => {
    expect(() => parseStrictJson(text)).toThrow(JsonSyntaxError);
    expect(() => parseStrictJson(text)).toThrow(message);
  });

  it('refuses absurd nesting instead of overflowing the stack', () => {
    expect(() => parseStrictJson('['.repeat(5000) + ']'.repeat(5000))).toThrow('JSON nested too deeply');
  });
});
