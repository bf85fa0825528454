/**
 * `gantry login` / `gantry logout`: skopeo's (containers/common `pkg/auth`) registry login. Credentials
 * are checked against the registry by the docker transport's `checkLogin`, then stored by core's
 * `storeRegistryCredentials` (containers/image's SetCredentials): in the primary auth file (atomic,
 * mode 0600), or, when its `credHelpers` names a helper for the registry, with
 * `docker-credential-<name> store`; registries.conf `credential-helpers` (`--registries-conf`)
 * chooses the stores. `logout` erases from every store (helpers too), `logout --all` from all of them.
 * Credential helpers run with the command's environment (its PATH finds them). Credentials are never
 * printed or logged, with `--debug` neither.
 */
import { stat } from 'node:fs/promises';
import {
  type AuthFileSearchOptions,
  findRegistryCredentials,
  loadRegistriesConfiguration,
  removeAllRegistryCredentials,
  removeRegistryCredentials,
  storeRegistryCredentials,
  validateCredentialsKey,
} from '@gantry/containers-config';
import {
  ErrorCodes,
  GantryError,
  hasErrorCode,
  isNameOnly,
  parseNormalizedNamed,
  type Transport,
  type TransportContext,
} from '@gantry/core';
import { type FlagSpec, goQuote, UsageError } from '../args.js';
import type { CommandContext, CommandDefinition } from '../context.js';
import { wrapError } from '../errors.js';
import { createStdinReader, EndOfInputError, type StdinReader } from '../terminal-input.js';

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
  let key = argument;
  if (/^https?:\/\//.test(argument)) {
    // A URL stands for its host[:port]; the rest is dropped.
    try {
      key = new URL(argument).host;
    } catch (error) {
      throw new UsageError(`trimming http{s} prefix: ${(error as Error).message}`);
    }
  }
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
    if (!isNameOnly(named))
      throw new UsageError(`reference ${goQuote(named.toString())} contains tag or digest`);
  }
  return { key, registry };
}

/**
 * Where credentials are looked up and stored: `--authfile` (else `REGISTRY_AUTH_FILE` and the
 * default files), and registries.conf `credential-helpers` (the global `--registries-conf`, else the
 * system's files), as containers/image reads them for login and logout.
 */
async function authFileOptions(context: CommandContext): Promise<AuthFileSearchOptions> {
  const options: AuthFileSearchOptions = { environment: context.io.env };
  const authFile = context.flags.get('authfile');
  if (typeof authFile === 'string' && authFile !== '') options.authFilePath = authFile;
  const registriesConf = await loadRegistriesConfiguration({
    environment: context.io.env,
    ...(context.global.registriesConfPath ? { registriesConfPath: context.global.registriesConfPath } : {}),
  });
  options.credentialHelpers = registriesConf.credentialHelpers;
  return options;
}

/**
 * The login prompts, as containers/common's: the prompt goes to stdout, the username is a line of stdin,
 * the password is read without echo when stdin is a terminal (a line otherwise).
 */
function createPrompter(
  context: CommandContext,
  reader: () => StdinReader | undefined,
): (prompt: string, what: 'username' | 'password') => Promise<string> {
  return async (prompt, what) => {
    const input = reader();
    if (!input)
      throw new UsageError(`getting username and password: cannot prompt for ${what} without stdin`);
    try {
      if (what === 'password') return await input.readSecret(() => context.print(prompt));
      context.print(prompt);
      return await input.readLine();
    } catch (error) {
      if (error instanceof EndOfInputError)
        throw new UsageError(`getting username and password: reading ${what}: EOF`);
      throw error;
    }
  };
}

/** `--password-stdin`: every line of stdin, joined without their line ends (Go's bufio.Scanner). */
async function readPasswordFromStdin(input: StdinReader | undefined): Promise<string> {
  if (!input) throw new UsageError('--password-stdin: no standard input');
  return (await input.readAll())
    .split('\n')
    .map((line) => line.replace(/\r$/, ''))
    .join('');
}

async function dockerTransportFor(context: CommandContext): Promise<LoginCapableTransport> {
  const transport = (await context.transports(['docker'])).get('docker');
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
  if (context.global.userAgentPrefix !== undefined) docker.userAgentPrefix = context.global.userAgentPrefix;
  const transportContext: TransportContext = { transportOptions: { docker } };
  if (context.signal) transportContext.signal = context.signal;
  if (context.global.registriesConfPath)
    transportContext.registriesConfPath = context.global.registriesConfPath;
  return transportContext;
}

async function runLogin(context: CommandContext): Promise<void> {
  let input: StdinReader | undefined;
  const reader = () => {
    if (!input && context.io.stdin) input = createStdinReader(context.io.stdin, context.signal);
    return input;
  };
  try {
    await login(context, reader);
  } finally {
    input?.close();
  }
}

