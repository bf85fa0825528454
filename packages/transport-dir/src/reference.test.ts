import { mkdir, mkdtemp, readdir, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  assertTransport,
  resolvePathToFullyExplicit as coreResolvePathToFullyExplicit,
  ErrorCodes,
  TransportRegistry,
} from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import defaultExport, {
  createDirTransport,
  DirImageReference,
  dirTransport,
  resolvePathToFullyExplicit,
} from './index.js';
import { handBuiltImage, writeHandBuiltImage } from './test-support/hand-built-image.js';

let top: string;
beforeEach(async () => {
  // realpath: the OS temporary directory may itself be reached through a symlink.
  top = await realpath(await mkdtemp(path.join(os.tmpdir(), 'gantry-')));
});
afterEach(async () => {
  await rm(top, { recursive: true, force: true });
});

describe('plugin shape', () => {
  it('exports a v1 transport named dir, as default and named export, and a factory', () => {
    expect(defaultExport).toBe(dirTransport);
    expect(assertTransport(dirTransport, '@gantry/transport-dir')).toBe(dirTransport);
    expect(dirTransport.name).toBe('dir');
    expect(dirTransport.specificationVersion).toBe('v1');
    const other = createDirTransport({ durable: false });
    expect(other).not.toBe(dirTransport);
    expect(new TransportRegistry([other]).parseImageReference(`dir:${top}`).transport).toBe(other);
  });
});

describe('resolvePathToFullyExplicit', () => {
  it('is the @gantry/core helper (its explicitfilepath cases are tested there)', () => {
    expect(resolvePathToFullyExplicit).toBe(coreResolvePathToFullyExplicit);
  });
});

describe('parseReference', () => {
  it('keeps the path as given and resolves the policy identity', async () => {
    await mkdir(path.join(top, 'real/image'), { recursive: true });
    await symlink('real', path.join(top, 'link'));
    const table: Array<{ input: string; identity: string }> = [
      { input: top, identity: top },
      { input: `${top}/.`, identity: top },
      { input: `${top}/link/image`, identity: `${top}/real/image` },
      { input: `${top}/link/missing`, identity: `${top}/real/missing` },
      { input: `${top}//real/./image/`, identity: `${top}/real/image` },
      { input: '/', identity: '/' },
      { input: '/etc', identity: '/etc' },
    ];
    for (const { input, identity } of table) {
      const reference = dirTransport.parseReference(input);
      expect(reference).toBeInstanceOf(DirImageReference);
      expect(reference.transport).toBe(dirTransport);
      expect(reference.stringWithinTransport()).toBe(input);
      expect(reference.policyConfigurationIdentity()).toBe(identity);
      expect(reference.dockerReference()).toBeUndefined();
      expect(
        dirTransport.parseReference(reference.stringWithinTransport()).policyConfigurationIdentity(),
      ).toBe(identity);
    }
  });

  it('resolves relative paths and "" against the working directory', () => {
    const previous = process.cwd();
    process.chdir(top);
    try {
      expect(dirTransport.parseReference('relativepath').policyConfigurationIdentity()).toBe(
        `${top}/relativepath`,
      );
      expect(dirTransport.parseReference('relativepath').stringWithinTransport()).toBe('relativepath');
      expect(dirTransport.parseReference('').policyConfigurationIdentity()).toBe(top);
    } finally {
      process.chdir(previous);
    }
  });

  it('rejects a path whose parent does not exist, naming it like Go', () => {
    const input = `${top}/thisparentdoesnotexist/something`;
    expect(() => dirTransport.parseReference(input)).toThrow(
      expect.objectContaining({
        code: ErrorCodes.InvalidReference,
        message: `Invalid image name "dir:${input}": lstat ${top}/thisparentdoesnotexist: no such file or directory`,
      }),
    );
  });

  it('lists parent directories as namespaces, without "/"', async () => {
    await mkdir(path.join(top, 'a/b'), { recursive: true });
    const reference = dirTransport.parseReference(`${top}/a/b/c`);
    const expected: string[] = [];
    for (let current = `${top}/a/b`; current !== '/'; current = path.dirname(current)) expected.push(current);
    expect(reference.policyConfigurationNamespaces()).toEqual(expected);
    expect(dirTransport.parseReference('/usr/share/./.').policyConfigurationNamespaces()).toEqual(['/usr']);
    expect(dirTransport.parseReference('/').policyConfigurationNamespaces()).toEqual([]);
    expect(dirTransport.parseReference('/etc').policyConfigurationNamespaces()).toEqual([]);
  });

  it('returns frozen references', () => {
    const reference = dirTransport.parseReference(top);
    expect(Object.isFrozen(reference)).toBe(true);
  });
});

describe('validatePolicyConfigurationScope', () => {
  it.each(['/etc', '/this/does/not/exist'])('accepts %s', (scope) => {
    expect(() => dirTransport.validatePolicyConfigurationScope(scope)).not.toThrow();
  });
  it.each([
    ['relative/path', 'Invalid scope relative/path: Must be an absolute path'],
    [
      '/double//slashes',
      'Invalid scope /double//slashes: Uses non-canonical format, perhaps try /double/slashes',
    ],
    ['/has/./dot', 'Invalid scope /has/./dot: Uses non-canonical format, perhaps try /has/dot'],
    ['/has/dot/../dot', 'Invalid scope /has/dot/../dot: Uses non-canonical format, perhaps try /has/dot'],
    [
      '/trailing/slash/',
      'Invalid scope /trailing/slash/: Uses non-canonical format, perhaps try /trailing/slash',
    ],
    ['/', 'Invalid scope "/": Use the generic default scope ""'],
  ])('rejects %s', (scope, message) => {
    expect(() => dirTransport.validatePolicyConfigurationScope(scope)).toThrow(message);
  });
});

describe('deleteImage', () => {
  const quiet = createDirTransport({ durable: false });

  it('removes the image files, then the directory when nothing else is left', async () => {
    const directory = path.join(top, 'image');
    await writeHandBuiltImage(
      await quiet.parseReference(directory).newImageDestination(),
      handBuiltImage('delete'),
      {
        signatures: [new TextEncoder().encode('sig')],
      },
    );
    await quiet.parseReference(directory).deleteImage();
    expect(await readdir(top)).toEqual([]);
    await expect(quiet.parseReference(directory).deleteImage()).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
    });
  });

  it('keeps files the layout does not name, and the directory holding them', async () => {
    const directory = path.join(top, 'image');
    await writeHandBuiltImage(
      await quiet.parseReference(directory).newImageDestination(),
      handBuiltImage('keep'),
    );
    await writeFile(path.join(directory, 'notes.txt'), 'mine');
    await quiet.parseReference(directory).deleteImage();
    expect(await readdir(directory)).toEqual(['notes.txt']);
  });

  it('refuses a directory without the version file', async () => {
    const directory = path.join(top, 'image');
    await mkdir(directory);
    await writeFile(path.join(directory, 'manifest.json'), '{}');
    await expect(quiet.parseReference(directory).deleteImage()).rejects.toMatchObject({
      code: ErrorCodes.InvalidLayout,
    });
    expect(await readdir(directory)).toEqual(['manifest.json']);
  });
});
