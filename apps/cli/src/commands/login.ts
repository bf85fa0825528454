/**
 * `gantry login` / `gantry logout`: skopeo's (containers/common `pkg/auth`) registry login. Credentials
 * are checked against the registry by the docker transport's `checkLogin`, then stored in the primary
 * auth file (core's `storeRegistryCredentials`: atomic, mode 0600). Credentials are never printed or
 * logged, with `--debug` neither.
 */
import { createInterface } from 'node:readline';
import {
  type AuthFileSearchOptions,
  authFileSearchPaths,
  ErrorCodes,
  findRegistryCredentials,
  GantryError,
  isNameOnly,
  parseNormalizedNamed,
  primaryAuthFilePath,
  readAuthFile,
  removeAllRegistryCredentials,
  removeRegistryCredentials,
  storeRegistryCredentials,
  type Transport,
  type TransportContext,
  validateCredentialsKey,
} from '@gantry/core';
import { type FlagSpec, goQuote, UsageError } from '../args.js';
import type { CommandContext, CommandDefinition } from '../context.js';
import { wrapError } from '../errors.js';

/** The docker transport's login check (`DockerTransport.checkLogin`). */
interface LoginCapableTransport extends Transport {
  checkLogin(registry: string, context?: TransportContext): Promise<void>;
}

/**
 * The auth-file key and registry host for a `login`/`logout` argument, as containers/common's
 * parseCredentialsKey: an `http[s]://` prefix is dropped; `registry[/namespace…]` is accepted, tags
 * and digests are not.
 */
