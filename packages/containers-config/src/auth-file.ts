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
 * Writing (`login` / `logout`) follows containers/image's SetCredentials / RemoveAuthentication /
 * RemoveAllAuthentication: only the primary file is written; a `credHelpers` entry for the registry
 * sends the secret to `docker-credential-<name> store` / `erase` instead of the file; registries.conf
 * `credential-helpers` (passed as `credentialHelpers`) chooses the stores and their order.
 *
 * Credential helpers speak the docker-credential-helpers protocol: `docker-credential-<name>
 * get|store|erase|list`, input on stdin, answers (and error messages) on stdout, exit status 1 with
 * "credentials not found in native keychain" when nothing is stored.
 *
 * Credentials are never logged or put into error messages: helper output quoted in errors has the
 * secret redacted and helper stderr is never quoted.
 */
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { chmod, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ErrorCodes, GantryError, isGantryError, makeDirectories } from '@gantry/core/transport';

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
  /**
   * Looks credentials up in a credential helper; tests may replace it. Default:
   * `runDockerCredentialHelper` (`docker-credential-<name> get`, run with `environment`).
   * Storing and erasing always run the `docker-credential-<name>` programs.
   */
  runCredentialHelper?: (helperName: string, registry: string) => Promise<RegistryCredentials | undefined>;
  /**
   * registries.conf `credential-helpers`, in order: `containers-auth.json` means the auth files,
   * any other name a `docker-credential-<name>` helper asked for the registry. Default: the auth files only.
   */
  credentialHelpers?: readonly string[];
}

/** The `credential-helpers` name that stands for the auth files. */
export const authFilesCredentialHelper = 'containers-auth.json';

/** `options.credentialHelpers`, or the auth files alone when unset or empty (as containers/image). */
function credentialHelpersOf(options: AuthFileSearchOptions): readonly string[] {
  return options.credentialHelpers?.length ? options.credentialHelpers : [authFilesCredentialHelper];
}

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
 * Auth files read, by path: what the file's identity and times were when read, and what it held. A
 * file whose device, inode, size and modification and change times (nanoseconds) are unchanged is not
 * read again (unless it changed in the last 2 s): a copy or sync opens a registry client per image and
 * request, each looking up credentials.
 */
const readAuthFiles = new Map<string, { signature: string; contents: AuthFileContents }>();

/** `authFileSignature` of a file that must be read each time. */
const uncachable = 'read-each-time';

/** The file's identity and times, or undefined when there is no file there. */
function authFileSignature(filePath: string): string | undefined {
  let info: import('node:fs').BigIntStats | undefined;
  try {
    info = statSync(filePath, { bigint: true, throwIfNoEntry: false });
  } catch {
    // ENOTDIR and the like: reading it will say what is wrong, or that nothing is there.
    return uncachable;
  }
  if (info === undefined) return undefined;
  // A file changed in the last seconds may change again within the file system's timestamp
  // granularity without its times moving (as git's "racy" index entries): such a file is always read.
  const now = BigInt(Date.now()) * 1_000_000n;
  if (now - info.mtimeNs < 2_000_000_000n || now - info.ctimeNs < 2_000_000_000n) return uncachable;
  return `${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}`;
}

/**
 * Reads an auth file; a missing file reads as empty. Throws `ERR_GANTRY_INTERNAL` naming the file
 * when it is not valid JSON of the expected shape (the message never quotes the content). A file
 * unchanged since it was last read (see `readAuthFiles`) is not read again; the result must not be
 * modified.
 */
export async function readAuthFile(location: AuthFileLocation): Promise<AuthFileContents> {
  const signature = authFileSignature(location.path);
  const key = `${location.legacyFormat ? 'legacy' : 'auths'}\n${location.path}`;
  if (signature === undefined) {
    readAuthFiles.delete(key);
    return { auths: {}, credHelpers: {} };
  }
  const cached = readAuthFiles.get(key);
  if (cached !== undefined && cached.signature === signature && signature !== uncachable) {
    return cached.contents;
  }
  const contents = await readAuthFileUncached(location);
  if (signature !== uncachable) readAuthFiles.set(key, { signature, contents });
  return contents;
}

