/**
 * OpenPGP (RFC 4880) public keys and signed messages read and checked with node:crypto, for the
 * signatures container tools make: v4 keys and v4 signatures by RSA, ECDSA (NIST P-256/384/521) or
 * EdDSA (Ed25519) keys with a SHA-2 hash, in a message as `gpg --sign` writes it (optionally ZIP or
 * ZLIB compressed). Verifying this way costs a few milliseconds instead of loading OpenPGP.js.
 *
 * Anything else (other algorithms or hashes, secret-key packets, v5/v6 packets, bzip2, text-mode
 * signatures) is reported as unsupported, never as valid or invalid, so the caller can hand it to
 * OpenPGP.js. What is checked, as gpg (through gpgme) does for containers/image:
 * - keys: self-signatures verified (user-ID certifications, subkey bindings with the signing subkey's
 *   back-signature); the newest valid one gives the key's expiry and flags; a verified revocation
 *   revokes the key;
 * - a message: exactly one signature, over the literal data, by a known key (primary or subkey) that
 *   may sign, is neither expired nor revoked now, and was created before the signature; the signature
 *   itself not expired; no unknown critical subpacket.
 */
import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { inflateRawSync, inflateSync } from 'node:zlib';

/** Something this module cannot check: the caller must use a full OpenPGP implementation. */
export class UnsupportedOpenPgp extends Error {}

/** A signature or key that is checked and wrong. */
export class InvalidOpenPgp extends Error {}

interface Packet {
  tag: number;
  body: Uint8Array;
}

const maxDecompressedBytes = 16 * 1024 * 1024;

/** Splits OpenPGP packets (old and new formats, partial body lengths). */
function readPackets(bytes: Uint8Array): Packet[] {
  const packets: Packet[] = [];
  let offset = 0;
  const need = (count: number) => {
    if (offset + count > bytes.length) throw new InvalidOpenPgp('truncated OpenPGP packet');
  };
  while (offset < bytes.length) {
    const header = bytes[offset++]!;
    if ((header & 0x80) === 0) throw new InvalidOpenPgp('not OpenPGP data (bad packet header)');
    if (header & 0x40) {
      const tag = header & 0x3f;
      const parts: Uint8Array[] = [];
      for (;;) {
        need(1);
        const first = bytes[offset++]!;
        let length: number;
        let partial = false;
        if (first < 192) length = first;
        else if (first < 224) {
          need(1);
          length = ((first - 192) << 8) + bytes[offset++]! + 192;
        } else if (first === 255) {
          need(4);
          length = Buffer.from(bytes.buffer, bytes.byteOffset + offset, 4).readUInt32BE(0);
          offset += 4;
        } else {
          length = 1 << (first & 0x1f);
          partial = true;
        }
        need(length);
        parts.push(bytes.subarray(offset, offset + length));
        offset += length;
        if (!partial) break;
      }
      packets.push({ tag, body: parts.length === 1 ? parts[0]! : Buffer.concat(parts) });
    } else {
      const tag = (header >> 2) & 0x0f;
      const lengthType = header & 0x03;
      let length: number;
      if (lengthType === 3) length = bytes.length - offset;
      else {
        const size = 1 << lengthType;
        need(size);
        length = 0;
        for (let index = 0; index < size; index++) length = length * 256 + bytes[offset++]!;
      }
      need(length);
      packets.push({ tag, body: bytes.subarray(offset, offset + length) });
      offset += length;
    }
  }
  return packets;
}

