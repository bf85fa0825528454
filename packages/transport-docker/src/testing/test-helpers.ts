import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  buildFixtureImage,
  type FixtureImage,
  type FixtureImageSpec,
  type FixtureListSpec,
  writeFixtureToDestination,
} from '@gantry/core/testing';
import type { ImageDestination, TransportContext } from '@gantry/core/transport';
import type { DockerContextOptions } from '../context.js';
import type { DockerTransport } from '../transport.js';
import type { TestRegistry } from './registry-server.js';

/** A transport context with `transportOptions.docker`. */
export function dockerContext(options: DockerContextOptions): TransportContext {
  return { transportOptions: { docker: options } };
}

/** The sha256 digest and size of a stream's bytes, read to the end. */
export async function digestStream(stream: Readable): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).byteLength;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

/** Builds a fixture image in `directory`. */
export function buildImage(
  spec: FixtureImageSpec | FixtureListSpec,
  directory: string,
): Promise<FixtureImage> {
  return buildFixtureImage(spec, { directory });
}

/** Writes a fixture to `docker://<registry>/<repositoryAndTag>` with the given transport and context. */
export async function pushFixture(
  transport: DockerTransport,
  registry: TestRegistry,
  repositoryAndTag: string,
  image: FixtureImage,
  context: TransportContext,
): Promise<ImageDestination> {
  const destination = await transport
    .parseReference(`//${registry.host}/${repositoryAndTag}`)
    .newImageDestination(context);
  await writeFixtureToDestination(image, destination);
  return destination;
}
