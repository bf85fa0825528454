/**
 * The JWS signature ("prettyjws", docker/libtrust) a Docker schema1 manifest carries. containers/image
 * signs every schema1 manifest it writes with a freshly generated ECDSA P-256 key (the signature proves
 * nothing; registries of the distribution family refuse unsigned schema1), and so does Gantry.
 */
import { createHash, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
import { ErrorCodes, GantryError } from '../errors.js';
import { goJsonMarshal } from './go-json.js';

function base64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

const base32Alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 (no padding needed: callers pass multiples of 5 bytes). */
function base32(bytes: Uint8Array): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += base32Alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += base32Alphabet[(value << (5 - bits)) & 31];
  return out;
}

/**
 * libtrust's key ID: the SHA-256 of the DER (PKIX) public key, its first 240 bits in base32, as 12
 * groups of 4 characters joined by ':'.
 */
export function libtrustKeyId(publicKey: KeyObject): string {
  const der = publicKey.export({ format: 'der', type: 'spki' });
  const encoded = base32(createHash('sha256').update(der).digest().subarray(0, 30));
  return encoded.match(/.{4}/g)!.join(':');
}

const isJsonSpace = (character: string | undefined) =>
  character === ' ' || character === '\t' || character === '\n' || character === '\r';

/**
 * Signs a schema1 manifest (compact JSON, as containers/image serialises it) as libtrust's
 * `NewJSONSignature(payload).Sign(key)` + `PrettySignature("signatures")` do: the payload's bytes up to
 * its closing brace, `,"signatures":[…]}`; the protected header records `formatLength`, `formatTail`
 * and the signing time; the signature is ES256 over `protected.payload` (base64url). The manifest's
 * digest (of the payload) does not depend on the key or the time.
 */
export function signSchema1Manifest(
  payload: Uint8Array,
  options: { now?: Date; privateKey?: KeyObject } = {},
): Uint8Array {
  const text = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  let close = text.length - 1;
  while (close >= 0 && isJsonSpace(String.fromCharCode(text[close]!))) close--;
  if (close < 0 || text[close] !== 0x7d) {
    throw new GantryError(ErrorCodes.Internal, 'signing a schema1 manifest: it does not end with "}"');
  }
  let last = close - 1;
  while (last >= 0 && isJsonSpace(String.fromCharCode(text[last]!))) last--;
  if (last < 0 || text[last] === 0x2c) {
    throw new GantryError(ErrorCodes.Internal, 'signing a schema1 manifest: invalid JSON content');
  }
  const formatLength = last + 1;
  const formatTail = text.subarray(formatLength);
  let privateKey = options.privateKey;
  let publicKey: KeyObject;
  if (privateKey === undefined) {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    privateKey = pair.privateKey;
    publicKey = pair.publicKey;
  } else {
    publicKey = createPublicKey(privateKey);
  }
  const time = (options.now ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z');
  // Go marshals the header map with sorted keys.
  const protectedHeader = base64Url(
    Buffer.from(
      goJsonMarshal(
        new Map<string, unknown>([
          ['formatLength', formatLength],
          ['formatTail', base64Url(formatTail)],
          ['time', time],
        ]),
      ),
    ),
  );
  const signingInput = `${protectedHeader}.${base64Url(text)}`;
  const signature = sign('sha256', Buffer.from(signingInput), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  const jwk = publicKey.export({ format: 'jwk' }) as { crv: string; x: string; y: string };
  const signatures = [
    {
      header: {
        jwk: new Map<string, unknown>([
          ['crv', jwk.crv],
          ['kid', libtrustKeyId(publicKey)],
          ['kty', 'EC'],
          ['x', jwk.x],
          ['y', jwk.y],
        ]),
        alg: 'ES256',
      },
      signature: base64Url(signature),
      protected: protectedHeader,
    },
  ];
  return Buffer.concat([
    text.subarray(0, formatLength),
    Buffer.from(`,"signatures":${goJsonMarshal(signatures)}}`),
  ]);
}

/** Verifies the ES256 signatures of a schema1 manifest signed as `signSchema1Manifest` signs (tests). */
export function schema1SignaturesVerify(bytes: Uint8Array, payload: Uint8Array): boolean {
  const manifest = JSON.parse(Buffer.from(bytes).toString('utf8')) as {
    signatures: Array<{ header: { jwk: Record<string, string> }; signature: string; protected: string }>;
  };
  return manifest.signatures.every((entry) => {
    const signingInput = `${entry.protected}.${base64Url(payload)}`;
    return verify(
      'sha256',
      Buffer.from(signingInput),
      {
        key: { ...entry.header.jwk, kty: 'EC' } as unknown as string,
        format: 'jwk',
        dsaEncoding: 'ieee-p1363',
      },
      Buffer.from(entry.signature, 'base64url'),
    );
  });
}