async function readAuthFileUncached(location: AuthFileLocation): Promise<AuthFileContents> {
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

/** A command of the Docker credential helper protocol (docker/docker-credential-helpers). */
export type CredentialHelperCommand = 'get' | 'store' | 'erase' | 'list';

/** What helpers answer (on stdout, exiting non-zero) when they hold nothing for a server. */
const credentialsNotFoundAnswer = /credentials not found/i;

/** How long a helper may take for one command. */
const credentialHelperTimeoutMs = 60_000;

/** The most helper output quoted in an error message. */
const quotedHelperOutputMax = 300;

/** A helper call failed; `missingProgram` when `docker-credential-<name>` is not on PATH. */
class CredentialHelperError extends GantryError {
  readonly missingProgram: boolean;
  constructor(message: string, missingProgram: boolean, cause?: unknown) {
    super(ErrorCodes.Internal, message, cause === undefined ? {} : { cause });
    this.missingProgram = missingProgram;
  }
}

/** The environment for a helper process: `environment` without unset variables, else process.env. */
function helperProcessEnvironment(
  environment: Readonly<Record<string, string | undefined>> | undefined,
): NodeJS.ProcessEnv | undefined {
  if (environment === undefined) return undefined;
  const result: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(environment)) if (value !== undefined) result[name] = value;
  return result;
}

/**
 * The helper's stdout (where the protocol puts error messages) made safe to quote: every secret in
 * `secrets` (as given and as JSON-escaped) replaced, anything that looks like a credentials answer
 * withheld, and at most `quotedHelperOutputMax` characters. stderr is never quoted: helpers may echo
 * their input there.
 */
function quotableHelperOutput(stdout: string, secrets: readonly string[]): string {
  let text = stdout.trim();
  if (text === '') return '(no message on stdout)';
  for (const secret of secrets) {
    if (secret === '') continue;
    for (const form of new Set([secret, JSON.stringify(secret).slice(1, -1)])) {
      text = text.split(form).join('<redacted>');
    }
  }
  // A credentials answer (`{"Username": …, "Secret": …}`) on a failure: its secret is unknown here.
  if (text.includes('"Secret"')) return '(output withheld: it may contain credentials)';
  if (text.length > quotedHelperOutputMax) text = `${text.slice(0, quotedHelperOutputMax)}…`;
  return JSON.stringify(text);
}

/**
 * Runs `docker-credential-<helperName> <command>` with `input` on stdin and returns its stdout, or
 * undefined when the helper answered "credentials not found". Errors name the program and the
 * command, never quote stderr, and never contain `secrets`.
 */
function callDockerCredentialHelper(
  helperName: string,
  command: CredentialHelperCommand,
  input: string,
  options: { environment?: Readonly<Record<string, string | undefined>>; secrets?: readonly string[] },
): Promise<string | undefined> {
  const program = `docker-credential-${helperName}`;
  const what = `credential helper ${program} ${command}`;
  const environment = helperProcessEnvironment(options.environment);
  return new Promise((resolve, reject) => {
    // Loaded on first use: child_process (with dgram and friends) costs start-up time for every command.
    const { execFile } = process.getBuiltinModule('node:child_process');
    const child = execFile(
      program,
      [command],
      {
        timeout: credentialHelperTimeoutMs,
        maxBuffer: 1024 * 1024,
        ...(environment === undefined ? {} : { env: environment }),
      },
      (error, stdout) => {
        if (!error) {
          resolve(String(stdout));
          return;
        }
        const output = String(stdout ?? '');
        const failure = error as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null };
        if (failure.code === 'ENOENT') {
          reject(
            new CredentialHelperError(
              `${what}: ${program} is not on PATH (executable file not found in $PATH)`,
              true,
              error,
            ),
          );
          return;
        }
        if (failure.code === 'EACCES') {
          reject(
            new CredentialHelperError(
              `${what}: ${program} is not executable (permission denied)`,
              false,
              error,
            ),
          );
          return;
        }
        if (failure.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
          reject(new CredentialHelperError(`${what}: answer larger than 1 MiB`, false, error));
          return;
        }
        if (failure.killed) {
          reject(
            new CredentialHelperError(
              `${what}: did not finish within ${credentialHelperTimeoutMs / 1000} seconds`,
              false,
              error,
            ),
          );
          return;
        }
        if (credentialsNotFoundAnswer.test(output.trim())) {
          resolve(undefined);
          return;
        }
        const status =
          typeof failure.code === 'number'
            ? `exit status ${failure.code}`
            : `killed by ${failure.signal ?? 'a signal'}`;
        reject(
          new CredentialHelperError(
            `${what}: ${status}: ${quotableHelperOutput(output, options.secrets ?? [])}`,
            false,
          ),
        );
      },
    );
    // A helper that exits without reading stdin makes writing fail with EPIPE; its exit status tells.
    child.stdin?.on('error', () => {});
    child.stdin?.end(input);
  });
}

