import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import tar from 'tar-stream';
import { type Digest, Digester, digestHex, digestOf } from '../digest.js';
import { ErrorCodes, GantryError, throwIfAborted } from '../errors.js';
import { MediaTypes } from '../manifest/media-types.js';
import type {
  BuildFixtureOptions,
  FixtureBlob,
  FixtureEntry,
  FixtureImage,
  FixtureImageSpec,
  FixtureLayerCompression,
  FixtureLayerSpec,
  FixtureListSpec,
  FixturePlatform,
  FixtureRunConfig,
} from './fixture-types.js';
import { seededRandomBytes } from './random-data.js';

/** The `created` time of fixtures that do not name one; also every tar entry's mtime. */
export const defaultFixtureCreated = '2024-01-01T00:00:00Z';
/** The platform of fixture images that do not name one. */
export const defaultFixturePlatform: FixturePlatform = { os: 'linux', architecture: 'amd64' };
/** The gzip level of fixture layers (fixed so that output is deterministic). */
export const fixtureGzipLevel = 6;

const defaultRunConfig: FixtureRunConfig = {
  Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
  Cmd: ['/bin/sh'],
};

type Format = 'oci' | 'docker';

/**
 * How each layer compression is produced and which media type it gets. Adding an algorithm means adding
 * an entry here (and to `FixtureLayerCompression`).
 */
const layerCompressors: Record<
  FixtureLayerCompression,
  { mediaType(format: Format): string; createStream(): Transform | undefined }
> = {
  none: {
    mediaType: (format) => (format === 'oci' ? MediaTypes.OciLayer : MediaTypes.DockerLayer),
    createStream: () => undefined,
  },
  gzip: {
    mediaType: (format) => (format === 'oci' ? MediaTypes.OciLayerGzip : MediaTypes.DockerLayerGzip),
    createStream: () => zlib.createGzip({ level: fixtureGzipLevel }),
  },
  zstd: {
    mediaType: (format) => {
      if (format !== 'oci') {
        throw new GantryError(
          ErrorCodes.NotSupported,
          'fixture builder: zstd layers exist only in OCI images',
        );
      }
      return MediaTypes.OciLayerZstd;
    },
    createStream: () => {
      const create = (zlib as unknown as { createZstdCompress?: () => Transform }).createZstdCompress;
      if (typeof create !== 'function') {
        throw new GantryError(
          ErrorCodes.NotSupported,
          `fixture builder: zstd layers need node:zlib zstd support (Node >= 22.15), this is Node ${process.versions.node}`,
        );
      }
      return create();
    },
  },
};

/** True when `spec` describes a list (OCI index / Docker manifest list) rather than one image. */
export function isFixtureListSpec(spec: FixtureImageSpec | FixtureListSpec): spec is FixtureListSpec {
  return Array.isArray((spec as FixtureListSpec).images);
}

/**
 * Builds a deterministic image from a declarative spec: the same spec always gives the same bytes and
 * digests. Layer tars are streamed through the digesters and the compressor into files in
 * `options.directory` (named by digest hex), so layer size does not affect memory use. Manifests and
 * configs are serialised compactly with a fixed key order (labels sorted by key).
 *
 * Rules: entry paths must be relative and free of `..`; a list's instances take the list's format.
 */
