import { describe, expect, it } from 'vitest';
import { TarStreamReader } from './tar-reader.js';

/** One ustar header block for a regular file of `size` bytes, with `checksum` written (computed when not given). */
function header(name: Buffer, size: number, checksum?: (block: Buffer) => number): Buffer {
  const block = Buffer.alloc(512);
  name.copy(block, 0);
  block.write('0000644\0', 100, 'latin1');
  block.write('0000000\0', 108, 'latin1');
  block.write('0000000\0', 116, 'latin1');
  block.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  block.write('00000000000\0', 136, 'latin1');
  block.write('0', 156, 'latin1');
  block.write('ustar\0' + '00', 257, 'latin1');
  block.fill(0x20, 148, 156);
  const sum = checksum ? checksum(block) : unsignedSum(block);
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

function unsignedSum(block: Buffer): number {
  let sum = 0;
  for (const byte of block) sum += byte;
  return sum;
}

function signedSum(block: Buffer): number {
  let sum = 0;
  for (const byte of block) sum += byte > 127 ? byte - 256 : byte;
  return sum;
}

async function names(tar: Buffer): Promise<string[]> {
  const reader = new TarStreamReader(
    (async function* () {
      yield tar;
    })(),
  );
  const found: string[] = [];
  for (;;) {
    const entry = await reader.next();
    if (entry === undefined) return found;
    found.push(entry.header.nameBytes.toString('latin1'));
  }
}

const end = Buffer.alloc(1024);
// A name with bytes above 127 (Latin-1 "é"): its signed and unsigned sums differ.
const highName = Buffer.from('caf\xe9.txt', 'latin1');

describe('TarStreamReader header checksums', () => {
  it('accepts the unsigned (POSIX) checksum', async () => {
    expect(await names(Buffer.concat([header(highName, 0), end]))).toEqual(['caf\xe9.txt']);
  });

  it('accepts the signed checksum some old tars wrote', async () => {
    const block = header(highName, 0, signedSum);
    expect(
      signedSum(Buffer.concat([block.subarray(0, 148), Buffer.alloc(8, 0x20), block.subarray(156)])),
    ).not.toBe(
      unsignedSum(Buffer.concat([block.subarray(0, 148), Buffer.alloc(8, 0x20), block.subarray(156)])),
    );
    expect(await names(Buffer.concat([block, end]))).toEqual(['caf\xe9.txt']);
  });

  it('refuses a header whose checksum is neither', async () => {
    const block = header(highName, 0, (value) => unsignedSum(value) + 1);
    await expect(names(Buffer.concat([block, end]))).rejects.toThrow(/bad header checksum/);
    const corrupted = header(Buffer.from('plain.txt'), 0);
    corrupted[0] = 0x71; // the name changed after the checksum was computed
    await expect(names(Buffer.concat([corrupted, end]))).rejects.toThrow(/bad header checksum/);
  });
});

/** What a reader gives for `tar` cut into pieces of `sizes` (cycled): each entry's name, raw bytes and content. */
async function readAll(tar: Buffer, sizes: readonly number[], views: boolean): Promise<string[]> {
  const reader = new TarStreamReader(
    (async function* () {
      let offset = 0;
      for (let index = 0; offset < tar.length; index++) {
        const size = sizes[index % sizes.length] as number;
        // Each piece in memory of its own, as a stream hands out new buffers.
        yield Buffer.from(tar.subarray(offset, offset + size));
        offset += size;
      }
    })(),
    { views },
  );
  const found: string[] = [];
  for (;;) {
    const entry = await reader.next();
    if (entry === undefined) break;
    const content: Buffer[] = [];
    for (;;) {
      const chunk = await reader.readData();
      if (chunk === undefined) break;
      content.push(chunk);
    }
    found.push(
      `${entry.header.name} raw=${entry.raw.toString('hex')} content=${Buffer.concat(content).toString('hex')}`,
    );
  }
  found.push(`end=${reader.end.toString('hex')}`);
  for await (const chunk of reader.trailing()) found.push(`trailing=${chunk.toString('hex')}`);
  found.push(`sha256=${reader.digestHex()} bytes=${reader.bytesRead}`);
  return found;
}

describe('TarStreamReader chunking', () => {
  it('gives the same entries, raw bytes and contents however the input is cut, with or without views', async () => {
    const contents = [Buffer.from('hello\n'), Buffer.alloc(0), Buffer.alloc(1500, 7), Buffer.alloc(512, 1)];
    const tar = Buffer.concat([
      ...contents.flatMap((content, index) => [
        header(Buffer.from(`dir/file-${index}`), content.length),
        content,
        Buffer.alloc((512 - (content.length % 512)) % 512),
      ]),
      end,
      Buffer.from('after the end'),
    ]);
    const expected = await readAll(tar, [tar.length], false);
    expect(expected).toHaveLength(contents.length + 3);
    expect(expected[0]).toContain('content=68656c6c6f0a');
    for (const sizes of [[1], [3, 509], [511], [512], [513, 1024], [100, 2000, 7]]) {
      expect(await readAll(tar, sizes, false)).toEqual(expected);
      expect(await readAll(tar, sizes, true)).toEqual(expected);
    }
  });

  it('hands out views of the input with views, and copies without', async () => {
    const tar = Buffer.concat([header(Buffer.from('a'), 3), Buffer.from('abc'), Buffer.alloc(509), end]);
    for (const views of [false, true]) {
      const reader = new TarStreamReader(
        (async function* () {
          yield tar;
        })(),
        { views },
      );
      const entry = await reader.next();
      expect(entry?.raw.equals(tar.subarray(0, 512))).toBe(true);
      // A view shows a change of the input's memory; a copy does not.
      const first = tar[0] as number;
      tar[0] = first ^ 0xff;
      expect(entry?.raw[0] === tar[0]).toBe(views);
      tar[0] = first;
    }
  });

  it('counts without hashing with digest: false (for a caller that hashes the input itself)', async () => {
    const tar = Buffer.concat([header(Buffer.from('a'), 3), Buffer.from('abc'), Buffer.alloc(509), end]);
    const reader = new TarStreamReader(
      (async function* () {
        yield tar;
      })(),
      { digest: false },
    );
    while ((await reader.next()) !== undefined) {
      // entries
    }
    for await (const _ of reader.trailing()) {
      // trailing bytes
    }
    expect(reader.bytesRead).toBe(tar.length);
    expect(() => reader.digestHex()).toThrow(/digest: false/);
  });
});

describe('TarStreamReader header formats', () => {
  /** A header named `file` with `pre` in the ustar prefix field, under the given magic (and star trailer). */
  function withMagic(magic: string, star = false): Buffer {
    const block = header(Buffer.from('file'), 0);
    block.fill(0, 257, 265);
    block.write(magic, 257, 'latin1');
    block.write('pre', 345, 'latin1');
    if (star) block.write('tar\0', 508, 'latin1');
    block.fill(0x20, 148, 156);
    block.write(`${unsignedSum(block).toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    return block;
  }

  it('joins the prefix for ustar and star, not for GNU or v7 headers', async () => {
    const tar = Buffer.concat([
      withMagic('ustar\x0000'),
      withMagic('ustar\x0000', true),
      withMagic('ustar  \x00'),
      withMagic(''),
      withMagic('ustaX\x0000'),
      end,
    ]);
    expect(await names(tar)).toEqual(['pre/file', 'pre/file', 'file', 'file', 'file']);
  });
});

describe('header fields', () => {
  /** A ustar header with owner names, a link name and a size field written as given (checksum fixed). */
  function owned(name: string, uname: string, gname: string, fields: { link?: string; size?: string } = {}) {
    const block = header(Buffer.from(name), 0);
    block.fill(0, 124, 136);
    block.write(fields.size ?? '00000000000\0', 124, 'latin1');
    if (fields.link !== undefined) {
      block.write('2', 156, 'latin1');
      block.write(fields.link, 157, 'latin1');
    }
    block.write(uname, 265, 'latin1');
    block.write(gname, 297, 'latin1');
    block.fill(0x20, 148, 156);
    block.write(`${unsignedSum(block).toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    return block;
  }

  it('decodes owner names per entry (a full 32-byte field has no NUL), links, and octal fields up to a NUL', async () => {
    const full = 'u'.repeat(32);
    const tar = Buffer.concat([
      owned('a', 'root', 'root'),
      owned('a2', 'toor', 'root'),
      owned('b', 'root', 'wheel'),
      owned('c', 'rootx', 'wheel', { link: 'target' }),
      owned('d', 'roo', 'whee'),
      owned('n'.repeat(100), 'toor', 'whee'),
      owned('e', full, 'caf\xc3\xa9'),
      owned('f', 'root', '', { size: '0000000\x00777' }),
      end,
    ]);
    const reader = new TarStreamReader(
      (async function* () {
        yield tar;
      })(),
    );
    const found: string[] = [];
    for (;;) {
      const entry = await reader.next();
      if (entry === undefined) break;
      const { header: h } = entry;
      found.push(
        `${h.name} ${h.uname}:${h.gname} ${h.type} ${h.linkName}${h.linkNameBytes.toString()} ${h.size}`,
      );
    }
    expect(found).toEqual([
      'a root:root file  0',
      'a2 toor:root file  0',
      'b root:wheel file  0',
      'c rootx:wheel symlink targettarget 0',
      'd roo:whee file  0',
      `${'n'.repeat(100)} toor:whee file  0`,
      `e ${full}:café file  0`,
      'f root: file  0',
    ]);
  });
});
