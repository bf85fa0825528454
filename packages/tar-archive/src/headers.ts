/**
 * Decoding of tar header blocks (ustar, GNU and PAX extensions), for the index reader.
 */
import { ErrorCodes, GantryError } from '@gantry/core/transport';

/** Size of a tar block. */
export const blockSize = 512;

/** What one 512-byte header block says, before extended headers (PAX, GNU long names) are applied. */
export interface RawHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkName: string;
  userName: string;
  groupName: string;
}

function invalid(offset: number, reason: string): GantryError {
  return new GantryError(ErrorCodes.InvalidLayout, `invalid tar header at offset ${offset}: ${reason}`);
}

/** A NUL-terminated string field. */
function readString(block: Uint8Array, start: number, length: number): string {
  let end = start;
  while (end < start + length && block[end] !== 0) end++;
  return Buffer.from(block.buffer, block.byteOffset + start, end - start).toString('utf8');
}

/**
 * A numeric field: octal text (NUL/space padded) or GNU base-256 (first byte 0x80; 0xff, negative, is
 * refused).
 */
function readNumber(block: Uint8Array, start: number, length: number, offset: number, field: string): number {
  const first = block[start]!;
  if (first & 0x80) {
    if (first === 0xff) throw invalid(offset, `negative base-256 ${field}`);
    let value = first & 0x7f;
    for (let index = start + 1; index < start + length; index++) {
      value = value * 256 + block[index]!;
    }
    if (!Number.isSafeInteger(value)) throw invalid(offset, `${field} too large`);
    return value;
  }
  const text = readString(block, start, length).replace(/^[ ]+|[ \0]+$/g, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw invalid(offset, `${field} is not an octal number: "${text}"`);
  const value = Number.parseInt(text, 8);
  if (!Number.isSafeInteger(value)) throw invalid(offset, `${field} too large`);
  return value;
}

/** True when the block is all zeros (end of archive). */
export function isZeroBlock(block: Uint8Array): boolean {
  for (let index = 0; index < blockSize; index++) if (block[index] !== 0) return false;
  return true;
}

function verifyChecksum(block: Uint8Array, offset: number): void {
  const stored = readNumber(block, 148, 8, offset, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let index = 0; index < blockSize; index++) {
    const byte = index >= 148 && index < 156 ? 0x20 : block[index]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  if (stored !== unsigned && stored !== signed) throw invalid(offset, 'header checksum mismatch');
}

/** Decodes one header block found at `offset` of the archive (for error messages). */
export function decodeHeader(block: Uint8Array, offset: number): RawHeader {
  verifyChecksum(block, offset);
  const magic = readString(block, 257, 6);
  const version = Buffer.from(block.buffer, block.byteOffset + 263, 2).toString('latin1');
  const isUstar = magic === 'ustar' && version === '00';
  let name = readString(block, 0, 100);
  if (isUstar) {
    const prefix = readString(block, 345, 155);
    if (prefix !== '') name = `${prefix}/${name}`;
  }
  return {
    name,
    mode: readNumber(block, 100, 8, offset, 'mode'),
    uid: readNumber(block, 108, 8, offset, 'uid'),
    gid: readNumber(block, 116, 8, offset, 'gid'),
    size: readNumber(block, 124, 12, offset, 'size'),
    mtime: readNumber(block, 136, 12, offset, 'mtime'),
    typeflag: block[156] === 0 ? '0' : String.fromCharCode(block[156]!),
    linkName: readString(block, 157, 100),
    userName: magic.startsWith('ustar') ? readString(block, 265, 32) : '',
    groupName: magic.startsWith('ustar') ? readString(block, 297, 32) : '',
  };
}

/**
 * Parses PAX extended header records (`"<length> <key>=<value>\n"`, length in bytes including itself).
 * Throws `ERR_GANTRY_INVALID_LAYOUT` on malformed records.
 */
export function parsePaxRecords(data: Uint8Array, offset: number): Map<string, string> {
  const records = new Map<string, string>();
  const buffer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let position = 0;
  while (position < buffer.length) {
    if (buffer[position] === 0) break; // padding some writers leave
    const space = buffer.indexOf(0x20, position);
    if (space === -1) throw invalid(offset, 'malformed PAX record');
    const lengthText = buffer.toString('latin1', position, space);
    if (!/^\d+$/.test(lengthText)) throw invalid(offset, 'malformed PAX record length');
    const length = Number(lengthText);
    const end = position + length;
    if (length <= space - position + 1 || end > buffer.length || buffer[end - 1] !== 0x0a) {
      throw invalid(offset, 'malformed PAX record');
    }
    const record = buffer.toString('utf8', space + 1, end - 1);
    const equals = record.indexOf('=');
    if (equals <= 0) throw invalid(offset, 'malformed PAX record');
    records.set(record.slice(0, equals), record.slice(equals + 1));
    position = end;
  }
  return records;
}

/** Text of a GNU long name / long link entry: its data up to the first NUL. */
export function decodeLongName(data: Uint8Array): string {
  const nul = data.indexOf(0);
  return Buffer.from(data.buffer, data.byteOffset, nul === -1 ? data.byteLength : nul).toString('utf8');
}
