import { defaultMaxListeners, setMaxListeners } from 'node:events';
import { Readable } from 'node:stream';
import type { Digest } from '../digest.js';
import { ErrorCodes, GantryError, isGantryError, throwIfAborted } from '../errors.js';
import {
  choosePlatformInstance,
  conversionCandidates,
  editManifest,
  editManifestList,
  type ImageManifest,
  isManifestListMediaType,
  layerCompressionOf,
  layerMediaTypeFor,
  type ManifestEdit,
  type ManifestList,
  MediaTypes,
  manifestMatchesDigest,
  needsLayerDiffIds,
  normalizeManifestMediaType,
  parseImageConfig,
  parseManifest,
  parseManifestList,
} from '../manifest/index.js';
import { evaluatePolicy, loadDefaultPolicy, type Policy, preparePolicyEvaluation } from '../policy/index.js';
import type { DockerReference } from '../reference/index.js';
import { type ImageSigner, parseSignIdentity, prepareSigners } from '../signature/sign.js';
import type {
  BlobInfo,
  ImageDestination,
  ImageReference,
  ImageSource,
  ManifestBlob,
  TransportContext,
} from '../transport/contract.js';
import {
  type BlobCopyContext,
  type CopiedLayer,
  copyConfigBlob,
  copyLayer,
  type LayerCompressionPlan,
  normaliseAbort,
  readSmallBlob,
} from './blob.js';
import { type BlobInfoCache, DiskBlobInfoCache } from './blob-info-cache.js';
import type { DetectedCompression } from './compression.js';
import { copyReferrers } from './referrers.js';
import type { RetrySettings } from './retry.js';
import { withRetry } from './retry.js';
import type { CopyOptions, CopyProgressEvent, CopyResult } from './types.js';
import { hasZstdChunkedAnnotations } from './zstd-chunked.js';

/** Default number of blobs copied at once, like skopeo's `--image-parallel-copies`. */
export const defaultBlobConcurrency = 6;

/** Largest image config read into memory (configs are small JSON documents). */
const maximumConfigSize = 16 * 1024 * 1024;

/** The number of blobs copied at once: `requested` when a positive number, else the default. */
function blobConcurrencyOf(requested: number | undefined): number {
  if (requested === undefined || !Number.isFinite(requested) || requested < 1) return defaultBlobConcurrency;
  return Math.floor(requested);
}

/** `transport:reference`, as skopeo names images in messages. */
export function imageName(reference: ImageReference): string {
  return `${reference.transport.name}:${reference.stringWithinTransport()}`;
}

/**
 * `context` with `signal` added: the context itself when it already has that signal (a sync passes its
 * contexts so), so that what transports remember per context object (configuration files read,
 * clients opened) is shared by the copies of one operation instead of being read again for each.
 */
function contextWithSignal(
  context: TransportContext | undefined,
  signal: AbortSignal | undefined,
): TransportContext | undefined {
  if (!signal) return context;
  const own = context?.signal;
  if (own === signal) return context;
  return { ...context, signal: own ? AbortSignal.any([own, signal]) : signal };
}

/**
 * Copies an image (or a list of images) from `source` to `destination`, doing for every transport what
 * containers/image's copy package does:
 * - opens both ends, evaluates the signature policy (`options.policy`, default `loadDefaultPolicy()`),
 *   and always closes both; the destination is committed only when everything succeeded, so a failure
 *   or an abort leaves it as it was;
 * - verifies every manifest and blob it reads against the digest naming it (a digest-pinned source
 *   reference, a list's instance digest, a manifest's layer digest and size) and fails with
 *   `ERR_GANTRY_DIGEST_MISMATCH` / `ERR_GANTRY_SIZE_MISMATCH` before the destination keeps anything;
 * - for lists follows `imageListSelection` and `instanceDigests`;
 * - converts the manifest to a type the destination supports (trying skopeo's candidates in order),
 *   compresses or decompresses layers as the destination wants, and re-serialises the manifest only when
 *   something changed (otherwise the source's exact bytes are written);
 * - copies layers concurrently when both ends allow it, the config after the layers, then manifests
 *   (instances first, top level last), then signatures;
 * - retries retryable failures (`retryTimes`), streams every blob without buffering it;
 * - with `copyReferrers`, keeps every manifest digest and then copies the referrers of the manifests it
 *   wrote, recursively (`copyReferrers` in referrers.ts), before committing.
 */
export async function copyImage(
  source: ImageReference,
  destination: ImageReference,
  initialOptions: CopyOptions = {},
): Promise<CopyResult> {
  let options = initialOptions;
  const signal = options.signal;
  const emit = (event: CopyProgressEvent): void => {
    options.onProgress?.(event);
  };
  let imageSource: ImageSource | undefined;
  let imageDestination: ImageDestination | undefined;
  let failure: unknown;
  const cache =
    typeof options.blobInfoCache === 'string'
      ? new DiskBlobInfoCache(options.blobInfoCache)
      : options.blobInfoCache === false
        ? undefined
        : options.blobInfoCache;
  if (cache !== undefined) {
    options = {
      ...options,
      blobInfoCache: cache,
      sourceContext: { ...options.sourceContext, blobInfoCache: cache },
      destinationContext: { ...options.destinationContext, blobInfoCache: cache },
    };
  }
  try {
    throwIfAborted(signal);
    emit({ type: 'copy-start', source: imageName(source), destination: imageName(destination) });
    const policy = options.policy ?? (await loadDefaultPolicy());
    preparePolicyEvaluation(policy, source);
    const signing = await signingFor(destination, options);
    throwIfAborted(signal);
    // Opening an image is its first request (a registry's ping): retried like every other one.
    const retry = retrySettingsOf(options, emit);
    imageSource = await withRetry(
      () => source.newImageSource(contextWithSignal(options.sourceContext, signal)),
      retry,
    );
    if (options.copyReferrers && !imageSource.listReferrers) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        `Can not copy referrers from ${imageName(source)}: the ${source.transport.name} transport cannot list referrers`,
      );
    }
    throwIfAborted(signal);
    imageDestination = await withRetry(
      () => destination.newImageDestination(contextWithSignal(options.destinationContext, signal)),
      retry,
    );
    if (signing.signers.length > 0 && !imageDestination.properties.supportsSignatures) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        `Cannot sign the image: pushing signatures to ${imageName(destination)} is not supported`,
      );
    }
    const copier = new ImageCopier(
      source,
      destination,
      imageSource,
      imageDestination,
      policy,
      options,
      emit,
      signing,
    );
    const result = await copier.copyTopLevel();
    if (options.copyReferrers) {
      // Every manifest written kept its source digest (cannotModifyReason), so the referrers still apply.
      await copyReferrers(
        {
          ...copier.blobContextForReferrers(),
          sourceName: imageName(source),
          destinationName: imageName(destination),
        },
        copier.writtenManifestDigests,
      );
    }
    throwIfAborted(signal);
    await imageDestination.commit({
      signal,
      ...(copier.listOfChosenImage ? { topLevelManifest: copier.listOfChosenImage } : {}),
    });
    return result;
  } catch (error) {
    failure = normaliseAbort(error, signal);
    throw failure;
  } finally {
    // What was learnt is kept even when the copy failed (the blobs that were copied are real).
    if (cache instanceof DiskBlobInfoCache) await cache.flush();
    const closing = [imageDestination?.close(), imageSource?.close()];
    const outcomes = await Promise.allSettled(closing);
    const closeFailure = outcomes.find((outcome) => outcome.status === 'rejected');
    // A failure to close is reported only when the copy itself succeeded.
    if (failure === undefined && closeFailure) {
      // biome-ignore lint/correctness/noUnsafeFinally: reporting a close failure of an otherwise successful copy
      throw (closeFailure as PromiseRejectedResult).reason;
    }
  }
}

