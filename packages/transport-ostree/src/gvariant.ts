/**
 * The GVariant serialisation of an OSTree commit object, `(a{sv}aya(say)sstayay)`: metadata, parent
 * checksum, related objects, subject, body, timestamp (big-endian), root dirtree checksum, root dirmeta
 * checksum. Only what commits need: metadata values are read as strings (`s`) and written as strings.
 */

export interface CommitObject {
  /** Metadata values of type `s`; values of other types are listed in `otherMetadataKeys`. */
  metadata: Map<string, string>;
  otherMetadataKeys: string[];
  /** Parent commit checksum (hex), '' for none. */
  parent: string;
  subject: string;
  body: string;
  /** Seconds since the epoch. */
  timestamp: bigint;
  rootTree: string;
  rootMeta: string;
}

export class GVariantFormatError extends Error {}

function offsetWidthForSize(size: number): number {
  if (size === 0) return 0;
  if (size <= 0xff) return 1;
  if (size <= 0xffff) return 2;
  return size <= 0xffffffff ? 4 : 8;
}

/** Width glib picks when writing a container of `bodySize` bytes followed by `count` offsets. */
function offsetWidthForBody(bodySize: number, count: number): number {
  if (count === 0) return 0;
  if (bodySize + count <= 0xff) return 1;
  if (bodySize + 2 * count <= 0xffff) return 2;
  return bodySize + 4 * count <= 0xffffffff ? 4 : 8;
}

function readOffset(data: Uint8Array, position: number, width: number): number {
  let value = 0;
  for (let index = width - 1; index >= 0; index--) value = value * 256 + data[position + index]!;
  return value;
}

function writeOffsets(parts: Buffer[], offsets: number[], width: number): void {
  const buffer = Buffer.alloc(offsets.length * width);
  offsets.forEach((offset, index) => {
    let value = offset;
    for (let byte = 0; byte < width; byte++) {
      buffer[index * width + byte] = value & 0xff;
      value = Math.floor(value / 256);
    }
  });
  parts.push(buffer);
}

const align = (position: number, alignment: number): number => Math.ceil(position / alignment) * alignment;

/** Serialises members into a container: `alignments` per member, `framed` = whether its end is recorded. */
function serializeContainer(
  members: { bytes: Buffer; alignment: number; framed: boolean }[],
  reverseOffsets: boolean,
): Buffer {
  const parts: Buffer[] = [];
  let position = 0;
  const offsets: number[] = [];
  for (const member of members) {
    const aligned = align(position, member.alignment);
    if (aligned > position) parts.push(Buffer.alloc(aligned - position));
    parts.push(member.bytes);
    position = aligned + member.bytes.length;
    if (member.framed) offsets.push(position);
  }
  const width = offsetWidthForBody(position, offsets.length);
  writeOffsets(parts, reverseOffsets ? offsets.reverse() : offsets, width);
  return Buffer.concat(parts);
}

const stringBytes = (value: string): Buffer => Buffer.concat([Buffer.from(value, 'utf8'), Buffer.from([0])]);

function serializeStringVariant(value: string): Buffer {
  return Buffer.concat([stringBytes(value), Buffer.from([0]), Buffer.from('s', 'latin1')]);
}

