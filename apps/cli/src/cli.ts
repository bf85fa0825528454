/**
 * The `gantry` command: argument dispatch, global options, help, exit codes. skopeo-compatible:
 * the same commands, flags, output and exit codes (0 success, 2 image not found, 1 anything else),
 * errors on stderr in skopeo's log format.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, GantryError, hasErrorCode, isGantryError, type TransportRegistry } from '@gantry/core';
import {
  type FlagSpec,
  type FlagValue,
  formatFlagUsages,
  parseArguments,
  rejectUnsupportedFlags,
  UsageError,
} from './args.js';
import { createCompletionCommand } from './commands/completion.js';
import { copyCommand } from './commands/copy.js';
import { deleteCommand } from './commands/delete.js';
import { inspectCommand } from './commands/inspect.js';
import { listTagsCommand } from './commands/list-tags.js';
import { loginCommand, logoutCommand } from './commands/login.js';
import { manifestDigestCommand } from './commands/manifest-digest.js';
import {
  generateSigstoreKeyCommand,
  standaloneSignCommand,
  standaloneVerifyCommand,
  untrustedSignatureDumpCommand,
} from './commands/signing.js';
import { syncCommand } from './commands/sync.js';
import { transportsCommand } from './commands/transports.js';
import type { CliIo, CommandContext, CommandDefinition, GlobalOptions } from './context.js';
import { errorMessage } from './errors.js';
import { createLogger, type Logger } from './logger.js';
import { cliPackageDirectory, createTransportLoader } from './plugins.js';

export type { CliIo } from './context.js';

/** Exit codes, as skopeo's. */
export const ExitCodes = { success: 0, failure: 1, imageNotFound: 2 } as const;

/** The commands gantry implements. */
export const commands: readonly CommandDefinition[] = [
  createCompletionCommand(() => ({ commands, globalFlags })),
  copyCommand,
  deleteCommand,
  generateSigstoreKeyCommand,
  inspectCommand,
  listTagsCommand,
  loginCommand,
  logoutCommand,
  manifestDigestCommand,
  syncCommand,
  standaloneSignCommand,
  standaloneVerifyCommand,
  transportsCommand,
  untrustedSignatureDumpCommand,
];

/** skopeo commands gantry does not implement (yet): a clear error instead of "unrecognized command". */
const unimplementedSkopeoCommands = new Set(['layers', 'proxy']);

const unsupportedGlobal = 'it is not available in gantry yet';

/** skopeo's persistent (global) flags, accepted before or after the command name. */
export const globalFlags: FlagSpec[] = [
  { name: 'debug', kind: 'bool', description: 'enable debug output' },
  { name: 'policy', kind: 'string', description: 'Path to a trust policy file' },
  { name: 'insecure-policy', kind: 'bool', description: 'run the tool without any policy check' },
  {
    name: 'override-arch',
    kind: 'string',
    valueName: 'ARCH',
    description: 'use ARCH instead of the architecture of the machine for choosing images',
  },
  {
    name: 'override-os',
    kind: 'string',
    valueName: 'OS',
    description: 'use OS instead of the running OS for choosing images',
  },
  {
    name: 'override-variant',
    kind: 'string',
    valueName: 'VARIANT',
    description: 'use VARIANT instead of the running architecture variant for choosing images',
  },
  { name: 'command-timeout', kind: 'duration', description: 'timeout for the command execution' },
  {
    name: 'registry-idle-timeout',
    kind: 'duration',
    valueName: 'DURATION',
    description:
      'fail a registry request whose server sends nothing for DURATION (waiting for its answer or the next bytes) (default 5m)',
  },
  { name: 'registries-conf', kind: 'string', description: 'path to the registries.conf file', hidden: true },
  { name: 'tmpdir', kind: 'string', description: 'directory used to store temporary files' },
  {
    name: 'registries.d',
    kind: 'string',
    valueName: 'DIR',
    description: 'use registry configuration files in DIR (e.g. for container signature storage)',
  },
  {
    name: 'user-agent-prefix',
    kind: 'string',
    description: 'prefix to add to the user agent string',
  },
  {
    name: 'require-signed',
    kind: 'bool',
    description: 'require any pulled image to be signed',
    unsupported: unsupportedGlobal,
  },
  {
    name: 'tls-verify',
    kind: 'bool',
    description: 'deprecated',
    hidden: true,
    // skopeo: a flag of the root command, and a deprecated one of copy and sync; the commands with a
    // --tls-verify of their own (inspect, delete, list-tags, login, logout) define it themselves.
    onlyAfterCommands: ['copy', 'sync'],
  },
];