export async function buildFixtureImage(
  spec: FixtureImageSpec | FixtureListSpec,
  options: BuildFixtureOptions,
): Promise<FixtureImage> {
  const directory = resolve(options.directory);
  await mkdir(directory, { recursive: true });
  const blobs = new Map<Digest, FixtureBlob>();
  const manifests = new Map<Digest, { bytes: Uint8Array; mediaType: string }>();
  const images: FixtureImage['images'] = [];

  if (!isFixtureListSpec(spec)) {
    const built = await buildSingleImage(spec, spec.format ?? 'oci', directory, blobs, options.signal);
    manifests.set(built.manifestDigest, { bytes: built.manifestBytes, mediaType: built.manifestMediaType });
    images.push(built.summary);
    return {
      topLevel: {
        digest: built.manifestDigest,
        bytes: built.manifestBytes,
        mediaType: built.manifestMediaType,
      },
      manifests,
      blobs,
      images,
    };
  }

  const format = spec.format ?? 'oci';
  if (spec.images.length === 0) throw fixtureError('a fixture list needs at least one image');
  const descriptors: Record<string, unknown>[] = [];
  for (const [index, imageSpec] of spec.images.entries()) {
    if (imageSpec.format !== undefined && imageSpec.format !== format) {
      throw fixtureError(`image ${index} of a ${format} list has format ${imageSpec.format}`);
    }
    const built = await buildSingleImage(imageSpec, format, directory, blobs, options.signal);
    manifests.set(built.manifestDigest, { bytes: built.manifestBytes, mediaType: built.manifestMediaType });
    images.push(built.summary);
    const platform = platformJson(built.summary.platform);
    descriptors.push(
      format === 'oci'
        ? {
            mediaType: built.manifestMediaType,
            digest: built.manifestDigest,
            size: built.manifestBytes.byteLength,
            platform,
          }
        : {
            mediaType: built.manifestMediaType,
            size: built.manifestBytes.byteLength,
            digest: built.manifestDigest,
            platform,
          },
    );
  }
  const listMediaType = format === 'oci' ? MediaTypes.OciIndex : MediaTypes.DockerManifestList;
  const list: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: listMediaType,
    manifests: descriptors,
  };
  if (format === 'oci' && spec.annotations) list.annotations = sortedRecord(spec.annotations);
  const bytes = encodeJson(list);
  const digest = digestOf(bytes);
  manifests.set(digest, { bytes, mediaType: listMediaType });
  return { topLevel: { digest, bytes, mediaType: listMediaType }, manifests, blobs, images };
}

interface BuiltImage {
  manifestDigest: Digest;
  manifestBytes: Uint8Array;
  manifestMediaType: string;
  summary: FixtureImage['images'][number];
}

async function buildSingleImage(
  spec: FixtureImageSpec,
  format: Format,
  directory: string,
  blobs: Map<Digest, FixtureBlob>,
  signal: AbortSignal | undefined,
): Promise<BuiltImage> {
  const created = spec.created ?? defaultFixtureCreated;
  const mtime = new Date(created);
  if (Number.isNaN(mtime.getTime())) throw fixtureError(`created time "${created}" is not a valid date`);
  const platform = spec.platform ?? defaultFixturePlatform;

  const layers: Array<{ digest: Digest; size: number; mediaType: string; diffId: Digest }> = [];
  for (const layer of spec.layers) {
    throwIfAborted(signal);
    const written = await writeLayer(layer, format, mtime, directory, signal);
    layers.push(written);
    blobs.set(written.digest, blobFile(written.digest, written.size, written.mediaType, directory));
  }

  const config = imageConfigJson(spec, platform, created, layers);
  const configBytes = encodeJson(config);
  const configDigest = digestOf(configBytes);
  const configMediaType = format === 'oci' ? MediaTypes.OciConfig : MediaTypes.DockerConfig;
  await writeFile(join(directory, digestHex(configDigest)), configBytes);
  blobs.set(configDigest, blobFile(configDigest, configBytes.byteLength, configMediaType, directory));

  const descriptor = (mediaType: string, digest: Digest, size: number) =>
    format === 'oci' ? { mediaType, digest, size } : { mediaType, size, digest };
  const manifestMediaType = format === 'oci' ? MediaTypes.OciManifest : MediaTypes.DockerManifest;
  const manifest: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: manifestMediaType,
    config: descriptor(configMediaType, configDigest, configBytes.byteLength),
    layers: layers.map((layer) => descriptor(layer.mediaType, layer.digest, layer.size)),
  };
  if (format === 'oci' && spec.annotations) manifest.annotations = sortedRecord(spec.annotations);
  const manifestBytes = encodeJson(manifest);
  const manifestDigest = digestOf(manifestBytes);
  return {
    manifestDigest,
    manifestBytes,
    manifestMediaType,
    summary: {
      manifestDigest,
      configDigest,
      layerDigests: layers.map((layer) => layer.digest),
      diffIds: layers.map((layer) => layer.diffId),
      platform,
    },
  };
}

