/**
 * What a sync copies: the source images (skopeo sync's rules for `docker`, `dir` and `yaml` sources)
 * and each one's destination name (skopeo's, scoped and unscoped).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { isDigest } from '../digest.js';
import { ErrorCodes, GantryError, isGantryError } from '../errors.js';
import { describeFileSystemError } from '../file-system.js';
import { isNameOnly, parseNormalizedNamed, withDigest, withTag } from '../reference/index.js';
import type { DockerReference } from '../reference/types.js';
import type { TransportContext } from '../transport/contract.js';
import { parseSyncConfig, type SyncRegistryConfig } from './config.js';
import { newestTags, type TagPattern, tagsMatchingConstraint } from './filters.js';
import type { SyncDestinationKind, SyncSourceKind } from './types.js';

/** A source image found by `findSourceImages`. */
export interface SourceImage {
  /**
   * Its name for destination naming and sharding: `host/repository:tag` (or `@digest`) for registry
   * images, the path below the source directory for `dir` images (the directory's own name when the
   * source is one image).
   */
  name: string;
  /** `transport:reference` to parse. */
  reference: string;
  /** The registry (`host[:port]`) for per-registry limits; undefined for local images. */
  registry?: string;
  /** The context to read it with. */
  context: TransportContext;
}

/** A repository that could not be listed (its error is reported, the rest goes on with `keepGoing`). */
export interface SourceFailure {
  source: string;
  error: unknown;
}

export interface FindSourcesOptions {
  kind: SyncSourceKind;
  source: string;
  context: TransportContext;
  excludeTags: readonly TagPattern[];
  newestTags: number | undefined;
  /** Lists a repository's tags (all pages). */
  listTags(repository: DockerReference, context: TransportContext): Promise<string[]>;
  warn(message: string): void;
  onListTags(repository: string): void;
  /** Parsed YAML (read by the caller, so its errors come before anything else). */
  yaml?: SyncRegistryConfig[];
  concurrency: number;
}

/** Reads and checks a YAML sync file; errors name the file, the line and the problem. */
export async function readSyncConfigFile(file: string): Promise<SyncRegistryConfig[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new GantryError(
      ErrorCodes.Usage,
      `Failed to read sync file ${file}: ${describeFileSystemError(error)}`,
      {
        cause: error,
      },
    );
  }
  return parseSyncConfig(text, file);
}

/** The source images, in the order found; repositories that failed to list in `failures`. */
export async function findSourceImages(
  options: FindSourcesOptions,
): Promise<{ images: SourceImage[]; failures: SourceFailure[] }> {
  switch (options.kind) {
    case 'docker':
      return findRegistrySourceImages(options);
    case 'dir':
      return { images: await findDirectorySourceImages(options.source, options.context), failures: [] };
    case 'yaml':
      return findYamlSourceImages(options);
  }
}

function dockerImage(reference: DockerReference, context: TransportContext): SourceImage {
  const name = reference.toString();
  return { name, reference: `docker://${name}`, registry: reference.domain, context };
}

/** Applies the exclusions and the newest-N limit to a repository's tags. */
function filterTags(
  tags: readonly string[],
  excludes: readonly TagPattern[],
  newest: number | undefined,
): string[] {
  let kept = tags.filter((tag) => !excludes.some((pattern) => pattern.test(tag)));
  if (newest !== undefined) kept = newestTags(kept, newest);
  return kept;
}

