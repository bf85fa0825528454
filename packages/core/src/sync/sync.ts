/**
 * `syncImages`: skopeo sync, parallel, incremental and shardable. See docs/sync.md.
 *
 * 1. Up front, before any registry is contacted: options, the YAML file, every regular expression and
 *    version constraint, the shard.
 * 2. Source images: repositories' tags listed (all pages), filters applied, destinations named as skopeo
 *    names them; two sources with one destination are refused (`--scoped` separates them); then only the
 *    images of the shard are kept.
 * 3. Plan, for every image at once (bounded): the destination is asked for the manifest digest its
 *    name has (a HEAD request on a registry, `manifest.json` in a directory, `index.json` in a layout;
 *    on a registry, not for a tag its repository's tag list, read while the source's tags are listed,
 *    lacks); when it has one, the source is asked for its manifest's digest and type (HEAD requests,
 *    where the source transport can; at the same time as the destination for a tag the list names):
 *    equal digests of a manifest the copy writes unchanged skip the image with nothing downloaded. Otherwise the source is opened and its manifest read (the opened source is
 *    handed to the copy later, so the manifest is fetched once), which gives its size (configs and
 *    layers, of the instance the copy will take from a list), its blobs and the digest the copy will
 *    write; an image whose destination already has that digest is skipped. A `dir` destination that
 *    exists with anything else is refused, as skopeo refuses to overwrite. Planning failures stop the
 *    sync before anything is copied, unless `keepGoing`.
 * 4. Copy, biggest images first, `imageConcurrency` at once and at most `registryConcurrency` per
 *    registry (source or destination). A blob shared by several images going to one registry (or one
 *    layout) is uploaded by the first of them in that order; the others wait for it and then mount it
 *    (a registry's cross-repository mount) or find it (a layout) instead of uploading it again. An image
 *    starts only after every image it waits for has started, so waiting never blocks the copies.
 */
import { setMaxListeners } from 'node:events';
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { copyImage, imageName } from '../copy/copy.js';
import type { CopyOptions } from '../copy/types.js';
import type { Digest } from '../digest.js';
import { ErrorCodes, GantryError, isGantryError } from '../errors.js';
import {
  choosePlatformInstance,
  isManifestListMediaType,
  MediaTypes,
  manifestDigest,
  normalizeManifestMediaType,
  parseManifest,
  parseManifestList,
} from '../manifest/index.js';
import { loadDefaultPolicy } from '../policy/index.js';
import type { DockerReference } from '../reference/types.js';
import type {
  BlobInfo,
  ImageDestination,
  ImageReference,
  ImageSource,
  Transport,
  TransportContext,
} from '../transport/contract.js';
import type { SyncRegistryConfig } from './config.js';
import { compileTagPattern, type TagPattern } from './filters.js';
import { shardOf, validateShard } from './shard.js';
import {
  destinationReferenceFor,
  findSourceImages,
  readSyncConfigFile,
  type SourceImage,
} from './sources.js';
import type { SyncImage, SyncOptions, SyncProgressEvent, SyncReportEntry, SyncResult } from './types.js';

/**
 * Milliseconds on a monotonic clock. process.hrtime, not performance.now(): Node loads perf_hooks
 * (~5 ms of a short command's start-up) at the first use of the `performance` global.
 */
function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** The code of a system error (`ENOENT`…); works across realms, unlike `instanceof Error`. */
function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Images copied at once when `imageConcurrency` is not given. */
export const defaultSyncImageConcurrency = 4;

/** Blobs up to this size are uploaded to a registry in one request (`wholeUploadMaxBytes`). */
export const syncWholeUploadMaxBytes = 4 * 1024 * 1024;

/** Images planned at once (their destination and source HEAD requests) when no limit says fewer. */
const planningRequestsAtOnce = 16;

const ociRefNameAnnotation = 'org.opencontainers.image.ref.name';

interface PlannedImage {
  image: SyncImage;
  sourceReference: ImageReference;
  /**
   * The destination; for `dir`, parsed only when the copy starts (the `dir` transport wants the
   * parent directory to exist, which the copy creates and a dry run must not).
   */
  destinationReference: ImageReference | undefined;
  /** The destination's path (`dir`), `host/repository:tag` (docker) or the image name in the layout (oci). */
  destinationLocation: string;
  sourceContext: TransportContext;
  /** Registries this image's copy talks to (per-registry limit). */
  registries: string[];
  /** Where its blobs land, when several images share a store (a registry, a layout). */
  blobStore: string | undefined;
  /** Blob digests the copy will write. */
  blobs: Digest[];
  /** The source opened while planning, handed to the copy. */
  openedSource: ImageSource | undefined;
  entry: SyncReportEntry;
  action: 'copy' | 'skip' | 'failed';
}

