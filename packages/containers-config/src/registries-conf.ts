/**
 * containers-registries.conf(5): per-registry settings (insecure, blocked, location rewrites,
 * mirrors), unqualified-search registries, short-name aliases — read as containers/image's
 * `sysregistriesv2` does.
 *
 * Files, in order:
 * 1. the main file: the explicit one (`--registries-conf`, else `$CONTAINERS_REGISTRIES_CONF`); else
 *    `$HOME/.config/containers/registries.conf` when it exists (then the system file and the system
 *    drop-in directory are not read); else `/etc/containers/registries.conf` (a missing default file
 *    reads as empty; a missing explicit file is an error);
 * 2. drop-ins: `*.conf` files of `/etc/containers/registries.conf.d` (unless the user's file is used)
 *    and then of `$HOME/.config/containers/registries.conf.d`, each directory in name order. Drop-ins
 *    must use the v2 format. A drop-in's `[[registry]]` tables replace those with the same prefix;
 *    its other settings, when present, replace earlier ones; aliases are merged (an empty value
 *    removes an alias).
 *
 * The v1 format (`[registries.search]`, `[registries.insecure]`, `[registries.block]`) is converted.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { DockerReference } from '@gantry/core/transport';
import { ErrorCodes, GantryError, parseNamed } from '@gantry/core/transport';
import { parseToml, type TomlTable, type TomlValue } from './toml.js';

export type PullFromMirror = 'all' | 'digest-only' | 'tag-only';
export type ShortNameMode = 'enforcing' | 'permissive' | 'disabled';

/** A place images can be read from. */
export interface RegistryEndpoint {
  /** `host[:port][/namespace…]`; '' only for a `*.domain` prefix (no rewrite). */
  location: string;
  /** Allow plain HTTP and unverified TLS. */
  insecure: boolean;
  /** Mirrors only: which pulls may use it (default all). */
  pullFromMirror?: PullFromMirror;
}

/** One `[[registry]]` table. */
export interface RegistryConfiguration extends RegistryEndpoint {
  /** What image names it applies to (defaults to `location`); may be `*.domain`. */
  prefix: string;
  /** Refuse every access to matching images. */
  blocked: boolean;
  /** Use mirrors only for pulls by digest. */
  mirrorByDigestOnly: boolean;
  /** Tried in order before the primary location when reading. */
  mirrors: RegistryEndpoint[];
}

/** The merged configuration. */
export interface RegistriesConfiguration {
  /** Unique prefixes, sorted. */
  registries: RegistryConfiguration[];
  unqualifiedSearchRegistries: string[];
  shortNameMode: ShortNameMode;
  /** Short name → fully qualified repository. */
  aliases: Record<string, string>;
  /** Default `["containers-auth.json"]`. */
  credentialHelpers: string[];
  /** The files read, in order (for messages). */
  files: string[];
}

export interface RegistriesConfSearchOptions {
  /** An explicit main file (`--registries-conf`); it must exist. */
  registriesConfPath?: string;
  /** An explicit drop-in directory, read instead of the default ones. */
  registriesConfDirectory?: string;
  environment?: Readonly<Record<string, string | undefined>>;
  homeDirectory?: string;
  /** Default `/etc/containers/registries.conf`. */
  systemPath?: string;
  /** Default `/etc/containers/registries.conf.d`. */
  systemDirectory?: string;
}

interface PartialConfiguration {
  registries: RegistryConfiguration[];
  unqualifiedSearchRegistries: string[] | undefined;
  shortNameMode: ShortNameMode | undefined;
  aliases: Record<string, string>;
  credentialHelpers: string[] | undefined;
}

function configurationError(file: string, message: string): GantryError {
  return new GantryError(ErrorCodes.Internal, `loading registries configuration ${file}: ${message}`);
}

