/**
 * Rootless `containers-storage:`, as skopeo and podman do it: an unprivileged user's store holds files
 * owned by many IDs (those of the image), mapped into the user's subordinate ranges. So, when a command
 * names a `containers-storage:` image and gantry runs without root, it re-executes itself inside a new
 * user namespace where it is root: container ID 0 is the user, IDs 1… are the first range /etc/subuid
 * (and /etc/subgid) give the user, set up by newuidmap/newgidmap (through util-linux's `unshare`, which
 * calls them) — the mapping podman uses for the same user. The re-executed process gets
 * `_CONTAINERS_USERNS_CONFIGURED` (so it does not re-execute again) and `_CONTAINERS_ROOTLESS_UID` /
 * `_CONTAINERS_ROOTLESS_GID` (so it uses the user's store, not root's), as containers/storage sets them.
 *
 * Without a subordinate range, only the user is mapped (to 0): layers owning files by other IDs then fail
 * to apply, as with podman in that configuration.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';

export interface SubordinateRange {
  start: number;
  count: number;
}

/** The first range of `/etc/subuid`-style `text` for the user (by name or numeric ID). */
export function subordinateRange(text: string, name: string, id: number): SubordinateRange | undefined {
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith('#')) continue;
    const [owner, start, count] = trimmed.split(':');
    if (owner !== name && owner !== String(id)) continue;
    const range = { start: Number(start), count: Number(count) };
    if (Number.isInteger(range.start) && Number.isInteger(range.count) && range.count > 0) return range;
  }
  return undefined;
}

function readRange(file: string, name: string, id: number): SubordinateRange | undefined {
  try {
    return subordinateRange(readFileSync(file, 'utf8'), name, id);
  } catch {
    return undefined;
  }
}

/** Whether this command line needs a user namespace: rootless, not in one yet, and naming a containers-storage image. */
export function needsUserNamespace(args: readonly string[], env: NodeJS.ProcessEnv): boolean {
  if (process.platform !== 'linux') return false;
  if ((process.geteuid?.() ?? 0) === 0) return false;
  if (env._CONTAINERS_USERNS_CONFIGURED) return false;
  return args.some((argument) => argument.startsWith('containers-storage:'));
}

/** The `unshare` arguments that map the user to 0 and their subordinate ranges from 1. */
export function unshareArguments(uid: number, gid: number, name: string): string[] {
  const uids = readRange('/etc/subuid', name, uid);
  const gids = readRange('/etc/subgid', name, gid);
  const args = ['--user', '--map-user=0', '--map-group=0'];
  if (uids) args.push(`--map-users=${uids.start},1,${uids.count}`);
  if (gids) args.push(`--map-groups=${gids.start},1,${gids.count}`);
  return args;
}

/**
 * Re-executes this process in a user namespace (see the module comment) and resolves to its exit code;
 * signals sent to this process are passed on.
 */
export function runInUserNamespace(args: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const uid = process.geteuid?.() ?? 0;
  const gid = process.getegid?.() ?? 0;
  const name = userInfo().username;
  const child = spawn(
    'unshare',
    [
      ...unshareArguments(uid, gid, name),
      '--',
      process.execPath,
      ...process.execArgv,
      process.argv[1]!,
      ...args,
    ],
    {
      stdio: 'inherit',
      env: {
        ...env,
        _CONTAINERS_USERNS_CONFIGURED: 'done',
        _CONTAINERS_ROOTLESS_UID: String(uid),
        _CONTAINERS_ROOTLESS_GID: String(gid),
      },
    },
  );
  const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
  const handlers = (['SIGINT', 'SIGTERM'] as const).map((signal) => [signal, forward(signal)] as const);
  for (const [signal, handler] of handlers) process.on(signal, handler);
  return new Promise((resolve) => {
    child.on('error', (error) => {
      process.stderr.write(
        `Error: cannot create a user namespace for rootless containers-storage (unshare from util-linux and newuidmap from uidmap are needed): ${error.message}\n`,
      );
      resolve(1);
    });
    child.on('exit', (code, signal) => {
      for (const [name, handler] of handlers) process.off(name, handler);
      resolve(code ?? (signal ? 128 + 15 : 1));
    });
  });
}