/**
 * `docker-credential-<helperName> get`: the registry on stdin, `{"Username", "Secret"}` back.
 * "credentials not found" answers give undefined; the user name `<token>` marks an identity token.
 * `environment` is the helper's environment (its PATH finds the program); default process.env.
 */
export async function runDockerCredentialHelper(
  helperName: string,
  registry: string,
  environment?: Readonly<Record<string, string | undefined>>,
): Promise<RegistryCredentials | undefined> {
  const program = `docker-credential-${helperName}`;
  const stdout = await callDockerCredentialHelper(helperName, 'get', registry, {
    ...(environment === undefined ? {} : { environment }),
  });
  if (stdout === undefined) return undefined;
  let answer: unknown;
  try {
    answer = JSON.parse(stdout);
  } catch {
    throw new GantryError(ErrorCodes.Internal, `credential helper ${program} get: invalid answer (not JSON)`);
  }
  if (!isRecord(answer) || typeof answer.Secret !== 'string') {
    throw new GantryError(
      ErrorCodes.Internal,
      `credential helper ${program} get: invalid answer (no Secret)`,
    );
  }
  const username = typeof answer.Username === 'string' ? answer.Username : '';
  // The protocol marks identity tokens with the user name "<token>".
  if (username === '<token>') return { username: '', password: '', identityToken: answer.Secret };
  return { username, password: answer.Secret };
}

/**
 * `docker-credential-<helperName> store`: `{"ServerURL": registry, "Username", "Secret"}` on stdin.
 * Errors never contain the password (helper output is redacted, stderr is not quoted).
 */
export async function storeInDockerCredentialHelper(
  helperName: string,
  registry: string,
  credentials: { username: string; password: string },
  environment?: Readonly<Record<string, string | undefined>>,
): Promise<void> {
  const input = JSON.stringify({
    ServerURL: registry,
    Username: credentials.username,
    Secret: credentials.password,
  });
  const secrets = [
    credentials.password,
    Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64'),
  ];
  const stored = await callDockerCredentialHelper(helperName, 'store', input, {
    secrets,
    ...(environment === undefined ? {} : { environment }),
  });
  if (stored === undefined) {
    // "credentials not found" is no answer to store.
    throw new GantryError(
      ErrorCodes.Internal,
      `credential helper docker-credential-${helperName} store: failed: credentials not found`,
    );
  }
}

/**
 * `docker-credential-<helperName> erase`: the registry on stdin. False when the helper answered
 * "credentials not found" (it held nothing for the registry).
 */
export async function eraseFromDockerCredentialHelper(
  helperName: string,
  registry: string,
  environment?: Readonly<Record<string, string | undefined>>,
): Promise<boolean> {
  const erased = await callDockerCredentialHelper(helperName, 'erase', registry, {
    ...(environment === undefined ? {} : { environment }),
  });
  return erased !== undefined;
}

