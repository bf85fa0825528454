/**
 * The writable transports of the fault tests, each as a destination under a directory of the test's
 * own, with what the test needs to judge what a fault left there: a snapshot of every file (to prove
 * "unchanged"), owned temporary files (to prove "removed"), and the real tool that reads the store.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { parseOwnedTemporaryName } from '@gantry/core/transport';

export const writableTransports = [
  'oci',
  'dir',
  'oci-archive',
  'docker-archive',
  'containers-storage',
  'ostree',
] as const;
export type WritableTransport = (typeof writableTransports)[number];

/** A destination of one transport under `directory`. */
export interface FaultDestination {
  transport: WritableTransport;
  directory: string;
  /** The `--tmpdir` of the copies (inside `directory`, so leftovers there count too). */
  temporaryDirectory: string;
  /** The destination reference for an image called `name` (`small`, `big`). */
  reference(name: string): string;
  /** Environment for the real tools (containers-storage: its storage.conf). */
  environment: NodeJS.ProcessEnv;
}

/** Creates the directories (and the storage.conf of containers-storage) of a destination. */
export async function makeFaultDestination(
  transport: WritableTransport,
  directory: string,
): Promise<FaultDestination> {
  const temporaryDirectory = join(directory, 'tmp');
  await mkdir(temporaryDirectory, { recursive: true });
  const environment: NodeJS.ProcessEnv = { ...process.env };
  if (transport === 'containers-storage') {
    const conf = join(directory, 'storage.conf');
    await writeFile(
      conf,
      `[storage]\ndriver = "vfs"\ngraphroot = "${directory}/graph"\nrunroot = "${directory}/run"\n`,
    );
    environment.CONTAINERS_STORAGE_CONF = conf;
  }
  const reference = (name: string): string => {
    switch (transport) {
      case 'oci':
        return `oci:${join(directory, 'layout')}:${name}`;
      case 'dir':
        return `dir:${join(directory, 'image')}`;
      case 'oci-archive':
        return `oci-archive:${join(directory, 'image.tar')}:${name}`;
      case 'docker-archive':
        // docker-archive refuses to add to an existing archive (as skopeo): one file per image.
        return `docker-archive:${join(directory, `${name}.tar`)}:faults/${name}:latest`;
      case 'containers-storage':
        return `containers-storage:[vfs@${directory}/graph+${directory}/run]faults/${name}:latest`;
      case 'ostree':
        return `ostree:faults/${name}:latest@${join(directory, 'repo')}`;
    }
  };
  return { transport, directory, temporaryDirectory, reference, environment };
}

/** Lock files whose bytes a reader or writer may touch without changing the store (containers/storage). */
function contentMayChange(path: string): boolean {
  return /(^|\/)[^/]*\.lock$|(^|\/)storage\.lock$/.test(path);
}

/**
 * Every entry under `directory` (files with a hash of their bytes, directories, symbolic links with
 * their target), relative paths, sorted. Lock files count by name only.
 */
export async function snapshotTree(directory: string): Promise<string[]> {
  const entries: string[] = [];
  const walk = async (current: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(current)).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(current, name);
      const information = await lstat(path).catch(() => undefined);
      if (!information) continue;
      const shown = relative(directory, path);
      if (information.isDirectory()) {
        entries.push(`${shown}/`);
        await walk(path);
      } else if (information.isSymbolicLink()) {
        entries.push(`${shown} -> ${await readlink(path)}`);
      } else if (contentMayChange(shown)) {
        entries.push(`${shown} (lock)`);
      } else {
        const hash = createHash('sha256')
          .update(await readFile(path))
          .digest('hex')
          .slice(0, 16);
        entries.push(`${shown} ${information.size} ${hash}`);
      }
    }
  };
  await walk(directory);
  return entries;
}

/** Total bytes of the regular files under `directory`. */
export async function treeBytes(directory: string): Promise<number> {
  let total = 0;
  const walk = async (current: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(current);
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(current, name);
      const information = await lstat(path).catch(() => undefined);
      if (!information) continue;
      if (information.isDirectory()) await walk(path);
      else if (information.isFile()) total += information.size;
    }
  };
  await walk(directory);
  return total;
}

/** Paths under `directory` named as Gantry names its temporary files (`ownedTemporaryName`). */
export async function ownedTemporaryPaths(directory: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (current: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(current);
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(current, name);
      if (parseOwnedTemporaryName(name)) {
        found.push(relative(directory, path));
        continue;
      }
      const information = await lstat(path).catch(() => undefined);
      if (information?.isDirectory()) await walk(path);
    }
  };
  await walk(directory);
  return found.sort();
}

/**
 * What the real tool that owns the format says about the destination: the images it lists (sorted)
 * and whether its consistency check passes. containers-storage: podman's image list (and every layer
 * record complete); ostree: `ostree refs` and `ostree fsck`; the others: skopeo inspects each name.
 */
export function storeView(destination: FaultDestination, names: string[]): string[] {
  const run = (program: string, args: string[]): string =>
    execFileSync(program, args, {
      encoding: 'utf8',
      env: destination.environment,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  const { directory } = destination;
  switch (destination.transport) {
    case 'containers-storage': {
      const listed = run('podman', [
        '--root',
        join(directory, 'graph'),
        '--runroot',
        join(directory, 'run'),
        '--storage-driver',
        'vfs',
        'images',
        '--format',
        '{{.Repository}}:{{.Tag}}',
      ]);
      return listed.split('\n').filter(Boolean).sort();
    }
    case 'ostree': {
      run('ostree', [`--repo=${join(directory, 'repo')}`, 'fsck', '--quiet']);
      return run('ostree', [`--repo=${join(directory, 'repo')}`, 'refs'])
        .split('\n')
        .filter((ref) => /^ociimage\/faults_2F/.test(ref))
        .sort();
    }
    default:
      return names
        .map((name) => {
          const reference = destination.reference(name);
          try {
            const digest = run('skopeo', ['inspect', '--format', '{{.Digest}}', reference]).trim();
            return `${name} ${digest}`;
          } catch {
            return `${name} absent`;
          }
        })
        .sort();
  }
}
