/**
 * Local faults for every writable transport (oci, dir, oci-archive, docker-archive, containers-storage,
 * ostree), through real `gantry` processes and real file systems:
 * - the destination's disk fills up (a small tmpfs mounted for the test): exit 1 naming the problem,
 *   the destination exactly as it was (every file, byte for byte), no temporary files;
 * - SIGINT and SIGTERM in the middle of a copy: the process ends by the signal, with the same result;
 * - `kill -9` in the middle of a copy to containers-storage or ostree (the file transports are in
 *   apps/cli/src/abandoned-writes.e2e.test.ts): the next copy to the same place finds no half image,
 *   removes what was left and succeeds.
 * Each destination already holds an image ("small") before the fault, so "unchanged" means something.
 * The real tools judge the stores: skopeo, podman, ostree fsck.
 */
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  fixturePresets,
  mountTestTmpfs,
  recordOutcome,
  type TestMount,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireTool, runGantry } from '../../test-support/run.js';
import { startBuiltGantry, stopWhenWriting } from './built-gantry.js';
import {
  type FaultDestination,
  makeFaultDestination,
  ownedTemporaryPaths,
  snapshotTree,
  storeView,
  treeBytes,
  type WritableTransport,
  writableTransports,
} from './destinations.js';

const testFile = 'apps/cli/src/reliability/faults/local.e2e.test.ts';

let root: string;
let smallLayout: string;
let bigLayout: string;

beforeAll(async () => {
  for (const tool of ['skopeo', 'podman', 'ostree']) requireTool(tool);
  // Short paths: podman refuses a run root longer than 50 characters.
  root = await mkdtemp(join(tmpdir(), 'glf-'));
  const small = await buildFixtureImage(fixturePresets.ociMinimal!, { directory: join(root, 'small-blobs') });
  smallLayout = join(root, 'small');
  await writeFixtureToOciLayout(small, smallLayout, 'latest');
  // One 20 MiB layer of random bytes: more than the small disk holds, and long enough to interrupt.
  const big = await buildFixtureImage(
    {
      format: 'oci',
      layers: [
        {
          compression: 'none',
          entries: [{ type: 'file', path: 'payload', randomSize: 20 * 1024 * 1024, seed: 'local-faults' }],
        },
      ],
    },
    { directory: join(root, 'big-blobs') },
  );
  bigLayout = join(root, 'big');
  await writeFixtureToOciLayout(big, bigLayout, 'latest');
}, 180_000);

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

function copyArguments(destination: FaultDestination, source: string, name: string): string[] {
  return [
    '--insecure-policy',
    '--tmpdir',
    destination.temporaryDirectory,
    'copy',
    `oci:${source}:latest`,
    destination.reference(name),
  ];
}

/** A destination holding the small image, and what it looks like (files, and the owning tool's view). */
async function preparedDestination(
  transport: WritableTransport,
  directory: string,
): Promise<{ destination: FaultDestination; files: string[]; view: string[] }> {
  const destination = await makeFaultDestination(transport, directory);
  const seeded = await runGantry(copyArguments(destination, smallLayout, 'small'), {
    env: { ...destination.environment, GANTRY_BLOB_INFO_CACHE: 'off' },
  });
  expect(seeded.code, seeded.stderr).toBe(0);
  // The tool's view first: podman creates its own files in the store the first time it looks.
  const view = storeView(destination, ['small', 'big']);
  return { destination, files: await snapshotTree(directory), view };
}

function record(caseName: string, transport: string, outcome: string): void {
  recordOutcome({ suite: 'faults', case: caseName, transport, outcome, ok: true, testFile });
}

describe('the destination disk fills up', () => {
  let mount: TestMount;

  beforeAll(async () => {
    mount = await mountTestTmpfs(12);
  });

  afterAll(async () => {
    await mount?.unmount();
  });

  it.each(writableTransports)(
    '%s: exit 1 naming the full disk; destination unchanged; no temporary files',
    async (transport) => {
      const directory = join(mount.directory, transport);
      // A retried run (CI) starts from an empty directory again.
      await rm(directory, { recursive: true, force: true });
      await mkdir(directory);
      const before = await preparedDestination(transport, directory);
      const result = await runGantry(copyArguments(before.destination, bigLayout, 'big'), {
        env: { ...before.destination.environment, GANTRY_BLOB_INFO_CACHE: 'off' },
      });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/no space left on device/i);
      expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(await ownedTemporaryPaths(directory)).toEqual([]);
      expect(await readdir(before.destination.temporaryDirectory)).toEqual([]);
      expect(await snapshotTree(directory)).toEqual(before.files);
      expect(storeView(before.destination, ['small', 'big'])).toEqual(before.view);
      // Room again (the failed copy's space was given back): the small image is still usable.
      await rm(directory, { recursive: true, force: true });
      record(
        'destination disk full (12 MiB tmpfs)',
        transport,
        'exit 1 "no space left on device"; destination byte-identical; no temporary files',
      );
    },
    120_000,
  );
});

