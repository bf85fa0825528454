import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.js';
import type { ImageReference, Transport } from './contract.js';
import {
  assertTransport,
  formatImageReference,
  splitTransportReference,
  TransportRegistry,
} from './registry.js';

function fakeTransport(name: string): Transport {
  const transport: Transport = {
    specificationVersion: 'v1',
    name,
    parseReference(reference: string): ImageReference {
      if (reference === '') throw new Error('empty');
      return {
        transport,
        stringWithinTransport: () => reference,
        dockerReference: () => undefined,
        policyConfigurationIdentity: () => reference,
        policyConfigurationNamespaces: () => [],
        newImageSource: () => Promise.reject(new Error('unused')),
        newImageDestination: () => Promise.reject(new Error('unused')),
        deleteImage: () => Promise.reject(new Error('unused')),
      };
    },
    validatePolicyConfigurationScope: () => {},
  };
  return transport;
}

describe('splitTransportReference', () => {
  it('splits at the first colon', () => {
    expect(splitTransportReference('oci:/a/b:tag')).toEqual({ transport: 'oci', reference: '/a/b:tag' });
    expect(splitTransportReference('docker://busybox')).toEqual({
      transport: 'docker',
      reference: '//busybox',
    });
  });

  it.each(['busybox', ':x', ''])('rejects %j without a transport', (input) => {
    expect(() => splitTransportReference(input)).toThrowError(
      expect.objectContaining({
        code: ErrorCodes.InvalidReference,
        message: `Invalid image name "${input}", expected colon-separated transport:reference`,
      }),
    );
  });
});

describe('assertTransport', () => {
  it('accepts a transport', () => {
    const transport = fakeTransport('memory');
    expect(assertTransport(transport, 'pkg')).toBe(transport);
  });

  it.each([
    [null, 'expected an object'],
    [{ ...fakeTransport('memory'), specificationVersion: 'v0' }, 'specificationVersion is "v0"'],
    [{ ...fakeTransport('Memory') }, 'name must be a lowercase'],
    [
      { specificationVersion: 'v1', name: 'x', parseReference() {} },
      'missing method validatePolicyConfigurationScope()',
    ],
  ])('rejects %j naming the problem', (value, problem) => {
    expect(() => assertTransport(value, 'gantry-transport-bad')).toThrowError(
      expect.objectContaining({
        code: ErrorCodes.InvalidTransportPlugin,
        message: expect.stringContaining(`gantry-transport-bad is not a valid Gantry transport: ${problem}`),
      }),
    );
  });
});

describe('TransportRegistry', () => {
  it('parses references with registered transports', () => {
    const registry = new TransportRegistry([
      { transport: fakeTransport('memory'), origin: 'gantry-transport-memory' },
    ]);
    const reference = registry.parseImageReference('memory:thing:tag');
    expect(reference.stringWithinTransport()).toBe('thing:tag');
    expect(formatImageReference(reference)).toBe('memory:thing:tag');
    expect(registry.list().map((entry) => entry.origin)).toEqual(['gantry-transport-memory']);
  });

  it('says which package to install for a known transport', () => {
    const registry = new TransportRegistry([fakeTransport('memory')]);
    expect(() => registry.parseImageReference('docker://busybox')).toThrowError(
      expect.objectContaining({
        code: ErrorCodes.TransportNotInstalled,
        message: 'transport "docker" is not installed: add @gantry/transport-docker',
      }),
    );
  });

  it('rejects unknown transports', () => {
    const registry = new TransportRegistry();
    expect(() => registry.parseImageReference('nope:x')).toThrowError(
      expect.objectContaining({
        code: ErrorCodes.UnknownTransport,
        message: expect.stringContaining('unknown transport "nope"'),
      }),
    );
  });

  it('refuses two transports with one name', () => {
    const registry = new TransportRegistry([fakeTransport('memory')]);
    expect(() => registry.register(fakeTransport('memory'), 'other')).toThrowError(/conflicts/);
  });
});