function errorEntry(error: unknown): { code: string; message: string } {
  return {
    code: isGantryError(error) ? error.code : ErrorCodes.Internal,
    message: error instanceof Error ? error.message : String(error),
  };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    const reason = signal.reason;
    throw isGantryError(reason)
      ? reason
      : new GantryError(ErrorCodes.Aborted, 'sync aborted', { cause: reason });
  }
}

function positiveInteger(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new GantryError(ErrorCodes.Usage, `${name} must be a whole number of at least 1, not ${value}`);
  }
  return value;
}

/**
 * Mirrors images from a registry repository, a directory tree or a YAML file's registries to a
 * registry, a directory or an OCI layout, with skopeo sync's naming (see the module comment).
 *
 * Rejects (`GantryError`) for bad options, YAML, regular expressions, version constraints or shard,
 * for destination name collisions, and when `signal` aborts. Everything that concerns one image or one
 * repository (not found, copy failure, refused overwrite) is an entry of the result with result
 * `failed`; without `keepGoing` the first failure stops the sync (nothing more is started; images not
 * started are `not-started`), and planning failures stop it before any copy.
 */
export async function syncImages(options: SyncOptions): Promise<SyncResult> {
  const started = monotonicMs();
  const signal = options.signal;
  const emit = (event: SyncProgressEvent) => options.onProgress?.(event);
  // 1. Everything that can be checked without contacting anything.
  if (!['docker', 'dir', 'yaml'].includes(options.sourceKind)) {
    throw new GantryError(ErrorCodes.Usage, `"${options.sourceKind}" is not a valid source transport`);
  }
  if (!['docker', 'dir', 'oci'].includes(options.destinationKind)) {
    throw new GantryError(
      ErrorCodes.Usage,
      `"${options.destinationKind}" is not a valid destination transport`,
    );
  }
  if (options.sourceKind === 'dir' && options.destinationKind === 'dir') {
    throw new GantryError(
      ErrorCodes.Usage,
      "sync from 'dir' to 'dir' not implemented, consider using rsync instead",
    );
  }
  if (options.destinationKind === 'oci' && options.destination.includes(':')) {
    throw new GantryError(ErrorCodes.Usage, `OCI layout path "${options.destination}" must not contain ":"`);
  }
  const imageConcurrency = positiveInteger(
    options.imageConcurrency,
    'imageConcurrency',
    defaultSyncImageConcurrency,
  );
  const registryConcurrency = positiveInteger(
    options.registryConcurrency,
    'registryConcurrency',
    imageConcurrency,
  );
  if (options.newestTags !== undefined) positiveInteger(options.newestTags, 'newestTags', 1);
  if (options.shard) validateShard(options.shard);
  const excludeTags: TagPattern[] = (options.excludeTags ?? []).map((expression) => {
    try {
      return compileTagPattern(expression);
    } catch (error) {
      throw new GantryError(ErrorCodes.Usage, `tag exclusion: ${(error as Error).message}`);
    }
  });
  let yaml: SyncRegistryConfig[] | undefined;
  if (options.sourceKind === 'yaml') yaml = await readSyncConfigFile(options.source);
  const transports = options.transports;
  if (options.sourceKind !== 'dir') transports.require('docker');
  transports.require(options.destinationKind);
  if (options.sourceKind === 'dir') transports.require('dir');
  const policy = options.policy ?? (await loadDefaultPolicy());
  throwIfAborted(signal);

  // 2. Source images and their destinations.
  const sourceContext: TransportContext = { ...options.sourceContext };
  /** Destination repositories (`host/path`) with no tagged image before this sync. */
  const untaggedRepositories = new Set<string>();
  const destinationContext: TransportContext = { ...options.destinationContext };
  if (options.destinationKind === 'docker') {
    // Mirrors are mostly small blobs (configs, thin layers over a shared base): each is sent in the
    // request that commits it, a request fewer per blob; and in a destination repository whose tag
    // list shows no image (filled while planning), without a HEAD request first, which could only
    // answer 404 (see the docker transport's options).
    const docker = destinationContext.transportOptions?.docker as Record<string, unknown> | undefined;
    destinationContext.transportOptions = {
      ...destinationContext.transportOptions,
      docker: {
        ...docker,
        wholeUploadMaxBytes: docker?.wholeUploadMaxBytes ?? syncWholeUploadMaxBytes,
        untaggedRepositories: docker?.untaggedRepositories ?? untaggedRepositories,
      },
    };
  }
  // Every request and copy in flight listens to these signals (dozens at once while planning): signals
  // of the sync's own, without Node's warning beyond 10 listeners, and the caller's signal gets one each.
  // A context without a signal of its own gets the copies' signal itself, so that a copy uses the
  // context as it is instead of a copy of it (the docker transport reads registries.conf once per
  // context object, not once per image).
  const listenedTo = (signals: AbortSignal[]): AbortSignal => {
    const combined = AbortSignal.any(signals);
    setMaxListeners(0, combined);
    return combined;
  };
  const copySignal = signal ? listenedTo([signal]) : undefined;
  for (const context of [sourceContext, destinationContext]) {
    if (context.signal && signal) context.signal = listenedTo([context.signal, signal]);
    else if (context.signal) context.signal = listenedTo([context.signal]);
    else if (copySignal) context.signal = copySignal;
  }
  const docker = transports.get('docker');
  const destinationTags =
    options.destinationKind === 'docker' && docker?.listTags
      ? new DestinationTagLists(docker, destinationContext, untaggedRepositories)
      : undefined;
  const found = await findSourceImages({
    kind: options.sourceKind,
    source: options.source,
    context: sourceContext,
    excludeTags,
    newestTags: options.newestTags,
    yaml,
    concurrency: imageConcurrency,
    warn: (message) => emit({ type: 'warning', message }),
    onListTags: (repository) => {
      emit({ type: 'list-tags', repository });
      // The destination repository's tags are read while the source's are: planning needs them
      // first thing, and both lists (and the destination's ping) then cost one round trip, not two.
      if (destinationTags !== undefined) {
        const repositoryDestination = destinationRepositoryFor(
          transports,
          options.destination,
          repository,
          options.scoped === true,
        );
        if (repositoryDestination !== undefined) destinationTags.prefetch(repositoryDestination);
      }
    },
    listTags: async (repository: DockerReference, context) => {
      if (!docker?.listTags) {
        throw new GantryError(ErrorCodes.NotSupported, 'the docker transport cannot list tags');
      }
      return docker.listTags(docker.parseReference(`//${repository.name}`), context);
    },
  });
  throwIfAborted(signal);
  const failedEntries: SyncReportEntry[] = found.failures.map((failure) => ({
    source: failure.source,
    destination: '',
    result: 'failed',
    size: 0,
    bytes: 0,
    error: errorEntry(failure.error),
  }));
  const unique = new Map<string, SourceImage>();
  for (const image of found.images) if (!unique.has(image.reference)) unique.set(image.reference, image);
  const byDestination = new Map<string, SourceImage>();
  const named: Array<{ source: SourceImage; destination: { reference: string; location: string } }> = [];
  for (const source of unique.values()) {
    const destination = destinationReferenceFor(
      options.destinationKind,
      options.destination,
      source.name,
      options.scoped === true,
    );
    const other = byDestination.get(destination.reference);
    if (other) {
      throw new GantryError(
        ErrorCodes.Usage,
        `${other.reference} and ${source.reference} would both be written to ${destination.reference}${options.scoped ? '' : ' (use --scoped to keep them apart)'}`,
      );
    }
    byDestination.set(destination.reference, source);
    named.push({ source, destination });
  }
  const selected = options.shard
    ? named.filter(({ source }) => shardOf(source.name, options.shard!.count) === options.shard!.index)
    : named;

  // 3. Plan.
  const planned: PlannedImage[] = selected.map(({ source, destination }, index) => {
    const sourceReference = transports.parseImageReference(source.reference);
    const destinationReference =
      options.destinationKind === 'dir' ? undefined : transports.parseImageReference(destination.reference);
    const destinationLocation =
      options.destinationKind === 'dir' ? path.resolve(destination.location) : destination.location;
    const destinationRegistry =
      options.destinationKind === 'docker' ? destinationReference?.dockerReference()?.domain : undefined;
    const registries = [source.registry, destinationRegistry].filter(
      (registry): registry is string => registry !== undefined,
    );
    const blobStore =
      options.destinationKind === 'docker'
        ? `docker:${destinationRegistry}`
        : options.destinationKind === 'oci'
          ? `oci:${options.destination}`
          : undefined;
    const image: SyncImage = {
      index,
      source: imageName(sourceReference),
      destination: destinationReference ? imageName(destinationReference) : `dir:${destinationLocation}`,
      size: 0,
    };
    return {
      image,
      sourceReference,
      destinationReference,
      destinationLocation,
      sourceContext: source.context,
      registries: [...new Set(registries)],
      blobStore,
      blobs: [],
      openedSource: undefined,
      entry: {
        source: image.source,
        destination: image.destination,
        result: 'not-started',
        size: 0,
        bytes: 0,
      },
      action: 'copy',
    };
  });
  const copyOptions: CopyOptions = { policy };
  for (const key of [
    'imageListSelection',
    'manifestMediaType',
    'preserveDigests',
    'removeSignatures',
    'retryTimes',
    'retryDelayMs',
    'blobConcurrency',
    'signing',
    'tuneAllocatorForLargeBlobs',
  ] as const) {
    if (options[key] !== undefined) (copyOptions as Record<string, unknown>)[key] = options[key];
  }
  const selection = options.imageListSelection ?? 'system';
  const layoutIndex =
    options.destinationKind === 'oci' ? await readLayoutRefNames(options.destination) : undefined;
  const closeOpenedSources = async () => {
    await Promise.allSettled(planned.map((plan) => plan.openedSource?.close()));
    for (const plan of planned) plan.openedSource = undefined;
  };
  try {
    // Planning is mostly HEAD requests: many at once (a no-op re-sync is nothing else), unless a
    // per-registry limit was asked for.
    const planningConcurrency = Math.max(imageConcurrency * 2, planningRequestsAtOnce);
    const planningPerRegistry =
      options.registryConcurrency === undefined
        ? Math.max(registryConcurrency * 2, planningRequestsAtOnce)
        : registryConcurrency * 2;
    await runLimited(planned, planningConcurrency, planningPerRegistry, async (plan) => {
      // The checks start from the I/O phase of the event loop, not in the microtask that ended the
      // previous image's checks: by then the HTTP client has handed that image's connections back to
      // its pools, and this image's requests go out on them instead of on new connections.
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (signal?.aborted) return;
      try {
        await planImage(plan, {
          selection,
          forcedType: options.manifestMediaType,
          destinationKind: options.destinationKind,
          destinationContext,
          layoutIndex,
          destinationTags,
        });
      } catch (error) {
        if (signal?.aborted) return;
        plan.action = 'failed';
        plan.entry.result = 'failed';
        plan.entry.error = errorEntry(error);
        await plan.openedSource?.close().catch(() => {});
        plan.openedSource = undefined;
      }
    });
    throwIfAborted(signal);
  } catch (error) {
    await closeOpenedSources();
    throw error;
  }
  const toCopy = planned.filter((plan) => plan.action === 'copy');
  const planFailures = planned.filter((plan) => plan.action === 'failed').length + failedEntries.length;
  emit({
    type: 'planned',
    images: planned.map((plan) => plan.image),
    toCopy: toCopy.length,
    skipped: planned.filter((plan) => plan.action === 'skip').length,
    failed: planFailures,
  });

  // 4. Copy.
  const finish = (): SyncResult => {
    const entries = [...failedEntries, ...planned.map((plan) => plan.entry)];
    const count = (result: SyncReportEntry['result']) =>
      entries.filter((entry) => entry.result === result).length;
    return {
      entries,
      copied: count('copied'),
      skipped: count('skipped'),
      failed: count('failed'),
      wouldCopy: count('would-copy'),
      notStarted: count('not-started'),
      bytes: entries.reduce((sum, entry) => sum + entry.bytes, 0),
      durationMs: Math.round(monotonicMs() - started),
      dryRun: options.dryRun === true,
    };
  };
  if (options.dryRun || (planFailures > 0 && !options.keepGoing)) {
    if (options.dryRun) for (const plan of toCopy) plan.entry.result = 'would-copy';
    await closeOpenedSources();
    for (const plan of planned) emit({ type: 'image-done', image: plan.image, entry: plan.entry });
    return finish();
  }
  for (const plan of planned)
    if (plan.action !== 'copy') emit({ type: 'image-done', image: plan.image, entry: plan.entry });
  const order = [...toCopy].sort(
    (left, right) => right.image.size - left.image.size || left.image.index - right.image.index,
  );
  const shared = new SharedBlobs(order);
  let stopped = false;
  try {
    await schedule(order, {
      imageConcurrency,
      registryConcurrency,
      dependencies: (plan) => shared.ownersOf(plan),
      shouldStart: () => !stopped && !signal?.aborted,
      run: async (plan) => {
        const timer = monotonicMs();
        emit({ type: 'image-start', image: plan.image });
        let bytes = 0;
        const inFlight = new Map<string, number>();
        try {
          if (plan.destinationReference === undefined) {
            // As skopeo: the directories above the image are created first.
            await mkdir(path.dirname(plan.destinationLocation), { recursive: true });
            plan.destinationReference = transports.parseImageReference(`dir:${plan.destinationLocation}`);
          }
          const result = await copyImage(
            wrapSourceReference(plan.sourceReference, () => {
              const opened = plan.openedSource;
              plan.openedSource = undefined;
              return opened;
            }),
            wrapDestinationReference(plan.destinationReference, (destination) =>
              shared.wrap(plan, destination),
            ),
            {
              ...copyOptions,
              sourceContext: plan.sourceContext,
              destinationContext,
              ...(copySignal ? { signal: copySignal } : {}),
              onProgress: (event) => {
                if (event.type === 'blob-progress') inFlight.set(event.blob.digest, event.bytes);
                else if (event.type === 'blob-done') {
                  inFlight.delete(event.blob.digest);
                  if (event.result === 'copied') bytes += event.bytes;
                }
                let current = bytes;
                for (const value of inFlight.values()) current += value;
                emit({ type: 'image-progress', image: plan.image, bytes: current, event });
              },
            },
          );
          plan.entry.result = 'copied';
          plan.entry.digest = result.manifestDigest;
        } catch (error) {
          if (signal?.aborted) throw error;
          plan.entry.result = 'failed';
          plan.entry.error = errorEntry(error);
          if (!options.keepGoing) stopped = true;
        } finally {
          shared.finished(plan);
          plan.entry.bytes = bytes;
          plan.entry.durationMs = Math.round(monotonicMs() - timer);
        }
        emit({ type: 'image-done', image: plan.image, entry: plan.entry });
      },
    });
    throwIfAborted(signal);
  } finally {
    await closeOpenedSources();
  }
  return finish();
}

