/**
 * Small hand-built images for this package's tests: real tar layers (gzip or not), OCI configs and
 * manifests, OCI indexes, written either through a destination or by hand into a layout.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { type Digest, digestHex, digestOf, type ImageDestination, MediaTypes } from '@gantry/core/transport';

/** A POSIX ustar archive of regular files (enough for layers). */
export function tarArchive(files: Record<string, string>): Uint8Array {
  const blocks: Buffer[] = [];
  for (const [name, content] of Object.entries(files)) {
    const data = Buffer.from(content, 'utf8');
    const header = Buffer.alloc(512);
    header.write(name, 0, 100, 'utf8');
    header.write('0000644\0', 100, 8, 'ascii');
    header.write('0000000\0', 108, 8, 'ascii');
    header.write('0000000\0', 116, 8, 'ascii');
    header.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124, 12, 'ascii');
    header.write('00000000000\0', 136, 12, 'ascii');
    header.write('        ', 148, 8, 'ascii');
    header.write('0', 156, 1, 'ascii');
    header.write('ustar\0', 257, 6, 'ascii');
    header.write('00', 263, 2, 'ascii');
    let checksum = 0;
    for (const byte of header) checksum += byte;
    header.write(`${checksum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
    blocks.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return new Uint8Array(Buffer.concat(blocks));
}

export interface TestBlob {
  digest: Digest;
  bytes: Uint8Array;
  mediaType: string;
}

export interface TestImage {
  manifest: TestBlob;
  config: TestBlob;
  layers: TestBlob[];
  architecture: string;
}

export interface TestIndex {
  index: TestBlob;
  images: TestImage[];
}

function blob(bytes: Uint8Array | string, mediaType: string): TestBlob {
  const data = typeof bytes === 'string' ? new Uint8Array(Buffer.from(bytes, 'utf8')) : bytes;
  return { digest: digestOf(data), bytes: data, mediaType };
}

/** An OCI image with one layer per entry of `layers` (file name -> content). */
export function buildTestImage(
  options: {
    layers?: Array<Record<string, string>>;
    architecture?: string;
    compress?: boolean;
    label?: string;
  } = {},
): TestImage {
  const architecture = options.architecture ?? 'amd64';
  const compress = options.compress ?? true;
  const layers = (options.layers ?? [{ 'hello.txt': 'hello\n' }]).map((files) => {
    const tar = tarArchive(files);
    return compress
      ? blob(new Uint8Array(gzipSync(tar)), MediaTypes.OciLayerGzip)
      : blob(tar, MediaTypes.OciLayer);
  });
  const diffIds = (options.layers ?? [{ 'hello.txt': 'hello\n' }]).map((files) =>
    digestOf(tarArchive(files)),
  );
  const config = blob(
    JSON.stringify({
      created: '2024-01-01T00:00:00Z',
      architecture,
      os: 'linux',
      config: { Env: ['PATH=/usr/bin'], Labels: { 'test.label': options.label ?? 'gantry' } },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: diffIds.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'gantry test' })),
    }),
    MediaTypes.OciConfig,
  );
  const manifest = blob(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.OciManifest,
      config: { mediaType: config.mediaType, digest: config.digest, size: config.bytes.byteLength },
      layers: layers.map((layer) => ({
        mediaType: layer.mediaType,
        digest: layer.digest,
        size: layer.bytes.byteLength,
      })),
    }),
    MediaTypes.OciManifest,
  );
  return { manifest, config, layers, architecture };
}

/** An OCI index of `images`, each with its platform. */
export function buildTestIndex(images: TestImage[]): TestIndex {
  const index = blob(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.OciIndex,
      manifests: images.map((image) => ({
        mediaType: image.manifest.mediaType,
        digest: image.manifest.digest,
        size: image.manifest.bytes.byteLength,
        platform: { architecture: image.architecture, os: 'linux' },
      })),
    }),
    MediaTypes.OciIndex,
  );
  return { index, images };
}

/** Every blob of an image (config and layers; not the manifest). */
export function imageBlobs(image: TestImage): TestBlob[] {
  return [...image.layers, image.config];
}

/** Writes an image or index through a destination (blobs, manifests, commit) and closes it. */
export async function writeThroughDestination(
  destination: ImageDestination,
  content: TestImage | TestIndex,
  options: { commit?: boolean } = {},
): Promise<void> {
  try {
    const images = 'index' in content ? content.images : [content];
    for (const image of images) {
      for (const item of imageBlobs(image)) {
        await destination.putBlob(
          Readable.from([Buffer.from(item.bytes)]),
          { digest: item.digest, size: item.bytes.byteLength, mediaType: item.mediaType },
          { isConfig: item === image.config },
        );
      }
    }
    if ('index' in content) {
      for (const image of content.images) {
        await destination.putManifest(image.manifest.bytes, image.manifest.mediaType, image.manifest.digest);
      }
      await destination.putManifest(content.index.bytes, content.index.mediaType);
    } else {
      await destination.putManifest(content.manifest.bytes, content.manifest.mediaType);
    }
    if (options.commit ?? true) await destination.commit();
  } finally {
    await destination.close();
  }
}

/** Writes blobs straight into `<blobDirectory>/sha256/<hex>`. */
export async function writeBlobFiles(blobDirectory: string, blobs: TestBlob[]): Promise<void> {
  await mkdir(path.join(blobDirectory, 'sha256'), { recursive: true });
  for (const item of blobs) {
    await writeFile(path.join(blobDirectory, 'sha256', digestHex(item.digest)), item.bytes);
  }
}

/** Writes a layout by hand (no transport): the blobs, and an index.json with the given entries. */
export async function writeLayoutByHand(
  layoutDirectory: string,
  entries: Array<{ content: TestImage | TestIndex; name?: string }>,
): Promise<void> {
  const blobs: TestBlob[] = [];
  const descriptors: unknown[] = [];
  for (const { content, name } of entries) {
    const images = 'index' in content ? content.images : [content];
    for (const image of images) blobs.push(image.manifest, ...imageBlobs(image));
    const top = 'index' in content ? content.index : content.manifest;
    blobs.push(top);
    descriptors.push({
      mediaType: top.mediaType,
      digest: top.digest,
      size: top.bytes.byteLength,
      ...(name === undefined ? {} : { annotations: { 'org.opencontainers.image.ref.name': name } }),
    });
  }
  await writeBlobFiles(path.join(layoutDirectory, 'blobs'), blobs);
  await writeFile(path.join(layoutDirectory, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    path.join(layoutDirectory, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: descriptors }),
  );
}

/** A temporary directory, and a function removing it. */
export async function temporaryDirectory(): Promise<{ directory: string; remove: () => Promise<void> }> {
  const directory = await mkdtemp(path.join(tmpdir(), 'gantry-'));
  return { directory, remove: () => rm(directory, { recursive: true, force: true }) };
}

/** Reads a stream fully (small test blobs only). */
export async function readAll(stream: NodeJS.ReadableStream): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return new Uint8Array(Buffer.concat(chunks));
}

/** Every file under a blob directory: `sha256/<hex>` names, and stray top-level files by their name. */
export async function listBlobFiles(blobDirectory: string): Promise<string[]> {
  const result: string[] = [];
  for (const entry of await readdir(blobDirectory, { withFileTypes: true }).catch(() => [])) {
    if (!entry.isDirectory()) {
      result.push(entry.name);
      continue;
    }
    for (const name of await readdir(path.join(blobDirectory, entry.name)))
      result.push(`${entry.name}/${name}`);
  }
  return result.sort();
}
