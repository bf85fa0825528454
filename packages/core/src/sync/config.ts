/**
 * skopeo sync's YAML source file (`--src yaml`), read with the `yaml` package and checked key by key so
 * that every mistake is reported with its line and what is wrong, before anything is contacted.
 *
 * The format is skopeo's, unchanged: a mapping of registry names (`host[:port]`) to
 *
 * ```yaml
 * registry.example.com:
 *   images:                       # repository → tags or digests; an empty list means every tag
 *     busybox: []
 *     redis: ["1.0", "sha256:…"]
 *   images-by-tag-regex:          # repository → regular expression the tags must match
 *     nginx: ^1\.13\.[12]-alpine-perl$
 *   images-by-semver:             # repository → semantic version constraint (Masterminds/semver syntax)
 *     alpine: ">= 3.12.0"
 *   credentials: { username: john, password: secret }
 *   tls-verify: true              # absent: registries.conf decides
 *   cert-dir: /home/john/certs
 * ```
 *
 * Gantry adds two keys per registry (skopeo ignores keys it does not know, so such a file still works
 * with skopeo, without these filters): `exclude-tags` (a list of regular expressions; tags matching any
 * are left out of every repository of the registry) and `newest-tags` (keep at most that many tags per
 * repository, the highest versions; see filters.ts). Scalars are read as YAML 1.1 (as skopeo's
 * gopkg.in/yaml), so `tls-verify: yes` is true, and a tag keeps its text (`1.0` stays "1.0").
 */
import { createRequire } from 'node:module';
import type { Node, Scalar } from 'yaml';

/**
 * The `yaml` package, loaded on first use: every `gantry` command loads core, few read YAML. Required
 * through a module-level `createRequire` so the CLI's one-file bundle carries it inside
 * (scripts/bundle-package.mjs inlines such requires of literal names).
 */
const require = createRequire(import.meta.url);
let yamlModule: typeof import('yaml') | undefined;
function yaml(): typeof import('yaml') {
  yamlModule ??= require('yaml') as typeof import('yaml');
  return yamlModule;
}

import { ErrorCodes, GantryError } from '../errors.js';
import {
  compileTagPattern,
  parseVersionConstraint,
  type TagPattern,
  type VersionConstraint,
} from './filters.js';

/** One registry's section of the YAML file. */
export interface SyncRegistryConfig {
  /** The registry name as written (`host[:port]`). */
  registry: string;
  /** Repository → tags or digests (empty: every tag). */
  images: Array<{ repository: string; references: string[] }>;
  /** Repository → compiled tag pattern. */
  imagesByTagRegex: Array<{ repository: string; pattern: TagPattern }>;
  /** Repository → version constraint. */
  imagesBySemver: Array<{ repository: string; constraint: VersionConstraint }>;
  credentials?: { username: string; password: string };
  /** `tls-verify`; undefined when absent (registries.conf decides). */
  tlsVerify?: boolean;
  /** `cert-dir`; undefined when absent. */
  certDirectory?: string;
  /** Gantry: tags matching any of these are excluded. */
  excludeTags: TagPattern[];
  /** Gantry: at most this many tags per repository (the newest versions). */
  newestTags?: number;
}

const knownRegistryKeys = [
  'images',
  'images-by-tag-regex',
  'images-by-semver',
  'credentials',
  'tls-verify',
  'cert-dir',
  'exclude-tags',
  'newest-tags',
] as const;

