/**
 * Transport plugin composition: builds a `TransportRegistry` from the transport packages installed
 * beside a program (the `gantry` command, or any program using `loadInstalledTransports`), so adding a
 * transport is `npm install @gantry/transport-x` (or a third-party `gantry-transport-x`) with no code
 * change.
 *
 * Sources, in precedence order (the first transport registered under a name wins; later ones with the
 * same name are reported and skipped):
 * 1. `GANTRY_TRANSPORTS`: comma-separated package names or file paths (relative to the working directory);
 * 2. the config file `$XDG_CONFIG_HOME/gantry/config.json` (else `~/.config/gantry/config.json`),
 *    `{ "transports": ["pkg", "./path.js"] }` (paths relative to the file's directory);
 * 3. the transport packages built into the program's bundle (`DiscoverOptions.bundled`; the `gantry`
 *    command's bundle lists its transport dependencies);
 * 4. packages named `@gantry/transport-*`, `gantry-transport-*` or `@scope/gantry-transport-*` in the
 *    `node_modules` directories from `searchFrom` (the `gantry` command: its package directory) up to
 *    the root (Node's module resolution path), nearest first. A package of the same name as a bundled one is the bundled one:
 *    it is not read from disk (and a package named in 1. or 2. that is bundled is taken from the bundle).
 *
 * Discovery reads package.json files only and imports nothing. Each candidate carries the transport
 * names it declares in its package.json, `"gantry": { "transports": ["name", …] }`, else a hint taken
 * from its package name (`@gantry/transport-X`, `gantry-transport-X`, `@scope/gantry-transport-X` → X).
 *
 * Loading is lazy by transport name (see {@link createTransportLoader}): a command asks for the names
 * its arguments use, and only the candidates declaring or hinting those names are imported; when a
 * wanted name is still missing afterwards every remaining candidate is imported, so a plugin whose real
 * name differs from its hint still works and results equal loading everything, only faster. Candidates
 * are never imported twice, and precedence follows discovery order whatever the import order.
 *
 * Each plugin module is loaded with `import()` (a bundled one from inside the bundle); its `default`
 * export is used when it is a transport, else every named export that is one. A module that fails to
 * load or exports no valid transport (checked with core's `assertTransport`) is reported as a warning
 * naming the package and skipped: it never breaks commands that do not need it (and is not even
 * imported when no command needs it).
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  assertTransport,
  splitTransportReference,
  type Transport,
  TransportRegistry,
} from '@gantry/core/transport';

/** Where a plugin candidate came from. */
export type PluginSource = 'environment' | 'config' | 'bundled' | 'node_modules';

/** A transport package or module found by discovery, not imported yet. */
export interface PluginCandidate {
  /** What the user or the scan named: a package name or a file path. */
  specifier: string;
  /** Absolute path of the module file to import; for a bundled package, its name and `(bundled)`. */
  entry: string;
  /** Imports a package built into the CLI bundle (then `entry` is no file). */
  load?: () => Promise<Record<string, unknown>>;
  /** Shown by `gantry transports`: `name@version` or the file path. */
  origin: string;
  source: PluginSource;
  /**
   * The transport names the package declares in package.json `"gantry": { "transports": [...] }`;
   * undefined when it declares none (a plain file, or a package without the field).
   */
  declaredTransports?: string[];
  /** The name its package name suggests (`gantry-transport-X` → X); a hint only, used without a declaration. */
  hintedTransport?: string;
}

/** A transport package whose code is inside the program's bundle (the `gantry` command's). */
export interface BundledTransportPackage {
  /** The package name, e.g. `@gantry/transport-docker`. */
  packageName: string;
  version: string;
  /** package.json `"gantry": { "transports": [...] }`, when the package declares it. */
  declaredTransports?: string[];
  /** Imports the package's module (its `exports` entry for `import`), from inside the bundle. */
  load(): Promise<Record<string, unknown>>;
}

/** Where and how to look for transport packages. */
export interface DiscoverOptions {
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** Directory the node_modules scan starts from; default `cwd`. */
  searchFrom?: string;
  /** The transport packages inside the program's bundle; default none. */
  bundled?: readonly BundledTransportPackage[];
  /** Called for each problem found (bad plugin, unreadable config); the CLI logs these as warnings. */
  warn: (message: string) => void;
  /** Called with progress details (`--debug`). */
  debug?: (message: string) => void;
}

