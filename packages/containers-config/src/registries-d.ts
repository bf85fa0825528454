/**
 * containers-registries.d(5): where signatures of `docker://` images are stored (a "lookaside"
 * signature storage, and sigstore attachments), read as containers/image's `docker/registries_d.go`.
 *
 * Rules:
 * - The directory is the explicit one (`--registries.d`, `TransportContext.registriesDirectoryPath`),
 *   else `$HOME/.config/containers/registries.d` when it exists, else `/etc/containers/registries.d`.
 *   Only one directory is read (the user's directory replaces the system one, it is not merged). A
 *   missing directory reads as empty (also an explicit one, as containers/image).
 * - Every `*.yaml` file of the directory is read (other names are ignored) and merged: at most one
 *   file may have `default-docker`, and a scope under `docker` may appear in one file only; a second
 *   definition is an error naming both files.
 * - Each file is a YAML mapping with the optional keys `default-docker` (a section) and `docker` (a
 *   mapping from scope to section). A section has `lookaside`, `lookaside-staging`, `sigstore`,
 *   `sigstore-staging` (the deprecated names of the first two) and `use-sigstore-attachments`.
 *   Unknown keys are ignored, as containers/image's YAML decoder does.
 * - A scope is a fully expanded docker reference with a tag or digest (one image), a repository, a
 *   namespace, a registry host (with its port), or a wildcard domain (`*.example.com`); lookups try the
 *   image's identity, then its namespaces from the most to the least specific (as policy.json scopes,
 *   see `signatureStorageScopesFor`), then `default-docker`. As in containers/image's code, a scope that
 *   matches but does not set the value looked for (no lookaside URL for the wanted access, or no
 *   `use-sigstore-attachments`) passes the lookup on to the next, less specific, scope.
 * - With nothing configured, the lookaside is `/var/lib/containers/sigstore` for root and
 *   `$HOME/.local/share/containers/sigstore` for other users; sigstore attachments are off.
 *
 * YAML: read with the `yaml` package (loaded when the first file is read), one document per file;
 * errors name the file and the line.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Digest, DockerReference } from '@gantry/core/transport';
import { ErrorCodes, enclosingNamespaces, GantryError } from '@gantry/core/transport';
import { yamlModule } from './lazy-modules.js';

/** One configuration section of a registries.d file. Absent members were not set. */
export interface SignatureStorageSection {
  /** `lookaside`: URL read from, and written to when there is no staging URL. */
  lookaside?: string;
  /** `lookaside-staging`: URL written to. */
  lookasideStaging?: string;
  /** `sigstore` (deprecated name of `lookaside`). */
  sigstore?: string;
  /** `sigstore-staging` (deprecated name of `lookaside-staging`). */
  sigstoreStaging?: string;
  /** `use-sigstore-attachments`. */
  useSigstoreAttachments?: boolean;
}

/** What one registries.d file sets. */
export interface RegistriesDirectoryFile {
  defaultDocker?: SignatureStorageSection;
  /** Scope → section, in file order. */
  docker: Map<string, SignatureStorageSection>;
}

/** The merged configuration of a registries.d directory. */
export interface RegistriesDirectoryConfiguration {
  /** The directory that was used (it may not exist). */
  directory: string;
  /** The files read, in the order they were merged. */
  files: string[];
  defaultDocker?: SignatureStorageSection;
  /** Scope → section. */
  docker: Map<string, SignatureStorageSection>;
}

export interface RegistriesDirectorySearchOptions {
  /** An explicit directory (`--registries.d`); used even when it does not exist. */
  registriesDirectoryPath?: string;
  /** Default `os.homedir()`. */
  homeDirectory?: string;
  /** Default `/etc/containers/registries.d`. */
  systemDirectory?: string;
}

/** containers/image's system registries.d directory. */
export const systemRegistriesDirectory = '/etc/containers/registries.d';

