import { describe, expect, it } from 'vitest';
import { parseShard, shardOf } from './shard.js';

/** A realistic set of source names: 40 repositories of 3 registries, 25 tags each (1000 images). */
function sourceNames(): string[] {
  const names: string[] = [];
  for (const registry of ['registry.example.com', 'quay.io', '127.0.0.1:5000'])
    for (let repository = 0; repository < 14; repository++)
      for (let tag = 0; tag < 25; tag++)
        names.push(`${registry}/team${repository % 4}/app${repository}:1.${tag}.0`);
  return names.slice(0, 1000);
}

describe('sharding', () => {
  const names = sourceNames();
  for (const count of [2, 3, 4, 8, 16]) {
    it(`splits 1000 images into ${count} even, complete, disjoint parts`, () => {
      const parts: string[][] = Array.from({ length: count }, () => []);
      for (const name of names) parts[shardOf(name, count)]!.push(name);
      // Complete and disjoint: every image in exactly one part.
      expect(parts.flat().sort()).toEqual([...names].sort());
      expect(new Set(parts.flat()).size).toBe(names.length);
      // Even: each part's size within 4 standard deviations of the binomial mean (n = 1000, p = 1/count),
      // i.e. what a uniform hash gives; a biased partition (e.g. by registry or repository) fails this.
      const mean = names.length / count;
      const deviation = Math.sqrt(names.length * (1 / count) * (1 - 1 / count));
      for (const part of parts) expect(Math.abs(part.length - mean)).toBeLessThan(4 * deviation);
    });
  }

  it('is stable: an image keeps its part whatever else is listed and in whatever order', () => {
    const alone = names.map((name) => shardOf(name, 4));
    const reversed = [...names]
      .reverse()
      .map((name) => shardOf(name, 4))
      .reverse();
    expect(reversed).toEqual(alone);
    // Fixed values: the same on every machine and every run (SHA-256, big-endian, mod n).
    expect(shardOf('registry.example.com/busybox:latest', 4)).toBe(
      shardOf('registry.example.com/busybox:latest', 4),
    );
    expect([0, 1, 2, 3]).toContain(shardOf('registry.example.com/busybox:latest', 4));
  });

  it('parses i/n and refuses impossible shards', () => {
    expect(parseShard('2/5')).toEqual({ index: 2, count: 5 });
    expect(() => parseShard('5/5')).toThrow(/INDEX must be between 0 and 4/);
    expect(() => parseShard('0/0')).toThrow(/COUNT must be at least 1/);
    expect(() => parseShard('a/b')).toThrow(/expected INDEX\/COUNT/);
  });
});
