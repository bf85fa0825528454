/**
 * A Go `text/template` engine for `--format`, covering what users' skopeo format strings use:
 * text and `{{ }}` actions with `{{-` / `-}}` trimming and `{{/* comments *\/}}`; field chains (`.A.B`,
 * `$var.A`, `(pipeline).A`), variables (`$`, `$x := …`, `$x = …`, `$i, $e := …` in `range`),
 * pipelines with `|`, `if` / `else if` / `else`, `range` (slices, maps in key order, `else`), `with`,
 * `break` / `continue`, literals (strings with Go escapes, raw strings, numbers, `true`, `false`,
 * `nil`), all of Go's builtin functions (and, or, not, len, index, slice, print, printf, println,
 * html, js, urlquery, call, eq, ne, lt, le, gt, ge) and the functions skopeo/podman format strings add
 * (json, join, split, lower, upper, title, truncate, pad). Methods of the values inspect data carries
 * are called as in Go, with arguments when last in a chain (`.Created.Format "2006-01-02"`,
 * `.Created.UTC.Month`, `.Digest.Algorithm.Size`): `time.Time` (Format with Go layouts, Month,
 * Weekday, UTC, Local, Unix…, AddDate, Add, Sub, Round, Truncate, Before/After/Equal, MarshalJSON…;
 * go-time.ts), `digest.Digest`, `digest.Algorithm`; methods with several results are refused as Go
 * does. `define` / `template` / `block` are not supported (parse error).
 *
 * Values are printed as Go's `fmt` prints them (see go-values.ts); a missing map key prints
 * `<no value>`; a missing struct field is an execution error, as in Go. Errors are `TemplateError`s
 * with Go's wording: `template: NAME:LINE: …` for parse errors,
 * `template: NAME:LINE:COL: executing "NAME" at <…>: …` for execution errors.
 */

import {
  civilTime,
  formatGoDuration,
  formatGoTime,
  type GoInstant,
  instantFromCivil,
  monthNames,
  roundGoTime,
  weekdayNames,
} from './go-time.js';
import {
  formatGoValue,
  GoInt,
  GoMap,
  GoNamedInt,
  GoNamedString,
  GoNil,
  GoSlice,
  GoStruct,
  GoTime,
  goJsonEncode,
  goTypeName,
  isPlainMap,
  sortedMapEntries,
} from './go-values.js';

/** A template parse or execution error, worded like Go's. */
export class TemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemplateError';
  }
}

/** A template function: receives evaluated arguments, returns a value or throws an Error. */
export type TemplateFunction = (...args: unknown[]) => unknown;

// ---------------------------------------------------------------------------------------------- lexer

type TokenType =
  | 'field' // .Name (value: "Name"), or "." alone (value: "")
  | 'variable' // $x or $ (value includes "$")
  | 'identifier'
  | 'string'
  | 'number'
  | 'char'
  | 'leftParen'
  | 'rightParen'
  | 'pipe'
  | 'declare'
  | 'assign'
  | 'comma';

interface Token {
  type: TokenType;
  value: string;
  /** Offset in the template text. */
  position: number;
  /** Offset just after the token. */
  end: number;
}

// ---------------------------------------------------------------------------------------------- tree

type Node = TextNode | ActionNode | IfNode | RangeNode | WithNode | BreakNode | ContinueNode;

interface TextNode {
  kind: 'text';
  text: string;
}
interface ActionNode {
  kind: 'action';
  pipeline: Pipeline;
  position: number;
  source: string;
}
interface IfNode {
  kind: 'if' | 'with';
  pipeline: Pipeline;
  list: Node[];
  elseList: Node[] | undefined;
  position: number;
  source: string;
}
interface WithNode extends Omit<IfNode, 'kind'> {
  kind: 'with';
}
interface RangeNode {
  kind: 'range';
  pipeline: Pipeline;
  list: Node[];
  elseList: Node[] | undefined;
  position: number;
  source: string;
}
interface BreakNode {
  kind: 'break';
}
interface ContinueNode {
  kind: 'continue';
}

interface Pipeline {
  declarations: string[];
  /** True for `$x = …` (assignment to an existing variable) rather than `:=`. */
  isAssign: boolean;
  commands: Command[];
}

interface Command {
  operands: Operand[];
  position: number;
  source: string;
}

type Operand =
  | { kind: 'dot' }
  | { kind: 'field'; names: string[]; position: number; source: string }
  | { kind: 'variable'; name: string; names: string[]; position: number; source: string }
  | { kind: 'chain'; pipeline: Pipeline; names: string[]; position: number; source: string }
  | { kind: 'identifier'; name: string; position: number }
  | { kind: 'literal'; value: unknown }
  | { kind: 'nil'; position: number };

// ---------------------------------------------------------------------------------------------- parser

const leftDelimiter = '{{';
const rightDelimiter = '}}';

function isSpace(character: string | undefined): boolean {
  return character === ' ' || character === '\t' || character === '\n' || character === '\r';
}

class Parser {
  private offset = 0;
  private tokens: Token[] = [];
  private tokenIndex = 0;
  private actionStart = 0;
  private actionSource = '';
  private rangeDepth = 0;

  constructor(
    private readonly text: string,
    private readonly name: string,
  ) {}

  private lineOf(position: number): number {
    let line = 1;
    for (let index = 0; index < position && index < this.text.length; index++)
      if (this.text[index] === '\n') line++;
    return line;
  }

  private fail(message: string, position = this.actionStart): never {
    throw new TemplateError(`template: ${this.name}:${this.lineOf(position)}: ${message}`);
  }

  parse(): Node[] {
    const { list, terminator } = this.parseList(true);
    if (terminator !== undefined) this.fail(`unexpected {{${terminator}}}`);
    return list;
  }

  /**
   * Parses nodes until `{{end}}`, `{{else …}}` or the end of input. Returns the terminator keyword
   * ('end', 'else') with the tokens of an `else` action left for the caller.
   */
  private parseList(topLevel: boolean): { list: Node[]; terminator: 'end' | 'else' | undefined } {
    const list: Node[] = [];
    while (this.offset < this.text.length) {
      const start = this.text.indexOf(leftDelimiter, this.offset);
      if (start < 0) {
        list.push({ kind: 'text', text: this.text.slice(this.offset) });
        this.offset = this.text.length;
        break;
      }
      let textEnd = start;
      const trimLeft = this.text[start + 2] === '-' && isSpace(this.text[start + 3]);
      const actionBodyStart = trimLeft ? start + 3 : start + 2;
      if (trimLeft) while (textEnd > this.offset && isSpace(this.text[textEnd - 1])) textEnd--;
      if (textEnd > this.offset) list.push({ kind: 'text', text: this.text.slice(this.offset, textEnd) });
      this.actionStart = start;
      const commentStart = trimLeft ? start + 4 : start + 2;
      if (this.text.startsWith('/*', commentStart)) {
        const commentEnd = this.text.indexOf('*/', commentStart + 2);
        if (commentEnd < 0) this.fail('unclosed comment');
        const after = commentEnd + 2;
        if (this.text.startsWith(' -}}', after) && isSpace(this.text[after])) {
          this.offset = after + 4;
          while (isSpace(this.text[this.offset])) this.offset++;
        } else if (this.text.startsWith(rightDelimiter, after)) {
          this.offset = after + 2;
        } else {
          this.fail('comment ends before closing delimiter');
        }
        continue;
      }
      const { tokens, end, trimRight } = this.lexAction(actionBodyStart);
      this.offset = end;
      if (trimRight) while (this.offset < this.text.length && isSpace(this.text[this.offset])) this.offset++;
      this.tokens = tokens;
      this.tokenIndex = 0;
      this.actionSource = this.text
        .slice(actionBodyStart, end - rightDelimiter.length)
        .trim()
        .replace(/-$/, '')
        .trim();
      const first = tokens[0];
      if (!first) this.fail('missing value for command');
      if (first.type === 'identifier') {
        switch (first.value) {
          case 'end':
            if (tokens.length > 1) this.fail(`unexpected ${this.describe(tokens[1]!)} in end`);
            if (topLevel) this.fail('unexpected {{end}}');
            return { list, terminator: 'end' };
          case 'else':
            if (topLevel) this.fail('unexpected {{else}}');
            this.tokenIndex = 1;
            return { list, terminator: 'else' };
          case 'if':
          case 'with':
          case 'range':
            list.push(this.parseControl(first.value));
            continue;
          case 'break':
          case 'continue':
            if (this.rangeDepth === 0) this.fail(`{{${first.value}}} outside {{range}}`);
            if (tokens.length > 1) this.fail(`unexpected ${this.describe(tokens[1]!)} in {{${first.value}}}`);
            list.push({ kind: first.value });
            continue;
          case 'define':
          case 'template':
          case 'block':
            this.fail(`{{${first.value}}} is not supported in --format templates`);
        }
      }
      const position = start;
      const source = this.actionSource;
      const pipeline = this.parsePipeline('command', true);
      list.push({ kind: 'action', pipeline, position, source });
    }
    if (!topLevel) this.fail('unexpected EOF');
    return { list, terminator: undefined };
  }