interface PlanSettings {
  selection: 'system' | 'all' | 'index-only';
  forcedType: string | undefined;
  destinationKind: SyncOptions['destinationKind'];
  destinationContext: TransportContext;
  layoutIndex: Map<string, Digest> | undefined;
  /** The destination repositories' tags (docker), to skip asking for a tag that is not there. */
  destinationTags: DestinationTagLists | undefined;
}

/**
 * The tags of each destination repository, listed once per sync (all pages): a tag that is not
 * listed needs no HEAD request to learn that the destination has no image by that name, which on a
 * new mirror is every image. A repository that does not exist has no tags; any other failure to list
 * (authentication, a registry without the API) says nothing, and the images are asked for one by one.
 * Only absence is taken from the list: a listed tag is still asked for its digest. A repository
 * without tags (or that does not exist) is recorded in `untagged`, the docker destinations'
 * `untaggedRepositories`: a small blob can be there only if this sync put it there, so it is
 * uploaded without asking.
 */
class DestinationTagLists {
  private readonly lists = new Map<string, Promise<Set<string> | undefined>>();

  constructor(
    private readonly docker: Transport,
    private readonly context: TransportContext,
    /** Receives the repositories whose list is empty or that do not exist. */
    private readonly untagged: Set<string>,
  ) {}

