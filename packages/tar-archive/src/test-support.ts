/**
 * Test helpers: hand-made tar headers, for archives no well-behaved tool writes (hostile names, bad
 * sizes, base-256 numbers). Used by this package's tests and by the archive transports' tests.
 */

/** One raw entry for `buildRawTar`. */
export interface RawTarEntry {
  name: string;
  /** Typeflag character; default '0' (file). */
  typeflag?: string;
  /** Data bytes written after the header (padded to 512). */
  data?: Uint8Array | string;
  /** Size written in the header; default the data length. */
  size?: number;
  linkName?: string;
  /** Write the size as GNU base-256 instead of octal. */
  base256Size?: boolean;
  /** Corrupt the checksum. */
  badChecksum?: boolean;
}

function writeString(block: Buffer, text: string, offset: number, length: number): void {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > length) throw new Error(`"${text}" does not fit in ${length} bytes`);
  bytes.copy(block, offset);
}

function writeOctal(block: Buffer, value: number, offset: number, length: number): void {
  writeString(block, `${value.toString(8).padStart(length - 1, '0')}\0`, offset, length);
}

/** One 512-byte ustar header block. */
export function rawTarHeader(entry: RawTarEntry): Buffer {
  const block = Buffer.alloc(512);
  const data = entry.data === undefined ? Buffer.alloc(0) : Buffer.from(entry.data);
  const size = entry.size ?? data.length;
  writeString(block, entry.name, 0, 100);
  writeOctal(block, 0o644, 100, 8);
  writeOctal(block, 0, 108, 8);
  writeOctal(block, 0, 116, 8);
  if (entry.base256Size) {
    block[124] = 0x80;
    let remaining = size;
    for (let index = 11; index > 0; index--) {
      block[124 + index] = remaining % 256;
      remaining = Math.floor(remaining / 256);
    }
  } else {
    writeOctal(block, size, 124, 12);
  }
  writeOctal(block, 0, 136, 12);
  block[156] = (entry.typeflag ?? '0').charCodeAt(0);
  if (entry.linkName) writeString(block, entry.linkName, 157, 100);
  writeString(block, 'ustar\0', 257, 6);
  writeString(block, '00', 263, 2);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  if (entry.badChecksum) sum += 1;
  writeString(block, `${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  return block;
}

/** A PAX extended header entry ('x') carrying `records`, to put before the entry it applies to. */
export function paxHeaderEntry(records: Record<string, string>, typeflag = 'x'): RawTarEntry {
  let text = '';
  for (const [key, value] of Object.entries(records)) {
    const body = ` ${key}=${value}\n`;
    let length = Buffer.byteLength(body) + 1;
    while (String(length).length + Buffer.byteLength(body) !== length) length++;
    text += `${length}${body}`;
  }
  return { name: 'PaxHeader', typeflag, data: text };
}

/**
 * A tar archive from raw entries: header, data padded to 512 bytes, then two zero blocks unless
 * `endBlocks` is false.
 */
export function buildRawTar(entries: RawTarEntry[], options: { endBlocks?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    parts.push(rawTarHeader(entry));
    const data = entry.data === undefined ? Buffer.alloc(0) : Buffer.from(entry.data);
    parts.push(data);
    const padding = (512 - (data.length % 512)) % 512;
    parts.push(Buffer.alloc(padding));
  }
  if (options.endBlocks !== false) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}