  private parseControl(keyword: 'if' | 'with' | 'range', firstToken = 1): Node {
    const position = this.actionStart;
    const source = this.actionSource;
    this.tokenIndex = firstToken;
    const pipeline = this.parsePipeline(keyword, keyword === 'range');
    if (keyword === 'range') this.rangeDepth++;
    const body = this.parseList(false);
    if (keyword === 'range') this.rangeDepth--;
    let elseList: Node[] | undefined;
    if (body.terminator === 'else') {
      const next = this.tokens[this.tokenIndex];
      if (
        next &&
        next.type === 'identifier' &&
        (next.value === 'if' || (next.value === 'with' && keyword === 'with'))
      ) {
        // `{{else if …}}` is `{{else}}{{if …}}…{{end}}{{end}}` sharing the final end.
        elseList = [this.parseControl(next.value as 'if' | 'with', this.tokenIndex + 1)];
      } else {
        if (next) this.fail(`unexpected ${this.describe(next)} in else`);
        const rest = this.parseList(false);
        if (rest.terminator !== 'end') this.fail('expected end; found {{else}}');
        elseList = rest.list;
      }
    }
    if (keyword === 'range') return { kind: 'range', pipeline, list: body.list, elseList, position, source };
    return { kind: keyword, pipeline, list: body.list, elseList, position, source };
  }

  private describe(token: Token): string {
    return JSON.stringify(token.value);
  }

  /** Reads one action's tokens starting after `{{` (and an optional `- `). */
  private lexAction(start: number): { tokens: Token[]; end: number; trimRight: boolean } {
    const tokens: Token[] = [];
    let index = start;
    const text = this.text;
    for (;;) {
      while (isSpace(text[index])) index++;
      if (index >= text.length) this.fail('unclosed action');
      if (text.startsWith(rightDelimiter, index)) return { tokens, end: index + 2, trimRight: false };
      if (text[index] === '-' && text.startsWith(rightDelimiter, index + 1) && isSpace(text[index - 1])) {
        return { tokens, end: index + 3, trimRight: true };
      }
      const character = text[index]!;
      const position = index;
      if (character === '(') {
        tokens.push({ type: 'leftParen', value: '(', position, end: index + 1 });
        index++;
      } else if (character === ')') {
        tokens.push({ type: 'rightParen', value: ')', position, end: index + 1 });
        index++;
      } else if (character === '|') {
        tokens.push({ type: 'pipe', value: '|', position, end: index + 1 });
        index++;
      } else if (character === ',') {
        tokens.push({ type: 'comma', value: ',', position, end: index + 1 });
        index++;
      } else if (character === ':' && text[index + 1] === '=') {
        tokens.push({ type: 'declare', value: ':=', position, end: index + 2 });
        index += 2;
      } else if (character === '=') {
        tokens.push({ type: 'assign', value: '=', position, end: index + 1 });
        index++;
      } else if (character === '"') {
        let end = index + 1;
        while (end < text.length && text[end] !== '"') {
          if (text[end] === '\\') end++;
          if (text[end] === '\n') this.fail('unterminated quoted string');
          end++;
        }
        if (end >= text.length) this.fail('unterminated quoted string');
        tokens.push({
          type: 'string',
          value: unquoteGoString(text.slice(index, end + 1), (message) => this.fail(message)),
          position,
          end: end + 1,
        });
        index = end + 1;
      } else if (character === '`') {
        const end = text.indexOf('`', index + 1);
        if (end < 0) this.fail('unterminated raw quoted string');
        tokens.push({ type: 'string', value: text.slice(index + 1, end), position, end: end + 1 });
        index = end + 1;
      } else if (character === "'") {
        const end = text.indexOf("'", index + 1);
        if (end < 0) this.fail('unterminated character constant');
        const body = unquoteGoString(`"${text.slice(index + 1, end)}"`, (message) => this.fail(message));
        tokens.push({ type: 'char', value: String(body.codePointAt(0) ?? 0), position, end: end + 1 });
        index = end + 1;
      } else if (character === '.' || character === '$') {
        // A field chain element or a variable; numbers like .5 are numbers.
        if (character === '.' && /[0-9]/.test(text[index + 1] ?? '')) {
          const match = /^[0-9.eE+\-_xXa-fA-FoObBpP]+/.exec(text.slice(index))!;
          tokens.push({ type: 'number', value: match[0], position, end: index + match[0].length });
          index += match[0].length;
          continue;
        }
        const match = /^[.$][A-Za-z0-9_]*/.exec(text.slice(index))!;
        tokens.push({
          type: character === '$' ? 'variable' : 'field',
          value: match[0].slice(character === '.' ? 1 : 0),
          position,
          end: index + match[0].length,
        });
        index += match[0].length;
      } else if (/[0-9+-]/.test(character)) {
        const match = /^[+-]?[0-9][0-9.eE_xXa-fA-FoObBpP]*(?:[eEpP][+-][0-9]+)?/.exec(text.slice(index));
        if (!match) this.fail(`bad character ${JSON.stringify(character)}`);
        tokens.push({ type: 'number', value: match[0], position, end: index + match[0].length });
        index += match[0].length;
      } else if (/[A-Za-z_]/.test(character)) {
        const match = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(index))!;
        tokens.push({ type: 'identifier', value: match[0], position, end: index + match[0].length });
        index += match[0].length;
      } else {
        this.fail(`unexpected ${JSON.stringify(character)} in command`);
      }
    }
  }

  private peek(): Token | undefined {
    return this.tokens[this.tokenIndex];
  }

  private next(): Token | undefined {
    return this.tokens[this.tokenIndex++];
  }

  /** Parses `[decl :=] command (| command)*` up to the end of the action or a `)`. */
  private parsePipeline(context: string, allowDeclarations: boolean): Pipeline {
    const declarations: string[] = [];
    let isAssign = false;
    // Declarations: $x := / $x = / $i, $e :=
    const first = this.peek();
    if (first?.type === 'variable') {
      const second = this.tokens[this.tokenIndex + 1];
      const third = this.tokens[this.tokenIndex + 2];
      const fourth = this.tokens[this.tokenIndex + 3];
      if (second && (second.type === 'declare' || second.type === 'assign')) {
        declarations.push(first.value);
        isAssign = second.type === 'assign';
        this.tokenIndex += 2;
      } else if (
        allowDeclarations &&
        context === 'range' &&
        second?.type === 'comma' &&
        third?.type === 'variable' &&
        (fourth?.type === 'declare' || fourth?.type === 'assign')
      ) {
        declarations.push(first.value, third.value);
        isAssign = fourth.type === 'assign';
        this.tokenIndex += 4;
      }
    }
    const commands: Command[] = [];
    for (;;) {
      const token = this.peek();
      if (!token || token.type === 'rightParen') break;
      if (token.type === 'pipe') {
        if (commands.length === 0) this.fail('missing command');
        this.next();
        continue;
      }
      commands.push(this.parseCommand());
      const after = this.peek();
      if (after && after.type !== 'pipe' && after.type !== 'rightParen') {
        this.fail(`unexpected ${this.describe(after)} in operand`);
      }
    }
    if (commands.length === 0) this.fail(`missing value for ${context}`);
    return { declarations, isAssign, commands };
  }

  private parseCommand(): Command {
    const start = this.peek()!;
    const operands: Operand[] = [];
    for (;;) {
      const token = this.peek();
      if (!token || token.type === 'pipe' || token.type === 'rightParen') break;
      operands.push(this.parseOperand());
    }
    const end = this.peek();
    const sourceEnd = end ? end.position : this.text.indexOf(rightDelimiter, start.position);
    return { operands, position: start.position, source: this.text.slice(start.position, sourceEnd).trim() };
  }

  private parseFieldNames(): string[] {
    const names: string[] = [];
    for (;;) {
      const token = this.peek();
      if (token?.type !== 'field' || token.value === '') break;
      // A field directly attached (no space) continues the chain.
      const previous = this.tokens[this.tokenIndex - 1]!;
      if (token.position !== previous.end) break;
      names.push(token.value);
      this.next();
    }
    return names;
  }

  private parseOperand(): Operand {
    const token = this.next()!;
    switch (token.type) {
      case 'field': {
        if (token.value === '') return { kind: 'dot' };
        const names = [token.value, ...this.parseFieldNames()];
        return { kind: 'field', names, position: token.position, source: `.${names.join('.')}` };
      }
      case 'variable': {
        const names = this.parseFieldNames();
        return {
          kind: 'variable',
          name: token.value,
          names,
          position: token.position,
          source: [token.value, ...names].join('.'),
        };
      }
      case 'leftParen': {
        const pipeline = this.parsePipeline('parenthesized pipeline', false);
        const close = this.next();
        if (close?.type !== 'rightParen') this.fail('unclosed left paren');
        const names = this.parseFieldNames();
        const end = this.tokens[this.tokenIndex - 1]!;
        return {
          kind: 'chain',
          pipeline,
          names,
          position: token.position,
          source: this.text.slice(token.position, end.end),
        };
      }
      case 'string':
        return { kind: 'literal', value: token.value };
      case 'char':
        return { kind: 'literal', value: new GoInt(Number(token.value)) };
      case 'number':
        return { kind: 'literal', value: parseGoNumber(token.value, (message) => this.fail(message)) };
      case 'identifier':
        if (token.value === 'true' || token.value === 'false')
          return { kind: 'literal', value: token.value === 'true' };
        if (token.value === 'nil') return { kind: 'nil', position: token.position };
        if (
          ['if', 'else', 'end', 'range', 'with', 'define', 'template', 'block', 'break', 'continue'].includes(
            token.value,
          )
        ) {
          this.fail(`unexpected <${token.value}> in command`);
        }
        return { kind: 'identifier', name: token.value, position: token.position };
      default:
        this.fail(`unexpected ${this.describe(token)} in operand`);
    }
  }
}

