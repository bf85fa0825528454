/**
 * Temporary files that name their owner, so that those of a process that no longer exists (killed with
 * `kill -9`, out of memory, power loss) can be removed by the next process that writes to the same place,
 * while a live writer's are left alone.
 *
 * A name made by `ownedTemporaryName(label)` is
 * `.gantry-tmp-<host><boot><pidns>.<pid>.<start>.<random>[.<label>]`:
 * - `<host>`, `<boot>`, `<pidns>`: 8 hex digits each, hashes of the machine (`/etc/machine-id`, else the
 *   host name), of the kernel's boot (`/proc/sys/kernel/random/boot_id`) and of the PID namespace
 *   (`/proc/self/ns/pid`);
 * - `<pid>` and `<start>`: the process id and its start time (clock ticks after boot, field 22 of
 *   `/proc/<pid>/stat`), which tells a reused PID from the owner;
 * - `<random>`: 16 hex digits, so one process can make many names; `<label>`: what the caller wants
 *   to recognise (e.g. the archive name the file will become).
 *
 * `ownerState` decides from the name alone:
 * - `gone` when the owner is certainly dead: same machine but another boot (every process of an earlier
 *   boot is dead), or same machine, boot and PID namespace and no process with that PID, or one that
 *   started at another time (the PID was reused);
 * - `alive` when that very process runs (this process included);
 * - `unknown` otherwise: another machine (a shared network file system), another PID namespace (a
 *   container sharing the directory), or no `/proc` to check. Unknown owners are never removed.
 *
 * Every writer that leaves files under such names calls `removeAbandonedTemporaryFiles(directory)` when
 * it opens a destination there. How each transport uses this: oci: (`blobs/` — or the shared blob
 * directory — and the layout directory for `index.json`'s temporary file), dir: (its staging directory
 * in the image directory), oci-archive: and docker-archive: (the temporary archive next to the
 * destination, labelled with the destination's file name). A store writer (containers-storage) uses it
 * the same way: name its temporary files and directories with `ownedTemporaryName` inside the
 * directories it writes, and call `removeAbandonedTemporaryFiles` on each before it writes there.
 * Names made by older Gantry versions (`.gantry-upload-<random>` …) carry no owner and are left alone.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { errorCode } from './file-system.js';

/** The prefix of every name `ownedTemporaryName` makes. */
export const ownedTemporaryPrefix = '.gantry-tmp-';

/** Who made a temporary name. */
export interface TemporaryOwner {
  /** Hashes of the machine, the boot and the PID namespace (8 hex digits each). */
  host: string;
  boot: string;
  pidNamespace: string;
  pid: number;
  /** The process's start time in clock ticks after boot; 0 when it could not be read. */
  start: number;
}

/** Whether a temporary name's owner still runs: see the module comment. */
export type TemporaryOwnerState = 'alive' | 'gone' | 'unknown';

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 8);
}

