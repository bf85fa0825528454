/**
 * Reading a SIF file as an image: the file is parsed and converted when the source opens (the manifest
 * names the layer's digest, so the layer must exist first); the source then serves the manifest, the
 * config from memory and the layer from its temporary file. `close()` removes the temporary directory.
 */
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import {
  type BlobInfo,
  type BlobStream,
  type Digest,
  describeFileSystemError,
  digestOf,
  ErrorCodes,
  errorCode,
  GantryError,
  type ImageSource,
  type ImageSourceProperties,
  type ManifestBlob,
  makeOwnedTemporaryDirectory,
  type OperationOptions,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core/transport';
import { convertSquashfsToTar, removeTree } from './convert.js';
import { type DefinitionFileSections, imageCommandOf, parseDefinitionFile } from './definition-file.js';
import { buildConfig, buildManifest, ociManifestMediaType } from './image.js';
import type { SifImageReference } from './reference.js';
import {
  readSifImage,
  SifDataType,
  SifFileSystemType,
  SifPartitionType,
  selectSifDescriptor,
} from './sif-format.js';
import type { SifTransportOptions } from './transport.js';

/** The label of the temporary directories this transport makes (`.gantry-tmp-…​.sif`). */
export const temporaryDirectoryLabel = 'sif';

/** The largest definition file read (the real ones are a few kilobytes). */
const maximumDefinitionFileSize = 16 * 1024 * 1024;

/** The options `context.transportOptions.sif` may carry. */
function optionsFrom(context: TransportContext, defaults: SifTransportOptions): SifTransportOptions {
  const given = context.transportOptions?.sif;
  if (given === undefined) return defaults;
  if (typeof given !== 'object' || given === null) {
    throw new GantryError(ErrorCodes.InvalidConfiguration, 'transportOptions.sif must be an object');
  }
  const tools = (given as SifTransportOptions).tools;
  if (tools !== undefined) {
    for (const name of ['unsquashfs', 'tar', 'fakeroot'] as const) {
      if (typeof tools[name] !== 'string' || tools[name] === '') {
        throw new GantryError(
          ErrorCodes.InvalidConfiguration,
          `transportOptions.sif.tools.${name} must be the name or path of a program`,
        );
      }
    }
  }
  return { ...defaults, ...(given as SifTransportOptions) };
}

export async function openSifImageSource(
  reference: SifImageReference,
  context: TransportContext,
  defaults: SifTransportOptions,
): Promise<ImageSource> {
  const { signal } = context;
  throwIfAborted(signal);
  const options = optionsFrom(context, defaults);
  const sifPath = reference.path;
  let file: Awaited<ReturnType<typeof open>>;
  try {
    file = await open(sifPath, 'r');
  } catch (error) {
    const code = errorCode(error);
    throw new GantryError(
      code === 'ENOENT' || code === 'ENOTDIR' ? ErrorCodes.ImageNotFound : ErrorCodes.InvalidLayout,
      `loading SIF file: ${describeFileSystemError(error)}`,
      { cause: error },
    );
  }
  let definition: DefinitionFileSections | undefined;
  let image: Awaited<ReturnType<typeof readSifImage>>;
  try {
    const status = await file.stat();
    if (!status.isFile()) {
      throw new GantryError(ErrorCodes.InvalidLayout, `loading SIF file: ${sifPath} is not a regular file`);
    }
    image = await readSifImage(file, status.size, sifPath);
    // skopeo ignores a missing definition file, and so also two of them (its lookup then fails).
    const definitionFile = selectSifDescriptor(image, (d) => d.dataType === SifDataType.definitionFile);
    if (typeof definitionFile === 'object') {
      if (definitionFile.size > maximumDefinitionFileSize) {
        throw new GantryError(
          ErrorCodes.InvalidLayout,
          `loading SIF file ${sifPath}: the definition file object is ${definitionFile.size} bytes, more than ${maximumDefinitionFileSize}`,
        );
      }
      const bytes = Buffer.alloc(definitionFile.size);
      await file.read(bytes, 0, bytes.length, definitionFile.offset);
      definition = parseDefinitionFile(bytes.toString('utf8'));
    }
  } finally {
    await file.close();
  }
  const rootFileSystem = selectSifDescriptor(
    image,
    (d) =>
      d.dataType === SifDataType.partition && d.partition?.partitionType === SifPartitionType.primarySystem,
  );
  if (typeof rootFileSystem !== 'object') {
    throw new GantryError(
      ErrorCodes.InvalidLayout,
      `looking up rootfs from SIF file ${sifPath}: ${rootFileSystem === 'none' ? 'object not found' : 'multiple objects found'}`,
    );
  }
  if (rootFileSystem.partition?.fileSystemType !== SifFileSystemType.squashfs) {
    throw new GantryError(
      ErrorCodes.NotSupported,
      `SIF file ${sifPath}: the primary partition's file system type is ${rootFileSystem.partition?.fileSystemType}, not squashfs (1); only squashfs root file systems can be read`,
    );
  }
  const { command, injectedScript } = imageCommandOf(definition);

  const workDirectory = await makeOwnedTemporaryDirectory(
    temporaryDirectoryLabel,
    context.temporaryDirectory ?? tmpdir(),
  );
  try {
    const layerPath = path.join(workDirectory, 'rootfs.tar');
    const layer = await convertSquashfsToTar({
      sifPath,
      partitionOffset: rootFileSystem.offset,
      workDirectory,
      layerPath,
      ...(injectedScript === undefined ? {} : { injectedScript }),
      injectedScriptTime: image.header.modifiedAt,
      ...(options.tools ? { tools: options.tools } : {}),
      ...(signal ? { signal } : {}),
    });
    let config: Buffer;
    try {
      config = buildConfig({
        modifiedAt: image.header.modifiedAt,
        architecture: image.header.architecture,
        id: image.header.id,
        command,
        layerDigest: layer.digest,
      });
    } catch (error) {
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `generating configuration blob for ${reference.resolvedPath}: ${(error as Error).message}`,
      );
    }
    const configDigest = digestOf(config);
    const manifest = buildManifest({ digest: configDigest, size: config.length }, layer);
    return new SifImageSource(reference, workDirectory, layerPath, layer, config, configDigest, manifest);
  } catch (error) {
    await removeTree(workDirectory);
    throw error;
  }
}

