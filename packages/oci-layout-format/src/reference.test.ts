import { realpathSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ErrorCodes } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cleanPath,
  isValidImageName,
  LayoutReferenceBase,
  type LayoutReferenceElements,
  parseLayoutReferenceElements,
  validateLayoutPolicyScope,
} from './reference.js';

class TestReference extends LayoutReferenceBase {
  constructor(elements: LayoutReferenceElements) {
    super('test', elements);
  }
}

let directory = '';
beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
});
afterAll(() => rm(directory, { recursive: true, force: true }));

describe('isValidImageName', () => {
  it.each(['a', 'latest', 'a--b', 'registry.example.com/ns/app:v1.2_3', 'a@b+c', 'notlatest:image'])(
    'accepts %s',
    (name) => expect(isValidImageName(name)).toBe(true),
  );
  it.each(['', '-a', 'a-', 'a/', '/a', 'a//b', 'a---b', 'a b', 'a..b'])('rejects %j', (name) =>
    expect(isValidImageName(name)).toBe(false),
  );
});

describe('parseLayoutReferenceElements', () => {
  it('splits at the first colon', () => {
    expect(parseLayoutReferenceElements('test', '/d:a:b')).toEqual({
      path: '/d',
      imageName: 'a:b',
      sourceIndex: -1,
    });
    expect(parseLayoutReferenceElements('test', '/d')).toEqual({
      path: '/d',
      imageName: '',
      sourceIndex: -1,
    });
    expect(parseLayoutReferenceElements('test', '/d:')).toEqual({
      path: '/d',
      imageName: '',
      sourceIndex: -1,
    });
    expect(parseLayoutReferenceElements('test', '/d:@3')).toEqual({
      path: '/d',
      imageName: '',
      sourceIndex: 3,
    });
  });

  it.each([
    ['/d:@x', /Invalid test: reference "\/d:@x": invalid source index @x: not an integer/],
    ['/d:@-1', /invalid source index @-1: must not be negative/],
    ['/d:@99999999999999999999', /out of range/],
    ['/d:-bad', /invalid image name "-bad"/],
  ])('rejects %s', (text, message) => {
    expect(() => parseLayoutReferenceElements('test', text)).toThrow(
      expect.objectContaining({ code: ErrorCodes.InvalidReference, message: expect.stringMatching(message) }),
    );
  });
});

describe('LayoutReferenceBase', () => {
  it('resolves the path and formats the reference', async () => {
    await mkdir(path.join(directory, 'real'));
    await symlink(path.join(directory, 'real'), path.join(directory, 'link'));
    const named = new TestReference({
      path: path.join(directory, 'link'),
      imageName: 'app',
      sourceIndex: -1,
    });
    expect(named.resolvedPath).toBe(realpathSync(path.join(directory, 'real')));
    expect(named.path).toBe(path.join(directory, 'link'));
    expect(named.stringWithinTransport()).toBe(`${path.join(directory, 'link')}:app`);
    expect(named.describeImage()).toBe('image "app"');
    expect(named.dockerReference()).toBeUndefined();
    expect(named.policyConfigurationNamespaces()[0]).toBe(named.resolvedPath);
    expect(named.policyConfigurationNamespaces()).not.toContain('/');

    const indexed = new TestReference({ path: directory, imageName: '', sourceIndex: 2 });
    expect(indexed.stringWithinTransport()).toBe(`${directory}:@2`);
    expect(indexed.describeImage()).toBe('image @2');
    expect(new TestReference({ path: directory, imageName: '', sourceIndex: -1 }).describeImage()).toBe(
      'the only image',
    );
  });

  it('lists the path and its parents as namespaces, most specific first', () => {
    const reference = new TestReference({ path: directory, imageName: '', sourceIndex: -1 });
    const namespaces = reference.policyConfigurationNamespaces();
    expect(namespaces[0]).toBe(reference.resolvedPath);
    for (let position = 1; position < namespaces.length; position++) {
      expect(namespaces[position]).toBe(path.dirname(namespaces[position - 1] as string));
    }
    expect(namespaces.at(-1)?.split('/').length).toBe(2);
  });

  it.each([
    [{ path: '/a:b', imageName: 'x', sourceIndex: -1 }, /contains a colon/],
    [{ path: '/a', imageName: '-x', sourceIndex: -1 }, /invalid image name "-x"/],
    [{ path: '/a', imageName: 'x', sourceIndex: 1 }, /cannot set image x and index @1.*cannot use both/],
    [{ path: '/a', imageName: '', sourceIndex: -3 }, /source index @-3 must not be negative/],
    [{ path: '/missing-gantry-parent/a/b', imageName: '', sourceIndex: -1 }, /no such file or directory/],
  ])('rejects %j', (elements, message) => {
    expect(() => new TestReference(elements)).toThrow(
      expect.objectContaining({ code: ErrorCodes.InvalidReference, message: expect.stringMatching(message) }),
    );
  });
});

describe('validateLayoutPolicyScope', () => {
  it('accepts clean absolute paths, with a name only when allowed', () => {
    expect(() => validateLayoutPolicyScope('/a/b', { allowImageName: true })).not.toThrow();
    expect(() => validateLayoutPolicyScope('/a/b:app', { allowImageName: true })).not.toThrow();
    expect(() => validateLayoutPolicyScope('/a/b', { allowImageName: false })).not.toThrow();
    // Without names, the colon is part of the path.
    expect(() => validateLayoutPolicyScope('/a/b:app', { allowImageName: false })).not.toThrow();
  });

  it.each([
    ['a/b', true, /must be an absolute path/],
    ['/', true, /Use the generic default scope ""/],
    ['/a//b', true, /perhaps try with path \/a\/b/],
    ['/a/./b:x', true, /perhaps try with path \/a\/b/],
    ['/a/b:-x', true, /invalid image name "-x"/],
    ['/a/../b', false, /perhaps try with path \/b/],
    ['/a/b/', false, /perhaps try with path \/a\/b/],
  ])('rejects %s (names allowed: %s)', (scope, allowImageName, message) => {
    expect(() => validateLayoutPolicyScope(scope, { allowImageName })).toThrow(
      expect.objectContaining({ code: ErrorCodes.InvalidReference, message: expect.stringMatching(message) }),
    );
  });

  it('cleans paths as Go does', () => {
    expect(cleanPath('/a/./b/../c//d/')).toBe('/a/c/d');
    expect(cleanPath('/..')).toBe('/');
  });
});
