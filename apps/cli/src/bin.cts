#!/usr/bin/env node
/**
 * The `gantry` command's entry point (bin/gantry runs it with Node). It loads the command, dist/main.cjs:
 * one CommonJS file holding the CLI and every dependency it needs (built from main.ts by
 * `scripts/bundle-package.mjs --self-contained`) except the packages it requires on first use, each in
 * a file beside it (dist/main-lazy-*.cjs), with V8's compiled code cached on disk so that a run does not
 * parse and compile those files again (~50 ms of CPU per run on a small machine):
 * - Node ≥ 22.1: `module.enableCompileCache(directory)`, Node's own cache;
 * - Node 20: the same done here: the file is compiled with the code V8 produced for it by an earlier
 *   run of the same command (`vm.Script` `cachedData`; V8 checks that it belongs to this source, this
 *   V8 and these flags, and ignores it otherwise), and when there was none or V8 refused it, the code
 *   compiled by the end of this run, lazily compiled functions included, is stored for the next one;
 *   one cache file per file of dist/, command and transports. The files are read as Latin-1: the bundler writes
 *   them in ASCII, and a one-byte read skips UTF-8 decoding of ~1 MiB.
 * The directory is `$NODE_COMPILE_CACHE`, else `$XDG_CACHE_HOME/gantry/compile-cache` (default
 * `~/.cache/…`), created private to the user; `NODE_DISABLE_COMPILE_CACHE=1` turns caching off. A cache
 * that cannot be read or written is skipped: the command runs as without it. The directory also keeps
 * the parsed TOML configuration files (registries.conf and its drop-ins: `gantry-toml-v1.json`, see
 * packages/containers-config/src/toml.ts), which pruning leaves alone. Each build of Gantry has
 * its own cache files, so a run that writes one also prunes the directory (`pruneCodeCache`): files
 * unchanged for `staleCacheDays` go, then the oldest beyond `maximumCacheFiles`.
 *
 * CommonJS, not an ES module: Node starts a CommonJS entry without its ES module loader, and
 * `require('node:…')` does not enumerate a built-in module's exports as an ES import does (which loads
 * their lazy parts, such as fs streams).
 */
import fs = require('node:fs');
import nodeModule = require('node:module');
import path = require('node:path');
import vm = require('node:vm');

// V8 flags on Node's command line make Node compile its own built-in modules (node:http, node:tls,
// node:stream, …) from their sources: Node ships them compiled, but V8 accepts that code only under the
// flags it was made with (~25 % more instructions for a copy that moves no bytes, such as a re-push).
// bin/gantry starts `copy` and `sync` with `--initial-old-space-size=64`, which sizes the heap as Node
// creates it, before any of this runs, and takes full effect only there; so it is set back to V8's
// default here, first of all, before a built-in module is required: the heap keeps its size (measured:
// no full garbage collection in a 16 × 16 MiB pull, as with the flag kept), and the built-in modules
// load with the code Node ships. Through the `v8` binding rather than node:v8, which would itself be compiled
// from source under the flag (that module loads the stream modules). The binding's deprecation warning
// (DEP0111) is not for users of gantry: it is silenced for that one call.
if (process.execArgv.some((flag) => flag.startsWith('--initial-old-space-size'))) {
  setFlagsAtStart('--initial-old-space-size=0');
}

function setFlagsAtStart(flags: string): void {
  const noDeprecation = process.noDeprecation;
  try {
    process.noDeprecation = true;
    const binding = (
      process as unknown as { binding?: (name: string) => { setFlagsFromString?: (flags: string) => void } }
    ).binding?.('v8');
    if (typeof binding?.setFlagsFromString === 'function') {
      binding.setFlagsFromString(flags);
      return;
    }
  } catch {
    // No such binding on this Node: node:v8 below.
  } finally {
    process.noDeprecation = noDeprecation;
  }
  (require('node:v8') as typeof import('node:v8')).setFlagsFromString(flags);
}

