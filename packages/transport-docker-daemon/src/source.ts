/**
 * Reading an image from the Docker Engine: `GET /images/{name}/get` returns a `docker save` tar stream.
 * The stream is spooled to a temporary file (in `context.temporaryDirectory`, else the OS temporary directory)
 * and read with `@gantry/docker-save-format`: `docker save` writes `manifest.json` LAST, so nothing can be
 * served before the whole tar is read, and blobs are then read in the copy's order, which needs the tar
 * indexed (skopeo spools the same way). `close()` removes the spool file.
 */
import { ErrorCodes, GantryError, type TransportContext, throwIfAborted } from '@gantry/core/transport';
import { DockerArchiveImageSource, openDockerArchiveFromStream } from '@gantry/docker-save-format';
import { DockerEngineClient, dockerHostOf, dockerTlsSettingsOf } from './client.js';
import type { DockerDaemonReference } from './reference.js';

/**
 * Opens the image `reference` names in the daemon. `ERR_GANTRY_IMAGE_NOT_FOUND` when the daemon has no such
 * image; `ERR_GANTRY_TRANSIENT` naming the address when the daemon cannot be reached.
 */
export async function openDockerDaemonImageSource(
  reference: DockerDaemonReference,
  context: TransportContext,
): Promise<DockerArchiveImageSource<DockerDaemonReference>> {
  throwIfAborted(context.signal);
  const client = new DockerEngineClient(dockerHostOf(context), dockerTlsSettingsOf(context));
  const name = reference.stringWithinTransport();
  try {
    const response = await client.request('GET', `/images/${encodeURIComponent(name)}/get`, {
      ...(context.signal ? { signal: context.signal } : {}),
    });
    if (response.statusCode !== 200) {
      const message = await DockerEngineClient.errorMessage(response);
      throw new GantryError(
        response.statusCode === 404 ? ErrorCodes.ImageNotFound : ErrorCodes.Transient,
        `docker-daemon:${name}: ${message}`,
      );
    }
    const archive = await openDockerArchiveFromStream(response.body, {
      description: `docker-daemon:${name} (saved by ${client.host})`,
      ...(context.signal ? { signal: context.signal } : {}),
      ...(context.temporaryDirectory ? { temporaryDirectory: context.temporaryDirectory } : {}),
    });
    try {
      const { index } = archive.chooseImage(undefined, -1);
      const image = await archive.loadImage(index);
      return new DockerArchiveImageSource(reference, archive, image, context);
    } catch (error) {
      await archive.close();
      throw error;
    }
  } finally {
    await client.close();
  }
}