  /** The tags of repository `name` (`host/path`), listed at the first call; undefined when unknown. */
  private listOf(name: string): Promise<Set<string> | undefined> {
    let list = this.lists.get(name);
    if (list === undefined) {
      list = this.docker.listTags!(this.docker.parseReference(`//${name}`), this.context).then(
        (tags) => {
          if (tags.length === 0) this.untagged.add(name);
          return new Set(tags);
        },
        (error: unknown) => {
          if (!isGantryError(error) || error.code !== ErrorCodes.RepositoryNotFound) return undefined;
          this.untagged.add(name);
          return new Set<string>();
        },
      );
      this.lists.set(name, list);
    }
    return list;
  }

  /** Starts listing repository `name` (`host/path`) now, for a later `lacks` or `lists`. */
  prefetch(name: string): void {
    void this.listOf(name);
  }

  /**
   * What the list of the reference's repository says about its tag: `absent` when the list is known
   * and lacks it, `listed` when it has it, `unknown` for a reference by digest or when the list could
   * not be read.
   */
  async tagStatus(reference: DockerReference): Promise<'absent' | 'listed' | 'unknown'> {
    if (reference.tag === undefined || reference.digest !== undefined) return 'unknown';
    const tags = await this.listOf(reference.name);
    if (tags === undefined) return 'unknown';
    return tags.has(reference.tag) ? 'listed' : 'absent';
  }