function isTable(value: TomlValue | undefined): value is TomlTable {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `location` without trailing slashes; URLs are refused. */
function parseLocation(file: string, value: string): string {
  const trimmed = value.replace(/\/+$/, '');
  if (/^https?:\/\//.test(trimmed)) {
    throw configurationError(file, `invalid location '${value}': URI schemes are not supported`);
  }
  return trimmed;
}

const domainPattern =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;

/** Parses one registries.conf file's text (`file` names it in errors). Drop-ins use `forceV2`. */
export function parseRegistriesConf(text: string, file: string, forceV2 = false): PartialConfiguration {
  let document: TomlTable;
  try {
    document = parseToml(text);
  } catch (error) {
    throw configurationError(file, (error as Error).message);
  }
  const field = <T>(
    table: TomlTable,
    name: string,
    kind: 'string' | 'boolean',
    where: string,
  ): T | undefined => {
    const value = table[name];
    if (value === undefined) return undefined;
    if (typeof value !== kind) throw configurationError(file, `${where}${name} must be a ${kind}`);
    return value as T;
  };
  const stringArray = (table: TomlTable, name: string): string[] | undefined => {
    const value = table[name];
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || !value.every((entry) => typeof entry === 'string')) {
      throw configurationError(file, `${name} must be an array of strings`);
    }
    return value as string[];
  };

  const v1 = isTable(document.registries) ? document.registries : undefined;
  const v2Keys = [
    'registry',
    'unqualified-search-registries',
    'short-name-mode',
    'aliases',
    'credential-helpers',
  ];
  if (v1 !== undefined) {
    if (forceV2) throw configurationError(file, 'registry must be in v2 format but is in v1');
    if (v2Keys.some((key) => document[key] !== undefined)) {
      throw configurationError(file, 'mixing sysregistry v1/v2 is not supported');
    }
    const list = (name: string) =>
      isTable(v1[name]) ? (stringArray(v1[name] as TomlTable, 'registries') ?? []) : [];
    const byLocation = new Map<string, RegistryConfiguration>();
    const entry = (location: string) => {
      let found = byLocation.get(location);
      if (!found) {
        found = {
          prefix: location,
          location,
          insecure: false,
          blocked: false,
          mirrorByDigestOnly: false,
          mirrors: [],
        };
        byLocation.set(location, found);
      }
      return found;
    };
    for (const location of list('insecure')) entry(parseLocation(file, location)).insecure = true;
    for (const location of list('block')) entry(parseLocation(file, location)).blocked = true;
    return {
      registries: sortUnique([...byLocation.values()]),
      unqualifiedSearchRegistries: validateSearchRegistries(file, list('search')),
      shortNameMode: undefined,
      aliases: {},
      credentialHelpers: undefined,
    };
  }

  const registries: RegistryConfiguration[] = [];
  const rawRegistries = document.registry;
  if (rawRegistries !== undefined && !Array.isArray(rawRegistries)) {
    throw configurationError(file, 'registry must be an array of tables ([[registry]])');
  }
  for (const raw of (rawRegistries ?? []) as TomlValue[]) {
    if (!isTable(raw)) throw configurationError(file, 'registry must be an array of tables ([[registry]])');
    const location = parseLocation(file, field<string>(raw, 'location', 'string', '[[registry]] ') ?? '');
    let prefix = field<string>(raw, 'prefix', 'string', '[[registry]] ') ?? '';
    if (prefix === '') {
      if (location === '')
        throw configurationError(file, 'invalid condition: both location and prefix are unset');
      prefix = location;
    } else {
      prefix = parseLocation(file, prefix);
      if (!prefix.startsWith('*.') && location === '') {
        throw configurationError(
          file,
          'invalid condition: location is unset and prefix is not in the format: *.example.com',
        );
      }
    }
    if (prefix.startsWith('*.') && /[/@:]/.test(prefix)) {
      throw configurationError(
        file,
        `Wildcarded prefix should be in the format: *.example.com. Current prefix "${prefix}" is incorrectly formatted`,
      );
    }
    if (raw['pull-from-mirror'] !== undefined) {
      throw configurationError(
        file,
        `pull-from-mirror must not be set for a non-mirror registry "${prefix}"`,
      );
    }
    const mirrorByDigestOnly =
      field<boolean>(raw, 'mirror-by-digest-only', 'boolean', '[[registry]] ') ?? false;
    const mirrors: RegistryEndpoint[] = [];
    const rawMirrors = raw.mirror;
    if (rawMirrors !== undefined && !Array.isArray(rawMirrors)) {
      throw configurationError(file, 'registry.mirror must be an array of tables');
    }
    for (const rawMirror of (rawMirrors ?? []) as TomlValue[]) {
      if (!isTable(rawMirror)) throw configurationError(file, 'registry.mirror must be an array of tables');
      const mirrorLocation = parseLocation(
        file,
        field<string>(rawMirror, 'location', 'string', '[[registry.mirror]] ') ?? '',
      );
      if (mirrorLocation === '')
        throw configurationError(file, 'invalid condition: mirror location is unset');
      const mirror: RegistryEndpoint = {
        location: mirrorLocation,
        insecure: field<boolean>(rawMirror, 'insecure', 'boolean', '[[registry.mirror]] ') ?? false,
      };
      const pullFromMirror = field<string>(rawMirror, 'pull-from-mirror', 'string', '[[registry.mirror]] ');
      if (pullFromMirror !== undefined && pullFromMirror !== '') {
        if (mirrorByDigestOnly) {
          throw configurationError(
            file,
            `cannot set mirror usage mirror-by-digest-only for the registry ("${prefix}") and pull-from-mirror for per-mirror ("${mirrorLocation}") at the same time`,
          );
        }
        if (pullFromMirror !== 'all' && pullFromMirror !== 'digest-only' && pullFromMirror !== 'tag-only') {
          throw configurationError(
            file,
            `unsupported pull-from-mirror value "${pullFromMirror}" for mirror "${mirrorLocation}"`,
          );
        }
        mirror.pullFromMirror = pullFromMirror;
      }
      mirrors.push(mirror);
    }
    registries.push({
      prefix,
      location,
      insecure: field<boolean>(raw, 'insecure', 'boolean', '[[registry]] ') ?? false,
      blocked: field<boolean>(raw, 'blocked', 'boolean', '[[registry]] ') ?? false,
      mirrorByDigestOnly,
      mirrors,
    });
  }
  // A registry mentioned several times must agree on insecure and blocked.
  const byLocation = new Map<string, RegistryConfiguration>();
  for (const registry of registries) {
    const key = registry.location === '' ? registry.prefix : registry.location;
    const other = byLocation.get(key);
    if (other && other.insecure !== registry.insecure) {
      throw configurationError(
        file,
        `registry '${key}' is defined multiple times with conflicting 'insecure' setting`,
      );
    }
    if (other && other.blocked !== registry.blocked) {
      throw configurationError(
        file,
        `registry '${key}' is defined multiple times with conflicting 'blocked' setting`,
      );
    }
    byLocation.set(key, registry);
  }

  const modeText = field<string>(document, 'short-name-mode', 'string', '');
  let shortNameMode: ShortNameMode | undefined;
  if (modeText !== undefined && modeText !== '') {
    if (modeText !== 'enforcing' && modeText !== 'permissive' && modeText !== 'disabled') {
      throw configurationError(file, `invalid short name mode "${modeText}"`);
    }
    shortNameMode = modeText;
  }
  const aliases: Record<string, string> = {};
  if (document.aliases !== undefined) {
    if (!isTable(document.aliases)) throw configurationError(file, 'aliases must be a table');
    for (const [name, value] of Object.entries(document.aliases)) {
      if (typeof value !== 'string') throw configurationError(file, `alias "${name}" must be a string`);
      aliases[name] = value;
    }
  }
  const search = stringArray(document, 'unqualified-search-registries');
  return {
    registries: sortUnique(registries),
    unqualifiedSearchRegistries: search === undefined ? undefined : validateSearchRegistries(file, search),
    shortNameMode,
    aliases,
    credentialHelpers: stringArray(document, 'credential-helpers'),
  };
}