/** Serialises a commit with string metadata (keys sorted), no related objects. */
export function serializeCommit(commit: Omit<CommitObject, 'otherMetadataKeys'>): Buffer {
  const entries = [...commit.metadata.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const metadata = serializeContainer(
    entries.map(([key, value]) => ({
      bytes: serializeContainer(
        [
          { bytes: stringBytes(key), alignment: 1, framed: true },
          { bytes: serializeStringVariant(value), alignment: 8, framed: false },
        ],
        true,
      ),
      alignment: 8,
      framed: true,
    })),
    false,
  );
  const timestamp = Buffer.alloc(8);
  timestamp.writeBigUInt64BE(commit.timestamp);
  return serializeContainer(
    [
      { bytes: metadata, alignment: 8, framed: true },
      { bytes: Buffer.from(commit.parent, 'hex'), alignment: 1, framed: true },
      { bytes: Buffer.alloc(0), alignment: 1, framed: true },
      { bytes: stringBytes(commit.subject), alignment: 1, framed: true },
      { bytes: stringBytes(commit.body), alignment: 1, framed: true },
      { bytes: timestamp, alignment: 8, framed: false },
      { bytes: Buffer.from(commit.rootTree, 'hex'), alignment: 1, framed: true },
      { bytes: Buffer.from(commit.rootMeta, 'hex'), alignment: 1, framed: false },
    ],
    true,
  );
}

function fail(problem: string): never {
  throw new GVariantFormatError(problem);
}

function readString(data: Buffer, what: string): string {
  if (data.length === 0 || data[data.length - 1] !== 0) fail(`${what} is not a NUL-terminated string`);
  return data.subarray(0, data.length - 1).toString('utf8');
}

/** Elements of an array of variable-size elements. */
function arrayElements(data: Buffer, alignment: number): Buffer[] {
  if (data.length === 0) return [];
  const width = offsetWidthForSize(data.length);
  const tableStart = readOffset(data, data.length - width, width);
  if (tableStart > data.length || (data.length - tableStart) % width !== 0) fail('bad array framing');
  const count = (data.length - tableStart) / width;
  const elements: Buffer[] = [];
  let position = 0;
  for (let index = 0; index < count; index++) {
    const start = align(position, alignment);
    const end = readOffset(data, tableStart + index * width, width);
    if (end < start || end > tableStart) fail('bad array element framing');
    elements.push(data.subarray(start, end));
    position = end;
  }
  return elements;
}

/** Parses a commit object; throws `GVariantFormatError` when it is not one. */
export function parseCommit(bytes: Uint8Array): CommitObject {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const width = offsetWidthForSize(data.length);
  const framed = 6;
  if (data.length < framed * width + 8) fail('too short for a commit');
  const tableStart = data.length - framed * width;
  const ends: number[] = [];
  for (let index = 0; index < framed; index++)
    ends.push(readOffset(data, data.length - (index + 1) * width, width));
  let position = 0;
  const take = (end: number, alignment: number): Buffer => {
    const start = align(position, alignment);
    if (end < start || end > tableStart) fail('bad commit framing');
    position = end;
    return data.subarray(start, end);
  };
  const metadataBytes = take(ends[0]!, 8);
  const parent = take(ends[1]!, 1);
  take(ends[2]!, 1);
  const subject = readString(take(ends[3]!, 1), 'subject');
  const body = readString(take(ends[4]!, 1), 'body');
  const timestampStart = align(position, 8);
  const timestampBytes = take(timestampStart + 8, 8);
  const rootTree = take(ends[5]!, 1);
  const rootMeta = data.subarray(position, tableStart);
  if (rootTree.length !== 32 || rootMeta.length !== 32) fail('root checksums are not 32 bytes');
  if (parent.length !== 0 && parent.length !== 32) fail('parent checksum is not 32 bytes');
  const metadata = new Map<string, string>();
  const otherMetadataKeys: string[] = [];
  for (const entry of arrayElements(metadataBytes, 8)) {
    const entryWidth = offsetWidthForSize(entry.length);
    if (entry.length < entryWidth) fail('bad metadata entry');
    const keyEnd = readOffset(entry, entry.length - entryWidth, entryWidth);
    if (keyEnd > entry.length - entryWidth) fail('bad metadata key framing');
    const key = readString(entry.subarray(0, keyEnd), 'metadata key');
    const variant = entry.subarray(align(keyEnd, 8), entry.length - entryWidth);
    const separator = variant.lastIndexOf(0);
    if (separator < 0) fail(`metadata ${key}: bad variant`);
    const type = variant.subarray(separator + 1).toString('latin1');
    if (type === 's') metadata.set(key, readString(variant.subarray(0, separator), `metadata ${key}`));
    else otherMetadataKeys.push(key);
  }
  return {
    metadata,
    otherMetadataKeys,
    parent: parent.toString('hex'),
    subject,
    body,
    timestamp: timestampBytes.readBigUInt64BE(),
    rootTree: rootTree.toString('hex'),
    rootMeta: rootMeta.toString('hex'),
  };
}

/** The checksums of a directory in a tree: its listing (`.dirtree`) and its metadata (`.dirmeta`). */
export interface TreeChecksums {
  tree: string;
  meta: string;
}

/**
 * The subdirectories of a dirtree object `(a(say)a(sayay))` (files, then directories: name, tree
 * checksum, metadata checksum), by name; throws `GVariantFormatError` when it is not one.
 */
export function parseDirTreeDirectories(bytes: Uint8Array): Map<string, TreeChecksums> {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const width = offsetWidthForSize(data.length);
  if (data.length < width) fail('too short for a dirtree');
  const filesEnd = width === 0 ? 0 : readOffset(data, data.length - width, width);
  if (filesEnd > data.length - width) fail('bad dirtree framing');
  const directories = new Map<string, TreeChecksums>();
  for (const entry of arrayElements(data.subarray(filesEnd, data.length - width), 1)) {
    const entryWidth = offsetWidthForSize(entry.length);
    if (entry.length < 2 * entryWidth + 64) fail('bad dirtree entry');
    const nameEnd = readOffset(entry, entry.length - entryWidth, entryWidth);
    const treeEnd = readOffset(entry, entry.length - 2 * entryWidth, entryWidth);
    if (nameEnd > treeEnd || treeEnd > entry.length - 2 * entryWidth) fail('bad dirtree entry framing');
    const tree = entry.subarray(nameEnd, treeEnd);
    const meta = entry.subarray(treeEnd, entry.length - 2 * entryWidth);
    if (tree.length !== 32 || meta.length !== 32) fail('dirtree checksums are not 32 bytes');
    directories.set(readString(entry.subarray(0, nameEnd), 'dirtree name'), {
      tree: tree.toString('hex'),
      meta: meta.toString('hex'),
    });
  }
  return directories;
}

/** An extended attribute: its name (bytes, one character per byte) and value. */
export type Xattr = readonly [name: string, value: Uint8Array];

const u32 = (value: number): Buffer => {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value >>> 0);
  return bytes;
};

