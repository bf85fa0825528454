/**
 * Short-name resolution: turning an image name written without a registry (`busybox`,
 * `library/busybox:1`, `app@sha256:…`) into fully qualified references, with the rules of
 * containers/image's `pkg/shortnames` and containers-registries.conf(5), for a tool that never
 * prompts.
 *
 * Rules:
 * - A name is *short* when its first component is not a registry: the raw grammar (distribution's
 *   `Parse`, no normalisation) finds no domain, or the domain it finds contains neither `.` nor `:`
 *   and is not `localhost`. `docker.io/library/busybox`, `localhost/app` and `host:5000/app` are not
 *   short; `busybox`, `library/busybox` and `user/app` are. A fully qualified name resolves to
 *   itself (normalised, `:latest` added when it has neither tag nor digest).
 * - The tag and digest are taken off before looking up an alias and put back on every candidate;
 *   a candidate without either gets `:latest`.
 * - Aliases (`[aliases]`, exact match on the name as written, without tag or digest): the user's
 *   alias cache (`short-name-aliases.conf`, see `shortNameAliasCachePath`) is consulted first and
 *   wins over registries.conf's aliases (an empty value there means "no alias", hiding
 *   registries.conf's). An alias gives exactly one candidate, whatever the mode.
 * - Otherwise each of `unqualified-search-registries`, in order, gives the candidate
 *   `<registry>/<name as written>`, normalised: `docker.io` candidates get `library/` for
 *   one-component names, other registries do not.
 * - Neither alias nor search registries: containers/image fails; Gantry instead normalises the
 *   name as skopeo does (`docker.io`, `library/`), so that an empty registries.conf behaves exactly
 *   like skopeo.
 * - Several search candidates, when reading (`purpose: 'pull'`): modes `disabled` and `permissive`
 *   give all of them, to try in order (containers/image's permissive mode does so when it cannot
 *   prompt; Gantry never prompts); `enforcing` fails (`ERR_GANTRY_INVALID_REFERENCE`, naming the
 *   candidates), as containers/image does without a terminal.
 * - When writing (`purpose: 'push'`: push, delete), a short name must name one image: an alias, the
 *   only search registry, or the skopeo normalisation; several search registries are ambiguous in
 *   every mode (`ERR_GANTRY_INVALID_REFERENCE`, naming the candidates). containers/image itself never
 *   resolves short names when pushing.
 * - Aliases are validated as containers/image does: a name must be a short name without tag or
 *   digest; a value must be fully qualified (a registry with `.` or `:`, or `localhost`) without tag
 *   or digest. An invalid alias (in registries.conf or the cache file) fails any short-name
 *   resolution.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { DockerReference } from '@gantry/core/transport';
import {
  ErrorCodes,
  GantryError,
  parseNormalizedNamed,
  parseReferenceGrammar,
  tagNameOnly,
  trimToName,
  withDigest,
  withTag,
} from '@gantry/core/transport';
import type { RegistriesConfiguration, ShortNameMode } from './registries-conf.js';
import { parseToml, type TomlTable } from './toml.js';

/** The name of the alias cache file, under the cache directory. */
const aliasCacheRelativePath = path.join('containers', 'short-name-aliases.conf');

/** The user's short-name alias cache: aliases recorded by tools that prompt (podman, buildah). */
export interface ShortNameAliasCache {
  /** The file read ('' when none). */
  path: string;
  /** Short name → fully qualified repository; '' means "no alias" (it hides registries.conf's). */
  aliases: Record<string, string>;
}

export interface ShortNameAliasCacheOptions {
  environment?: Readonly<Record<string, string | undefined>>;
  homeDirectory?: string;
  /** Default `process.geteuid()`. */
  effectiveUserId?: number;
}

/**
 * Where containers/image keeps the user's short-name aliases: `/var/cache/containers/short-name-aliases.conf`
 * for root; otherwise `$XDG_CACHE_HOME/containers/short-name-aliases.conf`, else
 * `$HOME/.cache/containers/short-name-aliases.conf`.
 */
export function shortNameAliasCachePath(options: ShortNameAliasCacheOptions = {}): string {
  const environment = options.environment ?? process.env;
  const userId = options.effectiveUserId ?? process.geteuid?.() ?? -1;
  if (userId === 0) return path.join('/var/cache', aliasCacheRelativePath);
  const cacheHome =
    environment.XDG_CACHE_HOME ||
    path.join(options.homeDirectory ?? environment.HOME ?? os.homedir(), '.cache');
  return path.join(cacheHome, aliasCacheRelativePath);
}

function aliasFileError(file: string, message: string): GantryError {
  return new GantryError(ErrorCodes.Internal, `loading short-name aliases config file ${file}: ${message}`);
}

/**
 * Reads the alias cache (`[aliases]` of a TOML file; other keys are ignored, as containers/image
 * does). A missing file reads as no aliases. Invalid TOML, a non-string value or an invalid alias is
 * an error naming the file. Gantry never writes this file (it never prompts).
 */