// V8 flags, set when first needed rather than on Node's command line (see above), at the first
// WebAssembly compile (undici's HTTP parser, at the first connection), by when the built-in modules a
// command needs are mostly loaded:
// - `--liftoff-only`: WebAssembly is compiled by the baseline compiler only: optimising undici's parser
//   costs ~0.1 s of CPU per run, more than a short command saves (measured no slower on a 256 MiB pull);
// - `--initial-old-space-size=64`: a copy moves its bytes through many short-lived buffers whose memory
//   V8 counts against the old generation's limit; V8's small default start makes that a full garbage
//   collection every few MiB copied. Set at run time it takes partial effect (the heap was sized at
//   start, hence bin/gantry's flag for copy and sync); it still spares a copy that moves no bytes
//   (a re-push, mounts) work, so it is set again here also for those commands.
// Before the compiled code of dist/ is stored at exit (below), the flags are set back to V8's defaults,
// so that the stored code matches the flags of the next run once the above is done: one cache serves
// runs started with or without the heap flag. Unknown flags are ignored, so this cannot break on other
// Nodes.
const lazyV8Flags = ['--liftoff-only', '--initial-old-space-size=64'];
// V8's defaults, with those changes in turn (V8 11: the tiering flags).
const defaultV8Flags = [
  '--no-liftoff-only',
  '--wasm-tier-up',
  '--wasm-dynamic-tiering',
  '--initial-old-space-size=0',
];
let lazyV8FlagsSet = false;
// node:v8 is required when first needed: most of what it loads is loaded by then anyway (~1 ms of CPU
// for a command that compiles no WebAssembly otherwise).
function setV8Flags(flags: readonly string[]): void {
  const v8 = require('node:v8') as typeof import('node:v8');
  for (const flag of flags) v8.setFlagsFromString(flag);
}
function setLazyV8Flags(): void {
  if (lazyV8FlagsSet) return;
  lazyV8FlagsSet = true;
  setV8Flags(lazyV8Flags);
}
process.once('exit', () => {
  if (lazyV8FlagsSet) setV8Flags(defaultV8Flags);
});
{
  // (The CLI's TypeScript settings have no WebAssembly types.)
  const webAssembly = (globalThis as unknown as { WebAssembly: { Module: new (bytes: unknown) => object } })
    .WebAssembly;
  const OriginalModule = webAssembly.Module;
  // Replaced until its first use, then put back: a command that compiles no WebAssembly sets no flag.
  webAssembly.Module = new Proxy(OriginalModule, {
    construct(target, args, newTarget) {
      webAssembly.Module = OriginalModule;
      setLazyV8Flags();
      return Reflect.construct(target, args, newTarget);
    },
  });
}

const mainFile = path.join(__dirname, 'main.cjs');

/** The cache directory (see the module comment), created private to the user; undefined for none. */
function cacheDirectory(): string | undefined {
  if (process.env.NODE_DISABLE_COMPILE_CACHE) return undefined;
  const cacheHome =
    process.env.XDG_CACHE_HOME || (process.env.HOME ? path.join(process.env.HOME, '.cache') : undefined);
  const directory =
    process.env.NODE_COMPILE_CACHE ||
    (cacheHome ? path.join(cacheHome, 'gantry', 'compile-cache') : undefined);
  if (directory === undefined) return undefined;
  try {
    fs.mkdirSync(directory, { recursive: true, mode: 0o700 });
    return directory;
  } catch {
    return undefined;
  }
}

/**
 * The transports whose names a run's cache file names hold. Runs of one command compile different code
 * for different transports (inspect docker:// loads the registry client, inspect oci: the layout
 * reader), and a cache holds what its first run compiled: so each pair of command and transports has
 * its own. Only these names, so that no other argument (a `--creds` value) ends up in a file name.
 */
const cacheKeyTransports = new Set([
  'containers-storage',
  'dir',
  'docker',
  'docker-archive',
  'docker-daemon',
  'oci',
  'oci-archive',
  'ostree',
]);

/**
 * What is run, for the cache files' names: the command and the transports its image arguments name
 * (`inspect-docker`, `copy-oci-docker`); `other` for no command or an odd one.
 */
function runKind(): string {
  const positional = process.argv.slice(2).filter((argument) => !argument.startsWith('-'));
  const command = positional[0] ?? '';
  if (!/^[a-z][a-z-]{0,31}$/.test(command)) return 'other';
  const transports = positional
    .slice(1)
    .map((argument) => /^([a-z][a-z-]*):/.exec(argument)?.[1])
    .filter((name): name is string => name !== undefined && cacheKeyTransports.has(name))
    .slice(0, 2);
  return [command, ...transports].join('-');
}

