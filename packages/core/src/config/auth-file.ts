/**
 * Registry credentials from containers-auth.json(5) files (and Docker's config.json / .dockercfg),
 * read as containers/image `pkg/docker/config` does.
 *
 * Files searched, in order, until one holds credentials for the key:
 * 1. the explicit file (`--authfile`, or `$REGISTRY_AUTH_FILE`): when given, it is the only file read;
 * 2. `${XDG_RUNTIME_DIR}/containers/auth.json` (or `/run/containers/<uid>/auth.json` when
 *    `XDG_RUNTIME_DIR` is unset) — the primary, read/write file;
 * 3. `${XDG_CONFIG_HOME:-$HOME/.config}/containers/auth.json`;
 * 4. `$DOCKER_CONFIG/config.json`, or `$HOME/.docker/config.json` when `DOCKER_CONFIG` is unset;
 * 5. `$HOME/.dockercfg` (legacy format: a bare map of registry to entry).
 *
 * Within one file: a `credHelpers` entry for the registry host wins (the `docker-credential-<name>`
 * helper is asked); then `auths` keys are matched from the most specific namespace to the registry
 * (`reg/ns/repo`, `reg/ns`, `reg`); then keys written as URLs (`https://reg/v1/`) are matched by host
 * (docker.io, registry-1.docker.io and index.docker.io are one registry); finally, an extension over
 * containers/image, a `credsStore` helper is asked for the registry.
 *
 * Credentials are never logged or put into error messages.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ErrorCodes, GantryError } from '../errors.js';

/** A user name and password (or an identity token) for a registry. */
export interface RegistryCredentials {
  username: string;
  password: string;
  /** An OAuth2 refresh token ("identitytoken"); when set, bearer tokens are requested with it. */
  identityToken?: string;
}

/** Credentials and where they were found (the file path, or `helper:<name>`), for debug messages. */
export interface FoundRegistryCredentials extends RegistryCredentials {
  /** Path of the file, or `docker-credential-<name>` for a helper. Never contains secrets. */
  source: string;
}

/** One file to search and its format. */
export interface AuthFileLocation {
  path: string;
  /** `.dockercfg` format: the top level is the map of registries (no `auths`). */
  legacyFormat: boolean;
}

/** Where to look; every member defaults to the process's environment. */
export interface AuthFileSearchOptions {
  /** An explicit file (`--authfile`); when set, `REGISTRY_AUTH_FILE` and the default files are not read. */
  authFilePath?: string;
  /** Environment variables to use instead of `process.env`. */
  environment?: Readonly<Record<string, string | undefined>>;
  /** Home directory instead of `os.homedir()`. */
  homeDirectory?: string;
  /** User id for `/run/containers/<uid>/auth.json` instead of `process.getuid()`. */
  userId?: number;
  /** Runs credential helpers; tests may replace it. Default: runs `docker-credential-<name> get`. */
  runCredentialHelper?: (helperName: string, registry: string) => Promise<RegistryCredentials | undefined>;
  /**
   * registries.conf `credential-helpers`, in order: `containers-auth.json` means the auth files,
   * any other name a `docker-credential-<name>` helper asked for the registry. Default: the auth files only.
   */
  credentialHelpers?: readonly string[];
}

/** The `credential-helpers` name that stands for the auth files. */
export const authFilesCredentialHelper = 'containers-auth.json';

/** The parts of an auth file Gantry reads. */
export interface AuthFileContents {
  auths: Record<string, { auth?: string; identitytoken?: string }>;
  credHelpers: Record<string, string>;
  credsStore?: string;
}

/**
 * The files searched for credentials, in order (see the module comment). Files may not exist.
 */
export function authFileSearchPaths(options: AuthFileSearchOptions = {}): AuthFileLocation[] {
  const environment = options.environment ?? process.env;
  const explicit = options.authFilePath || environment.REGISTRY_AUTH_FILE;
  if (explicit) return [{ path: explicit, legacyFormat: false }];
  const home = options.homeDirectory ?? environment.HOME ?? os.homedir();
  const locations: AuthFileLocation[] = [{ path: primaryAuthFilePath(options), legacyFormat: false }];
  const configHome = environment.XDG_CONFIG_HOME || path.join(home, '.config');
  locations.push({ path: path.join(configHome, 'containers', 'auth.json'), legacyFormat: false });
  const dockerConfig = environment.DOCKER_CONFIG;
  locations.push({
    path: dockerConfig ? path.join(dockerConfig, 'config.json') : path.join(home, '.docker', 'config.json'),
    legacyFormat: false,
  });
  locations.push({ path: path.join(home, '.dockercfg'), legacyFormat: true });
  return locations;
}

