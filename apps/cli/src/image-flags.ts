/**
 * Flags shared by commands that open images (skopeo's imageFlags / retryFlags), and their mapping to
 * a `TransportContext`. Registry flags (`--creds`, `--tls-verify`, `--authfile`…) become
 * `transportOptions.docker` (the docker transport's `DockerContextOptions`); flags that only concern
 * transports Gantry does not have yet (the docker daemon) are recognised but rejected with an
 * explanation.
 */
import type { RetrySettings, TransportContext } from '@gantry/core';
import type { OciContextOptions } from '@gantry/transport-oci';
import { type FlagSpec, type FlagValue, formatGoDuration, UsageError } from './args.js';
import type { CommandContext, GlobalOptions } from './context.js';
import { errorMessage } from './errors.js';

/** skopeo's image flags with `prefix` ('' for inspect, 'src-' / 'dest-' for copy). */
export function imageFlagSpecs(prefix: '' | 'src-' | 'dest-'): FlagSpec[] {
  const flags: FlagSpec[] = [
    {
      name: `${prefix}shared-blob-dir`,
      kind: 'string',
      valueName: 'DIRECTORY',
      description: 'DIRECTORY to use to share blobs across OCI repositories',
    },
    {
      name: `${prefix}authfile`,
      kind: 'string',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: skopeo's help text names the variable literally.
      description: 'path of the authentication file. Default is ${XDG_RUNTIME_DIR}/containers/auth.json',
    },
    {
      name: `${prefix}cert-dir`,
      kind: 'string',
      valueName: 'PATH',
      description: 'use certificates at PATH (*.crt, *.cert, *.key) to connect to the registry or daemon',
    },
    {
      name: `${prefix}creds`,
      kind: 'string',
      valueName: 'USERNAME[:PASSWORD]',
      description: 'Use USERNAME[:PASSWORD] for accessing the registry',
    },
    {
      name: `${prefix}daemon-host`,
      kind: 'string',
      valueName: 'HOST',
      description: 'use docker daemon host at HOST (docker-daemon: only)',
    },
    {
      name: `${prefix}no-creds`,
      kind: 'bool',
      description: 'Access the registry anonymously',
    },
    {
      name: `${prefix}password`,
      kind: 'string',
      description: 'Password for accessing the registry',
    },
    {
      name: `${prefix}registry-token`,
      kind: 'string',
      description: 'Provide a Bearer token for accessing the registry',
    },
    {
      name: `${prefix}tls-verify`,
      kind: 'bool',
      description: 'require HTTPS and verify certificates when talking to the container registry or daemon',
    },
    {
      name: `${prefix}username`,
      kind: 'string',
      description: 'Username for accessing the registry',
    },
  ];
  return flags;
}

/**
 * skopeo's hidden short names of copy's and sync's `--src-creds` and `--dest-creds`: `--screds` and
 * `--dcreds` (accepted, not listed in help).
 */
export function credsAliasSpec(prefix: 'src-' | 'dest-'): FlagSpec {
  return {
    name: prefix === 'src-' ? 'screds' : 'dcreds',
    aliasOf: `${prefix}creds`,
    kind: 'string',
    valueName: 'USERNAME[:PASSWORD]',
    description: 'Use USERNAME[:PASSWORD] for accessing the registry',
    hidden: true,
  };
}

/** `--retry-times` and `--retry-delay`. */
export const retryFlagSpecs: FlagSpec[] = [
  // An int, as skopeo 1.9.3's (`strconv.ParseInt` errors); a negative count retries nothing.
  { name: 'retry-times', kind: 'int', description: 'the number of times to possibly retry' },
  {
    name: 'retry-delay',
    kind: 'duration',
    description: 'Fixed delay between retries (default: exponential backoff)',
  },
];

/** skopeo's warning before a retry: `Failed, retrying in 2s ... (2/3). Error: …`. */
export function retryWarning(attempt: number, retryTimes: number, error: unknown, delayMs: number): string {
  return `Failed, retrying in ${formatGoDuration(delayMs)} ... (${attempt}/${retryTimes}). Error: ${errorMessage(error)}`;
}

/**
 * The command's retry policy (`--retry-times`, `--retry-delay`), for core's `withRetry`: every
 * retryable failure of a command, its first request included, goes through it, with a warning before
 * each retry as skopeo prints it.
 */
export function retrySettingsFrom(context: CommandContext): RetrySettings {
  const retryTimes = Math.max(0, (context.flags.get('retry-times') as number | undefined) ?? 0);
  return {
    retryTimes,
    retryDelayMs: context.flags.get('retry-delay') as number | undefined,
    signal: context.signal,
    onRetry: (attempt, error, delayMs) =>
      context.logger.warn(retryWarning(attempt, retryTimes, error, delayMs)),
  };
}