function imageConfigJson(
  spec: FixtureImageSpec,
  platform: FixturePlatform,
  created: string,
  layers: Array<{ diffId: Digest }>,
): Record<string, unknown> {
  const run = spec.config ?? defaultRunConfig;
  const runConfig: Record<string, unknown> = {};
  if (run.User !== undefined) runConfig.User = run.User;
  if (run.Env !== undefined) runConfig.Env = [...run.Env];
  if (run.Entrypoint !== undefined) runConfig.Entrypoint = [...run.Entrypoint];
  if (run.Cmd !== undefined) runConfig.Cmd = [...run.Cmd];
  if (run.WorkingDir !== undefined) runConfig.WorkingDir = run.WorkingDir;
  if (run.Labels !== undefined) runConfig.Labels = sortedRecord(run.Labels);

  const config: Record<string, unknown> = { created, architecture: platform.architecture };
  if (platform.variant !== undefined) config.variant = platform.variant;
  config.os = platform.os;
  if (platform.osVersion !== undefined) config['os.version'] = platform.osVersion;
  if (platform.osFeatures !== undefined) config['os.features'] = [...platform.osFeatures];
  config.config = runConfig;
  config.rootfs = { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) };
  config.history = spec.layers.flatMap((layer, index) => [
    { created, created_by: layer.createdBy ?? `gantry fixture layer ${index + 1}` },
    ...(spec.emptyLayerHistory ?? [])
      .filter((entry) => entry.afterLayer === index)
      .map((entry) => ({ created, created_by: entry.createdBy, empty_layer: true })),
  ]);
  return config;
}

function platformJson(platform: FixturePlatform): Record<string, unknown> {
  const json: Record<string, unknown> = { architecture: platform.architecture, os: platform.os };
  if (platform.osVersion !== undefined) json['os.version'] = platform.osVersion;
  if (platform.osFeatures !== undefined) json['os.features'] = [...platform.osFeatures];
  if (platform.variant !== undefined) json.variant = platform.variant;
  return json;
}

function sortedRecord(record: Record<string, string>): Record<string, string> {
  const sorted: Record<string, string> = {};
  for (const key of Object.keys(record).sort()) sorted[key] = record[key]!;
  return sorted;
}

