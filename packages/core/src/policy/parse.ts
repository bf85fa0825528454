import { ErrorCodes, GantryError } from '../errors.js';
import { anchoredDomainRegexp, anchoredFullNameRegexp, domainAndPortPattern } from '../reference/grammar.js';
import { isNameOnly, parseNormalizedNamed } from '../reference/reference.js';
import { type JsonObject, JsonSyntaxError, type JsonValue, parseStrictJson } from './strict-json.js';
import type {
  Policy,
  PolicyReferenceMatch,
  PolicyRequirement,
  PolicyTransportScopes,
  SignedByKeyType,
  SigstoreFulcio,
  SigstorePki,
} from './types.js';

/** A problem in a policy; `location` says where (e.g. `transports.docker["example.com"][0]`). */
class PolicyFormatProblem extends Error {
  constructor(
    readonly location: string,
    message: string,
  ) {
    super(message);
  }
}

/** A Map that refuses changes once built, so policies stay immutable. */
class ImmutableMap<Key, Value> extends Map<Key, Value> {
  readonly #sealed: boolean;

  constructor(entries: Iterable<readonly [Key, Value]>) {
    super();
    for (const [key, value] of entries) super.set(key, value);
    this.#sealed = true;
    Object.freeze(this);
  }

  override set(key: Key, value: Value): this {
    if (this.#sealed) throw new TypeError('policy maps are immutable');
    return super.set(key, value);
  }

  override delete(_key: Key): boolean {
    throw new TypeError('policy maps are immutable');
  }

  override clear(): void {
    throw new TypeError('policy maps are immutable');
  }
}

function freezeDeep<T>(value: T): T {
  if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value) || value instanceof Map)
    return value;
  for (const member of Object.values(value)) freezeDeep(member);
  return Object.freeze(value);
}

const keyTypes: readonly SignedByKeyType[] = [
  'GPGKeys',
  'signedByGPGKeys',
  'X509Certificates',
  'signedByX509CAs',
];

function describeJsonType(value: JsonValue): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Map) return 'an object';
  return `a ${typeof value}`;
}

/**
 * Reads the members of one JSON object like containers/image's ParanoidUnmarshalJSONObject: every
 * key must be one the caller knows (`Unknown key "x"` otherwise); duplicates were already refused by
 * the JSON reader.
 */
function readObject(
  value: JsonValue,
  location: string,
  what: string,
  knownKeys: readonly string[],
): JsonObject {
  if (!(value instanceof Map)) {
    throw new PolicyFormatProblem(location, `${what} must be a JSON object, got ${describeJsonType(value)}`);
  }
  for (const key of value.keys()) {
    if (!knownKeys.includes(key))
      throw new PolicyFormatProblem(location, `Unknown key ${JSON.stringify(key)}`);
  }
  return value;
}

