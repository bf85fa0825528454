import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Digest, digestOf } from '../digest.js';
import { DiskBlobInfoCache, defaultBlobInfoCachePath, MemoryBlobInfoCache } from './blob-info-cache.js';

const digest = (text: string) => digestOf(new TextEncoder().encode(text)) as Digest;
const layer = digest('layer');
const gzipped = digest('layer.gz');
const zstded = digest('layer.zst');

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gantry-blob-info-cache-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('MemoryBlobInfoCache', () => {
  it('pairs compressed and uncompressed digests both ways', () => {
    const cache = new MemoryBlobInfoCache();
    cache.recordDigestUncompressedPair(gzipped, layer, 'gzip');
    cache.recordDigestUncompressedPair(zstded, layer, 'zstd');
    expect(cache.uncompressedDigest(gzipped)).toBe(layer);
    expect(cache.uncompressedDigest(layer)).toBe(layer);
    expect(cache.compressedVariants(layer)).toEqual([
      { digest: zstded, compression: 'zstd' },
      { digest: gzipped, compression: 'gzip' },
      { digest: layer, compression: 'none' },
    ]);
  });

  it('lists locations most recently seen first, per transport and scope, and forgets them', () => {
    const cache = new MemoryBlobInfoCache();
    cache.recordKnownLocation('docker', 'registry:5000', layer, 'team/a');
    cache.recordKnownLocation('docker', 'registry:5000', layer, 'team/b');
    cache.recordKnownLocation('docker', 'other:5000', layer, 'team/c');
    expect(cache.candidateLocations('docker', 'registry:5000', layer)).toEqual(['team/b', 'team/a']);
    cache.forgetLocation('docker', 'registry:5000', layer, 'team/b');
    expect(cache.candidateLocations('docker', 'registry:5000', layer)).toEqual(['team/a']);
  });
});

