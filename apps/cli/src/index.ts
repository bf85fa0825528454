/**
 * `@gantry/cli`: the `gantry` command (skopeo-compatible) and its parts, usable from programs and tests.
 *
 * `runCli(argv, io)` runs the command in-process with the given streams and environment and resolves
 * to the exit code (0 success, 2 image not found, 1 anything else); it never throws and never calls
 * `process.exit`.
 */

export {
  type FlagKind,
  type FlagSpec,
  type FlagValue,
  formatFlagUsages,
  goQuote,
  type ParsedArguments,
  parseArguments,
  parseGoDuration,
  UsageError,
} from './args.js';
export { type CliIo, cliVersion, commands, ExitCodes, globalFlags, runCli } from './cli.js';
export type { CommandContext, CommandDefinition, GlobalOptions, OutputStream } from './context.js';
export { isJsonFormat, normalizeFormat, renderFormatted } from './format.js';
export {
  executeGoTemplate,
  formatFunctions,
  GoTemplate,
  TemplateError,
  type TemplateFunction,
} from './go-template.js';
export {
  formatGoValue,
  GoInt,
  GoMap,
  GoNamedString,
  GoNil,
  GoSlice,
  GoStruct,
  GoTime,
  goJsonEncode,
} from './go-values.js';
export { createLogger, formatLogLine, type Logger, type LogLevel } from './logger.js';
export { commandManPage, type ManPageModel, mainManPage, manPages } from './man-pages.js';
export {
  configFilePath,
  createTransportLoader,
  type DiscoverOptions,
  discoverTransportPlugins,
  isTransportPackageName,
  loadTransportRegistry,
  type PluginCandidate,
  transportNameHint,
  transportNamesOf,
  transportsFromModule,
} from './plugins.js';
export { createProgressReporter, formatBytes } from './progress.js';
export {
  bashCompletionScript,
  type CompletionModel,
  type CompletionShell,
  completionScript,
  completionShells,
  fishCompletionScript,
  zshCompletionScript,
} from './shell-completion.js';
