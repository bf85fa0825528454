/**
 * Test helpers: temporary stores (graph root + run root under a temp directory, never the machine's
 * default store), fixture images in OCI layouts, and podman / skopeo run against such a store.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  buildFixtureImage,
  type FixtureImage,
  type FixtureImageSpec,
  runSkopeo,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';

const execFileAsync = promisify(execFile);

export interface TestStore {
  directory: string;
  graphRoot: string;
  runRoot: string;
  driver: string;
  /** `[driver@graphroot+runroot]` */
  specification: string;
  podman(args: readonly string[]): Promise<string>;
  dispose(): Promise<void>;
}

export async function createTestStore(driver = 'vfs'): Promise<TestStore> {
  const directory = await mkdtemp(join(tmpdir(), 'gantry-cstorage-'));
  const graphRoot = join(directory, 'root');
  const runRoot = join(directory, 'run');
  return {
    directory,
    graphRoot,
    runRoot,
    driver,
    specification: `[${driver}@${graphRoot}+${runRoot}]`,
    async podman(args) {
      try {
        const { stdout } = await execFileAsync(
          'podman',
          ['--root', graphRoot, '--runroot', runRoot, '--storage-driver', driver, ...args],
          {
            maxBuffer: 64 * 1024 * 1024,
            env: { ...process.env, CONTAINERS_STORAGE_CONF: join(directory, 'none.conf') },
          },
        );
        return stdout;
      } catch (error) {
        const failure = error as Error & { stderr?: string };
        throw new Error(`podman ${args.join(' ')} failed: ${failure.stderr || failure.message}`);
      }
    },
    async dispose() {
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/** Builds a fixture image and writes it to `<directory>/<name>` as an OCI layout tagged `t`. */
export async function fixtureLayout(
  directory: string,
  name: string,
  spec: FixtureImageSpec,
): Promise<{ image: FixtureImage; layout: string; reference: string }> {
  const image = await buildFixtureImage(spec, { directory: join(directory, `${name}-blobs`) });
  const layout = join(directory, name);
  await writeFixtureToOciLayout(image, layout, 't');
  return { image, layout, reference: `oci:${layout}:t` };
}

/** skopeo copy with an accept-anything policy. */
export async function skopeoCopy(
  source: string,
  destination: string,
  extra: readonly string[] = [],
): Promise<void> {
  await runSkopeo(['--insecure-policy', 'copy', '-q', ...extra, source, destination]);
}