function memberLocation(location: string, key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${location}.${key}` : `${location}[${JSON.stringify(key)}]`;
}

function readString(object: JsonObject, key: string, location: string): string | undefined {
  if (!object.has(key)) return undefined;
  const value = object.get(key)!;
  if (typeof value !== 'string') {
    throw new PolicyFormatProblem(
      memberLocation(location, key),
      `"${key}" must be a string, got ${describeJsonType(value)}`,
    );
  }
  return value;
}

function readStringList(object: JsonObject, key: string, location: string): string[] | undefined {
  if (!object.has(key)) return undefined;
  const value = object.get(key)!;
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) {
    throw new PolicyFormatProblem(memberLocation(location, key), `"${key}" must be an array of strings`);
  }
  return value as string[];
}

/** Decodes base64 like Go's encoding/json does for []byte: standard alphabet, padded; CR and LF ignored. */
function decodeBase64(value: string, location: string, key: string): Uint8Array {
  const compact = value.replace(/[\r\n]/g, '');
  if (compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) {
    throw new PolicyFormatProblem(location, `"${key}" must be base64-encoded data`);
  }
  return new Uint8Array(Buffer.from(compact, 'base64'));
}

function readBytes(object: JsonObject, key: string, location: string): Uint8Array | undefined {
  const text = readString(object, key, location);
  return text === undefined ? undefined : decodeBase64(text, memberLocation(location, key), key);
}

function readBytesList(object: JsonObject, key: string, location: string): Uint8Array[] | undefined {
  if (!object.has(key)) return undefined;
  const value = object.get(key)!;
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) {
    throw new PolicyFormatProblem(
      memberLocation(location, key),
      `"${key}" must be an array of base64-encoded strings`,
    );
  }
  return (value as string[]).map((item, index) =>
    decodeBase64(item, `${memberLocation(location, key)}[${index}]`, key),
  );
}

/** Reads `type` of a requirement or identity object without strictness (like Go's prCommon). */
function readType(value: JsonValue, location: string, what: string): string {
  if (!(value instanceof Map)) {
    throw new PolicyFormatProblem(location, `${what} must be a JSON object, got ${describeJsonType(value)}`);
  }
  const type = value.get('type') ?? '';
  if (typeof type !== 'string') {
    throw new PolicyFormatProblem(
      memberLocation(location, 'type'),
      `"type" must be a string, got ${describeJsonType(type)}`,
    );
  }
  return type;
}

function requireExactKeys(object: JsonObject, location: string, keys: readonly string[]): void {
  for (const key of keys) {
    if (!object.has(key))
      throw new PolicyFormatProblem(location, `Key ${JSON.stringify(key)} missing in a JSON object`);
  }
}

function reasonOf(error: unknown, input: string): string {
  const message = error instanceof Error ? error.message : String(error);
  const prefix = `Invalid image name "${input}": `;
  return message.startsWith(prefix) ? message.slice(prefix.length) : message;
}

/** containers/image's validateIdentityRemappingPrefix: a domain, or a name that starts with a domain. */
const domainPrefixRegexp = new RegExp(`^${domainAndPortPattern}/`);
function isValidRemappingPrefix(prefix: string): boolean {
  return (
    anchoredDomainRegexp.test(prefix) ||
    (anchoredFullNameRegexp.test(prefix) && domainPrefixRegexp.test(prefix))
  );
}

function parseReferenceMatch(value: JsonValue, location: string): PolicyReferenceMatch {
  const type = readType(value, location, 'signedIdentity');
  const object = value as JsonObject;
  switch (type) {
    case 'matchExact':
    case 'matchRepoDigestOrExact':
    case 'matchRepository':
      readObject(object, location, 'signedIdentity', ['type']);
      return { type };
    case 'exactReference': {
      readObject(object, location, 'signedIdentity', ['type', 'dockerReference']);
      requireExactKeys(object, location, ['type', 'dockerReference']);
      const dockerReference = readString(object, 'dockerReference', location)!;
      let parsed: ReturnType<typeof parseNormalizedNamed>;
      try {
        parsed = parseNormalizedNamed(dockerReference);
      } catch (error) {
        throw new PolicyFormatProblem(
          memberLocation(location, 'dockerReference'),
          `Invalid format of dockerReference ${JSON.stringify(dockerReference)}: ${reasonOf(error, dockerReference)}`,
        );
      }
      if (isNameOnly(parsed)) {
        throw new PolicyFormatProblem(
          memberLocation(location, 'dockerReference'),
          `dockerReference ${JSON.stringify(dockerReference)} contains neither a tag nor digest`,
        );
      }
      return { type, dockerReference };
    }
    case 'exactRepository': {
      readObject(object, location, 'signedIdentity', ['type', 'dockerRepository']);
      requireExactKeys(object, location, ['type', 'dockerRepository']);
      const dockerRepository = readString(object, 'dockerRepository', location)!;
      try {
        parseNormalizedNamed(dockerRepository);
      } catch (error) {
        throw new PolicyFormatProblem(
          memberLocation(location, 'dockerRepository'),
          `Invalid format of dockerRepository ${JSON.stringify(dockerRepository)}: ${reasonOf(error, dockerRepository)}`,
        );
      }
      return { type, dockerRepository };
    }
    case 'remapIdentity': {
      readObject(object, location, 'signedIdentity', ['type', 'prefix', 'signedPrefix']);
      requireExactKeys(object, location, ['type', 'prefix', 'signedPrefix']);
      const prefix = readString(object, 'prefix', location)!;
      const signedPrefix = readString(object, 'signedPrefix', location)!;
      for (const [key, candidate] of [
        ['prefix', prefix],
        ['signedPrefix', signedPrefix],
      ] as const) {
        if (!isValidRemappingPrefix(candidate)) {
          throw new PolicyFormatProblem(
            memberLocation(location, key),
            `prefix ${JSON.stringify(candidate)} is not valid`,
          );
        }
      }
      return { type, prefix, signedPrefix };
    }
    default:
      throw new PolicyFormatProblem(location, `Unknown policy reference match type ${JSON.stringify(type)}`);
  }
}

function parseSignedIdentity(object: JsonObject, location: string): PolicyReferenceMatch {
  if (!object.has('signedIdentity')) return { type: 'matchRepoDigestOrExact' };
  return parseReferenceMatch(object.get('signedIdentity')!, memberLocation(location, 'signedIdentity'));
}

function parseSignedBy(object: JsonObject, location: string): PolicyRequirement {
  readObject(object, location, 'policy requirement', [
    'type',
    'keyType',
    'keyPath',
    'keyPaths',
    'keyData',
    'signedIdentity',
  ]);
  const keyTypeText = readString(object, 'keyType', location);
  if (keyTypeText !== undefined && !(keyTypes as readonly string[]).includes(keyTypeText)) {
    throw new PolicyFormatProblem(
      memberLocation(location, 'keyType'),
      `Unrecognized keyType value ${JSON.stringify(keyTypeText)}`,
    );
  }
  const keyPath = readString(object, 'keyPath', location);
  const keyPaths = readStringList(object, 'keyPaths', location);
  const keyData = readBytes(object, 'keyData', location);
  const signedIdentity = parseSignedIdentity(object, location);
  const present = ['keyPath', 'keyPaths', 'keyData'].filter((key) => object.has(key)).length;
  if (present === 0) {
    throw new PolicyFormatProblem(
      location,
      'Exactly one of keyPath, keyPaths and keyData must be specified, none of them present',
    );
  }
  if (present > 1) {
    throw new PolicyFormatProblem(
      location,
      'Exactly one of keyPath, keyPaths and keyData must be specified, more than one present',
    );
  }
  if (keyTypeText === undefined)
    throw new PolicyFormatProblem(location, 'invalid keyType "" (keyType is missing)');
  if (keyPath === '')
    throw new PolicyFormatProblem(location, 'exactly one of keyPath, keyPaths and keyData must be specified');
  const requirement: PolicyRequirement = {
    type: 'signedBy',
    keyType: keyTypeText as SignedByKeyType,
    ...(keyPath !== undefined ? { keyPath } : {}),
    ...(keyPaths !== undefined ? { keyPaths } : {}),
    ...(keyData !== undefined ? { keyData } : {}),
    signedIdentity,
  };
  return requirement;
}

function parseFulcio(value: JsonValue, location: string): SigstoreFulcio {
  const object = readObject(value, location, 'fulcio', ['caPath', 'caData', 'oidcIssuer', 'subjectEmail']);
  const caPath = readString(object, 'caPath', location);
  const caData = readBytes(object, 'caData', location);
  const oidcIssuer = readString(object, 'oidcIssuer', location);
  const subjectEmail = readString(object, 'subjectEmail', location);
  if (caPath && caData)
    throw new PolicyFormatProblem(location, 'caPath and caData cannot be used simultaneously');
  if (!caPath && !caData)
    throw new PolicyFormatProblem(location, 'At least one of caPath and caData must be specified');
  if (!oidcIssuer) throw new PolicyFormatProblem(location, 'oidcIssuer not specified');
  if (!subjectEmail) throw new PolicyFormatProblem(location, 'subjectEmail not specified');
  return { ...(caPath ? { caPath } : {}), ...(caData ? { caData } : {}), oidcIssuer, subjectEmail };
}

function parsePki(value: JsonValue, location: string): SigstorePki {
  const object = readObject(value, location, 'pki', [
    'caRootsPath',
    'caRootsData',
    'caIntermediatesPath',
    'caIntermediatesData',
    'subjectEmail',
    'subjectHostname',
  ]);
  const caRootsPath = readString(object, 'caRootsPath', location);
  const caRootsData = readBytes(object, 'caRootsData', location);
  const caIntermediatesPath = readString(object, 'caIntermediatesPath', location);
  const caIntermediatesData = readBytes(object, 'caIntermediatesData', location);
  const subjectEmail = readString(object, 'subjectEmail', location);
  const subjectHostname = readString(object, 'subjectHostname', location);
  if (caRootsPath && caRootsData)
    throw new PolicyFormatProblem(location, 'caRootsPath and caRootsData cannot be used simultaneously');
  if (!caRootsPath && !caRootsData)
    throw new PolicyFormatProblem(location, 'At least one of caRootsPath and caRootsData must be specified');
  if (caIntermediatesPath && caIntermediatesData) {
    throw new PolicyFormatProblem(
      location,
      'caIntermediatesPath and caIntermediatesData cannot be used simultaneously',
    );
  }
  if (!subjectEmail && !subjectHostname) {
    throw new PolicyFormatProblem(
      location,
      'At least one of subjectEmail, subjectHostname must be specified',
    );
  }
  return {
    ...(caRootsPath ? { caRootsPath } : {}),
    ...(caRootsData ? { caRootsData } : {}),
    ...(caIntermediatesPath ? { caIntermediatesPath } : {}),
    ...(caIntermediatesData ? { caIntermediatesData } : {}),
    ...(subjectEmail ? { subjectEmail } : {}),
    ...(subjectHostname ? { subjectHostname } : {}),
  };
}

function parseSigstoreSigned(object: JsonObject, location: string): PolicyRequirement {
  readObject(object, location, 'policy requirement', [
    'type',
    'keyPath',
    'keyPaths',
    'keyData',
    'keyDatas',
    'fulcio',
    'rekorPublicKeyPath',
    'rekorPublicKeyPaths',
    'rekorPublicKeyData',
    'rekorPublicKeyDatas',
    'pki',
    'signedIdentity',
  ]);
  const keyPath = readString(object, 'keyPath', location);
  const keyPaths = readStringList(object, 'keyPaths', location);
  const keyData = readBytes(object, 'keyData', location);
  const keyDatas = readBytesList(object, 'keyDatas', location);
  const rekorPublicKeyPath = readString(object, 'rekorPublicKeyPath', location);
  const rekorPublicKeyPaths = readStringList(object, 'rekorPublicKeyPaths', location);
  const rekorPublicKeyData = readBytes(object, 'rekorPublicKeyData', location);
  const rekorPublicKeyDatas = readBytesList(object, 'rekorPublicKeyDatas', location);
  const signedIdentity = parseSignedIdentity(object, location);
  const fulcio = object.has('fulcio')
    ? parseFulcio(object.get('fulcio')!, memberLocation(location, 'fulcio'))
    : undefined;
  const pki = object.has('pki') ? parsePki(object.get('pki')!, memberLocation(location, 'pki')) : undefined;
  for (const [key, list] of [
    ['keyPaths', keyPaths],
    ['keyDatas', keyDatas],
    ['rekorPublicKeyPaths', rekorPublicKeyPaths],
    ['rekorPublicKeyDatas', rekorPublicKeyDatas],
  ] as const) {
    if (list !== undefined && list.length === 0) {
      throw new PolicyFormatProblem(memberLocation(location, key), `"${key}" contains no entries`);
    }
  }
  const keySources = [keyPath ? 1 : 0, keyPaths, keyData, keyDatas, fulcio, pki].filter(
    (source) => source !== undefined && source !== 0,
  ).length;
  if (keySources !== 1) {
    throw new PolicyFormatProblem(
      location,
      'exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified',
    );
  }
  const rekorSources = [
    rekorPublicKeyPath ? 1 : 0,
    rekorPublicKeyPaths,
    rekorPublicKeyData,
    rekorPublicKeyDatas,
  ].filter((source) => source !== undefined && source !== 0).length;
  if (rekorSources > 1) {
    throw new PolicyFormatProblem(
      location,
      'at most one of rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData and rekorPublicKeyDatas can be used simultaneously',
    );
  }
  if (fulcio && rekorSources === 0) {
    throw new PolicyFormatProblem(
      location,
      'At least one of rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData and rekorPublicKeyDatas must be specified if fulcio is used',
    );
  }
  if (pki && rekorSources > 0) {
    throw new PolicyFormatProblem(
      location,
      'rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData and rekorPublicKeyDatas are not supported for pki',
    );
  }
  return {
    type: 'sigstoreSigned',
    ...(keyPath ? { keyPath } : {}),
    ...(keyPaths ? { keyPaths } : {}),
    ...(keyData ? { keyData } : {}),
    ...(keyDatas ? { keyDatas } : {}),
    ...(fulcio ? { fulcio } : {}),
    ...(pki ? { pki } : {}),
    ...(rekorPublicKeyPath ? { rekorPublicKeyPath } : {}),
    ...(rekorPublicKeyPaths ? { rekorPublicKeyPaths } : {}),
    ...(rekorPublicKeyData ? { rekorPublicKeyData } : {}),
    ...(rekorPublicKeyDatas ? { rekorPublicKeyDatas } : {}),
    signedIdentity,
  };
}

function parseRequirement(value: JsonValue, location: string): PolicyRequirement {
  const type = readType(value, location, 'policy requirement');
  const object = value as JsonObject;
  switch (type) {
    case 'insecureAcceptAnything':
    case 'reject':
      readObject(object, location, 'policy requirement', ['type']);
      return { type };
    case 'signedBy':
      return parseSignedBy(object, location);
    case 'signedBaseLayer': {
      readObject(object, location, 'policy requirement', ['type', 'baseLayerIdentity']);
      requireExactKeys(object, location, ['type', 'baseLayerIdentity']);
      return {
        type,
        baseLayerIdentity: parseReferenceMatch(
          object.get('baseLayerIdentity')!,
          memberLocation(location, 'baseLayerIdentity'),
        ),
      };
    }
    case 'sigstoreSigned':
      return parseSigstoreSigned(object, location);
    default:
      throw new PolicyFormatProblem(location, `Unknown policy requirement type ${JSON.stringify(type)}`);
  }
}

function parseRequirements(value: JsonValue, location: string): PolicyRequirement[] {
  if (value === null || (Array.isArray(value) && value.length === 0)) {
    throw new PolicyFormatProblem(location, 'List of verification policy requirements must not be empty');
  }
  if (!Array.isArray(value)) {
    throw new PolicyFormatProblem(
      location,
      `a list of policy requirements must be a JSON array, got ${describeJsonType(value)}`,
    );
  }
  return value.map((item, index) => parseRequirement(item, `${location}[${index}]`));
}

function parseTransports(value: JsonValue): Map<string, PolicyTransportScopes> {
  if (!(value instanceof Map)) {
    throw new PolicyFormatProblem(
      'transports',
      `"transports" must be a JSON object, got ${describeJsonType(value)}`,
    );
  }
  const transports = new Map<string, PolicyTransportScopes>();
  for (const [transportName, scopesValue] of value) {
    const transportLocation = memberLocation('transports', transportName);
    if (!(scopesValue instanceof Map)) {
      throw new PolicyFormatProblem(
        transportLocation,
        `the scopes of transport ${JSON.stringify(transportName)} must be a JSON object, got ${describeJsonType(scopesValue)}`,
      );
    }
    const scopes = new Map<string, readonly PolicyRequirement[]>();
    for (const [scope, requirementsValue] of scopesValue) {
      scopes.set(
        scope,
        freezeDeep(parseRequirements(requirementsValue, `${transportLocation}[${JSON.stringify(scope)}]`)),
      );
    }
    transports.set(transportName, new ImmutableMap(scopes));
  }
  return transports;
}

function invalidPolicy(sourceName: string, problem: string, cause?: unknown): GantryError {
  return new GantryError(ErrorCodes.InvalidPolicy, `invalid policy in "${sourceName}": ${problem}`, {
    cause,
  });
}

/**
 * Parses the text of a containers-policy.json(5) file as strictly as containers/image does:
 * - the top level is an object with `default` (required, a non-empty requirement list) and
 *   `transports` (optional: transport name → scope → non-empty requirement list);
 * - unknown keys, duplicate keys, wrong JSON types and data after the object are refused;
 * - requirement types are `insecureAcceptAnything`, `reject`, `signedBy`, `signedBaseLayer` and
 *   `sigstoreSigned`, each with exactly its own fields, validated like containers/image (key
 *   sources, `keyType`, `signedIdentity` with `matchExact`, `matchRepoDigestOrExact` (the default),
 *   `matchRepository`, `exactReference`, `exactRepository`, `remapIdentity`).
 *
 * Scopes are not checked here, since that needs the transport: `evaluatePolicy` checks the scopes
 * of the transport it evaluates for. Throws `ERR_GANTRY_INVALID_POLICY`, message
 * `invalid policy in "<sourceName>": <where>: <problem>`.
 */
export function parsePolicy(text: string, sourceName: string): Policy {
  let document: JsonValue;
  try {
    document = parseStrictJson(text);
  } catch (error) {
    if (error instanceof JsonSyntaxError) throw invalidPolicy(sourceName, error.message, error);
    throw error;
  }
  try {
    if (!(document instanceof Map)) {
      throw new PolicyFormatProblem('', `JSON object expected, got ${describeJsonType(document)}`);
    }
    readObject(document, '', 'the policy', ['default', 'transports']);
    const defaultValue = document.get('default');
    if (defaultValue === undefined || defaultValue === null)
      throw new PolicyFormatProblem('', 'Default policy is missing');
    const defaultRequirements = parseRequirements(defaultValue, 'default');
    const transports = document.has('transports') ? parseTransports(document.get('transports')!) : new Map();
    return Object.freeze({
      source: sourceName,
      default: freezeDeep(defaultRequirements),
      transports: new ImmutableMap(transports),
    });
  } catch (error) {
    if (error instanceof PolicyFormatProblem) {
      throw invalidPolicy(
        sourceName,
        error.location === '' ? error.message : `${error.location}: ${error.message}`,
      );
    }
    throw error;
  }
}

/**
 * A policy accepting every image without checking anything (`--insecure-policy`): its default is
 * `[{ "type": "insecureAcceptAnything" }]` and it has no transport scopes.
 */
export function insecureAcceptAnythingPolicy(): Policy {
  return Object.freeze({
    source: 'insecure policy accepting anything',
    default: freezeDeep([{ type: 'insecureAcceptAnything' as const }]),
    transports: new ImmutableMap<string, PolicyTransportScopes>([]),
  });
}