export async function loadShortNameAliasCache(
  file: string = shortNameAliasCachePath(),
): Promise<ShortNameAliasCache> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { path: file, aliases: {} };
    throw aliasFileError(file, (error as Error).message);
  }
  let document: TomlTable;
  try {
    document = parseToml(text);
  } catch (error) {
    throw aliasFileError(file, (error as Error).message);
  }
  const aliases: Record<string, string> = {};
  const table = document.aliases;
  if (table !== undefined) {
    if (typeof table !== 'object' || table === null || Array.isArray(table)) {
      throw aliasFileError(file, 'aliases must be a table');
    }
    for (const [name, value] of Object.entries(table)) {
      if (typeof value !== 'string') throw aliasFileError(file, `alias "${name}" must be a string`);
      aliases[name] = value;
    }
  }
  try {
    validateAliases(aliases);
  } catch (error) {
    throw aliasFileError(file, (error as Error).message);
  }
  return { path: file, aliases };
}

/** The raw parse of a name, or undefined when the grammar refuses it. */
function rawParse(input: string): DockerReference | undefined {
  try {
    return parseReferenceGrammar(input);
  } catch {
    return undefined;
  }
}

function hasRegistry(raw: DockerReference): boolean {
  return raw.domain.includes('.') || raw.domain.includes(':') || raw.domain === 'localhost';
}

/** The name as written, without tag or digest (`library/busybox`, `busybox`). */
function writtenName(raw: DockerReference): string {
  return raw.domain === '' ? raw.path : `${raw.domain}/${raw.path}`;
}

/**
 * True when `input` (`name[:tag][@digest]`, no transport) is a short name: it parses and names no
 * registry (see the module comment). Invalid input is not a short name.
 */
export function isShortName(input: string): boolean {
  const raw = rawParse(input);
  return raw !== undefined && !hasRegistry(raw);
}

/** Checks an alias's name (short, no tag or digest); throws a plain Error with c/image's wording. */
function validateAliasName(name: string): void {
  const raw = rawParse(name);
  if (raw === undefined) throw new Error(`cannot parse short name: "${name}"`);
  if (raw.digest !== undefined) throw new Error(`invalid short name "${name}": must not contain digest`);
  if (raw.tag !== undefined) throw new Error(`invalid short name "${name}": must not contain tag`);
  if (hasRegistry(raw)) throw new Error(`invalid short name "${name}": must not contain registry`);
}

/** Parses an alias's value (fully qualified, no tag or digest), normalised. */
function parseAliasValue(value: string): DockerReference {
  const raw = rawParse(value);
  if (raw === undefined) throw new Error(`parsing alias "${value}": invalid reference format`);
  if (raw.digest !== undefined) throw new Error(`invalid alias "${value}": must not contain digest`);
  if (raw.tag !== undefined) throw new Error(`invalid alias "${value}": must not contain tag`);
  if (!hasRegistry(raw)) throw new Error(`invalid alias "${value}": must contain registry and repository`);
  return parseNormalizedNamed(value);
}

