/**
 * Man pages (roff, man(7) macros) generated from the CLI's own command and flag definitions:
 * `gantry.1` (the global options and the command list) and `gantry-COMMAND.1` per visible command
 * (its usage, description, examples and options). The build writes them to dist/man/ and they ship in
 * the package; `man -l dist/man/gantry-copy.1` shows one.
 */
import type { FlagSpec } from './args.js';
import type { CommandDefinition } from './context.js';

export interface ManPageModel {
  commands: readonly CommandDefinition[];
  globalFlags: readonly FlagSpec[];
  version: string;
  /** What a command's `{transports}` stands for in its description. */
  transportNames: string;
}

/** Text as roff shows it: backslashes escaped, hyphens as minus signs, no control line by accident. */
function roffText(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .split('\n')
    .map((line) => (/^[.']/.test(line) ? `\\&${line}` : line))
    .join('\n');
}

/** A paragraph of the description: kept as written (help texts are laid out for a terminal). */
function roffParagraphs(text: string): string {
  const blocks = text.trim().split(/\n\s*\n/);
  return blocks
    .map((block) => {
      const indented = block.split('\n').some((line) => /^\s/.test(line));
      return indented ? `.PP\n.nf\n${roffText(block)}\n.fi` : `.PP\n${roffText(block)}`;
    })
    .join('\n');
}

function flagValueName(spec: FlagSpec): string | undefined {
  if (spec.kind === 'bool') return undefined;
  return spec.valueName ?? (spec.kind === 'stringArray' ? 'stringArray' : spec.kind);
}

function roffOptions(flags: readonly FlagSpec[]): string {
  return flags
    .filter((spec) => !spec.hidden)
    .sort((left, right) => left.name.localeCompare(right.name))
    .map((spec) => {
      const value = flagValueName(spec);
      const names = [
        ...(spec.short ? [`\\fB\\-${spec.short}\\fR`] : []),
        `\\fB\\-\\-${roffText(spec.name)}\\fR${value ? ` \\fI${roffText(value)}\\fR` : ''}`,
      ].join(', ');
      let description = roffText(spec.description);
      if (spec.defaultText !== undefined) description += ` (default ${roffText(spec.defaultText)})`;
      if (spec.unsupported) description += ' [not supported by gantry yet]';
      return `.TP\n${names}\n${description}`;
    })
    .join('\n');
}

function header(name: string, version: string): string {
  return `.TH ${name.toUpperCase()} 1 "" "gantry ${version}" "User Commands"`;
}

/** `gantry.1`. */
export function mainManPage(model: ManPageModel): string {
  const commands = model.commands
    .filter((command) => !command.hidden)
    .sort((left, right) => left.name.localeCompare(right.name));
  return [
    '.\\" Generated from the gantry command\'s flag definitions (apps/cli/src/man-pages.ts).',
    header('gantry', model.version),
    '.SH NAME',
    'gantry \\- inspect, copy, delete and sync container images (skopeo\\-compatible)',
    '.SH SYNOPSIS',
    '\\fBgantry\\fR [\\fIglobal options\\fR] \\fICOMMAND\\fR [\\fIoptions\\fR] \\fIARGS\\fR',
    '.SH DESCRIPTION',
    roffParagraphs(
      'Various operations with container images and container image registries, with the ' +
        'transport:reference syntax, commands, flags, output and exit codes of skopeo(1).\n\n' +
        'Global options go before the command, or among its own options.',
    ),
    '.SH GLOBAL OPTIONS',
    roffOptions(model.globalFlags),
    '.TP',
    '\\fB\\-h\\fR, \\fB\\-\\-help\\fR',
    'help for gantry',
    '.TP',
    '\\fB\\-v\\fR, \\fB\\-\\-version\\fR',
    'Version for gantry',
    '.SH COMMANDS',
    ...commands.map(
      (command) => `.TP\n\\fBgantry\\-${roffText(command.name)}\\fR(1)\n${roffText(command.short)}`,
    ),
    '.SH EXIT STATUS',
    '0 on success, 2 when the image does not exist, 1 for any other failure.',
    '.SH SEE ALSO',
    `${commands.map((command) => `\\fBgantry\\-${roffText(command.name)}\\fR(1)`).join(', ')}, \\fBskopeo\\fR(1), \\fBcontainers\\-transports\\fR(5), \\fBcontainers\\-policy.json\\fR(5)`,
    '',
  ].join('\n');
}

/** `gantry-COMMAND.1`. */
export function commandManPage(command: CommandDefinition, model: ManPageModel): string {
  const long = command.long.replaceAll('{transports}', model.transportNames);
  const sections = [
    '.\\" Generated from the gantry command\'s flag definitions (apps/cli/src/man-pages.ts).',
    header(`gantry-${command.name}`, model.version),
    '.SH NAME',
    `gantry\\-${roffText(command.name)} \\- ${roffText(command.short)}`,
    '.SH SYNOPSIS',
    `\\fBgantry ${roffText(command.name)}\\fR ${roffText(command.use.slice(command.name.length).trim())}`,
    '.SH DESCRIPTION',
    roffParagraphs(long),
  ];
  if (command.examples) sections.push('.SH EXAMPLES', `.nf\n${roffText(command.examples)}\n.fi`);
  sections.push(
    '.SH OPTIONS',
    roffOptions(command.flags),
    '.TP',
    '\\fB\\-h\\fR, \\fB\\-\\-help\\fR',
    `help for ${roffText(command.name)}`,
    '.SH GLOBAL OPTIONS',
    'See \\fBgantry\\fR(1).',
    '.SH SEE ALSO',
    '\\fBgantry\\fR(1)',
    '',
  );
  return sections.join('\n');
}

/** Every page, by file name: `gantry.1` and `gantry-COMMAND.1` for each command not hidden. */
export function manPages(model: ManPageModel): Map<string, string> {
  const pages = new Map<string, string>([['gantry.1', mainManPage(model)]]);
  for (const command of model.commands) {
    if (!command.hidden) pages.set(`gantry-${command.name}.1`, commandManPage(command, model));
  }
  return pages;
}
