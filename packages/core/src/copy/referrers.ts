/**
 * Copying referrers (OCI distribution-spec 1.1 `subject`): the signatures, SBOMs and attestations
 * attached to the manifests a copy wrote, and recursively the referrers of those.
 */
import { type Digest, digestOf } from '../digest.js';
import { ErrorCodes, GantryError, throwIfAborted } from '../errors.js';
import {
  isManifestListMediaType,
  MediaTypes,
  manifestMatchesDigest,
  normalizeManifestMediaType,
  parseManifest,
  parseManifestList,
} from '../manifest/index.js';
import { decodeJsonObject, isJsonObject } from '../manifest/parse.js';
import type { ManifestBlob, ReferrerDescriptor } from '../transport/contract.js';
import { type BlobCopyContext, copyConfigBlob, copyLayer, readSmallBlob } from './blob.js';
import { withRetry } from './retry.js';

/** How many levels of referrers are copied at most (1: referrers of the image; 2: their referrers…). */
export const maximumReferrerDepth = 8;
/** How many referrers one copy copies at most. */
export const maximumReferrerCount = 1000;
/** Largest referrer config read into memory (configs of artifacts are small JSON documents). */
const maximumReferrerConfigSize = 4 * 1024 * 1024;

/** What copying referrers needs, besides the blob context. */
export interface ReferrerCopyContext extends BlobCopyContext {
  /** `transport:reference` of the source and destination, for messages. */
  sourceName: string;
  destinationName: string;
}

/** What `copyReferrers` copied. */
export interface CopiedReferrers {
  /** Each referrer copied, with the subject it refers to, in copy order (parents before their referrers). */
  referrers: Array<{ subject: Digest; referrer: ReferrerDescriptor }>;
}

/** The MIME type of a stored manifest: the stored one, or guessed from the bytes when missing or generic. */
function storedManifestType(blob: ManifestBlob): string {
  return normalizeManifestMediaType(blob.mediaType.split(';')[0]!.trim(), blob.bytes);
}

/**
 * The descriptor a referrers index lists for a manifest (distribution-spec 1.1): its `artifactType`,
 * else for an image manifest its config's `mediaType` (none for an index), and its annotations.
 * Throws `ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE` for types that cannot have a `subject`.
 */
export function referrerDescriptorOf(bytes: Uint8Array, mediaType: string): ReferrerDescriptor {
  const digest = digestOf(bytes);
  const base: ReferrerDescriptor = { mediaType, digest, size: bytes.byteLength };
  if (mediaType === MediaTypes.OciManifest) {
    const manifest = parseManifest(bytes, mediaType);
    const artifactType = manifest.artifactType ?? manifest.config?.mediaType;
    if (artifactType) base.artifactType = artifactType;
    if (manifest.annotations && Object.keys(manifest.annotations).length > 0)
      base.annotations = { ...manifest.annotations };
    return base;
  }
  if (mediaType === MediaTypes.OciIndex) {
    parseManifestList(bytes, mediaType);
    const object = decodeJsonObject(bytes, 'OCI image index');
    if (typeof object.artifactType === 'string' && object.artifactType !== '')
      base.artifactType = object.artifactType;
    if (isJsonObject(object.annotations) && Object.keys(object.annotations).length > 0)
      base.annotations = { ...(object.annotations as Record<string, string>) };
    return base;
  }
  throw new GantryError(
    ErrorCodes.UnsupportedManifestType,
    `manifest ${digest} has type ${mediaType || '(unknown)'}; only OCI image manifests and indexes can be referrers`,
  );
}

/** The `subject` digest a manifest names, or undefined. */
function subjectOf(bytes: Uint8Array, mediaType: string): Digest | undefined {
  if (mediaType === MediaTypes.OciManifest) return parseManifest(bytes, mediaType).subject?.digest;
  const object = decodeJsonObject(bytes, 'OCI image index');
  if (!isJsonObject(object.subject)) return undefined;
  return typeof object.subject.digest === 'string' ? (object.subject.digest as Digest) : undefined;
}

/**
 * Copies the referrers of `subjects` (manifest digests the copy wrote, with the same digests at the source
 * and the destination) from `context.source` to `context.destination`, level by level: the referrers of
 * the subjects, then theirs, up to `maximumReferrerDepth` levels and `maximumReferrerCount` referrers
 * (exceeding either fails the copy rather than copying part of the graph). For each referrer:
 * - its manifest is read by digest and checked: digest, size, type (OCI manifest or index) and that its
 *   `subject` is the manifest it was listed for (a stale or forged referrers index fails the copy);
 * - its blobs are copied through the verified blob path (reuse first, digest and size checked, never
 *   recompressed), an index's manifests (with their blobs) are written with `putManifest` by digest;
 * - its manifest is written byte for byte with `putReferrer`, never tagged.
 * A manifest is copied once even when listed twice (cycle protection). Rules for sources and
 * destinations: `ImageSource.listReferrers`, `ImageDestination.putReferrer` (the caller checks the source
 * has `listReferrers`; a destination without `putReferrer` fails only when a referrer is found).
 */
