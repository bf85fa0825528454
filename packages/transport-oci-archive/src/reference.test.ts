import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ErrorCodes, hasErrorCode, TransportRegistry } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import ociArchiveTransportDefault, {
  createOciArchiveTransport,
  isOciArchiveReference,
  ociArchiveTransport,
  parseReferenceElements,
} from './index.js';

let directory = '';
beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'gantry-'));
});
afterAll(() => rm(directory, { recursive: true, force: true }));

function expectInvalid(run: () => unknown, message: RegExp): void {
  let failure: unknown;
  try {
    run();
  } catch (error) {
    failure = error;
  }
  expect(hasErrorCode(failure, ErrorCodes.InvalidReference), String(failure)).toBe(true);
  expect((failure as Error).message).toMatch(message);
}

describe('oci-archive: references', () => {
  it('splits at the first colon into path and image, as containers/image', () => {
    expect(parseReferenceElements('/a.tar')).toEqual({ path: '/a.tar', imageName: '', sourceIndex: -1 });
    expect(parseReferenceElements('/a.tar:')).toEqual({ path: '/a.tar', imageName: '', sourceIndex: -1 });
    expect(parseReferenceElements('/a.tar:x:y')).toEqual({
      path: '/a.tar',
      imageName: 'x:y',
      sourceIndex: -1,
    });
    expect(parseReferenceElements('/a.tar:example.com/app:1.0')).toEqual({
      path: '/a.tar',
      imageName: 'example.com/app:1.0',
      sourceIndex: -1,
    });
    expect(parseReferenceElements('/a.tar:@3')).toEqual({ path: '/a.tar', imageName: '', sourceIndex: 3 });
  });

  it('rejects invalid names and indexes', () => {
    expectInvalid(
      () => ociArchiveTransport.parseReference('/a.tar:bad!name'),
      /invalid image name "bad!name"/,
    );
    expectInvalid(() => ociArchiveTransport.parseReference('/a.tar:@-1'), /must not be negative/);
    expectInvalid(() => ociArchiveTransport.parseReference('/a.tar:@x'), /not an integer/);
    expectInvalid(
      () => ociArchiveTransport.newReference('/a.tar', 'x', 1),
      /cannot set image x and index @1/,
    );
    expectInvalid(() => ociArchiveTransport.newReference('/a:b.tar', 'x'), /contains a colon/);
    expectInvalid(
      () => ociArchiveTransport.parseReference('/gantry-no-such-directory/a.tar:t'),
      /no such file or directory/,
    );
  });

  it('formats references as containers/image and round-trips them', () => {
    for (const text of [`${directory}/a.tar:`, `${directory}/a.tar:name`, `${directory}/a.tar:@2`]) {
      const reference = ociArchiveTransport.parseReference(text);
      expect(reference.stringWithinTransport()).toBe(text);
      expect(reference.dockerReference()).toBeUndefined();
    }
    expect(ociArchiveTransport.parseReference(`${directory}/a.tar`).stringWithinTransport()).toBe(
      `${directory}/a.tar:`,
    );
  });

  it('uses the resolved archive path, without the image name, as the policy identity', async () => {
    await symlink(directory, path.join(directory, 'link'));
    const reference = ociArchiveTransport.parseReference(`${directory}/link/./a.tar:name`);
    expect(reference.resolvedPath).toBe(path.join(directory, 'a.tar'));
    expect(reference.policyConfigurationIdentity()).toBe(path.join(directory, 'a.tar'));
    const namespaces = reference.policyConfigurationNamespaces();
    expect(namespaces[0]).toBe(path.join(directory, 'a.tar'));
    expect(namespaces[1]).toBe(directory);
    expect(namespaces).not.toContain('/');
    expect(namespaces.at(-1)).toBe(`/${directory.split('/')[1]}`);
  });

  it('validates policy scopes as containers/image', () => {
    expect(() => ociArchiveTransport.validatePolicyConfigurationScope('/var/images/a.tar')).not.toThrow();
    expectInvalid(
      () => ociArchiveTransport.validatePolicyConfigurationScope('relative.tar'),
      /must be an absolute path/,
    );
    expectInvalid(() => ociArchiveTransport.validatePolicyConfigurationScope('/'), /generic default scope/);
    expectInvalid(
      () => ociArchiveTransport.validatePolicyConfigurationScope('/var//images/a.tar'),
      /perhaps try with path \/var\/images\/a\.tar/,
    );
  });

  it('exports the transport as default, named and from a factory, for a registry', () => {
    expect(ociArchiveTransportDefault).toBe(ociArchiveTransport);
    const another = createOciArchiveTransport();
    expect(another).not.toBe(ociArchiveTransport);
    expect(another.name).toBe('oci-archive');
    const registry = new TransportRegistry([ociArchiveTransport]);
    expect(registry.get('oci-archive')).toBe(ociArchiveTransport);
    expect(isOciArchiveReference(ociArchiveTransport.parseReference(`${directory}/a.tar:x`))).toBe(true);
  });
});
