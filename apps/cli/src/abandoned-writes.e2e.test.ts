/**
 * Temporary files of a gantry process killed with `kill -9` mid-copy are removed by the next write to
 * the same destination, for every writable transport, and a live concurrent writer's are not.
 *
 * Real processes: `gantry copy` runs as its own process (from the sources), is frozen with SIGSTOP
 * once its temporary files hold at least 1 MiB of the layer (so it is certainly mid-copy), then killed
 * with SIGKILL, or — for the live-writer case — left stopped while another copy writes to the same
 * destination, then continued and checked to finish its own copy. Archive paths are locked while a
 * copy writes them: the killed writer's lock is broken by the next copy; a copy to the path of a stopped
 * live writer waits for it (touching none of its files) and goes on once it committed.
 */
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildFixtureImage, recordOutcome, writeFixtureToOciLayout } from '@gantry/core/testing';
import { parseOwnedTemporaryName } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GantryProcess, startGantryProcess } from './test-support/gantry-process.js';
import { runGantry, runSkopeo } from './test-support/run.js';

let root: string;
let source: string;
let caseNumber = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-abandoned-'));
  // One uncompressed 24 MiB layer of random bytes: long enough to catch a copy in the middle.
  const image = await buildFixtureImage(
    {
      format: 'oci',
      layers: [
        {
          compression: 'none',
          entries: [{ type: 'file', path: 'payload', randomSize: 24 * 1024 * 1024, seed: 'abandoned' }],
        },
      ],
    },
    { directory: join(root, 'fixture') },
  );
  source = join(root, 'source');
  await writeFixtureToOciLayout(image, source, 'latest');
}, 120_000);

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

/** Owned temporary entries (files or directories) under `directory`, with the bytes they hold. */
async function ownedTemporaryEntries(directory: string, depth = 3): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  let names: string[];
  try {
    names = await readdir(directory);
  } catch {
    return found;
  }
  for (const name of names) {
    const entryPath = join(directory, name);
    const information = await stat(entryPath).catch(() => undefined);
    if (!information) continue;
    if (parseOwnedTemporaryName(name)) {
      let size = information.size;
      if (information.isDirectory()) {
        size = 0;
        for (const inner of await readdir(entryPath).catch(() => [])) {
          size += (await stat(join(entryPath, inner)).catch(() => undefined))?.size ?? 0;
        }
      }
      found.set(entryPath, size);
    } else if (information.isDirectory() && depth > 0) {
      for (const [innerPath, size] of await ownedTemporaryEntries(entryPath, depth - 1)) {
        found.set(innerPath, size);
      }
    }
  }
  return found;
}

/**
 * Waits until the process's temporary files under `directory` hold at least 1 MiB, then stops the
 * process (SIGSTOP) and resolves those files: they stay as they are until it is continued or killed.
 */
async function stopMidCopy(process: GantryProcess, directory: string): Promise<string[]> {
  const deadline = Date.now() + 120_000;
  let exited = false;
  void process.exited.then(() => {
    exited = true;
  });
  while (Date.now() < deadline) {
    if (exited)
      throw new Error(`gantry exited before it was caught mid-copy: ${(await process.exited).stderr}`);
    const entries = await ownedTemporaryEntries(directory);
    const bytes = [...entries.values()].reduce((sum, size) => sum + size, 0);
    if (bytes >= 1024 * 1024) {
      process.child.kill('SIGSTOP');
      const held = await ownedTemporaryEntries(directory);
      if (held.size > 0) return [...held.keys()].sort();
      process.child.kill('SIGCONT'); // finished that file meanwhile: catch the next one
    }
    await sleep(2);
  }
  throw new Error('gantry was not caught mid-copy within 120 s');
}

/** A fresh directory and a destination of `transport` in it. */
async function newCase(
  transport: string,
): Promise<{ directory: string; destination: string; flags: string[] }> {
  const directory = join(root, `case-${++caseNumber}`);
  await mkdir(directory);
  const flags = transport === 'oci-shared' ? ['--dest-shared-blob-dir', join(directory, 'shared')] : [];
  const target = {
    oci: `oci:${join(directory, 'layout')}:first`,
    'oci-shared': `oci:${join(directory, 'layout')}:first`,
    dir: `dir:${join(directory, 'image')}`,
    'oci-archive': `oci-archive:${join(directory, 'image.tar')}`,
    'docker-archive': `docker-archive:${join(directory, 'image.tar')}`,
  }[transport];
  if (!target) throw new Error(`no destination for ${transport}`);
  return { directory, destination: target, flags };
}

const transports = ['oci', 'oci-shared', 'dir', 'oci-archive', 'docker-archive'];

