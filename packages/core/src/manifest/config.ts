import type { Digest } from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
import { goJsonMarshal, goJsonMarshalWithRaw, goTimeRoundTrip, goZeroTime, RawJson } from './go-json.js';
import { type DecodedSchema1, decodeJsonObject, isJsonObject, type JsonObject } from './parse.js';

/**
 * An image config (OCI `application/vnd.oci.image.config.v1+json` or Docker
 * `application/vnd.docker.container.image.v1+json`), typed loosely: only fields Gantry reads are
 * typed, everything else is kept in `raw`.
 */
export interface ImageConfig {
  created?: string;
  author?: string;
  architecture?: string;
  os?: string;
  variant?: string;
  dockerVersion?: string;
  config?: { Env?: string[]; Labels?: Record<string, string>; [key: string]: unknown };
  rootfs?: { type?: string; diff_ids?: Digest[] };
  history?: Array<Record<string, unknown>>;
  /** The whole decoded JSON object. */
  raw: Record<string, unknown>;
}

function invalidConfig(problem: string): GantryError {
  return new GantryError(ErrorCodes.InvalidManifest, `invalid image config: ${problem}`);
}

/** Go's `strings.EqualFold` for ASCII field names (what encoding/json uses to match keys to fields). */
function equalFold(left: string, right: string): boolean {
  return left.toLowerCase() === right.toLowerCase();
}

type FieldKind =
  | 'string'
  | 'bool'
  | 'time'
  | 'strings'
  | 'stringMap'
  | 'set'
  | { struct: readonly FieldSpec[] }
  | { structs: readonly FieldSpec[] };
interface FieldSpec {
  key: string;
  kind: FieldKind;
  omitEmpty: boolean;
}

/**
 * Decodes `object` into a struct described by `fields` the way Go's encoding/json does (keys match
 * field names exactly or case-insensitively, later keys win, unknown keys are dropped, null leaves
 * the zero value) and returns a value for `goJsonMarshal` laid out like the struct would be encoded.
 */
function decodeStruct(
  object: JsonObject,
  fields: readonly FieldSpec[],
  path: string,
  applyOmitEmpty = true,
): Record<string, unknown> {
  const values = new Map<FieldSpec, unknown>();
  for (const [key, value] of Object.entries(object)) {
    const field =
      fields.find((candidate) => candidate.key === key) ??
      fields.find((candidate) => equalFold(candidate.key, key));
    if (!field || value === null) continue;
    values.set(field, decodeValue(value, field.kind, `${path}.${field.key}`, applyOmitEmpty));
  }
  const out: Record<string, unknown> = {};
  for (const field of fields) {
    const value = values.get(field);
    if (applyOmitEmpty && field.omitEmpty && isEmpty(value, field.kind)) continue;
    out[field.key] = value === undefined ? zeroValue(field.kind) : value;
  }
  return out;
}

function isEmpty(value: unknown, kind: FieldKind): boolean {
  if (typeof kind === 'object' && 'struct' in kind) return false; // Go never omits a struct value
  if (value === undefined || value === null) return true;
  if (typeof value === 'string') return value === '';
  if (typeof value === 'boolean') return !value;
  if (Array.isArray(value)) return value.length === 0;
  if (value instanceof Map) return value.size === 0;
  return false;
}

function zeroValue(kind: FieldKind): unknown {
  if (kind === 'string') return '';
  if (kind === 'bool') return false;
  if (typeof kind === 'object' && 'struct' in kind) return decodeStruct({}, kind.struct, '');
  return null;
}

