/**
 * A strict JSON reader for security configuration. Unlike `JSON.parse`, it refuses duplicate keys in
 * an object (containers/image refuses them too: with `JSON.parse` the last one would silently win) and
 * keeps objects as ordered `Map`s, so keys such as `__proto__` are ordinary keys.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

/** A syntax error; `message` names the problem and its line and column. */
export class JsonSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JsonSyntaxError';
  }
}

/** Parses `text` as exactly one JSON value (surrounding whitespace allowed). */
export function parseStrictJson(text: string): JsonValue {
  const reader = new StrictJsonReader(text);
  reader.skipWhitespace();
  const value = reader.readValue(0);
  reader.skipWhitespace();
  if (!reader.atEnd()) reader.fail('unexpected data after the JSON value');
  return value;
}

/** Objects and arrays nested deeper than this are refused (avoids exhausting the stack). */
const maximumDepth = 1000;

class StrictJsonReader {
  private position = 0;

  constructor(private readonly text: string) {}

  atEnd(): boolean {
    return this.position >= this.text.length;
  }

  fail(problem: string): never {
    const before = this.text.slice(0, this.position);
    const line = before.split('\n').length;
    const column = this.position - before.lastIndexOf('\n');
    throw new JsonSyntaxError(`${problem} at line ${line}, column ${column}`);
  }

  skipWhitespace(): void {
    while (this.position < this.text.length) {
      const character = this.text[this.position];
      if (character !== ' ' && character !== '\t' && character !== '\n' && character !== '\r') return;
      this.position++;
    }
  }

  private describeNext(): string {
    if (this.atEnd()) return 'unexpected end of JSON input';
    return `invalid character ${JSON.stringify(this.text[this.position])}`;
  }

  readValue(depth: number): JsonValue {
    if (depth > maximumDepth) this.fail('JSON nested too deeply');
    const character = this.text[this.position];
    switch (character) {
      case '{':
        return this.readObject(depth);
      case '[':
        return this.readArray(depth);
      case '"':
        return this.readString();
      case 't':
        return this.readLiteral('true', true);
      case 'f':
        return this.readLiteral('false', false);
      case 'n':
        return this.readLiteral('null', null);
      default:
        if (character === '-' || (character !== undefined && character >= '0' && character <= '9')) {
          return this.readNumber();
        }
        return this.fail(`${this.describeNext()} looking for the beginning of a value`);
    }
  }

  private readLiteral<T extends JsonValue>(word: string, value: T): T {
    if (this.text.startsWith(word, this.position)) {
      this.position += word.length;
      return value;
    }
    return this.fail(`${this.describeNext()} in literal ${word}`);
  }

  private readNumber(): number {
    const match = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
    match.lastIndex = this.position;
    const found = match.exec(this.text);
    if (!found) return this.fail(`${this.describeNext()} in numeric literal`);
    this.position += found[0].length;
    return Number(found[0]);
  }

  private readString(): string {
    this.position++; // opening quote
    let result = '';
    let chunkStart = this.position;
    for (;;) {
      if (this.atEnd()) this.fail('unexpected end of JSON input in string literal');
      const code = this.text.charCodeAt(this.position);
      if (code === 0x22) {
        result += this.text.slice(chunkStart, this.position);
        this.position++;
        return result;
      }
      if (code < 0x20) this.fail('invalid control character in string literal');
      if (code !== 0x5c) {
        this.position++;
        continue;
      }
      result += this.text.slice(chunkStart, this.position);
      this.position++;
      const escapeCharacter = this.text[this.position];
      const simple: Record<string, string> = {
        '"': '"',
        '\\': '\\',
        '/': '/',
        b: '\b',
        f: '\f',
        n: '\n',
        r: '\r',
        t: '\t',
      };
      if (escapeCharacter !== undefined && Object.hasOwn(simple, escapeCharacter)) {
        result += simple[escapeCharacter];
        this.position++;
      } else if (escapeCharacter === 'u') {
        const hex = this.text.slice(this.position + 1, this.position + 5);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('invalid \\u escape in string literal');
        result += String.fromCharCode(Number.parseInt(hex, 16));
        this.position += 5;
      } else {
        this.fail('invalid escape in string literal');
      }
      chunkStart = this.position;
    }
  }

  private readArray(depth: number): JsonValue[] {
    this.position++;
    const result: JsonValue[] = [];
    this.skipWhitespace();
    if (this.text[this.position] === ']') {
      this.position++;
      return result;
    }
    for (;;) {
      this.skipWhitespace();
      result.push(this.readValue(depth + 1));
      this.skipWhitespace();
      const separator = this.text[this.position];
      this.position++;
      if (separator === ']') return result;
      if (separator !== ',') {
        this.position--;
        this.fail(`${this.describeNext()} after array element`);
      }
    }
  }

  private readObject(depth: number): JsonObject {
    this.position++;
    const result: JsonObject = new Map();
    this.skipWhitespace();
    if (this.text[this.position] === '}') {
      this.position++;
      return result;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.position] !== '"')
        this.fail(`${this.describeNext()} looking for beginning of object key string`);
      const keyPosition = this.position;
      const key = this.readString();
      if (result.has(key)) {
        this.position = keyPosition;
        this.fail(`Duplicate key ${JSON.stringify(key)}`);
      }
      this.skipWhitespace();
      if (this.text[this.position] !== ':') this.fail(`${this.describeNext()} after object key`);
      this.position++;
      this.skipWhitespace();
      result.set(key, this.readValue(depth + 1));
      this.skipWhitespace();
      const separator = this.text[this.position];
      this.position++;
      if (separator === '}') return result;
      if (separator !== ',') {
        this.position--;
        this.fail(`${this.describeNext()} after object key:value pair`);
      }
    }
  }
}