/**
 * The primary (read/write) auth file, which `login` writes: the explicit file if any, else
 * `${XDG_RUNTIME_DIR}/containers/auth.json`, else `/run/containers/<uid>/auth.json`.
 */
export function primaryAuthFilePath(options: AuthFileSearchOptions = {}): string {
  const environment = options.environment ?? process.env;
  const explicit = options.authFilePath || environment.REGISTRY_AUTH_FILE;
  if (explicit) return explicit;
  const runtimeDirectory = environment.XDG_RUNTIME_DIR;
  if (runtimeDirectory) return path.join(runtimeDirectory, 'containers', 'auth.json');
  const userId = options.userId ?? process.getuid?.() ?? 0;
  return `/run/containers/${userId}/auth.json`;
}

/**
 * Validates a credentials key (`registry`, `registry/namespace` or `registry/namespace/repo`) as
 * containers/image does: no `http[s]://` prefix, no `@`, no `:` after the host and port.
 */
export function validateCredentialsKey(key: string): void {
  if (key.startsWith('http://') || key.startsWith('https://')) {
    throw new GantryError(ErrorCodes.Usage, `key ${key} contains http[s]:// prefix`);
  }
  if (key.includes('@')) throw new GantryError(ErrorCodes.Usage, `key ${key} contains a '@' character`);
  const firstSlash = key.indexOf('/');
  if (firstSlash !== -1 && key.slice(firstSlash + 1).includes(':')) {
    throw new GantryError(ErrorCodes.Usage, `key ${key} contains a ':' character after host[:port]`);
  }
}

/** The `auths` keys tried for `key`, most specific first: `reg/a/b`, `reg/a`, `reg`. */
export function credentialsLookupKeys(key: string): string[] {
  const keys: string[] = [];
  let current = key;
  for (;;) {
    keys.push(current);
    const lastSlash = current.lastIndexOf('/');
    if (lastSlash === -1) break;
    current = current.slice(0, lastSlash);
  }
  return keys;
}

/** Docker Hub's several host names compare equal. */
function normalizeRegistryHost(registry: string): string {
  return registry === 'registry-1.docker.io' || registry === 'docker.io' ? 'index.docker.io' : registry;
}

