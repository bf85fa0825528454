/**
 * A small SIF writer for tests, built from the published format (see `../sif-format.ts`): it lays files
 * out as sylabs/sif does (descriptor table at 4096 with room for 48 descriptors, data right after it,
 * partitions aligned to 4096 bytes, `sizeWithPadding` counting the alignment before each object), and
 * makes the root file system with the real `mksquashfs` from a file tree described in the test. Debian's
 * `siftool` (sylabs/sif) reads what it writes (sif-format.test.ts checks that).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { link, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  SifDataType,
  SifFileSystemType,
  SifPartitionType,
  sifArchitectureCode,
  sifDescriptorSize,
  sifDescriptorsOffset,
  sifHeaderSize,
  sifLaunchScript,
  sifMagic,
  sifVersion,
} from '../sif-format.js';

const run = promisify(execFile);

/** One data object to store. */
export interface SifObjectSpec {
  dataType: number;
  data: Uint8Array;
  name?: string;
  /** Object group (1 = the image's group); 0 for none. Default 1. */
  group?: number;
  linkedId?: number;
  /** Alignment of the object's offset; default 4096 for partitions, none for other objects. */
  alignment?: number;
  /** For a partition: file system type, partition type, architecture (Go name). */
  partition?: { fileSystemType: number; partitionType: number; architecture: string };
}

export interface SifFileSpec {
  /** Go architecture name of the primary architecture. Default `amd64`. */
  architecture?: string;
  /** UUID text form; default a random one. */
  id?: string;
  /** Unix seconds. Default 1_700_000_000. */
  createdAt?: number;
  modifiedAt?: number;
  objects: SifObjectSpec[];
  /** Descriptor slots (used or free). Default 48, as sylabs/sif. */
  descriptorCapacity?: number;
}

/** sylabs/sif aligns partitions to 4096 bytes and other objects not at all (`siftool add --alignment`). */
function alignmentOf(object: SifObjectSpec): number {
  return object.alignment ?? (object.dataType === SifDataType.partition ? 4096 : 1);
}

function align(offset: number, alignment: number): number {
  return Math.ceil(offset / alignment) * alignment;
}

function fixed(text: string, length: number): Buffer {
  const buffer = Buffer.alloc(length);
  buffer.write(text, 'utf8');
  return buffer;
}

function uuidBytes(id: string): Buffer {
  return Buffer.from(id.replaceAll('-', ''), 'hex');
}

/** The bytes of a SIF file holding `spec.objects`, in order (IDs 1, 2, …). */
export function buildSifFile(spec: SifFileSpec): Buffer {
  const capacity = spec.descriptorCapacity ?? 48;
  const createdAt = spec.createdAt ?? 1_700_000_000;
  const modifiedAt = spec.modifiedAt ?? createdAt;
  const descriptorsSize = capacity * sifDescriptorSize;
  const dataOffset = sifDescriptorsOffset + descriptorsSize;
  const descriptors = Buffer.alloc(descriptorsSize);
  const data: Buffer[] = [];
  let end = dataOffset;
  spec.objects.forEach((object, index) => {
    const offset = align(end, alignmentOf(object));
    const padding = offset - end;
    if (padding > 0) data.push(Buffer.alloc(padding));
    data.push(Buffer.from(object.data));
    end = offset + object.data.byteLength;
    const descriptor = descriptors.subarray(index * sifDescriptorSize, (index + 1) * sifDescriptorSize);
    const group = object.group ?? 1;
    descriptor.writeInt32LE(object.dataType, 0);
    descriptor[4] = 1;
    descriptor.writeUInt32LE(index + 1, 5);
    descriptor.writeUInt32LE(group === 0 ? 0xf0000000 : (0xf0000000 | group) >>> 0, 9);
    descriptor.writeUInt32LE(object.linkedId ?? 0, 13);
    descriptor.writeBigInt64LE(BigInt(offset), 17);
    descriptor.writeBigInt64LE(BigInt(object.data.byteLength), 25);
    descriptor.writeBigInt64LE(BigInt(object.data.byteLength + padding), 33);
    descriptor.writeBigInt64LE(BigInt(createdAt), 41);
    descriptor.writeBigInt64LE(BigInt(modifiedAt), 49);
    fixed(object.name ?? '', 128).copy(descriptor, 73);
    if (object.partition) {
      descriptor.writeInt32LE(object.partition.fileSystemType, 201);
      descriptor.writeInt32LE(object.partition.partitionType, 205);
      fixed(sifArchitectureCode(object.partition.architecture), 3).copy(descriptor, 209);
    }
  });
  const header = Buffer.alloc(sifHeaderSize);
  fixed(sifLaunchScript, 32).copy(header, 0);
  sifMagic.copy(header, 32);
  sifVersion.copy(header, 42);
  fixed(sifArchitectureCode(spec.architecture ?? 'amd64'), 3).copy(header, 45);
  uuidBytes(spec.id ?? randomUUID()).copy(header, 48);
  header.writeBigInt64LE(BigInt(createdAt), 64);
  header.writeBigInt64LE(BigInt(modifiedAt), 72);
  header.writeBigInt64LE(BigInt(capacity - spec.objects.length), 80);
  header.writeBigInt64LE(BigInt(capacity), 88);
  header.writeBigInt64LE(BigInt(sifDescriptorsOffset), 96);
  header.writeBigInt64LE(BigInt(descriptorsSize), 104);
  header.writeBigInt64LE(BigInt(dataOffset), 112);
  header.writeBigInt64LE(BigInt(end - dataOffset), 120);
  const gap = Buffer.alloc(sifDescriptorsOffset - sifHeaderSize);
  return Buffer.concat([header, gap, descriptors, ...data]);
}