/** The copy's retry policy (`retryTimes`, `retryDelayMs`), reporting each retry as a progress event. */
function retrySettingsOf(options: CopyOptions, emit: (event: CopyProgressEvent) => void): RetrySettings {
  return {
    retryTimes: Math.max(0, options.retryTimes ?? 0),
    retryDelayMs: options.retryDelayMs,
    signal: options.signal,
    onRetry: (attempt, error, delayMs) => emit({ type: 'retry', attempt, error, delayMs }),
  };
}

/** The MIME type of a stored manifest: the stored one, or guessed from the bytes when missing or generic. */
function manifestTypeOf(blob: ManifestBlob): string {
  return normalizeManifestMediaType(blob.mediaType.split(';')[0]!.trim(), blob.bytes);
}

/** Errors that mean "this manifest type was refused, another may work" (c/image's ManifestTypeRejectedError). */
function isManifestTypeRejection(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === ErrorCodes.UnsupportedManifestType || code === ErrorCodes.ManifestConversionFailed;
}

interface WrittenManifest {
  bytes: Uint8Array;
  mediaType: string;
  digest: Digest;
}

/** Runs tasks with at most `limit` in flight; on the first failure stops starting new ones. */
async function runLimited<T>(
  count: number,
  limit: number,
  task: (index: number) => Promise<T>,
  onFirstFailure: () => void,
): Promise<T[]> {
  const results = new Array<T>(count);
  let next = 0;
  let failed = false;
  let firstError: unknown;
  async function worker(): Promise<void> {
    while (!failed && next < count) {
      const index = next++;
      try {
        results[index] = await task(index);
      } catch (error) {
        if (!failed) {
          failed = true;
          firstError = error;
          onFirstFailure();
        }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, count)) }, () => worker()));
  if (failed) throw firstError;
  return results;
}

/** The signers a copy uses and the identity they sign (see `CopyOptions.signing`). */
interface CopySigning {
  signers: ImageSigner[];
  identity: DockerReference | undefined;
}

/** Prepares `options.signing` before anything is copied: the identity is checked, keys are read. */
async function signingFor(destination: ImageReference, options: CopyOptions): Promise<CopySigning> {
  const signers = options.signing ? await prepareSigners(options.signing) : [];
  if (signers.length === 0) return { signers, identity: undefined };
  const wanted = options.signing?.identity;
  if (wanted !== undefined && wanted !== '') return { signers, identity: parseSignIdentity(wanted) };
  const identity = destination.dockerReference();
  if (identity === undefined) {
    throw new GantryError(
      ErrorCodes.SigningFailed,
      `Cannot determine canonical Docker reference for destination ${imageName(destination)}`,
    );
  }
  return { signers, identity };
}

class ImageCopier {
  private readonly signal: AbortSignal | undefined;
  private readonly retry: RetrySettings;
  /** Digests of the manifests written to the destination, in write order (instances, then the list). */
  readonly writtenManifestDigests: Digest[] = [];
  /** The source's list, as read, when one image of it was copied (`CommitOptions.topLevelManifest`). */
  listOfChosenImage: ManifestBlob | undefined;

  constructor(
    private readonly sourceReference: ImageReference,
    private readonly destinationReference: ImageReference,
    private readonly source: ImageSource,
    private readonly destination: ImageDestination,
    private readonly policy: Policy,
    private readonly options: CopyOptions,
    private readonly emit: (event: CopyProgressEvent) => void,
    private readonly signing: CopySigning = { signers: [], identity: undefined },
  ) {
    this.signal = options.signal;
    this.retry = retrySettingsOf(options, emit);
  }

  private get blobInfoCache(): BlobInfoCache | undefined {
    const cache = this.options.blobInfoCache;
    return typeof cache === 'object' ? cache : undefined;
  }

  private retried<T>(operation: () => Promise<T>): Promise<T> {
    return withRetry(operation, this.retry);
  }

