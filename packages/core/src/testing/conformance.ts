import { afterAll, describe, it } from 'vitest';
import {
  type CheckResult,
  type ConformanceContext,
  checkCloseWithoutCommit,
  checkDelete,
  checkDeleteUnsupported,
  checkImageRoundTrip,
  checkInvalidReferences,
  checkMissingImage,
  checkMissingTag,
  checkOverwrite,
  checkOverwriteRefused,
  checkPutBlobStreamFailure,
  checkPutBlobVerificationFailure,
  checkPutBlobWithUnknownDigest,
  checkReferenceRoundTrip,
  checkSeveralImagesPerLocation,
  checkSignaturesRoundTrip,
  checkSignaturesUnsupported,
  checkTransportShape,
  checkTryReusingBlob,
  createConformanceContext,
  type TransportConformanceOptions,
} from './conformance-checks.js';
import {
  checkReadOnlyDeleteRefused,
  checkStoredImageReads,
  checkWritingRefused,
} from './conformance-read-only.js';
import { listPresetNames, singleImagePresetNames } from './fixture-presets.js';

/**
 * Registers vitest `describe`/`it` blocks checking that a transport keeps the transport contract. Call it
 * at the top level of a test file. Every test uses its own temporary directory; fixtures are built once
 * per suite. Tests registered:
 *
 * - the transport passes `assertTransport`, and its references have the contract's methods;
 * - `parseReference(ref.stringWithinTransport())` gives an equal reference (string, policy identity,
 *   namespaces, docker reference);
 * - `options.invalidReferences` are rejected with `ERR_GANTRY_INVALID_REFERENCE` (when given);
 * - each preset written through `newImageDestination` (contract call order) reads back through
 *   `newImageSource` with identical manifest bytes (top level and per instance) and blob bytes
 *   (`manifestFidelity: 'exact'`, the default), or, for transports that store images rather than
 *   manifests (`manifestFidelity: 'image'`), written in the form the destination accepts and read back
 *   with the same config (digest, bytes, platform) and layer DiffIDs under a stable, self-consistent
 *   generated manifest; an unknown instance is `ERR_GANTRY_IMAGE_NOT_FOUND`;
 * - a missing image (a location that does not exist; reading it creates no file), and an image closed
 *   without `commit()`, are `ERR_GANTRY_IMAGE_NOT_FOUND`; so is a tag that an existing location does not
 *   hold (capability `tagSelectsImage`, by default `severalImagesPerLocation`);
 * - a `putBlob` whose stream errors, or whose `verifyingStage` fails (`ERR_GANTRY_DIGEST_MISMATCH`), rejects
 *   and stores nothing under the announced digest, and the destination still commits other blobs;
 * - `putBlob` without a digest or size stores the blob under the digest it computes and reports it;
 * - `tryReusingBlob` (when implemented) reports a blob the destination lacks as `{ reused: false }`;
 * - writing again to a reference replaces the image (`overwrite: 'replace'`, the default), or rejects with
 *   `ERR_GANTRY_NOT_SUPPORTED` leaving the existing image and every file unchanged (`overwrite: 'refuse'`);
 * - signatures round trip (capability `signatures`) or `putSignatures` rejects with `ERR_GANTRY_NOT_SUPPORTED`;
 * - `deleteImage` removes the image (capability `delete`) or rejects with `ERR_GANTRY_NOT_SUPPORTED`;
 * - two tags at one location hold two images independently (capability `severalImagesPerLocation`).
 *
 * A read-only transport (capability `readOnly`) gets, instead of every check that writes: the images
 * `createStoredImage` makes read back consistently and identically on every open, and writing and
 * deleting reject with `ERR_GANTRY_NOT_SUPPORTED` changing no file (see `conformance-read-only.ts`).
 */
