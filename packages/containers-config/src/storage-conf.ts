/**
 * The default store, as containers/storage chooses it: containers-storage.conf(5) and the environment.
 *
 * Which file (the first that applies):
 * - `$CONTAINERS_STORAGE_CONF` when set (used even when it does not exist: then nothing is read);
 * - as root: `/etc/containers/storage.conf`, else `/usr/share/containers/storage.conf`;
 * - rootless: `$XDG_CONFIG_HOME/containers/storage.conf` (or `~/.config/containers/storage.conf`) when it
 *   exists, else the system files as for root, with the rootless defaults below.
 * Drop-ins: every `*.conf` in `<file>.d/`, in name order, read after the file; a later value wins.
 *
 * Defaults: root `graphroot = /var/lib/containers/storage`, `runroot = /run/containers/storage`; rootless
 * `graphroot = $XDG_DATA_HOME/containers/storage` (or `rootless_storage_path` from the system file),
 * `runroot = $XDG_RUNTIME_DIR/containers` (or `/run/user/<uid>/containers`, `/tmp/containers-user-<uid>/containers`). `$UID` and `$VAR`s
 * in paths are expanded. `STORAGE_DRIVER` overrides the driver, `STORAGE_OPTS` (comma-separated) the
 * driver options. With no driver configured, the driver whose `<driver>-images` (or `-layers`)
 * directory exists in the graph root is used, else `overlay` as root and `vfs` rootless (Debian's
 * containers/storage 1.44, which podman 4.3 and skopeo 1.9 use).
 *
 * The TOML library (smol-toml, see toml.ts) is loaded only when a file exists.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ErrorCodes, GantryError } from '@gantry/core/transport';
import { parseToml, TomlError } from './toml.js';

export interface StoreOptions {
  driver: string;
  graphRoot: string;
  runRoot: string;
  driverOptions: string[];
  /**
   * `transient_store` ([storage]): containers/storage keeps its container records, the containers lock
   * and `volatile-layers.json` in the run root, so they do not outlive a reboot (containers/storage 1.45+).
   */
  transientStore: boolean;
  /** The files read, in order. */
  files: string[];
}

export interface StorageConfEnvironment {
  env?: NodeJS.ProcessEnv;
  /**
   * The user whose store it is (default: `$_CONTAINERS_ROOTLESS_UID` when set, as inside the user
   * namespace a rootless run re-executes in, else process.geteuid()).
   */
  uid?: number;
  /** Home directory (default: os.homedir()). */
  home?: string;
}

export const systemStorageConf = '/etc/containers/storage.conf';
export const vendorStorageConf = '/usr/share/containers/storage.conf';
export const rootGraphRoot = '/var/lib/containers/storage';
export const rootRunRoot = '/run/containers/storage';

interface ParsedStorageConf {
  driver?: string;
  graphRoot?: string;
  runRoot?: string;
  rootlessStoragePath?: string;
  transientStore?: boolean;
  driverOptions: string[];
}

type TomlTable = Record<string, unknown>;

function parseTomlFile(file: string, text: string): TomlTable {
  try {
    return parseToml(text);
  } catch (error) {
    const { line, column } = error instanceof TomlError ? error : { line: 0, column: 0 };
    const where = line > 0 ? `:${line}:${column}` : '';
    const reason =
      error instanceof TomlError && line > 0
        ? error.message.replace(/^line \d+, column \d+: /, '')
        : (error as Error).message;
    throw new GantryError(
      ErrorCodes.InvalidConfiguration,
      `malformed storage configuration ${file}${where}: ${reason}`,
      { cause: error },
    );
  }
}

function stringField(file: string, table: TomlTable, key: string, section: string): string | undefined {
  const value = table[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    throw new GantryError(
      ErrorCodes.InvalidConfiguration,
      `malformed storage configuration ${file}: [${section}] ${key} must be a string`,
    );
  }
  return value;
}

function scalarText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean')
    return String(value);
  return undefined;
}

