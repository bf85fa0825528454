/**
 * Commits a layer tar to an OSTree repository while it streams in, without writing its files to disk
 * first: the layer is read once (its DiffID, size and tar-split with the CRC-64 of every file recorded on
 * the way), and a tar of the tree to commit is written to `ostree commit --tree=tar=/dev/fd/3` (an
 * anonymous pipe) as it is read, so that libostree hashes and stores the files on one core while this process decompresses,
 * verifies and parses the layer on the other.
 *
 * The tar written is not the layer: it describes the tree `applyLayer` (of `@gantry/layer-tree`, with
 * `whiteouts: 'apply'`) gives in a fresh directory, after which the destination kept every whiteout as an
 * empty `.wh.` file and left devices and fifos out. Each entry of that tree is written with the exact
 * owner, mode and extended attributes it would have on disk, so both give the same OSTree tree:
 * - the root directory first (mode 0755 less the umask and this process's owner, or the layer's `./`
 *   entry), then every directory a layer entry needs but does not list, made as `applyLayer` makes them
 *   (mode 0755 less the umask, this process's owner);
 * - parent paths resolved through the symbolic links the layer made (as if the layer were `/`);
 * - regular files, directories, symbolic links (mode 0777, as Linux reports them) and hard links, with
 *   the layer's owners as root, or this process's owner without root (where `chown` fails and
 *   `applyLayer` leaves the file ours), and the extended attributes an unprivileged process can set
 *   (`user.*`) without root;
 * - whiteouts as empty files (mode 0644 less the umask, this process's owner), written last;
 * - devices and fifos left out (OSTree stores neither), their parent directories kept.
 * Hostile entries are refused with `applyLayer`'s errors: absolute names, names climbing out with `..`,
 * symbolic links whose relative target climbs out, hard links outside the layer or to nothing. Two cases
 * OSTree's tar import cannot express are refused too (`ERR_GANTRY_INVALID_LAYER`): an entry replacing a
 * directory the same layer made with a non-directory, or the reverse.
 */
import { randomBytes } from 'node:crypto';
import { closeSync } from 'node:fs';
import { ErrorCodes, GantryError } from '@gantry/core/transport';
import { Crc64, cleanPath, layerError, TarSplitWriter, TarStreamReader } from '@gantry/layer-tree';
import { SpawnedProcess } from './child-process.js';
import type { TreeChecksums } from './gvariant.js';
import { makePipe } from './native.js';
import { NativeTree } from './native-tree.js';
import { PipeWriter } from './pipe-writer.js';
import { type OstreeRepository, ostreeError } from './repository.js';

const whiteoutPrefix = '.wh.';
const whiteoutMetaPrefix = '.wh..wh.';
const opaqueWhiteout = '.wh..wh..opq';
const maxSymlinkHops = 255;
const block = 512;

interface Owner {
  uid: number;
  gid: number;
}

type TreeNode = { kind: 'directory' } | { kind: 'file' } | { kind: 'symlink'; target: string };

export interface LayerStreamResult {
  /** `sha256:<hex>` of every byte of the layer tar (the DiffID). */
  uncompressedDigest: string;
  uncompressedSize: number;
  /** The layer's tar-split, gzip-compressed. */
  tarSplitGzip: Buffer;
}

export interface LayerStreamOptions {
  /** Without root: every entry owned by this process, extended attributes outside `user.*` dropped. */
  rootless: boolean;
  signal?: AbortSignal | undefined;
  /**
   * Who builds the tree and writes its objects: `native`, this process (`NativeTree`: a `bare`
   * repository, as root, without `min-free-space-size` or `per-object-fsync`), or `ostree commit`
   * fed a tar. Default: native where the repository allows it (`OstreeRepository.nativeWrites`).
   */
  writer?: 'native' | 'ostree' | undefined;
}

/** An octal numeric field of a ustar header, or undefined when the value does not fit. */
function octal(value: number, width: number): string | undefined {
  const text = value.toString(8);
  return text.length > width - 1 ? undefined : `${text.padStart(width - 1, '0')}\0`;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'latin1'), value, Buffer.from('\n')]);
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length = String(length).length + body.length;
  return Buffer.concat([Buffer.from(String(length), 'latin1'), body]);
}

