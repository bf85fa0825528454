import { UsageError } from '../args.js';
import type { CommandContext, CommandDefinition } from '../context.js';
import { withRetries, wrapError } from '../errors.js';
import { imageFlagSpecs, retryFlagSpecs, transportContextFrom } from '../image-flags.js';
import { transportNamesOf } from '../plugins.js';

async function run(context: CommandContext): Promise<void> {
  const { flags, positionals, signal } = context;
  if (positionals.length !== 1) throw new UsageError('Usage: delete imageReference');
  const imageName = positionals[0]!;
  const transportContext = transportContextFrom(context.global, flags, '', signal);
  const registry = await context.transports(transportNamesOf([imageName]));
  let reference: ReturnType<typeof registry.parseImageReference>;
  try {
    reference = registry.parseImageReference(imageName);
  } catch (error) {
    throw wrapError(`Invalid source name ${imageName}`, error);
  }
  const retryTimes = (flags.get('retry-times') as number | undefined) ?? 0;
  await withRetries(() => reference.deleteImage(transportContext), {
    retryTimes,
    retryDelayMs: flags.get('retry-delay') as number | undefined,
    signal,
    onRetry: (attempt, error, delayMs) =>
      context.logger.warn(
        `Failed, retrying in ${(delayMs / 1000).toFixed(0)}s (${attempt}/${retryTimes}): ${(error as Error).message}`,
      ),
  });
}

/** `gantry delete IMAGE`: skopeo delete, for every transport that can delete (oci:, dir:, …). */
export const deleteCommand: CommandDefinition = {
  name: 'delete',
  use: 'delete [command options] IMAGE-NAME',
  short: 'Delete image IMAGE-NAME',
  long: `Delete an "IMAGE_NAME" from a transport

See skopeo(1) section "IMAGE NAMES" for the expected format`,
  examples: 'gantry delete oci:/srv/layout:old-tag',
  flags: [...imageFlagSpecs(''), ...retryFlagSpecs],
  run,
};