function readTrimmed(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Field 22 (starttime) of `/proc/<pid>/stat`; undefined when the process does not exist (or no /proc). */
function processStartTime(pid: number | 'self'): number | undefined {
  const stat = readTrimmed(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // The command name (field 2) is in parentheses and may contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const start = Number(fields[19]);
  return Number.isSafeInteger(start) ? start : undefined;
}

let currentOwnerCache: TemporaryOwner | undefined;

/** This process as a temporary name's owner. */
export function currentTemporaryOwner(): TemporaryOwner {
  if (currentOwnerCache?.pid === process.pid) return currentOwnerCache;
  let pidNamespace = 'none';
  try {
    pidNamespace = readlinkSync('/proc/self/ns/pid');
  } catch {
    // No /proc: owners cannot be checked, and are reported `unknown`.
  }
  currentOwnerCache = {
    host: shortHash(readTrimmed('/etc/machine-id') ?? `hostname:${hostname()}`),
    boot: shortHash(readTrimmed('/proc/sys/kernel/random/boot_id') ?? 'none'),
    pidNamespace: shortHash(pidNamespace),
    pid: process.pid,
    start: processStartTime('self') ?? 0,
  };
  return currentOwnerCache;
}

/**
 * A new temporary name (a file or directory name, not a path) owned by this process, ending with
 * `.<label>` when a label is given. Labels must not contain `/`.
 */
export function ownedTemporaryName(label?: string): string {
  if (label?.includes('/')) throw new Error(`temporary name label ${JSON.stringify(label)} contains "/"`);
  const owner = currentTemporaryOwner();
  const random = randomBytes(8).toString('hex');
  const base = `${ownedTemporaryPrefix}${owner.host}${owner.boot}${owner.pidNamespace}.${owner.pid}.${owner.start}.${random}`;
  return label ? `${base}.${label}` : base;
}

const ownedNamePattern =
  /^\.gantry-tmp-([0-9a-f]{8})([0-9a-f]{8})([0-9a-f]{8})\.(\d+)\.(\d+)\.[0-9a-f]{16}(?:\.(.+))?$/s;

/** The owner and label of a name `ownedTemporaryName` made; undefined for any other name. */
export function parseOwnedTemporaryName(
  name: string,
): { owner: TemporaryOwner; label: string | undefined } | undefined {
  const match = ownedNamePattern.exec(name);
  if (!match) return undefined;
  const [, host, boot, pidNamespace, pid, start, label] = match as unknown as string[];
  return {
    owner: {
      host: host!,
      boot: boot!,
      pidNamespace: pidNamespace!,
      pid: Number(pid),
      start: Number(start),
    },
    label,
  };
}

/** Whether `owner` still runs, decided as the module comment says. */
export function temporaryOwnerState(owner: TemporaryOwner): TemporaryOwnerState {
  const self = currentTemporaryOwner();
  if (owner.host !== self.host) return 'unknown';
  if (owner.boot !== self.boot) return self.boot === shortHash('none') ? 'unknown' : 'gone';
  if (owner.pidNamespace !== self.pidNamespace || self.start === 0) return 'unknown';
  if (owner.pid === self.pid) return owner.start === self.start ? 'alive' : 'gone';
  const start = processStartTime(owner.pid);
  if (start === undefined) return 'gone';
  return start === owner.start ? 'alive' : 'gone';
}

/** True when `name` is an owned temporary name whose owner is certainly gone. */
export function isAbandonedTemporaryName(name: string): boolean {
  const parsed = parseOwnedTemporaryName(name);
  return parsed !== undefined && temporaryOwnerState(parsed.owner) === 'gone';
}

/** Options of `removeAbandonedTemporaryFiles`. */
export interface RemoveAbandonedOptions {
  /** Only names with this label (e.g. the archive file name a temporary archive is for). */
  label?: string;
}

/**
 * Removes the entries of `directory` (files, or directories with their contents) named by
 * `ownedTemporaryName` whose owner is gone, and resolves their names. Best effort: a directory that
 * does not exist or cannot be read, and entries that cannot be removed (a read-only file system), are
 * skipped silently — the write that follows reports its own error.
 */
export async function removeAbandonedTemporaryFiles(
  directory: string,
  options: RemoveAbandonedOptions = {},
): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (error) {
    if (errorCode(error) !== undefined) return [];
    throw error;
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(ownedTemporaryPrefix)) continue;
    const parsed = parseOwnedTemporaryName(name);
    if (!parsed || temporaryOwnerState(parsed.owner) !== 'gone') continue;
    if (options.label !== undefined && parsed.label !== options.label) continue;
    try {
      await rm(path.join(directory, name), { recursive: true, force: true });
      removed.push(name);
    } catch {
      // Left for a later writer (e.g. the file system is read-only).
    }
  }
  return removed;
}

/**
 * Creates a private (0700) directory named by `ownedTemporaryName(label)` in `parent` (the system's
 * temporary directory by default), after removing the abandoned ones with the same label there: the
 * spool directories of a process killed mid-copy do not pile up. Resolves its path.
 */
export async function makeOwnedTemporaryDirectory(label: string, parent = tmpdir()): Promise<string> {
  await removeAbandonedTemporaryFiles(parent, { label });
  const directory = path.join(parent, ownedTemporaryName(label));
  await mkdir(directory, { mode: 0o700 });
  return directory;
}
