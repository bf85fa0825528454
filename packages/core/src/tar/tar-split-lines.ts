/**
 * tar-split entries as vbatts/tar-split's `tar/storage` JSON-lines format writes them, one JSON object
 * per line, in tar order:
 *
 *   `{"type":2,"payload":"<base64 raw bytes>","position":N}`  a segment: headers and padding, verbatim
 *   `{"type":1,"name":"etc/hosts","size":12,"payload":"<base64 CRC-64/ISO, 8 bytes>","position":N}`  a file
 *
 * with `name_raw` (base64 bytes) instead of `name` when the name is not valid UTF-8, `size` left out when 0,
 * `payload` null for files without content, and positions counting from 0. Lines are written as Go's
 * encoding/json writes them, so they equal containers/storage's for the same layer tar. containers/storage
 * stores them gzip-compressed beside a layer (`@gantry/layer-tree`) and zstd-compressed inside a
 * zstd:chunked layer (`zstdChunkedStage`).
 */
import { ErrorCodes, GantryError } from '../errors.js';

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

function validUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8Strict.decode(bytes);
  } catch {
    return undefined;
  }
}

// Characters Go's encoding/json escapes in strings (with HTML escaping on, as json.Encoder has it).
const needsEscape = /[\u0000-\u001f"\\<>&\u2028\u2029]/;
const escapeAll = /[\u0000-\u001f"\\<>&\u2028\u2029]/g;

function escapeCharacter(character: string): string {
  switch (character) {
    case '"':
      return '\\"';
    case '\\':
      return '\\\\';
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
    default:
      return `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`;
  }
}

/** A JSON string literal as Go's encoding/json (1.19) writes it. */
export function goJsonString(value: string): string {
  return `"${needsEscape.test(value) ? value.replace(escapeAll, escapeCharacter) : value}"`;
}

/** Go's path.Clean, on a byte string (one character per byte). */
export function cleanPath(path: string): string {
  if (path === '') return '.';
  const rooted = path.startsWith('/');
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length > 0 && parts[parts.length - 1] !== '..') parts.pop();
      else if (!rooted) parts.push('..');
      continue;
    }
    parts.push(part);
  }
  const joined = parts.join('/');
  if (rooted) return `/${joined}`;
  return joined === '' ? '.' : joined;
}

/** Which vbatts/tar-split release's output to reproduce (they differ only in the last entry). */
export type TarSplitStyle = 'tar-split-0.11.2' | 'tar-split-0.11.4';

/**
 * Formats tar-split entries as JSON lines, numbering them, and refusing a file name seen before (as
 * tar-split's packer does: containers/storage cannot store such a layer).
 */
export class TarSplitLines {
  private position = 0;
  private readonly seen = new Set<string>();

  /** A segment line (raw tar bytes); empty segments give no line unless `keepEmpty` is set. */
  segment(payload: Uint8Array, keepEmpty = false): string | undefined {
    if (payload.length === 0 && !keepEmpty) return undefined;
    const base64 = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('base64');
    return `{"type":2,"payload":"${base64}","position":${this.position++}}\n`;
  }

  /**
   * A file line: the exact name bytes from the tar, the size from its header, and the CRC-64 of its
   * content (null when the size is 0).
   */
  file(nameBytes: Buffer, size: number, crc64: Buffer | null): string {
    const clean = cleanPath(nameBytes.toString('latin1'));
    if (this.seen.has(clean)) {
      throw new GantryError(
        ErrorCodes.InvalidLayer,
        `layer tar: entry "${nameBytes.toString('utf8')}" appears twice (containers/storage refuses duplicate paths)`,
      );
    }
    this.seen.add(clean);
    const name = validUtf8(nameBytes);
    let text = '{"type":1';
    if (name !== undefined) {
      if (name !== '') text += `,"name":${goJsonString(name)}`;
    } else {
      text += `,"name_raw":"${nameBytes.toString('base64')}"`;
    }
    if (size !== 0) text += `,"size":${size}`;
    text += crc64 === null ? ',"payload":null' : `,"payload":"${crc64.toString('base64')}"`;
    text += `,"position":${this.position++}}\n`;
    return text;
  }

  /**
   * The line ending the entries after the bytes that follow the tar's end blocks: `tar-split-0.11.2`
   * (Debian's podman 4.3 / containers/storage 1.43) closes with one empty segment, the last read that
   * found the end of the stream; `tar-split-0.11.4` (containers/storage since mid-2023) writes none.
   */
  trailer(style: TarSplitStyle): string | undefined {
    return style === 'tar-split-0.11.2' ? this.segment(Buffer.alloc(0), true) : undefined;
  }
}
