/**
 * Writes images with hand-made (hostile) manifests, indexes and configs into the on-disk formats of the
 * transports that read local files (oci, oci-archive, dir), with plain file operations, so every byte
 * is what the test chose: nothing is checked or repaired on the way.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The sha256 digest of `bytes`. */
export function sha256(bytes: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** A hostile image: its top-level manifest (or index) and the blobs and child manifests it may name. */
export interface HandMadeImage {
  /** The top-level manifest's bytes, as stored. */
  manifest: Uint8Array;
  /** Its media type (the OCI index entry's `mediaType`; dir: stores none). */
  mediaType: string;
  /** The digest it is stored and listed under; default: the digest of its bytes. */
  storedDigest?: string;
  /** The size its index entry declares; default: its length. */
  declaredSize?: number;
  /** Blobs, stored under the given digest whatever their bytes. */
  blobs: ReadonlyArray<{ digest: string; bytes: Uint8Array }>;
  /** Instance manifests of an index (oci: blobs; dir: `<hex>.manifest.json`), stored the same way. */
  instanceManifests?: ReadonlyArray<{ digest: string; bytes: Uint8Array }>;
}

const hexOf = (digest: string) => digest.slice(digest.indexOf(':') + 1);
const algorithmOf = (digest: string) => digest.slice(0, digest.indexOf(':'));

/** An OCI image layout holding the image, listed in index.json (named `name` when given). */
export function writeOciLayout(directory: string, image: HandMadeImage, name?: string): void {
  mkdirSync(directory, { recursive: true });
  writeFileSync(join(directory, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const topDigest = image.storedDigest ?? sha256(image.manifest);
  const stored = [
    ...image.blobs,
    ...(image.instanceManifests ?? []),
    { digest: topDigest, bytes: image.manifest },
  ];
  for (const { digest, bytes } of stored) {
    // A digest that is not "algorithm:hex" is stored under a name made of it anyway: the reader must
    // refuse the descriptor before it looks for a file.
    const blobDirectory = join(directory, 'blobs', algorithmOf(digest) || 'unknown');
    mkdirSync(blobDirectory, { recursive: true });
    const fileName = hexOf(digest).replace(/[/\0]/g, '_') || 'empty';
    writeFileSync(join(blobDirectory, fileName), bytes);
  }
  const entry: Record<string, unknown> = {
    mediaType: image.mediaType,
    digest: topDigest,
    size: image.declaredSize ?? image.manifest.byteLength,
  };
  if (name !== undefined) entry.annotations = { 'org.opencontainers.image.ref.name': name };
  writeFileSync(
    join(directory, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [entry],
    }),
  );
}

/** An `oci-archive:` tar of the same layout. */
export function writeOciArchive(file: string, image: HandMadeImage, scratch: string): void {
  const layout = join(scratch, `layout-for-${file.split('/').pop()}`);
  rmSync(layout, { recursive: true, force: true });
  writeOciLayout(layout, image);
  execFileSync('tar', ['-C', layout, '-cf', file, ...readdirSync(layout)]);
  rmSync(layout, { recursive: true, force: true });
}

/** A `dir:` image: `manifest.json`, `version` and one file per blob named by its hex digest. */
export function writeDirImage(directory: string, image: HandMadeImage): void {
  mkdirSync(directory, { recursive: true });
  writeFileSync(join(directory, 'version'), 'Directory Transport Version: 1.1\n');
  writeFileSync(join(directory, 'manifest.json'), image.manifest);
  for (const { digest, bytes } of image.blobs) {
    const name = hexOf(digest).replace(/[/\0]/g, '_') || 'empty';
    writeFileSync(join(directory, name), bytes);
  }
  for (const { digest, bytes } of image.instanceManifests ?? []) {
    writeFileSync(join(directory, `${hexOf(digest)}.manifest.json`), bytes);
  }
}

/** Every path under `directory` (files and directories), relative to it; [] when it does not exist. */
export function listTree(directory: string): string[] {
  const found: string[] = [];
  const walk = (relative: string) => {
    const full = join(directory, relative);
    let entries: string[];
    try {
      entries = readdirSync(full);
    } catch {
      return;
    }
    for (const entry of entries) {
      const child = relative === '' ? entry : `${relative}/${entry}`;
      found.push(child);
      if (statSync(join(directory, child), { throwIfNoEntry: false })?.isDirectory()) walk(child);
    }
  };
  try {
    statSync(directory);
  } catch {
    return [];
  }
  walk('');
  return found.sort();
}

/** One entry of a hand-made tar: every field is written as given, `..` and absolute names included. */
export interface RawTarEntry {
  name: string;
  /** '0' file (default), '1' hard link, '2' symlink, '3' character device, '4' block device, '5' directory, '6' FIFO. */
  type?: '0' | '1' | '2' | '3' | '4' | '5' | '6';
  content?: Uint8Array | string;
  linkName?: string;
  mode?: number;
  /** The size written in the header; default the content's length (a different value makes a lying header). */
  declaredSize?: number;
  deviceMajor?: number;
  deviceMinor?: number;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/**
 * A ustar archive of `entries`, written byte by byte (no library that would refuse or clean hostile
 * names), ending with the two zero blocks unless `truncateAt` cuts it at that byte.
 */
export function rawTar(entries: readonly RawTarEntry[], options: { truncateAt?: number } = {}): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const content = Buffer.from(entry.content ?? '');
    const header = Buffer.alloc(512);
    const type = entry.type ?? '0';
    let name = entry.name;
    let prefix = '';
    if (Buffer.byteLength(name) > 100) {
      const cut = name.lastIndexOf('/', 154);
      prefix = name.slice(0, cut);
      name = name.slice(cut + 1);
    }
    header.write(name, 0, 100);
    header.write(octal(entry.mode ?? (type === '5' ? 0o755 : 0o644), 8), 100);
    header.write(octal(0, 8), 108);
    header.write(octal(0, 8), 116);
    header.write(octal(entry.declaredSize ?? (type === '0' ? content.length : 0), 12), 124);
    header.write(octal(1_700_000_000, 12), 136);
    header.write('        ', 148);
    header.write(type, 156);
    header.write(entry.linkName ?? '', 157, 100);
    header.write('ustar\u000000', 257);
    header.write(octal(entry.deviceMajor ?? 0, 8), 329);
    header.write(octal(entry.deviceMinor ?? 0, 8), 337);
    header.write(prefix, 345, 155);
    let checksum = 0;
    for (const byte of header) checksum += byte;
    header.write(`${checksum.toString(8).padStart(6, '0')}\0 `, 148);
    blocks.push(header);
    if (type === '0' && content.length > 0) {
      blocks.push(content, Buffer.alloc((512 - (content.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  const archive = Buffer.concat(blocks);
  return options.truncateAt === undefined ? archive : archive.subarray(0, options.truncateAt);
}