function helpFlag(commandName: string): FlagSpec {
  return { name: 'help', short: 'h', kind: 'bool', description: `help for ${commandName}` };
}

const versionFlag: FlagSpec = {
  name: 'version',
  short: 'v',
  kind: 'bool',
  description: 'Version for gantry',
};

/** The CLI package's version. */
export function cliVersion(): string {
  const manifest = JSON.parse(readFileSync(join(cliPackageDirectory(), 'package.json'), 'utf8')) as {
    version: string;
  };
  return manifest.version;
}

function levenshtein(left: string, right: string): number {
  const previous = Array.from({ length: right.length + 1 }, (_, index) => index);
  for (let i = 1; i <= left.length; i++) {
    let diagonal = previous[0]!;
    previous[0] = i;
    for (let j = 1; j <= right.length; j++) {
      const above = previous[j]!;
      previous[j] = Math.min(
        previous[j]! + 1,
        previous[j - 1]! + 1,
        diagonal + (left[i - 1] === right[j - 1] ? 0 : 1),
      );
      diagonal = above;
    }
  }
  return previous[right.length]!;
}

function rootHelp(): string {
  const listed = commands.filter((command) => !command.hidden);
  const width = Math.max(11, ...listed.map((command) => command.name.length), 'help'.length);
  const rows = [
    ...commands.filter((command) => !command.hidden).map((command) => [command.name, command.short] as const),
    ['help', 'Help about any command'] as const,
  ].sort((left, right) => left[0].localeCompare(right[0]));
  return (
    'Various operations with container images and container image registries\n\n' +
    'Usage:\n  gantry [flags]\n  gantry [command]\n\n' +
    `Available Commands:\n${rows.map(([name, short]) => `  ${name.padEnd(width)} ${short}\n`).join('')}\n` +
    `Flags:\n${formatFlagUsages([...globalFlags, helpFlag('gantry'), versionFlag])}\n` +
    'Use "gantry [command] --help" for more information about a command.\n'
  );
}

function commandHelp(command: CommandDefinition, transportNames: string): string {
  let text = `${command.long.replace('{transports}', transportNames).trimEnd()}\n\nUsage:\ngantry ${command.use}\n\n`;
  if (command.examples) text += `Examples:\n${command.examples}\n\n`;
  text += `Flags:\n${formatFlagUsages([...command.flags, helpFlag(command.name)])}\n`;
  text += `Global Flags:\n${formatFlagUsages(globalFlags)}\n`;
  return text;
}

function globalOptionsFrom(values: Map<string, FlagValue>): GlobalOptions {
  const text = (name: string) => {
    const value = values.get(name);
    return typeof value === 'string' && value !== '' ? value : undefined;
  };
  const platform: GlobalOptions['platform'] = {};
  if (text('override-os')) platform.os = text('override-os')!;
  if (text('override-arch')) platform.architecture = text('override-arch')!;
  if (text('override-variant')) platform.variant = text('override-variant')!;
  const timeout = values.get('command-timeout') as number | undefined;
  const idleTimeout = values.get('registry-idle-timeout') as number | undefined;
  return {
    debug: values.get('debug') === true,
    policyPath: text('policy'),
    insecurePolicy: values.get('insecure-policy') === true,
    registriesConfPath: text('registries-conf'),
    registriesDirectoryPath: text('registries.d'),
    temporaryDirectory: text('tmpdir'),
    userAgentPrefix: text('user-agent-prefix'),
    platform,
    commandTimeoutMs: timeout !== undefined && timeout > 0 ? timeout : undefined,
    registryIdleTimeoutMs:
      idleTimeout !== undefined && idleTimeout > 0 ? Math.max(1, Math.round(idleTimeout)) : undefined,
    tlsVerify:
      typeof values.get('tls-verify') === 'boolean' ? (values.get('tls-verify') as boolean) : undefined,
  };
}