function parseGoNumber(text: string, fail: (message: string) => never): unknown {
  const cleaned = text.replace(/_/g, '');
  if (/^[+-]?(0[xX][0-9a-fA-F]+|0[oO]?[0-7]*|0[bB][01]+|[1-9][0-9]*)$/.test(cleaned)) {
    const negative = cleaned.startsWith('-');
    const body = cleaned.replace(/^[+-]/, '');
    let value: number;
    if (/^0[xX]/.test(body)) value = Number.parseInt(body.slice(2), 16);
    else if (/^0[bB]/.test(body)) value = Number.parseInt(body.slice(2), 2);
    else if (/^0[oO]/.test(body)) value = Number.parseInt(body.slice(2), 8);
    else if (/^0[0-7]+$/.test(body)) value = Number.parseInt(body.slice(1), 8);
    else value = Number(body);
    return new GoInt(negative ? -value : value);
  }
  const value = Number(cleaned);
  if (Number.isNaN(value) || !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(cleaned))
    fail(`bad number syntax: "${text}"`);
  return value;
}

/** Decodes a Go double-quoted string literal. */
function unquoteGoString(literal: string, fail: (message: string) => never): string {
  const body = literal.slice(1, -1);
  let out = '';
  for (let index = 0; index < body.length; index++) {
    const character = body[index]!;
    if (character !== '\\') {
      out += character;
      continue;
    }
    const escaped = body[++index];
    const simple: Record<string, string> = {
      a: '\x07',
      b: '\b',
      f: '\f',
      n: '\n',
      r: '\r',
      t: '\t',
      v: '\v',
      '\\': '\\',
      '"': '"',
      "'": "'",
    };
    if (escaped !== undefined && simple[escaped] !== undefined) {
      out += simple[escaped];
      continue;
    }
    const hexLengths: Record<string, number> = { x: 2, u: 4, U: 8 };
    if (escaped !== undefined && hexLengths[escaped] !== undefined) {
      const digits = body.slice(index + 1, index + 1 + hexLengths[escaped]!);
      if (!/^[0-9a-fA-F]+$/.test(digits) || digits.length !== hexLengths[escaped]) fail('invalid syntax');
      out +=
        escaped === 'x'
          ? String.fromCharCode(Number.parseInt(digits, 16))
          : String.fromCodePoint(Number.parseInt(digits, 16));
      index += digits.length;
      continue;
    }
    if (escaped !== undefined && /[0-7]/.test(escaped)) {
      const digits = body.slice(index, index + 3);
      if (!/^[0-7]{3}$/.test(digits)) fail('invalid syntax');
      out += String.fromCharCode(Number.parseInt(digits, 8));
      index += 2;
      continue;
    }
    fail('invalid syntax');
  }
  return out;
}

// ---------------------------------------------------------------------------------------------- values

/** The marker for "no value" (a missing map key), printed `<no value>`. */
const noValue = Symbol('no value');

function isTrue(value: unknown): boolean {
  if (value === noValue || value === undefined || value === null) return false;
  if (value instanceof GoNil) return false;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') return value.length > 0;
  if (typeof value === 'number') return value !== 0;
  if (value instanceof GoInt || value instanceof GoNamedInt) return value.value !== 0;
  if (typeof value === 'bigint') return value !== 0n;
  if (value instanceof GoNamedString) return value.value.length > 0;
  if (value instanceof GoSlice) return value.items.length > 0;
  if (Array.isArray(value)) return value.length > 0;
  if (value instanceof GoMap) return value.entries.size > 0;
  if (value instanceof Map) return value.size > 0;
  if (isPlainMap(value)) return Object.keys(value).length > 0;
  return true;
}

