import { describe, expect, it } from 'vitest';
import type { Transport } from '../transport/contract.js';
import { runTransportConformanceSuite } from './conformance.js';
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
  type TransportConformanceCapabilities,
} from './conformance-checks.js';
import { createMemoryTransport, type MemoryTransportFault } from './memory-transport.test-helper.js';

const invalidReferences = ['', 'relative/location:tag', '/location:bad tag!', `/location:${'a'.repeat(200)}`];
const createReference = ({ directory, tag }: { directory: string; tag: string }) => `${directory}:${tag}`;
const allCapabilities: TransportConformanceCapabilities = {
  manifestLists: true,
  signatures: true,
  delete: true,
  severalImagesPerLocation: true,
};

runTransportConformanceSuite({
  name: 'memory (every capability)',
  transport: createMemoryTransport({ signatures: true, delete: true }),
  createReference,
  capabilities: allCapabilities,
  invalidReferences,
});

runTransportConformanceSuite({
  name: 'memory (no signatures, no delete)',
  transport: createMemoryTransport(),
  createReference,
  capabilities: { manifestLists: true },
  presets: ['ociMinimal', 'dockerSchema2', 'multiArchDocker'],
});

// Like docker-archive: stores images (not manifests), accepts Docker schema2 with plain layers, refuses to
// overwrite, and reads by tag.
const imageStoreCapabilities: TransportConformanceCapabilities = {
  manifestFidelity: 'image',
  overwrite: 'refuse',
  tagSelectsImage: true,
};

runTransportConformanceSuite({
  name: 'memory (image store, refuses overwrite)',
  transport: createMemoryTransport({ storeImages: true, overwrite: 'refuse' }),
  createReference,
  capabilities: imageStoreCapabilities,
  invalidReferences,
});