/**
 * Closes the keep-alive connections of transports that keep some (the docker transport's
 * `closeConnections`), so the process exits as soon as the command is done. Errors are ignored.
 */
async function closeTransportConnections(registryPromise: Promise<TransportRegistry>): Promise<void> {
  try {
    const registry = await registryPromise;
    await Promise.all(
      registry.list().map(async ({ transport }) => {
        const close = (transport as { closeConnections?: unknown }).closeConnections;
        if (typeof close === 'function') await (close as () => Promise<void>).call(transport);
      }),
    );
  } catch {
    // Loading failed (already reported) or closing failed: nothing left to do.
  }
}

/** True when the error (or one it wraps) says the image does not exist. */
function isImageNotFound(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 8 && current; depth++) {
    if (hasErrorCode(current, ErrorCodes.ImageNotFound)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/** A usage error that also shows the command's usage line (wrong number of arguments). */
function isArgumentCountError(error: unknown, command: CommandDefinition | undefined): boolean {
  return command !== undefined && error instanceof UsageError && /argument|^Usage:/.test(error.message);
}

/**
 * Runs the CLI with `argv` (the arguments after the program name) and returns the exit code: 0 on
 * success, 2 when the image does not exist, 1 for anything else (usage errors included). Results go
 * to `io.stdout`; progress, warnings and errors to `io.stderr`. Never throws.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let logger: Logger = createLogger({
    write: (text) => io.stderr.write(text),
    isTTY: io.isTTY,
    debug: false,
  });
  let command: CommandDefinition | undefined;
  let timer: NodeJS.Timeout | undefined;
  /** The last registry the loader returned (it holds every transport imported so far). */
  let registryPromise: Promise<TransportRegistry> | undefined;
  let transportLoader: ReturnType<typeof createTransportLoader> | undefined;
  try {
    const rootParsed = parseArguments(argv, [...globalFlags, helpFlag('gantry'), versionFlag], {
      stopAtPositional: true,
    });
    if (rootParsed.values.get('debug') === true) {
      logger = createLogger({ write: (text) => io.stderr.write(text), isTTY: io.isTTY, debug: true });
    }
    if (rootParsed.values.get('version') === true) {
      io.stdout.write(`gantry version ${cliVersion()}\n`);
      return ExitCodes.success;
    }
    const [name, ...rest] = rootParsed.rest;
    if (name === undefined) {
      if (rootParsed.values.get('help') === true) {
        io.stdout.write(rootHelp());
        return ExitCodes.success;
      }
      throw new UsageError("Missing command 'gantry COMMAND'\nTry 'gantry --help' for more information");
    }

    const transports = (wanted?: readonly string[]) => {
      transportLoader ??= createTransportLoader({
        env: io.env,
        cwd: io.cwd,
        warn: (message) => logger.warn(message),
        debug: (message) => logger.debug(message),
      });
      registryPromise = transportLoader(wanted);
      return registryPromise;
    };
    const transportNames = async (command?: CommandDefinition) => {
      try {
        return (await transports())
          .list()
          .filter((entry) => command?.supportsTransport?.(entry.transport) ?? true)
          .map((entry) => entry.transport.name)
          .join(', ');
      } catch {
        return '';
      }
    };

    if (name === 'help') {
      const target = rest.find((token) => !token.startsWith('-'));
      const helped = commands.find((candidate) => candidate.name === target);
      if (target !== undefined && !helped) {
        throw new UsageError(`Unknown help topic [\`${target}\`]`);
      }
      io.stdout.write(helped ? commandHelp(helped, await transportNames(helped)) : rootHelp());
      return ExitCodes.success;
    }
    command = commands.find((candidate) => candidate.name === name);
    if (!command) {
      if (unimplementedSkopeoCommands.has(name)) {
        throw new UsageError(`gantry does not implement the skopeo command "${name}" yet`);
      }
      const suggestions = [...commands.map((candidate) => candidate.name), 'help'].filter(
        (candidate) => levenshtein(candidate, name) <= 2 || candidate.startsWith(name),
      );
      if (suggestions.length > 0) {
        throw new UsageError(
          `Unrecognized command \`gantry ${name}\`\n\nDid you mean this?\n\t${suggestions.join('\n\t')}\n\nTry 'gantry --help' for more information`,
        );
      }
      throw new UsageError(
        `Unrecognized command \`gantry ${name}\`\nTry 'gantry --help' for more information`,
      );
    }
    const commandName = command.name;
    const globalsAfterCommand = globalFlags.filter(
      (spec) =>
        spec.onlyAfterCommands === undefined ||
        spec.onlyAfterCommands.includes(commandName) ||
        command!.flags.some((own) => own.name === spec.name),
    );
    const parsed = parseArguments(rest, [...command.flags, ...globalsAfterCommand, helpFlag(command.name)]);
    if (parsed.values.get('help') === true) {
      io.stdout.write(commandHelp(command, await transportNames(command)));
      return ExitCodes.success;
    }
    const globalValues = new Map(rootParsed.values);
    for (const spec of globalFlags) {
      const value = parsed.values.get(spec.name);
      if (value !== undefined) globalValues.set(spec.name, value);
    }
    rejectUnsupportedFlags({ values: globalValues, positionals: [], rest: [] }, globalFlags);
    rejectUnsupportedFlags(parsed, command.flags);
    const global = globalOptionsFrom(globalValues);
    if (global.debug && !logger.debugEnabled) {
      logger = createLogger({ write: (text) => io.stderr.write(text), isTTY: io.isTTY, debug: true });
    }
    let signal: AbortSignal | undefined = io.signal;
    if (global.commandTimeoutMs !== undefined) {
      const controller = new AbortController();
      const timeoutText = String(globalValues.get('command-timeout') ?? '');
      timer = setTimeout(
        () =>
          controller.abort(
            new GantryError(
              ErrorCodes.Aborted,
              `context deadline exceeded (--command-timeout ${timeoutText || global.commandTimeoutMs} ms)`,
            ),
          ),
        global.commandTimeoutMs,
      );
      timer.unref();
      signal = signal ? AbortSignal.any([signal, controller.signal]) : controller.signal;
    }
    const context: CommandContext = {
      io,
      global,
      logger,
      flags: parsed.values,
      positionals: parsed.positionals,
      signal,
      transports,
      print: (chunk) => {
        io.stdout.write(chunk);
      },
    };
    logger.debug(`gantry version ${cliVersion()}, running ${command.name} ${parsed.positionals.join(' ')}`);
    await command.run(context);
    return ExitCodes.success;
  } catch (error) {
    logger.fatal(errorMessage(error));
    if (isArgumentCountError(error, command)) {
      io.stderr.write(`\nUsage:\n  gantry ${command!.use}\n\nSee 'gantry ${command!.name} --help'.\n`);
    }
    if (logger.debugEnabled && error instanceof Error && error.stack && !isGantryError(error)) {
      logger.debug(error.stack);
    }
    return isImageNotFound(error) ? ExitCodes.imageNotFound : ExitCodes.failure;
  } finally {
    if (timer) clearTimeout(timer);
    if (registryPromise) await closeTransportConnections(registryPromise);
  }
}
