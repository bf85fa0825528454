import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isGantryError } from '../errors.js';
import {
  hasZstdChunkedAnnotations,
  isZstdChunkedAnnotation,
  zstdChunkedAnnotationKeys,
  zstdChunkedAvailable,
  zstdChunkedStage,
} from './zstd-chunked.js';

/**
 * Builds a layer tar with Python's tarfile (PAX format): directories, a hard link, a symlink, a fifo,
 * xattrs, a long non-ASCII name, an empty file, a file of random data (several rollsum chunks), a file with
 * a hole (a zeros chunk), a file with a short run of zeros (data), and a file of nothing but zeros.
 */
const makeTarScript = String.raw`
import io, os, random, sys, tarfile
random.seed(7)
def rnd(n): return bytes(random.getrandbits(8) for _ in range(n))
out = tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT)
def add(name, data=None, **kw):
    info = tarfile.TarInfo(name)
    info.mtime = kw.pop('mtime', 1700000000)
    info.uid = kw.pop('uid', 0); info.gid = kw.pop('gid', 0)
    for k, v in kw.items(): setattr(info, k, v)
    if data is not None:
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    else:
        out.addfile(info)
add('etc', type=tarfile.DIRTYPE, mode=0o755)
add('etc/hosts', b'127.0.0.1 localhost\n', mode=0o644)
add('etc/hosts.link', type=tarfile.LNKTYPE, linkname='etc/hosts')
add('etc/sym', type=tarfile.SYMTYPE, linkname='hosts', mode=0o777)
add('etc/fifo', type=tarfile.FIFOTYPE, mode=0o600)
add('empty', b'', mode=0o600, uid=1000, gid=1000)
add('random.bin', rnd(400000), mode=0o755)
add('holes.bin', rnd(3000) + bytes(5000) + rnd(70000) + bytes(800) + rnd(2000) + bytes(1023) + rnd(10) + bytes(1024) + rnd(10) + bytes(2048), mode=0o644)
add('zeros.bin', bytes(300000), mode=0o644)
add('x' * 120 + '/caf\u00e9-' + 'y' * 40, rnd(1000), mode=0o644, mtime=1700000000.25)
add('attrs', b'with xattrs', mode=0o640, pax_headers={'SCHILY.xattr.user.note': 'hello', 'SCHILY.xattr.user.a': 'b'})
out.close()
`;

/**
 * Checks a TOC against the tar (read by Python's tarfile) and recomputes the chunk boundaries by
 * following containers/storage's compressor literally, byte by byte: holesFinder (runs of at least
 * 1024 zeros) and rollingChecksumReader (bup rollsum, split when the low 16 bits of s2 are all set).
 */
const checkTocScript = `
import base64, hashlib, json, sys, tarfile
toc = json.load(open(sys.argv[2]))
entries = toc['entries']
main = [e for e in entries if e['type'] != 'chunk']
chunks_of = {}
for e in entries:
    if e['type'] == 'chunk' or 'chunkDigest' in e:
        chunks_of.setdefault(e['name'], []).append(e)
types = {tarfile.REGTYPE: 'reg', tarfile.DIRTYPE: 'dir', tarfile.LNKTYPE: 'hardlink', tarfile.SYMTYPE: 'symlink', tarfile.FIFOTYPE: 'fifo'}
def chunks(data):
    M = 0xffffffff
    s1, s2, window, wofs = 64 * 31, 64 * 63 * 31, [0] * 64, 0
    def roll(ch):
        nonlocal s1, s2, wofs
        drop = window[wofs]
        s1 = (s1 + ch - drop) & M
        s2 = (s2 + s1 - 64 * (drop + 31)) & M
        window[wofs] = ch
        wofs = (wofs + 1) & 63
        return (s2 & 0xffff) == 0xffff
    out, start, i, n = [], 0, 0, len(data)
    def cut(end, kind):
        nonlocal start
        if end > start: out.append((start, end - start, kind))
        start = end
    while i < n:
        if data[i] == 0:
            j = i
            while j < n and data[j] == 0: j += 1
            if j - i >= 1024:
                cut(i, '')
                for _ in range(j - i): roll(0)
                cut(j, 'zeros')
                i = j
                continue
            for k in range(i, j):
                if roll(0): cut(k + 1, '')
            i = j
            continue
        if roll(data[i]): cut(i + 1, '')
        i += 1
    cut(n, '')
    return out
tar = tarfile.open(sys.argv[1])
members = tar.getmembers()
assert len(members) == len(main), (len(members), len(main))
for m, e in zip(members, main):
    name = m.name + ('/' if m.isdir() else '')
    assert e['name'] == name, (e['name'], name)
    assert e['type'] == types[m.type], (name, e['type'])
    assert e.get('mode', 0) == m.mode, (name, e.get('mode'), m.mode)
    assert e.get('size', 0) == m.size, name
    assert e.get('uid', 0) == m.uid and e.get('gid', 0) == m.gid, name
    assert e.get('linkName', '') == m.linkname, name
    expected_x = {k[len('SCHILY.xattr.'):]: base64.b64encode(v.encode('utf-8', 'surrogateescape')).decode() for k, v in m.pax_headers.items() if k.startswith('SCHILY.xattr.')}
    assert e.get('xattrs', {}) == expected_x, (name, e.get('xattrs'), expected_x)
    assert e['modtime'].startswith('2023-11-14T22:13:20'), e['modtime']
    if m.isfile() and m.size > 0:
        data = tar.extractfile(m).read()
        assert e['digest'] == 'sha256:' + hashlib.sha256(data).hexdigest(), name
        expected = chunks(data)
        got = chunks_of.get(name, [])
        if len(expected) == 1:
            assert got == [], (name, 'unexpected chunk entries')
        else:
            assert [(g.get('chunkOffset', 0), g['chunkSize'], g.get('chunkType', '')) for g in got] == expected, (name, got, expected)
            for g, (off, size, kind) in zip(got, expected):
                assert g['chunkDigest'] == 'sha256:' + hashlib.sha256(data[off:off + size]).hexdigest(), name
    else:
        assert 'digest' not in e and 'offset' not in e, name
print('toc ok')
`;