/** Reads a YAML sync file's text; `fileName` names it in errors. Throws `ERR_GANTRY_USAGE` naming the line and the problem. */
export function parseSyncConfig(text: string, fileName: string): SyncRegistryConfig[] {
  const { isMap, isScalar, isSeq, LineCounter, parseDocument } = yaml();
  const lineCounter = new LineCounter();
  const document = parseDocument(text, {
    lineCounter,
    version: '1.1',
    uniqueKeys: true,
    prettyErrors: false,
  });
  const fail = (node: Node | undefined | null, message: string): never => {
    const offset = node?.range?.[0];
    if (offset === undefined) throw new GantryError(ErrorCodes.Usage, `${fileName}: ${message}`);
    const position = lineCounter.linePos(offset);
    throw new GantryError(
      ErrorCodes.Usage,
      `${fileName}: line ${position.line}, column ${position.col}: ${message}`,
    );
  };
  if (document.errors.length > 0) {
    const first = document.errors[0]!;
    const position = first.linePos?.[0] ?? lineCounter.linePos(first.pos[0]);
    const where = position ? ` line ${position.line}, column ${position.col}:` : '';
    throw new GantryError(
      ErrorCodes.Usage,
      `${fileName}:${where} invalid YAML: ${first.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
    );
  }
  const root = document.contents;
  if (root === null || (isScalar(root) && (root.value === null || root.value === ''))) return [];
  if (!isMap(root)) fail(root, 'expected a mapping of registry names to their settings');
  const registries: SyncRegistryConfig[] = [];
  for (const pair of (root as { items: Array<{ key: unknown; value: unknown }> }).items) {
    const keyNode = pair.key as Node;
    const registry = scalarText(keyNode);
    if (registry === undefined || registry === '') fail(keyNode, 'expected a registry name as key');
    const section = pair.value as Node | null;
    const config: SyncRegistryConfig = {
      registry: registry!,
      images: [],
      imagesByTagRegex: [],
      imagesBySemver: [],
      excludeTags: [],
    };
    registries.push(config);
    if (section === null || (isScalar(section) && section.value === null)) continue;
    if (!isMap(section))
      fail(section, `registry ${registry}: expected a mapping (images, images-by-tag-regex, …)`);
    for (const entry of (section as { items: Array<{ key: unknown; value: unknown }> }).items) {
      const entryKeyNode = entry.key as Node;
      const key = scalarText(entryKeyNode);
      const value = entry.value as Node | null;
      const context = `registry ${registry}, ${key}`;
      switch (key) {
        case 'images':
          for (const [repository, repositoryNode, refsNode] of mappingEntries(value, context, fail)) {
            const references: string[] = [];
            if (refsNode !== null && !(isScalar(refsNode) && refsNode.value === null)) {
              if (!isSeq(refsNode)) {
                fail(refsNode, `${context}, ${repository}: expected a list of tags or digests`);
              }
              for (const item of (refsNode as { items: unknown[] }).items) {
                const text = scalarText(item as Node);
                if (text === undefined || text === '') {
                  fail(item as Node, `${context}, ${repository}: expected a tag or a digest`);
                }
                references.push(text!);
              }
            }
            void repositoryNode;
            config.images.push({ repository, references });
          }
          break;
        case 'images-by-tag-regex':
          for (const [repository, , patternNode] of mappingEntries(value, context, fail)) {
            const text = scalarText(patternNode);
            if (text === undefined)
              fail(patternNode, `${context}, ${repository}: expected a regular expression`);
            try {
              config.imagesByTagRegex.push({ repository, pattern: compileTagPattern(text!) });
            } catch (error) {
              fail(patternNode, `${context}, ${repository}: ${(error as Error).message}`);
            }
          }
          break;
        case 'images-by-semver':
          for (const [repository, , constraintNode] of mappingEntries(value, context, fail)) {
            const text = scalarText(constraintNode);
            if (text === undefined)
              fail(constraintNode, `${context}, ${repository}: expected a version constraint`);
            try {
              config.imagesBySemver.push({ repository, constraint: parseVersionConstraint(text!) });
            } catch (error) {
              fail(constraintNode, `${context}, ${repository}: ${(error as Error).message}`);
            }
          }
          break;
        case 'credentials': {
          if (!isMap(value)) fail(value, `${context}: expected a mapping with username and password`);
          const credentials = { username: '', password: '' };
          for (const item of (value as { items: Array<{ key: unknown; value: unknown }> }).items) {
            const name = scalarText(item.key as Node);
            if (name !== 'username' && name !== 'password') {
              fail(item.key as Node, `${context}: unknown key "${name}" (expected username and password)`);
            }
            const text = scalarText(item.value as Node);
            if (text === undefined) fail(item.value as Node, `${context}: ${name} must be a string`);
            credentials[name as 'username' | 'password'] = text!;
          }
          if (credentials.username !== '' || credentials.password !== '') config.credentials = credentials;
          break;
        }
        case 'tls-verify':
          if (!isScalar(value) || typeof value.value !== 'boolean')
            fail(value, `${context}: expected true or false`);
          config.tlsVerify = (value as Scalar<boolean>).value;
          break;
        case 'cert-dir': {
          const text = scalarText(value);
          if (text === undefined) fail(value, `${context}: expected a directory path`);
          if (text !== '') config.certDirectory = text!;
          break;
        }
        case 'exclude-tags': {
          if (!isSeq(value)) fail(value, `${context}: expected a list of regular expressions`);
          for (const item of (value as { items: unknown[] }).items) {
            const text = scalarText(item as Node);
            if (text === undefined) fail(item as Node, `${context}: expected a regular expression`);
            try {
              config.excludeTags.push(compileTagPattern(text!));
            } catch (error) {
              fail(item as Node, `${context}: ${(error as Error).message}`);
            }
          }
          break;
        }
        case 'newest-tags': {
          const number = isScalar(value) ? value.value : undefined;
          if (typeof number !== 'number' || !Number.isSafeInteger(number) || number < 1) {
            fail(value, `${context}: expected a whole number of tags, at least 1`);
          }
          config.newestTags = number as number;
          break;
        }
        default:
          fail(
            entryKeyNode,
            `registry ${registry}: unknown key "${key}" (expected one of ${knownRegistryKeys.join(', ')})`,
          );
      }
    }
  }
  return registries;
}

/** A scalar's text: strings as they are, other plain scalars (numbers, booleans) as written. */
function scalarText(node: Node | null | undefined): string | undefined {
  if (!yaml().isScalar(node)) return undefined;
  if (typeof node.value === 'string') return node.value;
  if (node.value === null) return undefined;
  const source = (node as Scalar & { source?: string }).source;
  return typeof source === 'string' ? source : String(node.value);
}

/** The entries of a `repository: value` mapping. */
function mappingEntries(
  node: Node | null,
  context: string,
  fail: (node: Node | undefined | null, message: string) => never,
): Array<[string, Node, Node | null]> {
  const { isMap, isScalar } = yaml();
  if (node === null || (isScalar(node) && node.value === null)) return [];
  if (!isMap(node)) fail(node, `${context}: expected a mapping of repositories`);
  const entries: Array<[string, Node, Node | null]> = [];
  for (const item of (node as { items: Array<{ key: unknown; value: unknown }> }).items) {
    const keyNode = item.key as Node;
    const repository = scalarText(keyNode);
    if (repository === undefined || repository === '')
      fail(keyNode, `${context}: expected a repository name`);
    entries.push([repository!, keyNode, item.value as Node | null]);
  }
  return entries;
}