class SifImageSource implements ImageSource {
  readonly properties: ImageSourceProperties = { hasThreadSafeGetBlob: true };
  #closed = false;

  constructor(
    readonly reference: SifImageReference,
    private readonly workDirectory: string,
    private readonly layerPath: string,
    private readonly layer: { digest: Digest; size: number },
    private readonly config: Buffer,
    private readonly configDigest: Digest,
    private readonly manifest: Buffer,
  ) {}

  async getManifest(instanceDigest?: Digest, options: OperationOptions = {}): Promise<ManifestBlob> {
    throwIfAborted(options.signal);
    if (instanceDigest !== undefined) {
      throw new GantryError(
        ErrorCodes.ImageNotFound,
        `manifest lists are not supported by the sif transport (instance ${instanceDigest} requested)`,
      );
    }
    return { bytes: new Uint8Array(this.manifest), mediaType: ociManifestMediaType };
  }

  async getBlob(info: BlobInfo, options: OperationOptions = {}): Promise<BlobStream> {
    throwIfAborted(options.signal);
    if (info.digest === this.configDigest) {
      return { stream: Readable.from([this.config]), size: this.config.length };
    }
    if (info.digest === this.layer.digest) {
      // Opened before resolving, so a layer file that disappeared is an error here, not in the stream.
      const handle = await open(this.layerPath, 'r');
      return { stream: handle.createReadStream(), size: this.layer.size };
    }
    throw new GantryError(
      ErrorCodes.BlobNotFound,
      `no blob with digest ${JSON.stringify(info.digest)} found`,
    );
  }

  async getSignatures(_instanceDigest?: Digest, options: OperationOptions = {}): Promise<Uint8Array[]> {
    throwIfAborted(options.signal);
    return [];
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await removeTree(this.workDirectory);
  }
}
