/**
 * Turns core's Go-shaped values (plain objects = Go structs with keys in field order, `Map`s = Go
 * maps, `null` = nil, arrays = slices; see `buildInspectOutput` / `buildInspectConfigOutput`) into
 * the typed values the template engine prints the way skopeo's Go structs print: `Labels` nil is
 * `map[]`, `Env` nil is `[]`, `Created` is a `time.Time`, digests are `digest.Digest`, sizes are ints.
 */
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
        return new GoTime(value);
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
export function inspectTemplateData(output: Record<string, unknown>): GoStruct {
  const converted = toGoStruct(output, 'inspect.Output');
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

/** image-spec's `v1.Image` for `inspect --config --format` templates. */
export function configTemplateData(output: Record<string, unknown>): GoStruct {
  return toGoStruct(output, 'v1.Image');
}