async function findRegistrySourceImages(
  options: FindSourcesOptions,
): Promise<{ images: SourceImage[]; failures: SourceFailure[] }> {
  const text = options.source.startsWith('docker://')
    ? options.source.slice('docker://'.length)
    : options.source;
  let named: DockerReference;
  try {
    named = parseNormalizedNamed(text);
  } catch (error) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Cannot obtain a valid image reference for transport "docker" and reference "${options.source}": ${(error as Error).message}`,
      { cause: error },
    );
  }
  if (!isNameOnly(named)) return { images: [dockerImage(named, options.context)], failures: [] };
  options.onListTags(named.name);
  let tags: string[];
  try {
    tags = await options.listTags(named, options.context);
  } catch (error) {
    return {
      images: [],
      failures: [{ source: `docker://${named.name}`, error: listingError(named, error) }],
    };
  }
  const kept = filterTags(tags, options.excludeTags, options.newestTags);
  if (kept.length === 0) {
    return {
      images: [],
      failures: [
        {
          source: `docker://${named.name}`,
          error: new GantryError(ErrorCodes.ImageNotFound, `No images to sync found in "${options.source}"`),
        },
      ],
    };
  }
  return { images: kept.map((tag) => dockerImage(withTag(named, tag), options.context)), failures: [] };
}

function listingError(repository: DockerReference, error: unknown): GantryError {
  const message = error instanceof Error ? error.message : String(error);
  return new GantryError(
    isGantryError(error) ? error.code : ErrorCodes.Internal,
    `Error determining repository tags for image ${repository.name}: ${message}`,
    { cause: error },
  );
}

/**
 * Every `dir:` image below `directory`: each directory holding a `manifest.json` (not looked into
 * further), in lexical order as skopeo walks. The source directory itself may be one image.
 */
async function findDirectorySourceImages(
  directory: string,
  context: TransportContext,
): Promise<SourceImage[]> {
  const base = path.resolve(directory);
  try {
    await stat(base);
  } catch (error) {
    throw new GantryError(
      ErrorCodes.Usage,
      `Invalid source directory specified: ${describeFileSystemError(error)}`,
      {
        cause: error,
      },
    );
  }
  const found: string[] = [];
  const walk = async (current: string): Promise<void> => {
    const entries = await readdir(current, { withFileTypes: true });
    if (entries.some((entry) => entry.isFile() && entry.name === 'manifest.json')) {
      found.push(current);
      return;
    }
    for (const entry of entries.sort((left, right) =>
      left.name < right.name ? -1 : left.name > right.name ? 1 : 0,
    )) {
      if (entry.isDirectory()) await walk(path.join(current, entry.name));
    }
  };
  try {
    await walk(base);
  } catch (error) {
    throw new GantryError(
      ErrorCodes.Internal,
      `Error walking the path "${directory}": ${describeFileSystemError(error)}`,
      {
        cause: error,
      },
    );
  }
  if (found.length === 0)
    throw new GantryError(ErrorCodes.ImageNotFound, `No images to sync found in "${directory}"`);
  return found.map((imageDirectory) => {
    const relative = path.relative(base, imageDirectory).split(path.sep).join('/');
    return {
      name: relative === '' ? path.basename(base) : relative,
      reference: `dir:${imageDirectory}`,
      context,
    };
  });
}

/** The context for one YAML registry: skopeo replaces the TLS and certificate settings, and sets credentials when given. */
function registryContext(base: TransportContext, config: SyncRegistryConfig): TransportContext {
  const docker: Record<string, unknown> = {
    ...((base.transportOptions?.docker as Record<string, unknown> | undefined) ?? {}),
  };
  delete docker.tlsVerify;
  delete docker.certDirectory;
  if (config.tlsVerify !== undefined) docker.tlsVerify = config.tlsVerify;
  if (config.certDirectory !== undefined) docker.certDirectory = config.certDirectory;
  if (config.credentials) {
    docker.credentials = { ...config.credentials };
    delete docker.noCredentials;
    delete docker.registryToken;
  }
  return { ...base, transportOptions: { ...base.transportOptions, docker } };
}