function printValue(value: unknown): string {
  if (value === noValue) return '<no value>';
  return formatGoValue(value);
}

function stringArgument(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value instanceof GoNamedString) return value.value;
  throw new Error(
    `wrong type for value; expected string; got ${value === noValue ? 'invalid value' : goTypeName(value)}`,
  );
}

function integerArgument(value: unknown): number {
  if (value instanceof GoInt || value instanceof GoNamedInt) return value.value;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  throw new Error(`wrong type for value; expected int; got ${goTypeName(value)}`);
}

function stringSliceArgument(value: unknown): string[] {
  const items = value instanceof GoSlice ? value.items : Array.isArray(value) ? value : undefined;
  if (!items?.every((item) => typeof item === 'string' || item instanceof GoNamedString)) {
    throw new Error(`wrong type for value; expected []string; got ${goTypeName(value)}`);
  }
  return items.map((item) => (item instanceof GoNamedString ? item.value : (item as string)));
}

function lengthOf(value: unknown): number {
  if (typeof value === 'string') return Buffer.byteLength(value);
  if (value instanceof GoNamedString) return Buffer.byteLength(value.value);
  if (value instanceof GoSlice) return value.items.length;
  if (Array.isArray(value)) return value.length;
  if (value instanceof GoMap) return value.entries.size;
  if (value instanceof Map) return value.size;
  if (isPlainMap(value)) return Object.keys(value).length;
  throw new Error(`len of type ${goTypeName(value)}`);
}

function indexInto(container: unknown, key: unknown): unknown {
  if (container instanceof GoMap) {
    const keyText = stringArgument(key);
    return container.entries.has(keyText) ? container.entries.get(keyText) : container.zeroElement;
  }
  if (container instanceof Map) return container.get(stringArgument(key)) ?? null;
  const items =
    container instanceof GoSlice
      ? container.items
      : Array.isArray(container)
        ? container
        : typeof container === 'string' || container instanceof GoNamedString
          ? [...Buffer.from(typeof container === 'string' ? container : container.value)].map(
              (byte) => new GoInt(byte),
            )
          : undefined;
  if (items) {
    const position = integerArgument(key);
    if (position < 0 || position >= items.length) throw new Error(`index out of range: ${position}`);
    return items[position];
  }
  if (isPlainMap(container)) {
    const keyText = stringArgument(key);
    return Object.hasOwn(container, keyText) ? (container as Record<string, unknown>)[keyText] : null;
  }
  if (container === null || container === undefined || container instanceof GoNil)
    throw new Error('index of untyped nil');
  throw new Error(`can't index item of type ${goTypeName(container)}`);
}

function basicKind(value: unknown): { kind: string; value: unknown } {
  if (typeof value === 'string') return { kind: 'string', value };
  if (value instanceof GoNamedString) return { kind: 'string', value: value.value };
  if (typeof value === 'boolean') return { kind: 'bool', value };
  if (value instanceof GoInt || value instanceof GoNamedInt) return { kind: 'int', value: value.value };
  if (typeof value === 'bigint') return { kind: 'int', value: Number(value) };
  if (typeof value === 'number') return { kind: 'float', value };
  if (value === null || value === undefined || value instanceof GoNil) return { kind: 'nil', value: null };
  return { kind: 'other', value };
}

function compareValues(left: unknown, right: unknown, operator: string): number {
  const a = basicKind(left);
  const b = basicKind(right);
  if (a.kind === 'other') throw new Error(`non-comparable type ${printValue(left)}: ${goTypeName(left)}`);
  if (b.kind === 'other') throw new Error(`non-comparable type ${printValue(right)}: ${goTypeName(right)}`);
  const numeric = (kind: string) => kind === 'int' || kind === 'float';
  if (a.kind !== b.kind && !(numeric(a.kind) && numeric(b.kind))) {
    if (operator === 'eq' || operator === 'ne') {
      if (a.kind === 'nil' || b.kind === 'nil') return a.kind === b.kind ? 0 : 1;
    }
    throw new Error('incompatible types for comparison');
  }
  if ((a.kind === 'bool' || a.kind === 'nil') && operator !== 'eq' && operator !== 'ne') {
    throw new Error('invalid type for comparison');
  }
  if (a.value === b.value) return 0;
  return (a.value as number | string) < (b.value as number | string) ? -1 : 1;
}