/** Reads one storage.conf file into `into` (later files override earlier values). */
function readStorageConf(file: string, into: ParsedStorageConf): void {
  const text = readFileSync(file, 'utf8');
  const document = parseTomlFile(file, text);
  const storage = document.storage;
  if (storage === undefined) return;
  if (typeof storage !== 'object' || storage === null || Array.isArray(storage)) {
    throw new GantryError(
      ErrorCodes.InvalidConfiguration,
      `malformed storage configuration ${file}: [storage] must be a table`,
    );
  }
  const section = storage as TomlTable;
  const driver = stringField(file, section, 'driver', 'storage');
  if (driver) into.driver = driver;
  const graphRoot = stringField(file, section, 'graphroot', 'storage');
  if (graphRoot) into.graphRoot = graphRoot;
  const runRoot = stringField(file, section, 'runroot', 'storage');
  if (runRoot) into.runRoot = runRoot;
  const rootless = stringField(file, section, 'rootless_storage_path', 'storage');
  if (rootless) into.rootlessStoragePath = rootless;
  const transient = section.transient_store;
  if (transient !== undefined) {
    if (typeof transient !== 'boolean') {
      throw new GantryError(
        ErrorCodes.InvalidConfiguration,
        `malformed storage configuration ${file}: [storage] transient_store must be true or false`,
      );
    }
    into.transientStore = transient;
  }
  const options = section.options;
  if (options !== undefined && typeof options === 'object' && options !== null && !Array.isArray(options)) {
    const optionTable = options as TomlTable;
    const driverName = into.driver ?? '';
    const perDriver: string[] = [];
    const topLevelKeys: Record<string, string> = {
      size: 'size',
      mount_program: 'mount_program',
      skip_mount_home: 'skip_mount_home',
      ignore_chown_errors: 'ignore_chown_errors',
      mountopt: 'mountopt',
    };
    for (const [key, optionName] of Object.entries(topLevelKeys)) {
      const value = scalarText(optionTable[key]);
      if (value !== undefined && value !== '') perDriver.push(`${driverName}.${optionName}=${value}`);
    }
    for (const [key, value] of Object.entries(optionTable)) {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) continue;
      // [storage.options.overlay], [storage.options.vfs], [storage.options.btrfs], …
      for (const [subKey, subValue] of Object.entries(value as TomlTable)) {
        const text = scalarText(subValue);
        if (text !== undefined && text !== '') perDriver.push(`${key}.${subKey}=${text}`);
      }
    }
    if (perDriver.length) into.driverOptions = perDriver;
  }
}

function expandPath(path: string, uid: number, env: NodeJS.ProcessEnv): string {
  const withUid = path.replaceAll('$UID', String(uid));
  const expanded = withUid.replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (_, braced, bare) => {
      return env[(braced ?? bare) as string] ?? '';
    },
  );
  return resolve(expanded);
}

function readWithDropIns(file: string, into: ParsedStorageConf, files: string[]): void {
  if (existsSync(file)) {
    readStorageConf(file, into);
    files.push(file);
  }
  const dropInDirectory = `${file}.d`;
  let entries: string[] = [];
  try {
    entries = readdirSync(dropInDirectory)
      .filter((name) => name.endsWith('.conf'))
      .sort();
  } catch {
    return;
  }
  for (const name of entries) {
    const dropIn = join(dropInDirectory, name);
    if (!statSync(dropIn).isFile()) continue;
    readStorageConf(dropIn, into);
    files.push(dropIn);
  }
}

/**
 * The user a store belongs to: `$_CONTAINERS_ROOTLESS_UID` (set by whoever re-executed the process in a
 * user namespace, where the effective UID is 0), else the effective UID.
 */
export function rootlessUid(env: NodeJS.ProcessEnv = process.env): number {
  const fromEnvironment = env._CONTAINERS_ROOTLESS_UID;
  if (fromEnvironment && /^\d+$/.test(fromEnvironment)) return Number(fromEnvironment);
  return process.geteuid?.() ?? 0;
}

/** Whether stores are used as an unprivileged user (directly, or as root of a user namespace we were re-executed in). */
export function isRootless(env: NodeJS.ProcessEnv = process.env): boolean {
  return (process.geteuid?.() ?? 0) !== 0 || Boolean(env._CONTAINERS_USERNS_CONFIGURED);
}

