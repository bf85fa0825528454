/**
 * Reading an image from a `docker save` archive, as containers/image's docker/internal/tarfile source does,
 * without extracting anything: the tar headers are indexed once and blobs are streamed from their offsets.
 *
 * - The manifest is generated: Docker schema2, config `application/vnd.docker.container.image.v1+json`,
 *   layers `application/vnd.docker.image.rootfs.diff.tar.gzip` (as containers/image, although uncompressed) whose digests are the config's DiffIDs and whose
 *   sizes are the uncompressed sizes (Go `json.Marshal` form, byte-identical to skopeo's).
 * - `getBlob(config digest)` returns the config; `getBlob(DiffID)` the layer, decompressed when stored
 *   compressed. Layer bytes are not hashed on open (that would read every layer to inspect an image): the
 *   copy pipeline verifies them against the DiffID while streaming.
 * - No signatures; no manifest lists.
 */
import { type TransportContext, throwIfAborted } from '@gantry/core/transport';
import { DockerArchiveImageSource, openDockerArchive } from '@gantry/docker-save-format';
import type { DockerArchiveReference } from './reference.js';

/**
 * Opens the image `reference` names: the item tagged `reference.tag`, the item `@sourceIndex`, or the only
 * item. `ERR_GANTRY_IMAGE_NOT_FOUND` when the archive does not exist or has no such image;
 * `ERR_GANTRY_INVALID_LAYOUT` for malformed or hostile archives.
 */
export async function openDockerArchiveImageSource(
  reference: DockerArchiveReference,
  context: TransportContext,
): Promise<DockerArchiveImageSource<DockerArchiveReference>> {
  throwIfAborted(context.signal);
  const archive = await openDockerArchive(reference.path, {
    ...(context.signal ? { signal: context.signal } : {}),
    ...(context.temporaryDirectory ? { temporaryDirectory: context.temporaryDirectory } : {}),
  });
  try {
    const { index } = archive.chooseImage(reference.tag, reference.sourceIndex);
    const image = await archive.loadImage(index);
    return new DockerArchiveImageSource(reference, archive, image, context);
  } catch (error) {
    await archive.close();
    throw error;
  }
}
