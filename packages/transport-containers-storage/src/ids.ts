/**
 * Names and IDs exactly as containers/storage and containers/image's storage transport compute them.
 */
import { createHash } from 'node:crypto';

/** A full image or layer ID: 64 lowercase hex characters. */
export const fullIdPattern = /^[0-9a-f]{64}$/;

/** `sha256:<hex>` → `<hex>`. */
export function encodedPart(digest: string): string {
  const colon = digest.indexOf(':');
  return colon < 0 ? digest : digest.slice(colon + 1);
}

/**
 * A layer's ID in the store (containers/image `layerID`): the DiffID's hex for a base layer, else
 * sha256 of `<parent layer ID>+<DiffID hex>`. (A chain ID, computed on layer IDs.)
 */
export function layerIdFor(parentLayerId: string | undefined, diffId: string): string {
  const component = encodedPart(diffId);
  if (!parentLayerId) return component;
  return createHash('sha256').update(`${parentLayerId}+${component}`).digest('hex');
}

/**
 * The file name of an image's big-data item (containers/storage `makeBigDataBaseName`): the key itself
 * when it consists only of `.`, digits and lowercase letters, else `=` + the key in standard base64.
 */
export function bigDataFileName(key: string): string {
  if (/^[.0-9a-z]*$/.test(key) && key !== '') return key;
  return `=${Buffer.from(key, 'utf8').toString('base64')}`;
}

/** Big-data key of a manifest stored by digest (containers/image `manifestBigDataKey`). */
export function manifestBigDataKey(digest: string): string {
  return `manifest-${digest}`;
}

/** Big-data key of the signatures of one manifest (containers/image `signatureBigDataKey`). */
export function signatureBigDataKey(digest: string): string {
  return `signature-${encodedPart(digest)}`;
}

/** The key under which the image's "current" manifest is stored (containers/storage `ImageDigestBigDataKey`). */
export const imageDigestBigDataKey = 'manifest';

/** Go's `time.Time` JSON form with nanoseconds trimmed of trailing zeros (RFC 3339 nano, UTC). */
export function goTimestamp(date: Date = new Date()): string {
  return date.toISOString();
}