function validateSearchRegistries(file: string, entries: string[]): string[] {
  return entries.map((entry) => {
    const registry = parseLocation(file, entry);
    if (!domainPattern.test(registry)) {
      throw configurationError(file, `Invalid unqualified-search-registries entry "${registry}"`);
    }
    return registry;
  });
}

/** The first table of each prefix wins; the result is sorted by prefix. */
function sortUnique(registries: RegistryConfiguration[]): RegistryConfiguration[] {
  const byPrefix = new Map<string, RegistryConfiguration>();
  for (const registry of registries)
    if (!byPrefix.has(registry.prefix)) byPrefix.set(registry.prefix, registry);
  return [...byPrefix.keys()].sort().map((prefix) => byPrefix.get(prefix)!);
}

// The files are read synchronously: they are small and local, and read before anything else can run
// (the first image a command opens needs them). An asynchronous read would hand each of these calls to
// libuv's thread pool, starting its threads for them alone (a short command such as `inspect docker://`
// has no other use for them), and wait for a thread to be scheduled, which on a busy machine costs more
// than the read.
function exists(file: string): boolean {
  try {
    statSync(file);
    return true;
  } catch {
    return false;
  }
}

function dropInFiles(directory: string): string[] {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(directory, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw configurationError(directory, `reading registries.conf.d: ${(error as Error).message}`);
  }
  return entries
    .filter((entry) => !entry.isDirectory() && entry.name.endsWith('.conf'))
    .map((entry) => path.join(directory, entry.name))
    .sort();
}

