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
    ];
  it.each(cases)('fault %s fails the %s check', async (fault, _title, check) => {
    await expect(runCheck(broken(fault), check)).rejects.toThrow();
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
