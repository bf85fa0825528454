import { mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import ociTransportDefault, { createOciTransport, isOciReference, ociTransport } from './index.js';
import { temporaryDirectory } from './test-support/images.js';

let directory = '';
let remove: () => Promise<void> = async () => {};

beforeAll(async () => {
  ({ directory, remove } = await temporaryDirectory());
});
afterAll(() => remove());

describe('plugin shape', () => {
  it('exports a factory, a named default instance and a default export', () => {
    expect(ociTransportDefault).toBe(ociTransport);
    expect(ociTransport.name).toBe('oci');
    expect(ociTransport.specificationVersion).toBe('v1');
    const other = createOciTransport({ lock: { timeoutMs: 1000 } });
    expect(other).not.toBe(ociTransport);
    expect(other.parseReference(`${directory}:a`).transport).toBe(other);
  });
});

describe('parseReference', () => {
  const images = [
    { suffix: ':notlatest:image', imageName: 'notlatest:image', sourceIndex: -1 },
    { suffix: ':latestimage', imageName: 'latestimage', sourceIndex: -1 },
    { suffix: ':', imageName: '', sourceIndex: -1 },
    { suffix: '', imageName: '', sourceIndex: -1 },
    { suffix: ':@0', imageName: '', sourceIndex: 0 },
    { suffix: ':@10', imageName: '', sourceIndex: 10 },
    { suffix: ':@999999', imageName: '', sourceIndex: 999999 },
    {
      suffix: ':registry.example.com/ns/app:v1.2_3',
      imageName: 'registry.example.com/ns/app:v1.2_3',
      sourceIndex: -1,
    },
    { suffix: ':a--b', imageName: 'a--b', sourceIndex: -1 },
    { suffix: ':name@sha256', imageName: 'name@sha256', sourceIndex: -1 },
    { suffix: ':1.0+build', imageName: '1.0+build', sourceIndex: -1 },
  ];
  for (const pathKind of ['/', '/etc', 'tmp', 'relativepath', 'tmp/thisdoesnotexist']) {
    for (const image of images) {
      it(`parses ${pathKind}${image.suffix}`, () => {
        const layoutPath =
          pathKind === 'tmp'
            ? directory
            : pathKind === 'tmp/thisdoesnotexist'
              ? `${directory}/nothere`
              : pathKind;
        const reference = ociTransport.parseReference(layoutPath + image.suffix);
        expect(reference.path).toBe(layoutPath);
        expect(reference.imageName).toBe(image.imageName);
        expect(reference.sourceIndex).toBe(image.sourceIndex);
        expect(reference.dockerReference()).toBeUndefined();
        // Round trip through stringWithinTransport.
        const again = ociTransport.parseReference(reference.stringWithinTransport());
        expect(again.stringWithinTransport()).toBe(reference.stringWithinTransport());
        expect(again.path).toBe(reference.path);
        expect(again.imageName).toBe(reference.imageName);
        expect(again.sourceIndex).toBe(reference.sourceIndex);
      });
    }
  }

  it('writes path:name, path: and path:@N back', () => {
    expect(ociTransport.parseReference(`${directory}/d:notlatest:notlatest`).stringWithinTransport()).toBe(
      `${directory}/d:notlatest:notlatest`,
    );
    expect(ociTransport.parseReference(`${directory}/d`).stringWithinTransport()).toBe(`${directory}/d:`);
    expect(ociTransport.parseReference(`${directory}/d:@1`).stringWithinTransport()).toBe(
      `${directory}/d:@1`,
    );
    expect(ociTransport.parseReference(`${directory}/d:@+007`).stringWithinTransport()).toBe(
      `${directory}/d:@7`,
    );
  });

  const invalid: Array<[string, RegExp]> = [
    [":invalid'image!value@", /invalid image name "invalid'image!value@"/],
    [':@-3', /invalid source index @-3: must not be negative/],
    [':@', /invalid source index @: not an integer/],
    [':@1x', /invalid source index @1x: not an integer/],
    [':@99999999999999999999', /out of range/],
    [':-leading', /invalid image name/],
    [':trailing-', /invalid image name/],
    [':a//b', /invalid image name/],
    [':a b', /invalid image name/],
    [':a@', /invalid image name/],
  ];
  for (const [suffix, message] of invalid) {
    it(`rejects ${suffix}`, () => {
      expect(() => ociTransport.parseReference(directory + suffix)).toThrow(
        expect.objectContaining({
          code: 'ERR_GANTRY_INVALID_REFERENCE',
          message: expect.stringMatching(message),
        }),
      );
    });
  }

  it('accepts upper-case names (the OCI ref.name grammar allows them)', () => {
    expect(ociTransport.parseReference(`${directory}:UPPER/ok`).imageName).toBe('UPPER/ok');
  });

  it('rejects a path whose parent does not exist, naming it', () => {
    expect(() => ociTransport.parseReference(`${directory}/missing-parent/layout:x`)).toThrow(
      expect.objectContaining({
        code: 'ERR_GANTRY_INVALID_REFERENCE',
        message: expect.stringContaining(`${directory}/missing-parent`),
      }),
    );
  });

  it('builds references from parts and refuses a name together with an index', () => {
    expect(ociTransport.newReference(directory, 'x').stringWithinTransport()).toBe(`${directory}:x`);
    expect(ociTransport.newReference(directory, '', 3).stringWithinTransport()).toBe(`${directory}:@3`);
    expect(() => ociTransport.newReference(directory, 'x', 1)).toThrow(/cannot use both/);
    expect(() => ociTransport.newReference(`${directory}/has:colon`, 'x')).toThrow(/contains a colon/);
    expect(() => ociTransport.newReference(directory, '', -3)).toThrow(/must not be negative/);
  });

  it('recognises its references', () => {
    expect(isOciReference(ociTransport.parseReference(directory))).toBe(true);
  });
});

describe('policy configuration', () => {
  it('uses the resolved directory (symlinks resolved) as identity, without the name, as containers/image', async () => {
    const real = path.join(directory, 'real');
    await mkdir(real);
    await symlink(real, path.join(directory, 'link'));
    const named = ociTransport.parseReference(`${directory}/link/./:image2`);
    expect(named.policyConfigurationIdentity()).toBe(real);
    expect(ociTransport.parseReference(`${directory}/link`).policyConfigurationIdentity()).toBe(real);
    expect(ociTransport.parseReference(`${directory}/link:@1`).policyConfigurationIdentity()).toBe(real);
    const namespaces = named.policyConfigurationNamespaces();
    expect(namespaces[0]).toBe(real);
    expect(namespaces[1]).toBe(path.dirname(real));
    expect(namespaces).not.toContain('/');
  });

  it('resolves a relative path against the working directory', () => {
    const reference = ociTransport.parseReference('relative-layout:a');
    expect(reference.policyConfigurationIdentity()).toBe(path.join(process.cwd(), 'relative-layout'));
  });

  it('lists parents, as containers/image, and none for /', () => {
    expect(ociTransport.parseReference('/usr/share:someimage').policyConfigurationNamespaces()).toEqual([
      '/usr/share',
      '/usr',
    ]);
    expect(ociTransport.parseReference('/usr/share/./.:x').policyConfigurationNamespaces()).toEqual([
      '/usr/share',
      '/usr',
    ]);
    expect(ociTransport.parseReference('/:image3').policyConfigurationNamespaces()).toEqual([]);
    expect(ociTransport.parseReference('/:@2').policyConfigurationIdentity()).toBe('/');
  });

  it('validates scopes', () => {
    for (const scope of [
      '/etc',
      '/this/does/not/exist',
      '/etc:tag',
      '/d:registry/app:v1',
      '/d:bad!name',
      '/d:',
    ]) {
      expect(() => ociTransport.validatePolicyConfigurationScope(scope), scope).not.toThrow();
    }
    for (const scope of [
      'relative/path',
      '/',
      '/double//slashes',
      '/has/./dot',
      '/has/dot/../dot',
      '/trailing/slash/',
      ':x',
    ]) {
      expect(() => ociTransport.validatePolicyConfigurationScope(scope), scope).toThrow(
        expect.objectContaining({ code: 'ERR_GANTRY_INVALID_REFERENCE' }),
      );
    }
  });
});