/** The binary form of an ASCII-armored block (`-----BEGIN PGP …`), or the bytes unchanged. */
export function dearmor(bytes: Uint8Array): Uint8Array[] {
  const text = Buffer.from(bytes).toString('latin1');
  if (!text.includes('-----BEGIN PGP')) return [bytes];
  const blocks: Uint8Array[] = [];
  const pattern = /-----BEGIN PGP [^-\r\n]+-----\r?\n([\s\S]*?)-----END PGP [^-\r\n]+-----/g;
  for (const match of text.matchAll(pattern)) {
    const lines = match[1]!.split(/\r?\n/);
    // Armor headers end at the first empty line (when there are any).
    const blank = lines.findIndex((line) => line.trim() === '');
    const hasHeaders = lines.slice(0, Math.max(0, blank)).some((line) => /^[A-Za-z-]+: /.test(line));
    const body = (hasHeaders || blank === 0 ? lines.slice(blank + 1) : lines)
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('='));
    blocks.push(new Uint8Array(Buffer.from(body.join(''), 'base64')));
  }
  if (blocks.length === 0) throw new InvalidOpenPgp('malformed ASCII armor');
  return blocks;
}

class Reader {
  offset = 0;
  constructor(readonly bytes: Uint8Array) {}
  byte(): number {
    if (this.offset >= this.bytes.length) throw new InvalidOpenPgp('truncated OpenPGP packet');
    return this.bytes[this.offset++]!;
  }
  take(count: number): Uint8Array {
    if (this.offset + count > this.bytes.length) throw new InvalidOpenPgp('truncated OpenPGP packet');
    const part = this.bytes.subarray(this.offset, this.offset + count);
    this.offset += count;
    return part;
  }
  uint16(): number {
    return (this.byte() << 8) | this.byte();
  }
  uint32(): number {
    return Buffer.from(this.take(4)).readUInt32BE(0);
  }
  mpi(): Uint8Array {
    const bits = this.uint16();
    return this.take((bits + 7) >> 3);
  }
}

const hashNames: Record<number, string> = { 8: 'sha256', 9: 'sha384', 10: 'sha512', 11: 'sha224' };
/** SHA-1 is accepted only on keys' self-signatures (older keys have them), as OpenPGP.js does. */
const selfSignatureHashNames: Record<number, string> = { ...hashNames, 2: 'sha1' };

const curves: Record<string, { jwk: string; bytes: number }> = {
  '2a8648ce3d030107': { jwk: 'P-256', bytes: 32 },
  '2b81040022': { jwk: 'P-384', bytes: 48 },
  '2b81040023': { jwk: 'P-521', bytes: 66 },
};
const ed25519Oid = '2b06010401da470f01';

const base64url = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64url');

function leftPad(bytes: Uint8Array, length: number): Uint8Array {
  if (bytes.length > length) throw new InvalidOpenPgp('signature value too long');
  if (bytes.length === length) return bytes;
  const padded = new Uint8Array(length);
  padded.set(bytes, length - bytes.length);
  return padded;
}

interface PublicKeyMaterial {
  algorithm: number;
  /** undefined when the algorithm is one node:crypto is not used for here. */
  key: KeyObject | undefined;
  /** Length in bytes of each signature integer (RSA: the modulus; ECDSA/EdDSA: one coordinate). */
  valueBytes: number;
}

export interface NativePublicKey {
  /** The key packet's body (for hashing into signatures). */
  body: Uint8Array;
  fingerprint: string;
  keyId: string;
  created: number;
  material: PublicKeyMaterial;
  /** Seconds since the epoch; undefined: never. */
  expires?: number;
  revoked: boolean;
  /** Key flags from the newest self-signature; undefined when it has none. */
  flags?: number;
}

export interface NativeKey {
  primary: NativePublicKey;
  subkeys: NativePublicKey[];
}