/** Validates every alias; the error lists every invalid one (one per line). */
function validateAliases(aliases: Readonly<Record<string, string>>): void {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(aliases)) {
    try {
      validateAliasName(name);
    } catch (error) {
      problems.push((error as Error).message);
    }
    if (value === '') continue;
    try {
      parseAliasValue(value);
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  if (problems.length > 0) throw new Error(problems.join('\n'));
}

/** How the candidates of a resolution were found. */
export type ShortNameRationale =
  /** The name was not short: it is its own (only) candidate. */
  | 'fully-qualified'
  /** An alias gave the only candidate. */
  | 'alias'
  /** The unqualified-search registries gave the candidates, in order. */
  | 'search-registries'
  /** No alias and no search registry: skopeo's normalisation (docker.io, library/). */
  | 'default-normalisation';

export interface ShortNameResolution {
  /** The name resolved, as given. */
  input: string;
  rationale: ShortNameRationale;
  /** Fully qualified references to try in order, each with the input's tag or digest (or `:latest`). */
  candidates: DockerReference[];
  /** The mode in effect. */
  mode: ShortNameMode;
  /** Where the alias or the search registries come from, for messages ('' when not relevant). */
  origin: string;
}

export interface ResolveShortNameOptions {
  /** `pull` (reading: several candidates may be tried) or `push` (writing, deleting: one is needed). */
  purpose: 'pull' | 'push';
  /** The user's alias cache (see `loadShortNameAliasCache`); consulted before registries.conf's aliases. */
  aliasCache?: ShortNameAliasCache;
}

function configurationOrigin(configuration: RegistriesConfiguration): string {
  return configuration.files.length > 0 ? configuration.files.join(', ') : 'registries.conf';
}

function invalidReference(message: string): GantryError {
  return new GantryError(ErrorCodes.InvalidReference, message);
}

/** Puts the input's tag and digest on `name`, or `:latest` when it has neither. */
function withInputTagAndDigest(name: DockerReference, input: DockerReference): DockerReference {
  let result = name;
  if (input.tag !== undefined) result = withTag(result, input.tag);
  if (input.digest !== undefined) result = withDigest(result, input.digest);
  return tagNameOnly(result);
}

/**
 * Resolves `input` (`name[:tag][@digest]`, no transport) to the fully qualified references it may
 * name, following the module comment's rules with `configuration` (from
 * `loadRegistriesConfiguration`). Pure: reads no file and contacts nothing.
 *
 * Errors: `ERR_GANTRY_INVALID_REFERENCE` for an unparsable name, an invalid candidate, or an
 * ambiguous short name (enforcing mode when reading; several search registries when writing), the
 * message naming the candidates; `ERR_GANTRY_INTERNAL` for invalid aliases in the configuration.
 */
export function resolveShortName(
  input: string,
  configuration: RegistriesConfiguration,
  options: ResolveShortNameOptions,
): ShortNameResolution {
  const mode = configuration.shortNameMode;
  const raw = rawParse(input);
  if (raw === undefined || hasRegistry(raw)) {
    // parseNormalizedNamed throws the grammar's reason for invalid input.
    return {
      input,
      rationale: 'fully-qualified',
      candidates: [tagNameOnly(parseNormalizedNamed(input))],
      mode,
      origin: '',
    };
  }
  try {
    validateAliases(configuration.aliases);
  } catch (error) {
    throw new GantryError(
      ErrorCodes.Internal,
      `loading registries configuration ${configurationOrigin(configuration)}: ${(error as Error).message}`,
    );
  }
  const name = writtenName(raw);
  const cache = options.aliasCache;
  let aliasValue: string | undefined;
  let aliasOrigin = '';
  if (cache !== undefined && Object.hasOwn(cache.aliases, name)) {
    aliasValue = cache.aliases[name];
    aliasOrigin = cache.path;
  } else if (Object.hasOwn(configuration.aliases, name)) {
    aliasValue = configuration.aliases[name];
    aliasOrigin = configurationOrigin(configuration);
  }
  if (aliasValue !== undefined && aliasValue !== '') {
    let target: DockerReference;
    try {
      target = parseAliasValue(aliasValue);
    } catch (error) {
      throw new GantryError(
        ErrorCodes.Internal,
        `alias "${name}" in ${aliasOrigin}: ${(error as Error).message}`,
      );
    }
    return {
      input,
      rationale: 'alias',
      candidates: [withInputTagAndDigest(trimToName(target), raw)],
      mode,
      origin: aliasOrigin,
    };
  }

  const searchRegistries = configuration.unqualifiedSearchRegistries;
  if (searchRegistries.length === 0) {
    return {
      input,
      rationale: 'default-normalisation',
      candidates: [tagNameOnly(parseNormalizedNamed(input))],
      mode,
      origin: '',
    };
  }
  const origin = configurationOrigin(configuration);
  const candidates = searchRegistries.map((registry) => {
    try {
      return tagNameOnly(parseNormalizedNamed(`${registry}/${input}`));
    } catch (error) {
      throw invalidReference(
        `creating reference with unqualified-search registry "${registry}": ${(error as Error).message}`,
      );
    }
  });
  const resolution: ShortNameResolution = {
    input,
    rationale: 'search-registries',
    candidates,
    mode,
    origin,
  };
  if (candidates.length === 1) return resolution;
  const listed = candidates.map((candidate) => candidate.toString()).join(', ');
  if (options.purpose === 'push') {
    throw invalidReference(
      `short name "${input}" is ambiguous for writing: the unqualified-search registries of ${origin} give ${candidates.length} candidates (${listed}); use a fully qualified name or define an alias`,
    );
  }
  if (mode === 'enforcing') {
    throw invalidReference(
      `short-name resolution enforced but cannot prompt without a TTY: short name "${input}" has ${candidates.length} candidates from the unqualified-search registries of ${origin} (${listed}); use a fully qualified name or define an alias`,
    );
  }
  return resolution;
}

/**
 * A line describing how a short name was resolved (containers/image's `Description`), '' for a
 * fully qualified name: `Resolved "x" as an alias (file)`, `Resolving "x" using unqualified-search
 * registries (files)`, `Resolving "x" to docker.io (no alias and no unqualified-search registries)`.
 */
export function describeShortNameResolution(resolution: ShortNameResolution): string {
  const name = writtenName(rawParse(resolution.input) ?? parseNormalizedNamed(resolution.input));
  switch (resolution.rationale) {
    case 'alias':
      return `Resolved "${name}" as an alias (${resolution.origin})`;
    case 'search-registries':
      return `Resolving "${name}" using unqualified-search registries (${resolution.origin})`;
    case 'default-normalisation':
      return `Resolving "${name}" to docker.io (no alias and no unqualified-search registries)`;
    default:
      return '';
  }
}
