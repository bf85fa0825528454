/**
 * Local faults of the docker-daemon: destination, through real `gantry` processes and a real dockerd
 * (Debian's docker.io, vfs storage, its own socket; started here, stopped by PID):
 * - the daemon's disk fills up while it loads the image (its data root on a small tmpfs): exit 1 naming
 *   the full disk, no new image or layer in the daemon, nothing left in the daemon's temporary directory
 *   nor in Gantry's;
 * - SIGINT and SIGTERM in the middle of a copy (caught while the daemon is receiving the image): the
 *   process ends by the signal, the daemon loads nothing (it got a truncated archive) and removes what
 *   it had received, Gantry's temporary directory is empty.
 * Each daemon already holds an image ("small") before the fault, so "unchanged" means something.
 */
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  buildFixtureImage,
  fixturePresets,
  mountTestTmpfs,
  recordOutcome,
  type TestMount,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { startTestDockerDaemon, type TestDockerDaemon } from '@gantry/transport-docker-daemon/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireTool, runGantry } from '../../test-support/run.js';
import { startBuiltGantry, stopWhenWriting } from './built-gantry.js';
import { treeBytes } from './destinations.js';

const testFile = 'apps/cli/src/reliability/faults/daemon.e2e.test.ts';

let root: string;
let smallLayout: string;
let bigLayout: string;

beforeAll(async () => {
  requireTool('docker');
  root = await mkdtemp(join(tmpdir(), 'gdf-'));
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
          entries: [{ type: 'file', path: 'payload', randomSize: 20 * 1024 * 1024, seed: 'daemon-faults' }],
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

/** Arguments of a copy of `layout` into the daemon as `faults/<name>:latest`. */
function copyArguments(daemon: TestDockerDaemon, temporaryDirectory: string, layout: string, name: string) {
  return [
    '--insecure-policy',
    '--tmpdir',
    temporaryDirectory,
    'copy',
    '--dest-daemon-host',
    daemon.host,
    `oci:${layout}:latest`,
    `docker-daemon:faults/${name}:latest`,
  ];
}

async function entries(directory: string): Promise<string[]> {
  return (await readdir(directory).catch(() => [] as string[])).sort();
}

/** What the daemon holds: its images (name, tag, ID), its vfs layer directories, its temporary files. */
async function daemonState(daemon: TestDockerDaemon) {
  const images = (
    await daemon.docker('images', '--all', '--no-trunc', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}')
  )
    .split('\n')
    .filter(Boolean)
    .sort();
  return {
    images,
    layers: await entries(join(daemon.dataRoot, 'vfs', 'dir')),
    temporary: await entries(join(daemon.dataRoot, 'tmp')),
  };
}

/**
 * The daemon's state once its temporary directory is empty again: after a failed load the daemon
 * removes what it received when its own request handling ends, which may come after Gantry's exit.
 */
async function settledDaemonState(daemon: TestDockerDaemon) {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const state = await daemonState(daemon);
    if (state.temporary.length === 0 || Date.now() > deadline) return state;
    await sleep(100);
  }
}

/** A daemon holding the small image, a temporary directory for Gantry, and the daemon's state. */
async function seeded(daemon: TestDockerDaemon, name: string) {
  const temporaryDirectory = join(root, `${name}-tmp`);
  await mkdir(temporaryDirectory);
  const seeding = await runGantry(copyArguments(daemon, temporaryDirectory, smallLayout, 'small'), {
    env: { ...process.env, GANTRY_BLOB_INFO_CACHE: 'off' },
  });
  expect(seeding.code, seeding.stderr).toBe(0);
  const before = await settledDaemonState(daemon);
  expect(before.images).toHaveLength(1);
  expect(before.images[0]).toMatch(/^faults\/small:latest sha256:/);
  return { temporaryDirectory, before };
}

function record(caseName: string, outcome: string): void {
  recordOutcome({ suite: 'faults', case: caseName, transport: 'docker-daemon', outcome, ok: true, testFile });
}

describe("the daemon's disk fills up during a copy to docker-daemon:", () => {
  let mount: TestMount | undefined;
  let daemon: TestDockerDaemon | undefined;

  afterEach(async () => {
    await daemon?.stop();
    await mount?.unmount();
  });

  it('exit 1 naming the full disk; no image or layer added; no temporary files', async () => {
    mount = await mountTestTmpfs(12);
    daemon = await startTestDockerDaemon(120_000, { dataRoot: join(mount.directory, 'data') });
    const { temporaryDirectory, before } = await seeded(daemon, 'disk-full');
    const result = await runGantry(copyArguments(daemon, temporaryDirectory, bigLayout, 'big'), {
      env: { ...process.env, GANTRY_BLOB_INFO_CACHE: 'off' },
    });
    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr).toMatch(/docker daemon .*no space left on device/i);
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(await settledDaemonState(daemon)).toEqual(before);
    expect(await readdir(temporaryDirectory)).toEqual([]);
    record(
      'destination disk full (12 MiB tmpfs)',
      'exit 1 "no space left on device" (the daemon\'s data root on the tmpfs); no image or layer added; no temporary files',
    );
  }, 300_000);
});

describe('a signal in the middle of a copy to docker-daemon:', () => {
  let daemon: TestDockerDaemon | undefined;

  beforeAll(async () => {
    daemon = await startTestDockerDaemon(120_000);
  }, 180_000);

  afterAll(async () => {
    await daemon?.stop();
  });

  it.each(['SIGINT', 'SIGTERM'] as const)(
    '%s: ends by the signal; the daemon loads nothing and keeps nothing; no temporary files',
    async (signal) => {
      const running = daemon as TestDockerDaemon;
      const { temporaryDirectory, before } = await seeded(running, signal);
      const baseline = await treeBytes(running.dataRoot);
      const copy = startBuiltGantry(copyArguments(running, temporaryDirectory, bigLayout, 'big'), root);
      // Caught once the daemon has received 2 MiB of the image.
      await stopWhenWriting(copy, running.dataRoot, baseline);
      copy.child.kill(signal);
      copy.child.kill('SIGCONT');
      const ended = await copy.exited;
      expect({ code: ended.code, signal: ended.signal }, ended.stderr).toEqual({ code: null, signal });
      expect(ended.stderr).toContain(`interrupted by ${signal}`);
      expect(await settledDaemonState(running)).toEqual(before);
      expect(await readdir(temporaryDirectory)).toEqual([]);
      record(
        `${signal} during a copy`,
        `ended by ${signal} while the daemon received the image; it loaded nothing and removed what it got; no temporary files`,
      );
    },
    300_000,
  );
});
