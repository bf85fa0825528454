/**
 * The contract version literal: a transport written for the current version ("v1") keeps working with
 * only the members that version requires, and a transport declaring a version this Gantry does not know
 * is refused with a message naming both versions.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyImage } from '../copy/copy.js';
import { ErrorCodes } from '../errors.js';
import { parseManifest } from '../manifest/parse.js';
import { deleteImage } from '../operations/delete.js';
import { inspectImage } from '../operations/inspect.js';
import { listTags } from '../operations/list-tags.js';
import { insecureAcceptAnythingPolicy } from '../policy/parse.js';
import { buildFixtureImage } from '../testing/fixture-builder.js';
import { fixturePresets } from '../testing/fixture-presets.js';
import { writeFixtureToDestination } from '../testing/fixture-source.js';
import type { FixtureImage } from '../testing/fixture-types.js';
import { createMemoryTransport } from '../testing/memory-transport.test-helper.js';
import { type Transport, transportSpecificationVersion } from './contract.js';
import { assertTransport, TransportRegistry } from './registry.js';

/** A transport with exactly the members contract v1 requires (every optional member left out). */
function requiredMembersOnly(transport: Transport): Transport {
  const { specificationVersion, name } = transport;
  return {
    specificationVersion,
    name,
    parseReference: (reference) => transport.parseReference(reference),
    validatePolicyConfigurationScope: (scope) => transport.validatePolicyConfigurationScope(scope),
  };
}

let directory: string;
let fixture: FixtureImage;

beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-contract-version-'));
  fixture = await buildFixtureImage(fixturePresets.dockerSchema2, { directory });
});

afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('transport contract version', () => {
  it('is "v1"', () => {
    expect(transportSpecificationVersion).toBe('v1');
  });

  it('keeps a transport written for "v1" working: registry, copy, inspect, delete', async () => {
    const memory = createMemoryTransport({ delete: true });
    const written: Transport = requiredMembersOnly(memory);
    expect(written.specificationVersion).toBe('v1');
    const registry = new TransportRegistry([{ transport: written, origin: 'gantry-transport-memory@1.0.0' }]);
    const stored = registry.parseImageReference('memory:/store:source');
    const destination = await stored.newImageDestination();
    try {
      await writeFixtureToDestination(fixture, destination);
    } finally {
      await destination.close();
    }
    const copied = registry.parseImageReference('memory:/other:copy');
    const result = await copyImage(stored, copied, { policy: insecureAcceptAnythingPolicy() });
    expect(result.manifestDigest).toBe(fixture.topLevel.digest);
    const inspection = await inspectImage(copied);
    expect(inspection.Digest).toBe(fixture.topLevel.digest);
    const layers = parseManifest(fixture.topLevel.bytes, fixture.topLevel.mediaType).layers;
    expect(inspection.Layers).toEqual(layers.map((layer) => layer.digest));
    expect(layers.length).toBeGreaterThan(0);
    await expect(listTags(copied)).rejects.toMatchObject({ code: ErrorCodes.NotSupported });
    await deleteImage(copied);
    await expect(inspectImage(copied)).rejects.toMatchObject({ code: ErrorCodes.ImageNotFound });
  });

  it.each([
    [
      'v2',
      /specificationVersion is "v2", this Gantry supports "v1" \(the transport was written for another version/,
    ],
    ['v0', /specificationVersion is "v0", this Gantry supports "v1"/],
    [undefined, /specificationVersion is undefined, this Gantry supports "v1" \(every transport declares/],
  ])('refuses a transport declaring %j with a clear message', (version, message) => {
    const future = { ...requiredMembersOnly(createMemoryTransport()), specificationVersion: version };
    for (const refuse of [
      () => assertTransport(future, 'gantry-transport-future@2.0.0'),
      () => new TransportRegistry().register(future as unknown as Transport, 'gantry-transport-future@2.0.0'),
    ]) {
      expect(refuse).toThrowError(
        expect.objectContaining({
          code: ErrorCodes.InvalidTransportPlugin,
          message: expect.stringMatching(
            /^gantry-transport-future@2\.0\.0 is not a valid Gantry transport: /,
          ),
        }),
      );
      expect(refuse).toThrow(message);
    }
  });
});