/**
 * The runtime directory of a rootless user, as Debian's containers/storage (1.44: podman 4.3, skopeo 1.9)
 * picks it: `$XDG_RUNTIME_DIR`, else `/run/user/<uid>` when it exists, else `$TMPDIR/containers-user-<uid>`.
 */
function runtimeDirectory(env: NodeJS.ProcessEnv, uid: number): string {
  if (env.XDG_RUNTIME_DIR) return env.XDG_RUNTIME_DIR;
  const perUser = `/run/user/${uid}`;
  if (existsSync(perUser)) return perUser;
  return join(env.TMPDIR || '/tmp', `containers-user-${uid}`);
}

/** The driver of an existing store in `graphRoot` (a `<driver>-images` or `<driver>-layers` directory), if any. */
export function driverOfExistingStore(graphRoot: string): string | undefined {
  let entries: string[];
  try {
    entries = readdirSync(graphRoot);
  } catch {
    return undefined;
  }
  for (const suffix of ['-images', '-layers']) {
    for (const entry of entries.sort()) {
      if (entry.endsWith(suffix) && entry.length > suffix.length) return entry.slice(0, -suffix.length);
    }
  }
  return undefined;
}

/** The store containers/storage would use by default, for this user and environment. */
export function defaultStoreOptions(environment: StorageConfEnvironment = {}): StoreOptions {
  const env = environment.env ?? process.env;
  const uid = environment.uid ?? rootlessUid(env);
  const home = environment.home ?? env.HOME ?? homedir();
  const rootless = uid !== 0;
  const parsed: ParsedStorageConf = { driverOptions: [] };
  const files: string[] = [];
  const override = env.CONTAINERS_STORAGE_CONF;
  let userFileUsed = false;
  if (override !== undefined) {
    readWithDropIns(override, parsed, files);
  } else {
    if (rootless) {
      const userFile = join(env.XDG_CONFIG_HOME || join(home, '.config'), 'containers', 'storage.conf');
      if (existsSync(userFile)) {
        readWithDropIns(userFile, parsed, files);
        userFileUsed = true;
      }
    }
    if (!userFileUsed) {
      readWithDropIns(existsSync(systemStorageConf) ? systemStorageConf : vendorStorageConf, parsed, files);
    }
  }
  let graphRoot: string;
  let runRoot: string;
  if (rootless && !userFileUsed && override === undefined) {
    // The system file's graphroot and runroot are root's; a user gets their own store.
    const dataHome = env.XDG_DATA_HOME || join(home, '.local', 'share');
    graphRoot = parsed.rootlessStoragePath ?? join(dataHome, 'containers', 'storage');
    runRoot = join(runtimeDirectory(env, uid), 'containers');
  } else if (rootless) {
    const dataHome = env.XDG_DATA_HOME || join(home, '.local', 'share');
    graphRoot = parsed.graphRoot ?? parsed.rootlessStoragePath ?? join(dataHome, 'containers', 'storage');
    runRoot = parsed.runRoot ?? join(runtimeDirectory(env, uid), 'containers');
  } else {
    graphRoot = parsed.graphRoot ?? rootGraphRoot;
    runRoot = parsed.runRoot ?? rootRunRoot;
  }
  graphRoot = expandPath(graphRoot, uid, env);
  runRoot = expandPath(runRoot, uid, env);
  let driver = env.STORAGE_DRIVER || parsed.driver || '';
  if (driver === 'overlay2') driver = 'overlay';
  // Not configured: the store's own driver, else containers/storage 1.44's default (vfs for a
  // rootless user, overlay for root).
  if (!driver) driver = driverOfExistingStore(graphRoot) ?? (rootless ? 'vfs' : 'overlay');
  let driverOptions = parsed.driverOptions.map((option) =>
    option.startsWith('.') ? `${driver}${option}` : option,
  );
  if (env.STORAGE_OPTS !== undefined)
    driverOptions = env.STORAGE_OPTS.split(',').filter((option) => option !== '');
  return { driver, graphRoot, runRoot, driverOptions, transientStore: parsed.transientStore ?? false, files };
}