/** A cache file not written for this long is removed (a build no longer run; rewritten if it is). */
const staleCacheDays = 30;
/** At most this many cache files are kept (the most recently written). */
const maximumCacheFiles = 256;
let codeCachePruned = false;

/**
 * Removes Gantry's cache files (and temporary files left by a run that died) that are stale, then the
 * oldest beyond the maximum: called after a run wrote a new cache file, so a run that only reads pays
 * nothing. Other files in the directory (Node's own cache, when shared) are left alone.
 */
function pruneCodeCache(directory: string): void {
  if (codeCachePruned) return;
  codeCachePruned = true;
  const now = Date.now();
  const kept: Array<{ file: string; mtimeMs: number }> = [];
  for (const name of fs.readdirSync(directory)) {
    const temporary = /^gantry-.*\.cache\.\d+\.tmp$/.test(name);
    if (!temporary && !/^gantry-.*\.cache$/.test(name)) continue;
    const file = path.join(directory, name);
    try {
      const { mtimeMs } = fs.statSync(file);
      const age = now - mtimeMs;
      if (age > (temporary ? 3_600_000 : staleCacheDays * 86_400_000)) fs.rmSync(file, { force: true });
      else if (!temporary) kept.push({ file, mtimeMs });
    } catch {
      // Removed meanwhile.
    }
  }
  if (kept.length <= maximumCacheFiles) return;
  kept.sort((left, right) => right.mtimeMs - left.mtimeMs);
  for (const { file } of kept.slice(maximumCacheFiles)) fs.rmSync(file, { force: true });
}

/** What a file of dist/ is wrapped in, as Node wraps a CommonJS module: a function of its variables. */
const wrapperStart = '(function (exports, require, module, __filename, __dirname) {';
const wrapperEnd = '\n})';

/**
 * The buffer every file of dist/ and every cache file is read into, one after the other: a buffer is
 * needed only until V8 has made the file's string or read the cache (both synchronous), and memory
 * first touched costs a page fault per 4 KiB (~14 µs each on a small virtual machine; a new buffer for
 * each read of an `inspect docker://` is ~300 of them).
 */
let readBuffer: Buffer | undefined;

/** readBuffer, made larger when needed. */
function bufferOf(size: number): Buffer {
  if (readBuffer === undefined || readBuffer.length < size) readBuffer = Buffer.allocUnsafeSlow(size);
  return readBuffer;
}

/** Reads what is left of `descriptor` into `buffer` from `start`, up to its end; returns where it ended. */
function readInto(descriptor: number, buffer: Buffer, start: number, end: number): number {
  let position = start;
  for (let read = -1; read !== 0 && position < end; position += read) {
    read = fs.readSync(descriptor, buffer, position, end - position, null);
  }
  return position;
}

/**
 * A file of dist/ in its wrapper, with its size and modification time (the cache file's name). The
 * wrapper keeps line numbers: the file starts on the wrapper's first line. The file is read between the
 * wrapper's two parts, which becomes one string: joining the file's string with the wrapper's would
 * make V8 copy the ~1 MiB of main.cjs once more into a flat string, as it does before compiling.
 */
function readWrapped(file: string): { source: string; size: number; mtimeMs: number } {
  const descriptor = fs.openSync(file, 'r');
  try {
    const { size, mtimeMs } = fs.fstatSync(descriptor);
    // One byte more than the size, to see a file that grew meanwhile (then read whole, as readFileSync would).
    const buffer = bufferOf(wrapperStart.length + size + 1 + wrapperEnd.length);
    const start = buffer.write(wrapperStart, 0, 'latin1');
    let end = readInto(descriptor, buffer, start, start + size + 1);
    if (end - start > size) {
      const whole = fs.readFileSync(file, 'latin1');
      return { source: `${wrapperStart}${whole}${wrapperEnd}`, size: whole.length, mtimeMs };
    }
    end += buffer.write(wrapperEnd, end, 'latin1');
    return { source: buffer.toString('latin1', 0, end), size, mtimeMs };
  } finally {
    fs.closeSync(descriptor);
  }
}

