/**
 * The Singularity Image Format (SIF, version 01) as sylabs/sif defines it: a 128-byte global header, a
 * table of fixed-size object descriptors, then the data objects the descriptors point at. Every integer
 * is little-endian and the structures are packed (Go's `encoding/binary`).
 *
 * Global header (128 bytes):
 *
 * | offset | size | field                                        |
 * |--------|------|----------------------------------------------|
 * | 0      | 32   | launch script (`#!/usr/bin/env run-singularity\n`, NUL padded) |
 * | 32     | 10   | magic `SIF_MAGIC\0`                          |
 * | 42     | 3    | version `01\0`                               |
 * | 45     | 3    | primary architecture code (`02\0` = amd64)   |
 * | 48     | 16   | image UUID                                   |
 * | 64     | 8    | created at (Unix seconds)                    |
 * | 72     | 8    | modified at (Unix seconds)                   |
 * | 80     | 8    | descriptors free                             |
 * | 88     | 8    | descriptors total                            |
 * | 96     | 8    | descriptors offset                           |
 * | 104    | 8    | descriptors size                             |
 * | 112    | 8    | data offset                                  |
 * | 120    | 8    | data size                                    |
 *
 * Descriptor (585 bytes): data type (int32), used (1 byte), ID, group ID, linked ID (uint32 each),
 * offset, size, size with padding, created at, modified at, UID, GID (int64 each), name (128 bytes),
 * type-specific extra (384 bytes; for a partition: file system type int32, partition type int32,
 * architecture code 3 bytes). Descriptors whose `used` byte is 0 are free slots.
 */
import type { FileHandle } from 'node:fs/promises';
import { ErrorCodes, GantryError } from '@gantry/core/transport';

export const sifHeaderSize = 128;
export const sifDescriptorSize = 585;
export const sifMagic = Buffer.from('SIF_MAGIC\0', 'latin1');
export const sifVersion = Buffer.from('01\0', 'latin1');
export const sifLaunchScript = '#!/usr/bin/env run-singularity\n';
/** The first object's offset in files written by sylabs/sif (descriptors start at 4096). */
export const sifDescriptorsOffset = 4096;

/** Data object types (`sif.DataType`). */
export const SifDataType = {
  definitionFile: 0x4001,
  environmentVariables: 0x4002,
  labels: 0x4003,
  partition: 0x4004,
  signature: 0x4005,
  genericJson: 0x4006,
  generic: 0x4007,
  cryptoMessage: 0x4008,
  sbom: 0x4009,
  ociRootIndex: 0x400a,
  ociBlob: 0x400b,
} as const;

/** Partition file system types (`sif.FSType`). */
export const SifFileSystemType = {
  squashfs: 1,
  ext3: 2,
  immutableObjectArchive: 3,
  raw: 4,
  encryptedSquashfs: 5,
} as const;

/** Partition types (`sif.PartType`). */
export const SifPartitionType = {
  system: 1,
  primarySystem: 2,
  data: 3,
  overlay: 4,
} as const;

/** SIF architecture codes and the Go architecture names sylabs/sif maps them to (`archType.GoArch`). */
export const sifArchitectures: Readonly<Record<string, string>> = {
  '01': '386',
  '02': 'amd64',
  '03': 'arm',
  '04': 'arm64',
  '05': 'ppc64',
  '06': 'ppc64le',
  '07': 'mips',
  '08': 'mipsle',
  '09': 'mips64',
  '10': 'mips64le',
  '11': 's390x',
  '12': 'riscv64',
  '13': 'loong64',
};

/** The architecture code of a Go architecture name (`00` for an unknown one). */
export function sifArchitectureCode(goArchitecture: string): string {
  for (const [code, name] of Object.entries(sifArchitectures)) if (name === goArchitecture) return code;
  return '00';
}

export interface SifHeader {
  launchScript: string;
  /** Go architecture name of the primary architecture (`unknown` when the code is not one SIF defines). */
  architecture: string;
  /** The image UUID in its canonical text form. */
  id: string;
  createdAt: number;
  modifiedAt: number;
  descriptorsFree: number;
  descriptorsTotal: number;
  descriptorsOffset: number;
  descriptorsSize: number;
  dataOffset: number;
  dataSize: number;
}

export interface SifPartitionInfo {
  fileSystemType: number;
  partitionType: number;
  architecture: string;
}

export interface SifDescriptor {
  dataType: number;
  id: number;
  groupId: number;
  linkedId: number;
  /** Offset of the object's bytes from the start of the file. */
  offset: number;
  size: number;
  sizeWithPadding: number;
  createdAt: number;
  modifiedAt: number;
  name: string;
  /** For a partition object, its file system type, partition type and architecture. */
  partition?: SifPartitionInfo;
}

export interface SifImage {
  header: SifHeader;
  /** The used descriptors, in table order. */
  descriptors: SifDescriptor[];
}

function invalid(path: string, problem: string): GantryError {
  return new GantryError(ErrorCodes.InvalidLayout, `loading SIF file ${path}: ${problem}`);
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.subarray(0, end === -1 ? bytes.length : end).toString('utf8');
}

/** A little-endian int64 as a number; beyond ±2^53 it cannot name a file offset and is refused. */
function readInt64(buffer: Buffer, offset: number, path: string, field: string): number {
  const value = buffer.readBigInt64LE(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw invalid(path, `${field} ${value} is out of range`);
  }
  return Number(value);
}

