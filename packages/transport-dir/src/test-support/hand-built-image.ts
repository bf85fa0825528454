/**
 * Small images built by hand for this package's tests (independent of the core fixture builder): a
 * real OCI image (gzip tar layers, a config with matching diff IDs) small enough to hold in memory.
 */
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { type Digest, digestOf, type ImageDestination, MediaTypes } from '@gantry/core/transport';

export interface HandBuiltBlob {
  digest: Digest;
  bytes: Uint8Array;
  mediaType: string;
}

export interface HandBuiltImage {
  manifest: Uint8Array;
  manifestDigest: Digest;
  mediaType: string;
  config: HandBuiltBlob;
  layers: HandBuiltBlob[];
}

function tarHeaderField(header: Uint8Array, offset: number, length: number, value: string): void {
  header.set(new TextEncoder().encode(value).subarray(0, length), offset);
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/** A tar archive holding regular files (ustar, no directories). */
export function tarOf(files: Array<{ name: string; content: string }>): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const file of files) {
    const content = new TextEncoder().encode(file.content);
    const header = new Uint8Array(512);
    tarHeaderField(header, 0, 100, file.name);
    tarHeaderField(header, 100, 8, octal(0o644, 8));
    tarHeaderField(header, 108, 8, octal(0, 8));
    tarHeaderField(header, 116, 8, octal(0, 8));
    tarHeaderField(header, 124, 12, octal(content.length, 12));
    tarHeaderField(header, 136, 12, octal(1_700_000_000, 12));
    tarHeaderField(header, 148, 8, '        ');
    tarHeaderField(header, 156, 1, '0');
    tarHeaderField(header, 257, 6, 'ustar\0');
    tarHeaderField(header, 263, 2, '00');
    let checksum = 0;
    for (const byte of header) checksum += byte;
    tarHeaderField(header, 148, 8, `${checksum.toString(8).padStart(6, '0')}\0 `);
    parts.push(header, content, new Uint8Array((512 - (content.length % 512)) % 512));
  }
  parts.push(new Uint8Array(1024));
  return Buffer.concat(parts);
}

/** An OCI image whose layers each hold one file; `seed` makes distinct images. */
export function handBuiltImage(seed: string, layerCount = 2): HandBuiltImage {
  const layers: HandBuiltBlob[] = [];
  const diffIds: Digest[] = [];
  for (let index = 0; index < layerCount; index++) {
    const tar = tarOf([{ name: `file-${index}.txt`, content: `${seed} layer ${index}\n` }]);
    diffIds.push(digestOf(tar));
    const bytes = new Uint8Array(gzipSync(tar));
    layers.push({ digest: digestOf(bytes), bytes, mediaType: MediaTypes.OciLayerGzip });
  }
  const configBytes = new TextEncoder().encode(
    JSON.stringify({
      created: '2024-01-01T00:00:00Z',
      architecture: 'amd64',
      os: 'linux',
      config: { Labels: { seed } },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: diffIds.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'hand' })),
    }),
  );
  const config = { digest: digestOf(configBytes), bytes: configBytes, mediaType: MediaTypes.OciConfig };
  const manifest = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.OciManifest,
      config: { mediaType: config.mediaType, digest: config.digest, size: config.bytes.length },
      layers: layers.map((layer) => ({
        mediaType: layer.mediaType,
        digest: layer.digest,
        size: layer.bytes.length,
      })),
    }),
  );
  return { manifest, manifestDigest: digestOf(manifest), mediaType: MediaTypes.OciManifest, config, layers };
}

/** An OCI index over `images` (linux/amd64, linux/arm64, … in order). */
export function handBuiltIndex(images: HandBuiltImage[]): { bytes: Uint8Array; digest: Digest } {
  const architectures = ['amd64', 'arm64', 'ppc64le', 's390x'];
  const bytes = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.OciIndex,
      manifests: images.map((image, index) => ({
        mediaType: image.mediaType,
        digest: image.manifestDigest,
        size: image.manifest.length,
        platform: { architecture: architectures[index % architectures.length], os: 'linux' },
      })),
    }),
  );
  return { bytes, digest: digestOf(bytes) };
}

/** A stream of `bytes`, in chunks of `chunkSize`. */
export function streamOf(bytes: Uint8Array, chunkSize = 7): Readable {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length; offset += chunkSize)
    chunks.push(bytes.subarray(offset, offset + chunkSize));
  return Readable.from(chunks);
}

/** Puts the blobs of `image` (layers then config) through `destination`. */
export async function putImageBlobs(destination: ImageDestination, image: HandBuiltImage): Promise<void> {
  for (const blob of [...image.layers, image.config]) {
    await destination.putBlob(
      streamOf(blob.bytes),
      { digest: blob.digest, size: blob.bytes.length, mediaType: blob.mediaType },
      { isConfig: blob === image.config },
    );
  }
}

/** Writes a single image with optional signatures, commits unless told not to, and closes. */
export async function writeHandBuiltImage(
  destination: ImageDestination,
  image: HandBuiltImage,
  options: { signatures?: Uint8Array[]; commit?: boolean } = {},
): Promise<void> {
  try {
    await putImageBlobs(destination, image);
    await destination.putManifest(image.manifest, image.mediaType);
    if (options.signatures) await destination.putSignatures(options.signatures);
    if (options.commit !== false) await destination.commit();
  } finally {
    await destination.close();
  }
}