export async function copyReferrers(
  context: ReferrerCopyContext,
  subjects: Digest[],
): Promise<CopiedReferrers> {
  const listReferrers = context.source.listReferrers?.bind(context.source);
  if (!listReferrers) {
    throw new GantryError(
      ErrorCodes.NotSupported,
      `Can not copy referrers from ${context.sourceName}: the ${context.source.reference.transport.name} transport cannot list referrers`,
    );
  }
  const copied: CopiedReferrers = { referrers: [] };
  const known = new Set<Digest>(subjects);
  const writtenManifests = new Set<Digest>(subjects);
  const writtenBlobs = new Set<Digest>();
  let level = [...new Set(subjects)];
  for (let depth = 1; level.length > 0; depth++) {
    const next: Digest[] = [];
    for (const subject of level) {
      throwIfAborted(context.signal);
      const listed = await withRetry(() => listReferrers(subject, { signal: context.signal }), context.retry);
      for (const descriptor of listed) {
        if (known.has(descriptor.digest)) continue;
        if (depth > maximumReferrerDepth) {
          throw new GantryError(
            ErrorCodes.NotSupported,
            `Can not copy referrers of ${context.sourceName}: referrer ${descriptor.digest} of ${subject} is more than ${maximumReferrerDepth} levels deep`,
          );
        }
        if (copied.referrers.length >= maximumReferrerCount) {
          throw new GantryError(
            ErrorCodes.NotSupported,
            `Can not copy referrers of ${context.sourceName}: it has more than ${maximumReferrerCount} referrers`,
          );
        }
        const putReferrer = context.destination.putReferrer?.bind(context.destination);
        if (!putReferrer) {
          throw new GantryError(
            ErrorCodes.NotSupported,
            `Can not copy referrer ${descriptor.digest} of ${subject} to ${context.destinationName}: the ${context.destination.reference.transport.name} transport cannot store referrers`,
          );
        }
        known.add(descriptor.digest);
        context.emit({ type: 'referrer-start', subject, referrer: descriptor });
        const manifest = await readManifest(
          context,
          descriptor.digest,
          descriptor.size,
          `referrer ${descriptor.digest} of ${subject}`,
        );
        const listedSubject = subjectOf(manifest.bytes, manifest.mediaType);
        if (listedSubject !== subject) {
          throw new GantryError(
            ErrorCodes.InvalidManifest,
            `referrer ${descriptor.digest} is listed for ${subject} but its subject is ${listedSubject ?? '(none)'}`,
          );
        }
        const written = referrerDescriptorOf(manifest.bytes, manifest.mediaType);
        await copyManifestContent(context, manifest, writtenBlobs, 1, writtenManifests);
        await withRetry(
          () => putReferrer(manifest.bytes, written, subject, { signal: context.signal }),
          context.retry,
        );
        writtenManifests.add(descriptor.digest);
        copied.referrers.push({ subject, referrer: written });
        next.push(descriptor.digest);
      }
    }
    level = next;
  }
  return copied;
}

/** Reads a manifest by digest and checks its digest, size and type (OCI manifest or index). */
async function readManifest(
  context: ReferrerCopyContext,
  digest: Digest,
  size: number,
  what: string,
): Promise<ManifestBlob> {
  const stored = await withRetry(
    () => context.source.getManifest(digest, { signal: context.signal }),
    context.retry,
  );
  if (!manifestMatchesDigest(stored.bytes, digest)) {
    throw new GantryError(
      ErrorCodes.DigestMismatch,
      `Manifest of ${what} does not match its digest ${digest}`,
    );
  }
  if (size >= 0 && stored.bytes.byteLength !== size) {
    throw new GantryError(
      ErrorCodes.SizeMismatch,
      `Manifest of ${what}: size mismatch: expected ${size} bytes, got ${stored.bytes.byteLength}`,
    );
  }
  const mediaType = storedManifestType(stored);
  if (mediaType !== MediaTypes.OciManifest && mediaType !== MediaTypes.OciIndex) {
    throw new GantryError(
      ErrorCodes.UnsupportedManifestType,
      `Manifest of ${what} has type ${mediaType || '(unknown)'}; only OCI image manifests and indexes can be copied as referrers`,
    );
  }
  return { bytes: stored.bytes, mediaType };
}

/**
 * Copies what a referrer manifest names, before the manifest: an image manifest's layers and config; an
 * index's manifests (their content first, then each with `putManifest` by digest), nested at most
 * `maximumReferrerDepth` levels.
 */
async function copyManifestContent(
  context: ReferrerCopyContext,
  manifest: ManifestBlob,
  writtenBlobs: Set<Digest>,
  nesting: number,
  writtenManifests: Set<Digest>,
): Promise<void> {
  if (!isManifestListMediaType(manifest.mediaType)) {
    const image = parseManifest(manifest.bytes, manifest.mediaType);
    for (const layer of image.layers) {
      if (writtenBlobs.has(layer.digest)) continue;
      await copyLayer(context, {
        layer,
        plan: undefined,
        needDiffId: false,
        canSubstitute: false,
        changedMediaType: () => layer.mediaType,
      });
      writtenBlobs.add(layer.digest);
    }
    const config = image.config;
    if (config && !writtenBlobs.has(config.digest)) {
      const bytes = await withRetry(
        () => readSmallBlob(context.source, config, maximumReferrerConfigSize, context.signal),
        context.retry,
      );
      await copyConfigBlob(context, config, bytes);
      writtenBlobs.add(config.digest);
    }
    return;
  }
  if (nesting > maximumReferrerDepth) {
    throw new GantryError(
      ErrorCodes.NotSupported,
      `Can not copy referrers of ${context.sourceName}: indexes nested more than ${maximumReferrerDepth} levels deep`,
    );
  }
  const list = parseManifestList(manifest.bytes, manifest.mediaType);
  for (const instance of list.instances) {
    if (writtenManifests.has(instance.digest)) continue;
    const child = await readManifest(
      context,
      instance.digest,
      instance.size,
      `manifest ${instance.digest} of index ${list.digest}`,
    );
    await copyManifestContent(context, child, writtenBlobs, nesting + 1, writtenManifests);
    await withRetry(
      () =>
        context.destination.putManifest(child.bytes, child.mediaType, instance.digest, {
          signal: context.signal,
        }),
      context.retry,
    );
    writtenManifests.add(instance.digest);
  }
}
