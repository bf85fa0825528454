import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  GVariantFormatError,
  parseCommit,
  parseDirTreeDirectories,
  serializeCommit,
  serializeDirTree,
  serializeDirTreeGeneric,
  type TreeChecksums,
} from './gvariant.js';

const scratch = mkdtempSync(join(tmpdir(), 'gantry-ostree-gvariant-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function ostreeCommit(metadata: Record<string, string>): { checksum: string; bytes: Buffer; repo: string } {
  const base = mkdtempSync(join(scratch, 'case-'));
  const repo = join(base, 'repo');
  mkdirSync(join(base, 'tree', 'sub'), { recursive: true });
  writeFileSync(join(base, 'tree', 'sub', 'file'), 'content\n');
  execFileSync('ostree', ['init', `--repo=${repo}`, '--mode=bare-user']);
  const checksum = execFileSync('ostree', [
    'commit',
    `--repo=${repo}`,
    '--orphan',
    `--tree=dir=${join(base, 'tree')}`,
    '--subject=a subject',
    ...Object.entries(metadata).map(([key, value]) => `--add-metadata-string=${key}=${value}`),
  ])
    .toString()
    .trim();
  const bytes = readFileSync(join(repo, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.commit`));
  return { checksum, bytes, repo };
}

describe('commit objects', () => {
  it.each([
    ['small metadata (1-byte offsets)', { 'b.key': 'hello', 'a.key': 'x' }],
    ['medium metadata (2-byte offsets)', { 'docker.size': '12', 'tarsplit.output': 'y'.repeat(3000) }],
    ['large metadata (4-byte offsets)', { big: 'z'.repeat(70_000), small: '1' }],
  ])('parses what ostree wrote and rewrites its string members unchanged: %s', (_name, metadata) => {
    const { bytes } = ostreeCommit(metadata);
    const commit = parseCommit(bytes);
    expect(Object.fromEntries(commit.metadata)).toEqual(metadata);
    expect(commit.subject).toBe('a subject');
    expect(commit.parent).toBe('');
    expect(commit.rootTree).toMatch(/^[0-9a-f]{64}$/);
    // ostree adds `ostree.ref-binding` (type `as`); the string members survive a rewrite unchanged.
    expect(commit.otherMetadataKeys).toEqual(['ostree.ref-binding']);
    const reparsed = parseCommit(serializeCommit(commit));
    expect({ ...reparsed, otherMetadataKeys: [] }).toEqual({ ...commit, otherMetadataKeys: [] });
  });

  it('writes commits ostree reads back (show, fsck)', () => {
    const { bytes, repo } = ostreeCommit({ other: 'x'.repeat(300) });
    const commit = parseCommit(bytes);
    const rewritten = serializeCommit({
      ...commit,
      metadata: new Map([['docker.manifest', '{"a":"\'b\'"}']]),
    });
    const checksum = createHash('sha256').update(rewritten).digest('hex');
    mkdirSync(join(repo, 'objects', checksum.slice(0, 2)), { recursive: true });
    writeFileSync(join(repo, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.commit`), rewritten);
    execFileSync('ostree', ['refs', `--repo=${repo}`, `--create=test/branch`, checksum]);
    const shown = execFileSync('ostree', [
      'show',
      `--repo=${repo}`,
      '--print-metadata-key=docker.manifest',
      'test/branch',
    ]).toString();
    expect(shown.trim()).toBe(`"{\\"a\\":\\"'b'\\"}"`);
    execFileSync('ostree', ['fsck', `--repo=${repo}`]);
  });

  it('refuses bytes that are not a commit', () => {
    expect(() => parseCommit(Buffer.from('not a commit at all, really not'))).toThrow(GVariantFormatError);
    expect(() => parseCommit(Buffer.alloc(3))).toThrow(GVariantFormatError);
  });
});

describe('dirtree objects', () => {
  it.each([
    ['a few directories (1-byte offsets)', 3, 'd'],
    ['many directories (2-byte offsets)', 40, 'directory-with-a-longer-name-'],
    ['very many directories (4-byte offsets)', 1200, 'directory-with-a-much-longer-name-than-usual-'],
  ])('gives the subdirectories ostree recorded, by name: %s', (_name, count, prefix) => {
    const base = mkdtempSync(join(scratch, 'dirtree-'));
    const repo = join(base, 'repo');
    const tree = join(base, 'tree');
    for (let index = 0; index < count; index++) {
      mkdirSync(join(tree, `${prefix}${index}`, `inner-${index % 3}`), { recursive: true });
      writeFileSync(join(tree, `${prefix}${index}`, 'file'), `content ${index}\n`);
    }
    writeFileSync(join(tree, 'a-file'), 'a file\n');
    execFileSync('ostree', ['init', `--repo=${repo}`, '--mode=bare-user']);
    const checksum = execFileSync('ostree', ['commit', `--repo=${repo}`, '--orphan', `--tree=dir=${tree}`])
      .toString()
      .trim();
    const object = (name: string, type: string) =>
      readFileSync(join(repo, 'objects', name.slice(0, 2), `${name.slice(2)}.${type}`));
    const { rootTree } = parseCommit(object(checksum, 'commit'));
    const directories = parseDirTreeDirectories(object(rootTree, 'dirtree'));
    // `ostree ls -C`: "d00755 uid gid 0 <tree checksum> <meta checksum> /name"
    const expected = new Map<string, { tree: string; meta: string }>();
    for (const line of execFileSync('ostree', ['ls', `--repo=${repo}`, '-C', checksum, '/'])
      .toString()
      .split('\n')) {
      const fields = line.trim().split(/\s+/);
      if (!line.startsWith('d') || fields[6] === '/') continue;
      expected.set(fields[6]!.slice(1), { tree: fields[4]!, meta: fields[5]! });
    }
    expect(directories.size).toBe(count);
    expect(directories).toEqual(expected);
  });

  it('refuses bytes that are not a dirtree', () => {
    expect(() => parseDirTreeDirectories(Buffer.from('not a dirtree at all, just text'))).toThrow(
      GVariantFormatError,
    );
  });
});

describe('serializeDirTree', () => {
  it.each([
    ['empty', 0, 0],
    ['a few entries (1-byte offsets)', 3, 2],
    ['hundreds (2-byte offsets)', 300, 40],
    ['thousands (4-byte offsets)', 2100, 3],
  ])('writes what generic containers give: %s', (_name, fileCount, directoryCount) => {
    const checksum = () => randomBytes(32).toString('hex');
    const files = Array.from({ length: fileCount }, (_, index): [string, string] => [
      `file-${index}-${'x'.repeat(index % 50)}\u00e9`,
      checksum(),
    ]);
    const directories = Array.from({ length: directoryCount }, (_, index): [string, TreeChecksums] => [
      `directory-${index}`,
      { tree: checksum(), meta: checksum() },
    ]);
    expect(serializeDirTree(files, directories).equals(serializeDirTreeGeneric(files, directories))).toBe(
      true,
    );
    // Parsed back by the reader of ostree's own dirtrees.
    expect([...parseDirTreeDirectories(serializeDirTree(files, directories)).keys()].sort()).toEqual(
      directories.map(([name]) => name).sort(),
    );
  });
});
