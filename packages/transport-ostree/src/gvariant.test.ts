import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GVariantFormatError, parseCommit, serializeCommit } from './gvariant.js';

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
