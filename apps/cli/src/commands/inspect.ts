import {
  buildInspectConfigOutput,
  buildInspectOutput,
  choosePlatformInstance,
  type Digest,
  digestOf,
  ErrorCodes,
  GantryError,
  hasErrorCode,
  type ImageManifest,
  type ImageReference,
  type ImageSource,
  isManifestListMediaType,
  manifestDigest,
  manifestMatchesDigest,
  normalizeManifestMediaType,
  parseManifest,
  parseManifestList,
  type RetrySettings,
  type TransportContext,
  withRetry,
} from '@gantry/core';
import { UsageError } from '../args.js';
import { type CommandContext, type CommandDefinition, imageNamesHelp } from '../context.js';
import { wrapError } from '../errors.js';
import { renderFormatted } from '../format.js';
import { imageFlagSpecs, retryFlagSpecs, retrySettingsFrom, transportContextFrom } from '../image-flags.js';
import { transportNamesOf } from '../plugins.js';
import { configTemplateData, inspectTemplateData } from '../template-data.js';

/** Largest config blob read into memory. */
const maximumConfigSize = 16 * 1024 * 1024;

async function readConfig(
  source: ImageSource,
  manifest: ImageManifest,
  signal: AbortSignal | undefined,
): Promise<Uint8Array | undefined> {
  if (!manifest.config) return undefined;
  const blob = await source.getBlob(manifest.config, { signal });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of blob.stream) {
    size += (chunk as Buffer).byteLength;
    if (size > maximumConfigSize) {
      blob.stream.destroy();
      throw new GantryError(
        ErrorCodes.InvalidManifest,
        `config blob ${manifest.config.digest} is larger than ${maximumConfigSize} bytes`,
      );
    }
    chunks.push(chunk as Buffer);
  }
  const bytes = new Uint8Array(Buffer.concat(chunks));
  const actual = digestOf(bytes);
  if (actual !== manifest.config.digest) {
    throw new GantryError(
      ErrorCodes.DigestMismatch,
      `config blob: digest mismatch: expected ${manifest.config.digest}, got ${actual}`,
    );
  }
  return bytes;
}

/**
 * The tags of the image's repository for `RepoTags`, from transports that list tags (skopeo lists them
 * for docker:// only; other transports give []). As skopeo, a registry refusing the tag list (401/403)
 * is a warning, not an error.
 */
async function repositoryTags(
  context: CommandContext,
  reference: ImageReference,
  transportContext: TransportContext,
  retry: RetrySettings,
): Promise<string[]> {
  const transport = reference.transport;
  if (transport.name !== 'docker' || typeof transport.listTags !== 'function') return [];
  try {
    return await withRetry(() => transport.listTags!(reference, transportContext), retry);
  } catch (error) {
    if (hasErrorCode(error, ErrorCodes.Unauthorized)) {
      context.logger.warn('Registry disallows tag list retrieval; skipping');
      return [];
    }
    throw wrapError('Error determining repository tags', error);
  }
}

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
  try {
    let topLevel: Awaited<ReturnType<ImageSource['getManifest']>>;
    try {
      topLevel = await withRetry(() => source.getManifest(undefined, { signal }), retry);
    } catch (error) {
      throw wrapError('Error retrieving manifest for image', error);
    }
    if (raw && !config) {
      context.print(topLevel.bytes);
      return;
    }
    let manifest: ImageManifest;
    try {
      const mediaType = normalizeManifestMediaType(topLevel.mediaType, topLevel.bytes);
      if (isManifestListMediaType(mediaType)) {
        const list = parseManifestList(topLevel.bytes, mediaType);
        let chosen: Digest;
        try {
          chosen = choosePlatformInstance(list, transportContext.platform);
        } catch (error) {
          throw wrapError('choosing image instance', error);
        }
        context.logger.debug(`Choosing image ${chosen} from the manifest list`);
        const instance = await withRetry(() => source.getManifest(chosen, { signal }), retry);
        if (!manifestMatchesDigest(instance.bytes, chosen)) {
          throw new GantryError(ErrorCodes.DigestMismatch, `manifest ${chosen} does not match its digest`);
        }
        manifest = parseManifest(
          instance.bytes,
          normalizeManifestMediaType(instance.mediaType, instance.bytes),
        );
      } else {
        manifest = parseManifest(topLevel.bytes, mediaType);
      }
    } catch (error) {
      throw wrapError('Error parsing manifest for image', error);
    }
    let configBytes: Uint8Array | undefined;
    if (manifest.config) {
      try {
        configBytes = await withRetry(() => readConfig(source, manifest, signal), retry);
      } catch (error) {
        throw wrapError(
          config ? 'Error reading configuration blob' : 'Error reading OCI-formatted configuration data',
          error,
        );
      }
    }
    if (config && raw) {
      if (configBytes) context.print(configBytes);
      return;
    }
    if (config) {
      let value: Record<string, unknown>;
      try {
        value = buildInspectConfigOutput(manifest, configBytes);
      } catch (error) {
        throw wrapError('Error reading OCI-formatted configuration data', error);
      }
      context.print(renderFormatted(format, value, configTemplateData(value), 'gantry inspect'));
      return;
    }
    const reference = source.reference;
    const dockerReference = reference.dockerReference();
    const repoTags =
      flags.get('no-tags') === true ? [] : await repositoryTags(context, reference, transportContext, retry);
    const output = buildInspectOutput({
      ...(dockerReference ? { name: dockerReference.name } : {}),
      manifest,
      ...(configBytes ? { config: configBytes } : {}),
      repoTags,
      digest: manifestDigest(topLevel.bytes),
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
