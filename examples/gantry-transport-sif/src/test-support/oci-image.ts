/**
 * Reading back what `gantry copy … oci:dir:tag` and `skopeo copy … oci:dir:tag` wrote, to compare them:
 * the config, and the layer's entries as a map from path to what an extractor would create there.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';

export interface LayerEntry {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  /** Modification time, Unix seconds. */
  mtime: number;
  size: number;
  /** sha256 of the content (regular files and hard links: the linked file's content). */
  content?: string;
  /** Symbolic link target. */
  target?: string;
  /** Character and block devices: `major,minor`. */
  device?: string;
  /** Extended attributes (PAX SCHILY.xattr.*), sorted. */
  xattrs?: Record<string, string>;
  /** For regular files and hard links: every path of the group of hard links this path belongs to, sorted. */
  linkGroup?: string[];
}

export interface CopiedImage {
  manifest: Record<string, unknown>;
  config: Record<string, unknown>;
  /** The config blob as stored. */
  configBytes: Buffer;
  layerDigests: string[];
  /** The first layer's entries by path (without the leading `./`; the root directory is `.`). */
  entries: Map<string, LayerEntry>;
}

function blobPath(layout: string, digest: string): string {
  const [algorithm, hex] = digest.split(':');
  return path.join(layout, 'blobs', algorithm!, hex!);
}

function normalizeName(name: string): string {
  const trimmed = name.replace(/^\.\//, '').replace(/\/$/, '');
  return trimmed === '' || trimmed === '.' ? '.' : trimmed;
}

/** The entries of a (possibly gzipped) layer tar. */
export async function readLayerEntries(bytes: Buffer): Promise<Map<string, LayerEntry>> {
  const plain =
    bytes[0] === 0x1f && bytes[1] === 0x8b
      ? Readable.from([bytes]).pipe(createGunzip())
      : Readable.from([bytes]);
  const entries = new Map<string, LayerEntry>();
  const hardLinks: Array<[string, string]> = [];
  const tar = extract();
  const done = new Promise<void>((resolve, reject) => {
    tar.on('entry', (header, stream, next) => {
      const hash = createHash('sha256');
      stream.on('data', (chunk: unknown) => hash.update(chunk as Buffer));
      stream.on('end', () => {
        const name = normalizeName(header.name);
        const entry: LayerEntry = {
          type: header.type ?? 'file',
          mode: (header.mode ?? 0).toString(8),
          uid: header.uid ?? 0,
          gid: header.gid ?? 0,
          mtime: Math.floor((header.mtime?.getTime() ?? 0) / 1000),
          size: header.size ?? 0,
        };
        if (header.type === 'file') entry.content = hash.digest('hex');
        if (header.type === 'symlink') entry.target = header.linkname ?? '';
        if (header.type === 'character-device' || header.type === 'block-device') {
          entry.device = `${header.devmajor},${header.devminor}`;
        }
        const xattrs = Object.entries(header.pax ?? {})
          .filter(([key]) => key.startsWith('SCHILY.xattr.'))
          .sort(([a], [b]) => a.localeCompare(b));
        if (xattrs.length > 0) entry.xattrs = Object.fromEntries(xattrs);
        if (header.type === 'link') hardLinks.push([name, normalizeName(header.linkname ?? '')]);
        entries.set(name, entry);
        next();
      });
      stream.on('error', reject);
    });
    tar.on('finish', resolve);
    tar.on('error', reject);
  });
  plain.pipe(tar);
  await done;
  // A hard link is the file it links to under another name: which name tar stored first depends on the
  // order it met them, so both become regular files with the group of names they share.
  const groups = new Map<string, string[]>();
  for (const [name, target] of hardLinks) {
    const group = groups.get(target) ?? [target];
    group.push(name);
    groups.set(target, group);
  }
  for (const [target, names] of groups) {
    const file = entries.get(target);
    if (!file) throw new Error(`hard link to ${target}, which the layer does not hold before it`);
    const sorted = [...names].sort();
    for (const name of names) {
      entries.set(name, { ...file, linkGroup: sorted });
    }
  }
  return entries;
}

/** The image tagged `tag` in the OCI layout at `layout`. */
export async function readCopiedImage(layout: string, tag: string): Promise<CopiedImage> {
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as {
    manifests: Array<{ digest: string; annotations?: Record<string, string> }>;
  };
  const descriptor = index.manifests.find(
    (manifest) => manifest.annotations?.['org.opencontainers.image.ref.name'] === tag,
  );
  if (!descriptor) throw new Error(`${layout} has no image tagged ${tag}`);
  const manifest = JSON.parse(await readFile(blobPath(layout, descriptor.digest), 'utf8')) as {
    config: { digest: string };
    layers: Array<{ digest: string }>;
  };
  const configBytes = await readFile(blobPath(layout, manifest.config.digest));
  const config = JSON.parse(configBytes.toString('utf8')) as Record<string, unknown>;
  const layerDigests = manifest.layers.map((layer) => layer.digest);
  const entries = await readLayerEntries(await readFile(blobPath(layout, layerDigests[0]!)));
  return {
    manifest: manifest as unknown as Record<string, unknown>,
    config,
    configBytes,
    layerDigests,
    entries,
  };
}

/** The config's bytes with its DiffID (and the history line's hex of it) replaced by a placeholder. */
export function configBytesWithoutLayerDigest(image: CopiedImage): string {
  const [diffId] = (image.config.rootfs as { diff_ids: string[] }).diff_ids;
  return image.configBytes
    .toString('utf8')
    .replaceAll(diffId!, '<diff-id>')
    .replaceAll(diffId!.split(':')[1]!, '<diff-id-hex>');
}

/**
 * The config with what differs between two conversions of the same SIF file replaced by placeholders:
 * the layer's digest (its DiffID, and the history line naming it), since the tar bytes differ in entry
 * order and PAX records even when the files are the same.
 */
export function configWithoutLayerDigest(config: Record<string, unknown>): Record<string, unknown> {
  const rootfs = config.rootfs as { diff_ids: string[] };
  const diffIds = rootfs.diff_ids;
  let text = JSON.stringify(config);
  for (const diffId of diffIds)
    text = text.replaceAll(diffId, '<diff-id>').replaceAll(diffId.split(':')[1]!, '<diff-id-hex>');
  return JSON.parse(text) as Record<string, unknown>;
}