  /** True when the list of the reference's repository is known and lacks its tag. */
  async lacks(reference: DockerReference): Promise<boolean> {
    return (await this.tagStatus(reference)) === 'absent';
  }
}

/**
 * The destination repository (`host/path`) of the images of source repository `repository`
 * (`host/path`) in a docker destination, named as their tags are; undefined when it cannot be named.
 */
function destinationRepositoryFor(
  transports: SyncOptions['transports'],
  destination: string,
  repository: string,
  scoped: boolean,
): string | undefined {
  try {
    const { reference } = destinationReferenceFor('docker', destination, `${repository}:latest`, scoped);
    return transports.parseImageReference(reference).dockerReference()?.name;
  } catch {
    return undefined;
  }
}

/**
 * Asks the destination which digest its name has; when it has one, asks the source (HEAD requests,
 * where its transport can) which manifest it has: when that is the digest the copy would write, the
 * image is skipped without downloading anything. Otherwise reads the source's manifests (size, blobs,
 * the digest the copy will write) and compares.
 */
async function planImage(plan: PlannedImage, settings: PlanSettings): Promise<void> {
  // A tag the destination's list names almost always has an image: the source is asked at the same
  // time as the destination, one round trip per image instead of two (a no-op re-sync is nothing else).
  const named =
    settings.destinationKind === 'docker' ? plan.destinationReference?.dockerReference() : undefined;
  const early =
    named !== undefined && (await settings.destinationTags?.tagStatus(named)) === 'listed'
      ? sourceManifestHead(plan, settings)
      : undefined;
  const present = await destinationDigest(plan, settings).then(
    (digest) => ({ digest }),
    (error: unknown) => ({ error }),
  );
  const sourceHead =
    'digest' in present && present.digest ? await (early ?? sourceManifestHead(plan, settings)) : undefined;
  if (
    sourceHead !== undefined &&
    'digest' in present &&
    present.digest === sourceHead.digest &&
    headNamesWrittenManifest(sourceHead.mediaType, settings)
  ) {
    plan.action = 'skip';
    plan.entry.result = 'skipped';
    plan.entry.digest = present.digest;
    return;
  }
  const source = await plan.sourceReference.newImageSource(plan.sourceContext);
  plan.openedSource = source;
  const top = await source.getManifest();
  const topType = normalizeManifestMediaType(top.mediaType, top.bytes);
  const topDigest = manifestDigest(top.bytes);
  let expected: Digest | undefined = topDigest;
  let writtenType = topType;
  const blobs = new Set<Digest>();
  let size = 0;
  const addImage = (bytes: Uint8Array, mediaType: string) => {
    const manifest = parseManifest(bytes, mediaType);
    const infos: BlobInfo[] = [...(manifest.config ? [manifest.config] : []), ...manifest.layers];
    for (const info of infos) {
      if (!blobs.has(info.digest)) size += Math.max(0, info.size);
      blobs.add(info.digest);
    }
  };
  if (isManifestListMediaType(topType)) {
    const list = parseManifestList(top.bytes, topType);
    if (settings.selection === 'system') {
      const chosen = choosePlatformInstance(list, plan.sourceContext.platform);
      const instance = await source.getManifest(chosen);
      writtenType = normalizeManifestMediaType(instance.mediaType, instance.bytes);
      addImage(instance.bytes, writtenType);
      expected = chosen;
    } else if (settings.selection === 'all') {
      for (const entry of list.instances) {
        const instance = await source.getManifest(entry.digest);
        addImage(instance.bytes, normalizeManifestMediaType(instance.mediaType, instance.bytes));
      }
    }
  } else {
    addImage(top.bytes, topType);
  }
  plan.image.size = size;
  plan.entry.size = size;
  plan.blobs = [...blobs];
  // The copy keeps the manifest's bytes (so its digest) unless it converts it.
  const converts =
    (settings.forcedType !== undefined && settings.forcedType !== writtenType) ||
    (settings.destinationKind === 'oci' &&
      writtenType !== MediaTypes.OciManifest &&
      writtenType !== MediaTypes.OciIndex);
  if (converts) expected = undefined;
  if ('error' in present) throw present.error;
  if (expected !== undefined && present.digest === expected) {
    plan.action = 'skip';
    plan.entry.result = 'skipped';
    plan.entry.digest = expected;
    await source.close();
    plan.openedSource = undefined;
    return;
  }
  if (settings.destinationKind === 'dir' && present.digest !== undefined) {
    throw new GantryError(
      ErrorCodes.Usage,
      `Refusing to overwrite destination directory "${plan.destinationLocation}"`,
    );
  }
  plan.entry.digest = expected ?? topDigest;
}

