/**
 * Test helpers: temporary stores (graph root + run root under a temp directory, never the machine's
 * default store), fixture images in OCI layouts, and podman / skopeo run against such a store.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
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
  // Lowercase (hex) so that `podman pull oci:<path>` can name the image after the path.
  const directory = join(tmpdir(), `gantry-cstorage-${randomBytes(8).toString('hex')}`);
  await mkdir(directory, { mode: 0o700 });
  let graphRoot = join(directory, 'root');
  if (driver === 'btrfs') {
    // The btrfs driver needs its graph root on btrfs: a loop-mounted file system of the test's own. Where
    // the machine has no loop devices this fails, naming the reason (the test never passes silently).
    const image = join(directory, 'btrfs.img');
    const mountPoint = join(directory, 'btrfs');
    await mkdir(mountPoint);
    try {
      await execFileAsync('truncate', ['-s', '1G', image]);
      await execFileAsync('mkfs.btrfs', ['-q', image]);
      await execFileAsync('mount', ['-o', 'loop', image, mountPoint]);
    } catch (error) {
      await rm(directory, { recursive: true, force: true });
      throw new Error(
        `cannot loop-mount a btrfs file system for the btrfs driver test: ${(error as Error).message}`,
      );
    }
    graphRoot = join(mountPoint, 'root');
  }
  const runRoot = join(directory, 'run');
  // podman reads no system storage.conf: one of the test's own, naming this store.
  await writeFile(
    join(directory, 'storage.conf'),
    `[storage]\ndriver = "${driver}"\ngraphroot = "${graphRoot}"\nrunroot = "${runRoot}"\n`,
  );
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
            env: { ...process.env, CONTAINERS_STORAGE_CONF: join(directory, 'storage.conf') },
          },
        );
        return stdout;
      } catch (error) {
        const failure = error as Error & { stderr?: string };
        throw new Error(`podman ${args.join(' ')} failed: ${failure.stderr || failure.message}`);
      }
    },
    async dispose() {
      // containers/storage's overlay driver bind-mounts its home onto itself (private propagation) and
      // may leave it mounted; unmount whatever is mounted inside the test's directory first.
      const { readFile } = await import('node:fs/promises');
      const mountPoints = (await readFile('/proc/self/mountinfo', 'utf8'))
        .split('\n')
        .map((line) => line.split(' ')[4] ?? '')
        .filter((mountPoint) => mountPoint.startsWith(`${directory}/`))
        .sort((a, b) => b.length - a.length);
      for (const mountPoint of mountPoints)
        await execFileAsync('umount', [mountPoint]).catch(() => undefined);
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

/** One raw ustar entry (header + content + padding; a Buffer name is written as is); `type` '0' file, '2' symlink, '1' hardlink, '5' directory. */
export function tarEntry(
  name: string | Buffer,
  content: string | Buffer = '',
  type = '0',
  linkName = '',
): Buffer {
  const body = typeof content === 'string' ? Buffer.from(content) : content;
  const header = Buffer.alloc(512);
  if (typeof name === 'string') header.write(name, 0, 100, 'utf8');
  else name.copy(header, 0, 0, 100);
  header.write(type === '5' ? '0000755\0' : '0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124);
  header.write('14000000000\0', 136);
  header.write('        ', 148);
  header.write(type, 156);
  header.write(linkName, 157, 100, 'utf8');
  header.write('ustar\u000000', 257, 'latin1');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  const padding = Buffer.alloc((512 - (body.length % 512)) % 512);
  return Buffer.concat([header, body, padding]);
}

/** A tar of `entries` with its two zero end blocks. */
export function tarOf(...entries: Buffer[]): Buffer {
  return Buffer.concat([...entries, Buffer.alloc(1024)]);
}

/**
 * Writes an OCI layout (tag `t`) whose layers are the given uncompressed tars (stored gzip-compressed),
 * with a config listing their DiffIDs; for images the fixture builder cannot make (hostile or broken tars).
 */
export async function rawLayout(directory: string, name: string, layers: readonly Buffer[]): Promise<string> {
  const { createHash } = await import('node:crypto');
  const { gzipSync } = await import('node:zlib');
  const { mkdir, writeFile } = await import('node:fs/promises');
  const layout = join(directory, name);
  const blobs = join(layout, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (bytes: Buffer) => {
    const hex = createHash('sha256').update(bytes).digest('hex');
    await writeFile(join(blobs, hex), bytes);
    return { digest: `sha256:${hex}`, size: bytes.length };
  };
  const diffIds = layers.map((layer) => `sha256:${createHash('sha256').update(layer).digest('hex')}`);
  const layerDescriptors = [];
  for (const layer of layers) {
    layerDescriptors.push({
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      ...(await put(gzipSync(layer))),
    });
  }
  const config = await put(
    Buffer.from(
      JSON.stringify({
        created: '2024-01-01T00:00:00Z',
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
        os: 'linux',
        config: {},
        rootfs: { type: 'layers', diff_ids: diffIds },
      }),
    ),
  );
  const manifest = await put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: layerDescriptors,
      }),
    ),
  );
  await writeFile(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': 't' },
        },
      ],
    }),
  );
  return layout;
}