function formatPrintf(format: string, args: unknown[]): string {
  let out = '';
  let argumentIndex = 0;
  const pattern = /%([-+# 0]*)(\d+|\*)?(?:\.(\d+|\*)?)?([a-zA-Z%])/g;
  let last = 0;
  for (const match of format.matchAll(pattern)) {
    out += format.slice(last, match.index);
    last = match.index + match[0].length;
    const [, flags = '', widthText, precisionText, verb] = match;
    if (verb === '%') {
      out += '%';
      continue;
    }
    if (argumentIndex >= args.length) {
      out += `%!${verb}(MISSING)`;
      continue;
    }
    const value = args[argumentIndex++];
    const precision = precisionText === undefined ? undefined : Number(precisionText || 0);
    let text: string;
    const basic = basicKind(value);
    switch (verb) {
      case 'v':
      case 's':
        text = printValue(value);
        if (precision !== undefined && verb === 's') text = [...text].slice(0, precision).join('');
        break;
      case 'q':
        text = JSON.stringify(printValue(value));
        break;
      case 'd':
        text =
          typeof value === 'bigint'
            ? value.toString()
            : basic.kind === 'int'
              ? String(basic.value)
              : `%!d(${goTypeName(value)}=${printValue(value)})`;
        break;
      case 'T':
        text =
          value === noValue ? '<nil>' : value === null || value === undefined ? '<nil>' : goTypeName(value);
        break;
      case 't':
        text = basic.kind === 'bool' ? String(basic.value) : `%!t(${goTypeName(value)}=${printValue(value)})`;
        break;
      case 'f':
      case 'F':
        text =
          basic.kind === 'float' || basic.kind === 'int'
            ? (basic.value as number).toFixed(precision ?? 6)
            : `%!f(${goTypeName(value)}=${printValue(value)})`;
        break;
      case 'x':
      case 'X': {
        if (basic.kind === 'int') text = (basic.value as number).toString(16);
        else if (basic.kind === 'string') text = Buffer.from(basic.value as string).toString('hex');
        else text = `%!${verb}(${goTypeName(value)}=${printValue(value)})`;
        if (verb === 'X') text = text.toUpperCase();
        break;
      }
      default:
        text = `%!${verb}(${goTypeName(value)}=${printValue(value)})`;
    }
    if (widthText !== undefined && widthText !== '*') {
      const width = Number(widthText);
      const length = [...text].length;
      if (length < width) {
        const padding = (flags.includes('0') && !flags.includes('-') ? '0' : ' ').repeat(width - length);
        text = flags.includes('-') ? text + ' '.repeat(width - length) : padding + text;
      }
    }
    out += text;
  }
  out += format.slice(last);
  if (argumentIndex < args.length) {
    out += `%!(EXTRA ${args
      .slice(argumentIndex)
      .map((value) => `${goTypeName(value)}=${printValue(value)}`)
      .join(', ')})`;
  }
  return out;
}

/** Go's `fmt.Sprint`: spaces between operands when neither side is a string. */
function goSprint(args: unknown[]): string {
  let out = '';
  args.forEach((value, index) => {
    const isString = typeof value === 'string';
    const previousIsString = index > 0 && typeof args[index - 1] === 'string';
    if (index > 0 && !isString && !previousIsString) out += ' ';
    out += printValue(value);
  });
  return out;
}

/** Go's `evalArgs` for the escaping functions: a lone string as is, anything else `fmt.Sprint`ed. */
function escaperArgument(args: unknown[]): string {
  if (args.length === 1 && typeof args[0] === 'string') return args[0];
  if (args.length === 1 && args[0] instanceof GoNamedString) return args[0].value;
  return goSprint(args);
}

/** Go's `template.HTMLEscapeString`. */
function htmlEscape(text: string): string {
  return text.replace(/[\0"'&<>]/g, (character) => {
    switch (character) {
      case '\0':
        return '\uFFFD';
      case '"':
        return '&#34;';
      case "'":
        return '&#39;';
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      default:
        return '&gt;';
    }
  });
}

/** Go's `template.JSEscapeString`. */
function jsEscape(text: string): string {
  let out = '';
  for (const character of text) {
    const code = character.codePointAt(0)!;
    switch (character) {
      case '\\':
        out += '\\\\';
        continue;
      case "'":
        out += "\\'";
        continue;
      case '"':
        out += '\\"';
        continue;
      case '<':
        out += '\\u003C';
        continue;
      case '>':
        out += '\\u003E';
        continue;
      case '&':
        out += '\\u0026';
        continue;
      case '=':
        out += '\\u003D';
        continue;
    }
    if (code < 0x20 || !/[\p{L}\p{M}\p{N}\p{P}\p{S}\p{Zs}]/u.test(character)) {
      out += code > 0xffff ? character : `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`;
    } else out += character;
  }
  return out;
}

/** Go's `url.QueryEscape`. */
function queryEscape(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text)) {
    const character = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~]/.test(character)) out += character;
    else if (character === ' ') out += '+';
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Go's builtin template functions. */
const builtinFunctions: Record<string, TemplateFunction> = {
  html: (...args) => htmlEscape(escaperArgument(args)),
  js: (...args) => jsEscape(escaperArgument(args)),
  urlquery: (...args) => queryEscape(escaperArgument(args)),
  call: (fn) => {
    // Inspect data holds no function values: whatever is given is not callable.
    if (fn === null || fn === undefined || fn instanceof GoNil) throw new Error('call of nil');
    throw new Error(`non-function of type ${goTypeName(fn)}`);
  },
  len: (value) => new GoInt(lengthOf(value)),
  index: (container, ...keys) => keys.reduce((current, key) => indexInto(current, key), container),
  slice: (value, ...bounds) => {
    const numbers = bounds.map(integerArgument);
    if (typeof value === 'string' || value instanceof GoNamedString) {
      const bytes = Buffer.from(typeof value === 'string' ? value : value.value);
      const [start = 0, end = bytes.length] = numbers;
      if (start < 0 || end > bytes.length || start > end) throw new Error(`index out of range: ${end}`);
      return bytes.subarray(start, end).toString();
    }
    const items = value instanceof GoSlice ? value.items : Array.isArray(value) ? value : undefined;
    if (!items) throw new Error(`can't slice item of type ${goTypeName(value)}`);
    const [start = 0, end = items.length] = numbers;
    if (start < 0 || end > items.length || start > end) throw new Error(`index out of range: ${end}`);
    const sliced = items.slice(start, end);
    return value instanceof GoSlice ? new GoSlice(value.typeName, sliced) : sliced;
  },
  not: (value) => !isTrue(value),
  print: (...args) => goSprint(args),
  println: (...args) => `${args.map(printValue).join(' ')}\n`,
  printf: (format, ...args) => formatPrintf(stringArgument(format), args),
  eq: (left, ...rights) => {
    if (rights.length === 0) throw new Error('missing argument for comparison');
    return rights.some((right) => compareValues(left, right, 'eq') === 0);
  },
  ne: (left, right) => compareValues(left, right, 'ne') !== 0,
  lt: (left, right) => compareValues(left, right, 'lt') < 0,
  le: (left, right) => compareValues(left, right, 'le') <= 0,
  gt: (left, right) => compareValues(left, right, 'gt') > 0,
  ge: (left, right) => compareValues(left, right, 'ge') >= 0,
};

/**
 * The functions skopeo/podman `--format` templates offer besides Go's builtins: `json` (compact JSON
 * without HTML escaping), `join SLICE SEP`, `split S SEP`, `lower`, `upper`, `title`,
 * `truncate S N`, `pad S PREFIX SUFFIX`.
 */
