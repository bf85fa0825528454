/**
 * The layer of a SIF image: its primary system partition (a squashfs file system) as a tar stream.
 *
 * skopeo (containers/image `sif/load.go`) extracts the squashfs with `unsquashfs` into a temporary
 * directory and archives that directory with GNU `tar --acls --xattrs`, both under `fakeroot` so that
 * owners, device nodes and modes survive for a user who is not root. This module does the same, with
 * three differences that make the layer reproducible (the same SIF file gives the same layer digest on
 * every run and machine) without changing a file in it:
 * - entries are archived in name order (`--sort=name`) instead of the order the directory lists them;
 * - owners are numeric only (`--numeric-owner`): skopeo's archive carries the user and group *names* the
 *   host's /etc/passwd gives those numbers, which differ between hosts; container runtimes use the numbers;
 * - the PAX `atime` and `ctime` records, which only describe the temporary extraction, are left out, and
 *   the script added at `/podman/runscript` (and its directory) takes the SIF's modification time instead
 *   of the current time.
 * `unsquashfs -o` reads the partition inside the SIF file in place instead of copying it out first.
 *
 * The tar stream is written to `layerPath` while it is hashed: the config names the layer's digest, so
 * the whole layer must exist before the manifest does.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, rm, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  abortError,
  type Digest,
  describeFileSystemError,
  ErrorCodes,
  GantryError,
  isGantryError,
  throwIfAborted,
} from '@gantry/core/transport';
import { injectedScriptPath } from './definition-file.js';

/** The external programs the conversion runs (each looked up on PATH unless given as a path). */
export interface ConversionTools {
  unsquashfs: string;
  tar: string;
  fakeroot: string;
}

export const defaultConversionTools: ConversionTools = {
  unsquashfs: 'unsquashfs',
  tar: 'tar',
  fakeroot: 'fakeroot',
};

export interface SquashfsToTarOptions {
  /** The SIF file. */
  sifPath: string;
  /** Where the squashfs partition starts in the SIF file. */
  partitionOffset: number;
  /** A directory the conversion may use alone (it creates `rootfs` there and removes it). */
  workDirectory: string;
  /** Where the layer tar is written. */
  layerPath: string;
  /** A script to add at `/podman/runscript` (mode 0755), if any. */
  injectedScript?: string;
  /** Modification time (Unix seconds) of the added script and its directory. */
  injectedScriptTime: number;
  tools?: ConversionTools;
  signal?: AbortSignal;
}

export interface ConvertedLayer {
  digest: Digest;
  size: number;
}

/**
 * The shell script run under fakeroot: extract, archive to stdout, then remove the extracted tree (a
 * user who is not root cannot remove read-only directories without making them writable first).
 * Arguments: $1 root directory, $2 partition offset, $3 SIF file, $4 unsquashfs, $5 tar.
 */
const conversionScript = [
  'set -u',
  '"$4" -n -q -d "$1" -f -o "$2" "$3" >&2 || exit $?',
  '"$5" --acls --xattrs --sort=name --numeric-owner --pax-option=delete=atime,delete=ctime -C "$1" -cf - ./',
  'status=$?',
  'chmod -R u+rwX "$1" 2> /dev/null',
  'rm -rf "$1"',
  'exit $status',
].join('\n');

/** Removes a directory tree, making read-only directories writable first when removal is refused. */
export async function removeTree(directory: string): Promise<void> {
  try {
    await rm(directory, { recursive: true, force: true });
  } catch {
    await new Promise<void>((resolve) => {
      const child = spawn('chmod', ['-R', 'u+rwX', directory], { stdio: 'ignore' });
      child.on('error', () => resolve());
      child.on('close', () => resolve());
    });
    await rm(directory, { recursive: true, force: true });
  }
}

function missingTool(tool: string, error: unknown): GantryError {
  return new GantryError(
    ErrorCodes.NotSupported,
    `converting rootfs from SquashFS to Tarball: ${tool} is needed to read sif: images but could not be run ` +
      `(install squashfs-tools, tar and fakeroot): ${(error as Error).message}`,
    { cause: error },
  );
}

/** Converts the squashfs partition to a tar file at `layerPath`; resolves its digest and size. */
export async function convertSquashfsToTar(options: SquashfsToTarOptions): Promise<ConvertedLayer> {
  const tools = options.tools ?? defaultConversionTools;
  const { signal } = options;
  throwIfAborted(signal);
  const rootDirectory = path.join(options.workDirectory, 'rootfs');
  await mkdir(rootDirectory, { mode: 0o755 });
  if (options.injectedScript !== undefined) {
    // Written before the extraction, as skopeo does: unsquashfs -f extracts over it.
    const scriptPath = path.join(rootDirectory, injectedScriptPath);
    await mkdir(path.dirname(scriptPath), { recursive: true, mode: 0o755 });
    await writeFile(scriptPath, options.injectedScript, { mode: 0o755 });
    await chmod(scriptPath, 0o755);
    const time = options.injectedScriptTime;
    await utimes(scriptPath, time, time);
    await utimes(path.dirname(scriptPath), time, time);
  }

  const child = spawn(
    tools.fakeroot,
    [
      '--',
      'sh',
      '-c',
      conversionScript,
      'sh',
      rootDirectory,
      String(options.partitionOffset),
      options.sifPath,
      tools.unsquashfs,
      tools.tar,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    if (stderr.length < 64 * 1024) stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, exitSignal) => resolve({ code, signal: exitSignal }));
  });
  exited.catch(() => {});
  // SIGINT first: fakeroot stops its faked daemon (outside the process group) on SIGINT, not on SIGTERM
  // or SIGKILL; whatever still runs a few seconds later is killed.
  let killTimer: NodeJS.Timeout | undefined;
  const signalGroup = (name: NodeJS.Signals) => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid, name);
    } catch {}
  };
  const killGroup = () => {
    if (killTimer) return;
    signalGroup('SIGINT');
    killTimer = setTimeout(() => signalGroup('SIGKILL'), 3000);
    killTimer.unref();
  };
  const onAbort = () => killGroup();
  signal?.addEventListener('abort', onAbort, { once: true });

  const hash = createHash('sha256');
  let size = 0;
  try {
    try {
      await pipeline(
        child.stdout,
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            hash.update(chunk);
            size += chunk.byteLength;
            yield chunk;
          }
        },
        createWriteStream(options.layerPath, { mode: 0o600 }),
      );
    } catch (error) {
      killGroup();
      await exited.catch(() => {});
      if (signal?.aborted || isGantryError(error)) throw error;
      throw new GantryError(
        ErrorCodes.Internal,
        `writing the layer of ${options.sifPath} to ${options.layerPath}: ${describeFileSystemError(error)}`,
        { cause: error },
      );
    }
    let result: Awaited<typeof exited>;
    try {
      result = await exited;
    } catch (error) {
      throw missingTool(tools.fakeroot, error);
    }
    if (signal?.aborted) throw abortError(signal);
    if (result.code !== 0) {
      const output = stderr.trim();
      if (result.code === 127) throw missingTool(`${tools.unsquashfs} or ${tools.tar}`, new Error(output));
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `converting rootfs from SquashFS to Tarball: converting image: ${
          result.signal ? `killed by ${result.signal}` : `exit status ${result.code}`
        }, output: ${output}`,
      );
    }
  } catch (error) {
    if (signal?.aborted) throw abortError(signal);
    throw error;
  } finally {
    if (killTimer) clearTimeout(killTimer);
    signal?.removeEventListener('abort', onAbort);
    await removeTree(rootDirectory);
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}
