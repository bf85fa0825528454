/**
 * The files of the `docker save` format: `manifest.json` (one item per image), `repositories` (legacy
 * name → tag → top layer ID), legacy layer directories (`<id>/json`, `<id>/layer.tar`, `<id>/VERSION`).
 */
import { type Digest, ErrorCodes, GantryError, parseDigest } from '@gantry/core/transport';

/** `manifest.json` file name. */
export const manifestFileName = 'manifest.json';
/** Legacy `repositories` file name. */
export const repositoriesFileName = 'repositories';
/** Legacy per-layer directory files. */
export const legacyLayerFileName = 'layer.tar';
export const legacyConfigFileName = 'json';
export const legacyVersionFileName = 'VERSION';

/** A descriptor in `LayerSources` (foreign layers). */
export interface LayerSourceDescriptor {
  mediaType: string;
  size: number;
  digest: Digest;
  urls?: string[];
}

/** One element of `manifest.json`. */
export interface ManifestItem {
  /** Path of the image config in the archive. */
  Config: string;
  /** Tags as written (`docker.io/library/busybox:latest` or familiar `busybox:latest`); may be empty. */
  RepoTags: string[];
  /** Paths of the layers in the archive, base first. */
  Layers: string[];
  Parent?: string;
  LayerSources?: Record<string, LayerSourceDescriptor>;
}

function invalid(message: string): GantryError {
  return new GantryError(ErrorCodes.InvalidLayout, message);
}

/**
 * Parses `manifest.json`; throws `ERR_GANTRY_INVALID_LAYOUT` naming the problem when it is not a JSON array
 * of items with a string `Config`, an array of string `Layers`, and `RepoTags` an array of strings or null.
 */
export function parseManifestJson(bytes: Uint8Array): ManifestItem[] {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (error) {
    throw new GantryError(
      ErrorCodes.InvalidLayout,
      `invalid ${manifestFileName}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  if (!Array.isArray(value)) throw invalid(`invalid ${manifestFileName}: not a JSON array`);
  return value.map((item: unknown, index): ManifestItem => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      throw invalid(`invalid ${manifestFileName}: item @${index} is not an object`);
    }
    const record = item as Record<string, unknown>;
    const isStringArray = (field: unknown) =>
      Array.isArray(field) && field.every((element) => typeof element === 'string');
    if (typeof record.Config !== 'string' || record.Config === '') {
      throw invalid(`invalid ${manifestFileName}: item @${index} has no Config path`);
    }
    if (!isStringArray(record.Layers)) {
      throw invalid(`invalid ${manifestFileName}: item @${index}: Layers is not an array of paths`);
    }
    if (record.RepoTags !== undefined && record.RepoTags !== null && !isStringArray(record.RepoTags)) {
      throw invalid(`invalid ${manifestFileName}: item @${index}: RepoTags is not an array of strings`);
    }
    const result: ManifestItem = {
      Config: record.Config,
      RepoTags: (record.RepoTags as string[] | null | undefined) ?? [],
      Layers: record.Layers as string[],
    };
    if (typeof record.Parent === 'string' && record.Parent !== '') result.Parent = record.Parent;
    if (typeof record.LayerSources === 'object' && record.LayerSources !== null) {
      result.LayerSources = record.LayerSources as Record<string, LayerSourceDescriptor>;
    }
    return result;
  });
}

/** Parses the legacy `repositories` file: `{ name: { tag: topLayerId } }`. */
export function parseRepositories(bytes: Uint8Array): Record<string, Record<string, string>> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (error) {
    throw new GantryError(
      ErrorCodes.InvalidLayout,
      `invalid ${repositoriesFileName}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(`invalid ${repositoriesFileName}: not a JSON object`);
  }
  for (const [name, tags] of Object.entries(value)) {
    if (typeof tags !== 'object' || tags === null || Array.isArray(tags)) {
      throw invalid(`invalid ${repositoriesFileName}: entry "${name}" is not an object`);
    }
    for (const [tag, id] of Object.entries(tags as object)) {
      if (typeof id !== 'string')
        throw invalid(`invalid ${repositoriesFileName}: "${name}:${tag}" is not a layer ID`);
    }
  }
  return value as Record<string, Record<string, string>>;
}

/** The digest a `blobs/<algorithm>/<hex>` path (the OCI layout docker 25+ writes) names, if it is one. */
export function digestFromBlobPath(entryPath: string): Digest | undefined {
  const match = /^(?:\.\/)?blobs\/([a-z0-9]+)\/([a-f0-9]+)$/.exec(entryPath);
  if (!match) return undefined;
  try {
    return parseDigest(`${match[1]}:${match[2]}`);
  } catch {
    return undefined;
  }
}

/**
 * The raw JSON text of each top-level member of a JSON object (like Go's `map[string]*json.RawMessage`),
 * in document order. Throws `ERR_GANTRY_INVALID_MANIFEST` when `text` is not a JSON object.
 */
export function rawJsonMembers(text: string): Map<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new GantryError(ErrorCodes.InvalidManifest, `invalid image config: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new GantryError(ErrorCodes.InvalidManifest, 'invalid image config: not a JSON object');
  }
  const members = new Map<string, string>();
  let index = text.indexOf('{') + 1;
  const skipWhitespace = () => {
    while (index < text.length && /\s/.test(text[index]!)) index++;
  };
  const scanString = () => {
    const start = index;
    index++;
    while (text[index] !== '"') index += text[index] === '\\' ? 2 : 1;
    index++;
    return text.slice(start, index);
  };
  const scanValue = () => {
    const start = index;
    let depth = 0;
    while (index < text.length) {
      const character = text[index]!;
      if (character === '"') {
        scanString();
        if (depth === 0) break;
        continue;
      }
      if (character === '{' || character === '[') depth++;
      else if (character === '}' || character === ']') {
        if (depth === 0) break;
        depth--;
        if (depth === 0) {
          index++;
          break;
        }
      } else if (depth === 0 && character === ',') break;
      index++;
    }
    return text.slice(start, index).trim();
  };
  for (;;) {
    skipWhitespace();
    if (text[index] !== '"') break;
    const key = JSON.parse(scanString()) as string;
    skipWhitespace();
    index++; // ':'
    skipWhitespace();
    members.set(key, scanValue());
    skipWhitespace();
    if (text[index] === ',') index++;
  }
  return members;
}
