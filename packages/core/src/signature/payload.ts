/**
 * The JSON a signature signs, for both formats: simple signing ("atomic container signature") and
 * sigstore ("cosign container image signature"):
 * `{"critical": {"identity": {"docker-reference"}, "image": {"docker-manifest-digest"}, "type"},
 *   "optional": {"creator", "timestamp"}}`. Read strictly, as containers/image reads it: exactly these
 * keys in `critical`, anything in `optional`.
 */
import { ErrorCodes, GantryError } from '../errors.js';
import { type JsonObject, type JsonValue, parseStrictJson } from '../policy/strict-json.js';

/** `critical.type` of a simple-signing payload. */
export const simpleSigningType = 'atomic container signature';
/** `critical.type` of a sigstore payload. */
export const sigstoreType = 'cosign container image signature';

/** What a signature claims, before anything is checked against it. */
export interface UntrustedPayload {
  dockerManifestDigest: string;
  dockerReference: string;
  creator?: string;
  /** Seconds since the epoch. */
  timestamp?: number;
}

/**
 * Serialises a payload as Go's `json.Marshal` of containers/image's maps does (keys sorted, no spaces),
 * so Gantry's signatures carry the same bytes shape as skopeo's.
 */
export function createPayload(type: string, payload: UntrustedPayload): Uint8Array {
  if (payload.dockerManifestDigest === '' || payload.dockerReference === '') {
    throw new GantryError(ErrorCodes.SigningFailed, 'Unexpected empty signature content');
  }
  const optional: Record<string, unknown> = {};
  if (payload.creator !== undefined) optional.creator = payload.creator;
  if (payload.timestamp !== undefined) optional.timestamp = payload.timestamp;
  const json = JSON.stringify({
    critical: {
      identity: { 'docker-reference': payload.dockerReference },
      image: { 'docker-manifest-digest': payload.dockerManifestDigest },
      type,
    },
    optional,
  });
  // Go escapes <, > and & in strings.
  return new TextEncoder().encode(
    json.replace(/[<>&]/g, (character) => `\\u00${character.charCodeAt(0).toString(16)}`),
  );
}

function invalid(message: string): GantryError {
  return new GantryError(ErrorCodes.InvalidSignature, message);
}

function objectOf(value: JsonValue | undefined, what: string): JsonObject {
  if (!(value instanceof Map)) throw invalid(`JSON object expected for ${what}`);
  return value;
}

/** The members of `value`, which must be exactly `keys`. */
function exactFields(value: JsonValue | undefined, what: string, keys: string[]): JsonObject {
  const object = objectOf(value, what);
  for (const key of object.keys()) {
    if (!keys.includes(key)) throw invalid(`Unexpected key "${key}" in ${what}`);
  }
  for (const key of keys) {
    if (!object.has(key)) throw invalid(`Key "${key}" missing in ${what}`);
  }
  return object;
}

function stringField(object: JsonObject, key: string): string {
  const value = object.get(key);
  if (typeof value !== 'string') throw invalid(`Field ${key} is not a string`);
  return value;
}

/**
 * Reads a signed payload of the given `type`. Throws `ERR_GANTRY_INVALID_SIGNATURE` naming the problem
 * (not JSON, duplicate or unknown keys, wrong type, malformed digest).
 */
export function parsePayload(bytes: Uint8Array, type: string): UntrustedPayload {
  const text = Buffer.from(bytes).toString('utf8');
  let value: JsonValue;
  try {
    value = parseStrictJson(text);
  } catch (error) {
    throw invalid((error as Error).message);
  }
  const top = exactFields(value, 'the signature', ['critical', 'optional']);
  const result: Partial<UntrustedPayload> = {};
  if (top.get('optional') !== null) {
    const optional = objectOf(top.get('optional'), 'optional');
    if (optional.has('creator')) result.creator = stringField(optional, 'creator');
    if (optional.has('timestamp')) {
      const timestamp = optional.get('timestamp');
      if (typeof timestamp !== 'number' || !Number.isInteger(timestamp)) {
        throw invalid('Field optional.timestamp is not an integer');
      }
      result.timestamp = timestamp;
    }
  }
  const critical = exactFields(top.get('critical'), 'critical', ['type', 'image', 'identity']);
  const actualType = stringField(critical, 'type');
  if (actualType !== type) throw invalid(`Unrecognized signature type ${actualType}`);
  const image = exactFields(critical.get('image'), 'critical.image', ['docker-manifest-digest']);
  const digest = stringField(image, 'docker-manifest-digest');
  if (type === sigstoreType && !/^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(digest)) {
    throw invalid(
      `invalid docker-manifest-digest value ${JSON.stringify(digest)}: invalid checksum digest format`,
    );
  }
  const identity = exactFields(critical.get('identity'), 'critical.identity', ['docker-reference']);
  return {
    ...result,
    dockerManifestDigest: digest,
    dockerReference: stringField(identity, 'docker-reference'),
  };
}
