/**
 * Reads an image from an OSTree repository in containers/image's layout. Layers are kept as file trees,
 * so they are served uncompressed: `layerInfosForCopy` describes them by their DiffID, and `getBlob`
 * regenerates each tar, byte for byte, from a checkout of its branch plus its `tarsplit.output`.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  type BlobInfo,
  type BlobStream,
  type Digest,
  ErrorCodes,
  GantryError,
  guessManifestMediaType,
  type ImageManifest,
  type ImageSource,
  type ImageSourceProperties,
  layerMediaTypeFor,
  type ManifestBlob,
  MediaTypes,
  makeOwnedTemporaryDirectory,
  parseManifest,
  type TransportContext,
} from '@gantry/core/transport';
import { assembleTar, pathFileGetter } from '@gantry/layer-tree';
import type { CommitObject } from './gvariant.js';
import { blobBranch, type OstreeImageReference } from './reference.js';
import { OstreeRepository } from './repository.js';

interface StoredLayer {
  /** The layer's digest as the manifest names it (its branch). */
  blobDigest: Digest;
  commit: string;
  metadata: CommitObject['metadata'];
  uncompressedDigest: Digest;
  uncompressedSize: number;
}

function requiredMetadata(commit: CommitObject, key: string, branch: string): string {
  const value = commit.metadata.get(key);
  if (value === undefined) {
    throw new GantryError(ErrorCodes.InvalidLayout, `ostree: branch ${branch} has no ${key} metadata`);
  }
  return value;
}

function parseSize(value: string, key: string, branch: string): number {
  const size = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(size)) {
    throw new GantryError(
      ErrorCodes.InvalidLayout,
      `ostree: branch ${branch}: ${key} "${value}" is not a size`,
    );
  }
  return size;
}

class OstreeImageSource implements ImageSource {
  readonly properties: ImageSourceProperties = Object.freeze({ hasThreadSafeGetBlob: true });
  private readonly manifestBlob: ManifestBlob;
  private readonly manifest: ImageManifest;
  private layers: Promise<StoredLayer[]> | undefined;

  constructor(
    readonly reference: OstreeImageReference,
    private readonly repository: OstreeRepository,
    private readonly imageCommitChecksum: string,
    private readonly imageCommit: CommitObject,
    private readonly context: TransportContext,
  ) {
    const bytes = Buffer.from(
      requiredMetadata(imageCommit, 'docker.manifest', reference.imageBranch),
      'utf8',
    );
    this.manifestBlob = { bytes: new Uint8Array(bytes), mediaType: guessManifestMediaType(bytes) };
    this.manifest = parseManifest(this.manifestBlob.bytes, this.manifestBlob.mediaType);
  }

  async getManifest(instanceDigest?: Digest): Promise<ManifestBlob> {
    if (instanceDigest !== undefined) {
      throw new GantryError(
        ErrorCodes.ImageNotFound,
        `${this.reference}: manifest lists are not supported by "ostree:"`,
      );
    }
    return this.manifestBlob;
  }

  private storedLayers(): Promise<StoredLayer[]> {
    this.layers ??= Promise.all(
      this.manifest.layers.map(async (layer) => {
        const branch = blobBranch(layer.digest);
        const commit = await this.repository.resolveBranch(branch);
        if (commit === undefined) {
          throw new GantryError(
            ErrorCodes.BlobNotFound,
            `${this.reference}: layer branch ${branch} does not exist`,
          );
        }
        const object = await this.repository.readCommit(commit, branch);
        const uncompressedDigest = requiredMetadata(object, 'docker.uncompressed_digest', branch);
        if (!/^sha256:[0-9a-f]{64}$/.test(uncompressedDigest)) {
          throw new GantryError(
            ErrorCodes.InvalidLayout,
            `ostree: branch ${branch}: bad docker.uncompressed_digest`,
          );
        }
        return {
          blobDigest: layer.digest,
          commit,
          metadata: object.metadata,
          uncompressedDigest: uncompressedDigest as Digest,
          uncompressedSize: parseSize(
            requiredMetadata(object, 'docker.uncompressed_size', branch),
            'docker.uncompressed_size',
            branch,
          ),
        };
      }),
    );
    return this.layers;
  }

  async layerInfosForCopy(instanceDigest?: Digest): Promise<BlobInfo[]> {
    if (instanceDigest !== undefined) {
      throw new GantryError(
        ErrorCodes.ImageNotFound,
        `${this.reference}: manifest lists are not supported by "ostree:"`,
      );
    }
    const stored = await this.storedLayers();
    const manifestType =
      this.manifest.mediaType === MediaTypes.OciManifest ? MediaTypes.OciManifest : MediaTypes.DockerManifest;
    return this.manifest.layers.map((layer, index) => {
      const info: BlobInfo = {
        digest: stored[index]!.uncompressedDigest,
        size: stored[index]!.uncompressedSize,
        mediaType: layerMediaTypeFor(manifestType, 'none', layer.mediaType),
      };
      if (layer.annotations) info.annotations = layer.annotations;
      return info;
    });
  }

