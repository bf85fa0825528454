/**
 * A small in-memory transport (`memory:/location:tag`) for testing the conformance suite and, through
 * `faults`, for showing that each conformance check fails when a transport breaks its rule.
 * Test-only: blobs are held in memory.
 */
import { Readable } from 'node:stream';
import { type Digest, Digester } from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
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
  | 'visibleBeforeCommit'
  | 'keepPartialBlobs'
  | 'swallowStreamErrors'
  | 'dropSignatures'
  | 'deleteDoesNothing'
  | 'oneImagePerLocation'
  | 'firstWriteWins'
  | 'corruptBlobs'
  | 'reportAnnouncedSize'
  | 'reuseAnything';

export interface MemoryTransportOptions {
  signatures?: boolean;
  delete?: boolean;
  faults?: readonly MemoryTransportFault[];
}

interface StoredImage {
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
        const stored = locations.get(locationName)?.images.get(tag);
        if (!stored) throw notFound(text);
        return makeSource(reference, locationOf(locationName), stored);
      },
      async newImageDestination() {
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

  function makeSource(reference: ImageReference, location: Location, stored: StoredImage): ImageSource {
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
        const bytes = location.blobs.get(info.digest);
        if (!bytes) throw new GantryError(ErrorCodes.BlobNotFound, `memory blob ${info.digest} not found`);
        const served =
          faults.has('corruptBlobs') && bytes.byteLength > 0
            ? Buffer.concat([bytes.subarray(1), Buffer.from('!')])
            : bytes;
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
    let committed = false;
    let closed = false;
    const publish = () => {
      const location = locationOf(locationName);
      for (const [digest, bytes] of blobs) location.blobs.set(digest, bytes);
      if (!topLevel)
        throw new GantryError(ErrorCodes.Internal, 'memory destination: commit() without a manifest');
      if (faults.has('firstWriteWins') && location.images.has(tag)) return;
      if (faults.has('oneImagePerLocation')) location.images.clear();
      location.images.set(tag, { topLevel, instances: new Map(instances), signatures: new Map(signatures) });
    };
    return {
      reference,
      properties: {
        supportedManifestMimeTypes: undefined,
        desiredLayerCompression: 'preserve',
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