async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  run: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await run(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

async function findYamlSourceImages(
  options: FindSourcesOptions,
): Promise<{ images: SourceImage[]; failures: SourceFailure[] }> {
  const images: SourceImage[] = [];
  const failures: SourceFailure[] = [];
  type Job = () => Promise<{ images: SourceImage[]; failures: SourceFailure[] }>;
  const jobs: Job[] = [];
  for (const registry of options.yaml ?? []) {
    if (
      registry.images.length === 0 &&
      registry.imagesByTagRegex.length === 0 &&
      registry.imagesBySemver.length === 0
    ) {
      options.warn(`No images specified for registry ${registry.registry}`);
      continue;
    }
    const context = registryContext(options.context, registry);
    const excludes = [...options.excludeTags, ...registry.excludeTags];
    const newest = registry.newestTags ?? options.newestTags;
    const repositoryOf = (repository: string): DockerReference => {
      let named: DockerReference;
      try {
        named = parseNormalizedNamed(`${registry.registry}/${repository}`);
      } catch (error) {
        throw new GantryError(
          ErrorCodes.Usage,
          `registry ${registry.registry}: invalid repository name "${repository}": ${(error as Error).message}`,
        );
      }
      if (!isNameOnly(named)) {
        throw new GantryError(
          ErrorCodes.Usage,
          `registry ${registry.registry}: "${repository}" names a reference, not a repository`,
        );
      }
      return named;
    };
    const listed =
      (named: DockerReference, select: (tags: string[]) => string[]): Job =>
      async () => {
        options.onListTags(named.name);
        let tags: string[];
        try {
          tags = await options.listTags(named, context);
        } catch (error) {
          return {
            images: [],
            failures: [{ source: `docker://${named.name}`, error: listingError(named, error) }],
          };
        }
        const kept = filterTags(select(tags), excludes, newest);
        if (kept.length === 0) options.warn(`No refs to sync found in ${named.name}`);
        return { images: kept.map((tag) => dockerImage(withTag(named, tag), context)), failures: [] };
      };
    // Names and references are checked up front, before any registry is contacted.
    for (const { repository, references } of registry.images) {
      const named = repositoryOf(repository);
      if (references.length === 0) {
        jobs.push(listed(named, (tags) => tags));
        continue;
      }
      const explicit: SourceImage[] = [];
      for (const reference of references) {
        if (reference.startsWith('sha256:') || isDigest(reference)) {
          if (!isDigest(reference)) {
            throw new GantryError(
              ErrorCodes.Usage,
              `registry ${registry.registry}, images, ${repository}: invalid digest "${reference}"`,
            );
          }
          explicit.push(dockerImage(withDigest(named, reference), context));
        } else {
          let tagged: DockerReference;
          try {
            tagged = withTag(named, reference);
          } catch (error) {
            throw new GantryError(
              ErrorCodes.Usage,
              `registry ${registry.registry}, images, ${repository}: invalid tag "${reference}": ${(error as Error).message}`,
            );
          }
          if (excludes.some((pattern) => pattern.test(reference))) continue;
          explicit.push(dockerImage(tagged, context));
        }
      }
      jobs.push(async () => ({ images: explicit, failures: [] }));
    }
    for (const { repository, pattern } of registry.imagesByTagRegex) {
      jobs.push(listed(repositoryOf(repository), (tags) => tags.filter((tag) => pattern.test(tag))));
    }
    for (const { repository, constraint } of registry.imagesBySemver) {
      jobs.push(listed(repositoryOf(repository), (tags) => tagsMatchingConstraint(tags, constraint)));
    }
  }
  const results = await mapLimit(jobs, options.concurrency, (job) => job());
  for (const result of results) {
    images.push(...result.images);
    failures.push(...result.failures);
  }
  return { images, failures };
}

/** skopeo's destination name: `destination/<suffix>` with the full source name (scoped) or its last component. */
export function destinationReferenceFor(
  kind: SyncDestinationKind,
  destination: string,
  sourceName: string,
  scoped: boolean,
): { reference: string; location: string } {
  const suffix = scoped ? sourceName : path.posix.basename(sourceName);
  switch (kind) {
    case 'docker': {
      const location = path.posix.join(destination, suffix);
      return { reference: `docker://${location}`, location };
    }
    case 'dir': {
      const location = path.posix.join(destination, suffix);
      return { reference: `dir:${location}`, location };
    }
    case 'oci':
      return { reference: `oci:${destination}:${suffix}`, location: suffix };
  }
}
