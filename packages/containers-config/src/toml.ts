/**
 * A TOML 1.0 reader for configuration files (registries.conf and friends), without dates and times.
 *
 * Supported: comments; bare, quoted and dotted keys; `[table]` and `[[array.of.tables]]` headers
 * (a header below an array of tables extends its last element, as `[[registry.mirror]]` does);
 * basic and literal strings, single- and multi-line, with every escape; integers (decimal, hex,
 * octal, binary, `_` separators); floats (including `inf`/`nan`); booleans; arrays (multi-line,
 * trailing comma, comments); inline tables. Redefining a key or a table is an error, as TOML says.
 * Offset date-times, local dates and times are refused with a clear error.
 *
 * Errors are `TomlError`s naming the line and column.
 */

/** A TOML value as JavaScript: tables are plain objects, arrays are arrays. */
export type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

/** A syntax error, with its 1-based position. */
export class TomlError extends Error {
  readonly line: number;
  readonly column: number;
  constructor(message: string, line: number, column: number) {
    super(`line ${line}, column ${column}: ${message}`);
    this.name = 'TomlError';
    this.line = line;
    this.column = column;
  }
}

/** Tables created implicitly (by dotted keys or headers of sub-tables) may be defined later once. */
const implicitTables = new WeakSet<TomlTable>();
/** Tables defined by a header or inline: keys may not be added to them from elsewhere. */
const closedTables = new WeakSet<TomlTable>();
/** Arrays created by `[[…]]` (other arrays are static and may not be extended). */
const tableArrays = new WeakSet<TomlValue[]>();