export function credentialsKeyFor(argument: string): { key: string; registry: string } {
  let key = argument.replace(/^https?:\/\//, '');
  if (key.endsWith('/')) key = key.replace(/\/+$/, '');
  if (key === '') throw new UsageError(`invalid registry ${goQuote(argument)}`);
  validateCredentialsKey(key);
  const registry = key.split('/')[0]!;
  if (key !== registry) {
    let named: ReturnType<typeof parseNormalizedNamed>;
    try {
      named = parseNormalizedNamed(key);
    } catch (error) {
      throw wrapError(`parse reference from ${goQuote(key)}`, error);
    }
    if (!isNameOnly(named)) throw new UsageError(`credentials key has tag or digest: ${goQuote(key)}`);
  }
  return { key, registry };
}

function authFileOptions(context: CommandContext): AuthFileSearchOptions {
  const options: AuthFileSearchOptions = { environment: context.io.env };
  const authFile = context.flags.get('authfile');
  if (typeof authFile === 'string' && authFile !== '') options.authFilePath = authFile;
  return options;
}

/** Reads lines from stdin, one at a time, printing a prompt on stderr first. */
function createPrompter(context: CommandContext): (prompt: string) => Promise<string> {
  let lines: AsyncIterator<string> | undefined;
  return async (prompt) => {
    const stdin = context.io.stdin;
    if (!stdin) throw new UsageError(`getting username and password: no input to read ${prompt.trim()} from`);
    lines ??= createInterface({ input: stdin, terminal: false })[Symbol.asyncIterator]();
    context.io.stderr.write(prompt);
    const next = await lines.next();
    if (next.done) throw new UsageError(`getting username and password: reading ${prompt.trim()} EOF`);
    return next.value;
  };
}

async function readAllStdin(context: CommandContext): Promise<string> {
  const stdin = context.io.stdin;
  if (!stdin) throw new UsageError('--password-stdin: no standard input');
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(Buffer.from(chunk as string | Uint8Array));
  return Buffer.concat(chunks).toString('utf8');
}

async function dockerTransportFor(context: CommandContext): Promise<LoginCapableTransport> {
  const transport = (await context.transports()).get('docker');
  if (!transport || typeof (transport as Partial<LoginCapableTransport>).checkLogin !== 'function') {
    throw new GantryError(
      ErrorCodes.NotSupported,
      'login needs the docker transport (@gantry/transport-docker), which is not installed',
    );
  }
  return transport as LoginCapableTransport;
}

function loginContext(
  context: CommandContext,
  credentials: { username: string; password: string } | undefined,
): TransportContext {
  const docker: Record<string, unknown> = {};
  if (credentials) docker.credentials = credentials;
  const tlsVerify = context.flags.get('tls-verify');
  if (typeof tlsVerify === 'boolean') docker.tlsVerify = tlsVerify;
  else if (context.global.tlsVerify !== undefined) docker.tlsVerify = context.global.tlsVerify;
  const certDirectory = context.flags.get('cert-dir');
  if (typeof certDirectory === 'string' && certDirectory !== '') docker.certDirectory = certDirectory;
  const authFile = context.flags.get('authfile');
  if (typeof authFile === 'string' && authFile !== '') docker.authFilePath = authFile;
  const transportContext: TransportContext = { transportOptions: { docker } };
  if (context.signal) transportContext.signal = context.signal;
  if (context.global.registriesConfPath) transportContext.registriesConfPath = context.global.registriesConfPath;
  return transportContext;
}

async function runLogin(context: CommandContext): Promise<void> {
  const { flags, positionals } = context;
  if (positionals.length > 1) throw new UsageError('login accepts only one registry to login to');
  if (positionals.length === 0) throw new UsageError('please provide a registry to login to');
  const { key, registry } = credentialsKeyFor(positionals[0]!);
  const fileOptions = authFileOptions(context);

  if (flags.get('get-login') === true) {
    const found = await findRegistryCredentials(key, fileOptions);
    if (!found || found.username === '') throw new GantryError(ErrorCodes.Usage, `not logged into ${key}`);
    context.print(`${found.username}\n`);
    return;
  }

  let password = flags.get('password') as string | undefined;
  let username = flags.get('username') as string | undefined;
  if (flags.get('password-stdin') === true) {
    if (password !== undefined) throw new UsageError("Can't specify both --password-stdin and --password");
    if (username === undefined || username === '')
      throw new UsageError('Must provide --username with --password-stdin');
    password = (await readAllStdin(context)).replace(/\r?\n$/, '');
  }
  const transport = await dockerTransportFor(context);
  const prompt = createPrompter(context);

  if ((username === undefined || username === '') && (password === undefined || password === '')) {
    const existing = await findRegistryCredentials(key, fileOptions).catch(() => undefined);
    if (existing && existing.username !== '') {
      context.print(`Authenticating with existing credentials for ${key}\n`);
      try {
        await transport.checkLogin(
          key,
          loginContext(context, { username: existing.username, password: existing.password }),
        );
        context.print(`Existing credentials are valid. Already logged in to ${registry}\n`);
        return;
      } catch {
        context.print('Existing credentials are invalid, please enter valid username and password\n');
      }
    }
  }
  if (username === undefined || username === '') username = (await prompt('Username: ')).trim();
  if (username === '') throw new UsageError('getting username and password: username can’t be empty');
  if (password === undefined || password === '') password = await prompt('Password: ');
  const credentials = { username, password };

  context.logger.debug(`Checking the credentials of user ${goQuote(username)} against ${registry}`);
  try {
    await transport.checkLogin(key, loginContext(context, credentials));
  } catch (error) {
    throw wrapError(`authenticating creds for ${goQuote(key)}`, error);
  }
  const written = await storeRegistryCredentials(key, credentials, fileOptions);
  if (flags.get('verbose') === true) context.print(`Used: ${written}\n`);
  context.print('Login Succeeded!\n');
}

async function runLogout(context: CommandContext): Promise<void> {
  const { flags, positionals } = context;
  const fileOptions = authFileOptions(context);
  if (flags.get('all') === true) {
    if (positionals.length > 0) throw new UsageError('--all takes no arguments');
    await removeAllRegistryCredentials(fileOptions);
    context.print('Removed login credentials for all registries\n');
    return;
  }
  if (positionals.length > 1) throw new UsageError('logout accepts only one registry to logout from');
  if (positionals.length === 0) throw new UsageError('please provide a registry to logout from');
  const { key } = credentialsKeyFor(positionals[0]!);
  if (await removeRegistryCredentials(key, fileOptions)) {
    context.print(`Removed login credentials for ${key}\n`);
    return;
  }
  // Not in the file login writes: tell whether another tool (docker login) stored some elsewhere.
  const primary = primaryAuthFilePath(fileOptions);
  for (const location of authFileSearchPaths(fileOptions)) {
    if (location.path === primary) continue;
    const contents = await readAuthFile(location).catch(() => undefined);
    if (contents && Object.hasOwn(contents.auths, key)) {
      throw new GantryError(
        ErrorCodes.Usage,
        `Not logged into ${key} with current tool. Existing credentials were established via docker login. Please use docker logout instead.`,
      );
    }
  }
  throw new GantryError(ErrorCodes.Usage, `not logged into ${key}`);
}

const authFileFlag: FlagSpec = {
  name: 'authfile',
  kind: 'string',
  description: 'path of the authentication file. Use REGISTRY_AUTH_FILE environment variable to override',
};

/** `gantry login REGISTRY`: skopeo login. */
export const loginCommand: CommandDefinition = {
  name: 'login',
  use: 'login [command options] REGISTRY',
  short: 'Login to a container registry',
  long: 'Login to a container registry on a specified server.',
  examples: 'gantry login quay.io',
  flags: [
    authFileFlag,
    { name: 'cert-dir', kind: 'string', description: 'use certificates at the specified path to access the registry' },
    { name: 'get-login', kind: 'bool', description: 'Return the current login user for the registry' },
    { name: 'password', short: 'p', kind: 'string', description: 'Password for registry' },
    { name: 'password-stdin', kind: 'bool', description: 'Take the password from stdin' },
    {
      name: 'tls-verify',
      kind: 'bool',
      description: 'require HTTPS and verify certificates when accessing the registry',
    },
    { name: 'username', short: 'u', kind: 'string', description: 'Username for registry' },
    { name: 'verbose', short: 'v', kind: 'bool', description: 'Write more detailed information to stdout' },
  ],
  run: runLogin,
};

/** `gantry logout REGISTRY` / `gantry logout --all`: skopeo logout. */
export const logoutCommand: CommandDefinition = {
  name: 'logout',
  use: 'logout [command options] REGISTRY',
  short: 'Logout of a container registry',
  long: 'Logout of a container registry on a specified server.',
  examples: 'gantry logout quay.io',
  flags: [
    {
      name: 'all',
      short: 'a',
      kind: 'bool',
      description: 'Remove the cached credentials for all registries in the auth file',
    },
    authFileFlag,
    {
      name: 'tls-verify',
      kind: 'bool',
      description: 'require HTTPS and verify certificates when accessing the registry',
    },
  ],
  run: runLogout,
};
