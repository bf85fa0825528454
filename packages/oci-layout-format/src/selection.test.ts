import { type Digest, ErrorCodes, MediaTypes, parseDigest } from '@gantry/core/transport';
import { describe, expect, it } from 'vitest';
import type { IndexEntry, LayoutIndex } from './layout.js';
import { addIndexEntry, findIndexEntry, newIndexEntry } from './selection.js';

const digestA = parseDigest(`sha256:${'a'.repeat(64)}`);
const digestB = parseDigest(`sha256:${'b'.repeat(64)}`);
const digestC = parseDigest(`sha256:${'c'.repeat(64)}`);
const location = { kind: 'OCI layout', transportName: 'oci', path: '/l' };

function entry(digest: Digest, name?: string, mediaType: string = MediaTypes.OciManifest): IndexEntry {
  const raw: Record<string, unknown> = { mediaType, digest, size: 1 };
  if (name !== undefined) raw.annotations = { 'org.opencontainers.image.ref.name': name, other: 'kept' };
  return { mediaType, digest, size: 1, referenceName: name, raw };
}
const indexOf = (...entries: IndexEntry[]): LayoutIndex => ({ entries, raw: { schemaVersion: 2 } });

describe('findIndexEntry', () => {
  const index = indexOf(entry(digestA, 'a'), entry(digestB, 'b', 'application/x-other'), entry(digestC, 'b'));

  it('finds by name (skipping entries of other types), by @N, and the only image', () => {
    expect(findIndexEntry({ imageName: 'b', sourceIndex: -1 }, index, location)).toEqual({
      entry: index.entries[2],
      position: 2,
    });
    expect(findIndexEntry({ imageName: '', sourceIndex: 1 }, index, location).position).toBe(1);
    const single = indexOf(entry(digestA));
    expect(findIndexEntry({ imageName: '', sourceIndex: -1 }, single, location).entry.digest).toBe(digestA);
  });

  it.each([
    [
      { imageName: 'x', sourceIndex: -1 },
      ErrorCodes.ImageNotFound,
      'image "x" not found in OCI layout /l: no descriptor found for reference "x"',
    ],
    [
      { imageName: '', sourceIndex: 3 },
      ErrorCodes.ImageNotFound,
      'image @3 not found in OCI layout /l: index 3 is too large, only 3 entries available',
    ],
    [
      { imageName: '', sourceIndex: -1 },
      ErrorCodes.InvalidReference,
      'more than one image in OCI layout /l (3), choose an image: oci:/l:<name> or oci:/l:@<index>',
    ],
  ])('rejects %j', (selector, code, message) => {
    expect(() => findIndexEntry(selector, index, location)).toThrow(
      expect.objectContaining({ code, message }),
    );
  });

  it('reports entries of unsupported types and empty indexes, naming the location given', () => {
    const other = indexOf(entry(digestA, 'x', 'application/x-other'));
    expect(() =>
      findIndexEntry({ imageName: 'x', sourceIndex: -1 }, other, {
        kind: 'OCI archive',
        transportName: 'oci-archive',
        path: 'a.tar',
      }),
    ).toThrow(
      expect.objectContaining({
        code: ErrorCodes.UnsupportedManifestType,
        message: 'image "x" in OCI archive a.tar has unsupported manifest MIME types ["application/x-other"]',
      }),
    );
    expect(() => findIndexEntry({ imageName: '', sourceIndex: -1 }, indexOf(), location)).toThrow(
      expect.objectContaining({
        code: ErrorCodes.ImageNotFound,
        message: 'no image found in OCI layout /l: index.json is empty',
      }),
    );
  });
});

describe('addIndexEntry', () => {
  it('unname: the older holder of the name keeps its other annotations and loses the name', () => {
    const index = indexOf(entry(digestA, 'app'), entry(digestB));
    addIndexEntry(index, entry(digestC, 'app'), 'unname');
    expect(index.entries.map((existing) => [existing.digest, existing.referenceName])).toEqual([
      [digestA, undefined],
      [digestB, undefined],
      [digestC, 'app'],
    ]);
    expect(index.entries[0]?.raw.annotations).toEqual({ other: 'kept' });
  });

  it('unname: an unnamed entry with the same digest is replaced, by a named or unnamed entry', () => {
    const index = indexOf(entry(digestA), entry(digestB));
    addIndexEntry(index, entry(digestB, 'b'), 'unname');
    expect(index.entries.map((existing) => existing.referenceName)).toEqual([undefined, 'b']);
    addIndexEntry(index, entry(digestC), 'unname');
    expect(index.entries).toHaveLength(3);
  });

  it('drop: a named entry replaces only the holder of its name; an unnamed one an unnamed same digest', () => {
    const index = indexOf(entry(digestA), entry(digestB));
    addIndexEntry(index, entry(digestB, 'b'), 'drop');
    expect(index.entries.map((existing) => existing.referenceName)).toEqual([undefined, undefined, 'b']);
    addIndexEntry(index, entry(digestA), 'drop');
    expect(index.entries).toHaveLength(3);
    addIndexEntry(index, entry(digestC), 'drop');
    expect(index.entries).toHaveLength(4);
  });

  it('drop: the older holder of the name (and any duplicate) is replaced', () => {
    const index = indexOf(entry(digestA, 'app'), entry(digestB), entry(digestC, 'app'));
    addIndexEntry(index, entry(digestC, 'app'), 'drop');
    expect(index.entries.map((existing) => [existing.digest, existing.referenceName])).toEqual([
      [digestC, 'app'],
      [digestB, undefined],
    ]);
  });
});

describe('newIndexEntry', () => {
  const manifest = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      config: { mediaType: MediaTypes.OciConfig, digest: digestA, size: 1 },
      layers: [],
    }),
  );

  it('records the name annotation, and guesses a missing media type', () => {
    expect(newIndexEntry(manifest, '', digestB, 'app')).toEqual({
      mediaType: MediaTypes.OciManifest,
      digest: digestB,
      size: manifest.byteLength,
      referenceName: 'app',
      raw: {
        mediaType: MediaTypes.OciManifest,
        digest: digestB,
        size: manifest.byteLength,
        annotations: { 'org.opencontainers.image.ref.name': 'app' },
      },
    });
    const unnamed = newIndexEntry(manifest, MediaTypes.DockerManifest, digestB, '', () => 'unused');
    expect(unnamed.raw).toEqual({
      mediaType: MediaTypes.DockerManifest,
      digest: digestB,
      size: manifest.byteLength,
    });
    expect(unnamed.referenceName).toBeUndefined();
    expect(newIndexEntry(manifest, '', digestB, '', () => 'guessed').mediaType).toBe('guessed');
  });
});