/**
 * A YAML value as the registries.d reader sees it: a scalar (its text as written, and whether it was
 * quoted), null, a mapping, or a sequence (which no key of these files accepts), each with its line.
 */
export type RegistriesYamlValue =
  | { kind: 'scalar'; value: string; quoted: boolean; line: number }
  | { kind: 'null'; line: number }
  | { kind: 'sequence'; line: number }
  | { kind: 'mapping'; entries: Map<string, RegistriesYamlValue>; line: number };

function yamlError(file: string, line: number, message: string): GantryError {
  return new GantryError(ErrorCodes.InvalidConfiguration, `parsing ${file}: line ${line}: ${message}`);
}

/**
 * Parses a registries.d file with the `yaml` package (YAML 1.2 syntax; one document; keys unique)
 * into nested values with their lines (aliases resolved). Errors name `file` and the line.
 */
export function parseRegistriesDirectoryYaml(text: string, file: string): RegistriesYamlValue {
  const library = yamlModule();
  const lineCounter = new library.LineCounter();
  const lineOf = (offset: number | undefined) =>
    offset === undefined ? 1 : lineCounter.linePos(offset).line;
  const documents = library.parseAllDocuments(text, { lineCounter, uniqueKeys: true });
  if (!Array.isArray(documents)) return { kind: 'null', line: 1 };
  const [document, second] = documents;
  for (const found of documents) {
    const problem = found.errors[0];
    if (problem) {
      const line = problem.linePos?.[0].line ?? lineOf(problem.pos[0]);
      throw yamlError(file, line, problem.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, ''));
    }
  }
  if (second) {
    throw yamlError(file, lineOf(second.range[0]), 'several YAML documents in one file are not supported');
  }
  if (!document) return { kind: 'null', line: 1 };
  const convert = (node: unknown, depth: number): RegistriesYamlValue => {
    if (depth > 64) throw yamlError(file, 1, 'nested too deeply');
    let resolved = node;
    if (library.isAlias(resolved)) resolved = resolved.resolve(document);
    if (resolved === null || resolved === undefined) return { kind: 'null', line: 1 };
    const line = lineOf((resolved as { range?: [number, number, number] }).range?.[0]);
    if (library.isScalar(resolved)) {
      const quoted = resolved.type === 'QUOTE_DOUBLE' || resolved.type === 'QUOTE_SINGLE';
      if (!quoted && resolved.value === null) return { kind: 'null', line };
      const value =
        quoted || resolved.type === 'BLOCK_LITERAL' || resolved.type === 'BLOCK_FOLDED'
          ? String(resolved.value)
          : (resolved.source ?? String(resolved.value));
      return { kind: 'scalar', value, quoted, line };
    }
    if (library.isSeq(resolved)) return { kind: 'sequence', line };
    if (library.isMap(resolved)) {
      const entries = new Map<string, RegistriesYamlValue>();
      for (const pair of resolved.items) {
        const key = convert(pair.key, depth + 1);
        if (key.kind !== 'scalar' && key.kind !== 'null')
          throw yamlError(file, key.line, 'mapping keys must be scalars');
        entries.set(key.kind === 'scalar' ? key.value : '', convert(pair.value, depth + 1));
      }
      return { kind: 'mapping', entries, line };
    }
    throw yamlError(file, line, 'unexpected YAML node');
  };
  return convert(document.contents, 0);
}

const yaml11True = new Set(['true', 'True', 'TRUE', 'y', 'Y', 'yes', 'Yes', 'YES', 'on', 'On', 'ON']);
const yaml11False = new Set(['false', 'False', 'FALSE', 'n', 'N', 'no', 'No', 'NO', 'off', 'Off', 'OFF']);

