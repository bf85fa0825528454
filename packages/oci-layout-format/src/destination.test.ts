import { ErrorCodes, parseDigest } from '@gantry/core/transport';
import { describe, expect, it } from 'vitest';
import {
  assertDestinationWritable,
  checkDestinationReference,
  layoutDestinationProperties,
  rejectSignatures,
  requireTopLevelEntry,
  reusedBlob,
} from './destination.js';
import { fileSystemFailure } from './file-system.js';

const digest = parseDigest(`sha256:${'a'.repeat(64)}`);

describe('layout destinations', () => {
  it('announce OCI types, compression unless uncompressed layers are accepted, no signatures', () => {
    const properties = layoutDestinationProperties({
      acceptUncompressedLayers: false,
      hasThreadSafePutBlob: true,
    });
    expect(properties.supportedManifestMimeTypes).toEqual([
      'application/vnd.oci.image.manifest.v1+json',
      'application/vnd.oci.image.index.v1+json',
    ]);
    expect(properties).toMatchObject({
      desiredLayerCompression: 'compress',
      supportsSignatures: false,
      hasThreadSafePutBlob: true,
    });
    expect(
      layoutDestinationProperties({ acceptUncompressedLayers: true, hasThreadSafePutBlob: false }),
    ).toMatchObject({ desiredLayerCompression: 'preserve', hasThreadSafePutBlob: false });
  });

  it('refuse @N, signatures, use after close or commit, and commit without a manifest', () => {
    expect(() => checkDestinationReference({ sourceIndex: -1 })).not.toThrow();
    expect(() => checkDestinationReference({ sourceIndex: 2 })).toThrow(
      expect.objectContaining({ code: ErrorCodes.InvalidReference, message: expect.stringContaining('@2') }),
    );
    expect(() => rejectSignatures([])).not.toThrow();
    expect(() => rejectSignatures([new Uint8Array(1)])).toThrow(
      expect.objectContaining({ code: ErrorCodes.NotSupported }),
    );
    expect(() => assertDestinationWritable('oci', { closed: false, committed: false })).not.toThrow();
    expect(() => assertDestinationWritable('oci', { closed: true, committed: false })).toThrow(
      'oci: image destination used after close()',
    );
    expect(() => assertDestinationWritable('oci-archive', { closed: false, committed: true })).toThrow(
      'oci-archive: image destination used after commit()',
    );
    expect(() => requireTopLevelEntry('oci', undefined)).toThrow(
      expect.objectContaining({
        code: ErrorCodes.Internal,
        message: expect.stringContaining('oci: commit() called before'),
      }),
    );
  });

  it('report reused blobs with the media type asked for', () => {
    expect(reusedBlob({ digest, size: -1 }, digest, 5)).toEqual({ reused: true, blob: { digest, size: 5 } });
    expect(reusedBlob({ digest, size: 5, mediaType: 'x' }, digest, 5)).toEqual({
      reused: true,
      blob: { digest, size: 5, mediaType: 'x' },
    });
  });

  it('turn file-system errors into GantryErrors, keeping GantryErrors', () => {
    const systemError = Object.assign(new Error("ENOENT: no such file or directory, open '/x'"), {
      code: 'ENOENT',
      syscall: 'open',
      path: '/x',
    });
    expect(fileSystemFailure('writing', systemError)).toMatchObject({
      code: ErrorCodes.Internal,
      message: 'writing: open /x: no such file or directory',
    });
    const gantryError = requireTopLevelEntryError();
    expect(fileSystemFailure('writing', gantryError)).toBe(gantryError);
  });
});

function requireTopLevelEntryError(): unknown {
  try {
    requireTopLevelEntry('oci', undefined);
  } catch (error) {
    return error;
  }
  return undefined;
}
