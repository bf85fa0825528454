import { UsageError } from '../args.js';
import type { CommandContext, CommandDefinition } from '../context.js';

async function run(context: CommandContext): Promise<void> {
  if (context.positionals.length !== 0) throw new UsageError('No arguments expected');
  const registry = await context.transports();
  const entries = registry.list();
  const width = Math.max(0, ...entries.map((entry) => entry.transport.name.length));
  for (const entry of entries) context.print(`${entry.transport.name.padEnd(width)}  ${entry.origin}\n`);
}

/** `gantry transports`: lists the installed transports and the package each comes from. */
export const transportsCommand: CommandDefinition = {
  name: 'transports',
  use: 'transports',
  short: 'List the installed transports and the package providing each',
  long: 'List the installed transports, one a line: the transport name and the package (name@version) or file it was loaded from.\nTransports are found in node_modules beside gantry (@gantry/transport-*, gantry-transport-*, @scope/gantry-transport-*),\nin $GANTRY_TRANSPORTS (comma-separated packages or files) and in $XDG_CONFIG_HOME/gantry/config.json ({"transports": [...]}).\n',
  flags: [],
  run,
};
