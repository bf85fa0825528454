/** MIME types of manifests, configs and layers that Gantry knows. */
export const MediaTypes = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciEmpty: 'application/vnd.oci.empty.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciLayerNondistributable: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  OciLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OciLayerNondistributableZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  DockerLayerForeignGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  DockerLayerForeign: 'application/vnd.docker.image.rootfs.foreign.diff.tar',
  DockerLayerZstd: 'application/vnd.docker.image.rootfs.diff.tar.zstd',
  DockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  DockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** One of the media types in {@link MediaTypes}. */
export type KnownMediaType = (typeof MediaTypes)[keyof typeof MediaTypes];

/** Manifest MIME types that describe a list of per-platform images. */
export const manifestListMediaTypes: readonly string[] = [MediaTypes.OciIndex, MediaTypes.DockerManifestList];

/** Manifest MIME types that describe a single image. */
export const singleImageManifestMediaTypes: readonly string[] = [
  MediaTypes.OciManifest,
  MediaTypes.DockerManifest,
  MediaTypes.DockerSchema1Signed,
  MediaTypes.DockerSchema1,
];

/** Every manifest MIME type Gantry can read (the Accept list for registries). */
export const allManifestMediaTypes: readonly string[] = [
  MediaTypes.OciManifest,
  MediaTypes.DockerManifest,
  MediaTypes.DockerSchema1Signed,
  MediaTypes.DockerSchema1,
  MediaTypes.DockerManifestList,
  MediaTypes.OciIndex,
];

/** True for OCI indexes and Docker manifest lists. */
export function isManifestListMediaType(mediaType: string): boolean {
  return manifestListMediaTypes.includes(mediaType);
}