export const formatFunctions: Readonly<Record<string, TemplateFunction>> = {
  json: (value) => goJsonEncode(value === noValue ? null : value, { escapeHtml: false }),
  join: (items, separator) => stringSliceArgument(items).join(stringArgument(separator)),
  split: (text, separator) => {
    const value = stringArgument(text);
    const by = stringArgument(separator);
    return new GoSlice('[]string', by === '' ? [...value] : value.split(by));
  },
  lower: (text) => stringArgument(text).toLowerCase(),
  upper: (text) => stringArgument(text).toUpperCase(),
  title: (text) =>
    stringArgument(text).replace(
      /(^|[^\p{L}\p{N}_'])(\p{L})/gu,
      (_, before: string, letter: string) => before + letter.toUpperCase(),
    ),
  truncate: (text, length) => {
    const value = stringArgument(text);
    const limit = integerArgument(length);
    return value.length < limit ? value : value.slice(0, limit);
  },
  pad: (text, prefix, suffix) => {
    const value = stringArgument(text);
    if (value === '') return value;
    return ' '.repeat(integerArgument(prefix)) + value + ' '.repeat(integerArgument(suffix));
  },
};

/** A method of a Go value: its parameter kinds, how many results it has, and its implementation. */
interface GoMethod {
  params: ReadonlyArray<'string' | 'int' | 'time'>;
  /** Results other than a trailing `error`: Go's templates call only methods with exactly one. */
  results?: number;
  call: (...args: never[]) => unknown;
}

const digestAlgorithmSizes: Record<string, number> = { sha256: 32, sha384: 48, sha512: 64 };

function digestAlgorithmMethods(algorithm: string): Record<string, GoMethod> {
  const known = Object.hasOwn(digestAlgorithmSizes, algorithm);
  return {
    String: { params: [], call: () => algorithm },
    Available: { params: [], call: () => known },
    Size: { params: [], call: () => new GoInt(digestAlgorithmSizes[algorithm] ?? 0) },
    Validate: {
      params: [],
      call: () => {
        if (!known) throw new Error('unsupported digest algorithm');
        return null;
      },
    },
  };
}

function digestMethods(value: string): Record<string, GoMethod> {
  const colon = value.indexOf(':');
  return {
    Algorithm: {
      params: [],
      call: () => new GoNamedString('digest.Algorithm', value.slice(0, Math.max(colon, 0))),
    },
    Encoded: { params: [], call: () => value.slice(colon + 1) },
    Hex: { params: [], call: () => value.slice(colon + 1) },
    String: { params: [], call: () => value },
    Validate: {
      params: [],
      call: () => {
        if (!/^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(value)) {
          throw new Error('invalid checksum digest format');
        }
        return null;
      },
    },
  };
}

const zeroTimeUnixSeconds = -62135596800;

/** The methods of `time.Time` a template can call (those with one result, or one and an error). */
function timeMethods(time: GoTime): Record<string, GoMethod> {
  const instant = time.instant();
  const civil = civilTime(instant);
  const seconds =
    instant.unixNanoseconds / 1_000_000_000n -
    (instant.unixNanoseconds < 0n && instant.unixNanoseconds % 1_000_000_000n !== 0n ? 1n : 0n);
  const int64 = (value: bigint | number) => new GoInt(Number(value), 'int64');
  const withNanoseconds = (unixNanoseconds: bigint) => GoTime.fromInstant({ ...instant, unixNanoseconds });
  const duration = (nanoseconds: bigint) =>
    new GoNamedInt('time.Duration', Number(nanoseconds), formatGoDuration(nanoseconds));
  const jsonBytes = () =>
    new GoSlice(
      '[]uint8',
      [...Buffer.from(`"${time.toJsonText()}"`)].map((byte) => new GoInt(byte, 'uint8')),
    );
  const textBytes = () =>
    new GoSlice(
      '[]uint8',
      [...Buffer.from(time.toJsonText())].map((byte) => new GoInt(byte, 'uint8')),
    );
  const multiple = (results: number): GoMethod => ({ params: [], results, call: () => undefined });
  return {
    Format: { params: ['string'], call: (layout: string) => formatGoTime(instant, layout) },
    String: { params: [], call: () => time.toGoString() },
    GoString: {
      params: [],
      call: () => {
        const zone =
          instant.zoneName === 'UTC' && instant.offsetSeconds === 0 ? 'time.UTC' : 'time.Location("")';
        return `time.Date(${civil.year}, time.${monthNames[civil.month - 1]}, ${civil.day}, ${civil.hour}, ${civil.minute}, ${civil.second}, ${civil.nanosecond}, ${zone})`;
      },
    },
    Year: { params: [], call: () => new GoInt(civil.year) },
    Month: {
      params: [],
      call: () => new GoNamedInt('time.Month', civil.month, monthNames[civil.month - 1]!),
    },
    Day: { params: [], call: () => new GoInt(civil.day) },
    Hour: { params: [], call: () => new GoInt(civil.hour) },
    Minute: { params: [], call: () => new GoInt(civil.minute) },
    Second: { params: [], call: () => new GoInt(civil.second) },
    Nanosecond: { params: [], call: () => new GoInt(civil.nanosecond) },
    YearDay: { params: [], call: () => new GoInt(civil.yearDay) },
    Weekday: {
      params: [],
      call: () => new GoNamedInt('time.Weekday', civil.weekday, weekdayNames[civil.weekday]!),
    },
    Unix: { params: [], call: () => int64(seconds) },
    UnixMilli: { params: [], call: () => int64(instant.unixNanoseconds / 1_000_000n) },
    UnixMicro: { params: [], call: () => int64(instant.unixNanoseconds / 1000n) },
    UnixNano: { params: [], call: () => instant.unixNanoseconds },
    IsZero: { params: [], call: () => time.seconds === zeroTimeUnixSeconds && time.nanoseconds === 0 },
    IsDST: { params: [], call: () => false },
    UTC: { params: [], call: () => GoTime.fromInstant({ ...instant, offsetSeconds: 0, zoneName: 'UTC' }) },
    Local: { params: [], call: () => localTime(instant) },
    Location: {
      params: [],
      call: () => new GoNamedString('*time.Location', instant.zoneName === 'UTC' ? 'UTC' : ''),
    },
    Before: {
      params: ['time'],
      call: (other: GoTime) => instant.unixNanoseconds < other.instant().unixNanoseconds,
    },
    After: {
      params: ['time'],
      call: (other: GoTime) => instant.unixNanoseconds > other.instant().unixNanoseconds,
    },
    Equal: {
      params: ['time'],
      call: (other: GoTime) => instant.unixNanoseconds === other.instant().unixNanoseconds,
    },
    Sub: {
      params: ['time'],
      call: (other: GoTime) => duration(instant.unixNanoseconds - other.instant().unixNanoseconds),
    },
    Add: {
      params: ['int'],
      call: (nanoseconds: number) => withNanoseconds(instant.unixNanoseconds + BigInt(nanoseconds)),
    },
    AddDate: {
      params: ['int', 'int', 'int'],
      call: (years: number, months: number, days: number) =>
        GoTime.fromInstant(
          instantFromCivil(
            { ...civil, year: civil.year + years, month: civil.month + months, day: civil.day + days },
            civil.nanosecond,
            instant.offsetSeconds,
            instant.zoneName,
          ),
        ),
    },
    Truncate: {
      params: ['int'],
      call: (nanoseconds: number) =>
        GoTime.fromInstant(roundGoTime(instant, BigInt(nanoseconds), 'truncate')),
    },
    Round: {
      params: ['int'],
      call: (nanoseconds: number) => GoTime.fromInstant(roundGoTime(instant, BigInt(nanoseconds), 'round')),
    },
    MarshalJSON: { params: [], call: jsonBytes },
    MarshalText: { params: [], call: textBytes },
    Zone: multiple(2),
    ZoneBounds: multiple(2),
    ISOWeek: multiple(2),
    Date: multiple(3),
    Clock: multiple(3),
  };
}

/**
 * `Time.Local()`: the instant in the process's time zone (`TZ`, else the system's), with the zone's
 * offset and its abbreviation as the platform's time-zone data gives it (`UTC` for UTC).
 */
function localTime(instant: GoInstant): GoTime {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const milliseconds = Number(instant.unixNanoseconds / 1_000_000n);
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: zone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  }).formatToParts(new Date(milliseconds));
  const field = (type: string) => Number(parts.find((part) => part.type === type)?.value);
  const localMilliseconds = Date.UTC(
    field('year'),
    field('month') - 1,
    field('day'),
    field('hour'),
    field('minute'),
    field('second'),
  );
  const offsetSeconds = Math.round((localMilliseconds - Math.floor(milliseconds / 1000) * 1000) / 1000);
  return GoTime.fromInstant({ ...instant, offsetSeconds, zoneName: offsetSeconds === 0 ? 'UTC' : '' });
}

/** The methods a value has (`digest.Digest`, `digest.Algorithm`, `time.Time`), or undefined. */
function methodsOf(receiver: unknown): Record<string, GoMethod> | undefined {
  if (receiver instanceof GoNamedString && receiver.typeName === 'digest.Digest')
    return digestMethods(receiver.value);
  if (receiver instanceof GoNamedString && receiver.typeName === 'digest.Algorithm')
    return digestAlgorithmMethods(receiver.value);
  if (receiver instanceof GoTime) return timeMethods(receiver);
  return undefined;
}

/** Converts a method argument to its parameter kind, worded as Go's template errors. */
function methodArgument(kind: 'string' | 'int' | 'time', value: unknown): unknown {
  switch (kind) {
    case 'string':
      return stringArgument(value);
    case 'int':
      return integerArgument(value);
    case 'time':
      if (value instanceof GoTime) return value;
      throw new Error(`wrong type for value; expected time.Time; got ${goTypeName(value)}`);
  }
}

/**
 * Calls method `name` of `receiver` with `args` (as Go's text/template does for `.X.Method args`).
 * `found` is false when the value has no such method; errors are thrown with Go's wording.
 */
