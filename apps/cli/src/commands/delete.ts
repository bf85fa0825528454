import { deleteImage, type ImageReference } from '@gantry/core';
import { UsageError } from '../args.js';
import { type CommandContext, type CommandDefinition, imageNamesHelp } from '../context.js';
import { wrapError } from '../errors.js';
import { imageFlagSpecs, retryFlagSpecs, retrySettingsFrom, transportContextFrom } from '../image-flags.js';
import { transportNamesOf } from '../plugins.js';

async function run(context: CommandContext): Promise<void> {
  const { flags, positionals, signal } = context;
  if (positionals.length !== 1) throw new UsageError('Usage: delete imageReference');
  const imageName = positionals[0]!;
  const transportContext = transportContextFrom(context.global, flags, '', signal);
  const registry = await context.transports(transportNamesOf([imageName]));
  let reference: ImageReference;
  try {
    reference = registry.parseImageReference(imageName);
  } catch (error) {
    throw wrapError(`Invalid source name ${imageName}`, error);
  }
  await deleteImage(reference, { context: transportContext, retry: retrySettingsFrom(context) });
}

/** `gantry delete IMAGE`: skopeo delete, for every transport that can delete (oci:, dir:, …). */
export const deleteCommand: CommandDefinition = {
  name: 'delete',
  use: 'delete [command options] IMAGE-NAME',
  short: 'Delete image IMAGE-NAME',
  long: `Delete an "IMAGE-NAME" from a transport

${imageNamesHelp}`,
  examples: 'gantry delete oci:/srv/layout:old-tag',
  flags: [...imageFlagSpecs(''), ...retryFlagSpecs],
  run,
};
