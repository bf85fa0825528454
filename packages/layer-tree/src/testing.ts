/**
 * Test helpers (export `@gantry/layer-tree/testing`): running the real tools (GNU tar, podman, getfattr),
 * building a file tree with every kind of entry, and describing a tree so two can be compared.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { chmod, chown, link, lutimes, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { nativeCalls, S_IFCHR, S_IFIFO } from './native.js';

const execFileAsync = promisify(execFile);

/** Runs a real program; fails loudly (never skips) naming the program, its arguments and its stderr. */
export async function runTool(
  program: string,
  args: readonly string[],
  options: { cwd?: string; input?: Buffer } = {},
): Promise<Buffer> {
  try {
    const child = execFileAsync(program, [...args], {
      encoding: 'buffer',
      maxBuffer: 256 * 1024 * 1024,
      cwd: options.cwd,
    });
    if (options.input !== undefined) child.child.stdin?.end(options.input);
    const { stdout } = await child;
    return stdout;
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: Buffer };
    if (failure.code === 'ENOENT') {
      throw new Error(
        `${program} is needed by this test but is not installed (scripts/install-test-tools.sh installs it)`,
      );
    }
    throw new Error(`${program} ${args.join(' ')} failed: ${failure.stderr?.toString() || failure.message}`);
  }
}

/** podman with its own graph root and run root (never the machine's store). */
export function runPodman(
  store: { graphRoot: string; runRoot: string; driver: string },
  args: readonly string[],
): Promise<Buffer> {
  return runTool('podman', [
    '--root',
    store.graphRoot,
    '--runroot',
    store.runRoot,
    '--storage-driver',
    store.driver,
    ...args,
  ]);
}

/**
 * Creates under `directory` a tree with every kind of layer entry: nested directories, files (empty,
 * small, bigger than a block, one with set-uid), a name longer than 100 bytes, a non-ASCII name, names
 * with JSON-special characters, a symbolic link (relative and absolute), a hard link, a fifo, a character
 * device, owners other than root, and extended attributes (`user.*`, `security.capability`).
 */
export async function makeRichTree(directory: string): Promise<void> {
  const native = nativeCalls();
  await mkdir(join(directory, 'etc/deep/er/still'), { recursive: true });
  await writeFile(join(directory, 'etc/empty'), '');
  await writeFile(join(directory, 'etc/hosts'), '127.0.0.1 localhost\n');
  await writeFile(
    join(directory, 'etc/deep/er/still/big.bin'),
    createHash('sha512').update('seed').digest().toString('hex').repeat(200),
  );
  const longName = `${'a-very-long-directory-name-'.repeat(3)}/${'and-a-file-name-that-is-long-too-'.repeat(4)}.txt`;
  await mkdir(join(directory, longName, '..'), { recursive: true });
  await writeFile(join(directory, longName), 'long\n');
  await writeFile(join(directory, 'etc/ünïcødé ✓.txt'), 'unicode\n');
  await writeFile(join(directory, 'etc/quote"<amp&>\\.txt'), 'json\n');
  await writeFile(join(directory, 'etc/setuid-tool'), '#!/bin/sh\n');
  await chmod(join(directory, 'etc/setuid-tool'), 0o4755);
  await writeFile(join(directory, 'etc/owned'), 'owned\n');
  await chown(join(directory, 'etc/owned'), 1000, 1001);
  await mkdir(join(directory, 'home/user'), { recursive: true });
  await chown(join(directory, 'home/user'), 1000, 1000);
  await chmod(join(directory, 'home/user'), 0o700);
  await symlink('hosts', join(directory, 'etc/hosts-link'));
  await symlink('/etc/hosts', join(directory, 'etc/absolute-link'));
  await link(join(directory, 'etc/hosts'), join(directory, 'etc/hosts-hardlink'));
  native.mknod(Buffer.from(join(directory, 'etc/fifo')), S_IFIFO | 0o644, 0, 0);
  native.mknod(Buffer.from(join(directory, 'etc/null')), S_IFCHR | 0o666, 1, 3);
  native.lsetxattr(Buffer.from(join(directory, 'etc/hosts')), 'user.comment', Buffer.from('hello'));
  // security.capability: cap_net_bind_service+ep (VFS_CAP_REVISION_2)
  native.lsetxattr(
    Buffer.from(join(directory, 'etc/setuid-tool')),
    'security.capability',
    Buffer.from('0100000200040000000000000000000000000000', 'hex'),
  );
  await chmod(join(directory, 'etc/setuid-tool'), 0o4755);
  const fixed = new Date('2024-01-02T03:04:05Z');
  for (const path of ['etc/hosts', 'etc/empty', 'etc/owned', longName])
    await lutimes(join(directory, path), fixed, fixed);
}

