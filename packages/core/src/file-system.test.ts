import { mkdirSync, openSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  describeFileSystemError,
  errorCode,
  makeDirectories,
  resolvePathToFullyExplicit,
} from './file-system.js';
import { mountTestTmpfs } from './testing/read-only-mount.js';

let top: string;
beforeEach(async () => {
  // realpath: the OS temporary directory may itself be reached through a symlink.
  top = await realpath(await mkdtemp(path.join(os.tmpdir(), 'gantry-')));
});
afterEach(async () => {
  // The "unreadable directory" case leaves a directory that cannot be removed without this.
  await chmod(path.join(top, 'unreadable'), 0o755).catch(() => undefined);
  await rm(top, { recursive: true, force: true });
});

/** Runs `resolvePathToFullyExplicit(input)` with the working directory set to `directory`. */
function resolveFrom(directory: string, input: string): string {
  const previous = process.cwd();
  process.chdir(directory);
  try {
    return resolvePathToFullyExplicit(input);
  } finally {
    process.chdir(previous);
  }
}

/** The error `run` throws (failing the test when it throws none). */
function thrownBy(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error');
}

// Root bypasses directory permissions, so an "unreadable" directory is traversable then.
const runningAsRoot = process.getuid?.() === 0;

describe('resolvePathToFullyExplicit (containers/image explicitfilepath cases)', () => {
  const cases: Array<{
    name: string;
    setup: (top: string) => Promise<string>;
    /** Relative to `top`; undefined when resolving must fail. */
    expected: string | undefined;
    /** The expected path does not exist, so appending `/trailing` must fail. */
    missing?: boolean;
  }> = [
    {
      name: 'plain hierarchy',
      setup: async (t) => {
        await mkdir(path.join(t, 'dir1/dir2/dir3'), { recursive: true });
        return 'dir1/dir2/dir3';
      },
      expected: 'dir1/dir2/dir3',
    },
    { name: 'missing parent', setup: async () => 'thisismissing/dir2', expected: undefined },
    {
      name: 'missing last component',
      setup: async () => 'thisismissing',
      expected: 'thisismissing',
      missing: true,
    },
    {
      name: 'symlink on the path',
      setup: async (t) => {
        await mkdir(path.join(t, 'dir1/dir2'), { recursive: true });
        await symlink('dir1', path.join(t, 'link1'));
        return 'link1/dir2';
      },
      expected: 'dir1/dir2',
    },
    {
      name: 'trailing symlink',
      setup: async (t) => {
        await mkdir(path.join(t, 'dir1/dir2'), { recursive: true });
        await symlink('dir2', path.join(t, 'dir1/link2'));
        return 'dir1/link2';
      },
      expected: 'dir1/dir2',
    },
    {
      name: 'dangling symlink as a parent',
      setup: async (t) => {
        await symlink('thisismissing', path.join(t, 'link1'));
        return 'link1/dir2';
      },
      expected: undefined,
    },
    {
      name: 'dangling trailing symlink (a missing non-symlink would be accepted)',
      setup: async (t) => {
        await symlink('thisismissing', path.join(t, 'link1'));
        return 'link1';
      },
      expected: undefined,
    },
    {
      name: 'relative components',
      setup: async (t) => {
        await mkdir(path.join(t, 'dir1/dir2/dir3'), { recursive: true });
        return 'dir1/./dir2/../dir2/dir3';
      },
      expected: 'dir1/dir2/dir3',
    },
    {
      name: 'trailing relative components',
      setup: async (t) => {
        await mkdir(path.join(t, 'dir1/dir2'), { recursive: true });
        return 'dir1/dir2/..';
      },
      expected: 'dir1',
    },
    {
      name: 'relative components in a symlink',
      setup: async (t) => {
        await mkdir(path.join(t, 'dir1/dir2'), { recursive: true });
        await symlink('../dir1/dir2', path.join(t, 'dir1/link2'));
        return 'dir1/link2';
      },
      expected: 'dir1/dir2',
    },
    {
      name: '.. after a symlink is lexical (as Go filepath.Abs)',
      setup: async (t) => {
        await mkdir(path.join(t, 'dir1/dir2/dir3'), { recursive: true });
        await symlink('dir3', path.join(t, 'dir1/dir2/link3'));
        return 'dir1/dir2/link3/../..';
      },
      expected: 'dir1',
    },
    {
      name: 'unreadable directory',
      setup: async (t) => {
        await mkdir(path.join(t, 'unreadable/dir2'), { recursive: true });
        await chmod(path.join(t, 'unreadable'), 0o000);
        return 'unreadable/dir2';
      },
      expected: runningAsRoot ? 'unreadable/dir2' : undefined,
    },
    {
      name: 'a file as a parent',
      setup: async (t) => {
        await mkdir(path.join(t, 'dir1'));
        await writeFile(path.join(t, 'dir1/file'), 'x');
        return 'dir1/file/x';
      },
      expected: undefined,
    },
  ];
  for (const testCase of cases) {
    // As in containers/image, each case also runs with a missing "/trailing" component appended.
    for (const suffix of ['', '/trailing']) {
      it(`${testCase.name}${suffix ? ` + ${suffix}` : ''}`, async () => {
        const input = (await testCase.setup(top)) + suffix;
        // Not path.join: that would clean the input before the function sees it.
        const fails = testCase.expected === undefined || (testCase.missing && suffix !== '');
        for (const form of [`${top}/${input}`, input]) {
          if (fails) expect(() => resolveFrom(top, form)).toThrow();
          else expect(resolveFrom(top, form)).toBe(`${top}/${testCase.expected}${suffix}`);
        }
      });
    }
  }
});