  async copyTopLevel(): Promise<CopyResult> {
    const topLevel = await this.retried(() => this.source.getManifest(undefined, { signal: this.signal }));
    const pinned = this.sourceReference.dockerReference()?.digest;
    if (pinned !== undefined && !manifestMatchesDigest(topLevel.bytes, pinned)) {
      throw new GantryError(
        ErrorCodes.DigestMismatch,
        `Manifest of ${imageName(this.sourceReference)} does not match provided manifest digest ${pinned}`,
      );
    }
    const mediaType = manifestTypeOf(topLevel);
    if (!isManifestListMediaType(mediaType)) {
      const written = await this.copySingleImage(topLevel, mediaType, undefined, false, topLevel.bytes);
      return {
        manifestDigest: written.digest,
        manifest: written.bytes,
        manifestMediaType: written.mediaType,
      };
    }
    const list = parseManifestList(topLevel.bytes, mediaType);
    let selection = this.options.imageListSelection ?? 'system';
    if (selection === 'system' && (this.options.instanceDigests?.length ?? 0) > 0) selection = 'all';
    if (selection === 'system') {
      this.listOfChosenImage = topLevel;
      let chosen: Digest;
      try {
        chosen = choosePlatformInstance(list, this.options.sourceContext?.platform);
      } catch (error) {
        if (!isGantryError(error)) throw error;
        // containers/image's words: "choosing an image from manifest list <source>: …".
        throw new GantryError(
          error.code,
          `choosing an image from manifest list ${imageName(this.sourceReference)}: ${error.message}`,
          { cause: error },
        );
      }
      this.emit({ type: 'list-start', instanceCount: list.instances.length, copyCount: 1 });
      let written: WrittenManifest;
      try {
        const instance = await this.readInstanceManifest(chosen);
        written = await this.copySingleImage(
          instance,
          manifestTypeOf(instance),
          chosen,
          false,
          topLevel.bytes,
        );
      } catch (error) {
        // containers/image's words: "copying system image from manifest list: …".
        if (!isGantryError(error) || error.code === ErrorCodes.Aborted) throw error;
        throw new GantryError(error.code, `copying system image from manifest list: ${error.message}`, {
          cause: error,
          retryable: error.retryable,
        });
      }
      return {
        manifestDigest: written.digest,
        manifest: written.bytes,
        manifestMediaType: written.mediaType,
      };
    }
    const written = await this.copyList(list, selection === 'index-only');
    return { manifestDigest: written.digest, manifest: written.bytes, manifestMediaType: written.mediaType };
  }

  /** Reads a list's instance manifest and checks it has the digest the list names. */
  private async readInstanceManifest(instanceDigest: Digest): Promise<ManifestBlob> {
    const instance = await this.retried(() =>
      this.source.getManifest(instanceDigest, { signal: this.signal }),
    );
    if (!manifestMatchesDigest(instance.bytes, instanceDigest)) {
      throw new GantryError(
        ErrorCodes.DigestMismatch,
        `Manifest of instance ${instanceDigest} of ${imageName(this.sourceReference)} does not match its digest ${instanceDigest}`,
      );
    }
    return instance;
  }

