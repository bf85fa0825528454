/**
 * The image a SIF file becomes, as skopeo (containers/image `sif/src.go`) builds it: an OCI manifest with
 * one uncompressed layer (the root file system) and a config whose `created` is the SIF's modification
 * time, whose platform is `linux` and the SIF's primary architecture, whose only setting is `Cmd`, and
 * whose history records the import. The JSON is written with the members in the order Go's
 * `encoding/json` writes containers/image's structures, so the same inputs give skopeo's bytes.
 */
import type { Digest } from '@gantry/core/transport';

export const ociManifestMediaType = 'application/vnd.oci.image.manifest.v1+json';
export const ociConfigMediaType = 'application/vnd.oci.image.config.v1+json';
/** The layer is a plain (uncompressed) tar; the copy pipeline compresses it where the destination wants. */
export const ociLayerMediaType = 'application/vnd.oci.image.layer.v1.tar';

export interface SifImageFacts {
  /** The SIF's modification time, Unix seconds. */
  modifiedAt: number;
  /** Go architecture name of the SIF's primary architecture. */
  architecture: string;
  /** The SIF's UUID. */
  id: string;
  command: string;
  layerDigest: Digest;
}

/**
 * A Unix time as Go's `time.Time` JSON form in UTC (RFC 3339, no fraction for whole seconds). Go refuses
 * years outside 0…9999 when marshalling; so does this (skopeo then fails to generate the config).
 */
export function goJsonTime(unixSeconds: number): string {
  const date = new Date(unixSeconds * 1000);
  const year = date.getUTCFullYear();
  if (!Number.isFinite(date.getTime()) || year < 0 || year > 9999) {
    throw new RangeError(`time ${unixSeconds} has a year outside [0,9999]`);
  }
  return date.toISOString().replace(/\.000Z$/, 'Z');
}

/** The config blob's bytes. */
export function buildConfig(facts: SifImageFacts): Buffer {
  const created = goJsonTime(facts.modifiedAt);
  const encodedDigest = facts.layerDigest.slice(facts.layerDigest.indexOf(':') + 1);
  const config = {
    created,
    architecture: facts.architecture,
    os: 'linux',
    config: { Cmd: [facts.command] },
    rootfs: { type: 'layers', diff_ids: [facts.layerDigest] },
    history: [
      {
        created,
        created_by: `/bin/sh -c #(nop) ADD file:${encodedDigest} in /`,
        comment: `imported from SIF, uuid: ${facts.id}`,
      },
      // containers/image records this entry whatever the command is.
      { created, created_by: '/bin/sh -c #(nop) CMD ["bash"]', empty_layer: true },
    ],
  };
  return Buffer.from(goJsonEscape(JSON.stringify(config)));
}

/** The manifest's bytes. */
export function buildManifest(
  config: { digest: Digest; size: number },
  layer: { digest: Digest; size: number },
): Buffer {
  const manifest = {
    schemaVersion: 2,
    mediaType: ociManifestMediaType,
    config: { mediaType: ociConfigMediaType, digest: config.digest, size: config.size },
    layers: [{ mediaType: ociLayerMediaType, digest: layer.digest, size: layer.size }],
  };
  return Buffer.from(goJsonEscape(JSON.stringify(manifest)));
}

/** Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029 in strings; JSON.stringify does not. */
function goJsonEscape(json: string): string {
  return json.replace(
    /[<>&\u2028\u2029]/g,
    (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
