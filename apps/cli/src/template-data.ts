/**
 * Turns core's Go-shaped values (plain objects = Go structs with keys in field order, `Map`s = Go
 * maps, `null` = nil, arrays = slices; see `buildInspectOutput` / `buildInspectConfigOutput`) into
 * the typed values the template engine prints the way skopeo's Go structs print: `Labels` nil is
 * `map[]`, `Env` nil is `[]`, `Created` is a `time.Time`, digests are `digest.Digest`, sizes are ints.
 */
import type { ImageInspection } from '@gantry/core';
import { type GoField, GoInt, GoMap, GoNamedString, GoNil, GoSlice, GoStruct, GoTime } from './go-values.js';

/** Go field names of image-spec's structs, by JSON key (`--config` output). */
const goFieldNames: Record<string, string> = {
  created: 'Created',
  author: 'Author',
  architecture: 'Architecture',
  variant: 'Variant',
  os: 'OS',
  'os.version': 'OSVersion',
  'os.features': 'OSFeatures',
  config: 'Config',
  rootfs: 'RootFS',
  type: 'Type',
  diff_ids: 'DiffIDs',
  history: 'History',
  created_by: 'CreatedBy',
  comment: 'Comment',
  empty_layer: 'EmptyLayer',
};

const mapFields = new Set(['Labels', 'Annotations', 'ExposedPorts', 'Volumes']);
const timeFields = new Set(['Created']);
const digestFields = new Set(['Digest']);

function goFieldName(key: string): string {
  return goFieldNames[key] ?? key.charAt(0).toUpperCase() + key.slice(1);
}

function convert(value: unknown, fieldName: string, typeName: string): unknown {
  if (value === null || value === undefined) {
    if (mapFields.has(fieldName)) return new GoMap('map[string]string', new Map(), '', true);
    if (timeFields.has(fieldName)) return new GoNil('*time.Time');
    if (fieldName === 'Config') return new GoNil('*v1.ImageConfig');
    return new GoSlice('[]string', [], true);
  }
  if (typeof value === 'string') {
    if (timeFields.has(fieldName)) {
      try {
        return new GoTime(value, true);
      } catch {
        return value;
      }
    }
    if (digestFields.has(fieldName)) return new GoNamedString('digest.Digest', value);
    return value;
  }
  if (typeof value === 'number') return Number.isInteger(value) ? new GoInt(value) : value;
  if (Array.isArray(value)) {
    const items = value.map((item) =>
      convert(item, fieldName === 'DiffIDs' ? 'Digest' : '', `${typeName}Item`),
    );
    const elementType = items.every((item) => typeof item === 'string') ? '[]string' : `[]${typeName}`;
    return new GoSlice(elementType, items);
  }
  if (value instanceof Map) {
    const entries = new Map<string, unknown>();
    for (const [key, entry] of value) entries.set(String(key), convert(entry, '', 'interface {}'));
    return new GoMap('map[string]string', entries, '');
  }
  if (typeof value === 'object') return toGoStruct(value as Record<string, unknown>, typeName);
  return value;
}

/** Converts a core struct value (plain object) into a `GoStruct`. */
export function toGoStruct(value: Record<string, unknown>, typeName: string): GoStruct {
  const fields: GoField[] = Object.entries(value).map(([key, entry]) => {
    const name = goFieldName(key);
    return { name, jsonName: key, omitEmpty: false, value: convert(entry, name, name) };
  });
  return new GoStruct(typeName, fields);
}

/**
 * skopeo's `inspect.Output` for templates: core's inspect output plus the `omitempty` fields it left
 * out (`Name`, `Tag`, `Variant`), which Go templates still see as "".
 */
export function inspectTemplateData(output: ImageInspection): GoStruct {
  const converted = toGoStruct(output as unknown as Record<string, unknown>, 'inspect.Output');
  const fields = [...converted.fields];
  const ensure = (name: string, after: string | undefined) => {
    if (fields.some((field) => field.name === name)) {
      for (const field of fields) if (field.name === name) field.omitEmpty = true;
      return;
    }
    const index = after === undefined ? 0 : fields.findIndex((field) => field.name === after) + 1;
    fields.splice(index, 0, { name, jsonName: name, omitEmpty: true, value: '' });
  };
  ensure('Name', undefined);
  ensure('Tag', 'Name');
  ensure('Variant', 'Architecture');
  return new GoStruct('inspect.Output', fields);
}