/**
 * What the source's transport tells about its manifest without downloading it (a registry's HEAD
 * request, where a pull would read: mirrors first); undefined when it cannot (no such method, no
 * answer, any error: the manifest is then read, and its errors reported, as without this).
 */
async function sourceManifestHead(
  plan: PlannedImage,
  settings: PlanSettings,
): Promise<{ digest: Digest; mediaType: string | undefined } | undefined> {
  const transport = plan.sourceReference.transport;
  if (!transport.manifestHead || settings.forcedType !== undefined) return undefined;
  try {
    return await transport.manifestHead(plan.sourceReference, plan.sourceContext, 'pull');
  } catch {
    return undefined;
  }
}

/**
 * Whether a source manifest of media type `mediaType` is written unchanged, so its digest is the
 * one the copy would write: an OCI or Docker schema 2 manifest, or such a list unless one instance is
 * chosen from it, never one an `oci` destination converts. Any other or a missing type says nothing.
 */
function headNamesWrittenManifest(mediaType: string | undefined, settings: PlanSettings): boolean {
  switch (mediaType) {
    case MediaTypes.OciManifest:
    case MediaTypes.OciIndex:
      break;
    case MediaTypes.DockerManifest:
    case MediaTypes.DockerManifestList:
      if (settings.destinationKind === 'oci') return false;
      break;
    default:
      return false;
  }
  return !(isManifestListMediaType(mediaType) && settings.selection === 'system');
}

/**
 * The manifest digest the destination's name has now: undefined when there is no image (null for a
 * `dir` path that exists without a readable image), without downloading what it need not.
 */
