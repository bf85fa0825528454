/**
 * Test doubles for the copy pipeline tests: a fake transport and references, and a destination that
 * records every call and keeps blobs in memory (or only their digests). Test-only.
 */

import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Digest, Digester } from '../digest.js';
import { ErrorCodes, GantryError, throwIfAborted } from '../errors.js';
import type { DockerReference } from '../reference/types.js';
import type {
  BlobInfo,
  BlobToWrite,
  ImageDestination,
  ImageDestinationProperties,
  ImageReference,
  ImageSource,
  OperationOptions,
  PutBlobOptions,
  PutManifestOptions,
  ReferrerDescriptor,
  ReusedBlob,
  Transport,
  TryReusingBlobOptions,
} from '../transport/contract.js';

export const fakeTransport: Transport = {
  specificationVersion: 'v1',
  name: 'fake',
  parseReference() {
    throw new GantryError(ErrorCodes.Internal, 'fake transport does not parse');
  },
  validatePolicyConfigurationScope() {},
};

/** A docker reference with just what the copy pipeline reads. */
export function fakeDockerReference(name: string, digest?: Digest): DockerReference {
  return {
    domain: 'example.com',
    path: name,
    name: `example.com/${name}`,
    tag: digest ? undefined : 'latest',
    digest,
    toString: () => `example.com/${name}${digest ? `@${digest}` : ':latest'}`,
  };
}

export function fakeReference(options: {
  name: string;
  dockerReference?: DockerReference;
  openSource?: (reference: ImageReference) => ImageSource;
  openDestination?: () => ImageDestination;
}): ImageReference {
  const reference: ImageReference = {
    transport: fakeTransport,
    stringWithinTransport: () => options.name,
    dockerReference: () => options.dockerReference,
    policyConfigurationIdentity: () => options.name,
    policyConfigurationNamespaces: () => [],
    async newImageSource() {
      if (!options.openSource)
        throw new GantryError(ErrorCodes.ImageNotFound, `${options.name} has no source`);
      return options.openSource(reference);
    },
    async newImageDestination() {
      if (!options.openDestination)
        throw new GantryError(ErrorCodes.Internal, `${options.name} has no destination`);
      return options.openDestination();
    },
    async deleteImage() {
      throw new GantryError(ErrorCodes.NotSupported, 'fake');
    },
  };
  return reference;
}

export interface RecordingDestinationOptions {
  properties?: Partial<ImageDestinationProperties>;
  /** Blobs the destination has already (tryReusingBlob finds them). */
  existingBlobs?: Iterable<Digest>;
  /** Keep blob bytes (default true); false only hashes them (for large blobs). */
  keepBytes?: boolean;
  /** Delay inside each putBlob after reading, to observe concurrency. */
  putBlobDelayMs?: number;
  /** Manifest types putManifest refuses with ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE. */
  rejectedManifestTypes?: string[];
  /** Check that written bytes match the digest and size given to putBlob (default true); false = a naive store. */
  verifyWrites?: boolean;
  /** Offer tryReusingBlob (default true). */
  offerReuse?: boolean;
  /** Offer putReferrer (default true). */
  offerReferrers?: boolean;
}

/** A destination recording calls; blobs become visible in `committedBlobs` only on commit. */
export class RecordingDestination implements ImageDestination {
  readonly reference: ImageReference;
  readonly properties: ImageDestinationProperties;
  readonly calls: string[] = [];
  readonly stagedBlobs = new Map<Digest, { bytes?: Buffer; size: number; isConfig: boolean }>();
  readonly manifests: Array<{ bytes: Uint8Array; mediaType: string; instanceDigest?: Digest }> = [];
  readonly signatures: Array<{ signatures: Uint8Array[]; instanceDigest?: Digest }> = [];
  readonly existing: Set<Digest>;
  committed = false;
  closed = false;
  /** Blobs kept after commit (empty when closed without commit). */
  committedBlobs = new Map<Digest, { bytes?: Buffer; size: number; isConfig: boolean }>();
  inFlightPuts = 0;
  maxInFlightPuts = 0;
  failedPuts = 0;
  tryReusingBlob?: (info: BlobInfo, options: TryReusingBlobOptions) => Promise<ReusedBlob>;
  /** Referrers stored by putReferrer, in call order. */
  readonly referrers: Array<{ bytes: Uint8Array; referrer: ReferrerDescriptor; subject: Digest }> = [];
  putReferrer?: (
    manifest: Uint8Array,
    referrer: ReferrerDescriptor,
    subject: Digest,
    options?: OperationOptions,
  ) => Promise<void>;