describe('conformance checks fail for transports that break the contract', () => {
  async function runCheck(
    transport: Transport,
    check: (context: ConformanceContext) => Promise<CheckResult>,
    capabilities: TransportConformanceCapabilities = allCapabilities,
  ): Promise<CheckResult> {
    const context = createConformanceContext({
      name: 'broken memory',
      transport,
      createReference,
      capabilities,
      invalidReferences,
    });
    try {
      return await check(context);
    } finally {
      await context.dispose();
    }
  }
  const broken = (fault: MemoryTransportFault) =>
    createMemoryTransport({ signatures: true, delete: true, faults: [fault] });

  const cases: Array<[MemoryTransportFault, string, (context: ConformanceContext) => Promise<CheckResult>]> =
    [
      ['acceptAnyReference', 'invalid references', checkInvalidReferences],
      ['unstableStringWithinTransport', 'reference round trip', checkReferenceRoundTrip],
      [
        'reserialiseManifests',
        'image round trip (single)',
        (context) => checkImageRoundTrip(context, 'ociMinimal'),
      ],
      [
        'reserialiseManifests',
        'image round trip (list)',
        (context) => checkImageRoundTrip(context, 'multiArchOci'),
      ],
      [
        'corruptBlobs',
        'image round trip (blobs)',
        (context) => checkImageRoundTrip(context, 'dockerSchema2'),
      ],
      [
        'unknownInstanceReturnsTopLevel',
        'unknown instance',
        (context) => checkImageRoundTrip(context, 'ociMinimal'),
      ],
      ['missingImageWrongCode', 'missing image', checkMissingImage],
      ['missingImageCreatesFile', 'missing image', checkMissingImage],
      ['visibleBeforeCommit', 'close without commit', checkCloseWithoutCommit],
      ['keepPartialBlobs', 'failing putBlob stream', checkPutBlobStreamFailure],
      ['swallowStreamErrors', 'failing putBlob stream', checkPutBlobStreamFailure],
      ['swallowStreamErrors', 'failing verification stage', checkPutBlobVerificationFailure],
      ['dropSignatures', 'signatures round trip', checkSignaturesRoundTrip],
      ['deleteDoesNothing', 'delete', checkDelete],
      ['oneImagePerLocation', 'several images per location', checkSeveralImagesPerLocation],
      ['firstWriteWins', 'overwrite', checkOverwrite],
      ['reportAnnouncedSize', 'putBlob without digest', checkPutBlobWithUnknownDigest],
      ['reuseAnything', 'tryReusingBlob', checkTryReusingBlob],
      ['anyTagReadsImage', 'missing tag', checkMissingTag],
    ];
  it.each(cases)('fault %s fails the %s check', async (fault, _title, check) => {
    await expect(runCheck(broken(fault), check)).rejects.toThrow();
  });

  const imageStoreCases: Array<
    [MemoryTransportFault, string, RegExp, (context: ConformanceContext) => Promise<CheckResult>]
  > = [
    [
      'acceptAnyManifestType',
      'image round trip (refused form)',
      /expected a rejection with ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE/,
      (context) => checkImageRoundTrip(context, 'ociMinimal'),
    ],
    [
      'reencodeConfig',
      'image round trip (config)',
      /config bytes read back differ/,
      (context) => checkImageRoundTrip(context, 'dockerSchema2'),
    ],
    [
      'rewriteConfigPlatform',
      'image round trip (platform)',
      /platform of the config read back/,
      (context) => checkImageRoundTrip(context, 'dockerUncompressed'),
    ],
    [
      'reverseLayers',
      'image round trip (layer order)',
      /layer DiffIDs/,
      (context) => checkImageRoundTrip(context, 'whiteoutLayers'),
    ],
    [
      'misdescribeLayers',
      'image round trip (self-consistent manifest)',
      /the generated manifest says/,
      (context) => checkImageRoundTrip(context, 'everyEntryType'),
    ],
    [
      'corruptLayers',
      'image round trip (layer bytes)',
      /must be what the generated manifest describes/,
      (context) => checkImageRoundTrip(context, 'longAndNonAsciiNames'),
    ],
    [
      'unstableManifest',
      'image round trip (stable manifest)',
      /differs between two opens/,
      (context) => checkImageRoundTrip(context, 'ociMinimal'),
    ],
    ['overwriteDespiteRefusal', 'refused overwrite', /expected a rejection with/, checkOverwriteRefused],
    [
      'refuseWithWrongCode',
      'refused overwrite',
      /expected ERR_GANTRY_NOT_SUPPORTED, got/,
      checkOverwriteRefused,
    ],
    ['refuseAfterRemovingImage', 'refused overwrite', /memory image .* not found/, checkOverwriteRefused],
    ['refuseLeavingFile', 'refused overwrite', /files under the test directory/, checkOverwriteRefused],
    ['anyTagReadsImage', 'missing tag', /tag the location does not hold/, checkMissingTag],
  ];
  const brokenImageStore = (fault: MemoryTransportFault) =>
    createMemoryTransport({ storeImages: true, overwrite: 'refuse', faults: [fault] });
  it.each(imageStoreCases)(
    'image store fault %s fails the %s check',
    async (fault, _title, message, check) => {
      await expect(runCheck(brokenImageStore(fault), check, imageStoreCapabilities)).rejects.toThrow(message);
    },
  );

  it('the image store checks pass on the healthy image store', async () => {
    const healthy = createMemoryTransport({ storeImages: true, overwrite: 'refuse' });
    for (const [, , , check] of imageStoreCases) {
      await expect(runCheck(healthy, check, imageStoreCapabilities)).resolves.toBeUndefined();
    }
  });

  it('an image store fails the exact round trip, and a manifest store the image round trip', async () => {
    // The image store really generates manifests (so 'exact' fails on it), and a store keeping manifests
    // accepts the unconverted preset (so the 'image' check of the refused form fails on it).
    const imageStore = createMemoryTransport({ storeImages: true });
    await expect(
      runCheck(imageStore, (context) => checkImageRoundTrip(context, 'dockerUncompressed'), {}),
    ).rejects.toThrow(/top-level manifest bytes differ/);
    const manifestStore = createMemoryTransport();
    await expect(
      runCheck(manifestStore, (context) => checkImageRoundTrip(context, 'ociMinimal'), {
        manifestFidelity: 'image',
      }),
    ).resolves.toBeUndefined();
    await expect(
      runCheck(imageStore, (context) => checkImageRoundTrip(context, 'ociMinimal'), {}),
    ).resolves.toEqual({
      skipped: 'the destination does not accept application/vnd.oci.image.manifest.v1+json',
    });
  });

  it('the refused-overwrite check fails on a transport that replaces, and the replace check on one that refuses', async () => {
    await expect(
      runCheck(createMemoryTransport(), checkOverwriteRefused, { overwrite: 'refuse' }),
    ).rejects.toThrow(/ERR_GANTRY_NOT_SUPPORTED/);
    await expect(
      runCheck(createMemoryTransport({ overwrite: 'refuse' }), checkOverwrite, {}),
    ).rejects.toThrow(/does not overwrite images/);
  });

  it('refuses to register manifestFidelity "image" with manifestLists', () => {
    expect(() =>
      runTransportConformanceSuite({
        name: 'impossible',
        transport: createMemoryTransport({ storeImages: true }),
        createReference,
        capabilities: { manifestFidelity: 'image', manifestLists: true },
      }),
    ).toThrow(/cannot be combined/);
  });

  it('the same checks pass on the healthy transport', async () => {
    const healthy = createMemoryTransport({ signatures: true, delete: true });
    for (const [, , check] of cases) await expect(runCheck(healthy, check)).resolves.toBeUndefined();
  });

  it('fails the shape check for a transport of another contract version', async () => {
    const transport = { ...createMemoryTransport(), specificationVersion: 'v2' } as unknown as Transport;
    await expect(runCheck(transport, checkTransportShape)).rejects.toThrow(/specificationVersion/);
  });

  it('fails the "unsupported" checks when the transport does support signatures or delete', async () => {
    const capable = createMemoryTransport({ signatures: true, delete: true });
    await expect(runCheck(capable, checkSignaturesUnsupported, {})).rejects.toThrow(/supportsSignatures/);
    await expect(runCheck(capable, checkDeleteUnsupported, {})).rejects.toThrow(/ERR_GANTRY_NOT_SUPPORTED/);
    const limited = createMemoryTransport();
    await expect(runCheck(limited, checkSignaturesUnsupported, {})).resolves.toBeUndefined();
    await expect(runCheck(limited, checkDeleteUnsupported, {})).resolves.toBeUndefined();
  });

  it('skips (with a reason) presets whose manifest type the destination refuses', async () => {
    const base = createMemoryTransport();
    const ociOnly: Transport = {
      ...base,
      parseReference(text) {
        const reference = base.parseReference(text);
        return {
          ...reference,
          transport: ociOnly,
          async newImageDestination(context) {
            const destination = await reference.newImageDestination(context);
            return Object.assign(Object.create(destination), {
              properties: {
                ...destination.properties,
                supportedManifestMimeTypes: ['application/vnd.oci.image.manifest.v1+json'],
              },
            });
          },
        };
      },
    };
    await expect(
      runCheck(ociOnly, (context) => checkImageRoundTrip(context, 'dockerSchema2')),
    ).resolves.toEqual({
      skipped: 'the destination does not accept application/vnd.docker.distribution.manifest.v2+json',
    });
  });
});