/** Compact JSON bytes; key order is the insertion order, which the builders fix. */
function encodeJson(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

function blobFile(digest: Digest, size: number, mediaType: string, directory: string): FixtureBlob {
  const path = join(directory, digestHex(digest));
  return { digest, size, mediaType, path, open: () => createReadStream(path) };
}

function fixtureError(message: string): GantryError {
  return new GantryError(ErrorCodes.Internal, `fixture builder: ${message}`);
}

async function writeLayer(
  layer: FixtureLayerSpec,
  format: Format,
  mtime: Date,
  directory: string,
  signal: AbortSignal | undefined,
): Promise<{ digest: Digest; size: number; mediaType: string; diffId: Digest }> {
  const compressor = layerCompressors[layer.compression ?? 'gzip'];
  if (!compressor) throw fixtureError(`unknown layer compression ${String(layer.compression)}`);
  const mediaType = compressor.mediaType(format);
  const compressStream = compressor.createStream();

  const pack = tar.pack();
  const diffIdDigester = new Digester();
  const blobDigester = new Digester();
  const temporaryPath = join(directory, `.tmp-${randomUUID()}`);

  const feeding = feedEntries(pack, layer.entries, mtime).then(
    () => pack.finalize(),
    (error: unknown) => {
      pack.destroy(error as Error);
      throw error;
    },
  );
  async function* tarBytes() {
    for await (const chunk of pack) yield chunk as Uint8Array;
  }
  async function* hashUncompressed(source: AsyncIterable<Uint8Array>) {
    for await (const chunk of source) {
      diffIdDigester.update(chunk);
      yield chunk;
    }
  }
  async function* hashBlob(source: AsyncIterable<Uint8Array>) {
    for await (const chunk of source) {
      blobDigester.update(chunk);
      yield chunk;
    }
  }
  const output = createWriteStream(temporaryPath);
  const writing = compressStream
    ? pipeline(tarBytes, hashUncompressed, compressStream, hashBlob, output, { signal })
    : pipeline(tarBytes, hashUncompressed, hashBlob, output, { signal });
  try {
    await Promise.all([
      feeding,
      writing.catch((error: unknown) => {
        pack.destroy(error as Error);
        throw error;
      }),
    ]);
  } catch (error) {
    await rm(temporaryPath, { force: true });
    throw error;
  }
  const diffId = diffIdDigester.digest();
  const size = blobDigester.size;
  const digest = compressStream ? blobDigester.digest() : diffId;
  if (!compressStream) blobDigester.digest();
  await rename(temporaryPath, join(directory, digestHex(digest)));
  return { digest, size, mediaType, diffId };
}

/** Normalises an entry path: no leading '/' or './', no trailing '/', no empty or '..' components. */
function normalizeEntryPath(path: string): string {
  const components = path.split('/').filter((component) => component !== '' && component !== '.');
  if (components.length === 0 || components.includes('..')) {
    throw fixtureError(`entry path "${path}" must be a relative path without ".." components`);
  }
  return components.join('/');
}

function splitParent(path: string): { parent: string; name: string } {
  const slash = path.lastIndexOf('/');
  return slash < 0
    ? { parent: '', name: path }
    : { parent: path.slice(0, slash + 1), name: path.slice(slash + 1) };
}

type PackHeader = Parameters<tar.Pack['entry']>[0];

async function feedEntries(pack: tar.Pack, entries: readonly FixtureEntry[], mtime: Date): Promise<void> {
  const owner = (uid = 0, gid = 0) => ({
    uid,
    gid,
    uname: uid === 0 ? 'root' : '',
    gname: gid === 0 ? 'root' : '',
  });
  for (const entry of entries) {
    const path = normalizeEntryPath(entry.path);
    switch (entry.type) {
      case 'file': {
        const header: PackHeader = {
          name: path,
          type: 'file',
          mode: entry.mode ?? 0o644,
          mtime,
          ...owner(entry.uid, entry.gid),
        };
        if (entry.randomSize !== undefined) {
          if (entry.content !== undefined)
            throw fixtureError(`file "${path}" has both content and randomSize`);
          await streamEntry(
            pack,
            { ...header, size: entry.randomSize },
            seededRandomBytes(entry.seed ?? path, entry.randomSize),
          );
        } else {
          const content =
            typeof entry.content === 'string'
              ? Buffer.from(entry.content, 'utf8')
              : Buffer.from(entry.content ?? []);
          await bufferEntry(pack, { ...header, size: content.byteLength }, content);
        }
        break;
      }
      case 'directory':
        await bufferEntry(pack, {
          name: `${path}/`,
          type: 'directory',
          mode: entry.mode ?? 0o755,
          mtime,
          ...owner(),
        });
        break;
      case 'symlink':
        await bufferEntry(pack, {
          name: path,
          type: 'symlink',
          linkname: entry.target,
          mode: 0o777,
          mtime,
          ...owner(),
        });
        break;
      case 'hardlink':
        await bufferEntry(pack, {
          name: path,
          type: 'link',
          linkname: normalizeEntryPath(entry.target),
          mode: 0o644,
          mtime,
          ...owner(),
        });
        break;
      case 'whiteout': {
        const { parent, name } = splitParent(path);
        await bufferEntry(
          pack,
          { name: `${parent}.wh.${name}`, type: 'file', mode: 0o644, mtime, ...owner() },
          Buffer.alloc(0),
        );
        break;
      }
      case 'opaque':
        await bufferEntry(
          pack,
          { name: `${path}/.wh..wh..opq`, type: 'file', mode: 0o644, mtime, ...owner() },
          Buffer.alloc(0),
        );
        break;
      default:
        throw fixtureError(`unknown entry type ${JSON.stringify((entry as { type?: unknown }).type)}`);
    }
  }
}

function bufferEntry(pack: tar.Pack, header: PackHeader, content?: Buffer): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const done = (error?: Error | null) => (error ? reject(error) : resolvePromise());
    if (content) pack.entry(header, content, done);
    else pack.entry(header, done);
  });
}

async function streamEntry(
  pack: tar.Pack,
  header: PackHeader,
  chunks: AsyncIterable<Uint8Array>,
): Promise<void> {
  let settle!: { resolve: () => void; reject: (error: Error) => void };
  const finished = new Promise<void>((resolvePromise, reject) => {
    settle = { resolve: resolvePromise, reject };
  });
  const sink = pack.entry(header, (error) => (error ? settle.reject(error) : settle.resolve()));
  // Avoid an unhandled rejection when a write fails first; the error is rethrown below.
  finished.catch(() => {});
  for await (const chunk of chunks) {
    if (!sink.write(chunk)) {
      await new Promise<void>((resolvePromise, reject) => {
        const cleanup = () => {
          sink.off('drain', onDrain);
          sink.off('error', onError);
          sink.off('close', onClose);
        };
        const onDrain = () => {
          cleanup();
          resolvePromise();
        };
        const onError = (error: Error) => {
          cleanup();
          reject(error);
        };
        const onClose = () => {
          cleanup();
          reject(new Error('tar entry closed while writing'));
        };
        sink.on('drain', onDrain);
        sink.on('error', onError);
        sink.on('close', onClose);
      });
    }
  }
  (sink as unknown as { end(): void }).end();
  await finished;
}