/** The TransportContext for one side of an operation. */
export function transportContextFrom(
  global: GlobalOptions,
  flags: Map<string, FlagValue>,
  prefix: '' | 'src-' | 'dest-',
  signal: AbortSignal | undefined,
): TransportContext {
  const context: TransportContext = { platform: { ...global.platform } };
  if (signal) context.signal = signal;
  if (global.temporaryDirectory) context.temporaryDirectory = global.temporaryDirectory;
  if (global.registriesConfPath) context.registriesConfPath = global.registriesConfPath;
  if (global.registriesDirectoryPath) context.registriesDirectoryPath = global.registriesDirectoryPath;
  const transportOptions: Record<string, unknown> = {};
  const shared = flags.get(`${prefix}shared-blob-dir`);
  if (typeof shared === 'string' && shared !== '') {
    transportOptions.oci = { sharedBlobDirectory: shared } satisfies OciContextOptions;
  }
  const docker = dockerOptionsFrom(global, flags, prefix);
  if (Object.keys(docker).length > 0) transportOptions.docker = docker;
  const daemonHost = flags.get(`${prefix}daemon-host`);
  if (typeof daemonHost === 'string' && daemonHost !== '')
    transportOptions['docker-daemon'] = { host: daemonHost };
  if (Object.keys(transportOptions).length > 0) context.transportOptions = transportOptions;
  return context;
}

/**
 * Adds `options` to `context.transportOptions[name]` (merged into what is there); nothing when empty.
 */
export function addTransportOptions(context: TransportContext, name: string, options: object): void {
  if (Object.keys(options).length === 0) return;
  const existing = context.transportOptions?.[name];
  context.transportOptions = {
    ...context.transportOptions,
    [name]: { ...(typeof existing === 'object' && existing !== null ? existing : {}), ...options },
  };
}

/**
 * The docker transport's options (`DockerContextOptions`) from the registry flags with `prefix`, with
 * skopeo's rules: `--creds` excludes `--username`/`--password` and `--no-creds`; `--username` and
 * `--password` go together; `--tls-verify` unset lets registries.conf decide (the hidden global
 * `--tls-verify` applies when the command's is not given); for copy, `--authfile` applies to the side
 * whose `--src-authfile`/`--dest-authfile` is not given. The global `--user-agent-prefix` becomes
 * `userAgentPrefix`, `--registry-idle-timeout` `idleTimeoutMs`; copy's `--dest-precompute-digests` becomes the destination's `precomputeDigests`.
 * Throws a `UsageError` naming the conflict.
 */
export function dockerOptionsFrom(
  global: GlobalOptions,
  flags: Map<string, FlagValue>,
  prefix: '' | 'src-' | 'dest-',
): Record<string, unknown> {
  const text = (name: string): string | undefined => {
    const value = flags.get(`${prefix}${name}`);
    return typeof value === 'string' ? value : undefined;
  };
  const creds = text('creds');
  const username = text('username');
  const password = text('password');
  const registryToken = text('registry-token');
  const noCredentials = flags.get(`${prefix}no-creds`) === true;
  if (creds !== undefined && noCredentials)
    throw new UsageError('creds and no-creds cannot be specified at the same time');
  if (username !== undefined && noCredentials)
    throw new UsageError('username and no-creds cannot be specified at the same time');
  if (creds !== undefined && username !== undefined)
    throw new UsageError('creds and username cannot be specified at the same time');
  if ((username === undefined) !== (password === undefined)) {
    throw new UsageError(
      username !== undefined
        ? 'password must be specified when username is specified'
        : 'username must be specified when password is specified',
    );
  }
  const options: Record<string, unknown> = {};
  if (creds !== undefined) options.credentials = creds;
  if (username !== undefined) options.credentials = { username, password: password ?? '' };
  if (registryToken !== undefined) options.registryToken = registryToken;
  if (noCredentials) options.noCredentials = true;
  const tlsVerify = flags.get(`${prefix}tls-verify`);
  if (typeof tlsVerify === 'boolean') options.tlsVerify = tlsVerify;
  else if (global.tlsVerify !== undefined) options.tlsVerify = global.tlsVerify;
  const certDirectory = text('cert-dir');
  if (certDirectory !== undefined && certDirectory !== '') options.certDirectory = certDirectory;
  const authFile = text('authfile') || (prefix !== '' ? flags.get('authfile') : undefined);
  if (typeof authFile === 'string' && authFile !== '') options.authFilePath = authFile;
  if (global.userAgentPrefix !== undefined) options.userAgentPrefix = global.userAgentPrefix;
  if (global.registryIdleTimeoutMs !== undefined) options.idleTimeoutMs = global.registryIdleTimeoutMs;
  if (prefix === 'dest-' && flags.get('dest-precompute-digests') === true) options.precomputeDigests = true;
  return options;
}