/** The main file and drop-in directories read for these options (see the module comment). */
export async function registriesConfLocations(
  options: RegistriesConfSearchOptions = {},
): Promise<{ mainFile: string; mainFileExplicit: boolean; dropInDirectories: string[] }> {
  const environment = options.environment ?? process.env;
  const home = options.homeDirectory ?? environment.HOME ?? os.homedir();
  const userFile = path.join(home, '.config', 'containers', 'registries.conf');
  const userDirectory = path.join(home, '.config', 'containers', 'registries.conf.d');
  const systemFile = options.systemPath ?? '/etc/containers/registries.conf';
  const systemDirectory = options.systemDirectory ?? '/etc/containers/registries.conf.d';
  const explicit = options.registriesConfPath || environment.CONTAINERS_REGISTRIES_CONF;
  if (explicit) {
    return {
      mainFile: explicit,
      mainFileExplicit: true,
      dropInDirectories: options.registriesConfDirectory
        ? [options.registriesConfDirectory]
        : [systemDirectory, userDirectory],
    };
  }
  if (exists(userFile)) {
    return {
      mainFile: userFile,
      mainFileExplicit: false,
      dropInDirectories: [options.registriesConfDirectory ?? userDirectory],
    };
  }
  return {
    mainFile: systemFile,
    mainFileExplicit: false,
    dropInDirectories: options.registriesConfDirectory
      ? [options.registriesConfDirectory]
      : [systemDirectory, userDirectory],
  };
}

/**
 * Parsed files by name, kind and text: a process that opens many images (a sync) loads the
 * configuration for each, and parsing the TOML again each time cost more than the rest of the load.
 * Keyed by the text itself, so a changed file is parsed again; the parsed values are never modified.
 */
const parsedFiles = new Map<string, PartialConfiguration>();
const maximumParsedFiles = 64;

function parseRegistriesConfCached(text: string, file: string, dropIn: boolean): PartialConfiguration {
  const key = `${dropIn}\n${file}\n${text}`;
  let parsed = parsedFiles.get(key);
  if (parsed === undefined) {
    parsed = parseRegistriesConf(text, file, dropIn);
    if (parsedFiles.size >= maximumParsedFiles) parsedFiles.clear();
    parsedFiles.set(key, parsed);
  }
  return parsed;
}

/** Loads and merges the registries configuration (see the module comment). */
export async function loadRegistriesConfiguration(
  options: RegistriesConfSearchOptions = {},
): Promise<RegistriesConfiguration> {
  const locations = await registriesConfLocations(options);
  const files: string[] = [];
  let main: PartialConfiguration;
  try {
    main = parseRegistriesConfCached(readFileSync(locations.mainFile, 'utf8'), locations.mainFile, false);
    files.push(locations.mainFile);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || locations.mainFileExplicit) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw configurationError(locations.mainFile, 'no such file');
      }
      throw error;
    }
    main = {
      registries: [],
      unqualifiedSearchRegistries: undefined,
      shortNameMode: undefined,
      aliases: {},
      credentialHelpers: undefined,
    };
  }
  const registries = new Map(main.registries.map((registry) => [registry.prefix, registry]));
  let search = main.unqualifiedSearchRegistries;
  let mode = main.shortNameMode;
  let helpers = main.credentialHelpers;
  const aliases: Record<string, string> = { ...main.aliases };
  for (const directory of locations.dropInDirectories) {
    for (const file of dropInFiles(directory)) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw configurationError(file, (error as Error).message);
      }
      const dropIn = parseRegistriesConfCached(text, file, true);
      files.push(file);
      for (const registry of dropIn.registries) registries.set(registry.prefix, registry);
      if (dropIn.unqualifiedSearchRegistries !== undefined) search = dropIn.unqualifiedSearchRegistries;
      if (dropIn.shortNameMode !== undefined) mode = dropIn.shortNameMode;
      if (dropIn.credentialHelpers !== undefined) helpers = dropIn.credentialHelpers;
      for (const [name, value] of Object.entries(dropIn.aliases)) {
        if (value === '') delete aliases[name];
        else aliases[name] = value;
      }
    }
  }
  return {
    registries: [...registries.keys()].sort().map((prefix) => registries.get(prefix)!),
    unqualifiedSearchRegistries: search ?? [],
    shortNameMode: mode ?? 'permissive',
    aliases,
    credentialHelpers: helpers && helpers.length > 0 ? helpers : ['containers-auth.json'],
    files,
  };
}

