import { ErrorCodes } from '@gantry/core/transport';
import { describe, expect, it } from 'vitest';
import { dockerDaemonTransport } from './transport.js';

const id = `sha256:${'0123456789abcdef'.repeat(4)}`;

describe('docker-daemon: references', () => {
  it('accepts name:tag, name@digest and sha256 image IDs', () => {
    const tagged = dockerDaemonTransport.parseReference('busybox:1');
    expect(tagged.stringWithinTransport()).toBe('busybox:1');
    expect(String(tagged.dockerReference())).toBe('docker.io/library/busybox:1');
    expect(dockerDaemonTransport.parseReference('example.com/a/b:v1').stringWithinTransport()).toBe(
      'example.com/a/b:v1',
    );
    const digested = dockerDaemonTransport.parseReference(`busybox@${id}`);
    expect(digested.stringWithinTransport()).toBe(`busybox@${id}`);
    const byId = dockerDaemonTransport.parseReference(id);
    expect(byId.imageId).toBe(id);
    expect(byId.dockerReference()).toBeUndefined();
    expect(byId.stringWithinTransport()).toBe(id);
  });

  it('refuses what containers/image refuses', () => {
    expect(() => dockerDaemonTransport.parseReference('busybox')).toThrow(
      'docker-daemon: reference busybox has neither a tag nor a digest',
    );
    expect(() => dockerDaemonTransport.parseReference(`busybox:1@${id}`)).toThrow(/both a tag and digest/);
    expect(() => dockerDaemonTransport.parseReference('sha256:abc')).toThrow(
      /sha256 repository name is reserved/,
    );
    expect(() => dockerDaemonTransport.parseReference('sha256:latest')).toThrow(/reserved/);
    expect(() => dockerDaemonTransport.parseReference(`sha512:${'ab'.repeat(64)}`)).toThrow(
      /only digest algorithm sha256/,
    );
    expect(() => dockerDaemonTransport.parseReference('UPPER:tag')).toThrow(
      expect.objectContaining({ code: ErrorCodes.InvalidReference }),
    );
    // Like skopeo, sha512:abc is not a valid digest and so is a name with a tag.
    expect(dockerDaemonTransport.parseReference('sha512:abc').stringWithinTransport()).toBe('sha512:abc');
  });

  it('has only the default policy scope', () => {
    const reference = dockerDaemonTransport.parseReference('busybox:1');
    expect(reference.policyConfigurationIdentity()).toBe('');
    expect(reference.policyConfigurationNamespaces()).toEqual([]);
    expect(() => dockerDaemonTransport.validatePolicyConfigurationScope('docker.io/library/busybox')).toThrow(
      'docker-daemon: does not support any scopes except the default "" one',
    );
  });

  it('refuses image IDs and digests as destinations', async () => {
    await expect(dockerDaemonTransport.parseReference(id).newImageDestination()).rejects.toThrow(
      /a destination must be a name:tag/,
    );
    await expect(dockerDaemonTransport.parseReference(`busybox@${id}`).newImageDestination()).rejects.toThrow(
      /a destination must be a name:tag/,
    );
  });
});
