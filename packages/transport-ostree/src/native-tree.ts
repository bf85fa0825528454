/**
 * Builds OSTree trees in this process and writes their objects into a `bare` repository (through
 * `ObjectWriter`'s worker thread), instead of handing a tar to `ostree commit --tree=tar=`: what
 * libostree's mutable tree does with the entries layer-stream.ts gives it. Each directory's metadata
 * is a dirmeta object (`(uuua(ayay))`: owner, group, mode with its type bits, extended attributes in
 * name order); each regular file or symbolic link a content object named by the SHA-256 of its header
 * (`serializeFileHeader`) and bytes; a hard link takes its target's object; an entry given again
 * replaces the first (a directory keeps its contents and takes the later metadata). `finish` writes
 * the dirtree objects (`(a(say)a(sayay))`, names in byte order) of the directories asked for and
 * everything below them, and returns their checksums.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { ErrorCodes, GantryError } from '@gantry/core/transport';
import {
  serializeDirMeta,
  serializeDirTree,
  serializeFileHeader,
  type TreeChecksums,
  type Xattr,
} from './gvariant.js';
import { ObjectWriter } from './object-writer.js';

const typeDirectory = 0o040000;
const typeFile = 0o100000;
const typeSymlink = 0o120000;

interface ContentObject {
  checksum: string | undefined;
}

interface Directory {
  meta: string | undefined;
  files: Map<string, ContentObject>;
  directories: Map<string, Directory>;
}

const newDirectory = (): Directory => ({ meta: undefined, files: new Map(), directories: new Map() });

/** In OSTree's order: by name. */
function sortedXattrs(xattrs: ReadonlyArray<Xattr> | undefined): Array<[string, Uint8Array]> {
  return [...(xattrs ?? [])]
    .map(([name, value]): [string, Uint8Array] => [name, value])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

function internal(message: string): GantryError {
  return new GantryError(ErrorCodes.Internal, `native OSTree tree: ${message}`);
}

export interface NativeOwner {
  uid: number;
  gid: number;
}

export class NativeTree {
  private readonly root = newDirectory();
  private readonly writer: ObjectWriter;
  /** Metadata objects sent to the writer already. */
  private readonly metadataWritten = new Set<string>();
  /** File headers of regular files without extended attributes, by owner and mode (most files share one). */
  private readonly headers = new Map<string, Buffer>();
  /** Bytes the current file still expects. */
  private remaining = 0;
  private currentPath = '';

  /** `repository`: the path of a `bare` repository; `freeSpacePercent`: its `min-free-space-percent`. */
  constructor(repository: string, freeSpacePercent: number) {
    this.writer = new ObjectWriter({
      objects: join(repository, 'objects'),
      tmp: join(repository, 'tmp'),
      freeSpacePercent,
    });
  }

  /** The writer's failure (a full disk…), once it has failed. */
  get failed(): Error | undefined {
    return this.writer.failed;
  }

  /** The directory holding `path` ('' is the root) and the entry's name there. */
  private parentOf(path: string): { parent: Directory; name: string } {
    const components = path.split('/');
    const name = components.pop() as string;
    let parent = this.root;
    for (const component of components) {
      const next = parent.directories.get(component);
      if (!next) throw internal(`"${path}": its parent directory is not in the tree`);
      parent = next;
    }
    return { parent, name };
  }

  private writeMetadata(bytes: Buffer, extension: 'dirtree' | 'dirmeta'): string {
    const checksum = sha256(bytes);
    const key = `${checksum}.${extension}`;
    if (!this.metadataWritten.has(key)) {
      this.metadataWritten.add(key);
      this.writer.metadata(checksum, extension, bytes);
    }
    return checksum;
  }

  private checkNoData(): void {
    if (this.remaining > 0) throw internal(`"${this.currentPath}" is missing ${this.remaining} bytes`);
  }

  directory(
    path: string,
    mode: number,
    owner: NativeOwner,
    xattrs?: ReadonlyArray<Xattr>,
  ): Promise<void> | undefined {
    this.checkNoData();
    const meta = this.writeMetadata(
      serializeDirMeta(owner.uid, owner.gid, typeDirectory | (mode & 0o7777), sortedXattrs(xattrs)),
      'dirmeta',
    );
    if (path === '') {
      this.root.meta = meta;
      return this.writer.room();
    }
    const { parent, name } = this.parentOf(path);
    if (parent.files.has(name)) throw internal(`"${path}": a file replaced by a directory`);
    let directory = parent.directories.get(name);
    if (!directory) {
      directory = newDirectory();
      parent.directories.set(name, directory);
    }
    directory.meta = meta;
    return this.writer.room();
  }

  private setFile(path: string, object: ContentObject): void {
    const { parent, name } = this.parentOf(path);
    if (parent.directories.has(name)) throw internal(`"${path}": a directory replaced by a file`);
    parent.files.set(name, object);
  }

  /**
   * A regular file of `size` bytes, given next through `data`. This call and the other entries'
   * return a promise to await, when they return one, before going on (the worker is behind).
   */
  file(
    path: string,
    mode: number,
    owner: NativeOwner,
    size: number,
    xattrs?: ReadonlyArray<Xattr>,
  ): Promise<void> | undefined {
    this.checkNoData();
    const object: ContentObject = { checksum: undefined };
    this.setFile(path, object);
    const sorted = sortedXattrs(xattrs);
    const fileMode = typeFile | (mode & 0o7777);
    let header: Buffer | undefined;
    if (sorted.length === 0) {
      const key = `${owner.uid}:${owner.gid}:${fileMode}`;
      header = this.headers.get(key);
      if (!header) {
        header = serializeFileHeader(owner.uid, owner.gid, fileMode, Buffer.alloc(0), sorted);
        this.headers.set(key, header);
      }
    }
    this.writer.file(
      header ?? serializeFileHeader(owner.uid, owner.gid, fileMode, Buffer.alloc(0), sorted),
      { uid: owner.uid, gid: owner.gid, mode: fileMode, size, xattrs: sorted },
      (checksum) => {
        object.checksum = checksum;
      },
    );
    this.remaining = size;
    this.currentPath = path;
    return this.writer.room();
  }

  /** The next bytes of the current file; await the promise, when one is returned, before going on. */
  data(chunk: Uint8Array): Promise<void> | undefined {
    if (chunk.byteLength > this.remaining) throw internal(`"${this.currentPath}" is longer than its size`);
    this.remaining -= chunk.byteLength;
    return this.writer.data(chunk);
  }

  /** A symbolic link to `target` (bytes, one character per byte). */
  symlink(
    path: string,
    target: string,
    owner: NativeOwner,
    xattrs?: ReadonlyArray<Xattr>,
  ): Promise<void> | undefined {
    this.checkNoData();
    const object: ContentObject = { checksum: undefined };
    this.setFile(path, object);
    const sorted = sortedXattrs(xattrs);
    this.writer.symlink(
      serializeFileHeader(owner.uid, owner.gid, typeSymlink | 0o777, Buffer.from(target, 'latin1'), sorted),
      { uid: owner.uid, gid: owner.gid, target, xattrs: sorted },
      (checksum) => {
        object.checksum = checksum;
      },
    );
    return this.writer.room();
  }

  /** A hard link: `path` gets the object of `target` (a file or symbolic link of the tree). */
  hardlink(path: string, target: string): void {
    this.checkNoData();
    const { parent, name } = this.parentOf(target);
    const object = parent.files.get(name);
    if (!object) throw internal(`"${path}": hard link to "${target}", which is not a file of the tree`);
    this.setFile(path, object);
  }

  /** Sends what is queued to the worker, without waiting. */
  push(): void {
    this.writer.flush();
  }

  /**
   * Writes the dirtree objects of the root's subdirectories `names` (and of everything below them),
   * waits until every object is written, and returns their checksums by name.
   */
  async finish(names: readonly string[]): Promise<Map<string, TreeChecksums>> {
    this.checkNoData();
    await this.writer.drain(); // every content object's checksum is known from here on
    const checksums = (directory: Directory, path: string): TreeChecksums => {
      if (directory.meta === undefined) throw internal(`"${path}" has no metadata`);
      const files: Array<[string, string]> = [];
      for (const [name, object] of directory.files) {
        if (object.checksum === undefined) throw internal(`"${path}/${name}" was not written`);
        files.push([name, object.checksum]);
      }
      const directories: Array<[string, TreeChecksums]> = [];
      for (const [name, child] of directory.directories) {
        directories.push([name, checksums(child, `${path}/${name}`)]);
      }
      return {
        tree: this.writeMetadata(serializeDirTree(files, directories), 'dirtree'),
        meta: directory.meta,
      };
    };
    const result = new Map<string, TreeChecksums>();
    for (const name of names) {
      const directory = this.root.directories.get(name);
      if (!directory) throw internal(`no directory "${name}"`);
      result.set(name, checksums(directory, name));
    }
    await this.writer.drain();
    await this.writer.close();
    return result;
  }

  /** Stops writing: a content object not finished is removed; the objects written stay (unreferenced). */
  async abort(): Promise<void> {
    await this.writer.close();
  }
}
