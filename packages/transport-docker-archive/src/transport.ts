/**
 * The `docker-archive:` transport: images in `docker save` archives, `docker-archive:path[:reference|:@N]`.
 */
import {
  type ImageReference,
  type Transport,
  type TransportContext,
  type TransportSpecificationVersion,
  throwIfAborted,
  transportSpecificationVersion,
} from '@gantry/core/transport';
import { openDockerArchive } from '@gantry/docker-save-format';
import { openDockerArchiveImageDestination } from './destination.js';
import {
  DockerArchiveReference,
  type DockerArchiveReferenceBackend,
  parseReferenceElements,
  validatePolicyConfigurationScope,
} from './reference.js';
import { openDockerArchiveImageSource } from './source.js';

/** The `docker-archive:` transport, with `parseReference` returning `DockerArchiveReference`s. */
export interface DockerArchiveTransport extends Transport {
  readonly specificationVersion: TransportSpecificationVersion;
  readonly name: 'docker-archive';
  parseReference(reference: string): DockerArchiveReference;
  /** The tags of every image in the archive the reference names (see `listTags`): for `gantry list-tags`. */
  listTags(reference: ImageReference, context?: TransportContext): Promise<string[]>;
}

/**
 * Creates a `docker-archive:` transport. Nothing is registered anywhere: add the result to a
 * `TransportRegistry`. Sources read the archive through a tar header index (nothing is extracted);
 * destinations stream a new archive (see `openDockerArchiveImageDestination`); `deleteImage` is not supported.
 */
export function createDockerArchiveTransport(): DockerArchiveTransport {
  const backend: DockerArchiveReferenceBackend = {
    newImageSource: (reference, context) => openDockerArchiveImageSource(reference, context),
    newImageDestination: (reference, context) => openDockerArchiveImageDestination(reference, context),
  };
  const transport: DockerArchiveTransport = {
    specificationVersion: transportSpecificationVersion,
    name: 'docker-archive',
    parseReference(reference: string): DockerArchiveReference {
      return new DockerArchiveReference(transport, backend, parseReferenceElements(reference));
    },
    validatePolicyConfigurationScope(scope: string): void {
      validatePolicyConfigurationScope(scope);
    },
    listTags(reference: ImageReference, context?: TransportContext): Promise<string[]> {
      if (!isDockerArchiveReference(reference) || reference.transport !== transport) {
        throw new TypeError('listTags needs a reference parsed by this docker-archive: transport');
      }
      return listTags(reference.path, context);
    },
  };
  return transport;
}

/** True when `reference` is a `docker-archive:` reference. */
export function isDockerArchiveReference(reference: ImageReference): reference is DockerArchiveReference {
  return reference instanceof DockerArchiveReference;
}

/** The default `docker-archive:` transport instance. */
export const dockerArchiveTransport: DockerArchiveTransport = createDockerArchiveTransport();

/**
 * The tags `skopeo list-tags docker-archive:FILE` prints (its `Tags`; its `Repository` is ''): for each
 * `manifest.json` item, its `RepoTags` as written, or `@N` for an item without tags.
 * `archivePath` is the path part of the reference (a tag or `@N` after it is ignored, as skopeo does).
 */
export async function listTags(archivePath: string, context: TransportContext = {}): Promise<string[]> {
  throwIfAborted(context.signal);
  const archive = await openDockerArchive(archivePath, {
    ...(context.signal ? { signal: context.signal } : {}),
    ...(context.temporaryDirectory ? { temporaryDirectory: context.temporaryDirectory } : {}),
  });
  try {
    const tags: string[] = [];
    archive.manifest.forEach((_item, index) => {
      const references = archive.repoTagsOf(index); // validates the tags, as skopeo does
      if (references.length === 0) {
        tags.push(`@${index}`);
        return;
      }
      for (const reference of references) {
        // skopeo resolves each reference again: a tag present in an earlier item lists that item's spelling.
        const chosen = archive.chooseImage(reference);
        tags.push(archive.manifest[chosen.index]!.RepoTags[chosen.tagIndex]!);
      }
    });
    return tags;
  } finally {
    await archive.close();
  }
}