describe('resolvePathToFullyExplicit', () => {
  beforeEach(async () => {
    await mkdir(path.join(top, 'real'));
    await symlink(path.join(top, 'real'), path.join(top, 'link'));
    await writeFile(path.join(top, 'file'), 'x');
  });

  it('resolves symlinks and .. and allows a missing last component', () => {
    expect(resolvePathToFullyExplicit(path.join(top, 'link'))).toBe(path.join(top, 'real'));
    expect(resolvePathToFullyExplicit(path.join(top, 'link', 'new'))).toBe(path.join(top, 'real', 'new'));
    expect(resolvePathToFullyExplicit(`${top}/real/../link`)).toBe(path.join(top, 'real'));
    expect(resolvePathToFullyExplicit('/')).toBe('/');
  });

  it('treats "" as the working directory, and resolves relative paths against it', () => {
    expect(resolveFrom(top, '')).toBe(top);
    expect(resolveFrom(path.join(top, 'link'), '')).toBe(path.join(top, 'real'));
    expect(resolveFrom(path.join(top, 'real'), '../link/new')).toBe(path.join(top, 'real', 'new'));
  });

  it('throws the file-system error when a parent is missing or not a directory', () => {
    expect(() => resolvePathToFullyExplicit(path.join(top, 'missing', 'x'))).toThrow(
      expect.objectContaining({ code: 'ENOENT' }),
    );
    expect(() => resolvePathToFullyExplicit(path.join(top, 'file', 'x'))).toThrow(
      expect.objectContaining({ code: 'ENOTDIR' }),
    );
  });

  it('follows symbolic links on the way as the kernel does, applying `..` after the target', async () => {
    await mkdir(path.join(top, 'a/b/c'), { recursive: true });
    await symlink('b/c', path.join(top, 'a/deep'));
    await symlink('/', path.join(top, 'root'));
    await symlink(`${top}/a/deep/../..`, path.join(top, 'up'));
    expect(resolvePathToFullyExplicit(`${top}/a/deep`)).toBe(`${top}/a/b/c`);
    expect(resolvePathToFullyExplicit(`${top}/root`)).toBe('/');
    expect(resolvePathToFullyExplicit(`${top}/root/${top.slice(1)}/a`)).toBe(`${top}/a`);
    expect(resolvePathToFullyExplicit(`${top}/up`)).toBe(`${top}/a`);
    await writeFile(path.join(top, 'file'), 'x');
    await symlink('file/..', path.join(top, 'through-file'));
    const notDirectory = thrownBy(() => resolvePathToFullyExplicit(`${top}/through-file`));
    expect(errorCode(notDirectory)).toBe('ENOTDIR');
    expect(describeFileSystemError(notDirectory)).toBe('not a directory');
  });

  // The messages the real skopeo prints for these paths (`skopeo inspect dir:<path>`, checked by hand).
  it.each([
    ['missing/x', 'lstat <top>/missing: no such file or directory'],
    ['file/x', 'lstat <top>/file/x: not a directory'],
    ['dangling', 'lstat <top>/thisismissing: no such file or directory'],
    ['dangling/x', 'lstat <top>/thisismissing: no such file or directory'],
    ['missing/', 'lstat <top>/missing: no such file or directory'],
    ['missing/..', 'lstat <top>/missing: no such file or directory'],
    ['real/missing/', 'lstat <top>/real/missing: no such file or directory'],
    ['link/../real/x/y', 'lstat <top>/real/x: no such file or directory'],
    ['loop1', 'EvalSymlinks: too many links'],
    ['loop1/x', 'lstat <top>/loop1/x: too many levels of symbolic links'],
  ])('fails on <top>/%s as skopeo does: %s', async (relative, message) => {
    await symlink('thisismissing', path.join(top, 'dangling'));
    await symlink('loop2', path.join(top, 'loop1'));
    await symlink('loop1', path.join(top, 'loop2'));
    const error = thrownBy(() => resolvePathToFullyExplicit(`${top}/${relative}`));
    expect(describeFileSystemError(error)).toBe(message.replace('<top>', top));
  });
});