function run(command: string, args: string[], input?: Buffer): Buffer {
  const result = spawnSync(command, args, { input, maxBuffer: 1 << 30 });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr?.toString() ?? result.error}`);
  }
  return result.stdout;
}

const zstdDecompress = (bytes: Buffer): Buffer => run('zstd', ['-d', '-c', '-q'], bytes);

async function compressChunked(
  tar: Buffer,
  pieceSize: number,
): Promise<{ blob: Buffer; annotations: Record<string, string> }> {
  const pieces: Buffer[] = [];
  for (let offset = 0; offset < tar.length; offset += pieceSize)
    pieces.push(tar.subarray(offset, offset + pieceSize));
  let annotations: Record<string, string> | undefined;
  const output: Buffer[] = [];
  for await (const chunk of zstdChunkedStage(3, (value) => {
    annotations = value;
  })(Readable.from(pieces))) {
    output.push(Buffer.from(chunk));
  }
  if (annotations === undefined) throw new Error('no annotations');
  return { blob: Buffer.concat(output), annotations };
}

function position(value: string | undefined): number[] {
  return (value ?? '').split(':').map(Number);
}

/** The payload of the skippable frame at `offset - 8` (the annotations point after the frame header). */
function skippablePayload(blob: Buffer, offset: number, length: number): Buffer {
  expect(blob.readUInt32LE(offset - 8)).toBe(0x184d2a50);
  expect(blob.readUInt32LE(offset - 4)).toBe(length);
  return blob.subarray(offset, offset + length);
}

describe.skipIf(!zstdChunkedAvailable())('zstdChunkedStage', () => {
  let directory: string;
  let tar: Buffer;

  beforeAll(() => {
    directory = mkdtempSync(join(tmpdir(), 'gantry-zstd-chunked-'));
    writeFileSync(join(directory, 'make.py'), makeTarScript);
    writeFileSync(join(directory, 'check.py'), checkTocScript);
    run('python3', [join(directory, 'make.py'), join(directory, 'layer.tar')]);
    tar = readFileSync(join(directory, 'layer.tar'));
  });

  afterAll(() => {
    rmSync(directory, { recursive: true, force: true });
  });

  it('writes zstd frames the zstd tool decompresses to the tar, with the TOC, tar-split and footer containers/storage reads', async () => {
    const { blob, annotations } = await compressChunked(tar, 7777);
    // Any zstd reader sees the tar (skippable frames are skipped).
    expect(zstdDecompress(blob).equals(tar)).toBe(true);
    expect(hasZstdChunkedAnnotations(annotations)).toBe(true);

    const [tocOffset, tocLength, tocUncompressed, tocType] = position(
      annotations[zstdChunkedAnnotationKeys.manifestPosition],
    );
    const [splitOffset, splitLength, splitUncompressed] = position(
      annotations[zstdChunkedAnnotationKeys.tarSplitPosition],
    );
    expect(tocType).toBe(1);
    const tocCompressed = skippablePayload(blob, tocOffset!, tocLength!);
    expect(annotations[zstdChunkedAnnotationKeys.manifestChecksum]).toBe(
      `sha256:${createHash('sha256').update(tocCompressed).digest('hex')}`,
    );
    const tocJson = zstdDecompress(tocCompressed);
    expect(tocJson.length).toBe(tocUncompressed);
    const toc = JSON.parse(tocJson.toString('utf8')) as {
      version: number;
      entries: Array<Record<string, unknown>>;
      tarSplitDigest: string;
    };
    expect(toc.version).toBe(1);

    // The footer: the last skippable frame, 64 bytes, repeating the positions.
    const footer = blob.subarray(blob.length - 64);
    expect(blob.readUInt32LE(blob.length - 72)).toBe(0x184d2a50);
    expect(blob.readUInt32LE(blob.length - 68)).toBe(64);
    expect([0, 8, 16, 24, 32, 40, 48].map((at) => Number(footer.readBigUInt64LE(at)))).toEqual([
      tocOffset,
      tocLength,
      tocUncompressed,
      1,
      splitOffset,
      splitLength,
      splitUncompressed,
    ]);
    expect(footer.subarray(56).toString('latin1')).toBe('GNUlInUx');

    // The tar-split: its digest is in the TOC; with each file's content read from the frames the TOC
    // locates, it rebuilds the tar byte for byte.
    const splitCompressed = skippablePayload(blob, splitOffset!, splitLength!);
    expect(toc.tarSplitDigest).toBe(`sha256:${createHash('sha256').update(splitCompressed).digest('hex')}`);
    const splitLines = zstdDecompress(splitCompressed);
    expect(splitLines.length).toBe(splitUncompressed);
    const byName = new Map(
      toc.entries.filter((entry) => entry.type !== 'chunk').map((entry) => [entry.name, entry]),
    );
    const rebuilt: Buffer[] = [];
    for (const line of splitLines.toString('utf8').split('\n').filter(Boolean)) {
      const entry = JSON.parse(line) as { type: number; name?: string; size?: number; payload?: string };
      if (entry.type === 2) {
        rebuilt.push(Buffer.from(entry.payload ?? '', 'base64'));
        continue;
      }
      if (!entry.size) continue;
      const tocEntry = byName.get(entry.name)!;
      const content = zstdDecompress(blob.subarray(tocEntry.offset as number, tocEntry.endOffset as number));
      expect(content.length).toBe(entry.size);
      expect(`sha256:${createHash('sha256').update(content).digest('hex')}`).toBe(tocEntry.digest);
      rebuilt.push(content);
    }
    expect(Buffer.concat(rebuilt).equals(tar)).toBe(true);

    // Each chunk's frames hold exactly that chunk.
    const chunkEntries = toc.entries.filter((entry) => entry.chunkDigest !== undefined);
    expect(chunkEntries.some((entry) => entry.chunkType === 'zeros')).toBe(true);
    expect(chunkEntries.length).toBeGreaterThan(6);
    for (const [index, entry] of chunkEntries.entries()) {
      const next = chunkEntries[index + 1];
      const end =
        next !== undefined && next.name === entry.name
          ? (next.offset as number)
          : (byName.get(entry.name)!.endOffset as number);
      const content = zstdDecompress(blob.subarray(entry.offset as number, end));
      expect(content.length).toBe(entry.chunkSize);
      expect(`sha256:${createHash('sha256').update(content).digest('hex')}`).toBe(entry.chunkDigest);
    }

    // Metadata and chunk boundaries as Python's tarfile and a literal transcription of the Go code see them.
    writeFileSync(join(directory, 'toc.json'), tocJson);
    expect(
      run('python3', [
        join(directory, 'check.py'),
        join(directory, 'layer.tar'),
        join(directory, 'toc.json'),
      ]).toString(),
    ).toBe('toc ok\n');
  });

  it('gives the same bytes however the input is cut', async () => {
    const whole = await compressChunked(tar, tar.length);
    const small = await compressChunked(tar, 509);
    expect(small.blob.equals(whole.blob)).toBe(true);
    expect(small.annotations).toEqual(whole.annotations);
  });

  it('refuses input that is not a tar with ERR_GANTRY_INVALID_LAYER', async () => {
    const failure = await compressChunked(Buffer.alloc(2048, 7), 1024).catch((error: unknown) => error);
    expect(isGantryError(failure) && failure.code).toBe('ERR_GANTRY_INVALID_LAYER');
  });
});

describe('zstd:chunked annotations', () => {
  it('recognises the keys of this format and of its first version', () => {
    expect(isZstdChunkedAnnotation('io.github.containers.zstd-chunked.manifest-checksum')).toBe(true);
    expect(isZstdChunkedAnnotation('io.containers.zstd-chunked.manifest-position')).toBe(true);
    expect(isZstdChunkedAnnotation('org.opencontainers.image.title')).toBe(false);
    expect(hasZstdChunkedAnnotations({ 'io.containers.zstd-chunked.manifest-checksum': 'sha256:00' })).toBe(
      false,
    );
  });
});