  /**
   * Reads signatures, evaluates the policy (unless `evaluate` is false), and returns the signatures to
   * copy. Like containers/image, a list being copied with its instances is not evaluated itself: each
   * instance is (see copyList).
   */
  private async admit(
    manifest: ManifestBlob,
    sourceInstance: Digest | undefined,
    evaluate = true,
    announce = true,
  ): Promise<{ signatures: Uint8Array[] }> {
    const signatures = await this.retried(() =>
      this.source.getSignatures(sourceInstance, { signal: this.signal }),
    );
    // The opened source's reference: a transport may resolve the reference when opening it (docker://
    // short names), and policy.json scopes must see the image actually read (as containers/image).
    if (evaluate) {
      try {
        await evaluatePolicy(this.policy, this.source.reference, { manifest, signatures });
      } catch (error) {
        if (!isGantryError(error) || error.code !== ErrorCodes.PolicyRejected) throw error;
        throw new GantryError(error.code, `Source image rejected: ${error.message}`, { cause: error });
      }
    }
    if (this.options.removeSignatures) return { signatures: [] };
    // A list's instances are admitted before any is copied; each announces its signatures when its
    // copy starts (copySingleImage), so the progress lines keep skopeo's order.
    if (announce) this.emit({ type: 'signatures-read' });
    if (signatures.length > 0 && !this.destination.properties.supportsSignatures) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        `Can not copy signatures to ${imageName(this.destinationReference)}: Pushing signatures for this destination is not supported (use --remove-signatures to copy the image without its signatures)`,
      );
    }
    return { signatures };
  }

  /** The signatures `options.signing` asks for, of a manifest just written. */
  private async newSignatures(
    manifest: Uint8Array,
    instanceDigest: Digest | undefined,
  ): Promise<Uint8Array[]> {
    const made: Uint8Array[] = [];
    for (const signer of this.signing.signers) {
      this.emit({
        type: 'signing',
        message: signer.progressMessage,
        ...(instanceDigest !== undefined ? { instanceDigest } : {}),
      });
      made.push(await signer.sign(manifest, this.signing.identity!, this.signal));
    }
    return made;
  }

  /** Why manifests may not be changed ('' when they may), as c/image's cannotModifyManifestReason. */
  private cannotModifyReason(signatures: Uint8Array[]): string {
    if (this.options.preserveDigests) return 'Instructed to preserve digests';
    if (this.options.copyReferrers)
      return 'Instructed to copy referrers (--copy-referrers), which name manifests by their digests';
    if (this.destinationReference.dockerReference()?.digest !== undefined)
      return 'Destination specifies a digest';
    if (signatures.length > 0) return 'Would invalidate signatures';
    return '';
  }

  private refuseChange(reason: string, what: string): GantryError {
    if (this.options.preserveDigests || this.options.copyReferrers) {
      return new GantryError(
        ErrorCodes.DigestsNotPreservable,
        `${what}, which would change digests: ${reason}`,
      );
    }
    return new GantryError(ErrorCodes.ManifestConversionFailed, `${what}, which we cannot do: ${reason}`);
  }

  /** The blob context copying referrers uses: the copy's signal and retry settings. */
  blobContextForReferrers(): BlobCopyContext {
    return this.blobContext(this.signal);
  }

  private blobContext(signal: AbortSignal | undefined): BlobCopyContext {
    return {
      source: this.source,
      destination: this.destination,
      signal,
      retry: { ...this.retry, signal },
      emit: this.emit,
      tuneAllocatorForLargeBlobs: this.options.tuneAllocatorForLargeBlobs,
    };
  }

  /**
   * Copies one image; `sourceInstance` is its digest within the source's list (undefined for a top-level
   * image); `asInstance` writes the manifest as an instance of a list being copied.
   */
  private async copySingleImage(
    manifestBlob: ManifestBlob,
    mediaType: string,
    sourceInstance: Digest | undefined,
    asInstance: boolean,
    topLevelBytes: Uint8Array,
    position?: { index: number; total: number },
    admitted?: { signatures: Uint8Array[] },
  ): Promise<WrittenManifest> {
    throwIfAborted(this.signal);
    if (isManifestListMediaType(mediaType)) {
      throw new GantryError(
        ErrorCodes.UnsupportedManifestType,
        'Unexpectedly received a manifest list instead of a manifest for a single image',
      );
    }
    this.emit({
      type: 'image-start',
      ...(sourceInstance !== undefined ? { instanceDigest: sourceInstance } : {}),
      ...(position ?? {}),
    });
    if (admitted && !this.options.removeSignatures) this.emit({ type: 'signatures-read' });
    const { signatures } =
      admitted ?? (await this.admit({ bytes: manifestBlob.bytes, mediaType }, sourceInstance));
    const manifest = parseManifest(manifestBlob.bytes, mediaType);

    const destinationPin = this.destinationReference.dockerReference()?.digest;
    if (
      destinationPin !== undefined &&
      !manifestMatchesDigest(manifestBlob.bytes, destinationPin) &&
      !manifestMatchesDigest(topLevelBytes, destinationPin)
    ) {
      throw new GantryError(
        ErrorCodes.DigestMismatch,
        `Digest of source image's manifest would not match destination reference ${destinationPin}`,
      );
    }
    const cannotModify = this.cannotModifyReason(signatures);
    const properties = this.destination.properties;

    let candidates = conversionCandidates(
      manifest.mediaType,
      properties.supportedManifestMimeTypes,
      this.options.manifestMediaType,
    );
    if (candidates.length === 0) {
      throw new GantryError(
        ErrorCodes.ManifestConversionFailed,
        `No manifest type accepted by ${imageName(this.destinationReference)} can represent ${manifest.mediaType}`,
      );
    }
    if (cannotModify !== '') {
      if (candidates[0] !== manifest.mediaType) {
        throw this.refuseChange(
          cannotModify,
          `Copying the image needs converting its manifest from ${manifest.mediaType} to ${candidates[0]}`,
        );
      }
      candidates = [manifest.mediaType];
    }

    // Layers as the source wants them copied.
    let layers: BlobInfo[] = manifest.layers.map((layer) => ({ ...layer }));
    let layersReplaced = false;
    if (this.source.layerInfosForCopy) {
      const replacement = await this.retried(() =>
        this.source.layerInfosForCopy!(sourceInstance, { signal: this.signal }),
      );
      if (replacement !== undefined) {
        if (replacement.length !== layers.length) {
          throw new GantryError(
            ErrorCodes.Internal,
            `layerInfosForCopy returned ${replacement.length} layers for a manifest with ${layers.length}`,
          );
        }
        const differs = replacement.some(
          (info, index) =>
            info.digest !== layers[index]!.digest || info.mediaType !== layers[index]!.mediaType,
        );
        if (differs) {
          if (cannotModify !== '') {
            throw this.refuseChange(
              cannotModify,
              'Copying this image would require changing layer representation',
            );
          }
          layers = replacement.map((info) => ({ ...info }));
          layersReplaced = true;
        }
      }
    }

    const compressionPlan = this.compressionPlan(manifest, cannotModify);
    candidates = this.candidatesForCompression(candidates, manifest, compressionPlan, cannotModify);
    const needDiffIds = candidates.some((candidate) => needsLayerDiffIds(manifest, candidate));
    const canSubstitute = cannotModify === '';

    // Layers written decompressed are verified against the config's DiffIDs (read first; small and
    // verified itself), so each byte is hashed once, after decompression (see `CopyLayerRequest`).
    let configBytes: Uint8Array | undefined;
    let expectedDiffIds: Map<Digest, Digest> | undefined;
    const cache = this.blobInfoCache;
    let configDiffIds: Map<Digest, Digest> | undefined;
    if (
      (compressionPlan?.desired === 'decompress' ||
        compressionPlan?.recompress ||
        cache !== undefined ||
        properties.wantsLayerDiffIds === true) &&
      manifest.config
    ) {
      configBytes = await this.readConfig(manifest.config);
      configDiffIds = diffIdsByLayer(layers, configBytes);
      if (compressionPlan?.desired === 'decompress') expectedDiffIds = configDiffIds;
    }
    // The config's DiffIDs in manifest order, for destinations that apply layers as they arrive.
    const layerDiffIds =
      properties.wantsLayerDiffIds === true && configBytes !== undefined
        ? orderedDiffIds(layers, configBytes)
        : undefined;

    // Copy each distinct layer once, concurrently when both ends allow it.
    const distinct: BlobInfo[] = [];
    /** Position in the manifest of each distinct layer's first entry (`PutBlobOptions.layerIndex`). */
    const manifestIndexOfDistinct: number[] = [];
    const indexOfDigest = new Map<Digest, number>();
    for (const [manifestIndex, layer] of layers.entries()) {
      if (!indexOfDigest.has(layer.digest)) {
        indexOfDigest.set(layer.digest, distinct.length);
        distinct.push(layer);
        manifestIndexOfDistinct.push(manifestIndex);
      }
    }
    const concurrent =
      properties.hasThreadSafePutBlob && this.source.properties.hasThreadSafeGetBlob
        ? blobConcurrencyOf(this.options.blobConcurrency)
        : 1;
    const layerController = new AbortController();
    const layerSignal = this.signal
      ? AbortSignal.any([this.signal, layerController.signal])
      : layerController.signal;
    // Each layer in flight listens on this signal from a few pipeline stages; not a leak.
    setMaxListeners(Math.max(defaultMaxListeners, concurrent * 4 + 10), layerSignal);
    // The config (small, verified) is needed for manifest edits and written after the layers: read it
    // while they copy, so its round trip is not added after the last layer.
    const configRead =
      manifest.config && configBytes === undefined ? this.readConfig(manifest.config) : undefined;
    // Awaited once the layers are copied; a failure of the layers makes its outcome moot.
    configRead?.catch(() => undefined);
    const copiedDistinct = await runLimited(
      distinct.length,
      concurrent,
      (index) =>
        this.copyOneLayer(
          distinct[index]!,
          compressionPlan,
          needDiffIds,
          canSubstitute,
          layerSignal,
          expectedDiffIds?.get(distinct[index]!.digest),
          configDiffIds?.get(distinct[index]!.digest),
          { layerIndex: manifestIndexOfDistinct[index]!, ...(layerDiffIds ? { layerDiffIds } : {}) },
        ),
      () => layerController.abort(new GantryError(ErrorCodes.Aborted, 'another layer failed to copy')),
    );
    const copied = layers.map((layer) => copiedDistinct[indexOfDigest.get(layer.digest)!]!);
    throwIfAborted(this.signal);
    if (cache !== undefined) {
      for (const [index, layer] of distinct.entries()) {
        this.recordLayer(cache, layer, copiedDistinct[index]!, configDiffIds?.get(layer.digest));
      }
    }

    if (configRead !== undefined) configBytes = await configRead;

    const layersChanged =
      layersReplaced || copied.some((layer, index) => layer.info.digest !== manifest.layers[index]!.digest);
    const writtenConfigs = new Set<Digest>();
    const failures: string[] = [];
    for (const [candidateIndex, candidate] of candidates.entries()) {
      try {
        const written = await this.writeImageManifest(
          manifest,
          candidate,
          copied,
          layersChanged,
          configBytes,
          writtenConfigs,
          asInstance,
          !asInstance && this.nothingAfterTopLevelManifest(signatures),
        );
        const instanceDigest = asInstance ? written.digest : undefined;
        const toWrite = [...signatures, ...(await this.newSignatures(written.bytes, instanceDigest))];
        if (toWrite.length > 0) {
          this.emit({
            type: 'signatures-write',
            count: toWrite.length,
            ...(instanceDigest !== undefined ? { instanceDigest } : {}),
          });
          await this.retried(() =>
            this.destination.putSignatures(toWrite, instanceDigest, { signal: this.signal }),
          );
        }
        return written;
      } catch (error) {
        const last = candidateIndex === candidates.length - 1;
        if (!isManifestTypeRejection(error) || candidates.length === 1) throw error;
        failures.push(`${candidate}(${error instanceof Error ? error.message : String(error)})`);
        if (last) {
          throw new GantryError(
            ErrorCodes.ManifestConversionFailed,
            `Uploading manifest failed, attempted the following formats: ${failures.join(', ')}`,
            { cause: error },
          );
        }
      }
    }
    throw new GantryError(ErrorCodes.Internal, 'no manifest candidate was tried');
  }

  /** Decides what may be done to layer compression, refusing with preserveDigests an explicit request. */
  private compressionPlan(manifest: ImageManifest, cannotModify: string): LayerCompressionPlan | undefined {
    const requestedOption = this.options.destinationCompression;
    const chunked = requestedOption === 'zstd:chunked';
    const requested = chunked ? 'zstd' : requestedOption;
    let desired = this.destination.properties.desiredLayerCompression;
    if (this.options.forceCompressionFormat) {
      if (requested === undefined) {
        throw new GantryError(
          ErrorCodes.Usage,
          'forcing the compression format (--dest-force-compress-format) needs a compression format (--dest-compress-format)',
        );
      }
      if (desired === 'preserve') desired = 'compress';
    }
    if (cannotModify !== '') {
      const mustKeepDigests = this.options.preserveDigests || this.options.copyReferrers;
      if (mustKeepDigests && requested !== undefined && desired === 'compress') {
        const differing = manifest.layers.find(
          (layer) =>
            layer.compression !== 'unknown' &&
            (layer.compression !== requested ||
              (chunked && layer.compression === 'zstd' && !hasZstdChunkedAnnotations(layer.annotations))) &&
            !layer.urls?.length,
        );
        if (differing) {
          throw this.refuseChange(
            cannotModify,
            `Compressing layer ${differing.digest} (${differing.compression}) with ${requestedOption} was requested`,
          );
        }
      }
      return undefined;
    }
    if (desired === 'preserve') return undefined;
    const plan: LayerCompressionPlan = {
      desired,
      format: requested ?? 'gzip',
      recompress: requested !== undefined,
      ...(chunked ? { chunked: true } : {}),
    };
    if (this.options.compressionLevel !== undefined) plan.level = this.options.compressionLevel;
    const kept = this.destination.properties.keptLayerCompressions;
    if (desired === 'decompress' && kept !== undefined && kept.length > 0) plan.keep = kept;
    return plan;
  }

  /**
   * The manifest candidates reordered for zstd layers, which only OCI manifests carry: when the plan
   * compresses to zstd, OCI goes first (the source's Docker type cannot hold the layers); when no
   * candidate is OCI (the destination or `-f` allows only Docker types) the copy is refused before
   * any layer is copied.
   */
  private candidatesForCompression(
    candidates: string[],
    manifest: ImageManifest,
    plan: LayerCompressionPlan | undefined,
    cannotModify: string,
  ): string[] {
    const zstdLayers = plan?.desired === 'compress' && plan.format === 'zstd' && manifest.layers.length > 0;
    if (!zstdLayers) return candidates;
    const canCarryZstd = candidates.filter((candidate) => candidate === MediaTypes.OciManifest);
    if (canCarryZstd.length === 0) {
      const forced = this.options.manifestMediaType;
      throw new GantryError(
        ErrorCodes.ManifestConversionFailed,
        `zstd-compressed layers need an OCI manifest, and ${
          forced !== undefined
            ? `the requested manifest format (${forced}) is not OCI`
            : `${imageName(this.destinationReference)} accepts only ${candidates.join(', ')}`
        }: use gzip (--dest-compress-format gzip)${forced !== undefined ? ' or -f oci' : ''}`,
      );
    }
    if (candidates[0] !== MediaTypes.OciManifest && cannotModify !== '') {
      throw this.refuseChange(
        cannotModify,
        `zstd-compressed layers need converting the manifest from ${manifest.mediaType} to ${MediaTypes.OciManifest}`,
      );
    }
    return [...canCarryZstd, ...candidates.filter((candidate) => candidate !== MediaTypes.OciManifest)];
  }

  private async copyOneLayer(
    layer: BlobInfo,
    plan: LayerCompressionPlan | undefined,
    needDiffId: boolean,
    canSubstitute: boolean,
    signal: AbortSignal,
    expectedDiffId: Digest | undefined,
    configDiffId: Digest | undefined,
    position: { layerIndex: number; layerDiffIds?: readonly Digest[] },
  ): Promise<CopiedLayer> {
    const properties = this.destination.properties;
    if (properties.acceptsForeignLayerURLs && (layer.urls?.length ?? 0) > 0) {
      if (needDiffId) {
        throw new GantryError(
          ErrorCodes.NotSupported,
          `getting DiffID for foreign layer ${layer.digest} is unimplemented`,
        );
      }
      this.emit({ type: 'blob-start', blob: layer, kind: 'layer' });
      this.emit({ type: 'blob-done', blob: layer, kind: 'layer', result: 'skipped', bytes: 0 });
      return { info: layer, compression: 'unknown', changed: false, result: 'skipped' };
    }
    // Layers of unknown media types (artifacts, encrypted…) are never re-compressed; schema1 layers have
    // no media type, and like containers/image their compression may change.
    const layerCompression = (layer as { compression?: string }).compression;
    const effectivePlan = layerCompression === 'unknown' && layer.mediaType !== undefined ? undefined : plan;
    const copied = await copyLayer(this.blobContext(signal), {
      layer,
      ...position,
      plan: effectivePlan,
      needDiffId,
      canSubstitute,
      ...(expectedDiffId !== undefined ? { expectedDiffId } : {}),
      ...(configDiffId !== undefined && digestAlgorithmOf(configDiffId) === 'sha256'
        ? { uncompressedDigest: configDiffId }
        : {}),
      ...(effectivePlan?.desired === 'compress' && effectivePlan.recompress
        ? { requiredCompression: effectivePlan.format }
        : {}),
      ...(effectivePlan?.desired === 'compress' && canSubstitute && !effectivePlan.chunked
        ? { substitutes: this.cachedSubstitutes(layer, effectivePlan.format, configDiffId) }
        : {}),
      changedMediaType: (compression: DetectedCompression) =>
        layer.mediaType === undefined
          ? undefined
          : safeLayerMediaType(this.sourceManifestTypeForLayer(layer), compression, layer.mediaType),
    });
    if ((layer.urls?.length ?? 0) > 0 && !copied.changed) {
      // A foreign layer copied into the destination is no longer foreign: force the manifest to drop URLs.
      const info = { ...copied.info };
      delete info.urls;
      return { ...copied, info };
    }
    return copied;
  }

  /**
   * Blobs the cache knows to hold this layer's contents in `format` (other than the layer itself):
   * the destination may already have one, which then saves compressing the layer again.
   */
  private cachedSubstitutes(
    layer: BlobInfo,
    format: 'gzip' | 'zstd',
    configDiffId: Digest | undefined,
  ): Array<{ digest: Digest; compression: 'gzip' | 'zstd' }> {
    const cache = this.blobInfoCache;
    if (cache === undefined) return [];
    // A layer already in `format` is copied (or reused) as it is: substituting another blob would change
    // the manifest for nothing.
    const current = layer.mediaType === undefined ? 'gzip' : layerCompressionOf(layer.mediaType);
    if (current === format) return [];
    const uncompressed = configDiffId ?? cache.uncompressedDigest(layer.digest);
    if (uncompressed === undefined) return [];
    return cache
      .compressedVariants(uncompressed)
      .filter((variant) => variant.compression === format && variant.digest !== layer.digest)
      .map((variant) => ({ digest: variant.digest, compression: format }));
  }

  /** Records in the cache what copying a layer showed: its compressed ⇄ uncompressed digest pairs. */
  private recordLayer(
    cache: BlobInfoCache,
    layer: BlobInfo,
    copied: CopiedLayer,
    configDiffId: Digest | undefined,
  ): void {
    const sourceCompression = layer.mediaType === undefined ? undefined : layerCompressionOf(layer.mediaType);
    const uncompressed =
      copied.diffId ?? configDiffId ?? (sourceCompression === 'none' ? layer.digest : undefined);
    if (uncompressed === undefined) return;
    if (sourceCompression === 'gzip' || sourceCompression === 'zstd' || sourceCompression === 'none') {
      cache.recordDigestUncompressedPair(layer.digest, uncompressed, sourceCompression);
    }
    const stored = copied.compression;
    if (copied.changed && (stored === 'gzip' || stored === 'zstd' || stored === 'none')) {
      cache.recordDigestUncompressedPair(copied.info.digest, uncompressed, stored);
    }
  }

  private sourceManifestTypeForLayer(layer: BlobInfo): string {
    return layer.mediaType?.startsWith('application/vnd.oci.')
      ? MediaTypes.OciManifest
      : MediaTypes.DockerManifest;
  }

  private async readConfig(info: BlobInfo): Promise<Uint8Array> {
    return await this.retried(() => readSmallBlob(this.source, info, maximumConfigSize, this.signal));
  }

  /** Builds the manifest for `candidate` (editing only when something changed), writes config and manifest. */
  private async writeImageManifest(
    manifest: ImageManifest,
    candidate: string,
    copied: CopiedLayer[],
    layersChanged: boolean,
    configBytes: Uint8Array | undefined,
    writtenConfigs: Set<Digest>,
    asInstance: boolean,
    lastBeforeCommit: boolean,
  ): Promise<WrittenManifest> {
    const converting = candidate !== manifest.mediaType;
    let output: WrittenManifest;
    let configToWrite: { info: BlobInfo; bytes: Uint8Array } | undefined;
    if (!converting && !layersChanged) {
      output = { bytes: manifest.bytes, mediaType: manifest.mediaType, digest: manifest.digest };
      if (manifest.config && configBytes) configToWrite = { info: manifest.config, bytes: configBytes };
    } else {
      const edit: ManifestEdit = {
        layers: copied.map((layer, index) => {
          const original = manifest.layers[index]!;
          const compression = resolvedCompression(layer, original.compression);
          const mediaType =
            converting || layer.changed
              ? layerMediaTypeFor(candidate, compression, layer.info.mediaType ?? original.mediaType)
              : (layer.info.mediaType ?? original.mediaType);
          const entry: {
            digest: Digest;
            size: number;
            compression: 'gzip' | 'zstd' | 'none';
            mediaType?: string;
            annotations?: Record<string, string>;
          } = {
            digest: layer.info.digest,
            size: layer.info.size,
            compression,
          };
          if (mediaType !== undefined) entry.mediaType = mediaType;
          if (layer.changed && layer.annotations !== undefined) entry.annotations = layer.annotations;
          return entry;
        }),
      };
      if (converting) edit.mediaType = candidate;
      if (configBytes) edit.config = configBytes;
      const destinationDockerReference = this.destinationReference.dockerReference();
      if (destinationDockerReference !== undefined) {
        edit.schema1Reference = { path: destinationDockerReference.path };
        if (destinationDockerReference.tag !== undefined)
          edit.schema1Reference.tag = destinationDockerReference.tag;
      }
      if (needsLayerDiffIds(manifest, candidate)) {
        const diffIds = copied.map((layer) => layer.diffId);
        if (diffIds.some((diffId) => diffId === undefined)) {
          throw new GantryError(
            ErrorCodes.ManifestConversionFailed,
            `Can not convert image to ${candidate}, the layers' DiffIDs are unknown`,
          );
        }
        edit.layerDiffIds = diffIds as Digest[];
      }
      const edited = editManifest(manifest, edit);
      output = { bytes: edited.bytes, mediaType: edited.mediaType, digest: edited.digest };
      for (const extra of edited.extraLayers ?? []) {
        // As containers/image uploads schema1's gzipped empty layer during the conversion.
        await this.putSmallLayer(extra.info, extra.bytes);
      }
      const toSchema1 =
        edited.mediaType === MediaTypes.DockerSchema1Signed || edited.mediaType === MediaTypes.DockerSchema1;
      if (edited.config) configToWrite = { info: edited.config.info, bytes: edited.config.bytes };
      // A schema1 manifest has no config blob: its config is in the manifest.
      else if (manifest.config && configBytes && !toSchema1)
        configToWrite = { info: manifest.config, bytes: configBytes };
    }
    if (configToWrite && !writtenConfigs.has(configToWrite.info.digest)) {
      await copyConfigBlob(this.blobContext(this.signal), configToWrite.info, configToWrite.bytes);
      writtenConfigs.add(configToWrite.info.digest);
    }
    const instanceDigest = asInstance ? output.digest : undefined;
    this.emit({ type: 'manifest-write', ...(instanceDigest !== undefined ? { instanceDigest } : {}) });
    await this.retried(() =>
      this.destination.putManifest(output.bytes, output.mediaType, instanceDigest, {
        signal: this.signal,
        ...(lastBeforeCommit ? { lastBeforeCommit } : {}),
      }),
    );
    this.writtenManifestDigests.push(output.digest);
    return output;
  }

  /**
   * True when nothing is written after the top-level manifest but `commit`: no signatures to store (copied
   * or made now) and no referrers to copy (`PutManifestOptions.lastBeforeCommit`).
   */
  private nothingAfterTopLevelManifest(signatures: readonly Uint8Array[]): boolean {
    return signatures.length === 0 && this.signing.signers.length === 0 && !this.options.copyReferrers;
  }

  /** Writes a small layer blob made here (schema1's empty layer), unless the destination has it. */
  private async putSmallLayer(info: BlobInfo, bytes: Uint8Array): Promise<void> {
    await this.retried(async () => {
      if (this.destination.tryReusingBlob) {
        const reused = await this.destination.tryReusingBlob(info, {
          isConfig: false,
          canSubstitute: false,
          signal: this.signal,
        });
        if (reused.reused) return;
      }
      await this.destination.putBlob(
        Readable.from([bytes], { objectMode: false }),
        { digest: info.digest, size: bytes.byteLength, mediaType: info.mediaType },
        { isConfig: false, signal: this.signal },
      );
    });
  }

  /** The instances of `list` to copy: `options.instanceDigests`, or all of them. */
  private instancesToCopy(list: ManifestList): Digest[] {
    const wanted = this.options.instanceDigests;
    const listed = new Set(list.instances.map((instance) => instance.digest));
    for (const digest of wanted ?? []) {
      if (!listed.has(digest)) {
        throw new GantryError(
          ErrorCodes.ImageNotFound,
          `instance ${digest} is not in the manifest list of ${imageName(this.sourceReference)}`,
        );
      }
    }
    return list.instances
      .map((instance) => instance.digest)
      .filter((digest) => wanted === undefined || wanted.length === 0 || wanted.includes(digest));
  }

  /** An instance's error, named as containers/image names it ("copying image 2/3 from manifest list: …"). */
  private instanceFailure(error: unknown, index: number, total: number): unknown {
    if (!isGantryError(error) || error.code === ErrorCodes.Aborted) return error;
    return new GantryError(
      error.code,
      `copying image ${index + 1}/${total} from manifest list: ${error.message}`,
      {
        cause: error,
        retryable: error.retryable,
      },
    );
  }

  /** Copies a list: its instances (unless `indexOnly`), then the list itself. */
  private async copyList(list: ManifestList, indexOnly: boolean): Promise<WrittenManifest> {
    // As containers/image: a destination that lists the manifest types it takes, none of them a list
    // type, stores single images only (containers-storage, docker-archive).
    const supported = this.destination.properties.supportedManifestMimeTypes;
    if (supported !== undefined && supported.length > 0 && !supported.some(isManifestListMediaType)) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        `copying multiple images: destination transport "${this.destinationReference.transport.name}" does not support copying multiple images as a group`,
      );
    }
    const toCopy = indexOnly ? [] : this.instancesToCopy(list);
    // As containers/image, the policy is evaluated for each instance copied, not for the list; unlike it,
    // a list copied without any instance (index-only) is evaluated itself (containers/image evaluates
    // nothing then, so copies a list its policy rejects). Every instance is admitted before any blob moves.
    const { signatures } = await this.admit(
      { bytes: list.bytes, mediaType: list.mediaType },
      undefined,
      toCopy.length === 0,
    );
    const admittedInstances = new Map<Digest, { manifest: ManifestBlob; signatures: Uint8Array[] }>();
    for (const [index, digest] of toCopy.entries()) {
      try {
        const instance = await this.readInstanceManifest(digest);
        const admitted = await this.admit(
          { bytes: instance.bytes, mediaType: manifestTypeOf(instance) },
          digest,
          true,
          false,
        );
        admittedInstances.set(digest, { manifest: instance, signatures: admitted.signatures });
      } catch (error) {
        throw this.instanceFailure(error, index, toCopy.length);
      }
    }
    const destinationPin = this.destinationReference.dockerReference()?.digest;
    if (destinationPin !== undefined && !manifestMatchesDigest(list.bytes, destinationPin)) {
      throw new GantryError(
        ErrorCodes.DigestMismatch,
        `Digest of source image's manifest would not match destination reference ${destinationPin}`,
      );
    }
    const cannotModify = this.cannotModifyReason(signatures);
    const listTypes = conversionCandidates(
      list.mediaType,
      this.destination.properties.supportedManifestMimeTypes,
      this.options.manifestMediaType,
    );
    if (listTypes[0] !== list.mediaType && cannotModify !== '') {
      throw this.refuseChange(
        cannotModify,
        `Manifest list must be converted to type ${listTypes[0]} to be written to destination`,
      );
    }

    this.emit({ type: 'list-start', instanceCount: list.instances.length, copyCount: toCopy.length });

    const instanceEdits = new Map<Digest, { digest: Digest; size: number; mediaType: string }>();
    for (const [index, digest] of toCopy.entries()) {
      let written: WrittenManifest;
      try {
        const { manifest: instance, signatures: instanceSignatures } = admittedInstances.get(digest)!;
        written = await this.copySingleImage(
          instance,
          manifestTypeOf(instance),
          digest,
          true,
          list.bytes,
          { index, total: toCopy.length },
          { signatures: instanceSignatures },
        );
      } catch (error) {
        throw this.instanceFailure(error, index, toCopy.length);
      }
      const original = list.instances.find((entry) => entry.digest === digest)!;
      if (written.digest !== digest || written.mediaType !== original.mediaType) {
        instanceEdits.set(digest, {
          digest: written.digest,
          size: written.bytes.byteLength,
          mediaType: written.mediaType,
        });
      }
    }

    // Like containers/image, the list is re-serialised (with the instances' new digests and types) and
    // compared with the re-serialised original: when they are equal the original bytes are written, so
    // its digest stays; otherwise the new list is written, unless the list must not change.
    const reserialisedOriginal = editManifestList(list, {}).bytes;
    const failures: string[] = [];
    for (const [candidateIndex, listType] of listTypes.entries()) {
      try {
        const edit: Parameters<typeof editManifestList>[1] = {};
        if (instanceEdits.size > 0) edit.instances = instanceEdits;
        if (listType !== list.mediaType) edit.mediaType = listType;
        const edited = editManifestList(list, edit);
        const unchanged = listType === list.mediaType && sameBytes(edited.bytes, reserialisedOriginal);
        if (!unchanged && cannotModify !== '') {
          throw this.refuseChange(
            cannotModify,
            `Manifest list must be converted to type ${listType} to be written to destination`,
          );
        }
        const output: WrittenManifest = unchanged
          ? { bytes: list.bytes, mediaType: list.mediaType, digest: list.digest }
          : { bytes: edited.bytes, mediaType: edited.mediaType, digest: edited.digest };
        this.emit({ type: 'manifest-write' });
        await this.retried(() =>
          this.destination.putManifest(output.bytes, output.mediaType, undefined, {
            signal: this.signal,
            ...(this.nothingAfterTopLevelManifest(signatures) ? { lastBeforeCommit: true } : {}),
          }),
        );
        this.writtenManifestDigests.push(output.digest);
        const toWrite = [...signatures, ...(await this.newSignatures(output.bytes, undefined))];
        if (toWrite.length > 0) {
          this.emit({ type: 'signatures-write', count: toWrite.length });
          await this.retried(() =>
            this.destination.putSignatures(toWrite, undefined, { signal: this.signal }),
          );
        }
        return output;
      } catch (error) {
        if (!isManifestTypeRejection(error) || listTypes.length === 1 || cannotModify !== '') throw error;
        failures.push(`${listType}(${error instanceof Error ? error.message : String(error)})`);
        if (candidateIndex === listTypes.length - 1) {
          throw new GantryError(
            ErrorCodes.ManifestConversionFailed,
            `Uploading manifest list failed, attempted the following formats: ${failures.join(', ')}`,
            { cause: error },
          );
        }
      }
    }
    throw new GantryError(ErrorCodes.Internal, 'no manifest list type was tried');
  }
}

