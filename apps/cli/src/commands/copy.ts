import { writeFile } from 'node:fs/promises';
import {
  type CopyOptions,
  copyImage,
  defaultBlobConcurrency,
  defaultBlobInfoCachePath,
  type ImageListSelection,
  type ImageReference,
  insecureAcceptAnythingPolicy,
  loadDefaultPolicy,
  loadPolicy,
  type Policy,
} from '@gantry/core';
import { MediaTypes } from '@gantry/core/transport';
import type { DirContextOptions } from '@gantry/transport-dir';
import type { OciContextOptions } from '@gantry/transport-oci';
import type { OciArchiveContextOptions } from '@gantry/transport-oci-archive';
import { type FlagSpec, UsageError } from '../args.js';
import { type CommandContext, type CommandDefinition, imageNamesHelp } from '../context.js';
import { errorMessage, wrapError } from '../errors.js';
import {
  addTransportOptions,
  credsAliasSpec,
  imageFlagSpecs,
  retryFlagSpecs,
  retryWarning,
  transportContextFrom,
} from '../image-flags.js';
import { transportNamesOf } from '../plugins.js';
import { createProgressReporter, type ProgressReporter } from '../progress.js';
import { signingOptionsFrom } from '../signing-flags.js';

/** skopeo's `-f/--format` names. */
const manifestFormats: Record<string, string> = {
  oci: MediaTypes.OciManifest,
  v2s1: MediaTypes.DockerSchema1Signed,
  v2s2: MediaTypes.DockerManifest,
};

/** The policy the global flags select, as skopeo's getPolicyContext. */
export async function policyFromGlobalOptions(context: CommandContext): Promise<Policy> {
  if (context.global.insecurePolicy) return insecureAcceptAnythingPolicy();
  if (context.global.policyPath) return loadPolicy(context.global.policyPath);
  return loadDefaultPolicy(context.io.env.HOME ? { homeDirectory: context.io.env.HOME } : {});
}