function parsePublicKeyBody(body: Uint8Array): NativePublicKey {
  const reader = new Reader(body);
  const version = reader.byte();
  if (version !== 4) throw new UnsupportedOpenPgp(`OpenPGP v${version} keys`);
  const created = reader.uint32();
  const algorithm = reader.byte();
  let material: PublicKeyMaterial = { algorithm, key: undefined, valueBytes: 0 };
  if (algorithm === 1 || algorithm === 3) {
    const n = reader.mpi();
    const e = reader.mpi();
    material = {
      algorithm,
      key: createPublicKey({ key: { kty: 'RSA', n: base64url(n), e: base64url(e) }, format: 'jwk' }),
      valueBytes: n.length,
    };
  } else if (algorithm === 19 || algorithm === 22) {
    const oid = Buffer.from(reader.take(reader.byte())).toString('hex');
    const point = reader.mpi();
    if (algorithm === 19 && curves[oid] && point[0] === 4 && point.length === 1 + 2 * curves[oid].bytes) {
      const { jwk, bytes } = curves[oid];
      material = {
        algorithm,
        key: createPublicKey({
          key: {
            kty: 'EC',
            crv: jwk,
            x: base64url(point.subarray(1, 1 + bytes)),
            y: base64url(point.subarray(1 + bytes)),
          },
          format: 'jwk',
        }),
        valueBytes: bytes,
      };
    } else if (algorithm === 22 && oid === ed25519Oid && point[0] === 0x40 && point.length === 33) {
      material = {
        algorithm,
        key: createPublicKey({
          key: { kty: 'OKP', crv: 'Ed25519', x: base64url(point.subarray(1)) },
          format: 'jwk',
        }),
        valueBytes: 32,
      };
    }
  }
  const fingerprintHash = createHash('sha1')
    .update(Uint8Array.of(0x99, body.length >> 8, body.length & 0xff))
    .update(body)
    .digest('hex')
    .toUpperCase();
  return {
    body,
    fingerprint: fingerprintHash,
    keyId: fingerprintHash.slice(-16),
    created,
    material,
    revoked: false,
  };
}

interface ParsedSignature {
  type: number;
  publicKeyAlgorithm: number;
  hashAlgorithm: number;
  /** Version through the hashed subpackets: hashed with the trailer. */
  hashedPart: Uint8Array;
  left16: Uint8Array;
  values: Uint8Array[];
  created: number | undefined;
  /** Seconds after `created`; 0 or undefined: never. */
  expiresAfter: number | undefined;
  keyExpiresAfter: number | undefined;
  flags: number | undefined;
  issuerKeyIds: string[];
  issuerFingerprint: string | undefined;
  embedded: Uint8Array | undefined;
  unknownCritical: boolean;
}

function parseSignature(body: Uint8Array): ParsedSignature {
  const reader = new Reader(body);
  const version = reader.byte();
  if (version !== 4) throw new UnsupportedOpenPgp(`OpenPGP v${version} signatures`);
  const type = reader.byte();
  const publicKeyAlgorithm = reader.byte();
  const hashAlgorithm = reader.byte();
  const hashedLength = reader.uint16();
  const hashed = reader.take(hashedLength);
  const hashedPart = body.subarray(0, 6 + hashedLength);
  const unhashed = reader.take(reader.uint16());
  const left16 = reader.take(2);
  const values: Uint8Array[] = [];
  if (publicKeyAlgorithm === 1 || publicKeyAlgorithm === 3) values.push(reader.mpi());
  else if (publicKeyAlgorithm === 17 || publicKeyAlgorithm === 19 || publicKeyAlgorithm === 22) {
    values.push(reader.mpi(), reader.mpi());
  }
  const signature: ParsedSignature = {
    type,
    publicKeyAlgorithm,
    hashAlgorithm,
    hashedPart,
    left16,
    values,
    created: undefined,
    expiresAfter: undefined,
    keyExpiresAfter: undefined,
    flags: undefined,
    issuerKeyIds: [],
    issuerFingerprint: undefined,
    embedded: undefined,
    unknownCritical: false,
  };
  const readSubpackets = (area: Uint8Array, isHashed: boolean) => {
    const subpackets = new Reader(area);
    while (subpackets.offset < area.length) {
      const first = subpackets.byte();
      let length: number;
      if (first < 192) length = first;
      else if (first < 255) length = ((first - 192) << 8) + subpackets.byte() + 192;
      else length = subpackets.uint32();
      if (length < 1) throw new InvalidOpenPgp('malformed signature subpacket');
      const typeByte = subpackets.byte();
      const data = subpackets.take(length - 1);
      const subpacketType = typeByte & 0x7f;
      const read32 = () => {
        if (data.length !== 4) throw new InvalidOpenPgp('malformed signature subpacket');
        return Buffer.from(data).readUInt32BE(0);
      };
      switch (subpacketType) {
        case 2:
          if (isHashed) signature.created = read32();
          break;
        case 3:
          if (isHashed) signature.expiresAfter = read32();
          break;
        case 9:
          if (isHashed) signature.keyExpiresAfter = read32();
          break;
        case 16:
          signature.issuerKeyIds.push(Buffer.from(data).toString('hex').toUpperCase());
          break;
        case 27:
          if (isHashed) signature.flags = data[0] ?? 0;
          break;
        case 32:
          signature.embedded = data;
          break;
        case 33:
          if (data[0] === 4 && data.length === 21)
            signature.issuerFingerprint = Buffer.from(data.subarray(1)).toString('hex').toUpperCase();
          break;
        // Known subpackets with no effect on these checks.
        case 4:
        case 5:
        case 6:
        case 7:
        case 11:
        case 12:
        case 20:
        case 21:
        case 22:
        case 23:
        case 24:
        case 25:
        case 26:
        case 28:
        case 29:
        case 30:
        case 31:
        case 34:
        case 35:
          break;
        default:
          if (typeByte & 0x80 && isHashed) signature.unknownCritical = true;
      }
    }
  };
  readSubpackets(hashed, true);
  readSubpackets(unhashed, false);
  return signature;
}

