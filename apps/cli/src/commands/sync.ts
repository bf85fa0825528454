import { writeFile } from 'node:fs/promises';
import {
  ErrorCodes,
  GantryError,
  parseShard,
  type SyncDestinationKind,
  type SyncOptions,
  type SyncResult,
  type SyncSourceKind,
  syncImages,
} from '@gantry/core';
import { MediaTypes } from '@gantry/core/transport';
import { type FlagSpec, UsageError } from '../args.js';
import type { CommandContext, CommandDefinition } from '../context.js';
import { errorMessage, wrapError } from '../errors.js';
import { credsAliasSpec, imageFlagSpecs, retryFlagSpecs, transportContextFrom } from '../image-flags.js';
import { signingOptionsFrom } from '../signing-flags.js';
import { createSyncProgressReporter, formatSyncSummary } from '../sync-progress.js';
import { policyFromGlobalOptions } from './copy.js';

/** skopeo's `-f/--format` names. */
const manifestFormats: Record<string, string> = {
  oci: MediaTypes.OciManifest,
  v2s1: MediaTypes.DockerSchema1Signed,
  v2s2: MediaTypes.DockerManifest,
};

/** The `--report` file: the result, one entry per image. */
export function syncReport(result: SyncResult): Record<string, unknown> {
  return {
    dryRun: result.dryRun,
    copied: result.copied,
    skipped: result.skipped,
    failed: result.failed,
    wouldCopy: result.wouldCopy,
    notStarted: result.notStarted,
    bytes: result.bytes,
    durationMs: result.durationMs,
    images: result.entries,
  };
}

async function run(context: CommandContext): Promise<void> {
  const { flags, positionals, signal, io } = context;
  if (positionals.length !== 2) throw new UsageError('Exactly two arguments expected');
  const [source, destination] = positionals as [string, string];
  const sourceKind = flags.get('src') as string | undefined;
  const destinationKind = flags.get('dest') as string | undefined;
  if (!sourceKind) throw new UsageError('A source transport must be specified');
  if (!['docker', 'dir', 'yaml'].includes(sourceKind)) {
    throw new UsageError(`"${sourceKind}" is not a valid source transport`);
  }
  if (!destinationKind) throw new UsageError('A destination transport must be specified');
  if (!['docker', 'dir', 'oci'].includes(destinationKind)) {
    throw new UsageError(`"${destinationKind}" is not a valid destination transport`);
  }
  const number = (name: string) => {
    const value = flags.get(name) as number | undefined;
    if (value !== undefined && value < 1) throw new UsageError(`--${name} must be at least 1`);
    return value;
  };
  let policy: SyncOptions['policy'];
  try {
    policy = await policyFromGlobalOptions(context);
  } catch (error) {
    throw wrapError('Error loading trust policy', error);
  }
  const options: SyncOptions = {
    transports: await context.transports(['docker', 'dir', 'oci']),
    sourceKind: sourceKind as SyncSourceKind,
    source,
    destinationKind: destinationKind as SyncDestinationKind,
    destination,
    policy,
    sourceContext: transportContextFrom(context.global, flags, 'src-', undefined),
    destinationContext: transportContextFrom(context.global, flags, 'dest-', undefined),
    scoped: flags.get('scoped') === true,
    dryRun: flags.get('dry-run') === true,
    keepGoing: flags.get('keep-going') === true,
    imageListSelection: flags.get('all') === true ? 'all' : 'system',
  };
  if (signal) options.signal = signal;
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
  if (flags.get('preserve-digests') === true) options.preserveDigests = true;
  // A short-lived process of its own: glibc's allocator may be set for streaming large layers.
  options.tuneAllocatorForLargeBlobs = true;
  if (flags.get('remove-signatures') === true) options.removeSignatures = true;
  const signing = await signingOptionsFrom(flags, io.env);
  if (signing) options.signing = signing;
  const retryTimes = flags.get('retry-times') as number | undefined;
  if (retryTimes !== undefined) options.retryTimes = Math.max(0, retryTimes);
  const retryDelay = flags.get('retry-delay') as number | undefined;
  if (retryDelay !== undefined) options.retryDelayMs = retryDelay;
  const blobConcurrency = flags.get('image-parallel-copies') as number | undefined;
  if (blobConcurrency !== undefined && blobConcurrency > 0) options.blobConcurrency = blobConcurrency;
  const images = number('parallel-images');
  if (images !== undefined) options.imageConcurrency = images;
  const perRegistry = number('parallel-images-per-registry');
  if (perRegistry !== undefined) options.registryConcurrency = perRegistry;
  const excludes = flags.get('exclude-tag') as string[] | undefined;
  if (excludes && excludes.length > 0) options.excludeTags = excludes;
  const newest = number('newest-tags');
  if (newest !== undefined) options.newestTags = newest;
  const shard = flags.get('shard') as string | undefined;
  if (shard !== undefined) options.shard = parseShard(shard);

  const progress = createSyncProgressReporter({
    write: (text) => io.stderr.write(text),
    isTTY: io.isTTY,
    columns: io.columns ?? (Number(io.env.COLUMNS) || 80),
  });
  options.onProgress = (event) => {
    if (event.type === 'image-progress') {
      if (event.event.type === 'retry') {
        context.logger.debug(
          `${event.image.source}: retry ${event.event.attempt} in ${event.event.delayMs} ms: ${event.event.error.message}`,
        );
      }
    } else if (event.type === 'image-done' && event.entry.result === 'would-copy') {
      context.print(`${event.entry.source} ${event.entry.destination}\n`);
    }
    progress(event);
  };
  if (options.dryRun) context.logger.warn('Running in dry-run mode');

  const result = await syncImages(options);
  io.stderr.write(formatSyncSummary(result));
  const reportFile = flags.get('report') as string | undefined;
  if (reportFile) {
    try {
      await writeFile(reportFile, `${JSON.stringify(syncReport(result), null, 2)}\n`, { mode: 0o644 });
    } catch (error) {
      throw wrapError(`Failed to write report to "${reportFile}"`, new Error(errorMessage(error)));
    }
  }
  if (result.failed > 0) {
    const first = result.entries.find((entry) => entry.result === 'failed');
    // Exit code 1 (never 2): the sync failed, whatever the images' errors were.
    throw new GantryError(
      ErrorCodes.Internal,
      result.failed === 1 && first
        ? `Sync failed: ${first.source}: ${first.error?.message ?? ''}`
        : `Sync failed due to previous reported error(s) for ${result.failed} images or repositories`,
    );
  }
}