function decodeValue(value: unknown, kind: FieldKind, path: string, applyOmitEmpty: boolean): unknown {
  switch (kind) {
    case 'string':
      if (typeof value !== 'string') throw invalidConfig(`${path} is not a string`);
      return value;
    case 'bool':
      if (typeof value !== 'boolean') throw invalidConfig(`${path} is not a boolean`);
      return value;
    case 'time':
      if (typeof value !== 'string') throw invalidConfig(`${path} is not a time string`);
      try {
        return goTimeRoundTrip(value);
      } catch (error) {
        throw invalidConfig(`${path}: ${(error as Error).message}`);
      }
    case 'strings':
      if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) {
        throw invalidConfig(`${path} is not an array of strings`);
      }
      return [...value];
    case 'stringMap':
      if (!isJsonObject(value) || Object.values(value).some((item) => typeof item !== 'string')) {
        throw invalidConfig(`${path} is not a map of strings`);
      }
      return new Map(Object.entries(value));
    case 'set':
      if (!isJsonObject(value) || Object.values(value).some((item) => item !== null && !isJsonObject(item))) {
        throw invalidConfig(`${path} is not a map of objects`);
      }
      return new Map(Object.keys(value).map((key) => [key, {}]));
  }
  if ('struct' in kind) {
    if (!isJsonObject(value)) throw invalidConfig(`${path} is not an object`);
    return decodeStruct(value, kind.struct, path, applyOmitEmpty);
  }
  if (!Array.isArray(value)) throw invalidConfig(`${path} is not an array`);
  return value.map((item, index) => {
    if (item === null) return decodeStruct({}, kind.structs, path, applyOmitEmpty);
    if (!isJsonObject(item)) throw invalidConfig(`${path}[${index}] is not an object`);
    return decodeStruct(item, kind.structs, `${path}[${index}]`, applyOmitEmpty);
  });
}

const field = (key: string, kind: FieldKind, omitEmpty = true): FieldSpec => ({ key, kind, omitEmpty });

/** opencontainers/image-spec specs-go/v1 `ImageConfig`. */
const ociImageConfigFields: readonly FieldSpec[] = [
  field('User', 'string'),
  field('ExposedPorts', 'set'),
  field('Env', 'strings'),
  field('Entrypoint', 'strings'),
  field('Cmd', 'strings'),
  field('Volumes', 'set'),
  field('WorkingDir', 'string'),
  field('Labels', 'stringMap'),
  field('StopSignal', 'string'),
  field('ArgsEscaped', 'bool'),
];

/** opencontainers/image-spec specs-go/v1 `History`. */
const ociHistoryFields: readonly FieldSpec[] = [
  field('created', 'time'),
  field('created_by', 'string'),
  field('author', 'string'),
  field('comment', 'string'),
  field('empty_layer', 'bool'),
];

/**
 * opencontainers/image-spec specs-go/v1 `Image` in the field order of image-spec v1.1.0-rc2, which the
 * installed skopeo (1.9) vendors: architecture, variant, os, os.version, os.features (checked by the
 * interop test; image-spec v1.1.0 final embeds `Platform` and would order them differently).
 */
const ociImageFields: readonly FieldSpec[] = [
  field('created', 'time'),
  field('author', 'string'),
  field('architecture', 'string', false),
  field('variant', 'string'),
  field('os', 'string', false),
  field('os.version', 'string'),
  field('os.features', 'strings'),
  field('config', { struct: ociImageConfigFields }),
  field('rootfs', { struct: [field('type', 'string', false), field('diff_ids', 'strings', false)] }, false),
  field('history', { structs: ociHistoryFields }),
];

/**
 * The config as containers/image's `imgspecv1.Image` holds it after `json.Unmarshal`: a value for
 * `goJsonMarshal` (OCI config bytes as skopeo writes them when converting Docker schema2 to OCI) or
 * `goJsonMarshalIndent` (`skopeo inspect --config`). Unknown fields are dropped, like Go does.
 */
export function ociImageValue(configBytes: Uint8Array): Record<string, unknown> {
  return decodeStruct(decodeJsonObject(configBytes, 'image config'), ociImageFields, 'config');
}

/** The fields of a config `skopeo inspect` prints, decoded with Go's semantics (null for nil). */
export interface InspectConfigFields {
  created: string | null;
  dockerVersion: string;
  labels: Map<string, unknown> | null;
  architecture: string;
  variant: string;
  os: string;
  env: string[] | null;
}