/** The bytes a key packet contributes to a signature hash. */
function keyHashInput(key: NativePublicKey): Uint8Array[] {
  return [Uint8Array.of(0x99, key.body.length >> 8, key.body.length & 0xff), key.body];
}

/**
 * Whether `signature` over `data` verifies with `key`. Throws `UnsupportedOpenPgp` when the
 * algorithm or hash is one this module does not check.
 */
function signatureVerifies(
  signature: ParsedSignature,
  data: readonly Uint8Array[],
  key: NativePublicKey,
  hashes: Record<number, string>,
): boolean {
  const hashName = hashes[signature.hashAlgorithm];
  if (hashName === undefined) throw new UnsupportedOpenPgp(`hash algorithm ${signature.hashAlgorithm}`);
  const material = key.material;
  if (material.key === undefined) throw new UnsupportedOpenPgp(`public key algorithm ${material.algorithm}`);
  if (signature.publicKeyAlgorithm !== material.algorithm) return false;
  const trailer = Buffer.alloc(6);
  trailer[0] = 4;
  trailer[1] = 0xff;
  trailer.writeUInt32BE(signature.hashedPart.length, 2);
  const signed = Buffer.concat([...data, signature.hashedPart, trailer]);
  const digest = createHash(hashName).update(signed).digest();
  if (digest[0] !== signature.left16[0] || digest[1] !== signature.left16[1]) return false;
  try {
    switch (material.algorithm) {
      case 1:
      case 3:
        if (signature.values.length !== 1) return false;
        return cryptoVerify(
          hashName,
          signed,
          material.key,
          leftPad(signature.values[0]!, material.valueBytes),
        );
      case 19:
        if (signature.values.length !== 2) return false;
        return cryptoVerify(
          hashName,
          signed,
          { key: material.key, dsaEncoding: 'ieee-p1363' },
          Buffer.concat(signature.values.map((value) => leftPad(value, material.valueBytes))),
        );
      case 22:
        // EdDSA signs the hash value, not the data.
        if (signature.values.length !== 2) return false;
        return cryptoVerify(
          null,
          digest,
          material.key,
          Buffer.concat(signature.values.map((value) => leftPad(value, material.valueBytes))),
        );
      default:
        throw new UnsupportedOpenPgp(`public key algorithm ${material.algorithm}`);
    }
  } catch (error) {
    if (error instanceof UnsupportedOpenPgp) throw error;
    return false;
  }
}