type ZeroKind = 'string' | 'bool' | 'time' | 'slice' | 'map';

/** Every field of image-spec's structs, in order, with the zero value kind (for fields core left out). */
const imageFields: Array<[string, ZeroKind | 'config' | 'rootfs']> = [
  ['Created', 'time'],
  ['Author', 'string'],
  ['Architecture', 'string'],
  ['Variant', 'string'],
  ['OS', 'string'],
  ['OSVersion', 'string'],
  ['OSFeatures', 'slice'],
  ['Config', 'config'],
  ['RootFS', 'rootfs'],
  ['History', 'slice'],
];
const imageConfigFields: Array<[string, ZeroKind]> = [
  ['User', 'string'],
  ['ExposedPorts', 'map'],
  ['Env', 'slice'],
  ['Entrypoint', 'slice'],
  ['Cmd', 'slice'],
  ['Volumes', 'map'],
  ['WorkingDir', 'string'],
  ['Labels', 'map'],
  ['StopSignal', 'string'],
];
const rootFsFields: Array<[string, ZeroKind]> = [
  ['Type', 'string'],
  ['DiffIDs', 'slice'],
];
const historyFields: Array<[string, ZeroKind]> = [
  ['Created', 'time'],
  ['CreatedBy', 'string'],
  ['Author', 'string'],
  ['Comment', 'string'],
  ['EmptyLayer', 'bool'],
];

function zeroValue(kind: ZeroKind): unknown {
  switch (kind) {
    case 'string':
      return '';
    case 'bool':
      return false;
    case 'time':
      return new GoNil('*time.Time');
    case 'slice':
      return new GoSlice('[]string', [], true);
    case 'map':
      return new GoMap('map[string]string', new Map(), '', true);
  }
}

/** The struct with every field of `layout`, in that order: present ones as converted, others zero. */
function completeStruct(
  value: GoStruct | undefined,
  typeName: string,
  layout: Array<[string, ZeroKind | 'config' | 'rootfs']>,
  nested: (name: string, field: GoField | undefined) => GoField | undefined = () => undefined,
): GoStruct {
  const fields: GoField[] = layout.map(([name, kind]) => {
    const present = value?.field(name);
    const completed = nested(name, present);
    if (completed) return completed;
    if (present) return present;
    return { name, jsonName: name, omitEmpty: true, value: zeroValue(kind as ZeroKind) };
  });
  for (const field of value?.fields ?? [])
    if (!fields.some((candidate) => candidate.name === field.name)) fields.push(field);
  return new GoStruct(typeName, fields);
}

/**
 * image-spec's `v1.Image` for `inspect --config --format` templates: every field of the Go struct is
 * there (fields core left out as `omitempty` are their zero values), so templates like `{{.Variant}}`
 * or `{{.Config.Labels}}` work on any config, as in skopeo.
 */
export function configTemplateData(output: Record<string, unknown>): GoStruct {
  const converted = toGoStruct(output, 'v1.Image');
  return completeStruct(converted, 'v1.Image', imageFields, (name, field) => {
    if (name === 'Config') {
      const config = field?.value instanceof GoStruct ? field.value : undefined;
      return {
        name,
        jsonName: 'config',
        omitEmpty: false,
        value: completeStruct(config, 'v1.ImageConfig', imageConfigFields),
      };
    }
    if (name === 'RootFS') {
      const rootFs = field?.value instanceof GoStruct ? field.value : undefined;
      return {
        name,
        jsonName: 'rootfs',
        omitEmpty: false,
        value: completeStruct(rootFs, 'v1.RootFS', rootFsFields),
      };
    }
    if (name === 'History' && field?.value instanceof GoSlice) {
      const items = field.value.items.map((item) =>
        item instanceof GoStruct ? completeStruct(item, 'v1.History', historyFields) : item,
      );
      return { ...field, value: new GoSlice('[]v1.History', items, field.value.nil) };
    }
    return undefined;
  });
}