/** A file name in a mksquashfs pseudo definition: quoted, with `"` and `\` escaped. */
function quoted(name: string): string {
  return `"${name.replace(/["\\]/g, (character) => `\\${character}`)}"`;
}

/** A file tree entry for `buildSquashfs`; paths are relative, `/`-separated. */
export type TreeEntry =
  | {
      type: 'file';
      path: string;
      content: string | Uint8Array;
      mode?: number;
      uid?: number;
      gid?: number;
      /** Extended attributes (set with `setfattr`; `user.*` names need no privilege). */
      xattrs?: Record<string, string>;
    }
  | { type: 'directory'; path: string; mode?: number; uid?: number; gid?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'hardlink'; path: string; target: string }
  | { type: 'char-device' | 'block-device'; path: string; major: number; minor: number; mode?: number }
  | { type: 'fifo'; path: string; mode?: number };

export interface SquashfsOptions {
  /** Modification time of every entry and of the file system (Unix seconds). Default 1_600_000_000. */
  time?: number;
  /** mksquashfs compressor (`gzip`, `xz`, `lzo`, `lz4`, `zstd`). Default gzip. */
  compressor?: string;
  /** Store data, inodes and fragments uncompressed (fast to make for large test data). */
  uncompressed?: boolean;
}

/**
 * A squashfs image of `entries`, made by the real `mksquashfs`. Owners, modes, devices and FIFOs are
 * given as mksquashfs pseudo definitions, so no privilege is needed: entries belong to root unless they
 * say otherwise (the root directory itself belongs to the user running the test).
 */
