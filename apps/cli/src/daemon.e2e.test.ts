/**
 * docker-daemon: through the `gantry` command against a real dockerd (started here, stopped by PID):
 * an image copied in shows the expected ID and layers in `docker image inspect`, and copying it back
 * out to oci: keeps the config and DiffIDs; `inspect docker-daemon:` matches skopeo's.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { startTestDockerDaemon, type TestDockerDaemon } from '@gantry/transport-docker-daemon/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGantry, runSkopeo } from './test-support/run.js';

let root: string;
let daemon: TestDockerDaemon;
let image: FixtureImage;
let layout: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-daemon-'));
  daemon = await startTestDockerDaemon();
  image = await buildFixtureImage(fixturePresets.everyEntryType, { directory: join(root, 'blobs') });
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
});

afterAll(async () => {
  await daemon?.stop();
  await rm(root, { recursive: true, force: true });
});

describe('docker-daemon: through the CLI', () => {
  it('loads an image the daemon sees with the right ID and layers, and reads it back', async () => {
    const loaded = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      '--dest-daemon-host',
      daemon.host,
      `oci:${layout}:latest`,
      'docker-daemon:example.com/gantry/daemon-test:v1',
    ]);
    expect(loaded.code, loaded.stderr).toBe(0);
    const inspected = JSON.parse(
      await daemon.docker('image', 'inspect', 'example.com/gantry/daemon-test:v1'),
    )[0];
    const fixture = image.images[0]!;
    expect(inspected.Id).toBe(fixture.configDigest);
    expect(inspected.RootFS.Layers).toEqual(fixture.diffIds);
    expect(inspected.RepoTags).toEqual(['example.com/gantry/daemon-test:v1']);

    const ours = await runGantry([
      'inspect',
      '--daemon-host',
      daemon.host,
      'docker-daemon:example.com/gantry/daemon-test:v1',
    ]);
    expect(ours.code, ours.stderr).toBe(0);
    const theirs = runSkopeo([
      'inspect',
      '--daemon-host',
      daemon.host,
      'docker-daemon:example.com/gantry/daemon-test:v1',
    ]);
    expect(theirs.code, theirs.stderr).toBe(0);
    expect(JSON.parse(ours.stdout.toString()).Digest).toBe(JSON.parse(theirs.stdout.toString()).Digest);
    expect(JSON.parse(ours.stdout.toString()).Layers).toEqual(JSON.parse(theirs.stdout.toString()).Layers);

    const back = join(root, 'back');
    const saved = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      '--src-daemon-host',
      daemon.host,
      'docker-daemon:example.com/gantry/daemon-test:v1',
      `oci:${back}:t`,
    ]);
    expect(saved.code, saved.stderr).toBe(0);
    const config = runSkopeo(['inspect', '--config', '--raw', `oci:${back}:t`]);
    expect(config.code, config.stderr).toBe(0);
    expect(JSON.parse(config.stdout.toString()).rootfs.diff_ids).toEqual(fixture.diffIds);
  });

  it('docker load takes an archive Gantry wrote; Gantry reads what docker save wrote, like skopeo', async () => {
    const archive = join(root, 'for-docker-load.tar');
    const written = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      `oci:${layout}:latest`,
      `docker-archive:${archive}:example.com/gantry/loaded:v2`,
    ]);
    expect(written.code, written.stderr).toBe(0);
    await daemon.docker('load', '-i', archive);
    const inspected = JSON.parse(await daemon.docker('image', 'inspect', 'example.com/gantry/loaded:v2'))[0];
    const fixture = image.images[0]!;
    expect(inspected.Id).toBe(fixture.configDigest);
    expect(inspected.RootFS.Layers).toEqual(fixture.diffIds);

    const saved = join(root, 'docker-saved.tar');
    await daemon.docker('save', '-o', saved, 'example.com/gantry/loaded:v2');
    const ours = join(root, 'from-docker-save-gantry');
    const theirs = join(root, 'from-docker-save-skopeo');
    const copied = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      `docker-archive:${saved}`,
      `oci:${ours}:t`,
    ]);
    expect(copied.code, copied.stderr).toBe(0);
    const skopeoCopy = runSkopeo(['--insecure-policy', 'copy', `docker-archive:${saved}`, `oci:${theirs}:t`]);
    expect(skopeoCopy.code, skopeoCopy.stderr).toBe(0);
    const configOf = (directory: string) => {
      const result = runSkopeo(['inspect', '--config', '--raw', `oci:${directory}:t`]);
      expect(result.code, result.stderr).toBe(0);
      return result.stdout;
    };
    // Same config bytes (so the same config digest) and DiffIDs as skopeo's copy of the same archive.
    expect(configOf(ours).equals(configOf(theirs))).toBe(true);
    expect(JSON.parse(configOf(ours).toString()).rootfs.diff_ids).toEqual(fixture.diffIds);
  });

  it('names the socket when no daemon answers', async () => {
    const socket = `unix://${join(root, 'nobody-here.sock')}`;
    const result = await runGantry(['inspect', '--daemon-host', socket, 'docker-daemon:busybox:latest']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('nobody-here.sock');
  });
});