function digestAlgorithmOf(digest: Digest): string {
  return digest.slice(0, digest.indexOf(':'));
}

function sameBytes(left: Uint8Array, right: Uint8Array): boolean {
  return Buffer.from(left.buffer, left.byteOffset, left.byteLength).equals(
    Buffer.from(right.buffer, right.byteOffset, right.byteLength),
  );
}
/** The compression of a copied layer as the manifest must state it. */
function resolvedCompression(
  layer: CopiedLayer,
  manifestCompression: string | undefined,
): 'gzip' | 'zstd' | 'none' {
  const stored = layer.compression;
  if (stored === 'gzip' || stored === 'zstd' || stored === 'none') return stored;
  if (manifestCompression === 'gzip' || manifestCompression === 'zstd' || manifestCompression === 'none') {
    return manifestCompression;
  }
  return 'none';
}

/** `layerMediaTypeFor`, keeping the original type when it cannot be mapped. */
function safeLayerMediaType(
  manifestMediaType: string,
  compression: DetectedCompression,
  original: string | undefined,
): string | undefined {
  if (compression === 'xz' || compression === 'bzip2') return original;
  try {
    return layerMediaTypeFor(manifestMediaType, compression, original);
  } catch {
    return original;
  }
}

/**
 * The config's DiffIDs, one per manifest layer in order (`PutBlobOptions.layerDiffIds`); undefined when
 * the config does not list one sha256 DiffID per layer.
 */
