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
  checkOverwrite,
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
 *   `newImageSource` with identical manifest bytes (top level and per instance) and blob bytes, and an
 *   unknown instance is `ERR_GANTRY_IMAGE_NOT_FOUND`;
 * - a missing image, and an image closed without `commit()`, are `ERR_GANTRY_IMAGE_NOT_FOUND`;
 * - a `putBlob` whose stream errors, or whose `verifyingStage` fails (`ERR_GANTRY_DIGEST_MISMATCH`), rejects
 *   and stores nothing under the announced digest, and the destination still commits other blobs;
 * - `putBlob` without a digest or size stores the blob under the digest it computes and reports it;
 * - `tryReusingBlob` (when implemented) reports a blob the destination lacks as `{ reused: false }`;
 * - writing again to a reference replaces the image;
 * - signatures round trip (capability `signatures`) or `putSignatures` rejects with `ERR_GANTRY_NOT_SUPPORTED`;
 * - `deleteImage` removes the image (capability `delete`) or rejects with `ERR_GANTRY_NOT_SUPPORTED`;
 * - two tags at one location hold two images independently (capability `severalImagesPerLocation`).
 */
export function runTransportConformanceSuite(options: TransportConformanceOptions): void {
  const capabilities = options.capabilities ?? {};
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
    describe('writes and reads back images byte for byte', () => {
      for (const preset of presets) check(`preset ${preset}`, () => checkImageRoundTrip(context, preset));
    });
    check('reports a missing image as ERR_GANTRY_IMAGE_NOT_FOUND', () => checkMissingImage(context));
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
    check('replaces the image when writing to the same reference again', () => checkOverwrite(context));
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
  TransportConformanceCapabilities,
  TransportConformanceOptions,
} from './conformance-checks.js';
