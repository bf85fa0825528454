import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, GantryError } from '../errors.js';
import type { ImageReference, Transport } from '../transport/contract.js';
import { runTransportConformanceSuite } from './conformance.js';
import {
  type CheckResult,
  type ConformanceContext,
  createConformanceContext,
  type TransportConformanceOptions,
} from './conformance-checks.js';
import {
  checkReadOnlyDeleteRefused,
  checkStoredImageReads,
  checkWritingRefused,
} from './conformance-read-only.js';
import { buildFixtureImage } from './fixture-builder.js';
import { fixturePresets } from './fixture-presets.js';
import { writeFixtureToDestination } from './fixture-source.js';
import { createMemoryTransport, type MemoryTransportFault } from './memory-transport.test-helper.js';

type ReadOnlyFault = 'acceptsWrites' | 'deleteWrongCode' | 'deletesAnyway';

/**
 * A read-only view of a memory transport: sources read the inner transport's images, destinations and
 * deletes are refused (unless a fault says otherwise). `store` writes an image through the inner one.
 */
function readOnlyMemoryTransport(
  innerFaults: MemoryTransportFault[] = [],
  faults: ReadOnlyFault[] = [],
): { transport: Transport; store: (text: string) => Promise<void> } {
  const inner = createMemoryTransport({ storeImages: true, delete: true, faults: innerFaults });
  const transport: Transport = {
    specificationVersion: 'v1',
    name: 'memory-read-only',
    validatePolicyConfigurationScope() {},
    parseReference(text: string): ImageReference {
      const innerReference = inner.parseReference(text);
      const reference: ImageReference = {
        transport,
        stringWithinTransport: () => innerReference.stringWithinTransport(),
        dockerReference: () => undefined,
        policyConfigurationIdentity: () => innerReference.policyConfigurationIdentity(),
        policyConfigurationNamespaces: () => innerReference.policyConfigurationNamespaces(),
        newImageSource: (context) => innerReference.newImageSource(context),
        async newImageDestination(context) {
          if (faults.includes('acceptsWrites')) return innerReference.newImageDestination(context);
          throw new GantryError(ErrorCodes.NotSupported, 'read-only');
        },
        async deleteImage(context) {
          if (faults.includes('deletesAnyway')) return innerReference.deleteImage(context);
          throw new GantryError(
            faults.includes('deleteWrongCode') ? ErrorCodes.Internal : ErrorCodes.NotSupported,
            'read-only',
          );
        },
      };
      return reference;
    },
  };
  const store = async (text: string) => {
    const image = await buildFixtureImage(fixturePresets.dockerUncompressed, {
      directory: path.join(text, '..', 'fixture-blobs'),
    });
    await writeFixtureToDestination(image, await inner.parseReference(text).newImageDestination());
  };
  return { transport, store };
}

function suiteOptions(
  innerFaults: MemoryTransportFault[] = [],
  faults: ReadOnlyFault[] = [],
): TransportConformanceOptions {
  const { transport, store } = readOnlyMemoryTransport(innerFaults, faults);
  return {
    name: 'memory (read-only)',
    transport,
    createReference: ({ directory, tag }) => `${directory}:${tag}`,
    capabilities: { readOnly: true },
    invalidReferences: ['relative:latest'],
    async createStoredImage({ directory }) {
      const text = `${directory}:stored`;
      await store(text);
      return text;
    },
  };
}

runTransportConformanceSuite(suiteOptions());

describe('read-only conformance checks fail for transports that break the contract', () => {
  async function runCheck(
    options: TransportConformanceOptions,
    check: (context: ConformanceContext) => Promise<CheckResult>,
  ): Promise<CheckResult> {
    const context = createConformanceContext(options);
    try {
      return await check(context);
    } finally {
      await context.dispose();
    }
  }

  it('passes on the healthy read-only transport', async () => {
    for (const check of [checkStoredImageReads, checkWritingRefused, checkReadOnlyDeleteRefused]) {
      await expect(runCheck(suiteOptions(), check)).resolves.toBeUndefined();
    }
  });

  it('fails when the stored image reads back inconsistently', async () => {
    await expect(runCheck(suiteOptions(['corruptLayers']), checkStoredImageReads)).rejects.toThrow();
    await expect(runCheck(suiteOptions(['misdescribeLayers']), checkStoredImageReads)).rejects.toThrow();
    await expect(runCheck(suiteOptions(['unstableManifest']), checkStoredImageReads)).rejects.toThrow(
      /differs between two opens/,
    );
    await expect(
      runCheck(suiteOptions(['unknownInstanceReturnsTopLevel']), checkStoredImageReads),
    ).rejects.toThrow(/unknown instance/);
  });

  it('fails when writes or deletes are not refused as the contract says', async () => {
    await expect(runCheck(suiteOptions([], ['acceptsWrites']), checkWritingRefused)).rejects.toThrow(
      /ERR_GANTRY_NOT_SUPPORTED/,
    );
    await expect(runCheck(suiteOptions([], ['deleteWrongCode']), checkReadOnlyDeleteRefused)).rejects.toThrow(
      /ERR_GANTRY_NOT_SUPPORTED, got ERR_GANTRY_INTERNAL/,
    );
    await expect(runCheck(suiteOptions([], ['deletesAnyway']), checkReadOnlyDeleteRefused)).rejects.toThrow(
      /ERR_GANTRY_NOT_SUPPORTED/,
    );
  });

  it('refuses to register capability readOnly without createStoredImage', () => {
    const { createStoredImage: _omitted, ...options } = suiteOptions();
    expect(() => runTransportConformanceSuite(options)).toThrow(/createStoredImage/);
  });
});