async function destinationDigest(
  plan: PlannedImage,
  settings: PlanSettings,
): Promise<Digest | undefined | null> {
  switch (settings.destinationKind) {
    case 'oci':
      return settings.layoutIndex?.get(plan.destinationLocation);
    case 'dir': {
      const directory = plan.destinationLocation;
      let bytes: Buffer;
      try {
        bytes = await readFile(`${directory}/manifest.json`);
      } catch (error) {
        if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') {
          try {
            await stat(directory);
          } catch (inner) {
            if (errorCode(inner) === 'ENOENT') return undefined;
          }
          return null;
        }
        throw error;
      }
      try {
        return manifestDigest(bytes);
      } catch {
        return null;
      }
    }
    case 'docker': {
      const reference = plan.destinationReference!;
      const named = reference.dockerReference();
      if (named !== undefined && (await settings.destinationTags?.lacks(named))) return undefined;
      const transport = reference.transport;
      if (transport.manifestDigest) return transport.manifestDigest(reference, settings.destinationContext);
      let destinationSource: ImageSource;
      try {
        destinationSource = await reference.newImageSource(settings.destinationContext);
      } catch (error) {
        if (isGantryError(error) && error.code === ErrorCodes.ImageNotFound) return undefined;
        throw error;
      }
      try {
        return manifestDigest((await destinationSource.getManifest()).bytes);
      } finally {
        await destinationSource.close();
      }
    }
  }
}

/** The named entries of an OCI layout's index.json (empty when there is no layout yet). */
async function readLayoutRefNames(layout: string): Promise<Map<string, Digest>> {
  const names = new Map<string, Digest>();
  let text: string;
  try {
    text = await readFile(`${layout}/index.json`, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return names;
    throw error;
  }
  try {
    const index = JSON.parse(text) as {
      manifests?: Array<{ digest?: string; annotations?: Record<string, string> }>;
    };
    for (const entry of index.manifests ?? []) {
      const name = entry.annotations?.[ociRefNameAnnotation];
      if (name !== undefined && typeof entry.digest === 'string') names.set(name, entry.digest as Digest);
    }
  } catch (error) {
    throw new GantryError(
      ErrorCodes.InvalidLayout,
      `${layout}/index.json is not valid JSON: ${(error as Error).message}`,
    );
  }
  return names;
}

/** Runs `run` over `items`, `limit` at once, at most `perRegistry` per registry of `item.registries`. */
async function runLimited(
  items: readonly PlannedImage[],
  limit: number,
  perRegistry: number,
  run: (item: PlannedImage) => Promise<void>,
): Promise<void> {
  await schedule(items, {
    imageConcurrency: limit,
    registryConcurrency: perRegistry,
    dependencies: () => [],
    shouldStart: () => true,
    run,
  });
}

/**
 * Starts items in order as slots allow: at most `imageConcurrency` running, at most
 * `registryConcurrency` per registry, and only after all their dependencies started. When the first
 * waiting item cannot start (its registry is busy), a later one that can is started instead.
 */
async function schedule(
  items: readonly PlannedImage[],
  settings: {
    imageConcurrency: number;
    registryConcurrency: number;
    dependencies(item: PlannedImage): readonly PlannedImage[];
    shouldStart(): boolean;
    run(item: PlannedImage): Promise<void>;
  },
): Promise<void> {
  const pending = [...items];
  const startedItems = new Set<PlannedImage>();
  const perRegistry = new Map<string, number>();
  let running = 0;
  let failure: unknown;
  let failed = false;
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (!failed && settings.shouldStart() && running < settings.imageConcurrency) {
        const index = pending.findIndex(
          (item) =>
            item.registries.every(
              (registry) => (perRegistry.get(registry) ?? 0) < settings.registryConcurrency,
            ) && settings.dependencies(item).every((dependency) => startedItems.has(dependency)),
        );
        if (index === -1) break;
        const [item] = pending.splice(index, 1) as [PlannedImage];
        startedItems.add(item);
        running++;
        for (const registry of item.registries)
          perRegistry.set(registry, (perRegistry.get(registry) ?? 0) + 1);
        settings
          .run(item)
          .catch((error: unknown) => {
            if (!failed) {
              failed = true;
              failure = error;
            }
          })
          .finally(() => {
            running--;
            for (const registry of item.registries) perRegistry.set(registry, perRegistry.get(registry)! - 1);
            pump();
          });
      }
      if (running === 0) resolve();
    };
    pump();
  });
  if (failed) throw failure;
}

/**
 * Blobs shared by images going to one store: the first image in copy order that writes a blob owns it;
 * the others' `tryReusingBlob` for it waits until the owner stored it (or finished), then asks the
 * destination, which finds or mounts it.
 */
class SharedBlobs {
  private readonly owners = new Map<string, PlannedImage>();
  private readonly stored = new Map<string, { promise: Promise<void>; resolve: () => void }>();
  private readonly dependencies = new Map<PlannedImage, Set<PlannedImage>>();
  /**
   * Blobs an image of this sync stored in, or found in, a registry repository
   * (`host/repository\ndigest` → size): a later image writing the same blob to the same repository
   * takes it as present without asking the registry again (the shared base layer of a mirror's tags).
   */
  private readonly inRepository = new Map<string, number>();

