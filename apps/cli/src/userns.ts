/**
 * Rootless `containers-storage:`, as skopeo and podman do it: an unprivileged user's store holds files
 * owned by many IDs (those of the image), mapped into the user's subordinate ranges. So, when a command
 * names a `containers-storage:` image and gantry runs without root, it re-executes itself inside a new
 * user namespace where it is root: container ID 0 is the user, IDs 1… are every range /etc/subuid (and
 * /etc/subgid) give the user, one after the other in the file's order — the mapping podman uses for the
 * same user. The namespace is made by util-linux's `unshare --user`; the child waits (a shell reading a
 * socket) until newuidmap/newgidmap have written its maps, then executes gantry again. (util-linux's own
 * `--map-users` maps a single range only.) The re-executed process gets `_CONTAINERS_USERNS_CONFIGURED`
 * (so it does not re-execute again) and `_CONTAINERS_ROOTLESS_UID` / `_CONTAINERS_ROOTLESS_GID` (so it
 * uses the user's store, not root's), as containers/storage sets them.
 *
 * Without a subordinate range, only the user is mapped (to 0, by `unshare` itself): layers owning files
 * by other IDs then fail to apply, as with podman in that configuration.
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { Duplex } from 'node:stream';
import { promisify } from 'node:util';

/** `execFile` returning a promise; promisified at the first call, so that node:child_process loads only when used. */
let execFilePromised: typeof execFile.__promisify__ | undefined;
const execFileAsync = ((...args: Parameters<typeof execFile.__promisify__>) => {
  execFilePromised ??= promisify(execFile);
  return execFilePromised(...args);
}) as typeof execFile.__promisify__;

export interface SubordinateRange {
  start: number;
  count: number;
}

/** Every range of `/etc/subuid`-style `text` for the user (by name or numeric ID), in the file's order. */
export function subordinateRanges(text: string, name: string, id: number): SubordinateRange[] {
  const ranges: SubordinateRange[] = [];
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith('#')) continue;
    const [owner, start, count] = trimmed.split(':');
    if (owner !== name && owner !== String(id)) continue;
    const range = { start: Number(start), count: Number(count) };
    if (Number.isInteger(range.start) && Number.isInteger(range.count) && range.count > 0) ranges.push(range);
  }
  return ranges;
}

function readRanges(file: string, name: string, id: number): SubordinateRange[] {
  try {
    return subordinateRanges(readFileSync(file, 'utf8'), name, id);
  } catch {
    return [];
  }
}

/**
 * newuidmap/newgidmap's arguments after the PID: `0 <id> 1`, then each range from container ID 1 on,
 * one after the other.
 */
export function idMapArguments(id: number, ranges: readonly SubordinateRange[]): string[] {
  const args = ['0', String(id), '1'];
  let next = 1;
  for (const range of ranges) {
    args.push(String(next), String(range.start), String(range.count));
    next += range.count;
  }
  return args;
}

/** Whether this command line needs a user namespace: rootless, not in one yet, and naming a containers-storage image. */
export function needsUserNamespace(args: readonly string[], env: NodeJS.ProcessEnv): boolean {
  if (process.platform !== 'linux') return false;
  if ((process.geteuid?.() ?? 0) === 0) return false;
  if (env._CONTAINERS_USERNS_CONFIGURED) return false;
  return args.some((argument) => argument.startsWith('containers-storage:'));
}

/**
 * The child's program: tell the parent the namespace exists, wait for its "go" (maps written), then run
 * the command; anything else (the parent gone) ends it.
 */
const waitForMapsScript =
  'echo ready >&3 && IFS= read -r answer <&3 && [ "$answer" = go ] && exec 3<&- && exec "$@"; exit 125';

/**
 * Re-executes this process in a user namespace (see the module comment) and resolves to its exit code;
 * signals sent to this process are passed on.
 */
export function runInUserNamespace(args: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const uid = process.geteuid?.() ?? 0;
  const gid = process.getegid?.() ?? 0;
  const name = userInfo().username;
  const uidRanges = readRanges('/etc/subuid', name, uid);
  const gidRanges = readRanges('/etc/subgid', name, gid);
  const command = [process.execPath, ...process.execArgv, process.argv[1]!, ...args];
  const mapped = uidRanges.length > 0 && gidRanges.length > 0;
  const childEnv = {
    ...env,
    _CONTAINERS_USERNS_CONFIGURED: 'done',
    _CONTAINERS_ROOTLESS_UID: String(uid),
    _CONTAINERS_ROOTLESS_GID: String(gid),
  };
  const child = mapped
    ? spawn('unshare', ['--user', '--', '/bin/sh', '-c', waitForMapsScript, 'gantry-userns', ...command], {
        stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
        env: childEnv,
      })
    : spawn('unshare', ['--user', '--map-user=0', '--map-group=0', '--', ...command], {
        stdio: 'inherit',
        env: childEnv,
      });
  const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
  const handlers = (['SIGINT', 'SIGTERM'] as const).map((signal) => [signal, forward(signal)] as const);
  for (const [signal, handler] of handlers) process.on(signal, handler);
  const fail = (message: string): void => {
    process.stderr.write(
      `Error: cannot create a user namespace for rootless containers-storage (unshare from util-linux and newuidmap/newgidmap from uidmap are needed): ${message}\n`,
    );
  };
  return new Promise((resolve) => {
    let failed = false;
    if (mapped) {
      const control = child.stdio[3] as Duplex;
      let received = '';
      control.on('error', () => undefined);
      control.on('data', (data: Buffer) => {
        received += data.toString('utf8');
        if (received !== 'ready\n') return;
        const pid = String(child.pid);
        Promise.all([
          execFileAsync('newuidmap', [pid, ...idMapArguments(uid, uidRanges)]),
          execFileAsync('newgidmap', [pid, ...idMapArguments(gid, gidRanges)]),
        ]).then(
          () => control.end('go\n'),
          (error: Error & { stderr?: string }) => {
            failed = true;
            fail((error.stderr || error.message).trim());
            control.end('stop\n');
          },
        );
      });
    }
    child.on('error', (error) => {
      fail(error.message);
      resolve(1);
    });
    child.on('exit', (code, signal) => {
      for (const [name, handler] of handlers) process.off(name, handler);
      if (failed) resolve(1);
      else resolve(code ?? (signal ? 128 + 15 : 1));
    });
  });
}