export interface TreeEntry {
  path: string;
  type: string;
  mode: string;
  uid: number;
  gid: number;
  /** Content sha256 (files), link target (symlinks), major:minor (devices). */
  content?: string;
  xattrs: Record<string, string>;
  /** Modification time in whole seconds (left out for directories unless asked). */
  mtime?: number;
  /** Files sharing an inode get the same group name (the first path of the group). */
  hardlinkGroup?: string;
}

/**
 * Describes every entry under `directory` (sorted by path), for comparing two trees: type, mode, owner,
 * content hash or link target or device numbers, extended attributes (hex values), mtime, hard-link groups.
 */
export function describeTree(
  directory: string,
  options: { directoryTimes?: boolean; mtimes?: boolean } = {},
): TreeEntry[] {
  const native = nativeCalls();
  const out: TreeEntry[] = [];
  const inodes = new Map<string, string>();
  const walk = (relative: string): void => {
    const names = readdirSync(join(directory, relative)).sort();
    for (const name of names) {
      const path = relative === '' ? name : `${relative}/${name}`;
      const full = join(directory, path);
      const stats = lstatSync(full);
      const xattrs: Record<string, string> = {};
      for (const key of native.llistxattr(Buffer.from(full)).sort()) {
        if (key === 'security.selinux') continue;
        xattrs[key] = native.lgetxattr(Buffer.from(full), key)?.toString('hex') ?? '';
      }
      const type = stats.isDirectory()
        ? 'directory'
        : stats.isFile()
          ? 'file'
          : stats.isSymbolicLink()
            ? 'symlink'
            : stats.isCharacterDevice()
              ? 'char'
              : stats.isBlockDevice()
                ? 'block'
                : stats.isFIFO()
                  ? 'fifo'
                  : 'other';
      const entry: TreeEntry = {
        path,
        type,
        mode: (stats.mode & 0o7777).toString(8),
        uid: stats.uid,
        gid: stats.gid,
        xattrs,
      };
      if (type === 'file') entry.content = createHash('sha256').update(readFileSync(full)).digest('hex');
      if (type === 'symlink') entry.content = readlinkSync(full);
      if (type === 'char' || type === 'block')
        entry.content = `${(stats.rdev >> 8) & 0xfff}:${(stats.rdev & 0xff) | ((stats.rdev >> 12) & 0xfff00)}`;
      // An overlay whiteout (0/0 character device) carries the time it was made, not one from the layer.
      const whiteout = type === 'char' && entry.content === '0:0';
      if (options.mtimes !== false && !whiteout && (type !== 'directory' || options.directoryTimes)) {
        entry.mtime = Math.floor(stats.mtimeMs / 1000);
      }
      if (type !== 'directory' && stats.nlink > 1) {
        const key = `${stats.dev}:${stats.ino}`;
        const group = inodes.get(key) ?? path;
        inodes.set(key, group);
        entry.hardlinkGroup = group;
      }
      out.push(entry);
      if (type === 'directory') walk(path);
    }
  };
  walk('');
  return out;
}

/** The decompressed JSON lines of a gzip-compressed tar-split. */
export async function tarSplitLines(gzip: Uint8Array): Promise<string[]> {
  const { gunzipSync } = await import('node:zlib');
  return gunzipSync(gzip)
    .toString('utf8')
    .split('\n')
    .filter((line) => line !== '');
}

/**
 * Writes an OCI layout (tag `t`) whose layers are the given uncompressed tars, in order: for storing
 * hand-made layers (devices, xattrs, whiteouts made with GNU tar) through skopeo.
 */
export async function ociLayoutFromTars(layout: string, tarPaths: readonly string[]): Promise<string> {
  const { copyFile } = await import('node:fs/promises');
  await mkdir(join(layout, 'blobs/sha256'), { recursive: true });
  const writeBlob = async (bytes: Buffer): Promise<{ digest: string; size: number }> => {
    const hex = createHash('sha256').update(bytes).digest('hex');
    await writeFile(join(layout, 'blobs/sha256', hex), bytes);
    return { digest: `sha256:${hex}`, size: bytes.length };
  };
  const layers: Array<{ mediaType: string; digest: string; size: number }> = [];
  for (const tarPath of tarPaths) {
    const bytes = readFileSync(tarPath);
    const hex = createHash('sha256').update(bytes).digest('hex');
    await copyFile(tarPath, join(layout, 'blobs/sha256', hex));
    layers.push({
      mediaType: 'application/vnd.oci.image.layer.v1.tar',
      digest: `sha256:${hex}`,
      size: bytes.length,
    });
  }
  const config = await writeBlob(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: {},
        rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.digest) },
      }),
    ),
  );
  const manifest = await writeBlob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers,
      }),
    ),
  );
  await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': 't' },
        },
      ],
    }),
  );
  return layout;
}