/** Schema2Config / ImageConfig: only what inspect reads. */
const inspectConfigSectionFields: readonly FieldSpec[] = [
  field('Labels', 'stringMap'),
  field('Env', 'strings'),
];

/**
 * Reads the inspect fields of a config as containers/image does: `docker` uses `Schema2Image`
 * (a missing `created` is Go's zero time), `oci` uses image-spec's `Image` (a missing `created` is nil)
 * plus `docker_version` read through `Schema2V1Image`.
 */
export function inspectConfigFields(configBytes: Uint8Array, kind: 'oci' | 'docker'): InspectConfigFields {
  const object = decodeJsonObject(configBytes, 'image config');
  const fields: readonly FieldSpec[] = [
    field('created', 'time'),
    field('docker_version', 'string'),
    field('architecture', 'string'),
    field('variant', 'string'),
    field('os', 'string'),
  ];
  const decoded = decodeStruct(object, fields, 'config', false);
  let section: Record<string, unknown> | null = null;
  const configKey = Object.keys(object)
    .filter((key) => equalFold(key, 'config'))
    .pop();
  const sectionValue = configKey === undefined ? null : object[configKey];
  if (sectionValue !== null && sectionValue !== undefined) {
    if (!isJsonObject(sectionValue)) throw invalidConfig('config.config is not an object');
    section = decodeStruct(sectionValue, inspectConfigSectionFields, 'config.config', false);
  }
  const created = decoded.created as string | null;
  return {
    created: created ?? (kind === 'docker' ? goZeroTime : null),
    dockerVersion: decoded.docker_version as string,
    labels: (section?.Labels as Map<string, unknown> | null | undefined) ?? null,
    architecture: decoded.architecture as string,
    variant: decoded.variant as string,
    os: decoded.os as string,
    env: (section?.Env as string[] | null | undefined) ?? null,
  };
}

/** The OCI config bytes containers/image writes when converting a Docker schema2 image to OCI. */
export function ociConfigBytesFromDockerConfig(configBytes: Uint8Array): Uint8Array {
  return new TextEncoder().encode(goJsonMarshal(ociImageValue(configBytes)));
}

/** Parses an image config loosely; throws `ERR_GANTRY_INVALID_MANIFEST` when it is not a JSON object. */
export function parseImageConfig(bytes: Uint8Array): ImageConfig {
  const raw = decodeJsonObject(bytes, 'image config');
  const text = (key: string): string | undefined =>
    typeof raw[key] === 'string' ? (raw[key] as string) : undefined;
  const result: ImageConfig = { raw };
  const assign = <K extends keyof ImageConfig>(key: K, value: ImageConfig[K] | undefined): void => {
    if (value !== undefined) result[key] = value;
  };
  assign('created', text('created'));
  assign('author', text('author'));
  assign('architecture', text('architecture'));
  assign('os', text('os'));
  assign('variant', text('variant'));
  assign('dockerVersion', text('docker_version'));
  if (isJsonObject(raw.config)) result.config = raw.config as ImageConfig['config'];
  if (isJsonObject(raw.rootfs)) result.rootfs = raw.rootfs as ImageConfig['rootfs'];
  if (Array.isArray(raw.history)) result.history = raw.history as ImageConfig['history'];
  return result;
}

/** Go's `versions.LessThan` (docker/api): dotted numeric comparison. */
function dockerVersionLessThan(version: string, other: string): boolean {
  const left = version.split('.');
  const right = other.split('.');
  for (let index = 0; index < Math.max(left.length, right.length); index++) {
    const leftNumber = Number.parseInt(left[index] ?? '0', 10) || 0;
    const rightNumber = Number.parseInt(right[index] ?? '0', 10) || 0;
    if (leftNumber !== rightNumber) return leftNumber < rightNumber;
  }
  return false;
}