/** `docker-credential-<helperName> list`: the map of server URL to user name the helper holds. */
export async function listDockerCredentialHelper(
  helperName: string,
  environment?: Readonly<Record<string, string | undefined>>,
): Promise<Record<string, string>> {
  const program = `docker-credential-${helperName}`;
  const stdout = await callDockerCredentialHelper(helperName, 'list', 'unused', {
    ...(environment === undefined ? {} : { environment }),
  });
  if (stdout === undefined) return {};
  let answer: unknown;
  try {
    answer = JSON.parse(stdout);
  } catch {
    throw new GantryError(
      ErrorCodes.Internal,
      `credential helper ${program} list: invalid answer (not JSON)`,
    );
  }
  if (answer === null) return {};
  if (!isRecord(answer)) {
    throw new GantryError(
      ErrorCodes.Internal,
      `credential helper ${program} list: invalid answer (not a JSON object)`,
    );
  }
  const result: Record<string, string> = {};
  for (const [server, username] of Object.entries(answer))
    result[server] = typeof username === 'string' ? username : '';
  return result;
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
  const runHelper =
    options.runCredentialHelper ??
    ((helperName: string, helperRegistry: string) =>
      runDockerCredentialHelper(helperName, helperRegistry, options.environment));
  const helpers = credentialHelpersOf(options);
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
  await makeDirectories(directory, 0o700);
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

/** What `storeRegistryCredentials` returns for a helper (containers/image's wording). */
function storedInHelperDescription(helper: string): string {
  return `credential helper: ${helper}`;
}

function isNamespacedKey(key: string): boolean {
  return key.includes('/');
}

function namespacedKeyError(helper: string): GantryError {
  return new GantryError(
    ErrorCodes.NotSupported,
    `namespaced key is not supported for credential helper ${helper}`,
  );
}

/** The `credHelpers` member of an auth file object: registry → helper name (other values dropped). */
function credHelpersOf(contents: Record<string, unknown>): Record<string, string> {
  const result: Record<string, string> = {};
  if (isRecord(contents.credHelpers)) {
    for (const [registry, helper] of Object.entries(contents.credHelpers)) {
      if (typeof helper === 'string' && helper !== '') result[registry] = helper;
    }
  }
  return result;
}

/**
 * Stores credentials for `key` (a registry, or a namespace or repository within it) for `login`, as
 * containers/image's `SetCredentials`: each of `options.credentialHelpers` (registries.conf
 * `credential-helpers`; default the auth files alone) is tried in order and the first that stores
 * them wins; when all fail, the error lists every failure.
 * - `containers-auth.json` (the auth files): when the primary file's `credHelpers` names a helper
 *   for the registry, `docker-credential-<helper> store` gets `{ServerURL: registry, Username,
 *   Secret}` and the file keeps no secret (an old `auths[key]` entry is dropped); a namespaced key
 *   is refused then (helpers hold registries only). Otherwise `auths[key].auth` =
 *   base64(`user:password`) is written atomically with mode 0600, other members kept. A
 *   `credsStore` member is not used for storing (containers/image ignores it; Docker's own).
 * - any other name: `docker-credential-<name> store` with the registry; namespaced keys refused.
 * Returns where they went, for people (`login -v` prints it): the file's path, or
 * `credential helper: <name>`. Refuses keys that `validateCredentialsKey` refuses
 * (`ERR_GANTRY_USAGE`); `ERR_GANTRY_NOT_SUPPORTED` when every source refused a namespaced key,
 * else `ERR_GANTRY_INTERNAL`. Errors never contain the password.
 */
export async function storeRegistryCredentials(
  key: string,
  credentials: { username: string; password: string },
  options: AuthFileSearchOptions = {},
): Promise<string> {
  validateCredentialsKey(key);
  const failures: GantryError[] = [];
  for (const helper of credentialHelpersOf(options)) {
    try {
      if (helper === authFilesCredentialHelper) {
        return await storeInPrimaryAuthFile(key, credentials, options);
      }
      if (isNamespacedKey(key)) throw namespacedKeyError(helper);
      await storeInDockerCredentialHelper(helper, key, credentials, options.environment);
      return storedInHelperDescription(helper);
    } catch (error) {
      if (!isGantryError(error)) throw error;
      failures.push(error);
    }
  }
  // NotSupported when every source refused the key, else Internal.
  const code = failures.every((failure) => failure.code === ErrorCodes.NotSupported)
    ? ErrorCodes.NotSupported
    : ErrorCodes.Internal;
  throw new GantryError(
    code,
    `storing credentials for ${key}: ${failures.map((failure) => failure.message).join('; ')}`,
  );
}

async function storeInPrimaryAuthFile(
  key: string,
  credentials: { username: string; password: string },
  options: AuthFileSearchOptions,
): Promise<string> {
  const filePath = primaryAuthFilePath(options);
  const contents = await readAuthFileObject(filePath);
  const registry = key.split('/')[0]!;
  const helper = credHelpersOf(contents)[registry];
  if (helper !== undefined) {
    if (isNamespacedKey(key)) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        `updating ${filePath}: ${namespacedKeyError(helper).message} (credHelpers names it for ${registry})`,
      );
    }
    await storeInDockerCredentialHelper(helper, registry, credentials, options.environment);
    // A secret stored in the file before the helper was configured must not stay behind.
    if (isRecord(contents.auths) && Object.hasOwn(contents.auths, key)) {
      delete contents.auths[key];
      await writeAuthFileObject(filePath, contents);
    }
    return storedInHelperDescription(helper);
  }
  const auths = isRecord(contents.auths) ? contents.auths : {};
  auths[key] = { auth: Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64') };
  contents.auths = auths;
  await writeAuthFileObject(filePath, contents);
  return filePath;
}