/** The registry host an `auths` key names, for keys written as URLs or in legacy files. */
function normalizeAuthFileKey(key: string, legacyFormat: boolean): string {
  let stripped = key.replace(/^https?:\/\//, '');
  if (legacyFormat || stripped !== key) stripped = stripped.split('/')[0] ?? '';
  return normalizeRegistryHost(stripped);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Reads an auth file; a missing file reads as empty. Throws `ERR_GANTRY_INTERNAL` naming the file
 * when it is not valid JSON of the expected shape (the message never quotes the content).
 */
export async function readAuthFile(location: AuthFileLocation): Promise<AuthFileContents> {
  let text: string;
  try {
    text = await readFile(location.path, 'utf8');
  } catch (error) {
    if (
      (error as NodeJS.ErrnoException).code === 'ENOENT' ||
      (error as NodeJS.ErrnoException).code === 'ENOTDIR'
    ) {
      return { auths: {}, credHelpers: {} };
    }
    throw new GantryError(
      ErrorCodes.Internal,
      `reading auth file ${location.path}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new GantryError(ErrorCodes.Internal, `reading auth file ${location.path}: invalid JSON`);
  }
  if (!isRecord(parsed))
    throw new GantryError(ErrorCodes.Internal, `reading auth file ${location.path}: not a JSON object`);
  const rawAuths = location.legacyFormat ? parsed : (parsed.auths ?? {});
  if (!isRecord(rawAuths)) {
    throw new GantryError(
      ErrorCodes.Internal,
      `reading auth file ${location.path}: "auths" is not an object`,
    );
  }
  const auths: AuthFileContents['auths'] = {};
  for (const [key, value] of Object.entries(rawAuths)) {
    if (!isRecord(value)) continue;
    const entry: { auth?: string; identitytoken?: string } = {};
    if (typeof value.auth === 'string') entry.auth = value.auth;
    if (typeof value.identitytoken === 'string') entry.identitytoken = value.identitytoken;
    auths[key] = entry;
  }
  const credHelpers: Record<string, string> = {};
  if (!location.legacyFormat && isRecord(parsed.credHelpers)) {
    for (const [key, value] of Object.entries(parsed.credHelpers))
      if (typeof value === 'string') credHelpers[key] = value;
  }
  const contents: AuthFileContents = { auths, credHelpers };
  if (!location.legacyFormat && typeof parsed.credsStore === 'string' && parsed.credsStore !== '') {
    contents.credsStore = parsed.credsStore;
  }
  return contents;
}

/**
 * Decodes an `auths` entry: `auth` is base64 of `user:password`. An entry without a colon (what Docker
 * writes when a helper holds the secret) counts as no credentials.
 */
function decodeAuthEntry(entry: { auth?: string; identitytoken?: string }): RegistryCredentials | undefined {
  const decoded = Buffer.from(entry.auth ?? '', 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return undefined;
  const credentials: RegistryCredentials = {
    username: decoded.slice(0, colon),
    password: decoded.slice(colon + 1).replace(/^\0+|\0+$/g, ''),
  };
  if (entry.identitytoken) credentials.identityToken = entry.identitytoken;
  return credentials;
}

/**
 * Runs `docker-credential-<name> get` with the registry on stdin, as the Docker credential helper
 * protocol says. "credentials not found" answers give undefined.
 */
export function runDockerCredentialHelper(
  helperName: string,
  registry: string,
): Promise<RegistryCredentials | undefined> {
  const program = `docker-credential-${helperName}`;
  return new Promise((resolve, reject) => {
    const child = execFile(program, ['get'], { timeout: 60_000, maxBuffer: 1024 * 1024 }, (error, stdout) => {
      if (error) {
        const output = String(stdout ?? '').trim();
        if (/credentials not found/i.test(output)) {
          resolve(undefined);
          return;
        }
        const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'program not found' : 'it failed';
        reject(
          new GantryError(ErrorCodes.Internal, `credential helper ${program}: ${reason}`, { cause: error }),
        );
        return;
      }
      let answer: unknown;
      try {
        answer = JSON.parse(String(stdout));
      } catch {
        reject(
          new GantryError(ErrorCodes.Internal, `credential helper ${program}: invalid answer (not JSON)`),
        );
        return;
      }
      if (!isRecord(answer) || typeof answer.Secret !== 'string') {
        reject(
          new GantryError(ErrorCodes.Internal, `credential helper ${program}: invalid answer (no Secret)`),
        );
        return;
      }
      const username = typeof answer.Username === 'string' ? answer.Username : '';
      // The protocol marks identity tokens with the user name "<token>".
      if (username === '<token>') resolve({ username: '', password: '', identityToken: answer.Secret });
      else resolve({ username, password: answer.Secret });
    });
    child.stdin?.end(registry);
  });
}

/**
 * Finds credentials for `key` (a registry host[:port], or a namespace or repository within it, e.g.
 * `quay.io/org/image`): in each of `options.credentialHelpers` in order (default: the auth files
 * only), the auth files being searched in containers-auth.json(5) order. Undefined when none.
 * Errors of external helpers are collected and thrown only when no source had credentials.
 */
export async function findRegistryCredentials(
  key: string,
  options: AuthFileSearchOptions = {},
): Promise<FoundRegistryCredentials | undefined> {
  validateCredentialsKey(key);
  const firstSlash = key.indexOf('/');
  const registry = firstSlash === -1 ? key : key.slice(0, firstSlash);
  const runHelper = options.runCredentialHelper ?? runDockerCredentialHelper;
  const helpers = options.credentialHelpers?.length ? options.credentialHelpers : [authFilesCredentialHelper];
  const failures: string[] = [];
  for (const helper of helpers) {
    try {
      const found =
        helper === authFilesCredentialHelper
          ? await findCredentialsInAuthFiles(key, registry, options, runHelper)
          : await runHelper(helper, registry).then((credentials) =>
              credentials ? { ...credentials, source: `docker-credential-${helper}` } : undefined,
            );
      if (found) return found;
    } catch (error) {
      failures.push((error as Error).message);
    }
  }
  if (failures.length > 0) {
    throw new GantryError(
      ErrorCodes.Internal,
      `errors looking up credentials for ${key}: ${failures.join('; ')}`,
    );
  }
  return undefined;
}

async function findCredentialsInAuthFiles(
  key: string,
  registry: string,
  options: AuthFileSearchOptions,
  runHelper: NonNullable<AuthFileSearchOptions['runCredentialHelper']>,
): Promise<FoundRegistryCredentials | undefined> {
  for (const location of authFileSearchPaths(options)) {
    const contents = await readAuthFile(location);
    const helper = contents.credHelpers[registry];
    if (helper !== undefined) {
      const found = await runHelper(helper, registry);
      if (found) return { ...found, source: `docker-credential-${helper}` };
      continue;
    }
    const lookupKeys = location.legacyFormat ? [registry] : credentialsLookupKeys(key);
    let entryKey = lookupKeys.find((candidate) => Object.hasOwn(contents.auths, candidate));
    if (entryKey === undefined) {
      const normalizedRegistry = normalizeRegistryHost(registry);
      entryKey = Object.keys(contents.auths).find(
        (candidate) => normalizeAuthFileKey(candidate, location.legacyFormat) === normalizedRegistry,
      );
    }
    if (entryKey !== undefined) {
      const credentials = decodeAuthEntry(contents.auths[entryKey]!);
      if (credentials) return { ...credentials, source: location.path };
    }
    if (contents.credsStore !== undefined) {
      const found = await runHelper(contents.credsStore, registry).catch(() => undefined);
      if (found) return { ...found, source: `docker-credential-${contents.credsStore}` };
    }
  }
  return undefined;
}

/** Reads the primary auth file as a JSON object (keeping members Gantry does not know); {} when missing. */
async function readAuthFileObject(filePath: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(filePath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new GantryError(ErrorCodes.Internal, `reading auth file ${filePath}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new GantryError(ErrorCodes.Internal, `reading auth file ${filePath}: invalid JSON`);
  }
  if (!isRecord(parsed))
    throw new GantryError(ErrorCodes.Internal, `reading auth file ${filePath}: not a JSON object`);
  return parsed;
}

/**
 * Writes a JSON object to `filePath` atomically (a temporary file in the same directory, renamed
 * over it) with mode 0600; missing parent directories are created with mode 0700.
 */
async function writeAuthFileObject(filePath: string, value: Record<string, unknown>): Promise<void> {
  const directory = path.dirname(filePath);
  await mkdir(directory, { recursive: true, mode: 0o700 });
  const temporary = path.join(directory, `.${path.basename(filePath)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(temporary, `${JSON.stringify(value, null, '\t')}\n`, { mode: 0o600, flag: 'wx' });
    await chmod(temporary, 0o600);
    await rename(temporary, filePath);
  } catch (error) {
    await rm(temporary, { force: true });
    throw new GantryError(ErrorCodes.Internal, `writing auth file ${filePath}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * Stores credentials for `key` (a registry, or a namespace or repository within it) in the primary
 * auth file (`login`), as `auths[key].auth` = base64(`user:password`); other entries and members are
 * kept. Returns the path written. Refuses keys that `validateCredentialsKey` refuses, and registries
 * whose credentials the file delegates to a credential helper (not supported yet).
 */
export async function storeRegistryCredentials(
  key: string,
  credentials: { username: string; password: string },
  options: AuthFileSearchOptions = {},
): Promise<string> {
  validateCredentialsKey(key);
  const filePath = primaryAuthFilePath(options);
  const contents = await readAuthFileObject(filePath);
  const registry = key.split('/')[0]!;
  if (isRecord(contents.credHelpers) && typeof contents.credHelpers[registry] === 'string') {
    throw new GantryError(
      ErrorCodes.NotSupported,
      `${filePath} delegates credentials for ${registry} to docker-credential-${contents.credHelpers[registry]}; storing through credential helpers is not supported yet`,
    );
  }
  const auths = isRecord(contents.auths) ? contents.auths : {};
  auths[key] = { auth: Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64') };
  contents.auths = auths;
  await writeAuthFileObject(filePath, contents);
  return filePath;
}

/**
 * Removes the credentials stored for exactly `key` from the primary auth file (`logout`). Returns
 * false when there were none (the caller reports "not logged in").
 */
export async function removeRegistryCredentials(
  key: string,
  options: AuthFileSearchOptions = {},
): Promise<boolean> {
  validateCredentialsKey(key);
  const filePath = primaryAuthFilePath(options);
  const contents = await readAuthFileObject(filePath);
  if (!isRecord(contents.auths) || !Object.hasOwn(contents.auths, key)) return false;
  delete contents.auths[key];
  await writeAuthFileObject(filePath, contents);
  return true;
}

/** Removes every stored credential from the primary auth file (`logout --all`); other members stay. */
export async function removeAllRegistryCredentials(options: AuthFileSearchOptions = {}): Promise<void> {
  const filePath = primaryAuthFilePath(options);
  const contents = await readAuthFileObject(filePath);
  if (contents.auths === undefined) return;
  contents.auths = {};
  await writeAuthFileObject(filePath, contents);
}
