import {
  type ImageSource,
  inspectImage,
  inspectImageConfig,
  readImageConfig,
  readImageManifest,
  withRetry,
} from '@gantry/core';
import { UsageError } from '../args.js';
import { type CommandContext, type CommandDefinition, imageNamesHelp } from '../context.js';
import { wrapError } from '../errors.js';
import { renderFormatted } from '../format.js';
import { imageFlagSpecs, retryFlagSpecs, retrySettingsFrom, transportContextFrom } from '../image-flags.js';
import { transportNamesOf } from '../plugins.js';
import { configTemplateData, inspectTemplateData } from '../template-data.js';

async function run(context: CommandContext): Promise<void> {
  const { flags, positionals, signal } = context;
  if (positionals.length !== 1) throw new UsageError('Exactly one argument expected');
  const raw = flags.get('raw') === true;
  const config = flags.get('config') === true;
  const format = (flags.get('format') as string | undefined) ?? '';
  if (raw && format !== '') throw new UsageError('raw output does not support format option');
  const imageName = positionals[0]!;
  const retry = retrySettingsFrom(context);
  const transportContext = transportContextFrom(context.global, flags, '', signal);
  const registry = await context.transports(transportNamesOf([imageName]));

  let source: ImageSource;
  try {
    const reference = registry.parseImageReference(imageName);
    context.logger.debug(`Opening image ${imageName}`);
    source = await withRetry(() => reference.newImageSource(transportContext), retry);
  } catch (error) {
    throw wrapError(`Error parsing image name "${imageName}"`, error);
  }
  const options = { context: transportContext, signal, retry };
  try {
    if (raw) {
      if (!config) context.print((await readImageManifest(source, options)).bytes);
      else {
        const configBytes = await readImageConfig(source, options);
        if (configBytes) context.print(configBytes);
      }
      return;
    }
    if (config) {
      const value = await inspectImageConfig(source, options);
      context.print(renderFormatted(format, value, configTemplateData(value), 'gantry inspect'));
      return;
    }
    const output = await inspectImage(source, {
      ...options,
      tags: flags.get('no-tags') !== true,
      onWarning: (message) => context.logger.warn(message),
    });
    context.print(renderFormatted(format, output, inspectTemplateData(output), 'gantry inspect'));
  } finally {
    await source.close();
  }
}

/** `gantry inspect`: skopeo inspect. */
export const inspectCommand: CommandDefinition = {
  name: 'inspect',
  use: 'inspect [command options] IMAGE-NAME',
  short: 'Inspect image IMAGE-NAME',
  long: `Return low-level information about "IMAGE-NAME" in a registry/transport\nSupported transports:\n{transports}\n\n${imageNamesHelp}\n`,
  examples:
    'gantry inspect oci:/path/to/layout:tag\ngantry inspect --config dir:/path/to/image\ngantry inspect --format "Name: {{.Name}} Digest: {{.Digest}}" oci:/path/to/layout',
  flags: [
    { name: 'raw', kind: 'bool', description: 'output raw manifest or configuration' },
    { name: 'config', kind: 'bool', description: 'output configuration' },
    { name: 'format', short: 'f', kind: 'string', description: 'Format the output to a Go template' },
    {
      name: 'no-tags',
      short: 'n',
      kind: 'bool',
      description: 'Do not list the available tags from the repository in the output',
    },
    ...imageFlagSpecs(''),
    ...retryFlagSpecs,
  ],
  run,
};
