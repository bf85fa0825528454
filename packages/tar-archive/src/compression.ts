/**
 * Compressed archives and layers: recognising gzip, zstd, bzip2 and xz by their magic numbers, and
 * decompressing them as a stream, for every archive reader (`openTarArchive` reads compressed tar files
 * through this; docker-save-format uses it for compressed layer files).
 *
 * gzip is decompressed by Node's zlib, zstd by zlib when this Node.js has it; otherwise, and for bzip2
 * and xz (which Node.js cannot decompress), by the system's `zstd`, `bzip2` or `xz` command (`-dc`,
 * as containers/storage runs `xz` for xz), streamed through a pipe. A missing command is
 * `ERR_GANTRY_NOT_SUPPORTED` naming the command; corrupt data fails the stream with the command's message.
 */
import { spawn } from 'node:child_process';
import { Duplex, type Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import { ErrorCodes, GantryError } from '@gantry/core/transport';

/** A compression recognised by its magic number; `none` for anything else. */
export type ArchiveCompression = 'gzip' | 'zstd' | 'bzip2' | 'xz' | 'none';

/** How many leading bytes `detectArchiveCompression` needs. */
export const compressionMagicLength = 6;

/** Recognises gzip, zstd, bzip2 and xz by their magic numbers. */
export function detectArchiveCompression(prefix: Uint8Array): ArchiveCompression {
  const starts = (...bytes: number[]) => bytes.every((byte, index) => prefix[index] === byte);
  if (starts(0x1f, 0x8b, 0x08)) return 'gzip';
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'zstd';
  if (starts(0x42, 0x5a, 0x68)) return 'bzip2';
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'xz';
  return 'none';
}

const commands: Record<'zstd' | 'bzip2' | 'xz', string> = { zstd: 'zstd', bzip2: 'bzip2', xz: 'xz' };

/**
 * A duplex stream running `command -dc`: what is written is its input, what is read its output. The
 * output ends only once the command exited successfully; a failure (corrupt or truncated data) fails
 * the stream with the command's message.
 */
function commandDecompressor(command: string, what: string): Duplex {
  const child = spawn(command, ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    if (stderr.length < 4096) stderr += chunk.toString();
  });
  let spawnError: NodeJS.ErrnoException | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  const failure = (): Error | undefined => {
    if (spawnError?.code === 'ENOENT') {
      return new GantryError(
        ErrorCodes.NotSupported,
        `${what} is ${command}-compressed: decompressing it needs the ${command} command, which is not installed`,
        { cause: spawnError },
      );
    }
    return spawnError;
  };
  const outcome = async (): Promise<Error | undefined> => {
    const { code, signal } = await exited;
    const spawnFailure = failure();
    if (spawnFailure) return spawnFailure;
    if (code === 0) return undefined;
    return new GantryError(
      ErrorCodes.InvalidLayout,
      `${what}: ${command} -dc failed: ${stderr.trim() || `exit status ${code ?? signal}`}`,
    );
  };
  // Input the command can no longer take (it failed or never started) is dropped: the failure is
  // reported on the output side, once the command is over.
  let pendingWrite: (() => void) | undefined;
  const releaseWrite = () => {
    const callback = pendingWrite;
    pendingWrite = undefined;
    callback?.();
  };
  child.stdin.on('error', releaseWrite);
  child.stdin.on('close', releaseWrite);
  child.stdin.on('drain', releaseWrite);
  const duplex = new Duplex({
    write(chunk: Buffer, _encoding, callback) {
      if (child.stdin.destroyed || !child.stdin.writable) return callback();
      if (child.stdin.write(chunk)) callback();
      else pendingWrite = () => callback();
    },
    final(callback) {
      if (!child.stdin.destroyed) child.stdin.end();
      callback();
    },
    read() {
      child.stdout.resume();
    },
    destroy(error, callback) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      callback(error);
    },
  });
  child.stdout.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) child.stdout.pause();
  });
  child.stdout.on('end', () => {
    void outcome().then((error) => {
      if (error) duplex.destroy(error);
      else duplex.push(null);
    });
  });
  // Reported by `outcome` once the (never started) command is over.
  child.on('error', (error: NodeJS.ErrnoException) => {
    spawnError = error;
  });
  return duplex;
}

/** A stream decompressing `compression`; `what` names the data in messages (`archive x.tar.xz`). */
export function createArchiveDecompressor(
  compression: Exclude<ArchiveCompression, 'none'>,
  what: string,
): Transform | Duplex {
  if (compression === 'gzip') return zlib.createGunzip();
  if (compression === 'zstd') {
    const factory = (zlib as unknown as { createZstdDecompress?: () => Transform }).createZstdDecompress;
    if (factory) return factory();
  }
  return commandDecompressor(commands[compression], what);
}