  constructor(private readonly options: RecordingDestinationOptions = {}) {
    this.reference = fakeReference({ name: 'recording-destination' });
    this.properties = {
      supportedManifestMimeTypes: undefined,
      desiredLayerCompression: 'preserve',
      acceptsForeignLayerURLs: false,
      mustMatchRuntimeOS: false,
      supportsSignatures: true,
      hasThreadSafePutBlob: true,
      ignoresEmbeddedDockerReference: true,
      ...options.properties,
    };
    this.existing = new Set(options.existingBlobs ?? []);
    if (options.offerReferrers !== false) {
      this.putReferrer = async (manifest, referrer, subject, referrerOptions) => {
        throwIfAborted(referrerOptions?.signal);
        this.calls.push(`putReferrer ${referrer.digest} ${subject}`);
        this.referrers.push({ bytes: manifest, referrer, subject });
      };
    }
    if (options.offerReuse !== false) {
      this.tryReusingBlob = async (info, reuseOptions) => {
        this.calls.push(`tryReusingBlob ${info.digest}`);
        throwIfAborted(reuseOptions.signal);
        if (this.existing.has(info.digest) || this.stagedBlobs.has(info.digest)) {
          return { reused: true, blob: { digest: info.digest, size: info.size } };
        }
        return { reused: false };
      };
    }
  }

  async putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo> {
    this.calls.push(`putBlob ${info.digest ?? '(unknown)'}`);
    this.inFlightPuts++;
    this.maxInFlightPuts = Math.max(this.maxInFlightPuts, this.inFlightPuts);
    try {
      const digester = new Digester();
      const chunks: Buffer[] = [];
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        digester.update(chunk);
        if (this.options.keepBytes !== false) chunks.push(chunk);
      }
      if (this.options.putBlobDelayMs)
        await sleep(this.options.putBlobDelayMs, undefined, { signal: options.signal });
      const digest = digester.digest();
      const verify = this.options.verifyWrites !== false;
      if (verify && info.digest !== undefined && info.digest !== digest) {
        throw new GantryError(
          ErrorCodes.DigestMismatch,
          `destination: blob ${info.digest} has digest ${digest}`,
        );
      }
      if (verify && info.size >= 0 && info.size !== digester.size) {
        throw new GantryError(ErrorCodes.SizeMismatch, `destination: blob ${digest} size ${digester.size}`);
      }
      const stored: { bytes?: Buffer; size: number; isConfig: boolean } = {
        size: digester.size,
        isConfig: options.isConfig,
      };
      if (this.options.keepBytes !== false) stored.bytes = Buffer.concat(chunks);
      // A naive store files the blob under the digest it was told.
      this.stagedBlobs.set(verify ? digest : (info.digest ?? digest), stored);
      return { digest, size: digester.size, ...(info.mediaType ? { mediaType: info.mediaType } : {}) };
    } catch (error) {
      this.failedPuts++;
      throw error;
    } finally {
      this.inFlightPuts--;
    }
  }

  async putManifest(
    manifest: Uint8Array,
    mediaType: string,
    instanceDigest?: Digest,
    options?: PutManifestOptions,
  ): Promise<void> {
    throwIfAborted(options?.signal);
    this.calls.push(`putManifest ${mediaType}${instanceDigest ? ` ${instanceDigest}` : ''}`);
    if (this.options.rejectedManifestTypes?.includes(mediaType)) {
      throw new GantryError(
        ErrorCodes.UnsupportedManifestType,
        `destination refuses manifest type ${mediaType}`,
      );
    }
    this.manifests.push({ bytes: manifest, mediaType, ...(instanceDigest ? { instanceDigest } : {}) });
  }

  async putSignatures(signatures: Uint8Array[], instanceDigest?: Digest): Promise<void> {
    this.calls.push(`putSignatures ${signatures.length}${instanceDigest ? ` ${instanceDigest}` : ''}`);
    if (!this.properties.supportsSignatures) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        'Pushing signatures for this destination is not supported',
      );
    }
    this.signatures.push({ signatures, ...(instanceDigest ? { instanceDigest } : {}) });
  }

  async commit(): Promise<void> {
    this.calls.push('commit');
    this.committed = true;
    this.committedBlobs = new Map(this.stagedBlobs);
  }

  async close(): Promise<void> {
    this.calls.push('close');
    this.closed = true;
  }

  /** The top-level manifest written last (without instance digest). */
  topLevelManifest(): { bytes: Uint8Array; mediaType: string } | undefined {
    return this.manifests.filter((manifest) => manifest.instanceDigest === undefined).at(-1);
  }
}