function sectionFrom(
  value: RegistriesYamlValue,
  file: string,
  where: string,
): SignatureStorageSection | undefined {
  if (value.kind === 'null') return {};
  if (value.kind !== 'mapping') {
    const got = value.kind === 'scalar' ? JSON.stringify(value.value) : 'a sequence';
    throw yamlError(file, value.line, `${where} must be a mapping, got ${got}`);
  }
  const section: SignatureStorageSection = {};
  const stringFields: Array<[string, 'lookaside' | 'lookasideStaging' | 'sigstore' | 'sigstoreStaging']> = [
    ['lookaside', 'lookaside'],
    ['lookaside-staging', 'lookasideStaging'],
    ['sigstore', 'sigstore'],
    ['sigstore-staging', 'sigstoreStaging'],
  ];
  for (const [key, field] of stringFields) {
    const entry = value.entries.get(key);
    if (entry === undefined || entry.kind === 'null') continue;
    if (entry.kind !== 'scalar') throw yamlError(file, entry.line, `${where}.${key} must be a string`);
    if (entry.value !== '') section[field] = entry.value;
  }
  const attachments = value.entries.get('use-sigstore-attachments');
  if (attachments !== undefined && attachments.kind !== 'null') {
    const text = attachments.kind === 'scalar' ? attachments.value : undefined;
    const quoted = attachments.kind === 'scalar' && attachments.quoted;
    if (text !== undefined && !quoted && ['true', 'True', 'TRUE'].includes(text))
      section.useSigstoreAttachments = true;
    else if (text !== undefined && !quoted && ['false', 'False', 'FALSE'].includes(text))
      section.useSigstoreAttachments = false;
    else if (text !== undefined && yaml11True.has(text)) section.useSigstoreAttachments = true;
    else if (text !== undefined && yaml11False.has(text)) section.useSigstoreAttachments = false;
    else {
      throw yamlError(
        file,
        attachments.line,
        `${where}.use-sigstore-attachments must be a boolean${text !== undefined ? `, got ${JSON.stringify(text)}` : ''}`,
      );
    }
  }
  return section;
}

/**
 * Parses one registries.d file: YAML (see `parseRegistriesDirectoryYaml`) whose top level is a
 * mapping (or empty); `default-docker` is a section, `docker` a mapping of scope → section (a null
 * section is an empty one). Unknown keys are ignored. Errors name `file` and the line.
 */
export function parseRegistriesDirectoryFile(text: string, file: string): RegistriesDirectoryFile {
  const document = parseRegistriesDirectoryYaml(text, file);
  const result: RegistriesDirectoryFile = { docker: new Map() };
  if (document.kind === 'null') return result;
  if (document.kind !== 'mapping') throw yamlError(file, document.line, 'the document must be a mapping');
  const defaultDocker = document.entries.get('default-docker');
  if (defaultDocker !== undefined && defaultDocker.kind !== 'null') {
    result.defaultDocker = sectionFrom(defaultDocker, file, 'default-docker');
  }
  const docker = document.entries.get('docker');
  if (docker !== undefined && docker.kind !== 'null') {
    if (docker.kind !== 'mapping') throw yamlError(file, docker.line, '"docker" must be a mapping of scopes');
    for (const [scope, value] of docker.entries) {
      result.docker.set(scope, sectionFrom(value, file, `docker.${JSON.stringify(scope)}`)!);
    }
  }
  return result;
}

// The directory and its files are read synchronously (small local files, read before the copy starts):
// asynchronous reads would start libuv's thread pool for them alone.
function isExistingPath(candidate: string): boolean {
  try {
    statSync(candidate);
    return true;
  } catch {
    return false;
  }
}

/**
 * The registries.d directory to use: the explicit one, else `$HOME/.config/containers/registries.d`
 * when it exists, else the system directory.
 */
export async function registriesDirectoryLocation(
  options: RegistriesDirectorySearchOptions = {},
): Promise<string> {
  if (options.registriesDirectoryPath !== undefined && options.registriesDirectoryPath !== '') {
    return options.registriesDirectoryPath;
  }
  const home = options.homeDirectory ?? os.homedir();
  const user = path.join(home, '.config', 'containers', 'registries.d');
  if (isExistingPath(user)) return user;
  return options.systemDirectory ?? systemRegistriesDirectory;
}

