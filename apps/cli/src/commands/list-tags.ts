import {
  ErrorCodes,
  formatInspectJson,
  GantryError,
  hasErrorCode,
  type ImageReference,
  isNameOnly,
  type ListedTags,
  listTags,
  parseNormalizedNamed,
  splitTransportReference,
} from '@gantry/core';
import { UsageError } from '../args.js';
import type { CommandContext, CommandDefinition } from '../context.js';
import { wrapError } from '../errors.js';
import { imageFlagSpecs, retryFlagSpecs, retrySettingsFrom, transportContextFrom } from '../image-flags.js';
import { transportNamesOf } from '../plugins.js';

/** The image flags skopeo's list-tags has (no shared blob directory, no daemon host). */
const listTagsImageFlags = new Set([
  'authfile',
  'cert-dir',
  'creds',
  'no-creds',
  'password',
  'registry-token',
  'tls-verify',
  'username',
]);

/**
 * docker:// takes a repository only, as skopeo: `docker://name` without tag or digest (the docker
 * transport's references always carry a tag, so the check is on the text given).
 */
function checkDockerRepositoryName(input: string): void {
  const { reference } = splitTransportReference(input);
  if (!reference.startsWith('//')) {
    throw new UsageError(`docker: image reference ${input} does not start with docker://`);
  }
  let named: ReturnType<typeof parseNormalizedNamed>;
  try {
    named = parseNormalizedNamed(reference.slice(2));
  } catch (error) {
    throw wrapError(`Failed to parse image reference ${input}`, error);
  }
  if (!isNameOnly(named)) throw new UsageError('No tag or digest allowed in reference');
}

async function run(context: CommandContext): Promise<void> {
  const { flags, positionals, signal } = context;
  if (positionals.length !== 1) throw new UsageError('Exactly one non-option argument expected');
  const imageName = positionals[0]!;
  const registry = await context.transports(transportNamesOf([imageName]));
  const { transport: transportName } = splitTransportReference(imageName);
  const transport = registry.get(transportName);
  if (transport !== undefined && typeof transport.listTags !== 'function') {
    // The message names every transport that can list tags, so all of them are loaded here.
    const supported = (await context.transports())
      .list()
      .map((entry) => entry.transport)
      .filter((candidate) => typeof candidate.listTags === 'function')
      .map((candidate) => candidate.name);
    throw new GantryError(
      ErrorCodes.NotSupported,
      `Unsupported transport '${transportName}' for tag listing. Only supported: ${supported.join(', ')}`,
    );
  }
  if (transportName === 'docker') checkDockerRepositoryName(imageName);
  let reference: ImageReference;
  try {
    reference = registry.parseImageReference(imageName);
  } catch (error) {
    throw wrapError(`Invalid image reference ${imageName}`, error);
  }
  const transportContext = transportContextFrom(context.global, flags, '', signal);
  let listed: ListedTags;
  try {
    listed = await listTags(reference, { context: transportContext, retry: retrySettingsFrom(context) });
  } catch (error) {
    // skopeo exits 1 (not 2) when the repository does not exist: no "image not found" code here.
    if (hasErrorCode(error, ErrorCodes.ImageNotFound)) {
      throw new GantryError(ErrorCodes.Internal, error.message, { cause: error });
    }
    throw error;
  }
  // skopeo's `Repository` is omitted when empty (archives).
  context.print(
    `${formatInspectJson({ ...(listed.repository ? { Repository: listed.repository } : {}), Tags: listed.tags })}\n`,
  );
}

/** `gantry list-tags REPOSITORY`: skopeo list-tags, for every transport that lists tags. */
export const listTagsCommand: CommandDefinition = {
  name: 'list-tags',
  use: 'list-tags [command options] SOURCE-IMAGE',
  short: 'List tags in the transport/repository specified by the SOURCE-IMAGE',
  long: `Return the list of tags from the transport/repository "SOURCE-IMAGE"

Supported transports:
{transports}

A repository is named without a tag or digest: docker://[registry/]repository (a short name is resolved
through registries.conf), or docker-archive:path for the tags of an archive's images
`,
  examples: 'gantry list-tags docker://registry.example.com/repository',
  flags: [
    ...imageFlagSpecs('').filter((flag) => listTagsImageFlags.has(flag.name)),
    ...retryFlagSpecs.filter((flag) => flag.name === 'retry-times'),
  ],
  supportsTransport: (transport) => typeof transport.listTags === 'function',
  run,
};