/** skopeo sync's registry flags: the image flags without the oci/daemon ones. */
function registryFlags(prefix: 'src-' | 'dest-'): FlagSpec[] {
  return [
    ...imageFlagSpecs(prefix).filter(
      (spec) => !spec.name.endsWith('shared-blob-dir') && !spec.name.endsWith('daemon-host'),
    ),
    credsAliasSpec(prefix),
  ];
}

const syncFlags: FlagSpec[] = [
  { name: 'src', short: 's', kind: 'string', description: 'SOURCE transport type (docker, dir, yaml)' },
  { name: 'dest', short: 'd', kind: 'string', description: 'DESTINATION transport type (docker, dir, oci)' },
  {
    name: 'scoped',
    kind: 'bool',
    description: 'Images at DESTINATION are prefix using the full source image path as scope',
  },
  { name: 'all', short: 'a', kind: 'bool', description: 'Copy all images if SOURCE-IMAGE is a list' },
  { name: 'dry-run', kind: 'bool', description: 'Run without actually copying data' },
  { name: 'keep-going', kind: 'bool', description: 'Do not abort the sync if any image copy fails' },
  { name: 'preserve-digests', kind: 'bool', description: 'Preserve digests of images and lists' },
  { name: 'remove-signatures', kind: 'bool', description: 'Do not copy signatures from SOURCE images' },
  {
    name: 'format',
    short: 'f',
    kind: 'string',
    valueName: 'MANIFEST TYPE',
    description:
      'MANIFEST TYPE (oci, v2s1, or v2s2) to use when syncing image(s) to a destination (default is manifest type of source, with fallbacks)',
  },
  {
    name: 'image-parallel-copies',
    kind: 'uint',
    description: 'Maximum number of image layers to be copied (pulled/pushed) simultaneously, per image',
  },
  {
    name: 'parallel-images',
    kind: 'uint',
    valueName: 'N',
    description: 'Copy up to N images at once, biggest first (not in skopeo)',
    defaultText: '4',
  },
  {
    name: 'parallel-images-per-registry',
    kind: 'uint',
    valueName: 'N',
    description:
      'Copy up to N images at once from or to one registry (not in skopeo; default --parallel-images)',
  },
  {
    name: 'exclude-tag',
    kind: 'stringArray',
    valueName: 'REGEX',
    description: 'Do not sync tags matching REGEX (repeatable; not in skopeo)',
  },
  {
    name: 'newest-tags',
    kind: 'uint',
    valueName: 'N',
    description:
      'Sync at most N tags per listed repository: the highest semantic versions; other tags are left out (not in skopeo)',
  },
  {
    name: 'shard',
    kind: 'string',
    valueName: 'I/N',
    description:
      'Sync only part I (0-based) of N of the images, by a hash of each source name (not in skopeo)',
  },
  {
    name: 'report',
    kind: 'string',
    valueName: 'FILE',
    description:
      'Write a JSON report (one entry per image: source, destination, digest, result) to FILE (not in skopeo)',
  },
  {
    name: 'authfile',
    kind: 'string',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: skopeo's help text names the variable literally.
    description: 'path of the authentication file. Default is ${XDG_RUNTIME_DIR}/containers/auth.json',
  },
  ...registryFlags('src-'),
  ...registryFlags('dest-'),
  ...retryFlagSpecs,
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
    name: 'sign-passphrase-file',
    kind: 'string',
    description: 'File that contains a passphrase for the --sign-by key',
  },
];

/** `gantry sync`: skopeo sync, parallel, incremental and shardable. */
export const syncCommand: CommandDefinition = {
  name: 'sync',
  use: 'sync [command options] --src TRANSPORT --dest TRANSPORT SOURCE DESTINATION',
  short: 'Synchronize one or more images from one location to another',
  long: 'Copy all the images from a SOURCE to a DESTINATION.\n\nAllowed SOURCE transports (specified with --src): docker, dir, yaml.\nAllowed DESTINATION transports (specified with --dest): docker, dir, oci.\n\nSee docs/sync.md for details.\n',
  examples: 'gantry sync --src docker --dest dir --scoped registry.example.com/busybox /media/usb',
  flags: syncFlags,
  run,
};