export function runTransportConformanceSuite(options: TransportConformanceOptions): void {
  const capabilities = options.capabilities ?? {};
  if (capabilities.readOnly && !options.createStoredImage) {
    throw new Error(`transport conformance ${options.name}: capability readOnly needs createStoredImage`);
  }
  if (capabilities.manifestFidelity === 'image' && capabilities.manifestLists) {
    throw new Error(
      `transport conformance ${options.name}: manifestFidelity "image" cannot be combined with manifestLists`,
    );
  }
  const presets = options.presets ?? [
    ...singleImagePresetNames,
    ...(capabilities.manifestLists ? listPresetNames : []),
  ];

  describe(`transport conformance: ${options.name}`, () => {
    const context: ConformanceContext = createConformanceContext(options);
    afterAll(() => context.dispose());

    const check = (title: string, run: () => Promise<CheckResult>) =>
      it(title, async (test) => {
        const result = await run();
        if (result) test.skip(result.skipped);
      });

    check('satisfies the transport contract shape', () => checkTransportShape(context));
    check('round-trips references through stringWithinTransport()', () => checkReferenceRoundTrip(context));
    if ((options.invalidReferences ?? []).length > 0) {
      check('rejects invalid references with ERR_GANTRY_INVALID_REFERENCE', () =>
        checkInvalidReferences(context),
      );
    }
    check('reports a missing image as ERR_GANTRY_IMAGE_NOT_FOUND', () => checkMissingImage(context));
    if (capabilities.readOnly) {
      check('reads a stored image consistently (manifest, config, layers, DiffIDs)', () =>
        checkStoredImageReads(context),
      );
      check('refuses newImageDestination() with ERR_GANTRY_NOT_SUPPORTED and changes nothing', () =>
        checkWritingRefused(context),
      );
      check('refuses deleteImage() with ERR_GANTRY_NOT_SUPPORTED and keeps the image', () =>
        checkReadOnlyDeleteRefused(context),
      );
      return;
    }
    describe('writes and reads back images byte for byte', () => {
      for (const preset of presets) check(`preset ${preset}`, () => checkImageRoundTrip(context, preset));
    });
    if (capabilities.tagSelectsImage ?? capabilities.severalImagesPerLocation) {
      check('reports a tag the location does not hold as ERR_GANTRY_IMAGE_NOT_FOUND', () =>
        checkMissingTag(context),
      );
    }
    check('leaves no image after close() without commit()', () => checkCloseWithoutCommit(context));
    check('rejects a putBlob() whose stream fails and stores nothing', () =>
      checkPutBlobStreamFailure(context),
    );
    check('rejects a putBlob() whose digest verification fails and stores nothing', () =>
      checkPutBlobVerificationFailure(context),
    );
    check('stores a blob of unknown digest and size under the digest it computes', () =>
      checkPutBlobWithUnknownDigest(context),
    );
    check('reports an absent blob as not reusable (tryReusingBlob, when implemented)', () =>
      checkTryReusingBlob(context),
    );
    if (capabilities.overwrite === 'refuse') {
      check('refuses to overwrite an image and leaves it unchanged', () => checkOverwriteRefused(context));
    } else {
      check('replaces the image when writing to the same reference again', () => checkOverwrite(context));
    }
    if (capabilities.signatures) {
      check('round-trips signatures', () => checkSignaturesRoundTrip(context));
    } else {
      check('refuses signatures with ERR_GANTRY_NOT_SUPPORTED', () => checkSignaturesUnsupported(context));
    }
    if (capabilities.delete) {
      check('deletes images', () => checkDelete(context));
    } else {
      check('refuses deleteImage() with ERR_GANTRY_NOT_SUPPORTED', () => checkDeleteUnsupported(context));
    }
    if (capabilities.severalImagesPerLocation) {
      check('keeps several images at one location', () => checkSeveralImagesPerLocation(context));
    }
  });
}

export type {
  ConformanceOptions,
  FixtureForm,
  TransportConformanceCapabilities,
  TransportConformanceOptions,
} from './conformance-checks.js';
