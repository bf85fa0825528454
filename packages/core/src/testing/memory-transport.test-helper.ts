/**
 * A small in-memory transport (`memory:/location:tag`) for testing the conformance suite and, through
 * `faults`, for showing that each conformance check fails when a transport breaks its rule.
 * Test-only: blobs are held in memory.
 *
 * With `storeImages`, it behaves like `docker-archive:`: the destination accepts Docker schema2 manifests
 * only, wants layers decompressed, keeps the config digest and layer digests, and the source generates
 * a compact Docker schema2 manifest from them (layers labelled gzip, as skopeo does). With
 * `overwrite: 'refuse'`, opening a destination for a tag that holds an image rejects with
 * `ERR_GANTRY_NOT_SUPPORTED`.
 */
import { writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { type Digest, Digester, digestOf } from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
import { MediaTypes } from '../manifest/media-types.js';
import type {
  BlobInfo,
  BlobToWrite,
  ImageDestination,
  ImageReference,
  ImageSource,
  ManifestBlob,
  Transport,
} from '../transport/contract.js';

/** Ways to break the memory transport on purpose. */
export type MemoryTransportFault =
  | 'acceptAnyReference'
  | 'unstableStringWithinTransport'
  | 'reserialiseManifests'
  | 'unknownInstanceReturnsTopLevel'
  | 'missingImageWrongCode'
  | 'missingImageCreatesFile'
  | 'visibleBeforeCommit'
  | 'keepPartialBlobs'
  | 'swallowStreamErrors'
  | 'dropSignatures'
  | 'deleteDoesNothing'
  | 'oneImagePerLocation'
  | 'firstWriteWins'
  | 'corruptBlobs'
  | 'reportAnnouncedSize'
  | 'reuseAnything'
  // Reading a tag the location does not hold returns another image of the location.
  | 'anyTagReadsImage'
  // storeImages faults:
  | 'acceptAnyManifestType'
  | 'corruptLayers'
  | 'reencodeConfig'
  | 'rewriteConfigPlatform'
  | 'reverseLayers'
  | 'misdescribeLayers'
  | 'unstableManifest'
  // overwrite: 'refuse' faults:
  | 'overwriteDespiteRefusal'
  | 'refuseWithWrongCode'
  | 'refuseAfterRemovingImage'
  | 'refuseLeavingFile';

export interface MemoryTransportOptions {
  signatures?: boolean;
  delete?: boolean;
  /** Store images (config and layers) and generate manifests, like `docker-archive:`. */
  storeImages?: boolean;
  /** What writing to a tag that holds an image does; default 'replace'. */
  overwrite?: 'replace' | 'refuse';
  faults?: readonly MemoryTransportFault[];
}

/** What `storeImages` keeps of a manifest. */
interface StoredImageContent {
  configDigest: Digest;
  layers: Array<{ digest: Digest; size: number }>;
}

interface StoredImage {
  /** With `storeImages`, what the manifest is generated from. */
  content?: StoredImageContent;
  topLevel: ManifestBlob;
  instances: Map<Digest, ManifestBlob>;
  signatures: Map<Digest | '', Uint8Array[]>;
}

interface Location {
  blobs: Map<Digest, Buffer>;
  images: Map<string, StoredImage>;
}

const tagPattern = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export function createMemoryTransport(options: MemoryTransportOptions = {}): Transport {
  const faults = new Set(options.faults ?? []);
  const locations = new Map<string, Location>();
  const locationOf = (name: string) => {
    let location = locations.get(name);
    if (!location) {
      location = { blobs: new Map(), images: new Map() };
      locations.set(name, location);
    }
    return location;
  };
  const notFound = (text: string) =>
    new GantryError(
      faults.has('missingImageWrongCode') ? ErrorCodes.Internal : ErrorCodes.ImageNotFound,
      `memory image ${text} not found`,
    );

  const transport: Transport = {
    specificationVersion: 'v1',
    name: 'memory',
    validatePolicyConfigurationScope() {},
    parseReference(text: string): ImageReference {
      const colon = text.lastIndexOf(':');
      const locationName = colon < 0 ? text : text.slice(0, colon);
      const tag = colon < 0 ? 'latest' : text.slice(colon + 1);
      if (!faults.has('acceptAnyReference')) {
        if (!locationName.startsWith('/')) {
          throw new GantryError(
            ErrorCodes.InvalidReference,
            `memory reference "${text}" needs an absolute location`,
          );
        }
        if (!tagPattern.test(tag)) {
          throw new GantryError(
            ErrorCodes.InvalidReference,
            `memory reference "${text}" has an invalid tag "${tag}"`,
          );
        }
      }
      return makeReference(locationName, tag);
    },
  };

  function makeReference(locationName: string, tag: string): ImageReference {
    const text = `${locationName}:${tag}`;
    const reference: ImageReference = {
      transport,
      stringWithinTransport: () => (faults.has('unstableStringWithinTransport') ? `${text}-x` : text),
      dockerReference: () => undefined,
      policyConfigurationIdentity: () => text,
      policyConfigurationNamespaces: () => [locationName],
      async newImageSource() {
        const images = locations.get(locationName)?.images;
        const stored =
          images?.get(tag) ?? (faults.has('anyTagReadsImage') ? [...(images?.values() ?? [])][0] : undefined);
        if (!stored) {
          if (faults.has('missingImageCreatesFile')) await writeFile(locationName, '');
          throw notFound(text);
        }
        return makeSource(reference, locationOf(locationName), stored);
      },
      async newImageDestination() {
        const existing = locations.get(locationName)?.images;
        if (options.overwrite === 'refuse' && existing?.has(tag) && !faults.has('overwriteDespiteRefusal')) {
          if (faults.has('refuseAfterRemovingImage')) existing.delete(tag);
          if (faults.has('refuseLeavingFile')) await writeFile(`${locationName}.partial`, 'left behind\n');
          throw new GantryError(
            faults.has('refuseWithWrongCode') ? ErrorCodes.Internal : ErrorCodes.NotSupported,
            `memory image ${text} exists and the transport does not overwrite images`,
          );
        }
        return makeDestination(reference, locationName, tag);
      },
      async deleteImage() {
        if (!options.delete)
          throw new GantryError(ErrorCodes.NotSupported, 'memory transport: delete disabled');
        const location = locations.get(locationName);
        if (!location?.images.has(tag)) throw notFound(text);
        if (!faults.has('deleteDoesNothing')) location.images.delete(tag);
      },
    };
    return reference;
  }

  let generation = 0;
  /** `storeImages`: the manifest and config a source serves, generated from what was stored. */
  function generateImage(
    location: Location,
    content: StoredImageContent,
  ): { manifest: ManifestBlob; config: { digest: Digest; bytes: Buffer } } {
    let configBytes = location.blobs.get(content.configDigest)!;
    if (faults.has('reencodeConfig'))
      configBytes = Buffer.from(JSON.stringify(JSON.parse(configBytes.toString()), null, 1));
    if (faults.has('rewriteConfigPlatform')) {
      const config = JSON.parse(configBytes.toString());
      config.architecture = config.architecture === 's390x' ? 'amd64' : 's390x';
      configBytes = Buffer.from(JSON.stringify(config));
    }
    const configDigest =
      faults.has('reencodeConfig') || faults.has('rewriteConfigPlatform')
        ? digestOf(configBytes)
        : content.configDigest;
    const layers = faults.has('reverseLayers') ? [...content.layers].reverse() : content.layers;
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaTypes.DockerManifest,
      config: { mediaType: MediaTypes.DockerConfig, size: configBytes.byteLength, digest: configDigest },
      layers: layers.map((layer) => ({
        mediaType: MediaTypes.DockerLayerGzip,
        size: layer.size + (faults.has('misdescribeLayers') ? 1 : 0),
        digest: layer.digest,
      })),
      ...(faults.has('unstableManifest') ? { generation: generation++ } : {}),
    };
    return {
      manifest: { bytes: Buffer.from(JSON.stringify(manifest)), mediaType: MediaTypes.DockerManifest },
      config: { digest: configDigest, bytes: configBytes },
    };
  }

  function makeSource(reference: ImageReference, location: Location, stored: StoredImage): ImageSource {
    const generated = stored.content ? generateImage(location, stored.content) : undefined;
    if (generated) stored = { ...stored, topLevel: generated.manifest };
    const present = (manifest: ManifestBlob): ManifestBlob =>
      faults.has('reserialiseManifests')
        ? {
            bytes: Buffer.from(JSON.stringify(JSON.parse(Buffer.from(manifest.bytes).toString()), null, 2)),
            mediaType: manifest.mediaType,
          }
        : manifest;
    return {
      reference,
      properties: { hasThreadSafeGetBlob: true },
      async getManifest(instanceDigest?: Digest) {
        if (instanceDigest === undefined) return present(stored.topLevel);
        const instance = stored.instances.get(instanceDigest);
        if (instance) return present(instance);
        if (faults.has('unknownInstanceReturnsTopLevel')) return present(stored.topLevel);
        throw new GantryError(ErrorCodes.ImageNotFound, `memory image has no instance ${instanceDigest}`);
      },
      async getBlob(info: BlobInfo) {
        const bytes =
          generated && info.digest === generated.config.digest
            ? generated.config.bytes
            : location.blobs.get(info.digest);
        if (!bytes) throw new GantryError(ErrorCodes.BlobNotFound, `memory blob ${info.digest} not found`);
        const corrupt =
          faults.has('corruptBlobs') ||
          (faults.has('corruptLayers') && info.digest !== generated?.config.digest);
        const served =
          corrupt && bytes.byteLength > 0 ? Buffer.concat([bytes.subarray(1), Buffer.from('!')]) : bytes;
        return { stream: Readable.from([served]), size: served.byteLength };
      },
      async getSignatures(instanceDigest?: Digest) {
        return [...(stored.signatures.get(instanceDigest ?? '') ?? [])];
      },
      async close() {},
    };
  }

  function makeDestination(reference: ImageReference, locationName: string, tag: string): ImageDestination {
    const blobs = new Map<Digest, Buffer>();
    const instances = new Map<Digest, ManifestBlob>();
    const signatures = new Map<Digest | '', Uint8Array[]>();
    let topLevel: ManifestBlob | undefined;
    let content: StoredImageContent | undefined;
    let committed = false;
    let closed = false;
    const publish = () => {
      const location = locationOf(locationName);
      for (const [digest, bytes] of blobs) location.blobs.set(digest, bytes);
      if (!topLevel)
        throw new GantryError(ErrorCodes.Internal, 'memory destination: commit() without a manifest');
      if (faults.has('firstWriteWins') && location.images.has(tag)) return;
      if (faults.has('oneImagePerLocation')) location.images.clear();
      location.images.set(tag, {
        topLevel,
        instances: new Map(instances),
        signatures: new Map(signatures),
        ...(content ? { content } : {}),
      });
    };
    return {
      reference,
      properties: {
        supportedManifestMimeTypes: options.storeImages ? [MediaTypes.DockerManifest] : undefined,
        desiredLayerCompression: options.storeImages ? 'decompress' : 'preserve',
        acceptsForeignLayerURLs: false,
        mustMatchRuntimeOS: false,
        supportsSignatures: options.signatures ?? false,
        hasThreadSafePutBlob: true,
        ignoresEmbeddedDockerReference: true,
      },
      async putBlob(stream: Readable, info: BlobToWrite): Promise<BlobInfo> {
        const digester = new Digester();
        const chunks: Buffer[] = [];
        try {
          for await (const chunk of stream) {
            digester.update(chunk as Buffer);
            chunks.push(chunk as Buffer);
          }
        } catch (error) {
          if (faults.has('keepPartialBlobs') && info.digest) blobs.set(info.digest, Buffer.concat(chunks));
          if (!faults.has('swallowStreamErrors')) throw error;
        }
        const digest = digester.digest();
        if (info.digest && info.digest !== digest && !faults.has('swallowStreamErrors')) {
          throw new GantryError(
            ErrorCodes.DigestMismatch,
            `memory putBlob: expected ${info.digest}, got ${digest}`,
          );
        }
        const stored = info.digest && faults.has('swallowStreamErrors') ? info.digest : digest;
        blobs.set(stored, Buffer.concat(chunks));
        if (faults.has('visibleBeforeCommit'))
          locationOf(locationName).blobs.set(stored, Buffer.concat(chunks));
        const size = faults.has('reportAnnouncedSize') ? info.size : digester.size;
        return { digest: stored, size, mediaType: info.mediaType };
      },
      async tryReusingBlob(info: BlobInfo) {
        if (
          faults.has('reuseAnything') ||
          blobs.has(info.digest) ||
          locationOf(locationName).blobs.has(info.digest)
        ) {
          return { reused: true, blob: info };
        }
        return { reused: false };
      },
      async putManifest(manifest: Uint8Array, mediaType: string, instanceDigest?: Digest) {
        const blob = { bytes: Buffer.from(manifest), mediaType };
        if (options.storeImages) {
          const parsed = JSON.parse(Buffer.from(manifest).toString()) as {
            config?: { digest: Digest };
            layers?: Array<{ digest: Digest; size: number }>;
          };
          if (mediaType !== MediaTypes.DockerManifest && !faults.has('acceptAnyManifestType')) {
            throw new GantryError(
              ErrorCodes.UnsupportedManifestType,
              `memory image store: unsupported manifest type ${mediaType}`,
            );
          }
          if (instanceDigest || !parsed.config) {
            throw new GantryError(ErrorCodes.NotSupported, 'memory image store: single images only');
          }
          content = {
            configDigest: parsed.config.digest,
            layers: (parsed.layers ?? []).map((layer) => ({ digest: layer.digest, size: layer.size })),
          };
        }
        if (instanceDigest) instances.set(instanceDigest, blob);
        else topLevel = blob;
        if (faults.has('visibleBeforeCommit') && !instanceDigest) publish();
      },
      async putSignatures(list: Uint8Array[], instanceDigest?: Digest) {
        if (!options.signatures)
          throw new GantryError(ErrorCodes.NotSupported, 'memory transport: signatures disabled');
        if (!faults.has('dropSignatures'))
          signatures.set(
            instanceDigest ?? '',
            list.map((signature) => Buffer.from(signature)),
          );
      },
      async commit() {
        if (closed) throw new GantryError(ErrorCodes.Internal, 'memory destination: commit() after close()');
        publish();
        committed = true;
      },
      async close() {
        closed = true;
        if (!committed) blobs.clear();
      },
    };
  }

  return transport;
}
