import { ErrorCodes, hasErrorCode } from '@gantry/core/transport';
import { describe, expect, it } from 'vitest';
import dockerArchiveTransport, { createDockerArchiveTransport, isDockerArchiveReference } from './index.js';

function parseError(text: string): unknown {
  try {
    dockerArchiveTransport.parseReference(text);
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('docker-archive: references', () => {
  const valid: Array<[string, string, string | undefined, number]> = [
    ['/tmp/a.tar', '/tmp/a.tar', undefined, -1],
    ['relative/a.tar', 'relative/a.tar', undefined, -1],
    [
      '/tmp/a.tar:busybox',
      '/tmp/a.tar:docker.io/library/busybox:latest',
      'docker.io/library/busybox:latest',
      -1,
    ],
    [
      '/tmp/a.tar:example.com:5000/app:v1',
      '/tmp/a.tar:example.com:5000/app:v1',
      'example.com:5000/app:v1',
      -1,
    ],
    ['/tmp/a.tar:@0', '/tmp/a.tar:@0', undefined, 0],
    ['/tmp/a.tar:@+12', '/tmp/a.tar:@12', undefined, 12],
  ];
  for (const [input, within, dockerReference, sourceIndex] of valid) {
    it(`parses ${input}`, () => {
      const reference = dockerArchiveTransport.parseReference(input);
      expect(isDockerArchiveReference(reference)).toBe(true);
      expect(reference.stringWithinTransport()).toBe(within);
      expect(reference.dockerReference()?.toString()).toBe(dockerReference);
      expect(reference.sourceIndex).toBe(sourceIndex);
      expect(reference.policyConfigurationIdentity()).toBe('');
      expect(reference.policyConfigurationNamespaces()).toEqual([]);
      const again = dockerArchiveTransport.parseReference(reference.stringWithinTransport());
      expect(again.stringWithinTransport()).toBe(within);
    });
  }

  const invalid: Array<[string, RegExp]> = [
    ['', /expected <path>\[:<reference>\]/],
    ['/tmp/a.tar:', /invalid reference format|must have at least one component/],
    ['/tmp/a.tar:@-1', /must not be negative/],
    ['/tmp/a.tar:@x', /invalid source index @x/],
    ['/tmp/a.tar:@', /invalid source index @/],
    ['/tmp/a.tar:UPPER', /must be lowercase/],
    [`/tmp/a.tar:busybox@sha256:${'a'.repeat(64)}`, /doesn't support digest references/],
    [`/tmp/a.tar:busybox:1@sha256:${'a'.repeat(64)}`, /doesn't support digest references/],
  ];
  for (const [input, message] of invalid) {
    it(`rejects "${input}"`, () => {
      const error = parseError(input);
      expect(hasErrorCode(error, ErrorCodes.InvalidReference), String(error)).toBe(true);
      expect((error as Error).message).toMatch(message);
    });
  }

  it('has no policy scopes but the default one, and refuses deleting', async () => {
    expect(() => dockerArchiveTransport.validatePolicyConfigurationScope('/tmp/a.tar')).toThrow(
      /does not support any scopes except the default "" one/,
    );
    await expect(dockerArchiveTransport.parseReference('/tmp/a.tar').deleteImage()).rejects.toMatchObject({
      code: ErrorCodes.NotSupported,
    });
    expect(createDockerArchiveTransport().name).toBe('docker-archive');
    expect(dockerArchiveTransport.specificationVersion).toBe('v1');
  });
});