describe('a signal in the middle of a copy', () => {
  const cases = writableTransports.flatMap((transport) =>
    (['SIGINT', 'SIGTERM'] as const).map((signal) => [transport, signal] as const),
  );
  it.each(cases)(
    '%s, %s: ends by the signal; destination unchanged; no temporary files',
    async (transport, signal) => {
      const directory = join(root, `${transport.replace('containers-storage', 'cs')}-${signal}`);
      // A retried run (CI) starts from an empty directory again.
      await rm(directory, { recursive: true, force: true });
      await mkdir(directory);
      const before = await preparedDestination(transport, directory);
      const baseline = await treeBytes(directory);
      const copy = startBuiltGantry(
        copyArguments(before.destination, bigLayout, 'big'),
        directory,
        before.destination.environment,
      );
      await stopWhenWriting(copy, directory, baseline);
      copy.child.kill(signal);
      copy.child.kill('SIGCONT');
      const ended = await copy.exited;
      expect({ code: ended.code, signal: ended.signal }, ended.stderr).toEqual({ code: null, signal });
      expect(ended.stderr).toContain(`interrupted by ${signal}`);
      expect(await ownedTemporaryPaths(directory)).toEqual([]);
      expect(await readdir(before.destination.temporaryDirectory)).toEqual([]);
      expect(await snapshotTree(directory)).toEqual(before.files);
      expect(storeView(before.destination, ['small', 'big'])).toEqual(before.view);
      record(
        `${signal} during a copy`,
        transport,
        `ended by ${signal}; destination byte-identical; no temporary files`,
      );
    },
    180_000,
  );
});

describe('kill -9 in the middle of a copy', () => {
  it.each(['containers-storage', 'ostree'] as const)(
    '%s: the next copy finds no half image, removes what was left, and succeeds',
    async (transport) => {
      const directory = join(root, `${transport.replace('containers-storage', 'cs')}-KILL`);
      // A retried run (CI) starts from an empty directory again.
      await rm(directory, { recursive: true, force: true });
      await mkdir(directory);
      const before = await preparedDestination(transport, directory);
      const baseline = await treeBytes(directory);
      const copy = startBuiltGantry(
        copyArguments(before.destination, bigLayout, 'big'),
        directory,
        before.destination.environment,
      );
      await stopWhenWriting(copy, directory, baseline);
      copy.child.kill('SIGKILL');
      expect((await copy.exited).signal).toBe('SIGKILL');
      // Something was left behind, and no tool sees a half image.
      expect(await snapshotTree(directory)).not.toEqual(before.files);
      expect(storeView(before.destination, ['small', 'big'])).toEqual(before.view);

      const next = await runGantry(copyArguments(before.destination, bigLayout, 'big'), {
        env: { ...before.destination.environment, GANTRY_BLOB_INFO_CACHE: 'off' },
      });
      expect(next.code, next.stderr).toBe(0);
      expect(await ownedTemporaryPaths(directory)).toEqual([]);
      expect(await readdir(before.destination.temporaryDirectory)).toEqual([]);
      const after = storeView(before.destination, ['small', 'big']);
      if (transport === 'containers-storage') {
        expect(after).toEqual(['docker.io/faults/big:latest', 'docker.io/faults/small:latest']);
        // No layer record left incomplete, and no layer directory without a record.
        const layers = JSON.parse(
          await readFile(join(directory, 'graph', 'vfs-layers', 'layers.json'), 'utf8'),
        ) as {
          id: string;
          flags?: Record<string, unknown>;
        }[];
        expect(layers.filter((layer) => layer.flags?.incomplete)).toEqual([]);
        expect((await readdir(join(directory, 'graph', 'vfs', 'dir'))).sort()).toEqual(
          layers.map((layer) => layer.id).sort(),
        );
      } else {
        expect(after).toHaveLength(before.view.length + 1);
        expect(
          (await readdir(join(directory, 'repo', 'tmp'))).filter((name) => name.startsWith('gantry')),
        ).toEqual([]);
      }
      record(
        'kill -9 during a copy, then copy again',
        transport,
        'no half image visible; next copy removed the leftovers and succeeded',
      );
    },
    180_000,
  );
});