describe('describeFileSystemError and errorCode', () => {
  it('word system errors as Go does', async () => {
    const caught = thrownBy(() => resolvePathToFullyExplicit(path.join(top, 'missing', 'x')));
    expect(errorCode(caught)).toBe('ENOENT');
    expect(describeFileSystemError(caught)).toBe(`lstat ${top}/missing: no such file or directory`);
    const opened: unknown = await open(path.join(top, 'nope')).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(errorCode(opened)).toBe('ENOENT');
    expect(describeFileSystemError(opened)).toBe(`open ${top}/nope: no such file or directory`);
  });

  it('use Go wording where libuv words a code differently', () => {
    const exists = thrownBy(() => mkdirSync(top));
    expect(errorCode(exists)).toBe('EEXIST');
    expect(describeFileSystemError(exists)).toBe(`mkdir ${top}: file exists`);
    const longName = path.join(top, 'x'.repeat(300));
    const tooLong = thrownBy(() => openSync(longName, 'r'));
    expect(describeFileSystemError(tooLong)).toBe(`open ${longName}: file name too long`);
  });

  it('give messages and codes of anything else as they are', () => {
    expect(describeFileSystemError(new Error('plain'))).toBe('plain');
    expect(describeFileSystemError('text')).toBe('text');
    expect(errorCode('text')).toBeUndefined();
    expect(errorCode(new Error('plain'))).toBeUndefined();
    expect(errorCode(Object.assign(new Error('x'), { code: 'EEXIST' }))).toBe('EEXIST');
  });
});

describe('makeDirectories', () => {
  it('creates missing parents, outermost first, and nothing when the directory exists', async () => {
    const target = path.join(top, 'a', 'b', 'c');
    expect(await makeDirectories(target)).toEqual([path.join(top, 'a'), path.join(top, 'a', 'b'), target]);
    expect(await makeDirectories(target)).toEqual([]);
  });

  it('fails with ENOTDIR when a non-directory is in the way, worded as Go', async () => {
    await writeFile(path.join(top, 'file'), 'x');
    const error = await makeDirectories(path.join(top, 'file')).catch((caught: unknown) => caught);
    expect(describeFileSystemError(error)).toBe(`mkdir ${path.join(top, 'file')}: not a directory`);
  });

  it('reports the read-only file system of a real read-only mount, not ENOENT', async () => {
    const mount = await mountTestTmpfs(1);
    try {
      await mkdir(path.join(mount.directory, 'existing'));
      mount.makeReadOnly();
      // Node's recursive mkdir says ENOENT here; the system said EROFS.
      for (const target of [
        path.join(mount.directory, 'new'),
        path.join(mount.directory, 'new', 'deeper'),
        path.join(mount.directory, 'existing', 'inner'),
      ]) {
        const error = await makeDirectories(target).catch((caught: unknown) => caught);
        expect(errorCode(error)).toBe('EROFS');
        expect(describeFileSystemError(error)).toMatch(/^mkdir .*: read-only file system$/);
      }
      expect(await makeDirectories(path.join(mount.directory, 'existing'))).toEqual([]);
    } finally {
      await mount.unmount();
    }
  });
});
