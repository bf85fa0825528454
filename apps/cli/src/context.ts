import type { PlatformOverrides, Transport, TransportRegistry } from '@gantry/core';
import type { FlagSpec, FlagValue } from './args.js';
import type { Logger } from './logger.js';

/** The help's pointer to the `transport:details` syntax, for the commands that take image names. */
export const imageNamesHelp =
  'See containers-transports(5) for the expected format of each transport\'s "details", and "gantry transports" for the transports installed';

/** Something text and bytes can be written to (process.stdout, a test buffer). */
export interface OutputStream {
  write(chunk: string | Uint8Array): unknown;
}

/** The process environment `runCli` runs in; tests pass their own. */
export interface CliIo {
  stdout: OutputStream;
  stderr: OutputStream;
  stdin?: NodeJS.ReadableStream;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** Whether stderr is a terminal: coloured log lines and redrawn progress bars. */
  isTTY: boolean;
  /** Terminal width for progress bars; default `$COLUMNS` or 80. */
  columns?: number;
  /** Aborts the running command (the bin aborts it on SIGINT / SIGTERM); combined with `--command-timeout`. */
  signal?: AbortSignal;
}

/** Global options (skopeo's root flags), valid before or after the command name. */
export interface GlobalOptions {
  debug: boolean;
  policyPath: string | undefined;
  insecurePolicy: boolean;
  registriesConfPath: string | undefined;
  /** `--registries.d`: the containers-registries.d directory (signature storage); undefined = the default. */
  registriesDirectoryPath?: string | undefined;
  temporaryDirectory: string | undefined;
  /** `--user-agent-prefix`: registry requests send `User-Agent: <prefix> gantry/<version>`; undefined when empty. */
  userAgentPrefix: string | undefined;
  platform: PlatformOverrides;
  /** Milliseconds; undefined = no timeout. */
  commandTimeoutMs: number | undefined;
  /** `--registry-idle-timeout`: the docker transport's `idleTimeoutMs` (undefined: its default). */
  registryIdleTimeoutMs?: number | undefined;
  /** The deprecated global `--tls-verify`; undefined when not given. */
  tlsVerify: boolean | undefined;
}

/** What a command's `run` receives. */
export interface CommandContext {
  io: CliIo;
  global: GlobalOptions;
  logger: Logger;
  /** The command's own flag values. */
  flags: Map<string, FlagValue>;
  positionals: string[];
  /** Aborts on `--command-timeout`. */
  signal: AbortSignal | undefined;
  /**
   * Loads transport plugins lazily and returns the registry. `wanted` names the transports the command
   * will use (from its `transport:reference` arguments, see `transportNamesOf`); only plugins that may
   * provide them are imported, falling back to all when one is still missing. Without `wanted`, every
   * plugin is imported. A plugin is imported at most once per run.
   */
  transports(wanted?: readonly string[]): Promise<TransportRegistry>;
  /** Writes text or bytes to stdout. */
  print(chunk: string | Uint8Array): void;
}

export interface CommandDefinition {
  name: string;
  /** `inspect [command options] IMAGE-NAME` */
  use: string;
  short: string;
  long: string;
  examples?: string;
  flags: FlagSpec[];
  /** Left out of the command list of `gantry --help`, like skopeo's hidden commands. */
  hidden?: boolean;
  /** The fixed words its arguments are chosen from, offered by shell completion (default: file names). */
  completionWords?: readonly string[];
  /** The transports listed in the help's `{transports}`; default every installed one. */
  supportsTransport?(transport: Transport): boolean;
  run(context: CommandContext): Promise<void>;
}