export async function buildSquashfs(entries: TreeEntry[], options: SquashfsOptions = {}): Promise<Buffer> {
  const work = await mkdtemp(path.join(tmpdir(), 'gantry-sif-squashfs-'));
  try {
    const root = path.join(work, 'root');
    await mkdir(root);
    const pseudo: string[] = [];
    for (const entry of entries) {
      const target = path.join(root, entry.path);
      await mkdir(path.dirname(target), { recursive: true });
      switch (entry.type) {
        case 'file':
          await writeFile(target, entry.content);
          for (const [name, value] of Object.entries(entry.xattrs ?? {})) {
            await run('setfattr', ['-n', name, '-v', value, target]);
          }
          pseudo.push(
            `${quoted(entry.path)} m ${(entry.mode ?? 0o644).toString(8)} ${entry.uid ?? 0} ${entry.gid ?? 0}`,
          );
          break;
        case 'directory':
          await mkdir(target, { recursive: true });
          pseudo.push(
            `${quoted(entry.path)} m ${(entry.mode ?? 0o755).toString(8)} ${entry.uid ?? 0} ${entry.gid ?? 0}`,
          );
          break;
        case 'symlink':
          await symlink(entry.target, target);
          pseudo.push(`${quoted(entry.path)} m 777 0 0`);
          break;
        case 'hardlink':
          await link(path.join(root, entry.target), target);
          break;
        case 'char-device':
        case 'block-device':
          pseudo.push(
            `${quoted(entry.path)} ${entry.type === 'char-device' ? 'c' : 'b'} ${(entry.mode ?? 0o660).toString(8)} 0 0 ${entry.major} ${entry.minor}`,
          );
          break;
        case 'fifo':
          pseudo.push(`${quoted(entry.path)} i ${(entry.mode ?? 0o644).toString(8)} 0 0 f`);
          break;
      }
    }
    // Directories made implicitly, as parents, belong to root too.
    const listed = new Set(entries.map((entry) => entry.path));
    const parents = new Set<string>();
    for (const entry of entries) {
      for (let parent = path.posix.dirname(entry.path); parent !== '.'; parent = path.posix.dirname(parent)) {
        if (!listed.has(parent)) parents.add(parent);
      }
    }
    for (const parent of [...parents].sort()) pseudo.push(`${quoted(parent)} m 755 0 0`);
    const time = String(options.time ?? 1_600_000_000);
    const output = path.join(work, 'root.squashfs');
    const pseudoArguments = pseudo.flatMap((definition) => ['-p', definition]);
    await run('mksquashfs', [
      root,
      output,
      '-noappend',
      '-quiet',
      '-no-progress',
      '-comp',
      options.compressor ?? 'gzip',
      ...(options.uncompressed ? ['-noI', '-noD', '-noF'] : []),
      '-mkfs-time',
      time,
      '-all-time',
      time,
      ...pseudoArguments,
    ]);
    return await readFile(output);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export interface TestSifOptions extends Omit<SifFileSpec, 'objects'> {
  /** The root file system's entries. */
  entries: TreeEntry[];
  /** A definition file (`Def.FILE` object), if any. */
  definitionFile?: string;
  squashfs?: SquashfsOptions;
  /** More objects, stored after the definition file and before the root file system. */
  extraObjects?: SifObjectSpec[];
}

/** A SIF file as `singularity build` lays one out: definition file, other objects, primary squashfs partition. */
export async function buildTestSif(options: TestSifOptions): Promise<Buffer> {
  const architecture = options.architecture ?? 'amd64';
  const objects: SifObjectSpec[] = [];
  if (options.definitionFile !== undefined) {
    objects.push({ dataType: SifDataType.definitionFile, data: Buffer.from(options.definitionFile) });
  }
  objects.push(...(options.extraObjects ?? []));
  objects.push({
    dataType: SifDataType.partition,
    name: 'squashfs-gantry-test',
    data: await buildSquashfs(options.entries, options.squashfs),
    partition: {
      fileSystemType: SifFileSystemType.squashfs,
      partitionType: SifPartitionType.primarySystem,
      architecture,
    },
  });
  return buildSifFile({ ...options, architecture, objects });
}

/** The `/.singularity.d` tree `singularity build` adds, in small. */
export function singularityMetadataEntries(runscript: string): TreeEntry[] {
  return [
    { type: 'directory', path: '.singularity.d' },
    { type: 'directory', path: '.singularity.d/env' },
    { type: 'file', path: '.singularity.d/env/01-base.sh', content: '#!/bin/sh\n', mode: 0o755 },
    {
      type: 'file',
      path: '.singularity.d/env/90-environment.sh',
      content: '#!/bin/sh\nexport GREETING=hello\n',
      mode: 0o755,
    },
    { type: 'directory', path: '.singularity.d/actions' },
    {
      type: 'file',
      path: '.singularity.d/actions/run',
      content: '#!/bin/sh\nexec /.singularity.d/runscript "$@"\n',
      mode: 0o755,
    },
    { type: 'file', path: '.singularity.d/runscript', content: runscript, mode: 0o755 },
    {
      type: 'file',
      path: '.singularity.d/labels.json',
      content: '{"org.label-schema.schema-version":"1.0"}\n',
    },
    { type: 'symlink', path: 'singularity', target: '.singularity.d/runscript' },
    { type: 'symlink', path: 'environment', target: '.singularity.d/env/90-environment.sh' },
    { type: 'symlink', path: '.run', target: '.singularity.d/actions/run' },
  ];
}