function isTable(value: TomlValue | undefined): value is TomlTable {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

class Parser {
  private position = 0;
  constructor(private readonly text: string) {}

  private error(message: string, at = this.position): TomlError {
    let line = 1;
    let lineStart = 0;
    for (let index = 0; index < at && index < this.text.length; index++) {
      if (this.text[index] === '\n') {
        line++;
        lineStart = index + 1;
      }
    }
    return new TomlError(message, line, at - lineStart + 1);
  }

  private peek(offset = 0): string {
    return this.text[this.position + offset] ?? '';
  }

  private startsWith(value: string): boolean {
    return this.text.startsWith(value, this.position);
  }

  private skipWhitespace(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.position++;
  }

  private skipComment(): void {
    if (this.peek() !== '#') return;
    while (this.position < this.text.length && this.peek() !== '\n') {
      const code = this.text.charCodeAt(this.position);
      if ((code < 0x20 && code !== 0x09 && code !== 0x0d) || code === 0x7f) {
        throw this.error('control character in a comment');
      }
      this.position++;
    }
  }

  /** Whitespace, newlines and comments (inside arrays). */
  private skipBlank(): void {
    for (;;) {
      this.skipWhitespace();
      this.skipComment();
      if (this.peek() === '\n') this.position++;
      else if (this.startsWith('\r\n')) this.position += 2;
      else return;
    }
  }

  private expectLineEnd(): void {
    this.skipWhitespace();
    this.skipComment();
    if (this.position >= this.text.length) return;
    if (this.peek() === '\n') this.position++;
    else if (this.startsWith('\r\n')) this.position += 2;
    else throw this.error(`unexpected "${this.peek()}" (expected the end of the line)`);
  }

  parse(): TomlTable {
    const root: TomlTable = {};
    let current = root;
    if (this.text.startsWith('\uFEFF')) this.position = 1;
    while (this.position < this.text.length) {
      this.skipBlank();
      if (this.position >= this.text.length) break;
      if (this.startsWith('[[')) {
        this.position += 2;
        const keys = this.parseKey();
        this.skipWhitespace();
        if (!this.startsWith(']]')) throw this.error('expected "]]"');
        this.position += 2;
        current = this.appendTableArray(root, keys);
      } else if (this.peek() === '[') {
        this.position++;
        const keys = this.parseKey();
        this.skipWhitespace();
        if (this.peek() !== ']') throw this.error('expected "]"');
        this.position++;
        current = this.defineTable(root, keys);
      } else {
        this.parseKeyValue(current);
      }
      this.expectLineEnd();
    }
    return root;
  }

  /** Follows `keys` from `table` through tables and the last element of arrays of tables, creating tables. */
  private descend(table: TomlTable, keys: string[], at: number): TomlTable {
    let current = table;
    for (const key of keys) {
      const existing = current[key];
      if (existing === undefined) {
        const created: TomlTable = {};
        implicitTables.add(created);
        current[key] = created;
        current = created;
      } else if (isTable(existing)) {
        current = existing;
      } else if (Array.isArray(existing) && tableArrays.has(existing)) {
        current = existing[existing.length - 1] as TomlTable;
      } else {
        throw this.error(`key "${key}" is already defined as a value`, at);
      }
    }
    return current;
  }

  private defineTable(root: TomlTable, keys: string[]): TomlTable {
    const at = this.position;
    const parent = this.descend(root, keys.slice(0, -1), at);
    const last = keys[keys.length - 1]!;
    const existing = parent[last];
    if (existing === undefined) {
      const table: TomlTable = {};
      parent[last] = table;
      closedTables.add(table);
      return table;
    }
    if (isTable(existing) && implicitTables.has(existing) && !closedTables.has(existing)) {
      implicitTables.delete(existing);
      closedTables.add(existing);
      return existing;
    }
    throw this.error(`table [${keys.join('.')}] is defined twice`, at);
  }

  private appendTableArray(root: TomlTable, keys: string[]): TomlTable {
    const at = this.position;
    const parent = this.descend(root, keys.slice(0, -1), at);
    const last = keys[keys.length - 1]!;
    let array = parent[last];
    if (array === undefined) {
      array = [];
      tableArrays.add(array);
      parent[last] = array;
    } else if (!Array.isArray(array) || !tableArrays.has(array)) {
      throw this.error(`[[${keys.join('.')}]] conflicts with a value or table of that name`, at);
    }
    const table: TomlTable = {};
    closedTables.add(table);
    array.push(table);
    return table;
  }

  private parseKeyValue(table: TomlTable): void {
    const at = this.position;
    const keys = this.parseKey();
    this.skipWhitespace();
    if (this.peek() !== '=') throw this.error('expected "=" after a key');
    this.position++;
    this.skipWhitespace();
    const value = this.parseValue();
    let target = table;
    for (const key of keys.slice(0, -1)) {
      const existing = target[key];
      if (existing === undefined) {
        const created: TomlTable = {};
        implicitTables.add(created);
        target[key] = created;
        target = created;
      } else if (isTable(existing) && implicitTables.has(existing)) {
        target = existing;
      } else {
        throw this.error(`key "${key}" is already defined`, at);
      }
    }
    const last = keys[keys.length - 1]!;
    if (Object.hasOwn(target, last)) throw this.error(`key "${keys.join('.')}" is defined twice`, at);
    target[last] = value;
  }

  private parseKey(): string[] {
    const keys: string[] = [];
    for (;;) {
      this.skipWhitespace();
      const character = this.peek();
      if (character === '"') keys.push(this.parseBasicString());
      else if (character === "'") keys.push(this.parseLiteralString());
      else {
        const match = /^[A-Za-z0-9_-]+/.exec(this.text.slice(this.position, this.position + 1024));
        if (!match) throw this.error('expected a key');
        keys.push(match[0]);
        this.position += match[0].length;
      }
      this.skipWhitespace();
      if (this.peek() !== '.') return keys;
      this.position++;
    }
  }

  private parseValue(): TomlValue {
    const character = this.peek();
    if (this.startsWith('"""')) return this.parseMultilineBasicString();
    if (this.startsWith("'''")) return this.parseMultilineLiteralString();
    if (character === '"') return this.parseBasicString();
    if (character === "'") return this.parseLiteralString();
    if (character === '[') return this.parseArray();
    if (character === '{') return this.parseInlineTable();
    if (this.startsWith('true') && !/[A-Za-z0-9_-]/.test(this.peek(4))) {
      this.position += 4;
      return true;
    }
    if (this.startsWith('false') && !/[A-Za-z0-9_-]/.test(this.peek(5))) {
      this.position += 5;
      return false;
    }
    return this.parseNumber();
  }

  private parseNumber(): number {
    const rest = this.text.slice(this.position, this.position + 128);
    if (/^\d{4}-\d{2}-\d{2}|^\d{2}:\d{2}/.test(rest)) throw this.error('dates and times are not supported');
    const special = /^[+-]?(inf|nan)/.exec(rest);
    if (special) {
      this.position += special[0].length;
      if (special[1] === 'nan') return Number.NaN;
      return special[0].startsWith('-') ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
    }
    const prefixed = /^0([xob])([0-9A-Fa-f]+(?:_[0-9A-Fa-f]+)*)/.exec(rest);
    if (prefixed) {
      const radix = prefixed[1] === 'x' ? 16 : prefixed[1] === 'o' ? 8 : 2;
      const digits = prefixed[2]!.replaceAll('_', '');
      const valid = radix === 16 ? /^[0-9A-Fa-f]+$/ : radix === 8 ? /^[0-7]+$/ : /^[01]+$/;
      if (!valid.test(digits)) throw this.error('invalid number');
      this.position += prefixed[0].length;
      return Number.parseInt(digits, radix);
    }
    const decimal = /^[+-]?(?:0|[1-9](?:_?\d)*)(?:\.\d(?:_?\d)*)?(?:[eE][+-]?\d(?:_?\d)*)?/.exec(rest);
    if (!decimal || decimal[0] === '' || /^[+-]?$/.test(decimal[0])) throw this.error('invalid value');
    this.position += decimal[0].length;
    if (/[A-Za-z0-9_.]/.test(this.peek())) throw this.error('invalid number');
    return Number(decimal[0].replaceAll('_', ''));
  }

  private parseEscape(): string {
    const at = this.position;
    this.position++; // backslash
    const character = this.peek();
    this.position++;
    switch (character) {
      case 'b':
        return '\b';
      case 't':
        return '\t';
      case 'n':
        return '\n';
      case 'f':
        return '\f';
      case 'r':
        return '\r';
      case 'e':
        return '\u001b';
      case '"':
        return '"';
      case '\\':
        return '\\';
      case 'u':
      case 'U': {
        const length = character === 'u' ? 4 : 8;
        const hex = this.text.slice(this.position, this.position + length);
        if (!new RegExp(`^[0-9A-Fa-f]{${length}}$`).test(hex)) throw this.error('invalid unicode escape', at);
        const codePoint = Number.parseInt(hex, 16);
        if (codePoint > 0x10ffff || (codePoint >= 0xd800 && codePoint <= 0xdfff)) {
          throw this.error('invalid unicode scalar value', at);
        }
        this.position += length;
        return String.fromCodePoint(codePoint);
      }
      default:
        throw this.error(`invalid escape "\\${character}"`, at);
    }
  }

  private checkCharacter(allowNewline: boolean): void {
    const code = this.text.charCodeAt(this.position);
    if (code === 0x0a && allowNewline) return;
    if ((code < 0x20 && code !== 0x09) || code === 0x7f) {
      if (code === 0x0d && allowNewline && this.peek(1) === '\n') return;
      throw this.error(code === 0x0a ? 'unterminated string' : 'control character in a string');
    }
  }

  private parseBasicString(): string {
    this.position++;
    let value = '';
    for (;;) {
      if (this.position >= this.text.length) throw this.error('unterminated string');
      const character = this.peek();
      if (character === '"') {
        this.position++;
        return value;
      }
      if (character === '\\') {
        value += this.parseEscape();
        continue;
      }
      this.checkCharacter(false);
      value += character;
      this.position++;
    }
  }

  private parseLiteralString(): string {
    this.position++;
    const start = this.position;
    for (;;) {
      if (this.position >= this.text.length) throw this.error('unterminated string');
      if (this.peek() === "'") {
        const value = this.text.slice(start, this.position);
        this.position++;
        return value;
      }
      this.checkCharacter(false);
      this.position++;
    }
  }

  private skipFirstNewline(): void {
    if (this.peek() === '\n') this.position++;
    else if (this.startsWith('\r\n')) this.position += 2;
  }

  private parseMultilineBasicString(): string {
    this.position += 3;
    this.skipFirstNewline();
    let value = '';
    for (;;) {
      if (this.position >= this.text.length) throw this.error('unterminated string');
      if (this.startsWith('"""')) {
        // Up to two quotes may close the content before the delimiter.
        let quotes = 3;
        while (this.peek(quotes) === '"' && quotes < 5) quotes++;
        value += '"'.repeat(quotes - 3);
        this.position += quotes;
        return value;
      }
      const character = this.peek();
      if (character === '\\') {
        const after = /^\\[ \t]*\r?\n/.exec(this.text.slice(this.position, this.position + 256));
        if (after) {
          // Line-ending backslash: trim the newline and following whitespace.
          this.position += after[0].length;
          while (/[ \t\r\n]/.test(this.peek()) && this.position < this.text.length) this.position++;
          continue;
        }
        value += this.parseEscape();
        continue;
      }
      this.checkCharacter(true);
      if (this.startsWith('\r\n')) {
        value += '\n';
        this.position += 2;
        continue;
      }
      value += character;
      this.position++;
    }
  }

  private parseMultilineLiteralString(): string {
    this.position += 3;
    this.skipFirstNewline();
    let value = '';
    for (;;) {
      if (this.position >= this.text.length) throw this.error('unterminated string');
      if (this.startsWith("'''")) {
        let quotes = 3;
        while (this.peek(quotes) === "'" && quotes < 5) quotes++;
        value += "'".repeat(quotes - 3);
        this.position += quotes;
        return value;
      }
      this.checkCharacter(true);
      if (this.startsWith('\r\n')) {
        value += '\n';
        this.position += 2;
        continue;
      }
      value += this.peek();
      this.position++;
    }
  }

  private parseArray(): TomlValue[] {
    this.position++;
    const values: TomlValue[] = [];
    for (;;) {
      this.skipBlank();
      if (this.peek() === ']') {
        this.position++;
        return values;
      }
      if (this.position >= this.text.length) throw this.error('unterminated array');
      values.push(this.parseValue());
      this.skipBlank();
      if (this.peek() === ',') {
        this.position++;
        continue;
      }
      if (this.peek() === ']') {
        this.position++;
        return values;
      }
      throw this.error('expected "," or "]" in an array');
    }
  }

  private parseInlineTable(): TomlTable {
    this.position++;
    const table: TomlTable = {};
    this.skipWhitespace();
    if (this.peek() === '}') {
      this.position++;
      closedTables.add(table);
      return table;
    }
    for (;;) {
      this.skipWhitespace();
      this.parseKeyValue(table);
      this.skipWhitespace();
      if (this.peek() === ',') {
        this.position++;
        continue;
      }
      if (this.peek() === '}') {
        this.position++;
        closedTables.add(table);
        return table;
      }
      throw this.error('expected "," or "}" in an inline table');
    }
  }
}

/** Parses a TOML document; throws `TomlError` for malformed input. */
export function parseToml(text: string): TomlTable {
  return new Parser(text).parse();
}
