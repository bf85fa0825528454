/**
 * `inspectImage` and its relatives: what `gantry inspect` (skopeo inspect) prints, as library calls.
 */
import { withRetry } from '../copy/retry.js';
import { type Digest, digestOf } from '../digest.js';
import { ErrorCodes, GantryError, hasErrorCode, prefixError } from '../errors.js';
import { manifestDigest, manifestMatchesDigest, normalizeManifestMediaType } from '../manifest/digests.js';
import { buildInspectConfigOutput, buildInspectOutput, type ImageInspection } from '../manifest/inspect.js';
import { isManifestListMediaType } from '../manifest/media-types.js';
import { type ImageManifest, parseManifest, parseManifestList } from '../manifest/parse.js';
import { choosePlatformInstance } from '../manifest/platform.js';
import type { ImageReference, ImageSource, ManifestBlob } from '../transport/contract.js';
import { contextOf, type ImageOperationOptions, retrySettingsOf, withImageSource } from './common.js';

/** Largest config blob read into memory. */
const maximumConfigSize = 16 * 1024 * 1024;

/** Options of {@link inspectImage}. */
export interface InspectImageOptions extends ImageOperationOptions {
  /**
   * Whether `RepoTags` lists the repository's tags (default true). Only transports whose references
   * name a registry repository (`docker`) list them, as skopeo; others give `[]`.
   */
  tags?: boolean;
  /** Called with a warning that does not fail the inspection (a registry refusing to list tags). */
  onWarning?: (message: string) => void;
}

/** The top-level manifest as stored, with its digest. */
export interface StoredManifest extends ManifestBlob {
  /** The digest of `bytes` (`gantry inspect`'s `Digest`, `skopeo manifest-digest`). */
  digest: Digest;
}

/** The chosen image: the top-level manifest, and the single-image manifest (the list's instance for the platform). */
interface ResolvedImage {
  topLevel: ManifestBlob;
  manifest: ImageManifest;
}

async function readTopLevel(source: ImageSource, options: ImageOperationOptions): Promise<ManifestBlob> {
  const retry = retrySettingsOf(options);
  try {
    return await withRetry(() => source.getManifest(undefined, { signal: retry.signal }), retry);
  } catch (error) {
    throw prefixError('Error retrieving manifest for image', error);
  }
}

async function resolveImage(source: ImageSource, options: ImageOperationOptions): Promise<ResolvedImage> {
  const retry = retrySettingsOf(options);
  const topLevel = await readTopLevel(source, options);
  try {
    const mediaType = normalizeManifestMediaType(topLevel.mediaType, topLevel.bytes);
    if (!isManifestListMediaType(mediaType))
      return { topLevel, manifest: parseManifest(topLevel.bytes, mediaType) };
    const list = parseManifestList(topLevel.bytes, mediaType);
    let chosen: Digest;
    try {
      chosen = choosePlatformInstance(list, options.context?.platform);
    } catch (error) {
      // skopeo's words: "choosing image instance: no image found in manifest list for …".
      throw prefixError('choosing image instance', error);
    }
    const instance = await withRetry(() => source.getManifest(chosen, { signal: retry.signal }), retry);
    if (!manifestMatchesDigest(instance.bytes, chosen)) {
      throw new GantryError(ErrorCodes.DigestMismatch, `manifest ${chosen} does not match its digest`);
    }
    const manifest = parseManifest(
      instance.bytes,
      normalizeManifestMediaType(instance.mediaType, instance.bytes),
    );
    return { topLevel, manifest };
  } catch (error) {
    throw prefixError('Error parsing manifest for image', error);
  }
}

async function readConfigBlob(
  source: ImageSource,
  manifest: ImageManifest,
  signal: AbortSignal | undefined,
): Promise<Uint8Array | undefined> {
  if (!manifest.config) return undefined;
  const config = manifest.config;
  const blob = await source.getBlob(config, { signal });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of blob.stream) {
    size += (chunk as Buffer).byteLength;
    if (size > maximumConfigSize) {
      blob.stream.destroy();
      throw new GantryError(
        ErrorCodes.InvalidManifest,
        `config blob ${config.digest} is larger than ${maximumConfigSize} bytes`,
      );
    }
    chunks.push(chunk as Buffer);
  }
  const bytes = new Uint8Array(Buffer.concat(chunks));
  const actual = digestOf(bytes);
  if (actual !== config.digest) {
    throw new GantryError(
      ErrorCodes.DigestMismatch,
      `config blob: digest mismatch: expected ${config.digest}, got ${actual}`,
    );
  }
  return bytes;
}

async function readConfig(
  source: ImageSource,
  manifest: ImageManifest,
  options: ImageOperationOptions,
  errorPrefix: string,
): Promise<Uint8Array | undefined> {
  if (!manifest.config) return undefined;
  const retry = retrySettingsOf(options);
  try {
    return await withRetry(() => readConfigBlob(source, manifest, retry.signal), retry);
  } catch (error) {
    throw prefixError(errorPrefix, error);
  }
}