function callMethod(receiver: unknown, name: string, args: unknown[]): { found: boolean; value?: unknown } {
  const method = methodsOf(receiver)?.[name];
  if (!method) return { found: false };
  if ((method.results ?? 1) !== 1) {
    throw new MethodError(`can't call method/function "${name}" with ${method.results} results`);
  }
  if (args.length !== method.params.length) {
    throw new MethodError(
      `wrong number of args for ${name}: want ${method.params.length} got ${args.length}`,
    );
  }
  let converted: unknown[];
  try {
    converted = method.params.map((kind, index) => methodArgument(kind, args[index]));
  } catch (error) {
    throw new MethodError((error as Error).message);
  }
  try {
    return { found: true, value: (method.call as (...values: unknown[]) => unknown)(...converted) };
  } catch (error) {
    throw new MethodError(`error calling ${name}: ${(error as Error).message}`);
  }
}

/** An error from a method call, already worded (not prefixed again). */
class MethodError extends Error {}

// ---------------------------------------------------------------------------------------------- executor

class BreakSignal {}
class ContinueSignal {}

interface Scope {
  variables: Array<{ name: string; value: unknown }>;
}

class Executor {
  private out = '';

  constructor(
    private readonly name: string,
    private readonly text: string,
    private readonly functions: Readonly<Record<string, TemplateFunction>>,
  ) {}

  private location(position: number): string {
    let line = 1;
    let lineStart = 0;
    for (let index = 0; index < position; index++) {
      if (this.text[index] === '\n') {
        line++;
        lineStart = index + 1;
      }
    }
    return `${line}:${position - lineStart + 1}`;
  }

  fail(position: number, source: string, message: string): never {
    throw new TemplateError(
      `template: ${this.name}:${this.location(position)}: executing "${this.name}" at <${source}>: ${message}`,
    );
  }

  run(nodes: Node[], data: unknown): string {
    const scope: Scope = { variables: [{ name: '$', value: data }] };
    this.walkList(nodes, data, scope);
    return this.out;
  }

  private walkList(nodes: Node[], dot: unknown, scope: Scope): void {
    const mark = scope.variables.length;
    try {
      for (const node of nodes) this.walk(node, dot, scope);
    } finally {
      scope.variables.length = mark;
    }
  }

  private walk(node: Node, dot: unknown, scope: Scope): void {
    switch (node.kind) {
      case 'text':
        this.out += node.text;
        return;
      case 'action': {
        const value = this.evalPipeline(node.pipeline, dot, scope, node.position, node.source);
        if (node.pipeline.declarations.length === 0) this.out += printValue(value);
        return;
      }
      case 'if':
      case 'with': {
        const mark = scope.variables.length;
        const value = this.evalPipeline(node.pipeline, dot, scope, node.position, node.source);
        try {
          if (isTrue(value)) this.walkList(node.list, node.kind === 'with' ? value : dot, scope);
          else if (node.elseList) this.walkList(node.elseList, dot, scope);
        } finally {
          scope.variables.length = mark;
        }
        return;
      }
      case 'range':
        this.walkRange(node, dot, scope);
        return;
      case 'break':
        throw new BreakSignal();
      case 'continue':
        throw new ContinueSignal();
    }
  }

  private walkRange(node: RangeNode, dot: unknown, scope: Scope): void {
    const mark = scope.variables.length;
    const declarations = node.pipeline.declarations;
    const pipeline = { ...node.pipeline, declarations: [] };
    const value = this.evalPipeline(pipeline, dot, scope, node.position, node.source);
    let entries: Array<[unknown, unknown]>;
    if (value instanceof GoSlice) entries = value.items.map((item, index) => [new GoInt(index), item]);
    else if (Array.isArray(value)) entries = value.map((item, index) => [new GoInt(index), item]);
    else if (value instanceof GoMap || isPlainMap(value)) entries = sortedMapEntries(value);
    else if (value instanceof GoInt)
      entries = Array.from({ length: Math.max(value.value, 0) }, (_, index) => [
        new GoInt(index),
        new GoInt(index),
      ]);
    else if (value === null || value === undefined || value === noValue || value instanceof GoNil)
      entries = [];
    else this.fail(node.position, node.source, `range can't iterate over ${printValue(value)}`);
    try {
      if (entries.length === 0) {
        if (node.elseList) this.walkList(node.elseList, dot, scope);
        return;
      }
      for (const [key, element] of entries) {
        const iterationMark = scope.variables.length;
        if (declarations.length === 1)
          this.setVariable(scope, declarations[0]!, element, node.pipeline.isAssign, node);
        if (declarations.length === 2) {
          this.setVariable(scope, declarations[0]!, key, node.pipeline.isAssign, node);
          this.setVariable(scope, declarations[1]!, element, node.pipeline.isAssign, node);
        }
        try {
          this.walkList(node.list, element, scope);
        } catch (error) {
          if (error instanceof BreakSignal) break;
          if (!(error instanceof ContinueSignal)) throw error;
        } finally {
          if (!node.pipeline.isAssign) scope.variables.length = iterationMark;
        }
      }
    } finally {
      scope.variables.length = mark;
    }
  }

  private setVariable(
    scope: Scope,
    name: string,
    value: unknown,
    isAssign: boolean,
    node: { position: number; source: string },
  ): void {
    if (isAssign) {
      for (let index = scope.variables.length - 1; index >= 0; index--) {
        if (scope.variables[index]!.name === name) {
          scope.variables[index]!.value = value;
          return;
        }
      }
      this.fail(node.position, node.source, `undefined variable: ${name}`);
    }
    scope.variables.push({ name, value });
  }

  private variable(scope: Scope, name: string, position: number): unknown {
    for (let index = scope.variables.length - 1; index >= 0; index--) {
      if (scope.variables[index]!.name === name) return scope.variables[index]!.value;
    }
    throw new TemplateError(
      `template: ${this.name}:${this.location(position).split(':')[0]}: undefined variable "${name}"`,
    );
  }

  private evalPipeline(
    pipeline: Pipeline,
    dot: unknown,
    scope: Scope,
    position: number,
    source: string,
  ): unknown {
    let value: unknown = noValue;
    let hasValue = false;
    for (const command of pipeline.commands) {
      value = this.evalCommand(command, dot, scope, hasValue ? [value] : []);
      hasValue = true;
    }
    for (const declaration of pipeline.declarations)
      this.setVariable(scope, declaration, value, pipeline.isAssign, { position, source });
    return value;
  }

  private evalCommand(command: Command, dot: unknown, scope: Scope, piped: unknown[]): unknown {
    const [first, ...rest] = command.operands;
    if (!first) this.fail(command.position, command.source, 'empty command');
    if (first.kind === 'identifier') {
      const fn = this.functions[first.name];
      if (!fn) this.fail(command.position, command.source, `"${first.name}" is not a defined function`);
      if (first.name === 'and' || first.name === 'or') {
        // Short-circuit evaluation, returning the deciding operand like Go.
        const operands = [...rest];
        let result: unknown = noValue;
        for (const operand of operands) {
          result = this.evalOperand(operand, dot, scope, command);
          if (first.name === 'and' ? !isTrue(result) : isTrue(result)) return result;
        }
        for (const value of piped) {
          result = value;
          if (first.name === 'and' ? !isTrue(result) : isTrue(result)) return result;
        }
        if (operands.length + piped.length === 0)
          this.fail(
            command.position,
            command.source,
            `wrong number of args for ${first.name}: want at least 1 got 0`,
          );
        return result;
      }
      const args = [...rest.map((operand) => this.evalOperand(operand, dot, scope, command)), ...piped];
      const arity = functionArity[first.name];
      if (arity !== undefined && args.length !== arity) {
        this.fail(
          command.position,
          command.source,
          `wrong number of args for ${first.name}: want ${arity} got ${args.length}`,
        );
      }
      try {
        return fn(...args);
      } catch (error) {
        if (error instanceof TemplateError) throw error;
        this.fail(
          command.position,
          command.source,
          `error calling ${first.name}: ${(error as Error).message}`,
        );
      }
    }
    if (rest.length > 0 || piped.length > 0) {
      if (first.kind === 'literal' || first.kind === 'dot' || first.kind === 'nil') {
        this.fail(
          command.position,
          command.source,
          `can't give argument to non-function ${command.source.split(/\s/)[0]}`,
        );
      }
      // `.A.Method args`: the last name of the chain is called with the arguments.
      const args = [...rest.map((operand) => this.evalOperand(operand, dot, scope, command)), ...piped];
      return this.evalMethodCall(first, dot, scope, command, args);
    }
    if (first.kind === 'nil') this.fail(command.position, 'nil', 'nil is not a command');
    return this.evalOperand(first, dot, scope, command);
  }