async function run(context: CommandContext): Promise<void> {
  const { flags, positionals, signal, io } = context;
  if (positionals.length !== 2) throw new UsageError('Exactly two arguments expected');
  const [sourceName, destinationName] = positionals as [string, string];

  let policy: Policy;
  try {
    policy = await policyFromGlobalOptions(context);
  } catch (error) {
    throw wrapError('Error loading trust policy', error);
  }
  const registry = await context.transports(transportNamesOf([sourceName, destinationName]));
  let source: ImageReference;
  let destination: ImageReference;
  try {
    source = registry.parseImageReference(sourceName);
  } catch (error) {
    throw wrapError(`Invalid source name ${sourceName}`, error);
  }
  try {
    destination = registry.parseImageReference(destinationName);
  } catch (error) {
    throw wrapError(`Invalid destination name ${destinationName}`, error);
  }

  const options: CopyOptions = {
    policy,
    sourceContext: transportContextFrom(context.global, flags, 'src-', signal),
    destinationContext: transportContextFrom(context.global, flags, 'dest-', signal),
  };
  if (signal) options.signal = signal;
  const destinationContext = options.destinationContext!;
  const additionalTags = flags.get('additional-tag');
  if (Array.isArray(additionalTags) && additionalTags.length > 0) {
    addTransportOptions(destinationContext, 'docker-archive', { additionalTags });
  }
  const dir: DirContextOptions = {};
  if (flags.get('dest-compress') === true) dir.forceCompress = true;
  if (flags.get('dest-decompress') === true) dir.forceDecompress = true;
  addTransportOptions(destinationContext, 'dir', dir);
  if (flags.get('dest-oci-accept-uncompressed-layers') === true) {
    addTransportOptions(destinationContext, 'oci', {
      acceptUncompressedLayers: true,
    } satisfies OciContextOptions);
    addTransportOptions(destinationContext, 'oci-archive', {
      acceptUncompressedLayers: true,
    } satisfies OciArchiveContextOptions);
  }

  const format = flags.get('format') as string | undefined;
  if (format !== undefined) {
    const mediaType = manifestFormats[format];
    if (!mediaType) {
      throw new UsageError(
        `unknown format "${format}". Choose one of the supported formats: 'oci', 'v2s1', or 'v2s2'`,
      );
    }
    options.manifestMediaType = mediaType;
  }
  let selection: ImageListSelection = 'system';
  const multiArch = flags.get('multi-arch') as string | undefined;
  if (flags.get('all') === true) {
    if (multiArch !== undefined) throw new UsageError('Cannot use --all and --multi-arch flags together');
    selection = 'all';
  } else if (multiArch !== undefined) {
    if (multiArch !== 'system' && multiArch !== 'all' && multiArch !== 'index-only') {
      throw new UsageError(
        `unknown multi-arch option "${multiArch}". Choose one of the supported options: 'system', 'all', or 'index-only'`,
      );
    }
    selection = multiArch;
  }
  options.imageListSelection = selection;
  if (flags.get('preserve-digests') === true) options.preserveDigests = true;
  if (flags.get('remove-signatures') === true) options.removeSignatures = true;
  if (flags.get('copy-referrers') === true) options.copyReferrers = true;
  const retryTimes = flags.get('retry-times') as number | undefined;
  if (retryTimes !== undefined) options.retryTimes = Math.max(0, retryTimes);
  const retryDelay = flags.get('retry-delay') as number | undefined;
  if (retryDelay !== undefined) options.retryDelayMs = retryDelay;
  const parallel = flags.get('image-parallel-copies') as number | undefined;
  if (parallel !== undefined && parallel > 0) options.blobConcurrency = parallel;
  const compressionFormat = flags.get('dest-compress-format') as string | undefined;
  if (compressionFormat !== undefined) {
    if (
      compressionFormat !== 'gzip' &&
      compressionFormat !== 'zstd' &&
      compressionFormat !== 'zstd:chunked'
    ) {
      throw new UsageError(
        `unknown compression algorithm "${compressionFormat}": gantry supports gzip, zstd and zstd:chunked`,
      );
    }
    options.destinationCompression = compressionFormat;
  }
  const compressionLevel = flags.get('dest-compress-level') as number | undefined;
  if (compressionLevel !== undefined) options.compressionLevel = compressionLevel;
  // The blob-info cache (skopeo keeps one too): GANTRY_BLOB_INFO_CACHE names another file, or `off`.
  const cacheSetting = io.env.GANTRY_BLOB_INFO_CACHE;
  options.blobInfoCache = cacheSetting === 'off' ? false : cacheSetting || defaultBlobInfoCachePath(io.env);
  // A short-lived process of its own: glibc's allocator may be set for streaming large layers.
  options.tuneAllocatorForLargeBlobs = true;
  if (flags.get('dest-force-compress-format') === true) {
    if (compressionFormat === undefined) {
      throw new UsageError('--dest-force-compress-format requires --dest-compress-format');
    }
    options.forceCompressionFormat = true;
  }

  const signing = await signingOptionsFrom(flags, io.env);
  if (signing) options.signing = signing;
  let reporter: ProgressReporter | undefined;
  if (flags.get('quiet') !== true) {
    const columns = io.columns ?? (Number(io.env.COLUMNS) || 80);
    reporter = createProgressReporter({
      write: (text) => io.stderr.write(text),
      isTTY: io.isTTY,
      columns,
    });
    options.onProgress = reporter;
  }
  const progress = options.onProgress;
  options.onProgress = (event) => {
    if (event.type === 'retry')
      context.logger.warn(retryWarning(event.attempt, retryTimes ?? 0, event.error, event.delayMs));
    else if (event.type === 'copy-start')
      context.logger.debug(`Copying ${event.source} to ${event.destination}`);
    progress?.(event);
  };

  let result: Awaited<ReturnType<typeof copyImage>>;
  try {
    result = await copyImage(source, destination, options);
  } finally {
    reporter?.close();
  }
  const digestFile = flags.get('digestfile') as string | undefined;
  if (digestFile) {
    try {
      await writeFile(digestFile, result.manifestDigest, { mode: 0o644 });
    } catch (error) {
      throw wrapError(`Failed to write digest to file "${digestFile}"`, new Error(errorMessage(error)));
    }
  }
}

const unsupportedEncryption = 'image encryption is not available in gantry yet';

