/**
 * The few libc calls Node.js does not offer — mknod (device nodes, fifos, overlay whiteouts) and the
 * l*xattr family — called through koffi, an FFI package whose npm tarball carries prebuilt binaries for
 * each platform (no compiler, no build step, no network at install). It is loaded on first use only, so
 * programs that never apply a layer never load it.
 *
 * Paths are passed as bytes (NUL-terminated Buffers), so names that are not UTF-8 work too.
 */
import { createRequire } from 'node:module';

export interface NativeCalls {
  /** mknod(2): `mode` includes the file type bits (S_IFCHR, S_IFBLK, S_IFIFO). */
  mknod(path: Buffer, mode: number, major: number, minor: number): void;
  lsetxattr(path: Buffer, name: string, value: Uint8Array): void;
  /** The attribute's value, or undefined when the file has no such attribute. */
  lgetxattr(path: Buffer, name: string): Buffer | undefined;
  llistxattr(path: Buffer): string[];
}

export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

/** An error as Node's fs raises it: `code` is the errno name (`EPERM`, `ENOTSUP`, …). */
export class NativeCallError extends Error {
  readonly code: string;
  readonly errno: number;
  constructor(call: string, path: Buffer, errno: number) {
    const code = errnoNames[errno] ?? `E${errno}`;
    super(`${call} ${path.toString('utf8')}: ${code}`);
    this.code = code;
    this.errno = errno;
  }
}

const errnoNames: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  13: 'EACCES',
  17: 'EEXIST',
  20: 'ENOTDIR',
  22: 'EINVAL',
  28: 'ENOSPC',
  34: 'ERANGE',
  61: 'ENODATA',
  95: 'ENOTSUP',
};

function cPath(path: Buffer): Buffer {
  const out = Buffer.allocUnsafe(path.length + 1);
  path.copy(out);
  out[path.length] = 0;
  return out;
}

/** Linux's makedev(). */
function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return (mi & 0xffn) | ((ma & 0xfffn) << 8n) | ((mi & ~0xffn) << 12n) | ((ma & ~0xfffn) << 32n);
}

let loaded: NativeCalls | undefined;

/** The native calls (koffi and libc loaded on the first call). */
export function nativeCalls(): NativeCalls {
  if (loaded) return loaded;
  if (process.platform !== 'linux')
    throw new Error(`layer application needs Linux (mknod, xattrs); this is ${process.platform}`);
  const require = createRequire(import.meta.url);
  const koffi = require('koffi') as typeof import('koffi');
  const libc = koffi.load('libc.so.6');
  const mknod = libc.func('int mknod(const void *path, uint32_t mode, uint64_t dev)');
  const lsetxattr = libc.func(
    'int lsetxattr(const void *path, const char *name, const void *value, size_t size, int flags)',
  );
  const lgetxattr = libc.func(
    'intptr_t lgetxattr(const void *path, const char *name, _Out_ void *value, size_t size)',
  );
  const llistxattr = libc.func('intptr_t llistxattr(const void *path, _Out_ void *list, size_t size)');
  const fail = (call: string, path: Buffer): never => {
    throw new NativeCallError(call, path, koffi.errno());
  };
  loaded = {
    mknod(path, mode, major, minor) {
      if (mknod(cPath(path), mode, makedev(major, minor)) !== 0) fail('mknod', path);
    },
    lsetxattr(path, name, value) {
      const bytes = value.length === 0 ? Buffer.alloc(1) : value;
      if (lsetxattr(cPath(path), name, bytes, value.length, 0) !== 0) fail(`lsetxattr ${name}`, path);
    },
    lgetxattr(path, name) {
      const c = cPath(path);
      for (let size = 256; ; size *= 4) {
        const buffer = Buffer.alloc(size);
        const length = Number(lgetxattr(c, name, buffer, size));
        if (length >= 0) return buffer.subarray(0, length);
        const errno = koffi.errno();
        if (errno === 61) return undefined;
        if (errno !== 34 || size > 1 << 20) throw new NativeCallError(`lgetxattr ${name}`, path, errno);
      }
    },
    llistxattr(path) {
      const c = cPath(path);
      for (let size = 1024; ; size *= 4) {
        const buffer = Buffer.alloc(size);
        const length = Number(llistxattr(c, buffer, size));
        if (length >= 0)
          return buffer
            .toString('utf8', 0, length)
            .split('\0')
            .filter((name) => name !== '');
        const errno = koffi.errno();
        if (errno !== 34 || size > 1 << 20) throw new NativeCallError('llistxattr', path, errno);
      }
    },
  };
  return loaded;
}