describe('temporary files of a copy killed with kill -9', () => {
  it.each(transports)(
    '%s: are removed by the next copy to the same destination',
    async (transport) => {
      const { directory, destination, flags } = await newCase(transport);
      const killed = startGantryProcess(
        ['--insecure-policy', 'copy', ...flags, `oci:${source}:latest`, destination],
        directory,
      );
      const leftovers = await stopMidCopy(killed, directory);
      killed.child.kill('SIGKILL');
      expect((await killed.exited).signal).toBe('SIGKILL');
      if (transport === 'oci-archive' || transport === 'docker-archive') {
        expect(await readdir(directory)).toContain('.image.tar.gantry-lock');
      }
      // Left behind by the dead process (as before the fix, when nothing ever removed them).
      expect([...(await ownedTemporaryEntries(directory)).keys()].sort()).toEqual(leftovers);

      const next = await runGantry([
        '--insecure-policy',
        'copy',
        ...flags,
        `oci:${source}:latest`,
        destination,
      ]);
      expect(next.code, next.stderr).toBe(0);
      expect([...(await ownedTemporaryEntries(directory)).keys()]).toEqual([]);
      // An archive's lock, left by the dead writer, was broken by the next copy and then released.
      expect((await readdir(directory)).filter((name) => name.endsWith('.gantry-lock'))).toEqual([]);
      const inspected = runSkopeo([
        'inspect',
        ...(flags.length > 0 ? ['--shared-blob-dir', flags[1]!] : []),
        destination,
      ]);
      expect(inspected.code, inspected.stderr).toBe(0);
      recordOutcome({
        suite: 'faults',
        case: 'kill -9 during a copy, then copy again',
        transport: transport === 'oci-shared' ? 'oci' : transport,
        outcome:
          transport === 'oci-archive' || transport === 'docker-archive'
            ? "the next copy removed the dead writer's temporary archive, broke its lock and succeeded; skopeo reads the result"
            : "the next copy removed the dead writer's temporary files and succeeded; skopeo reads the result",
        ok: true,
        testFile: 'apps/cli/src/abandoned-writes.e2e.test.ts',
      });
    },
    240_000,
  );
});

describe('temporary files of a live concurrent writer', () => {
  it.each(transports.filter((transport) => transport !== 'oci-shared'))(
    '%s: are left alone by another copy to the same destination, which finishes too',
    async (transport) => {
      const { directory, destination, flags } = await newCase(transport);
      const live = startGantryProcess(
        ['--insecure-policy', 'copy', ...flags, `oci:${source}:latest`, destination],
        directory,
      );
      const archive = transport === 'oci-archive' || transport === 'docker-archive';
      let waiting: Promise<Awaited<ReturnType<typeof runGantry>>> | undefined;
      try {
        const held = await stopMidCopy(live, directory);
        const other = destination.replace(/:first$/, ':second');
        const concurrent = runGantry(['--insecure-policy', 'copy', ...flags, `oci:${source}:latest`, other]);
        if (archive) {
          // Writers to one archive path take turns (the path's lock): the other copy waits for the
          // stopped one, and cannot touch its files meanwhile.
          waiting = concurrent;
          let settled = false;
          void concurrent.finally(() => {
            settled = true;
          });
          for (let check = 0; check < 20; check++) {
            await sleep(50);
            expect(settled).toBe(false);
            const remaining = await ownedTemporaryEntries(directory);
            for (const file of held) expect(remaining.has(file), file).toBe(true);
          }
        } else {
          const finished = await concurrent;
          expect(finished.code, finished.stderr).toBe(0);
          const remaining = await ownedTemporaryEntries(directory);
          for (const file of held) expect(remaining.has(file), file).toBe(true);
        }
      } finally {
        live.child.kill('SIGCONT');
      }
      const result = await live.exited;
      expect(result.code, result.stderr).toBe(0);
      if (waiting) {
        // Its turn came once the first copy committed: oci-archive replaces the archive (an unnamed
        // write), docker-archive refuses to modify the archive the first copy made.
        const finished = await waiting;
        if (transport === 'docker-archive') {
          expect(finished.code).toBe(1);
          expect(finished.stderr).toContain('exists and is not empty');
        } else {
          expect(finished.code, finished.stderr).toBe(0);
        }
        expect((await readdir(directory)).filter((name) => name.endsWith('.gantry-lock'))).toEqual([]);
      }
      expect([...(await ownedTemporaryEntries(directory)).keys()]).toEqual([]);
      const inspected = runSkopeo([
        'inspect',
        ...(flags.length > 0 ? ['--shared-blob-dir', flags[1]!] : []),
        destination,
      ]);
      expect(inspected.code, inspected.stderr).toBe(0);
    },
    240_000,
  );
});