/** Length of the match of `prefix` on `reference` (a name or full reference string), or -1. */
export function matchRegistryPrefix(reference: string, prefix: string): number {
  if (prefix.startsWith('*.')) {
    const suffix = prefix.slice(1);
    const index = reference.indexOf(suffix);
    if (index === -1 || reference.slice(0, index).includes('/')) return -1;
    const end = index + suffix.length;
    if (end === reference.length) return end;
    return ':/@'.includes(reference[end]!) ? end : -1;
  }
  if (reference.length < prefix.length) return -1;
  if (reference.length === prefix.length) return reference === prefix ? prefix.length : -1;
  if (!reference.startsWith(prefix)) return -1;
  return ':/@'.includes(reference[prefix.length]!) ? prefix.length : -1;
}

/** The `[[registry]]` with the longest matching prefix for `reference` (e.g. a repository name). */
export function findRegistryConfiguration(
  configuration: RegistriesConfiguration,
  reference: string,
): RegistryConfiguration | undefined {
  let best: RegistryConfiguration | undefined;
  for (const registry of configuration.registries) {
    if (
      matchRegistryPrefix(reference, registry.prefix) !== -1 &&
      registry.prefix.length > (best?.prefix.length ?? 0)
    ) {
      best = registry;
    }
  }
  return best;
}

/** One place to try when reading an image: the endpoint and the reference rewritten for it. */
export interface PullSource {
  endpoint: RegistryEndpoint;
  reference: DockerReference;
  /** True for a mirror, false for the primary location. */
  isMirror: boolean;
}

/**
 * Where to read `reference` from, in order: the mirrors allowed for this kind of reference
 * (`mirror-by-digest-only`, `pull-from-mirror`), then the primary location. Each reference is the
 * original with the registry's prefix replaced by the endpoint's location (unchanged for a
 * `*.domain` prefix without location). Without a matching registry: the reference itself.
 */
export function pullSourcesFor(
  registry: RegistryConfiguration | undefined,
  reference: DockerReference,
): PullSource[] {
  if (registry === undefined)
    return [{ endpoint: { location: reference.name, insecure: false }, reference, isMirror: false }];
  const isDigested = reference.digest !== undefined;
  const mirrors = registry.mirrors.filter((mirror) => {
    if (registry.mirrorByDigestOnly) return isDigested;
    if (mirror.pullFromMirror === 'digest-only') return isDigested;
    if (mirror.pullFromMirror === 'tag-only') return !isDigested;
    return true;
  });
  const text = reference.toString();
  const rewrite = (endpoint: RegistryEndpoint): DockerReference => {
    const length = matchRegistryPrefix(text, registry.prefix);
    if (length === -1) {
      throw new GantryError(
        ErrorCodes.Internal,
        `invalid prefix '${registry.prefix}' for reference '${text}'`,
      );
    }
    if (endpoint.location === '') return reference;
    try {
      return parseNamed(endpoint.location + text.slice(length));
    } catch (error) {
      throw new GantryError(
        ErrorCodes.Internal,
        `rewriting reference ${text} for ${endpoint.location}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
  };
  return [
    ...mirrors.map((mirror) => ({ endpoint: mirror, reference: rewrite(mirror), isMirror: true })),
    { endpoint: registry, reference: rewrite(registry), isMirror: false },
  ];
}