function formatUuid(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function architectureName(code: Buffer): string {
  return sifArchitectures[cString(code)] ?? 'unknown';
}

/** Parses the 128-byte global header; refuses another magic or version. */
export function parseSifHeader(bytes: Buffer, path: string): SifHeader {
  if (bytes.length < sifHeaderSize) throw invalid(path, 'reading global header: unexpected EOF');
  if (!bytes.subarray(32, 42).equals(sifMagic)) throw invalid(path, 'invalid SIF magic');
  if (!bytes.subarray(42, 45).equals(sifVersion)) throw invalid(path, 'incompatible SIF version');
  return {
    launchScript: cString(bytes.subarray(0, 32)),
    architecture: architectureName(bytes.subarray(45, 48)),
    id: formatUuid(bytes.subarray(48, 64)),
    createdAt: readInt64(bytes, 64, path, 'created at'),
    modifiedAt: readInt64(bytes, 72, path, 'modified at'),
    descriptorsFree: readInt64(bytes, 80, path, 'descriptors free'),
    descriptorsTotal: readInt64(bytes, 88, path, 'descriptors total'),
    descriptorsOffset: readInt64(bytes, 96, path, 'descriptors offset'),
    descriptorsSize: readInt64(bytes, 104, path, 'descriptors size'),
    dataOffset: readInt64(bytes, 112, path, 'data offset'),
    dataSize: readInt64(bytes, 120, path, 'data size'),
  };
}

/** Parses one 585-byte descriptor; undefined for a free slot. */
export function parseSifDescriptor(bytes: Buffer, path: string): SifDescriptor | undefined {
  if (bytes[4] === 0) return undefined;
  const descriptor: SifDescriptor = {
    dataType: bytes.readInt32LE(0),
    id: bytes.readUInt32LE(5),
    groupId: bytes.readUInt32LE(9),
    linkedId: bytes.readUInt32LE(13),
    offset: readInt64(bytes, 17, path, 'object offset'),
    size: readInt64(bytes, 25, path, 'object size'),
    sizeWithPadding: readInt64(bytes, 33, path, 'object size with padding'),
    createdAt: readInt64(bytes, 41, path, 'object created at'),
    modifiedAt: readInt64(bytes, 49, path, 'object modified at'),
    name: cString(bytes.subarray(73, 201)),
  };
  if (descriptor.dataType === SifDataType.partition) {
    descriptor.partition = {
      fileSystemType: bytes.readInt32LE(201),
      partitionType: bytes.readInt32LE(205),
      architecture: architectureName(bytes.subarray(209, 212)),
    };
  }
  return descriptor;
}

/** At most this many descriptors are read (sylabs/sif creates 48; a larger table is not a real image). */
export const maximumSifDescriptors = 65536;

/**
 * Reads the header and descriptor table of the SIF file open as `file` (`fileSize` bytes), checking that
 * the table and every object lie inside the file. Errors are `ERR_GANTRY_INVALID_LAYOUT` naming `path`.
 */
export async function readSifImage(file: FileHandle, fileSize: number, path: string): Promise<SifImage> {
  const headerBytes = Buffer.alloc(sifHeaderSize);
  const { bytesRead } = await file.read(headerBytes, 0, sifHeaderSize, 0);
  const header = parseSifHeader(headerBytes.subarray(0, bytesRead), path);
  const { descriptorsTotal, descriptorsOffset, descriptorsSize } = header;
  if (descriptorsTotal < 0 || descriptorsTotal > maximumSifDescriptors) {
    throw invalid(path, `descriptors total ${descriptorsTotal} is out of range`);
  }
  const tableSize = descriptorsTotal * sifDescriptorSize;
  if (descriptorsSize < tableSize) {
    throw invalid(
      path,
      `reading descriptors: ${descriptorsTotal} descriptors do not fit in ${descriptorsSize} bytes`,
    );
  }
  if (descriptorsOffset < sifHeaderSize || descriptorsOffset + tableSize > fileSize) {
    throw invalid(path, 'reading descriptors: unexpected EOF');
  }
  const table = Buffer.alloc(tableSize);
  if (tableSize > 0) await file.read(table, 0, tableSize, descriptorsOffset);
  const descriptors: SifDescriptor[] = [];
  for (let index = 0; index < descriptorsTotal; index++) {
    const start = index * sifDescriptorSize;
    const descriptor = parseSifDescriptor(table.subarray(start, start + sifDescriptorSize), path);
    if (!descriptor) continue;
    if (descriptor.offset < 0 || descriptor.size < 0 || descriptor.offset + descriptor.size > fileSize) {
      throw invalid(
        path,
        `object ${descriptor.id} (${JSON.stringify(descriptor.name)}) lies outside the file (offset ${descriptor.offset}, size ${descriptor.size}, file size ${fileSize})`,
      );
    }
    descriptors.push(descriptor);
  }
  return { header, descriptors };
}

/**
 * The one used descriptor that `matches`, as sylabs/sif's `GetDescriptor` selects it: `'none'` when there
 * is none, `'several'` when more than one match.
 */
export function selectSifDescriptor(
  image: SifImage,
  matches: (descriptor: SifDescriptor) => boolean,
): SifDescriptor | 'none' | 'several' {
  const found = image.descriptors.filter(matches);
  if (found.length === 0) return 'none';
  if (found.length > 1) return 'several';
  return found[0]!;
}