describe('DiskBlobInfoCache', () => {
  it('keeps what one process learnt for the next', async () => {
    const file = join(directory, 'nested', 'cache.json');
    const first = new DiskBlobInfoCache(file);
    first.recordDigestUncompressedPair(zstded, layer, 'zstd');
    first.recordKnownLocation('docker', 'registry:5000', zstded, 'team/a');
    await first.flush();
    const second = new DiskBlobInfoCache(file);
    expect(second.uncompressedDigest(zstded)).toBe(layer);
    expect(second.candidateLocations('docker', 'registry:5000', zstded)).toEqual(['team/a']);
  });

  it('merges the records of concurrent writers, losing none', async () => {
    const file = join(directory, 'cache.json');
    const writers = Array.from({ length: 8 }, (_, index) => {
      const cache = new DiskBlobInfoCache(file);
      for (let entry = 0; entry < 20; entry++) {
        cache.recordDigestUncompressedPair(
          digest(`c-${index}-${entry}`),
          digest(`u-${index}-${entry}`),
          'gzip',
        );
      }
      cache.recordKnownLocation('docker', 'r', digest(`c-${index}-0`), `repo/${index}`);
      return cache;
    });
    await Promise.all(writers.map((cache) => cache.flush()));
    const reader = new DiskBlobInfoCache(file);
    for (let index = 0; index < 8; index++) {
      for (let entry = 0; entry < 20; entry++) {
        expect(reader.uncompressedDigest(digest(`c-${index}-${entry}`))).toBe(digest(`u-${index}-${entry}`));
      }
      expect(reader.candidateLocations('docker', 'r', digest(`c-${index}-0`))).toEqual([`repo/${index}`]);
    }
    await expect(readFile(`${file}.lock`)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('ignores a corrupt file and rebuilds it', async () => {
    const file = join(directory, 'cache.json');
    for (const corrupt of ['{"version":1,"pairs":{"x":', 'null', '{"version":7}', '\u0000\u0001binary']) {
      await writeFile(file, corrupt);
      const cache = new DiskBlobInfoCache(file);
      expect(cache.uncompressedDigest(gzipped)).toBeUndefined();
      cache.recordDigestUncompressedPair(gzipped, layer, 'gzip');
      await cache.flush();
      expect((await readFile(file, 'utf8')).split('\n')[0]).toBe('{"version":2}');
      expect(new DiskBlobInfoCache(file).uncompressedDigest(gzipped)).toBe(layer);
    }
  });

  it('appends what a process learnt instead of rewriting the file, and keeps forgotten locations forgotten', async () => {
    const file = join(directory, 'cache.json');
    const first = new DiskBlobInfoCache(file);
    first.recordDigestUncompressedPair(gzipped, layer, 'gzip');
    first.recordKnownLocation('docker', 'r', gzipped, 'team/a');
    first.recordKnownLocation('docker', 'r', gzipped, 'team/b');
    await first.flush();
    const written = await readFile(file, 'utf8');
    const second = new DiskBlobInfoCache(file);
    second.forgetLocation('docker', 'r', gzipped, 'team/a');
    second.recordDigestUncompressedPair(zstded, layer, 'zstd');
    await second.flush();
    const appended = await readFile(file, 'utf8');
    expect(appended.startsWith(written)).toBe(true);
    expect(appended.slice(written.length).trim().split('\n')).toHaveLength(2);
    const third = new DiskBlobInfoCache(file);
    expect(third.candidateLocations('docker', 'r', gzipped)).toEqual(['team/b']);
    expect(third.compressedVariants(layer).map((variant) => variant.digest)).toEqual([
      zstded,
      gzipped,
      layer,
    ]);
    // A location learnt again after it was forgotten is known again.
    third.recordKnownLocation('docker', 'r', gzipped, 'team/a');
    await third.flush();
    expect(new DiskBlobInfoCache(file).candidateLocations('docker', 'r', gzipped)).toEqual([
      'team/a',
      'team/b',
    ]);
  });

  it('appends nothing for what the file already holds as most recent, and what changes an answer', async () => {
    const file = join(directory, 'cache.json');
    const first = new DiskBlobInfoCache(file);
    first.recordDigestUncompressedPair(gzipped, layer, 'gzip');
    first.recordKnownLocation('docker', 'r', gzipped, 'team/a');
    first.recordKnownLocation('docker', 'r', gzipped, 'team/b');
    await first.flush();
    const written = await readFile(file, 'utf8');
    // The same copy again (a re-push): it learns nothing new, and the file stays as it was.
    const again = new DiskBlobInfoCache(file);
    again.recordDigestUncompressedPair(gzipped, layer, 'gzip');
    again.recordKnownLocation('docker', 'r', gzipped, 'team/b');
    await again.flush();
    expect(await readFile(file, 'utf8')).toBe(written);
    // A location seen again that is not the most recent one changes the order: it is written.
    const older = new DiskBlobInfoCache(file);
    older.recordKnownLocation('docker', 'r', gzipped, 'team/a');
    await older.flush();
    const reordered = await readFile(file, 'utf8');
    expect(reordered.slice(written.length).trim().split('\n')).toHaveLength(1);
    expect(new DiskBlobInfoCache(file).candidateLocations('docker', 'r', gzipped)).toEqual([
      'team/a',
      'team/b',
    ]);
    // A pair learnt with another compression is written; so is one whose record is older than a day.
    const changed = new DiskBlobInfoCache(file);
    changed.recordDigestUncompressedPair(gzipped, layer, 'zstd');
    await changed.flush();
    expect((await readFile(file, 'utf8')).length).toBeGreaterThan(reordered.length);
    class DayLater extends DiskBlobInfoCache {
      protected override now(): number {
        return super.now() + 2 * 24 * 60 * 60 * 1000;
      }
    }
    const before = await readFile(file, 'utf8');
    const later = new DayLater(file);
    later.recordKnownLocation('docker', 'r', gzipped, 'team/a');
    await later.flush();
    expect((await readFile(file, 'utf8')).slice(before.length).trim().split('\n')).toHaveLength(1);
  });

  it("reads each blob's whole history from the file, whichever blob is asked about first", async () => {
    const file = join(directory, 'cache.json');
    const other = digest('other layer');
    const line = (fields: unknown[]) => `${JSON.stringify(fields)}\n`;
    await writeFile(
      file,
      `{"version":2}\n${[
        line(['p', gzipped, layer, 'gzip', 1]),
        line(['p', zstded, layer, 'zstd', 2]),
        // gzipped turned out to be another layer's blob: it is no variant of layer any more.
        line(['p', gzipped, other, 'gzip', 3]),
        line(['l', 'docker', 'r', zstded, 'team/a', 4]),
        // A location whose name is a digest is no record about that digest.
        line(['l', 'docker', 'r', other, gzipped, 5]),
        line(['l', 'docker', 'r', zstded, 'team/b', 6]),
        line(['f', 'docker', 'r', zstded, 'team/a']),
      ].join('')}`,
    );
    const variantsFirst = new DiskBlobInfoCache(file);
    expect(variantsFirst.compressedVariants(layer).map((variant) => variant.digest)).toEqual([zstded]);
    expect(variantsFirst.uncompressedDigest(gzipped)).toBe(other);
    expect(variantsFirst.candidateLocations('docker', 'r', gzipped)).toEqual([]);
    expect(variantsFirst.candidateLocations('docker', 'r', zstded)).toEqual(['team/b']);
    const blobFirst = new DiskBlobInfoCache(file);
    expect(blobFirst.uncompressedDigest(gzipped)).toBe(other);
    expect(blobFirst.compressedVariants(layer).map((variant) => variant.digest)).toEqual([zstded]);
    expect(blobFirst.compressedVariants(other).map((variant) => variant.digest)).toEqual([gzipped]);
    expect(blobFirst.candidateLocations('docker', 'r', other)).toEqual([gzipped]);
    // What this process records wins over the file, and goes to the file for the next.
    blobFirst.recordDigestUncompressedPair(gzipped, layer, 'gzip');
    expect(blobFirst.compressedVariants(layer).map((variant) => variant.digest)).toEqual([
      gzipped,
      layer,
      zstded,
    ]);
    expect(blobFirst.compressedVariants(other)).toEqual([]);
    await blobFirst.flush();
    expect(new DiskBlobInfoCache(file).uncompressedDigest(gzipped)).toBe(layer);
  });

  it('skips a torn line (a writer that died mid-append) and keeps the others', async () => {
    const file = join(directory, 'cache.json');
    const first = new DiskBlobInfoCache(file);
    first.recordDigestUncompressedPair(gzipped, layer, 'gzip');
    await first.flush();
    await writeFile(file, `${await readFile(file, 'utf8')}["p","sha256:ab`, { flag: 'w' });
    const second = new DiskBlobInfoCache(file);
    expect(second.uncompressedDigest(gzipped)).toBe(layer);
    second.recordDigestUncompressedPair(zstded, layer, 'zstd');
    await second.flush();
    const third = new DiskBlobInfoCache(file);
    expect(third.uncompressedDigest(zstded)).toBe(layer);
    expect(third.uncompressedDigest(gzipped)).toBe(layer);
  });

  it('rewrites a file grown past its bound with the most recent records only', async () => {
    const file = join(directory, 'cache.json');
    const lines = ['{"version":2}'];
    for (let index = 0; index < 16_000; index++) {
      lines.push(
        JSON.stringify([
          'l',
          'docker',
          'r',
          digest(`blob-${index}`),
          `repository/with/a/long/name/${index}`,
          index,
        ]),
      );
    }
    await writeFile(file, `${lines.join('\n')}\n`);
    const cache = new DiskBlobInfoCache(file);
    expect(cache.candidateLocations('docker', 'r', digest('blob-15999'))).toEqual([
      'repository/with/a/long/name/15999',
    ]);
    cache.recordKnownLocation('docker', 'r', layer, 'team/new');
    await cache.flush();
    const rewritten = (await readFile(file, 'utf8')).trim().split('\n');
    expect(rewritten[0]).toBe('{"version":2}');
    expect(rewritten).toHaveLength(1 + 4096);
    const reader = new DiskBlobInfoCache(file);
    expect(reader.candidateLocations('docker', 'r', layer)).toEqual(['team/new']);
    expect(reader.candidateLocations('docker', 'r', digest('blob-15999'))).toHaveLength(1);
    expect(reader.candidateLocations('docker', 'r', digest('blob-0'))).toEqual([]);
  });

  it('reads a version-1 file and rewrites it in the current format', async () => {
    const file = join(directory, 'cache.json');
    await writeFile(
      file,
      JSON.stringify({
        version: 1,
        pairs: { [gzipped]: { uncompressed: layer, compression: 'gzip', at: 1 } },
        locations: [{ transport: 'docker', scope: 'r', digest: gzipped, location: 'a', at: 1 }],
      }),
    );
    const cache = new DiskBlobInfoCache(file);
    cache.recordDigestUncompressedPair(zstded, layer, 'zstd');
    await cache.flush();
    expect((await readFile(file, 'utf8')).split('\n')[0]).toBe('{"version":2}');
    const reader = new DiskBlobInfoCache(file);
    expect(reader.uncompressedDigest(gzipped)).toBe(layer);
    expect(reader.uncompressedDigest(zstded)).toBe(layer);
    expect(reader.candidateLocations('docker', 'r', gzipped)).toEqual(['a']);
  });

  it('drops malformed records but keeps the good ones', async () => {
    const file = join(directory, 'cache.json');
    await writeFile(
      file,
      JSON.stringify({
        version: 1,
        pairs: { [gzipped]: { uncompressed: layer, compression: 'gzip', at: 1 }, bad: { uncompressed: 3 } },
        locations: [
          { transport: 'docker', scope: 'r', digest: gzipped, location: 'a', at: 1 },
          { nope: true },
        ],
      }),
    );
    const cache = new DiskBlobInfoCache(file);
    expect(cache.uncompressedDigest(gzipped)).toBe(layer);
    expect(cache.candidateLocations('docker', 'r', gzipped)).toEqual(['a']);
  });

  it('breaks a stale lock left by a dead process, and never throws when it cannot write', async () => {
    const file = join(directory, 'cache.json');
    await writeFile(`${file}.lock`, '999999\n');
    const { utimes } = await import('node:fs/promises');
    await utimes(`${file}.lock`, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const cache = new DiskBlobInfoCache(file);
    cache.recordDigestUncompressedPair(gzipped, layer, 'gzip');
    await cache.flush();
    expect(new DiskBlobInfoCache(file).uncompressedDigest(gzipped)).toBe(layer);
    const unwritable = new DiskBlobInfoCache(join(file, 'not-a-directory', 'cache.json'));
    unwritable.recordDigestUncompressedPair(gzipped, layer, 'gzip');
    await expect(unwritable.flush()).resolves.toBeUndefined();
  });

  it('lives in the user data directory by default', () => {
    expect(defaultBlobInfoCachePath({ HOME: '/home/dana' })).toBe(
      '/home/dana/.local/share/gantry/blob-info-cache.json',
    );
    expect(defaultBlobInfoCachePath({ HOME: '/home/dana', XDG_DATA_HOME: '/data' })).toBe(
      '/data/gantry/blob-info-cache.json',
    );
  });
});