function padding(size: number): number {
  return (block - (size % block)) % block;
}

interface HeaderFields {
  /** Path inside the tree (byte string, one character per byte), '' for the root. */
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'hardlink';
  mode: number;
  owner: Owner;
  size?: number;
  /** Symbolic link target or hard link target path (byte string). */
  link?: string;
  xattrs?: ReadonlyArray<[string, Buffer]>;
}

/** The header blocks of one entry of the tar written to `ostree commit`: ustar, with a PAX header when needed. */
export function encodeTarHeader(fields: HeaderFields): Buffer {
  const name = Buffer.from(
    fields.path === '' ? './' : `./${fields.path}${fields.type === 'directory' ? '/' : ''}`,
    'latin1',
  );
  const link = Buffer.from(fields.link ?? '', 'latin1');
  const size = fields.size ?? 0;
  const records: Buffer[] = [];
  const header = Buffer.alloc(block);
  if (name.length <= 100) name.copy(header, 0);
  else records.push(paxRecord('path', name));
  if (link.length <= 100) link.copy(header, 157);
  else records.push(paxRecord('linkpath', link));
  const numeric = (offset: number, width: number, value: number, key: string) => {
    const field = octal(value, width);
    if (field !== undefined) header.write(field, offset, 'latin1');
    else {
      header.write(octal(0, width)!, offset, 'latin1');
      records.push(paxRecord(key, Buffer.from(String(value), 'latin1')));
    }
  };
  header.write(octal(fields.mode & 0o7777, 8)!, 100, 'latin1');
  numeric(108, 8, fields.owner.uid, 'uid');
  numeric(116, 8, fields.owner.gid, 'gid');
  numeric(124, 12, size, 'size');
  header.write(octal(0, 12)!, 136, 'latin1');
  header.write({ file: '0', hardlink: '1', symlink: '2', directory: '5' }[fields.type], 156, 'latin1');
  header.write('ustar\x0000', 257, 'latin1');
  for (const [key, value] of fields.xattrs ?? []) records.push(paxRecord(`SCHILY.xattr.${key}`, value));
  header.write('        ', 148, 'latin1');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  if (records.length === 0) return header;
  const pax = Buffer.concat(records);
  const paxHeader = Buffer.alloc(block);
  Buffer.from('./PaxHeaders/entry', 'latin1').copy(paxHeader, 0);
  paxHeader.write(octal(0o644, 8)!, 100, 'latin1');
  paxHeader.write(octal(0, 8)!, 108, 'latin1');
  paxHeader.write(octal(0, 8)!, 116, 'latin1');
  paxHeader.write(octal(pax.length, 12)!, 124, 'latin1');
  paxHeader.write(octal(0, 12)!, 136, 'latin1');
  paxHeader.write('x', 156, 'latin1');
  paxHeader.write('ustar\x0000', 257, 'latin1');
  paxHeader.write('        ', 148, 'latin1');
  let paxSum = 0;
  for (const byte of paxHeader) paxSum += byte;
  paxHeader.write(`${paxSum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return Buffer.concat([paxHeader, pax, Buffer.alloc(padding(pax.length)), header]);
}

function joinRelative(directory: string, base: string): string {
  return directory === '' ? base : `${directory}/${base}`;
}

function splitName(clean: string): { parent: string[]; base: string } {
  const slash = clean.lastIndexOf('/');
  if (slash === -1) return { parent: [], base: clean };
  return { parent: clean.slice(0, slash).split('/'), base: clean.slice(slash + 1) };
}

/** What one stream committed: the layer's tree and the directories appended to it, by name. */
export interface StreamedTrees {
  layer?: TreeChecksums;
  directories: Map<string, TreeChecksums>;
}

/**
 * One `ostree commit` fed a tar stream: at most one layer (`consume`), then any small directories of
 * files (`appendDirectory`: the config, the image's manifest tree), each as a subdirectory of the
 * streamed tree's root named with a random token (so that the root's listing is this stream's alone,
 * and `publishInto` can leave it out). `consume` reads the layer and writes its tree's tar, all but the
 * end-of-archive blocks (`ostree` commits as soon as it reads them); `finish` writes them (call it only
 * once the blob is verified) and returns each subdirectory's tree checksums, for commits of their own;
 * `abort` stops it, so it commits nothing.
 */
export class LayerStreamCommit {
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private stdout = '';
  private stderr = '';
  private spawnError: Error | undefined;

  private options!: LayerStreamOptions;
  private repository!: OstreeRepository;
  /** The random part of the subdirectories' names. */
  private readonly token = randomBytes(8).toString('hex');
  private begun = false;
  private hasLayer = false;
  private readonly appended = new Map<string, string>();

  private constructor(
    private readonly child: SpawnedProcess | undefined,
    /** The tree built in this process, when no `ostree` process is (see `LayerStreamOptions.writer`). */
    private readonly native?: NativeTree,
  ) {
    if (!child) {
      this.exited = Promise.resolve({ code: 0, signal: null });
      return;
    }
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      this.stdout += text;
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      this.stderr += text;
    });
    const recordFailure = (error: Error) => {
      this.spawnError ??= error;
    };
    child.stdout.on('error', recordFailure);
    child.stderr.on('error', recordFailure);
    this.exited = new Promise((resolve) => {
      child.on('close', (code, signal) => resolve({ code, signal }));
    });
  }

  private input!: PipeWriter;

  /** Writes an entry of the tree: a tar header to `ostree`, or into the native tree. */
  private entry(fields: HeaderFields): Promise<void> | undefined {
    const native = this.native;
    if (!native) return this.input.write(encodeTarHeader(fields));
    switch (fields.type) {
      case 'directory':
        return native.directory(fields.path, fields.mode, fields.owner, fields.xattrs);
      case 'file':
        return native.file(fields.path, fields.mode, fields.owner, fields.size ?? 0, fields.xattrs);
      case 'symlink':
        return native.symlink(fields.path, fields.link ?? '', fields.owner, fields.xattrs);
      case 'hardlink':
        native.hardlink(fields.path, fields.link ?? '');
        return undefined;
    }
  }

  /** The next bytes of the current file. */
  private data(chunk: Buffer): Promise<void> | undefined {
    return this.native ? this.native.data(chunk) : this.input.write(chunk);
  }

  /** After a file's bytes: the tar's padding. */
  private endData(size: number): Promise<void> | undefined {
    if (this.native || padding(size) === 0) return undefined;
    return this.input.write(Buffer.alloc(padding(size)));
  }

  /**
   * Starts `ostree commit` in the repository at `repositoryPath`, reading the tree's tar from the read
   * end of an anonymous pipe it gets as descriptor 3 (`--tree=tar=/dev/fd/3`: libarchive opens the path
   * it is given, which a pipe allows and Node's socket stdio does not). Nothing is made on disk for it,
   * so a process killed mid-layer leaves no fifo behind; the child reads end of file then and fails.
   */
  static start(repository: OstreeRepository, options: LayerStreamOptions): LayerStreamCommit {
    const native = options.writer ?? (repository.nativeWrites() ? 'native' : 'ostree');
    if (native === 'native') {
      const layer = new LayerStreamCommit(
        undefined,
        new NativeTree(repository.path, repository.freeSpacePercent()),
      );
      layer.options = options;
      layer.repository = repository;
      return layer;
    }
    const repositoryPath = repository.path;
    const args = [
      'commit',
      `--repo=${repositoryPath}`,
      '--orphan',
      '--parent=none',
      '--subject=',
      '--tree=tar=/dev/fd/3',
    ];
    const [readEnd, writeEnd] = makePipe();
    let child: SpawnedProcess;
    try {
      child = SpawnedProcess.start('ostree', args, readEnd);
    } catch (error) {
      closeSync(writeEnd);
      throw ostreeError(args, error, '', options.signal);
    } finally {
      closeSync(readEnd); // the child has its own copy: the pipe ends when it exits
    }
    const layer = new LayerStreamCommit(child);
    layer.options = options;
    layer.repository = repository;
    layer.input = new PipeWriter(writeEnd);
    return layer;
  }

  private failure(cause?: unknown): Error {
    const args = ['commit', `--repo=${this.repository.path}`];
    const nativeFailure = this.native?.failed;
    if (nativeFailure) return ostreeError(args, nativeFailure, nativeFailure.message, this.options.signal);
    if (this.spawnError) return ostreeError(args, this.spawnError, '', this.options.signal);
    return ostreeError(args, cause ?? new Error('failed'), this.stderr, this.options.signal);
  }

  /**
   * The streamed tree's root, first: mode 0755 less the umask, this process's owner, as the manifest's
   * directory (`appendDirectory`), so that its metadata object is one a published commit uses.
   */
  private async begin(): Promise<void> {
    if (this.begun) return;
    this.begun = true;
    const owner: Owner = { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 };
    await this.entry({ path: '', type: 'directory', mode: 0o755 & ~process.umask(), owner });
  }

  /**
   * Appends the directory `name` (mode `mode`, this process's owner) holding `files` (mode 0644 less the
   * umask, this process's owner), as writing them to a fresh directory and `ostree commit --tree=dir=`
   * would commit them. Only after `consume`.
   */
  async appendDirectory(
    name: string,
    mode: number,
    files: ReadonlyArray<[string, Uint8Array]>,
  ): Promise<void> {
    await this.begin();
    const owner: Owner = { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 };
    const base = `${this.token}${this.appended.size}`;
    this.appended.set(base, name);
    try {
      await this.entry({ path: base, type: 'directory', mode, owner });
      for (const [file, bytes] of files) {
        const size = bytes.byteLength;
        const fileMode = 0o644 & ~process.umask();
        await this.entry({ path: `${base}/${file}`, type: 'file', mode: fileMode, owner, size });
        await this.data(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
        await this.endData(size);
      }
      if (this.native) this.native.push();
      else await this.input.flush();
    } catch (error) {
      if (this.native?.failed) throw this.failure(error);
      throw error;
    }
  }

  async consume(source: AsyncIterable<Uint8Array>): Promise<LayerStreamResult> {
    const { signal, rootless } = this.options;
    const umask = process.umask();
    const self: Owner = { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 };
    if (this.hasLayer || this.appended.size > 0) {
      throw new GantryError(ErrorCodes.Internal, 'a stream takes one layer, before anything else');
    }
    this.hasLayer = true;
    await this.begin();
    // The layer is the subdirectory `<token>l` of the streamed tree.
    const layerDirectory = `${this.token}l`;
    const at = (relative: string) => (relative === '' ? layerDirectory : `${layerDirectory}/${relative}`);
    const layerHeader = (fields: HeaderFields): HeaderFields => ({
      ...fields,
      path: at(fields.path),
      ...(fields.type === 'hardlink' ? { link: at(fields.link ?? '') } : {}),
    });
    const reader = new TarStreamReader(source);
    const tarSplit = new TarSplitWriter();
    const tree = new Map<string, TreeNode>();
    const whiteouts: string[] = [];
    let rootWritten = false;
    let succeeded = false;

    const write = async (fields: HeaderFields) => {
      if (this.spawnError) throw this.failure(this.spawnError);
      await this.entry(fields);
    };
    const ownerOf = (header: { uid: number; gid: number }): Owner =>
      rootless ? self : { uid: header.uid >>> 0, gid: header.gid >>> 0 };
    // OSTree hashes extended attributes in name order (as it reads them from disk); libarchive hands
    // them over in the reverse of their order in the tar: so they are written in reverse name order.
    const xattrsOf = (xattrs: Map<string, Buffer>): Array<[string, Buffer]> =>
      [...xattrs]
        .filter(([name]) => !rootless || name.startsWith('user.'))
        .sort(([a], [b]) => (a < b ? 1 : a > b ? -1 : 0));
    const writeRoot = async (mode = 0o755 & ~umask, owner = self, xattrs: Array<[string, Buffer]> = []) => {
      rootWritten = true;
      tree.set('', { kind: 'directory' });
      await write(layerHeader({ path: '', type: 'directory', mode, owner, xattrs }));
    };
    const makeDirectory = async (relative: string) => {
      tree.set(relative, { kind: 'directory' });
      await write(layerHeader({ path: relative, type: 'directory', mode: 0o755 & ~umask, owner: self }));
    };

    /** `LayerRoot.resolveDirectory` on the tree written so far: symbolic links followed inside the layer. */
    const resolveDirectory = async (
      components: string[],
      entry: string,
      create: boolean,
    ): Promise<string | undefined> => {
      const pending = components.slice().reverse();
      const resolved: string[] = [];
      let hops = 0;
      while (pending.length > 0) {
        const component = pending.pop() as string;
        if (component === '' || component === '.') continue;
        if (component === '..') {
          resolved.pop();
          continue;
        }
        resolved.push(component);
        const relative = resolved.join('/');
        const node = tree.get(relative);
        if (node === undefined) {
          if (!create) return undefined;
          await makeDirectory(relative);
          continue;
        }
        if (node.kind === 'directory') continue;
        if (node.kind === 'symlink') {
          if (++hops > maxSymlinkHops)
            throw layerError(`layer tar: entry "${entry}": too many levels of symbolic links`);
          resolved.pop();
          if (node.target.startsWith('/')) resolved.length = 0;
          const targetComponents = node.target.split('/');
          for (let index = targetComponents.length - 1; index >= 0; index--)
            pending.push(targetComponents[index] as string);
          continue;
        }
        throw layerError(`layer tar: entry "${entry}": "${relative}" is not a directory`);
      }
      return resolved.join('/');
    };

    /** Reads the entry's content (CRC-64 into the tar-split), writing it to `ostree` when `forward`. */
    const recordData = async (nameBytes: Buffer, size: number, forward: boolean) => {
      const crc = size > 0 ? new Crc64() : undefined;
      let written = 0;
      for (;;) {
        const chunk = await reader.readData();
        if (chunk === undefined) break;
        signal?.throwIfAborted();
        crc?.update(chunk);
        if (forward) {
          written += chunk.length;
          if (written > size)
            throw layerError(`layer tar: entry "${nameBytes.toString()}" is longer than its size`);
          await this.data(chunk);
        }
      }
      tarSplit.addFile(nameBytes, size, crc ? crc.digest() : null);
      if (forward) {
        if (written !== size) throw layerError(`layer tar: entry "${nameBytes.toString()}" is truncated`);
        await this.endData(size);
      }
    };

    try {
      for (;;) {
        signal?.throwIfAborted();
        const entry = await reader.next();
        if (entry === undefined) break;
        tarSplit.addSegment(entry.raw);
        const { header } = entry;
        if (header.type === 'pax-global-header') {
          tarSplit.addFile(header.nameBytes, 0, null);
          continue;
        }
        const display = header.name;
        const rawName = header.nameBytes.toString('latin1');
        if (rawName.startsWith('/')) throw layerError(`layer tar: entry "${display}" has an absolute name`);
        const clean = cleanPath(rawName);
        if (clean === '..' || clean.startsWith('../'))
          throw layerError(`layer tar: entry "${display}" climbs out of the layer with ".."`);
        const owner = ownerOf(header);

        if (clean === '.') {
          if (header.type !== 'directory')
            throw layerError(`layer tar: entry "${display}" replaces the layer's root with a non-directory`);
          await recordData(header.nameBytes, header.size, false);
          // Written again when it is not the first entry: OSTree keeps the last metadata of a directory.
          await writeRoot(header.mode & 0o7777, owner, xattrsOf(header.xattrs));
          continue;
        }
        if (!rootWritten) await writeRoot();
        const { parent, base } = splitName(clean);

        if (base.startsWith(whiteoutPrefix)) {
          await recordData(header.nameBytes, header.size, false);
          whiteouts.push(clean);
          if (base.startsWith(whiteoutMetaPrefix) && base !== opaqueWhiteout) continue;
          await resolveDirectory(parent, display, true);
          continue;
        }

        const directory = (await resolveDirectory(parent, display, true)) as string;
        const relative = joinRelative(directory, base);
        const existing = tree.get(relative);
        if (existing !== undefined && (existing.kind === 'directory') !== (header.type === 'directory')) {
          throw layerError(
            `layer tar: entry "${display}" replaces a ${existing.kind === 'directory' ? 'directory' : 'non-directory'} this layer made with a ${header.type}, which an OSTree commit made from a tar stream cannot express`,
          );
        }
        switch (header.type) {
          case 'directory':
            await recordData(header.nameBytes, header.size, false);
            tree.set(relative, { kind: 'directory' });
            await write(
              layerHeader({
                path: relative,
                type: 'directory',
                mode: header.mode,
                owner,
                xattrs: xattrsOf(header.xattrs),
              }),
            );
            break;
          case 'file':
            tree.set(relative, { kind: 'file' });
            await write(
              layerHeader({
                path: relative,
                type: 'file',
                mode: header.mode,
                owner,
                size: header.size,
                xattrs: xattrsOf(header.xattrs),
              }),
            );
            await recordData(header.nameBytes, header.size, true);
            break;
          case 'hardlink': {
            await recordData(header.nameBytes, header.size, false);
            const linkRaw = header.linkNameBytes.toString('latin1');
            const linkClean = cleanPath(linkRaw);
            if (
              linkRaw.startsWith('/') ||
              linkClean === '..' ||
              linkClean.startsWith('../') ||
              linkClean === '.'
            ) {
              throw layerError(
                `layer tar: entry "${display}" is a hard link to "${header.linkName}", outside the layer`,
              );
            }
            const { parent: linkParent, base: linkBase } = splitName(linkClean);
            const linkDirectory = await resolveDirectory(linkParent, display, false);
            const target = linkDirectory === undefined ? undefined : joinRelative(linkDirectory, linkBase);
            const targetNode = target === undefined ? undefined : tree.get(target);
            if (target === undefined || targetNode === undefined) {
              throw layerError(
                `layer tar: entry "${display}" is a hard link to "${header.linkName}", which does not exist`,
              );
            }
            if (targetNode.kind === 'directory') {
              throw layerError(`layer tar: entry "${display}" is a hard link to a directory`);
            }
            tree.set(relative, targetNode);
            await write(
              layerHeader({ path: relative, type: 'hardlink', mode: header.mode, owner, link: target }),
            );
            break;
          }
          case 'symlink': {
            await recordData(header.nameBytes, header.size, false);
            const linkRaw = header.linkNameBytes.toString('latin1');
            if (!linkRaw.startsWith('/')) {
              const resolved = cleanPath(
                `${clean.includes('/') ? clean.slice(0, clean.lastIndexOf('/')) : '.'}/${linkRaw}`,
              );
              if (resolved === '..' || resolved.startsWith('../')) {
                throw layerError(
                  `layer tar: entry "${display}" is a symbolic link to "${header.linkName}", outside the layer`,
                );
              }
            }
            tree.set(relative, { kind: 'symlink', target: linkRaw });
            await write(
              layerHeader({
                path: relative,
                type: 'symlink',
                mode: 0o777,
                owner,
                link: linkRaw,
                xattrs: xattrsOf(header.xattrs),
              }),
            );
            break;
          }
          case 'character-device':
          case 'block-device':
          case 'fifo':
            // OSTree stores neither: recorded in the tar-split only.
            await recordData(header.nameBytes, header.size, false);
            break;
          default:
            throw layerError(`layer tar: entry "${display}" has an unsupported type`);
        }
      }
      if (!rootWritten) await writeRoot();
      // Whiteouts kept as empty files, at their names (parents made when missing; none through a link).
      for (const clean of whiteouts) {
        const components = clean.split('/');
        const base = components.pop() as string;
        let directory = '';
        let safe = true;
        for (const component of components) {
          directory = joinRelative(directory, component);
          const node = tree.get(directory);
          if (node === undefined) await makeDirectory(directory);
          else if (node.kind !== 'directory') {
            safe = false;
            break;
          }
        }
        if (!safe) continue;
        const relative = joinRelative(directory, base);
        if (tree.get(relative)?.kind === 'directory') continue;
        tree.set(relative, { kind: 'file' });
        await write(
          layerHeader({ path: relative, type: 'file', mode: 0o644 & ~umask, owner: self, size: 0 }),
        );
      }
      // The end-of-archive blocks are written by `finish`: `ostree` commits as soon as it reads them.
      if (this.native) this.native.push();
      else this.input.push();
      tarSplit.addSegment(reader.end);
      for await (const chunk of reader.trailing()) tarSplit.addSegment(chunk);
      tarSplit.finishTrailer();
      const tarSplitGzip = await tarSplit.finish();
      succeeded = true;
      return {
        uncompressedDigest: `sha256:${reader.digestHex()}`,
        uncompressedSize: reader.bytesRead,
        tarSplitGzip,
      };
    } catch (error) {
      if (this.native?.failed) throw this.failure(error);
      if (error instanceof GantryError) throw error;
      if (this.native) throw error;
      if (this.input.failed !== undefined || this.spawnError !== undefined) {
        // `ostree` stopped reading: its message says why.
        await this.exited;
        throw this.failure(error);
      }
      throw error;
    } finally {
      if (!succeeded) {
        reader.close();
        tarSplit.destroy();
      }
    }
  }

  /**
   * Ends the tar and waits for `ostree commit`: the tree checksums of the layer and of each appended
   * directory. The commit `ostree commit` made of the whole stream and its root listing stay in the
   * repository, left out when it is published.
   */
  async finish(): Promise<StreamedTrees> {
    this.options.signal?.throwIfAborted();
    await this.begin();
    if (this.native) return this.finishNative(this.native);
    let writeFailure: { error: unknown } | undefined;
    await this.input.end(Buffer.alloc(2 * block)).catch((error: unknown) => {
      writeFailure = { error }; // `ostree` stopped reading: its exit status and message say why
    });
    const { code, signal } = await this.exited;
    if (this.spawnError || code !== 0 || writeFailure) {
      throw this.failure(
        code !== 0 || !writeFailure
          ? new Error(signal ? `killed by ${signal}` : `exit status ${code}`)
          : writeFailure.error,
      );
    }
    const checksum = this.stdout.trim();
    if (!/^[0-9a-f]{64}$/.test(checksum)) {
      throw new GantryError(ErrorCodes.Internal, `ostree commit printed "${checksum}", not a checksum`);
    }
    const subdirectories = await this.repository.subdirectoriesOf(checksum);
    const tree = (name: string): TreeChecksums => {
      const found = subdirectories.get(name);
      if (!found) throw new GantryError(ErrorCodes.Internal, `ostree commit ${checksum} has no ${name}/`);
      return found;
    };
    const directories = new Map<string, TreeChecksums>();
    for (const [base, name] of this.appended) directories.set(name, tree(base));
    return { ...(this.hasLayer ? { layer: tree(`${this.token}l`) } : {}), directories };
  }

  /** `finish` of a tree built in this process: the layer's and appended directories' dirtrees written. */
  private async finishNative(native: NativeTree): Promise<StreamedTrees> {
    const layerDirectory = `${this.token}l`;
    const names = [...(this.hasLayer ? [layerDirectory] : []), ...this.appended.keys()];
    let trees: Map<string, TreeChecksums>;
    try {
      trees = await native.finish(names);
    } catch (error) {
      if (native.failed) throw this.failure(error);
      throw error;
    }
    const directories = new Map<string, TreeChecksums>();
    for (const [base, name] of this.appended) directories.set(name, trees.get(base)!);
    return { ...(this.hasLayer ? { layer: trees.get(layerDirectory)! } : {}), directories };
  }

  /** Stops `ostree commit` before it has read the end of the tar: nothing is committed. */
  async abort(): Promise<void> {
    if (this.native) {
      await this.native.abort();
      return;
    }
    if (!this.child) return;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.input.destroy();
    await this.exited;
  }
}