/**
 * `a(ayay)`, extended attributes as OSTree records them: each name as a byte string with its NUL,
 * each value as it is, in the order given (OSTree's is name order: sort them first).
 */
export function serializeXattrs(xattrs: ReadonlyArray<Xattr>): Buffer {
  return serializeContainer(
    xattrs.map(([name, value]) => ({
      bytes: serializeContainer(
        [
          { bytes: Buffer.from(`${name}\0`, 'latin1'), alignment: 1, framed: true },
          {
            bytes: Buffer.from(value.buffer, value.byteOffset, value.byteLength),
            alignment: 1,
            framed: false,
          },
        ],
        true,
      ),
      alignment: 1,
      framed: true,
    })),
    false,
  );
}

/**
 * The header OSTree hashes before a content object's bytes (`_ostree_file_header_new`): the GVariant
 * `(uuuusa(ayay))` (owner, group and mode big-endian, rdev 0, the symbolic link's target or '', the
 * extended attributes), preceded by its size (32 bits, big-endian) and 4 bytes of padding. A content
 * object's checksum is the SHA-256 of this header followed by the file's bytes.
 */
export function serializeFileHeader(
  uid: number,
  gid: number,
  mode: number,
  symlinkTarget: Uint8Array,
  xattrs: ReadonlyArray<Xattr>,
): Buffer {
  const variant = serializeContainer(
    [
      { bytes: u32(uid), alignment: 4, framed: false },
      { bytes: u32(gid), alignment: 4, framed: false },
      { bytes: u32(mode), alignment: 4, framed: false },
      { bytes: u32(0), alignment: 4, framed: false },
      {
        bytes: Buffer.concat([symlinkTarget, Buffer.from([0])]),
        alignment: 1,
        framed: true,
      },
      { bytes: serializeXattrs(xattrs), alignment: 1, framed: false },
    ],
    true,
  );
  return Buffer.concat([u32(variant.length), Buffer.alloc(4), variant]);
}

/** A dirmeta object `(uuua(ayay))`: owner, group and mode (with the directory type bits) big-endian, extended attributes. */
export function serializeDirMeta(
  uid: number,
  gid: number,
  mode: number,
  xattrs: ReadonlyArray<Xattr>,
): Buffer {
  return serializeContainer(
    [
      { bytes: u32(uid), alignment: 4, framed: false },
      { bytes: u32(gid), alignment: 4, framed: false },
      { bytes: u32(mode), alignment: 4, framed: false },
      { bytes: serializeXattrs(xattrs), alignment: 1, framed: false },
    ],
    true,
  );
}

/**
 * A dirtree object `(a(say)a(sayay))`: files (name, content checksum), then directories (name, dirtree
 * and dirmeta checksums), each list in name order (byte order; names are byte strings, one character
 * per byte). Written into one buffer (sizes and offsets computed first): a directory of thousands of
 * files would otherwise take a few small buffers per entry.
 */