/**
 * The tags of the image's repository for `RepoTags`, from transports that list tags (skopeo lists them
 * for docker:// only; other transports give []). As skopeo, a registry refusing the tag list (401/403)
 * is a warning, not an error: returned with no tags (null, which skopeo prints), for the caller to give
 * once the image itself was read.
 */
async function repositoryTags(
  reference: ImageReference,
  options: InspectImageOptions,
): Promise<{ tags: string[] | null; warning?: string }> {
  const transport = reference.transport;
  if (transport.name !== 'docker' || typeof transport.listTags !== 'function') return { tags: [] };
  const retry = retrySettingsOf(options);
  const context = contextOf(options);
  try {
    return { tags: await withRetry(() => transport.listTags!(reference, context), retry) };
  } catch (error) {
    if (hasErrorCode(error, ErrorCodes.Unauthorized)) {
      return { tags: null, warning: 'Registry disallows tag list retrieval; skipping' };
    }
    throw prefixError('Error determining repository tags', error);
  }
}

/**
 * What `gantry inspect` prints for an image: name, digest, tags, creation time, labels, platform,
 * layers and environment (skopeo inspect's fields). From a manifest list, the instance for
 * `options.context.platform` (default: the host's) is inspected; `Digest` is the list's.
 *
 * `image` is a reference (opened, and closed afterwards) or an already open source (left open).
 * Rejects with `ERR_GANTRY_IMAGE_NOT_FOUND` when the image does not exist; other failures keep their
 * code, with skopeo's wording (`Error retrieving manifest for image: …`).
 *
 * `formatInspectJson(await inspectImage(…))` is the JSON document `gantry inspect` prints.
 */
export async function inspectImage(
  image: ImageReference | ImageSource,
  options: InspectImageOptions = {},
): Promise<ImageInspection> {
  return withImageSource(image, options, async (source) => {
    const reference = source.reference;
    // The tag list is asked for while the manifest and the config are read (one round trip less than
    // one after the other); its failure or warning counts only once the image itself was read.
    const tagsRead: Promise<{ tags: string[] | null; warning?: string }> =
      options.tags === false ? Promise.resolve({ tags: [] }) : repositoryTags(reference, options);
    tagsRead.catch(() => {});
    const { topLevel, manifest } = await resolveImage(source, options);
    const config = await readConfig(
      source,
      manifest,
      options,
      'Error reading OCI-formatted configuration data',
    );
    const dockerReference = reference.dockerReference();
    const { tags: repoTags, warning } = await tagsRead;
    if (warning !== undefined) options.onWarning?.(warning);
    return buildInspectOutput({
      ...(dockerReference ? { name: dockerReference.name } : {}),
      manifest,
      ...(config ? { config } : {}),
      repoTags,
      digest: manifestDigest(topLevel.bytes),
    });
  });
}

/**
 * The image's configuration as `gantry inspect --config` prints it: the config decoded into the OCI
 * image-spec's `Image` structure, as containers/image's `OCIConfig` does (Docker configs lose the
 * Docker-only fields; a schema1 image gets a config built from its history). Keys are in Go's field order;
 * `formatInspectJson` prints it as skopeo does. From a manifest list, the instance for the platform is used.
 */
export async function inspectImageConfig(
  image: ImageReference | ImageSource,
  options: ImageOperationOptions = {},
): Promise<Record<string, unknown>> {
  return withImageSource(image, options, async (source) => {
    const { manifest } = await resolveImage(source, options);
    const config = await readConfig(source, manifest, options, 'Error reading configuration blob');
    try {
      return buildInspectConfigOutput(manifest, config);
    } catch (error) {
      throw prefixError('Error reading OCI-formatted configuration data', error);
    }
  });
}

/**
 * The image's top-level manifest exactly as stored (`gantry inspect --raw`): for a manifest list, the
 * list itself. Its `digest` is what `skopeo manifest-digest` computes from the bytes.
 */
export async function readImageManifest(
  image: ImageReference | ImageSource,
  options: ImageOperationOptions = {},
): Promise<StoredManifest> {
  return withImageSource(image, options, async (source) => {
    const topLevel = await readTopLevel(source, options);
    return { bytes: topLevel.bytes, mediaType: topLevel.mediaType, digest: manifestDigest(topLevel.bytes) };
  });
}

/**
 * The image's config blob exactly as stored, verified against its digest (`gantry inspect --config
 * --raw`); undefined for a schema1 image, which has none. From a manifest list, the instance for the
 * platform is used.
 */
export async function readImageConfig(
  image: ImageReference | ImageSource,
  options: ImageOperationOptions = {},
): Promise<Uint8Array | undefined> {
  return withImageSource(image, options, async (source) => {
    const { manifest } = await resolveImage(source, options);
    return readConfig(source, manifest, options, 'Error reading configuration blob');
  });
}
