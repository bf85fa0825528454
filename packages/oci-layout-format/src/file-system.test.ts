import { realpathSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  describeFileSystemError,
  errorCode,
  randomSuffix,
  resolvePathToFullyExplicit,
} from './file-system.js';

let directory = '';
beforeAll(async () => {
  directory = realpathSync(await mkdtemp(path.join(os.tmpdir(), 'gantry-')));
  await mkdir(path.join(directory, 'real'));
  await symlink(path.join(directory, 'real'), path.join(directory, 'link'));
  await writeFile(path.join(directory, 'file'), 'x');
});
afterAll(() => rm(directory, { recursive: true, force: true }));

describe('resolvePathToFullyExplicit', () => {
  it('resolves symlinks and .. and allows a missing last component', () => {
    expect(resolvePathToFullyExplicit(path.join(directory, 'link'))).toBe(path.join(directory, 'real'));
    expect(resolvePathToFullyExplicit(path.join(directory, 'link', 'new'))).toBe(
      path.join(directory, 'real', 'new'),
    );
    expect(resolvePathToFullyExplicit(`${directory}/real/../link`)).toBe(path.join(directory, 'real'));
    expect(resolvePathToFullyExplicit('')).toBe(realpathSync(process.cwd()));
  });

  it('throws the file-system error when a parent is missing or not a directory', () => {
    expect(() => resolvePathToFullyExplicit(path.join(directory, 'missing', 'x'))).toThrow(
      expect.objectContaining({ code: 'ENOENT' }),
    );
    expect(() => resolvePathToFullyExplicit(path.join(directory, 'file', 'x'))).toThrow(
      expect.objectContaining({ code: 'ENOTDIR' }),
    );
  });
});

describe('describeFileSystemError', () => {
  it('describes errors as Go does', () => {
    let caught: unknown;
    try {
      resolvePathToFullyExplicit(path.join(directory, 'missing', 'x'));
    } catch (error) {
      caught = error;
    }
    expect(errorCode(caught)).toBe('ENOENT');
    expect(describeFileSystemError(caught)).toMatch(/^realpath .*missing: no such file or directory$/);
    expect(describeFileSystemError(new Error('plain'))).toBe('plain');
    expect(describeFileSystemError('text')).toBe('text');
    expect(errorCode('text')).toBeUndefined();
  });

  it('makes distinct temporary suffixes', () => {
    expect(randomSuffix()).toMatch(/^[0-9a-f]{16}$/);
    expect(randomSuffix()).not.toBe(randomSuffix());
  });
});