async function login(context: CommandContext, reader: () => StdinReader | undefined): Promise<void> {
  const { flags, positionals } = context;
  if (positionals.length > 1) throw new UsageError('login accepts only one registry to login to');
  if (positionals.length === 0) throw new UsageError('please provide a registry to login to');
  const { key, registry } = credentialsKeyFor(positionals[0]!);
  const fileOptions = await authFileOptions(context);

  const existing = await findRegistryCredentials(key, fileOptions).catch((error: unknown) => {
    throw wrapError('get credentials', error);
  });
  if (flags.get('get-login') === true) {
    if (!existing || existing.username === '')
      throw new GantryError(ErrorCodes.Usage, `not logged into ${key}`);
    context.print(`${existing.username}\n`);
    return;
  }
  if (existing?.identityToken) {
    throw new GantryError(ErrorCodes.Usage, 'currently logged in, auth file contains an Identity token');
  }

  let password = flags.get('password') as string | undefined;
  let username = flags.get('username') as string | undefined;
  if (flags.get('password-stdin') === true) {
    if (password !== undefined) throw new UsageError("Can't specify both --password-stdin and --password");
    if (username === undefined || username === '')
      throw new UsageError('Must provide --username with --password-stdin');
    password = await readPasswordFromStdin(reader());
  }
  const transport = await dockerTransportFor(context);
  const prompt = createPrompter(context, reader);

  if ((username === undefined || username === '') && (password === undefined || password === '')) {
    if (existing && existing.username !== '' && existing.password !== '') {
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
  if (username === undefined || username === '') {
    const previous = existing?.username ?? '';
    username = await prompt(previous ? `Username (${previous}): ` : 'Username: ', 'username');
    if (username.trim() === '') username = previous;
  }
  if (password === undefined || password === '') {
    password = await prompt('Password: ', 'password');
    context.print('\n');
  }
  const credentials = { username: username.trim(), password };

  context.logger.debug(`Checking the credentials of user ${goQuote(username)} against ${registry}`);
  try {
    await transport.checkLogin(key, loginContext(context, credentials));
  } catch (error) {
    if (hasErrorCode(error, ErrorCodes.Unauthorized)) {
      throw new GantryError(
        ErrorCodes.Unauthorized,
        `logging into ${goQuote(key)}: invalid username/password`,
      );
    }
    throw wrapError(`authenticating creds for ${goQuote(key)}`, error);
  }
  const written = await storeRegistryCredentials(key, credentials, fileOptions);
  context.logger.debug(`Stored the credentials for ${key} in ${written}`);
  // Go's fmt.Fprintln("Used: ", path): two spaces. `written` is a path or "credential helper: <name>".
  if (flags.get('verbose') === true) context.print(`Used:  ${written}\n`);
  context.print('Login Succeeded!\n');
}

async function runLogout(context: CommandContext): Promise<void> {
  const { flags, positionals } = context;
  const fileOptions = await authFileOptions(context);
  if (fileOptions.authFilePath !== undefined) {
    try {
      await stat(fileOptions.authFilePath);
    } catch (error) {
      throw new GantryError(
        ErrorCodes.Usage,
        `checking authfile: stat ${fileOptions.authFilePath}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (error as Error).message}`,
      );
    }
  }
  if (flags.get('all') === true) {
    if (positionals.length > 0) throw new UsageError('--all takes no arguments');
    await removeAllRegistryCredentials(fileOptions);
    context.print('Removed login credentials for all registries\n');
    return;
  }
  if (positionals.length > 1) throw new UsageError('logout accepts only one registry to logout from');
  if (positionals.length === 0) throw new UsageError('please provide a registry to logout from');
  const { key } = credentialsKeyFor(positionals[0]!);
  const removed = await removeRegistryCredentials(key, fileOptions).catch((error: unknown) => {
    throw wrapError(`logging out of ${goQuote(key)}`, error);
  });
  if (removed) {
    context.print(`Removed login credentials for ${key}\n`);
    return;
  }
  // Not in the file login writes nor in a helper. Valid credentials elsewhere (docker login's config.json) are
  // reported, as containers/common does, and left alone.
  const elsewhere = await findRegistryCredentials(key, fileOptions).catch(() => undefined);
  if (elsewhere && elsewhere.username !== '' && elsewhere.password !== '') {
    const transport = await dockerTransportFor(context).catch(() => undefined);
    const valid = await transport
      ?.checkLogin(key, loginContext(context, { username: elsewhere.username, password: elsewhere.password }))
      .then(() => true)
      .catch(() => false);
    if (valid) {
      context.print(
        `Not logged into ${key} with current tool. Existing credentials were established via docker login. Please use docker logout instead.\n`,
      );
      return;
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
    {
      name: 'cert-dir',
      kind: 'string',
      description: 'use certificates at the specified path to access the registry',
    },
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