function issuedBy(signature: ParsedSignature, key: NativePublicKey): boolean {
  if (signature.issuerFingerprint !== undefined) return signature.issuerFingerprint === key.fingerprint;
  return signature.issuerKeyIds.length === 0 || signature.issuerKeyIds.includes(key.keyId);
}

/**
 * Reads the v4 public keys (transferable public keys) in `bytes` (binary, one or more keys).
 * Throws `UnsupportedOpenPgp` for anything it cannot check (the caller then uses OpenPGP.js for
 * these bytes) and `InvalidOpenPgp` for data that is not keys.
 */
export function readNativeKeys(bytes: Uint8Array): NativeKey[] {
  const packets = readPackets(bytes);
  const keys: NativeKey[] = [];
  let current: NativeKey | undefined;
  /** What the signatures that follow are about. */
  let component:
    | { kind: 'primary' }
    | { kind: 'user'; bytes: Uint8Array }
    | { kind: 'subkey'; key: NativePublicKey }
    | undefined;
  let newestPrimary: { created: number; signature: ParsedSignature } | undefined;
  const newestSubkey = new Map<NativePublicKey, { created: number; signature: ParsedSignature }>();
  const finish = () => {
    if (current === undefined) return;
    const primary = current.primary;
    if (newestPrimary === undefined) {
      throw new InvalidOpenPgp(`key ${primary.fingerprint} has no valid user ID self-signature`);
    }
    if (newestPrimary.signature.keyExpiresAfter)
      primary.expires = primary.created + newestPrimary.signature.keyExpiresAfter;
    if (newestPrimary.signature.flags !== undefined) primary.flags = newestPrimary.signature.flags;
    // A subkey without a valid binding signature is not part of the key.
    current.subkeys = current.subkeys.filter((subkey) => {
      const binding = newestSubkey.get(subkey);
      if (binding === undefined) return false;
      if (binding.signature.keyExpiresAfter)
        subkey.expires = subkey.created + binding.signature.keyExpiresAfter;
      if (binding.signature.flags !== undefined) subkey.flags = binding.signature.flags;
      return true;
    });
    keys.push(current);
    current = undefined;
    newestPrimary = undefined;
    newestSubkey.clear();
  };
  for (const packet of packets) {
    switch (packet.tag) {
      case 6:
        finish();
        current = { primary: parsePublicKeyBody(packet.body), subkeys: [] };
        component = { kind: 'primary' };
        break;
      case 5:
      case 7:
        throw new UnsupportedOpenPgp('secret key packets');
      case 13:
        if (current === undefined) throw new InvalidOpenPgp('user ID before any key');
        component = { kind: 'user', bytes: packet.body };
        break;
      case 17:
        // A user attribute (photo): its certifications are not needed here.
        component = undefined;
        break;
      case 14: {
        if (current === undefined) throw new InvalidOpenPgp('subkey before any key');
        const subkey = parsePublicKeyBody(packet.body);
        current.subkeys.push(subkey);
        component = { kind: 'subkey', key: subkey };
        break;
      }
      case 2: {
        if (current === undefined || component === undefined) break;
        const signature = parseSignature(packet.body);
        const primary = current.primary;
        if (!issuedBy(signature, primary) || signature.unknownCritical) break;
        if (component.kind === 'primary' && signature.type === 0x20) {
          if (signatureVerifies(signature, keyHashInput(primary), primary, selfSignatureHashNames))
            primary.revoked = true;
        } else if (component.kind === 'user' && signature.type >= 0x10 && signature.type <= 0x13) {
          const user = component.bytes;
          const header = Buffer.alloc(5);
          header[0] = 0xb4;
          header.writeUInt32BE(user.length, 1);
          if (
            signatureVerifies(
              signature,
              [...keyHashInput(primary), header, user],
              primary,
              selfSignatureHashNames,
            ) &&
            (newestPrimary === undefined || (signature.created ?? 0) >= newestPrimary.created)
          ) {
            newestPrimary = { created: signature.created ?? 0, signature };
          }
        } else if (component.kind === 'subkey') {
          const subkey = component.key;
          const data = [...keyHashInput(primary), ...keyHashInput(subkey)];
          if (signature.type === 0x28) {
            if (signatureVerifies(signature, data, primary, selfSignatureHashNames)) subkey.revoked = true;
          } else if (
            signature.type === 0x18 &&
            signatureVerifies(signature, data, primary, selfSignatureHashNames)
          ) {
            // A subkey that may sign must prove it agrees (an embedded back-signature by the subkey).
            if (signature.flags !== undefined && signature.flags & 0x02) {
              if (signature.embedded === undefined) break;
              const back = parseSignature(signature.embedded);
              if (back.type !== 0x19 || !signatureVerifies(back, data, subkey, selfSignatureHashNames)) break;
            }
            const previous = newestSubkey.get(subkey);
            if (previous === undefined || (signature.created ?? 0) >= previous.created) {
              newestSubkey.set(subkey, { created: signature.created ?? 0, signature });
            }
          }
        }
        break;
      }
      default:
        // Trust packets, markers and others carry nothing needed here.
        break;
    }
  }
  finish();
  return keys;
}