  private evalOperand(operand: Operand, dot: unknown, scope: Scope, command: Command): unknown {
    switch (operand.kind) {
      case 'dot':
        return dot;
      case 'literal':
        return operand.value;
      case 'nil':
        return null;
      case 'identifier':
        return this.callNiladic(operand.name, command);
      case 'field':
        return this.evalFields(dot, operand.names, operand.position, operand.source);
      case 'variable':
        return this.evalFields(
          this.variable(scope, operand.name, operand.position),
          operand.names,
          operand.position,
          operand.source,
        );
      case 'chain': {
        const value = this.evalPipeline(operand.pipeline, dot, scope, operand.position, operand.source);
        return this.evalFields(value, operand.names, operand.position, operand.source);
      }
    }
  }

  /** Evaluates a field chain whose last name is a method called with `args`. */
  private evalMethodCall(
    first: Extract<Operand, { kind: 'field' | 'variable' | 'chain' }>,
    dot: unknown,
    scope: Scope,
    command: Command,
    args: unknown[],
  ): unknown {
    const names = first.names;
    const last = names.at(-1);
    let receiver: unknown;
    if (first.kind === 'field') receiver = dot;
    else if (first.kind === 'variable') receiver = this.variable(scope, first.name, first.position);
    else receiver = this.evalPipeline(first.pipeline, dot, scope, first.position, first.source);
    if (last === undefined) {
      this.fail(command.position, command.source, `can't give argument to non-function ${first.source}`);
    }
    receiver = this.evalFields(receiver, names.slice(0, -1), first.position, first.source);
    let result: { found: boolean; value?: unknown };
    try {
      result = callMethod(receiver, last, args);
    } catch (error) {
      if (error instanceof MethodError) this.fail(first.position, first.source, error.message);
      throw error;
    }
    if (result.found) return result.value;
    // Go's errors for arguments given to what is not a method.
    if (receiver instanceof GoStruct && receiver.field(last)) {
      this.fail(first.position, first.source, `${last} has arguments but cannot be invoked as function`);
    }
    if (receiver instanceof GoMap || receiver instanceof Map || isPlainMap(receiver)) {
      this.fail(first.position, first.source, `${last} is not a method but has arguments`);
    }
    return this.evalFields(receiver, [last], first.position, first.source);
  }

  private callNiladic(name: string, command: Command): unknown {
    const fn = this.functions[name];
    if (!fn) this.fail(command.position, command.source, `"${name}" is not a defined function`);
    try {
      return fn();
    } catch (error) {
      this.fail(command.position, command.source, `error calling ${name}: ${(error as Error).message}`);
    }
  }

  private evalFields(receiver: unknown, names: string[], position: number, source: string): unknown {
    let current = receiver;
    for (const name of names) {
      if (current instanceof GoStruct) {
        const field = current.field(name);
        if (field) {
          current = field.value;
          continue;
        }
      }
      let method: { found: boolean; value?: unknown };
      try {
        method = callMethod(current, name, []);
      } catch (error) {
        if (error instanceof MethodError) this.fail(position, source, error.message);
        throw error;
      }
      if (method.found) {
        current = method.value;
        continue;
      }
      if (current instanceof GoMap) {
        current = current.entries.has(name) ? current.entries.get(name) : noValue;
        continue;
      }
      if (current instanceof Map) {
        current = current.has(name) ? current.get(name) : noValue;
        continue;
      }
      if (isPlainMap(current)) {
        current = Object.hasOwn(current, name) ? (current as Record<string, unknown>)[name] : noValue;
        continue;
      }
      if (current instanceof GoNil && current.typeName.startsWith('*')) {
        this.fail(position, source, `nil pointer evaluating ${current.typeName}.${name}`);
      }
      if (current === null || current === undefined || current === noValue) {
        this.fail(position, source, `nil pointer evaluating interface {}.${name}`);
      }
      this.fail(position, source, `can't evaluate field ${name} in type ${goTypeName(current)}`);
    }
    return current;
  }
}

const functionArity: Record<string, number> = {
  len: 1,
  not: 1,
  ne: 2,
  lt: 2,
  le: 2,
  gt: 2,
  ge: 2,
  json: 1,
  join: 2,
  split: 2,
  lower: 1,
  upper: 1,
  title: 1,
  truncate: 2,
  pad: 3,
};

/** A parsed template; `execute` may be called many times. */
export class GoTemplate {
  private constructor(
    readonly name: string,
    private readonly text: string,
    private readonly nodes: Node[],
    private readonly functions: Readonly<Record<string, TemplateFunction>>,
  ) {}

  /**
   * Parses `text`. `functions` adds to (and may override) Go's builtins and `formatFunctions`.
   * Referring to an unknown function is a parse error, as in Go.
   */
  static parse(
    text: string,
    options: { name?: string; functions?: Record<string, TemplateFunction> } = {},
  ): GoTemplate {
    const name = options.name ?? 'template';
    const functions = {
      ...builtinFunctions,
      and: () => undefined,
      or: () => undefined,
      ...formatFunctions,
      ...options.functions,
    };
    const nodes = new Parser(text, name).parse();
    checkFunctions(nodes, functions, name, text);
    return new GoTemplate(name, text, nodes, functions);
  }

  /** Runs the template over `data`; throws `TemplateError` on execution errors. */
  execute(data: unknown): string {
    return new Executor(this.name, this.text, this.functions).run(this.nodes, data);
  }
}

function checkFunctions(
  nodes: Node[],
  functions: Record<string, TemplateFunction>,
  name: string,
  text: string,
): void {
  const lineOf = (position: number) => text.slice(0, position).split('\n').length;
  const checkPipeline = (pipeline: Pipeline): void => {
    for (const command of pipeline.commands) {
      for (const operand of command.operands) {
        if (operand.kind === 'identifier' && !functions[operand.name]) {
          throw new TemplateError(
            `template: ${name}:${lineOf(operand.position)}: function "${operand.name}" not defined`,
          );
        }
        if (operand.kind === 'chain') checkPipeline(operand.pipeline);
      }
    }
  };
  for (const node of nodes) {
    if (node.kind === 'action') checkPipeline(node.pipeline);
    if (node.kind === 'if' || node.kind === 'with' || node.kind === 'range') {
      checkPipeline(node.pipeline);
      checkFunctions(node.list, functions, name, text);
      if (node.elseList) checkFunctions(node.elseList, functions, name, text);
    }
  }
}

/** Parses and runs a template once. */
export function executeGoTemplate(
  text: string,
  data: unknown,
  options: { name?: string; functions?: Record<string, TemplateFunction> } = {},
): string {
  return GoTemplate.parse(text, options).execute(data);
}