  constructor(order: readonly PlannedImage[]) {
    for (const plan of order) {
      if (plan.blobStore === undefined) continue;
      const owners = new Set<PlannedImage>();
      for (const digest of plan.blobs) {
        const key = `${plan.blobStore}\n${digest}`;
        const owner = this.owners.get(key);
        if (owner === undefined) {
          this.owners.set(key, plan);
          let resolve!: () => void;
          const promise = new Promise<void>((done) => {
            resolve = done;
          });
          this.stored.set(key, { promise, resolve });
        } else owners.add(owner);
      }
      this.dependencies.set(plan, owners);
    }
  }

  ownersOf(plan: PlannedImage): readonly PlannedImage[] {
    return [...(this.dependencies.get(plan) ?? [])];
  }

  private markStored(plan: PlannedImage, digest: string): void {
    const key = `${plan.blobStore}\n${digest}`;
    if (this.owners.get(key) === plan) this.stored.get(key)?.resolve();
  }

  /** The image's copy ended (any outcome): nobody waits for its blobs any longer. */
  finished(plan: PlannedImage): void {
    for (const digest of plan.blobs) this.markStored(plan, digest);
  }

  wrap(plan: PlannedImage, destination: ImageDestination): ImageDestination {
    if (plan.blobStore === undefined) return destination;
    // A registry repository: what an image of this sync put there is known to be there.
    const repository = plan.blobStore.startsWith('docker:')
      ? destination.reference.dockerReference()?.name
      : undefined;
    const remember = (blob: BlobInfo) => {
      if (repository !== undefined && blob.size >= 0)
        this.inRepository.set(`${repository}\n${blob.digest}`, blob.size);
    };
    const waitFor = async (digest: string) => {
      const key = `${plan.blobStore}\n${digest}`;
      const owner = this.owners.get(key);
      if (owner !== undefined && owner !== plan) await this.stored.get(key)!.promise;
    };
    const wrapped: ImageDestination = {
      reference: destination.reference,
      properties: destination.properties,
      putBlob: async (stream, info, blobOptions) => {
        const stored = await destination.putBlob(stream, info, blobOptions);
        remember(stored);
        this.markStored(plan, stored.digest);
        if (info.digest !== undefined) this.markStored(plan, info.digest);
        return stored;
      },
      putManifest: (...args) => destination.putManifest(...args),
      putSignatures: (...args) => destination.putSignatures(...args),
      commit: (...args) => destination.commit(...args),
      close: async () => {
        try {
          await destination.close();
        } finally {
          this.finished(plan);
        }
      },
    };
    if (destination.tryReusingBlob) {
      const inner = destination.tryReusingBlob.bind(destination);
      wrapped.tryReusingBlob = async (info, reuseOptions) => {
        await waitFor(info.digest);
        const knownSize =
          repository === undefined ? undefined : this.inRepository.get(`${repository}\n${info.digest}`);
        if (knownSize !== undefined && (info.size < 0 || info.size === knownSize)) {
          this.markStored(plan, info.digest);
          return { reused: true, blob: { ...info, size: knownSize } };
        }
        const result = await inner(info, reuseOptions);
        if (result.reused) {
          if (result.blob.digest === info.digest) remember(result.blob);
          this.markStored(plan, info.digest);
        }
        return result;
      };
    }
    if (destination.putReferrer) wrapped.putReferrer = destination.putReferrer.bind(destination);
    return wrapped;
  }
}

/** `reference`, whose first `newImageSource` returns the source opened while planning. */
function wrapSourceReference(reference: ImageReference, take: () => ImageSource | undefined): ImageReference {
  return {
    transport: reference.transport,
    stringWithinTransport: () => reference.stringWithinTransport(),
    dockerReference: () => reference.dockerReference(),
    policyConfigurationIdentity: () => reference.policyConfigurationIdentity(),
    policyConfigurationNamespaces: () => reference.policyConfigurationNamespaces(),
    newImageSource: async (context) => take() ?? reference.newImageSource(context),
    newImageDestination: (context) => reference.newImageDestination(context),
    deleteImage: (context) => reference.deleteImage(context),
  };
}

/** `reference`, whose destinations are passed through `wrap`. */
function wrapDestinationReference(
  reference: ImageReference,
  wrap: (destination: ImageDestination) => ImageDestination,
): ImageReference {
  return {
    transport: reference.transport,
    stringWithinTransport: () => reference.stringWithinTransport(),
    dockerReference: () => reference.dockerReference(),
    policyConfigurationIdentity: () => reference.policyConfigurationIdentity(),
    policyConfigurationNamespaces: () => reference.policyConfigurationNamespaces(),
    newImageSource: (context) => reference.newImageSource(context),
    newImageDestination: async (context) => wrap(await reference.newImageDestination(context)),
    deleteImage: (context) => reference.deleteImage(context),
  };
}