/** A signed message's parts: the literal data and its signatures. */
function readSignedMessage(bytes: Uint8Array): { content: Uint8Array; signatures: ParsedSignature[] } {
  let packets = readPackets(bytes);
  if (packets.length === 1 && packets[0]!.tag === 8) {
    const body = packets[0]!.body;
    const algorithm = body[0];
    const data = body.subarray(1);
    let inflated: Uint8Array;
    try {
      if (algorithm === 0) inflated = data;
      else if (algorithm === 1) inflated = inflateRawSync(data, { maxOutputLength: maxDecompressedBytes });
      else if (algorithm === 2) inflated = inflateSync(data, { maxOutputLength: maxDecompressedBytes });
      else throw new UnsupportedOpenPgp(`compression algorithm ${algorithm}`);
    } catch (error) {
      if (error instanceof UnsupportedOpenPgp) throw error;
      throw new InvalidOpenPgp(`decompressing the signed message: ${(error as Error).message}`);
    }
    packets = readPackets(inflated);
  }
  let content: Uint8Array | undefined;
  const signatures: ParsedSignature[] = [];
  for (const packet of packets) {
    if (packet.tag === 4 || packet.tag === 10) continue;
    if (packet.tag === 11) {
      if (content !== undefined) throw new InvalidOpenPgp('more than one literal data packet');
      const reader = new Reader(packet.body);
      const format = reader.byte();
      if (format !== 0x62) throw new UnsupportedOpenPgp(`literal data format ${String.fromCharCode(format)}`);
      reader.take(reader.byte());
      reader.uint32();
      content = packet.body.subarray(reader.offset);
    } else if (packet.tag === 2) signatures.push(parseSignature(packet.body));
    else throw new UnsupportedOpenPgp(`packet type ${packet.tag} in a signed message`);
  }
  if (content === undefined) throw new InvalidOpenPgp('The input is not a signature');
  return { content, signatures };
}

/** What `readSignedMessageUnverified` finds: the content and the signing key IDs, NOT checked. */
export function readSignedMessageUnverified(bytes: Uint8Array): { content: Uint8Array; keyIds: string[] } {
  const { content, signatures } = readSignedMessage(bytes);
  const keyIds = signatures.flatMap((signature) =>
    signature.issuerFingerprint ? [signature.issuerFingerprint.slice(-16)] : signature.issuerKeyIds,
  );
  if (keyIds.length === 0) throw new InvalidOpenPgp('The input is not a signature');
  return { content, keyIds };
}

const goMonths = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];

/** Go's `%#v` of `time.Unix(seconds, 0)`: `time.Date(2026, time.December, 5, 18, 2, 3, 0, time.Local)`. */
function goTimeLiteral(seconds: number): string {
  const date = new Date(seconds * 1000);
  const fields = [date.getFullYear(), `time.${goMonths[date.getMonth()]}`, date.getDate()];
  return `time.Date(${[...fields, date.getHours(), date.getMinutes(), date.getSeconds(), 0, 'time.Local'].join(', ')})`;
}