/** True when this module runs from TypeScript sources (tests), so workspace packages resolve to `src/`. */
function runningFromSource(): boolean {
  return import.meta.url.endsWith('.ts');
}

const pluginNamePattern =
  /^(?:@gantry\/transport-[a-z0-9._-]+|gantry-transport-[a-z0-9._-]+|@[a-z0-9._-]+\/gantry-transport-[a-z0-9._-]+)$/;

/** True for package names the node_modules scan picks up. */
export function isTransportPackageName(name: string): boolean {
  return pluginNamePattern.test(name);
}

/** The transport name a plugin package name suggests (`@gantry/transport-X`, `[@scope/]gantry-transport-X` → X). */
export function transportNameHint(packageName: string): string | undefined {
  const match = /^(?:@gantry\/transport-|(?:@[a-z0-9._-]+\/)?gantry-transport-)([a-z0-9._-]+)$/.exec(
    packageName,
  );
  return match?.[1];
}

/** The names in package.json `"gantry": { "transports": [...] }`, or undefined when absent or not a string array. */
function declaredTransportsOf(manifest: Record<string, unknown>): string[] | undefined {
  const gantry = manifest.gantry;
  if (!gantry || typeof gantry !== 'object') return undefined;
  const names = (gantry as Record<string, unknown>).transports;
  if (!Array.isArray(names) || !names.every((name) => typeof name === 'string')) return undefined;
  return names as string[];
}

/** The declared transports and the name hint of the package in `packageDirectory`. */
function packageTransportNames(
  packageDirectory: string,
  fallbackName: string,
): Pick<PluginCandidate, 'declaredTransports' | 'hintedTransport'> {
  let manifest: Record<string, unknown> = {};
  try {
    manifest = readPackageJson(packageDirectory);
  } catch {}
  const name = typeof manifest.name === 'string' ? manifest.name : fallbackName;
  const names: Pick<PluginCandidate, 'declaredTransports' | 'hintedTransport'> = {};
  const declared = declaredTransportsOf(manifest);
  if (declared) names.declaredTransports = declared;
  const hint = transportNameHint(name);
  if (hint) names.hintedTransport = hint;
  return names;
}

/** The node_modules directories Node would search from `start`, nearest first. */
export function nodeModulesDirectories(start: string): string[] {
  const directories: string[] = [];
  let current = resolve(start);
  for (;;) {
    if (!current.endsWith(`${'/'}node_modules`)) directories.push(join(current, 'node_modules'));
    const parent = dirname(current);
    if (parent === current) break;
    current = parent;
  }
  return directories.filter((directory) => existsSync(directory));
}

function readPackageJson(packageDirectory: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(packageDirectory, 'package.json'), 'utf8')) as Record<string, unknown>;
}

function pickExport(target: unknown, conditions: readonly string[]): string | undefined {
  if (typeof target === 'string') return target;
  if (Array.isArray(target)) {
    for (const item of target) {
      const picked = pickExport(item, conditions);
      if (picked) return picked;
    }
    return undefined;
  }
  if (target && typeof target === 'object') {
    for (const [key, value] of Object.entries(target as Record<string, unknown>)) {
      if (key === 'default' || conditions.includes(key)) {
        const picked = pickExport(value, conditions);
        if (picked) return picked;
      }
    }
  }
  return undefined;
}

/** The file `import(packageName)` would load for the package in `packageDirectory`. */
export function resolvePackageEntry(packageDirectory: string): string {
  const manifest = readPackageJson(packageDirectory);
  const conditions = runningFromSource() ? ['@gantry/source', 'import', 'node'] : ['import', 'node'];
  const exportsField = manifest.exports;
  let target: string | undefined;
  if (exportsField !== undefined) {
    const root =
      exportsField &&
      typeof exportsField === 'object' &&
      !Array.isArray(exportsField) &&
      Object.keys(exportsField).some((key) => key.startsWith('.'))
        ? (exportsField as Record<string, unknown>)['.']
        : exportsField;
    target = pickExport(root, conditions);
    if (!target) throw new Error(`package.json "exports" has no entry for import`);
  } else {
    target =
      typeof manifest.module === 'string'
        ? manifest.module
        : typeof manifest.main === 'string'
          ? manifest.main
          : 'index.js';
  }
  return resolve(packageDirectory, target);
}