  async getBlob(info: BlobInfo): Promise<BlobStream> {
    if (this.manifest.config?.digest === info.digest) {
      const branch = blobBranch(info.digest);
      const commit = await this.repository.resolveBranch(branch);
      if (commit === undefined) {
        throw new GantryError(
          ErrorCodes.BlobNotFound,
          `${this.reference}: config branch ${branch} does not exist`,
        );
      }
      const object = await this.repository.readCommit(commit, branch);
      const size = parseSize(requiredMetadata(object, 'docker.size', branch), 'docker.size', branch);
      return { stream: this.repository.catFile(commit, '/content'), size };
    }
    const stored = await this.storedLayers();
    const layer = stored.find((candidate) => candidate.uncompressedDigest === info.digest);
    if (!layer) {
      const compressed = stored.find((candidate) => candidate.blobDigest === info.digest);
      throw new GantryError(
        ErrorCodes.BlobNotFound,
        compressed
          ? `blob ${info.digest}: ostree: keeps layers as file trees; read it uncompressed as ${compressed.uncompressedDigest}`
          : `blob ${info.digest} is not part of ${this.reference}`,
      );
    }
    const branch = blobBranch(layer.blobDigest);
    const tarSplit = Buffer.from(
      requiredMetadata({ metadata: layer.metadata } as CommitObject, 'tarsplit.output', branch),
      'base64',
    );
    if (tarSplit.length < 2 || tarSplit[0] !== 0x1f || tarSplit[1] !== 0x8b) {
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `${this.reference}: branch ${branch}: tarsplit.output is not a gzip-compressed tar-split`,
      );
    }
    const directory = await makeOwnedTemporaryDirectory(
      'ostree-checkout',
      this.context.temporaryDirectory ?? tmpdir(),
    );
    const checkout = join(directory, 'root');
    try {
      await this.repository.checkout(layer.commit, checkout, { signal: this.context.signal });
    } catch (error) {
      await rm(directory, { recursive: true, force: true });
      throw error;
    }
    const tar = assembleTar(
      tarSplit,
      pathFileGetter(checkout),
      this.context.signal ? { signal: this.context.signal } : {},
    );
    tar.on('close', () => {
      void rm(directory, { recursive: true, force: true });
    });
    return { stream: tar as Readable, size: layer.uncompressedSize };
  }

  async getSignatures(instanceDigest?: Digest): Promise<Uint8Array[]> {
    if (instanceDigest !== undefined) return [];
    const branch = this.reference.imageBranch;
    const count = parseSize(this.imageCommit.metadata.get('signatures') ?? '0', 'signatures', branch);
    const signatures: Uint8Array[] = [];
    for (let index = 1; index <= count; index++) {
      const chunks: Buffer[] = [];
      for await (const chunk of this.repository.catFile(this.imageCommitChecksum, `/signature-${index}`)) {
        chunks.push(chunk as Buffer);
      }
      signatures.push(new Uint8Array(Buffer.concat(chunks)));
    }
    return signatures;
  }

  async close(): Promise<void> {}
}

/** Opens the repository and the image branch: `ERR_GANTRY_IMAGE_NOT_FOUND` when either is missing. */
export async function openImageCommit(
  reference: OstreeImageReference,
): Promise<{ repository: OstreeRepository; checksum: string; commit: CommitObject }> {
  if (!existsSync(reference.repository)) {
    throw new GantryError(
      ErrorCodes.ImageNotFound,
      `${reference}: no OSTree repository at ${reference.repository}`,
    );
  }
  const repository = await OstreeRepository.open(reference.repository);
  const checksum = await repository.resolveBranch(reference.imageBranch);
  if (checksum === undefined) {
    throw new GantryError(
      ErrorCodes.ImageNotFound,
      `${reference}: image not found: no branch ${reference.imageBranch} in ${reference.repository}`,
    );
  }
  const commit = await repository.readCommit(checksum, reference.imageBranch);
  return { repository, checksum, commit };
}

export async function openOstreeImageSource(
  reference: OstreeImageReference,
  context: TransportContext,
): Promise<ImageSource> {
  const { repository, checksum, commit } = await openImageCommit(reference);
  return new OstreeImageSource(reference, repository, checksum, commit, context);
}