/**
 * The message skopeo gives for a signature by a key that is not among the policy's keys: gpgme's
 * `%#v` of the signature (GPGME_SIGSUM_KEY_MISSING, GPG_ERR_NO_PUBKEY), whose every field the
 * signature itself determines, so that both tools word it alike.
 */
function missingKeyMessage(signature: ParsedSignature, keyId: string): string {
  const created = signature.created ?? 0;
  const expires = signature.expiresAfter ? created + signature.expiresAfter : 0;
  const fields = [
    'Summary:128',
    `Fingerprint:${JSON.stringify(signature.issuerFingerprint ?? keyId)}`,
    'Status:gpgme.Error{err:0x9}',
    `Timestamp:${goTimeLiteral(created)}`,
    `ExpTimestamp:${goTimeLiteral(expires)}`,
    'WrongKeyUsage:false',
    'PKATrust:0x0',
    'ChainModel:false',
    'Validity:0',
    'ValidityReason:error(nil)',
    `PubkeyAlgo:${signature.publicKeyAlgorithm}`,
    `HashAlgo:${signature.hashAlgorithm}`,
  ];
  return `Invalid GPG signature: gpgme.Signature{${fields.join(', ')}}`;
}

/**
 * Verifies a signed message with `keys` at time `now` (seconds). Returns the content and the signing
 * key's primary fingerprint; throws `InvalidOpenPgp` (the message says why) or `UnsupportedOpenPgp`.
 */
export function verifyNativeSignedMessage(
  bytes: Uint8Array,
  keys: readonly NativeKey[],
  now = Math.floor(Date.now() / 1000),
): { content: Uint8Array; keyFingerprint: string } {
  const { content, signatures } = readSignedMessage(bytes);
  if (signatures.length !== 1)
    throw new InvalidOpenPgp(`Unexpected GPG signature count ${signatures.length}`);
  const signature = signatures[0]!;
  if (signature.type !== 0x00) throw new UnsupportedOpenPgp(`signature type ${signature.type}`);
  const wanted = signature.issuerFingerprint?.slice(-16) ?? signature.issuerKeyIds[0];
  if (wanted === undefined) throw new InvalidOpenPgp('the signature names no key');
  let found: { key: NativeKey; signer: NativePublicKey } | undefined;
  for (const key of keys) {
    for (const candidate of [key.primary, ...key.subkeys]) {
      if (candidate.keyId === wanted && issuedBy(signature, candidate)) found = { key, signer: candidate };
    }
  }
  if (found === undefined) throw new InvalidOpenPgp(missingKeyMessage(signature, wanted));
  const { key, signer } = found;
  if (!signatureVerifies(signature, [content], signer, hashNames)) {
    throw new InvalidOpenPgp(`Invalid GPG signature by key ${wanted}: the signature does not verify`);
  }
  const created = signature.created;
  if (created === undefined) throw new InvalidOpenPgp(`signature by key ${wanted} has no creation time`);
  if (signature.unknownCritical)
    throw new InvalidOpenPgp(`signature by key ${wanted} has an unknown critical subpacket`);
  if (signature.expiresAfter && now >= created + signature.expiresAfter) {
    throw new InvalidOpenPgp(`signature by key ${wanted} expired`);
  }
  for (const part of signer === key.primary ? [key.primary] : [key.primary, signer]) {
    if (part.revoked) throw new InvalidOpenPgp(`key ${part.keyId} is revoked`);
    if (part.expires !== undefined && now >= part.expires)
      throw new InvalidOpenPgp(`key ${part.keyId} expired`);
    if (created < part.created) throw new InvalidOpenPgp(`key ${part.keyId} was created after the signature`);
  }
  if (signer.flags !== undefined && (signer.flags & 0x02) === 0) {
    throw new InvalidOpenPgp(`key ${signer.keyId} may not make signatures`);
  }
  return { content, keyFingerprint: key.primary.fingerprint };
}