/**
 * Makes the upper layer's tree for `makeRichTree`'s lower one, with every kind of change: a file
 * replaced, a file deleted (`.wh.`), a directory made opaque (`.wh..wh..opq`) with a new file in it, a
 * directory replaced by a file, a file replaced by a directory, a new hard link and a new device.
 */
export async function makeChangesTree(directory: string): Promise<void> {
  await mkdir(join(directory, 'etc/deep'), { recursive: true });
  await writeFile(join(directory, 'etc/hosts'), '10.0.0.1 replaced\n');
  await writeFile(join(directory, 'etc/.wh.empty'), '');
  await writeFile(join(directory, 'etc/deep/.wh..wh..opq'), '');
  await writeFile(join(directory, 'etc/deep/new-in-opaque'), 'new\n');
  await writeFile(join(directory, 'home'), 'home is a file now\n');
  await mkdir(join(directory, 'etc/owned'), { recursive: true });
  await writeFile(join(directory, 'etc/owned/inside'), 'inside\n');
  await link(join(directory, 'etc/deep/new-in-opaque'), join(directory, 'etc/deep/new-link'));
  nativeCalls().mknod(Buffer.from(join(directory, 'etc/zero')), S_IFCHR | 0o666, 1, 5);
}

/**
 * Unmounts every mount point under `directory`, deepest first (containers/storage's overlay driver
 * bind-mounts its home onto itself, so a test store cannot be removed before this).
 */
export async function unmountUnder(directory: string): Promise<void> {
  const { readFile: read } = await import('node:fs/promises');
  const mounts = (await read('/proc/self/mounts', 'utf8'))
    .split('\n')
    .map((line) => line.split(' ')[1])
    .filter((point): point is string => point !== undefined)
    .map((point) =>
      point.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8))),
    )
    .filter((point) => point.startsWith(`${directory}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of mounts) await runTool('umount', [point]);
}

export interface HandMadeTarEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';
  content?: string | Buffer;
  linkName?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  devMajor?: number;
  devMinor?: number;
  /** PAX records written in an `x` header before the entry. */
  pax?: Record<string, string | Buffer>;
}

function octalField(value: number, length: number): string {
  return `${value.toString(8).padStart(length - 1, '0')}\0`;
}

function ustarHeader(name: string, typeFlag: string, size: number, entry: HandMadeTarEntry): Buffer {
  const block = Buffer.alloc(512);
  block.write(name, 0, 100, 'utf8');
  block.write(octalField(entry.mode ?? (typeFlag === '5' ? 0o755 : 0o644), 8), 100, 'latin1');
  block.write(octalField(entry.uid ?? 0, 8), 108, 'latin1');
  block.write(octalField(entry.gid ?? 0, 8), 116, 'latin1');
  block.write(octalField(size, 12), 124, 'latin1');
  block.write(octalField(entry.mtime ?? 1_700_000_000, 12), 136, 'latin1');
  block.write('        ', 148, 'latin1');
  block.write(typeFlag, 156, 'latin1');
  block.write(entry.linkName ?? '', 157, 100, 'utf8');
  block.write('ustar\u000000', 257, 'latin1');
  block.write(octalField(entry.devMajor ?? 0, 8), 329, 'latin1');
  block.write(octalField(entry.devMinor ?? 0, 8), 337, 'latin1');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

function padded(data: Buffer): Buffer[] {
  const padding = (512 - (data.length % 512)) % 512;
  return padding === 0 ? [data] : [data, Buffer.alloc(padding)];
}

/**
 * A tar made byte by byte, for entries real tools refuse to write (names with `..`, absolute names,
 * links out of the archive): ustar headers, PAX records when asked, the two end blocks.
 */
export function handMadeTar(entries: readonly HandMadeTarEntry[]): Buffer {
  const typeFlags = {
    file: '0',
    hardlink: '1',
    symlink: '2',
    char: '3',
    block: '4',
    directory: '5',
    fifo: '6',
  } as const;
  const parts: Buffer[] = [];
  for (const entry of entries) {
    if (entry.pax) {
      const records = Object.entries(entry.pax).map(([key, value]) => {
        const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
        let length = body.length + 1;
        while (`${length}`.length + body.length !== length) length = `${length}`.length + body.length;
        return Buffer.concat([Buffer.from(`${length}`), body]);
      });
      const data = Buffer.concat(records);
      parts.push(ustarHeader('PaxHeaders/x', 'x', data.length, { name: 'PaxHeaders/x' }), ...padded(data));
    }
    const content =
      typeof entry.content === 'string' ? Buffer.from(entry.content) : (entry.content ?? Buffer.alloc(0));
    const typeFlag = typeFlags[entry.type ?? 'file'];
    parts.push(ustarHeader(entry.name, typeFlag, typeFlag === '0' ? content.length : 0, entry));
    if (typeFlag === '0' && content.length > 0) parts.push(...padded(content));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}
