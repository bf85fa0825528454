import { existsSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * koffi (the foreign function interface Gantry calls libdeflate, OpenSSL's SHA-256, glibc and others
 * through), loaded once per process for the modules of this package that call C on a copy's critical
 * path (`OffThreadDigester`, libdeflate, the allocator).
 *
 * `require('koffi')` costs ~15 ms of CPU before a compressing copy can compress its first block, on one
 * core while the other is idle: ~5 ms to resolve the bare name (Node's resolver and its package
 * `exports` code, compiled on first use), ~5 ms to compile koffi's JavaScript entry (which no code cache
 * covers) and detect the C library by reading the Node executable's ELF headers, ~4 ms to load its native
 * module. So the native module of the package installed beside koffi (`@koromix/koffi-<platform>-<arch>`,
 * koffi's own optional dependency, a sibling directory of `koffi` in every layout npm and pnpm make) is
 * loaded directly, found by looking for `node_modules/koffi` in the directories above this file, as the
 * resolver would: ~4 ms in all. The module is loaded with `require`, so that a later `require('koffi')`
 * elsewhere gets the same native module (Node caches it by its real path) rather than a second copy.
 * Its exports are the functions koffi's entry re-exports (`load`, `view`, `address`, …), without the
 * entry's deprecated aliases. Anything unexpected (no such directory, a musl system whose binary is in
 * another directory, a version mismatch) falls back to `require('koffi')`.
 */
export type Koffi = typeof import('koffi');

let loaded: Koffi | null | undefined;

/** Where this module's file is (the CLI bundles it into dist/main.cjs: then that file's). */
function moduleDirectory(): string {
  return dirname(fileURLToPath(import.meta.url));
}

/** The real path of the `koffi` package directory the resolver would find from `start`, else undefined. */
export function koffiPackageDirectory(start: string): string | undefined {
  let directory = start;
  for (;;) {
    const candidate = join(directory, 'node_modules', 'koffi');
    if (existsSync(join(candidate, 'package.json'))) return realpathSync(candidate);
    const parent = dirname(directory);
    if (parent === directory) return undefined;
    directory = parent;
  }
}

/** koffi's prebuilt native module for glibc Linux on this architecture beside `koffiDirectory`. */
export function koffiNativeModulePath(koffiDirectory: string): string {
  const { platform, arch } = process;
  return join(
    koffiDirectory,
    '..',
    '@koromix',
    `koffi-${platform}-${arch}`,
    `${platform}_${arch}`,
    'koffi.node',
  );
}

function loadDirectly(require: NodeJS.Require): Koffi | undefined {
  // Only where the package's file layout is known: Linux, glibc's binary (on musl it fails to load, and
  // the fallback finds musl's).
  if (process.platform !== 'linux') return undefined;
  const koffiDirectory = koffiPackageDirectory(moduleDirectory());
  if (koffiDirectory === undefined) return undefined;
  const nativePath = koffiNativeModulePath(koffiDirectory);
  if (!existsSync(nativePath)) return undefined;
  const native = require(nativePath) as Koffi & { version?: string };
  const { version } = require(join(koffiDirectory, 'package.json')) as { version?: string };
  if (typeof native.load !== 'function' || native.version !== version) return undefined;
  return native;
}

/** koffi, loaded once (see the module comment); null when it cannot be loaded on this system. */
export function loadKoffi(): Koffi | null {
  if (loaded !== undefined) return loaded;
  const require = createRequire(import.meta.url);
  try {
    loaded = loadDirectly(require) ?? null;
  } catch {
    loaded = null;
  }
  if (loaded === null) {
    try {
      loaded = require('koffi') as Koffi;
    } catch {
      loaded = null;
    }
  }
  return loaded;
}
