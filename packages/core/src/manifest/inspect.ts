import type { Digest } from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
import { inspectConfigFields, ociImageValue, schema1ToSchema2Config } from './config.js';
import { goJsonMarshalIndent } from './go-json.js';
import { MediaTypes } from './media-types.js';
import { decodeSchema1, type ImageManifest } from './parse.js';

/** Input of `buildInspectOutput`. */
export interface InspectInput {
  /** The docker reference's name (`docker.io/library/busybox`); omitted from the output when undefined or ''. */
  name?: string;
  manifest: ImageManifest;
  /** The config blob; required for OCI and Docker schema2 manifests. */
  config?: Uint8Array;
  /** The repository's tags; null when the registry refused to list them (skopeo prints null then). */
  repoTags: string[] | null;
  /** The digest printed as `Digest` (the top-level manifest's, as skopeo prints). */
  digest: Digest;
  /**
   * Output layout: 'current' (default; skopeo >= 1.10: `Variant` (omitempty) and `LayersData`) or
   * 'skopeo-1.9' (the installed Debian skopeo: `Tag` (omitempty; the schema1 tag) after `Name`, no
   * `Variant`, no `LayersData`).
   */
  compatibility?: 'current' | 'skopeo-1.9';
}

/** One layer of {@link ImageInspection.LayersData}. */
export interface InspectedLayer {
  /** The layer's MIME type as the manifest gives it ('' for schema1). */
  MIMEType: string;
  Digest: Digest;
  /** Size in bytes; -1 when the manifest does not say (schema1). */
  Size: number;
  /** The layer's annotations (a Go map: printed with sorted keys); null when it has none. */
  Annotations: Map<string, string> | null;
}

/**
 * What `gantry inspect` prints for one image (skopeo's `inspect` output), with Go's semantics: keys in
 * skopeo's order; nil slices and maps are `null`; maps are `Map`s. `formatInspectJson` prints it.
 */
export interface ImageInspection {
  /** The docker reference's name (`docker.io/library/busybox`); absent when the transport has none. */
  Name?: string;
  /** schema1's tag; only with `compatibility: 'skopeo-1.9'`. */
  Tag?: string;
  /** The digest of the top-level manifest (the list's, for a manifest list). */
  Digest: Digest;
  /**
   * The repository's tags (docker:// only; `[]` elsewhere or when not asked; null when the registry
   * refused to list them, as skopeo prints it).
   */
  RepoTags: string[] | null;
  /** The config's creation time in Go's RFC 3339 form; null when an OCI config has none. */
  Created: string | null;
  DockerVersion: string;
  /** The config's labels; null when it has none. */
  Labels: Map<string, unknown> | null;
  Architecture: string;
  /** The platform variant; absent when empty (and with `compatibility: 'skopeo-1.9'`). */
  Variant?: string;
  Os: string;
  /** Layer digests, base first. */
  Layers: Digest[];
  /** Layer details; absent with `compatibility: 'skopeo-1.9'`. */
  LayersData?: InspectedLayer[];
  /** The config's environment; null when it has none. */
  Env: string[] | null;
}

function annotationsValue(annotations: Record<string, string> | undefined): Map<string, string> | null {
  return annotations === undefined ? null : new Map(Object.entries(annotations));
}

/**
 * skopeo's `inspect` output for one image, as a value for `formatInspectJson`: keys in skopeo's
 * order (Name only when set, Digest, RepoTags, Created, DockerVersion, Labels, Architecture,
 * Variant only when set, Os, Layers, LayersData, Env), with Go's semantics: nil slices and maps are
 * `null`; `Labels` and each layer's `Annotations` are `Map`s (Go maps: printed with sorted keys);
 * `Created` is the config's time re-formatted as Go's RFC3339Nano (`null` for an OCI config without
 * one, Go's zero time for Docker configs without one). Schema1 reads its first v1Compatibility entry.
 */
export function buildInspectOutput(input: InspectInput): ImageInspection {
  const { manifest } = input;
  let fields: ReturnType<typeof inspectConfigFields>;
  let schema1Tag = '';
  if (
    manifest.mediaType === MediaTypes.DockerSchema1 ||
    manifest.mediaType === MediaTypes.DockerSchema1Signed
  ) {
    const decoded = decodeSchema1(manifest.bytes);
    schema1Tag = decoded.tag;
    fields = inspectConfigFields(new TextEncoder().encode(decoded.v1Compatibility[0]!), 'docker');
  } else {
    if (input.config === undefined) {
      throw new GantryError(
        ErrorCodes.InvalidManifest,
        `inspecting a ${manifest.mediaType} image needs its config`,
      );
    }
    fields = inspectConfigFields(
      input.config,
      manifest.mediaType === MediaTypes.OciManifest ? 'oci' : 'docker',
    );
  }
  const legacy = input.compatibility === 'skopeo-1.9';
  // Built key by key: the insertion order is the JSON's field order.
  const output: Partial<ImageInspection> = {};
  if (input.name) output.Name = input.name;
  if (legacy && schema1Tag !== '') output.Tag = schema1Tag;
  output.Digest = input.digest;
  output.RepoTags = input.repoTags === null ? null : [...input.repoTags];
  output.Created = fields.created;
  output.DockerVersion = fields.dockerVersion;
  output.Labels = fields.labels;
  output.Architecture = fields.architecture;
  if (!legacy && fields.variant !== '') output.Variant = fields.variant;
  output.Os = fields.os;
  output.Layers = manifest.layers.map((layer) => layer.digest);
  if (!legacy) {
    output.LayersData = manifest.layers.map((layer) => ({
      MIMEType: layer.mediaType ?? '',
      Digest: layer.digest,
      Size: layer.size,
      Annotations: annotationsValue(layer.annotations),
    }));
  }
  output.Env = fields.env;
  return output as ImageInspection;
}

/**
 * What `skopeo inspect --config` prints (before formatting): the config decoded into image-spec's
 * `Image` struct, as containers/image's `OCIConfig` (Docker configs lose Docker-only fields; schema1
 * images get a config built from their history, with empty diff_ids as containers/image).
 */
export function buildInspectConfigOutput(
  manifest: ImageManifest,
  config?: Uint8Array,
): Record<string, unknown> {
  if (
    manifest.mediaType === MediaTypes.DockerSchema1 ||
    manifest.mediaType === MediaTypes.DockerSchema1Signed
  ) {
    const decoded = decodeSchema1(manifest.bytes);
    const diffIds = decoded.compatibility.filter((entry) => !entry.throwAway).map(() => '' as Digest);
    return ociImageValue(schema1ToSchema2Config(decoded, diffIds));
  }
  if (config === undefined) {
    throw new GantryError(
      ErrorCodes.InvalidManifest,
      `inspecting the config of a ${manifest.mediaType} image needs the config`,
    );
  }
  return ociImageValue(config);
}

/**
 * Formats a value as Go's `json.MarshalIndent(value, "", "    ")`: 4-space indentation, `<`, `>`,
 * `&`, U+2028, U+2029 escaped as `\u003c`…, `Map` keys sorted (Go maps), plain-object keys in
 * insertion order (Go structs), empty arrays/objects as `[]` / `{}`, no trailing newline.
 */
export function formatInspectJson(value: unknown): string {
  return goJsonMarshalIndent(value, '', '    ');
}