function packageOrigin(packageDirectory: string, fallbackName: string): string {
  try {
    const manifest = readPackageJson(packageDirectory);
    const name = typeof manifest.name === 'string' ? manifest.name : fallbackName;
    return typeof manifest.version === 'string' ? `${name}@${manifest.version}` : name;
  } catch {
    return fallbackName;
  }
}

function looksLikePath(specifier: string): boolean {
  return specifier.startsWith('.') || isAbsolute(specifier) || /\.(?:m?js|cjs|ts)$/.test(specifier);
}

/** Finds the directory of package `name` from `baseDirectory` the way Node does. */
function findPackageDirectory(name: string, baseDirectory: string): string | undefined {
  for (const directory of nodeModulesDirectories(baseDirectory)) {
    const candidate = join(directory, name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
  }
  return undefined;
}

/** The candidate for a package built into the CLI bundle. */
function bundledCandidate(bundled: BundledTransportPackage, source: PluginSource): PluginCandidate {
  const candidate: PluginCandidate = {
    specifier: bundled.packageName,
    entry: `${bundled.packageName} (bundled)`,
    load: bundled.load,
    origin: `${bundled.packageName}@${bundled.version}`,
    source,
  };
  if (bundled.declaredTransports) candidate.declaredTransports = [...bundled.declaredTransports];
  const hint = transportNameHint(bundled.packageName);
  if (hint) candidate.hintedTransport = hint;
  return candidate;
}

function candidateFor(
  specifier: string,
  baseDirectory: string,
  source: PluginSource,
  packageSearchFrom: string,
  bundled: ReadonlyMap<string, BundledTransportPackage>,
): PluginCandidate {
  const bundledPackage = bundled.get(specifier);
  if (bundledPackage) return bundledCandidate(bundledPackage, source);
  if (looksLikePath(specifier)) {
    const path = resolve(baseDirectory, specifier);
    if (!existsSync(path)) throw new Error(`file ${path} does not exist`);
    if (statSync(path).isDirectory()) {
      return {
        specifier,
        entry: resolvePackageEntry(path),
        origin: packageOrigin(path, path),
        source,
        ...packageTransportNames(path, path),
      };
    }
    return { specifier, entry: path, origin: path, source };
  }
  const packageDirectory =
    findPackageDirectory(specifier, baseDirectory) ?? findPackageDirectory(specifier, packageSearchFrom);
  if (!packageDirectory) throw new Error(`package ${specifier} is not installed`);
  return {
    specifier,
    entry: resolvePackageEntry(packageDirectory),
    origin: packageOrigin(packageDirectory, specifier),
    source,
    ...packageTransportNames(packageDirectory, specifier),
  };
}

/** The config file path: `$XDG_CONFIG_HOME/gantry/config.json`, else `~/.config/gantry/config.json`. */
export function configFilePath(env: Readonly<Record<string, string | undefined>>): string | undefined {
  if (env.XDG_CONFIG_HOME) return join(env.XDG_CONFIG_HOME, 'gantry', 'config.json');
  if (env.HOME) return join(env.HOME, '.config', 'gantry', 'config.json');
  return undefined;
}

/**
 * Lists plugin candidates without importing them, in precedence order, each with its declared transport
 * names or its name hint. Problems are reported through `warn`. */
export function discoverTransportPlugins(options: DiscoverOptions): PluginCandidate[] {
  const searchFrom = options.searchFrom ?? options.cwd;
  const bundled = new Map((options.bundled ?? []).map((entry) => [entry.packageName, entry]));
  const candidates: PluginCandidate[] = [];
  const add = (specifier: string, baseDirectory: string, source: PluginSource, label: string) => {
    try {
      candidates.push(candidateFor(specifier, baseDirectory, source, searchFrom, bundled));
    } catch (error) {
      options.warn(
        `ignoring transport plugin ${JSON.stringify(specifier)} from ${label}: ${(error as Error).message}`,
      );
    }
  };
  for (const specifier of (options.env.GANTRY_TRANSPORTS ?? '').split(',')) {
    if (specifier.trim() !== '') add(specifier.trim(), options.cwd, 'environment', 'GANTRY_TRANSPORTS');
  }
  const configPath = configFilePath(options.env);
  if (configPath && existsSync(configPath)) {
    try {
      const config = JSON.parse(readFileSync(configPath, 'utf8')) as { transports?: unknown };
      if (config.transports !== undefined) {
        if (
          !Array.isArray(config.transports) ||
          !config.transports.every((item) => typeof item === 'string')
        ) {
          throw new Error('"transports" must be an array of strings');
        }
        for (const specifier of config.transports as string[])
          add(specifier, dirname(configPath), 'config', configPath);
      }
    } catch (error) {
      options.warn(`ignoring ${configPath}: ${(error as Error).message}`);
    }
  }
  for (const entry of bundled.values()) candidates.push(bundledCandidate(entry, 'bundled'));
  for (const directory of nodeModulesDirectories(searchFrom)) {
    let names: string[];
    try {
      names = readdirSync(directory);
    } catch {
      continue;
    }
    const packageNames: string[] = [];
    for (const name of names.sort()) {
      if (name.startsWith('@')) {
        let scoped: string[] = [];
        try {
          scoped = readdirSync(join(directory, name)).sort();
        } catch {
          continue;
        }
        for (const inner of scoped)
          if (isTransportPackageName(`${name}/${inner}`)) packageNames.push(`${name}/${inner}`);
      } else if (isTransportPackageName(name)) {
        packageNames.push(name);
      }
    }
    for (const name of packageNames) {
      if (bundled.has(name)) continue;
      const packageDirectory = join(directory, name);
      try {
        candidates.push({
          specifier: name,
          entry: resolvePackageEntry(packageDirectory),
          origin: packageOrigin(packageDirectory, name),
          source: 'node_modules',
          ...packageTransportNames(packageDirectory, name),
        });
      } catch (error) {
        options.warn(`ignoring transport plugin ${name} (${packageDirectory}): ${(error as Error).message}`);
      }
    }
  }
  // The same module found twice (a symlinked workspace package, or named explicitly and installed).
  const seen = new Set<string>();
  return candidates.filter((candidate) => {
    let key = candidate.entry;
    if (!candidate.load) {
      try {
        key = realpathSync(candidate.entry);
      } catch {}
    }
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * The key under which the CLI's entry point (bin.cts) provides `import()` to the bundle it compiles
 * itself: code compiled by a `vm.Script` has no `import()` of its own without experimental options.
 */
export const pluginImporterKey = Symbol.for('gantry.importPluginModule');

/** Imports a plugin module by URL: through the entry point's importer when there is one, else `import()`. */
async function importPluginModule(url: string): Promise<Record<string, unknown>> {
  const provided = (globalThis as Record<symbol, unknown>)[pluginImporterKey];
  if (typeof provided === 'function') {
    return (await (provided as (url: string) => Promise<unknown>)(url)) as Record<string, unknown>;
  }
  return (await import(url)) as Record<string, unknown>;
}

/** The transports a plugin module exports: its default export if valid, else its valid named exports. */
export function transportsFromModule(moduleNamespace: Record<string, unknown>, origin: string): Transport[] {
  const problems: string[] = [];
  if ('default' in moduleNamespace) {
    try {
      return [assertTransport(moduleNamespace.default, origin)];
    } catch (error) {
      problems.push(`default export: ${(error as Error).message}`);
    }
  }
  const found: Transport[] = [];
  for (const [key, value] of Object.entries(moduleNamespace)) {
    if (key === 'default' || typeof value !== 'object' || value === null) continue;
    try {
      const transport = assertTransport(value, origin);
      if (!found.includes(transport)) found.push(transport);
    } catch {}
  }
  if (found.length === 0) {
    throw new Error(problems[0] ?? `${origin} is not a valid Gantry transport: it exports no transport`);
  }
  return found;
}

/** The transport names `transport:reference` inputs use; undefined (meaning "all") when one has no prefix. */
export function transportNamesOf(inputs: readonly string[]): string[] | undefined {
  const names: string[] = [];
  for (const input of inputs) {
    try {
      names.push(splitTransportReference(input).transport);
    } catch {
      return undefined;
    }
  }
  return names;
}

/**
 * Loads transports on demand: `load(wanted)` returns a registry holding at least the wanted transports
 * that are installed; `load()` (no names) imports every candidate.
 *
 * Rules: for each wanted name, the candidates that may provide it (declaring it; without a declaration,
 * hinting it; or naming nothing at all, as plain plugin files) are imported unless a candidate earlier in
 * discovery order already provides it; if a wanted name is still missing, every remaining candidate is
 * imported (so a third-party plugin whose hint is wrong is still found). A package whose hint is wrong
 * is thus imported only when its real name is otherwise missing. A candidate is imported at most
 * once. When two candidates provide the same name, the earlier one in discovery order wins whatever the
 * import order, and the later one is reported through `warn` exactly as the eager loader did. Bad
 * plugins are reported through `warn` when imported and never throw. Calls are serialised; each returns
 * a fresh registry snapshot.
 */
export function createTransportLoader(
  options: DiscoverOptions,
): (wanted?: readonly string[]) => Promise<TransportRegistry> {
  let candidates: PluginCandidate[] | undefined;
  const imported = new Set<number>();
  /** name → the winning transport and the discovery index of its candidate. */
  const winners = new Map<string, { transport: Transport; origin: string; index: number }>();
  let queue: Promise<unknown> = Promise.resolve();

  const register = (transport: Transport, origin: string, index: number) => {
    const existing = winners.get(transport.name);
    if (!existing) {
      winners.set(transport.name, { transport, origin, index });
      return;
    }
    const [winner, loser] =
      existing.index <= index ? [existing, { transport, origin }] : [{ transport, origin, index }, existing];
    try {
      new TransportRegistry([{ transport: winner.transport, origin: winner.origin }]).register(
        loser.transport,
        loser.origin,
      );
    } catch (error) {
      options.warn(
        `ignoring transport "${loser.transport.name}" from ${loser.origin}: ${(error as Error).message}`,
      );
    }
    if (winner !== existing) winners.set(transport.name, { transport, origin, index });
  };

  const importCandidate = async (index: number) => {
    if (imported.has(index)) return;
    imported.add(index);
    const candidate = candidates![index]!;
    // process.hrtime, not performance.now(): Node loads perf_hooks (~5 ms) at the first use of `performance`.
    const started = process.hrtime.bigint();
    let moduleNamespace: Record<string, unknown>;
    try {
      moduleNamespace = candidate.load
        ? await candidate.load()
        : await importPluginModule(pathToFileURL(candidate.entry).href);
    } catch (error) {
      options.warn(
        `ignoring transport plugin ${candidate.origin}: loading ${candidate.entry} failed: ${(error as Error).message}`,
      );
      return;
    }
    let transports: Transport[];
    try {
      transports = transportsFromModule(moduleNamespace, candidate.origin);
    } catch (error) {
      options.warn(`ignoring transport plugin ${candidate.origin}: ${(error as Error).message}`);
      return;
    }
    for (const transport of transports) register(transport, candidate.origin, index);
    options.debug?.(
      `loaded transport plugin ${candidate.origin} (${transports.map((transport) => transport.name).join(', ')}) in ${(Number(process.hrtime.bigint() - started) / 1e6).toFixed(1)} ms`,
    );
  };

  const mayProvide = (candidate: PluginCandidate, name: string): boolean => {
    if (candidate.declaredTransports) return candidate.declaredTransports.includes(name);
    if (candidate.hintedTransport !== undefined) return candidate.hintedTransport === name;
    return true;
  };

  const loadNow = async (wanted: readonly string[] | undefined): Promise<TransportRegistry> => {
    candidates ??= discoverTransportPlugins(options);
    const all = candidates.map((_, index) => index);
    if (wanted === undefined) {
      for (const index of all) await importCandidate(index);
    } else {
      // A candidate that may provide a wanted name and precedes its current provider in discovery order
      // would win over it, so it is imported too.
      const precedes = (index: number, name: string) => index < (winners.get(name)?.index ?? Infinity);
      for (const index of all) {
        const candidate = candidates[index]!;
        if (wanted.some((name) => precedes(index, name) && mayProvide(candidate, name))) {
          await importCandidate(index);
        }
      }
      if (wanted.some((name) => !winners.has(name))) for (const index of all) await importCandidate(index);
    }
    return new TransportRegistry(
      [...winners.values()].map((winner) => ({ transport: winner.transport, origin: winner.origin })),
    );
  };

  return (wanted) => {
    const result = queue.then(() => loadNow(wanted));
    queue = result.catch(() => undefined);
    return result;
  };
}

/**
 * Discovers, imports and registers every transport plugin (what `gantry transports` shows). Never
 * throws for a bad plugin: it is reported through `warn` and left out. Commands use
 * {@link createTransportLoader} to import only what they need.
 */
export async function loadTransportRegistry(options: DiscoverOptions): Promise<TransportRegistry> {
  return createTransportLoader(options)();
}