/**
 * The Docker schema2 config containers/image builds from a schema1 manifest (`ToSchema2Config`):
 * the top history entry's v1Compatibility without `id`, `parent`, `parent_id`, `layer_id`,
 * `throwaway` and `Size`, plus `rootfs` with `diffIds` (non-empty layers only, base first) and a
 * `history` built from every v1Compatibility entry, keys sorted as Go marshals a map.
 */
export function schema1ToSchema2Config(decoded: DecodedSchema1, diffIds: readonly Digest[]): Uint8Array {
  const topText = decoded.v1Compatibility[0]!;
  const top = JSON.parse(topText) as JsonObject;
  if (
    typeof top.docker_version === 'string' &&
    top.docker_version !== '' &&
    dockerVersionLessThan(top.docker_version, '1.8.3')
  ) {
    throw new GantryError(
      ErrorCodes.ManifestConversionFailed,
      `converting schema1 images built by docker ${top.docker_version} (< 1.8.3) is not supported`,
    );
  }
  const history = [...decoded.compatibility].reverse().map((entry) => {
    const item: Record<string, unknown> = {
      created: entry.created === undefined ? goZeroTime : goTimeRoundTrip(entry.created),
    };
    if (entry.author !== '') item.author = entry.author;
    const createdBy = entry.containerConfigCmd.join(' ');
    if (createdBy !== '') item.created_by = createdBy;
    if (entry.comment !== '') item.comment = entry.comment;
    if (entry.throwAway) item.empty_layer = true;
    return item;
  });
  const raw = new Map<string, unknown>();
  for (const [key, value] of topLevelRawEntries(topText)) raw.set(key, new RawJson(value));
  for (const key of ['id', 'parent', 'parent_id', 'layer_id', 'throwaway', 'Size']) raw.delete(key);
  raw.set('rootfs', diffIds.length > 0 ? { type: 'layers', diff_ids: [...diffIds] } : { type: 'layers' });
  raw.set('history', history);
  return new TextEncoder().encode(goJsonMarshalWithRaw(raw));
}

/** The top-level members of a JSON object text as raw value texts (later duplicates win, like Go). */
export function topLevelRawEntries(text: string): Array<[string, string]> {
  const parsed = JSON.parse(text) as unknown;
  if (!isJsonObject(parsed)) throw invalidConfig('v1Compatibility is not a JSON object');
  const entries = new Map<string, string>();
  let index = skipWhitespace(text, 0);
  if (text[index] !== '{') throw invalidConfig('v1Compatibility is not a JSON object');
  index = skipWhitespace(text, index + 1);
  if (text[index] === '}') return [];
  for (;;) {
    const keyEnd = endOfValue(text, index);
    const key = JSON.parse(text.slice(index, keyEnd)) as string;
    index = skipWhitespace(text, keyEnd);
    index = skipWhitespace(text, index + 1); // ':'
    const valueEnd = endOfValue(text, index);
    entries.set(key, text.slice(index, valueEnd));
    index = skipWhitespace(text, valueEnd);
    if (text[index] === ',') {
      index = skipWhitespace(text, index + 1);
      continue;
    }
    break;
  }
  return [...entries];
}

function skipWhitespace(text: string, index: number): number {
  while (index < text.length && ' \t\n\r'.includes(text[index]!)) index++;
  return index;
}

/** The end of the JSON value starting at `index` (the text is known to be valid JSON). */
function endOfValue(text: string, index: number): number {
  const first = text[index];
  if (first === '"') {
    let position = index + 1;
    while (text[position] !== '"') position += text[position] === '\\' ? 2 : 1;
    return position + 1;
  }
  if (first === '{' || first === '[') {
    let depth = 0;
    let position = index;
    while (position < text.length) {
      const character = text[position]!;
      if (character === '"') {
        position = endOfValue(text, position);
        continue;
      }
      if (character === '{' || character === '[') depth++;
      if (character === '}' || character === ']') {
        depth--;
        if (depth === 0) return position + 1;
      }
      position++;
    }
    return position;
  }
  let position = index;
  while (position < text.length && !',}] \t\n\r'.includes(text[position]!)) position++;
  return position;
}