export function serializeDirTree(
  files: ReadonlyArray<readonly [name: string, checksum: string]>,
  directories: ReadonlyArray<readonly [name: string, checksums: TreeChecksums]>,
): Buffer {
  const byName = <T extends readonly [string, unknown]>(a: T, b: T): number =>
    a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
  const sortedFiles = [...files].sort(byName);
  const sortedDirectories = [...directories].sort(byName);
  // Element sizes: name and NUL, checksums, the element's own offsets.
  const fileSizes = sortedFiles.map(([name]) => {
    const body = name.length + 1 + 32;
    return body + offsetWidthForBody(body, 1);
  });
  const directorySizes = sortedDirectories.map(([name]) => {
    const body = name.length + 1 + 64;
    return body + 2 * offsetWidthForBody(body, 2);
  });
  const sum = (sizes: number[]) => sizes.reduce((total, size) => total + size, 0);
  const filesBody = sum(fileSizes);
  const filesWidth = offsetWidthForBody(filesBody, fileSizes.length);
  const filesSize = filesBody + filesWidth * fileSizes.length;
  const directoriesBody = sum(directorySizes);
  const directoriesWidth = offsetWidthForBody(directoriesBody, directorySizes.length);
  const directoriesSize = directoriesBody + directoriesWidth * directorySizes.length;
  const topWidth = offsetWidthForBody(filesSize + directoriesSize, 1);
  const out = Buffer.alloc(filesSize + directoriesSize + topWidth);
  const putOffset = (at: number, value: number, width: number): void => {
    let rest = value;
    for (let byte = 0; byte < width; byte++) {
      out[at + byte] = rest & 0xff;
      rest = Math.floor(rest / 256);
    }
  };
  let position = 0;
  const ends: number[] = [];
  sortedFiles.forEach(([name, checksum], index) => {
    const start = position;
    position += out.write(name, position, 'latin1') + 1; // the NUL is already there
    const nameEnd = position - start;
    position += out.write(checksum, position, 'hex');
    putOffset(position, nameEnd, fileSizes[index]! - (position - start));
    position = start + fileSizes[index]!;
    ends.push(position);
  });
  for (const end of ends) {
    putOffset(position, end, filesWidth);
    position += filesWidth;
  }
  const directoriesStart = position;
  ends.length = 0;
  sortedDirectories.forEach(([name, { tree, meta }], index) => {
    const start = position;
    position += out.write(name, position, 'latin1') + 1;
    const nameEnd = position - start;
    position += out.write(tree, position, 'hex');
    const treeEnd = position - start;
    position += out.write(meta, position, 'hex');
    const width = (directorySizes[index]! - (position - start)) / 2;
    // A tuple's offsets are stored last member first.
    putOffset(position, treeEnd, width);
    putOffset(position + width, nameEnd, width);
    position = start + directorySizes[index]!;
    ends.push(position - directoriesStart);
  });
  for (const end of ends) {
    putOffset(position, end, directoriesWidth);
    position += directoriesWidth;
  }
  putOffset(position, filesSize, topWidth);
  return out;
}

/** `serializeDirTree` built from generic containers (what the tests check it against). */
export function serializeDirTreeGeneric(
  files: ReadonlyArray<readonly [name: string, checksum: string]>,
  directories: ReadonlyArray<readonly [name: string, checksums: TreeChecksums]>,
): Buffer {
  const byName = <T extends readonly [string, unknown]>(a: T, b: T): number =>
    a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
  const name = (value: string): Buffer => Buffer.from(`${value}\0`, 'latin1');
  const fileList = serializeContainer(
    [...files].sort(byName).map(([file, checksum]) => ({
      bytes: serializeContainer(
        [
          { bytes: name(file), alignment: 1, framed: true },
          { bytes: Buffer.from(checksum, 'hex'), alignment: 1, framed: false },
        ],
        true,
      ),
      alignment: 1,
      framed: true,
    })),
    false,
  );
  const directoryList = serializeContainer(
    [...directories].sort(byName).map(([directory, { tree, meta }]) => ({
      bytes: serializeContainer(
        [
          { bytes: name(directory), alignment: 1, framed: true },
          { bytes: Buffer.from(tree, 'hex'), alignment: 1, framed: true },
          { bytes: Buffer.from(meta, 'hex'), alignment: 1, framed: false },
        ],
        true,
      ),
      alignment: 1,
      framed: true,
    })),
    false,
  );
  return serializeContainer(
    [
      { bytes: fileList, alignment: 1, framed: true },
      { bytes: directoryList, alignment: 1, framed: false },
    ],
    true,
  );
}
