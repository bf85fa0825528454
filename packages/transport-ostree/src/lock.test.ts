/**
 * The repository lock against libostree's own (Debian's `ostree`, with `lock-timeout-secs=1` so that a
 * refused lock is reported at once): while Gantry holds it shared, `ostree prune` cannot take it
 * exclusive; while Gantry holds it exclusive, `ostree commit` cannot take it shared; once released,
 * both work. A wait for the lock stops when its signal aborts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockRepository } from './lock.js';

let root: string;
let repo: string;
let tree: string;

function ostree(...args: string[]): { code: number; stderr: string } {
  const result = spawnSync('ostree', args, { encoding: 'utf8' });
  return { code: result.status ?? -1, stderr: result.stderr };
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'gantry-ostree-lock-'));
  repo = join(root, 'repo');
  execFileSync('ostree', ['init', `--repo=${repo}`, '--mode=bare-user']);
  appendFileSync(join(repo, 'config'), 'lock-timeout-secs=1\n');
  tree = join(root, 'tree');
  mkdirSync(tree);
  writeFileSync(join(tree, 'file'), 'content\n');
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('the repository lock', () => {
  it('held shared, keeps `ostree prune` out and lets `ostree commit` in', async () => {
    const lock = await lockRepository(repo, false);
    try {
      const prune = ostree('prune', `--repo=${repo}`, '--refs-only');
      expect(prune.code).not.toBe(0);
      expect(prune.stderr).toMatch(/Locking repo exclusive failed/);
      const commit = ostree('commit', `--repo=${repo}`, '--orphan', '--subject=', `--tree=dir=${tree}`);
      expect(commit.code, commit.stderr).toBe(0);
    } finally {
      lock.release();
    }
    const prune = ostree('prune', `--repo=${repo}`, '--refs-only');
    expect(prune.code, prune.stderr).toBe(0);
  });

  it('held exclusive, keeps `ostree commit` out; two shared holders in one process coexist', async () => {
    const exclusive = await lockRepository(repo, true);
    try {
      const commit = ostree('commit', `--repo=${repo}`, '--orphan', '--subject=', `--tree=dir=${tree}`);
      expect(commit.code).not.toBe(0);
      expect(commit.stderr).toMatch(/Locking repo shared failed/);
    } finally {
      exclusive.release();
    }
    const first = await lockRepository(repo, false);
    const second = await lockRepository(repo, false);
    first.release();
    second.release();
    const commit = ostree('commit', `--repo=${repo}`, '--orphan', '--subject=', `--tree=dir=${tree}`);
    expect(commit.code, commit.stderr).toBe(0);
  });

  it('stops waiting when the signal aborts', async () => {
    const shared = await lockRepository(repo, false);
    try {
      const controller = new AbortController();
      const waiting = lockRepository(repo, true, { signal: controller.signal });
      controller.abort();
      await expect(waiting).rejects.toMatchObject({ code: 'ERR_GANTRY_ABORTED' });
    } finally {
      shared.release();
    }
    // Nothing is left holding it: an exclusive lock is free now.
    const exclusive = await lockRepository(repo, true);
    exclusive.release();
  });
});