/**
 * Loads and merges the registries.d directory (see the module comment). Files are merged in name
 * order (containers/image uses the directory's order; the result is the same since definitions may
 * not repeat). A missing directory gives an empty configuration; unreadable files and invalid YAML
 * are errors naming the file.
 */
export async function loadRegistriesDirectory(
  options: RegistriesDirectorySearchOptions = {},
): Promise<RegistriesDirectoryConfiguration> {
  const directory = await registriesDirectoryLocation(options);
  const configuration: RegistriesDirectoryConfiguration = { directory, files: [], docker: new Map() };
  let names: string[];
  try {
    names = readdirSync(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return configuration;
    throw new GantryError(
      ErrorCodes.Internal,
      `reading registries.d directory ${directory}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  let defaultDockerFile: string | undefined;
  const scopeFiles = new Map<string, string>();
  for (const name of names.filter((entry) => entry.endsWith('.yaml')).sort()) {
    const file = path.join(directory, name);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') continue;
      throw new GantryError(ErrorCodes.Internal, `reading ${file}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const parsed = parseRegistriesDirectoryFile(text, file);
    configuration.files.push(file);
    if (parsed.defaultDocker !== undefined) {
      if (defaultDockerFile !== undefined) {
        throw new GantryError(
          ErrorCodes.Internal,
          `Error parsing signature storage configuration: "default-docker" defined both in "${defaultDockerFile}" and "${file}"`,
        );
      }
      configuration.defaultDocker = parsed.defaultDocker;
      defaultDockerFile = file;
    }
    for (const [scope, section] of parsed.docker) {
      const previous = scopeFiles.get(scope);
      if (previous !== undefined) {
        throw new GantryError(
          ErrorCodes.Internal,
          `Error parsing signature storage configuration: "docker" namespace "${scope}" defined both in "${previous}" and "${file}"`,
        );
      }
      configuration.docker.set(scope, section);
      scopeFiles.set(scope, file);
    }
  }
  return configuration;
}

/**
 * The registries.d scopes that may configure `reference`, most specific first: its identity
 * (`name:tag` or `name@digest`; the name alone when it has neither), the repository, each parent
 * namespace up to the registry host (with its port), then wildcard domains from the host without its
 * port (`*.example.com`, `*.com`) — the docker transport's policy.json scopes.
 */
export function signatureStorageScopesFor(reference: DockerReference): string[] {
  const scopes: string[] = [];
  if (reference.digest !== undefined) scopes.push(`${reference.name}@${reference.digest}`);
  else if (reference.tag !== undefined) scopes.push(`${reference.name}:${reference.tag}`);
  scopes.push(...enclosingNamespaces(reference.name));
  return scopes;
}

function sectionsFor(
  configuration: Pick<RegistriesDirectoryConfiguration, 'docker' | 'defaultDocker'>,
  reference: DockerReference,
): SignatureStorageSection[] {
  const sections: SignatureStorageSection[] = [];
  for (const scope of signatureStorageScopesFor(reference)) {
    const section = configuration.docker.get(scope);
    if (section !== undefined) sections.push(section);
  }
  if (configuration.defaultDocker !== undefined) sections.push(configuration.defaultDocker);
  return sections;
}

function sectionTopLevel(section: SignatureStorageSection, write: boolean): string | undefined {
  if (write) {
    if (section.lookasideStaging !== undefined) return section.lookasideStaging;
    if (section.sigstoreStaging !== undefined) return section.sigstoreStaging;
  }
  return section.lookaside ?? section.sigstore;
}

export interface LookasideOptions {
  /** Whether the process runs as root (default: effective uid 0). Chooses the built-in default. */
  isRoot?: boolean;
  /** Default `os.homedir()` (built-in default for non-root). */
  homeDirectory?: string;
}

/**
 * The configured lookaside URL for `reference` (`lookaside-staging`, then `lookaside`, for writing;
 * `lookaside` for reading; the deprecated `sigstore*` names after each), as written in the file, or
 * the built-in default directory as a `file:` URL when no scope configures one.
 */
export function lookasideTopLevel(
  configuration: Pick<RegistriesDirectoryConfiguration, 'docker' | 'defaultDocker'>,
  reference: DockerReference,
  write: boolean,
  options: LookasideOptions = {},
): string {
  for (const section of sectionsFor(configuration, reference)) {
    const topLevel = sectionTopLevel(section, write);
    if (topLevel !== undefined) return topLevel;
  }
  const isRoot = options.isRoot ?? process.geteuid?.() === 0;
  const directory = isRoot
    ? '/var/lib/containers/sigstore'
    : path.join(options.homeDirectory ?? os.homedir(), '.local', 'share', 'containers', 'sigstore');
  return pathToFileURL(directory).href;
}

/**
 * The lookaside base of `reference`'s repository: the top-level URL (`lookasideTopLevel`) with
 * `/<repository path>` appended to its path (no tag or digest; `docker.io/library/busybox` →
 * `<top>/library/busybox`). Throws `ERR_GANTRY_NOT_SUPPORTED` when the URL cannot be parsed or has
 * no scheme (containers/image then fails when reading or writing signatures).
 */
export function lookasideBaseUrl(
  configuration: Pick<RegistriesDirectoryConfiguration, 'docker' | 'defaultDocker'>,
  reference: DockerReference,
  write: boolean,
  options: LookasideOptions = {},
): URL {
  const topLevel = lookasideTopLevel(configuration, reference, write, options);
  let url: URL;
  try {
    url = new URL(topLevel);
  } catch {
    throw new GantryError(
      ErrorCodes.NotSupported,
      `Unsupported signature storage URL ${JSON.stringify(topLevel)} (registries.d): it must be a file://, http:// or https:// URL`,
    );
  }
  // Go's URL keeps an empty path empty ("https://host" + "/repo"); WHATWG URLs make it "/".
  const hasPath = !/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*(?:[?#]|$)/.test(topLevel);
  url.pathname = `${hasPath ? url.pathname : ''}/${reference.path}`;
  return url;
}

/**
 * The URL of signature `index` (zero-based) of `manifestDigest` under a lookaside base:
 * `<base>@<algorithm>=<hex>/signature-<index + 1>`.
 */
export function lookasideSignatureUrl(base: URL, manifestDigest: Digest, index: number): URL {
  const colon = manifestDigest.indexOf(':');
  const algorithm = manifestDigest.slice(0, colon);
  const encoded = manifestDigest.slice(colon + 1);
  if (
    colon <= 0 ||
    !/^[a-z0-9]+(?:[.+_-][a-z0-9]+)*$/.test(algorithm) ||
    !/^[a-zA-Z0-9=_-]+$/.test(encoded)
  ) {
    throw new GantryError(
      ErrorCodes.InvalidDigest,
      `invalid manifest digest ${JSON.stringify(manifestDigest)}`,
    );
  }
  const url = new URL(base.href);
  url.pathname = `${url.pathname}@${algorithm}=${encoded}/signature-${index + 1}`;
  return url;
}

/**
 * Whether sigstore attachments are read and written for `reference`: the first scope (most specific
 * first, then `default-docker`) that sets `use-sigstore-attachments` decides; false otherwise.
 */
export function usesSigstoreAttachments(
  configuration: Pick<RegistriesDirectoryConfiguration, 'docker' | 'defaultDocker'>,
  reference: DockerReference,
): boolean {
  for (const section of sectionsFor(configuration, reference)) {
    if (section.useSigstoreAttachments !== undefined) return section.useSigstoreAttachments;
  }
  return false;
}