const copyFlags: FlagSpec[] = [
  { name: 'all', short: 'a', kind: 'bool', description: 'Copy all images if SOURCE-IMAGE is a list' },
  {
    name: 'multi-arch',
    kind: 'string',
    description: 'How to handle multi-architecture images (system, all, or index-only)',
  },
  {
    name: 'format',
    short: 'f',
    kind: 'string',
    valueName: 'MANIFEST TYPE',
    description:
      'MANIFEST TYPE (oci, v2s1, or v2s2) to use in the destination (default is manifest type of source, with fallbacks)',
  },
  { name: 'quiet', short: 'q', kind: 'bool', description: 'Suppress output information when copying images' },
  { name: 'preserve-digests', kind: 'bool', description: 'Preserve digests of images and lists' },
  { name: 'remove-signatures', kind: 'bool', description: 'Do not copy signatures from SOURCE-IMAGE' },
  {
    name: 'copy-referrers',
    kind: 'bool',
    description:
      'Also copy the referrers of the copied manifests (OCI subject: signatures, SBOMs, attestations), keeping every digest (not in skopeo)',
  },
  {
    name: 'digestfile',
    kind: 'string',
    description: 'Write the digest of the pushed image to the specified file',
  },
  {
    name: 'dest-compress',
    kind: 'bool',
    description:
      "Compress tarball image layers when saving to directory using the 'dir' transport. (default is same compression type as source)",
  },
  {
    name: 'dest-decompress',
    kind: 'bool',
    description:
      "Decompress tarball image layers when saving to directory using the 'dir' transport. (default is same compression type as source)",
  },
  {
    name: 'dest-oci-accept-uncompressed-layers',
    kind: 'bool',
    description:
      "Allow uncompressed image layers when saving to an OCI image using the 'oci' transport. (default is to compress things that aren't compressed)",
  },
  {
    name: 'dest-compress-format',
    kind: 'string',
    valueName: 'FORMAT',
    description: 'FORMAT to use for the compression',
  },
  {
    name: 'dest-compress-level',
    kind: 'int',
    valueName: 'LEVEL',
    description: 'LEVEL to use for the compression',
  },
  {
    name: 'dest-force-compress-format',
    kind: 'bool',
    description: 'Enforce exactly the specified compression format',
  },
  {
    name: 'image-parallel-copies',
    kind: 'uint',
    description: `Maximum number of image layers to be copied (pulled/pushed) simultaneously (default ${defaultBlobConcurrency})`,
  },
  {
    name: 'authfile',
    kind: 'string',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: skopeo's help text names the variable literally.
    description: 'path of the authentication file. Default is ${XDG_RUNTIME_DIR}/containers/auth.json',
  },
  ...imageFlagSpecs('src-'),
  ...imageFlagSpecs('dest-'),
  credsAliasSpec('src-'),
  credsAliasSpec('dest-'),
  ...retryFlagSpecs,
  {
    name: 'additional-tag',
    kind: 'stringArray',
    valueName: 'strings',
    description: 'additional tags (supports docker-archive)',
  },
  {
    name: 'dest-precompute-digests',
    kind: 'bool',
    description:
      "Precompute digests to prevent uploading layers already on the registry using the 'docker' transport.",
  },
  {
    name: 'sign-by',
    kind: 'string',
    valueName: 'FINGERPRINT',
    description: 'Sign the image using a GPG key with the specified FINGERPRINT',
  },
  {
    name: 'sign-by-sigstore-private-key',
    kind: 'string',
    valueName: 'PATH',
    description: 'Sign the image using a sigstore private key at PATH',
  },
  {
    name: 'sign-identity',
    kind: 'string',
    description:
      'Identity of signed image, must be a fully specified docker reference. Defaults to the target docker reference.',
  },
  {
    name: 'sign-passphrase-file',
    kind: 'string',
    valueName: 'PATH',
    description: 'Read a passphrase for signing an image from PATH',
  },
  {
    name: 'encryption-key',
    kind: 'stringArray',
    valueName: 'strings',
    description:
      '*Experimental* key with the encryption protocol to use needed to encrypt the image (e.g. jwe:/path/to/key.pem)',
    unsupported: unsupportedEncryption,
  },
  {
    name: 'decryption-key',
    kind: 'stringArray',
    valueName: 'strings',
    description: '*Experimental* key needed to decrypt the image',
    unsupported: unsupportedEncryption,
  },
  {
    name: 'encrypt-layer',
    kind: 'stringArray',
    valueName: 'ints',
    description:
      '*Experimental* the 0-indexed layer indices, with support for negative indexing (e.g. 0 is the first layer, -1 is the last layer)',
    unsupported: unsupportedEncryption,
  },
];

/** `gantry copy`: skopeo copy. */
export const copyCommand: CommandDefinition = {
  name: 'copy',
  use: 'copy [command options] SOURCE-IMAGE DESTINATION-IMAGE',
  short: 'Copy an IMAGE-NAME from one location to another',
  long: `Container "IMAGE-NAME" uses a "transport":"details" format.\n\nSupported transports:\n{transports}\n\n${imageNamesHelp}\n`,
  examples: 'gantry copy oci:/path/to/layout:tag dir:/path/to/directory',
  flags: copyFlags,
  run,
};