/** A cache file's contents (in readBuffer: valid until the next read), or undefined for none. */
function readCache(file: string): Buffer | undefined {
  let descriptor: number;
  try {
    descriptor = fs.openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const { size } = fs.fstatSync(descriptor);
    const buffer = bufferOf(size);
    return buffer.subarray(0, readInto(descriptor, buffer, 0, size));
  } catch {
    return undefined;
  } finally {
    fs.closeSync(descriptor);
  }
}

/**
 * Runs one CommonJS file of dist/ (main.cjs, or a package it requires lazily, main-lazy-*.cjs) through a
 * `vm.Script` with V8's code cache (Node 20, see the module comment) and returns its `module.exports`.
 * Its `require` loads the other such files the same way (each once).
 */
function runWithCodeCache(
  file: string,
  directory: string,
  loaded: Map<string, { exports: unknown }>,
): unknown {
  const known = loaded.get(file);
  if (known) return known.exports;
  const { source, size, mtimeMs } = readWrapped(file);
  const cacheFile = path.join(
    directory,
    `gantry-${process.version}-${process.arch}-${path.basename(file, '.cjs')}-${size}-${Math.trunc(mtimeMs)}-${runKind()}.cache`,
  );
  // V8 reads the cache while compiling, before readBuffer is read into again.
  const cachedData = readCache(cacheFile);
  // `import()` inside the script (external modules loaded on first use: native bindings, plugins) goes
  // to the main context's default loader where this Node has that option (20.12+, 21.7+).
  const defaultLoader = (vm as unknown as { constants?: { USE_MAIN_CONTEXT_DEFAULT_LOADER?: symbol } })
    .constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER;
  const script = new vm.Script(source, {
    filename: file,
    ...(cachedData ? { cachedData } : {}),
    ...(defaultLoader ? { importModuleDynamically: defaultLoader as never } : {}),
  });
  if (cachedData === undefined || script.cachedDataRejected) {
    process.once('exit', () => {
      try {
        const temporary = `${cacheFile}.${process.pid}.tmp`;
        fs.writeFileSync(temporary, script.createCachedData(), { mode: 0o600 });
        fs.renameSync(temporary, cacheFile);
        if (cachedData === undefined) pruneCodeCache(directory);
      } catch {
        // No cache this time.
      }
    });
  }
  const wrapper = script.runInThisContext() as (
    exports: unknown,
    require: NodeJS.Require,
    module: { exports: unknown },
    filename: string,
    dirname: string,
  ) => void;
  const module = { exports: {} as unknown };
  loaded.set(file, module);
  const nodeRequire = nodeModule.createRequire(file);
  // `./name.cjs`: a file of dist/ (the bundle names no other relative module); anything else: Node's.
  const fileRequire = Object.assign(
    (id: string) =>
      id.startsWith('./') && id.endsWith('.cjs') && !id.includes('/', 2)
        ? runWithCodeCache(path.join(path.dirname(file), id), directory, loaded)
        : nodeRequire(id),
    nodeRequire,
  ) as NodeJS.Require;
  wrapper(module.exports, fileRequire, module, file, path.dirname(file));
  return module.exports;
}

const directory = cacheDirectory();
// The same directory keeps parsed configuration files (see packages/containers-config/src/toml.ts).
if (directory !== undefined)
  (globalThis as Record<symbol, unknown>)[Symbol.for('gantry.cacheDirectory')] = directory;
const enableCompileCache = (nodeModule as { enableCompileCache?: (directory?: string) => unknown })
  .enableCompileCache;
if (directory !== undefined && enableCompileCache) {
  enableCompileCache(directory);
  require(mainFile);
} else if (directory !== undefined) {
  // Code compiled by a vm.Script has no import() of its own (without experimental options): the CLI
  // imports third-party transport plugins through this one (see plugins.ts, `pluginImporterKey`).
  (globalThis as Record<symbol, unknown>)[Symbol.for('gantry.importPluginModule')] = (url: string) =>
    import(url);
  runWithCodeCache(mainFile, directory, new Map());
} else {
  require(mainFile);
}
