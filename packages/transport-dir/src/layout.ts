/**
 * File names of the `dir:` layout, as containers/image's `directory` package writes and reads them.
 *
 * A `dir:` image is a directory holding:
 * - `version`: exactly `Directory Transport Version: 1.1\n`;
 * - `manifest.json`: the top-level manifest, byte for byte (no MIME type is recorded);
 * - `<encoded>`: each blob (layers and configs), named by the encoded part of its digest only
 *   (the algorithm is not part of the name, e.g. `sha256:abc…` is stored as `abc…`);
 * - `<encoded>.manifest.json`: the manifest of each instance of a manifest list;
 * - `signature-1`, `signature-2`, …: signatures of the top-level manifest, numbered from 1 without gaps;
 * - `<encoded>.signature-1`, …: signatures of an instance.
 */
import { type Digest, digestAlgorithms, digestHex, parseDigest } from '@gantry/core/transport';

/** The content of the `version` file that marks a directory written by the `dir:` transport. */
export const dirTransportVersion = 'Directory Transport Version: 1.1\n';

/** Name of the version file. */
export const versionFileName = 'version';

/** Name of the top-level manifest file. */
export const topLevelManifestFileName = 'manifest.json';

/**
 * The encoded part of a digest, after validating it: a digest that did not validate could put `/` or
 * `..` into a file name.
 */
function validatedHex(digest: Digest): string {
  return digestHex(parseDigest(digest));
}

/** File name of a blob: the encoded part of its digest. */
export function blobFileName(digest: Digest): string {
  return validatedHex(digest);
}

/** File name of the top-level manifest (no `instanceDigest`) or of an instance's manifest. */
export function manifestFileName(instanceDigest?: Digest): string {
  return instanceDigest === undefined
    ? topLevelManifestFileName
    : `${validatedHex(instanceDigest)}.manifest.json`;
}

/** File name of the signature at zero-based `index` of the top-level manifest or of an instance. */
export function signatureFileName(index: number, instanceDigest?: Digest): string {
  if (!Number.isInteger(index) || index < 0) throw new RangeError(`invalid signature index ${index}`);
  const name = `signature-${index + 1}`;
  return instanceDigest === undefined ? name : `${validatedHex(instanceDigest)}.${name}`;
}

const hexLengths = new Set<number>(Object.values(digestAlgorithms));
const hexPattern = /^[a-f0-9]+$/;

function isEncodedDigest(name: string): boolean {
  return hexLengths.has(name.length) && hexPattern.test(name);
}

/**
 * True for names the `dir:` transport writes (version, manifests, blobs, signatures). Staging
 * directories and anything else a user may have put in the directory are not included.
 */
export function isLayoutFileName(name: string): boolean {
  if (name === versionFileName || name === topLevelManifestFileName) return true;
  if (/^signature-[1-9][0-9]*$/.test(name)) return true;
  const dot = name.indexOf('.');
  if (dot === -1) return isEncodedDigest(name);
  const rest = name.slice(dot + 1);
  if (!isEncodedDigest(name.slice(0, dot))) return false;
  return rest === 'manifest.json' || /^signature-[1-9][0-9]*$/.test(rest);
}