function orderedDiffIds(layers: BlobInfo[], configBytes: Uint8Array): Digest[] | undefined {
  let diffIds: unknown;
  try {
    diffIds = parseImageConfig(configBytes).rootfs?.diff_ids;
  } catch {
    return undefined;
  }
  if (!Array.isArray(diffIds) || diffIds.length !== layers.length) return undefined;
  if (!diffIds.every((diffId) => typeof diffId === 'string' && /^sha256:[0-9a-f]{64}$/.test(diffId)))
    return undefined;
  return diffIds as Digest[];
}

/**
 * The DiffID the image config gives each layer (by layer digest), for verifying layers written
 * decompressed. Undefined when the config is not a config with one sha256 DiffID per layer; a layer
 * listed twice with different DiffIDs gets none (it is then verified by its own digest).
 */
function diffIdsByLayer(layers: BlobInfo[], configBytes: Uint8Array): Map<Digest, Digest> | undefined {
  let diffIds: unknown;
  try {
    diffIds = parseImageConfig(configBytes).rootfs?.diff_ids;
  } catch {
    return undefined; // Not a config: its layers are verified by their own digests.
  }
  if (!Array.isArray(diffIds) || diffIds.length !== layers.length) return undefined;
  const result = new Map<Digest, Digest>();
  const conflicting = new Set<Digest>();
  layers.forEach((layer, index) => {
    const diffId = diffIds[index];
    if (typeof diffId !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(diffId)) {
      conflicting.add(layer.digest);
      return;
    }
    const known = result.get(layer.digest);
    if (known !== undefined && known !== diffId) conflicting.add(layer.digest);
    result.set(layer.digest, diffId as Digest);
  });
  for (const digest of conflicting) result.delete(digest);
  return result;
}