/**
 * Removes the credentials stored for exactly `key` (`logout`), as containers/image's
 * `RemoveAuthentication`: from every one of `options.credentialHelpers` (not only the first).
 * - `containers-auth.json`: the primary file's `auths[key]` entry, and, when `credHelpers` names a
 *   helper for `key` (a registry), `docker-credential-<helper> erase`;
 * - any other name: `docker-credential-<name> erase` (skipped for namespaced keys).
 * A helper answering "credentials not found" held nothing. Returns false when no source held
 * credentials (the caller reports "not logged in"); throws when a helper failed (naming each
 * failure; the file is then left unchanged).
 */
export async function removeRegistryCredentials(
  key: string,
  options: AuthFileSearchOptions = {},
): Promise<boolean> {
  validateCredentialsKey(key);
  let removed = false;
  const failures: string[] = [];
  for (const helper of credentialHelpersOf(options)) {
    try {
      if (helper === authFilesCredentialHelper) {
        if (await removeFromPrimaryAuthFile(key, options)) removed = true;
      } else if (!isNamespacedKey(key)) {
        if (await eraseFromDockerCredentialHelper(helper, key, options.environment)) removed = true;
      }
    } catch (error) {
      if (!isGantryError(error)) throw error;
      failures.push(error.message);
    }
  }
  if (failures.length > 0) {
    throw new GantryError(ErrorCodes.Internal, `removing credentials for ${key}: ${failures.join('; ')}`);
  }
  return removed;
}

async function removeFromPrimaryAuthFile(key: string, options: AuthFileSearchOptions): Promise<boolean> {
  const filePath = primaryAuthFilePath(options);
  const contents = await readAuthFileObject(filePath);
  let removed = false;
  const helper = credHelpersOf(contents)[key];
  if (helper !== undefined) {
    try {
      removed = await eraseFromDockerCredentialHelper(helper, key, options.environment);
    } catch (error) {
      throw new GantryError(ErrorCodes.Internal, `updating ${filePath}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  if (isRecord(contents.auths) && Object.hasOwn(contents.auths, key)) {
    delete contents.auths[key];
    await writeAuthFileObject(filePath, contents);
    removed = true;
  }
  return removed;
}

/**
 * Removes every stored credential (`logout --all`), as containers/image's `RemoveAllAuthentication`:
 * - `containers-auth.json`: `docker-credential-<helper> erase` for every registry the primary file's
 *   `credHelpers` names (an answer "credentials not found" is fine), then the file's `auths` are
 *   emptied; other members, `credHelpers` and `credsStore` included, stay (containers/image also
 *   drops `credHelpers`; Gantry keeps this configuration). A failing helper leaves the file as it was.
 * - any other name: `docker-credential-<name> list`, then `erase` for each server listed; a helper
 *   program that is not installed is skipped.
 * Throws after trying every source when any failed, naming each failure.
 */
export async function removeAllRegistryCredentials(options: AuthFileSearchOptions = {}): Promise<void> {
  const failures: string[] = [];
  for (const helper of credentialHelpersOf(options)) {
    try {
      if (helper === authFilesCredentialHelper) {
        await removeAllFromPrimaryAuthFile(options);
        continue;
      }
      let servers: Record<string, string>;
      try {
        servers = await listDockerCredentialHelper(helper, options.environment);
      } catch (error) {
        if (error instanceof CredentialHelperError && error.missingProgram) continue;
        throw error;
      }
      for (const server of Object.keys(servers)) {
        await eraseFromDockerCredentialHelper(helper, server, options.environment);
      }
    } catch (error) {
      if (!isGantryError(error)) throw error;
      failures.push(error.message);
    }
  }
  if (failures.length > 0) {
    throw new GantryError(ErrorCodes.Internal, `removing all credentials: ${failures.join('; ')}`);
  }
}

async function removeAllFromPrimaryAuthFile(options: AuthFileSearchOptions): Promise<void> {
  const filePath = primaryAuthFilePath(options);
  const contents = await readAuthFileObject(filePath);
  for (const [registry, helper] of Object.entries(credHelpersOf(contents))) {
    try {
      await eraseFromDockerCredentialHelper(helper, registry, options.environment);
    } catch (error) {
      throw new GantryError(ErrorCodes.Internal, `updating ${filePath}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  if (contents.auths === undefined) return;
  contents.auths = {};
  await writeAuthFileObject(filePath, contents);
}
