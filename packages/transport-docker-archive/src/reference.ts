/**
 * `docker-archive:path[:docker-reference | :@source-index]` references, with containers/image's rules
 * (docker/archive/transport.go):
 *
 * - the string is split at its FIRST ':'; the path may not contain ':' and is used as written (not made
 *   absolute);
 * - `:@N` (N a non-negative integer, as Go's `strconv.Atoi` reads it) chooses the N-th `manifest.json` item
 *   when reading, and is refused for writing;
 * - otherwise the part after ':' is a docker reference, normalised (`busybox` → `docker.io/library/busybox`)
 *   and given `:latest` when it has no tag; references with a digest are refused. It chooses the image
 *   tagged so when reading, and is the tag recorded when writing;
 * - no part after the path: reading takes the only image of the archive, writing records no tag.
 * - policy identity '' and no namespaces (`docker-archive:` has no per-image scopes); every non-default
 *   policy scope is invalid.
 */
import type { DockerReference, Transport } from '@gantry/core/transport';
import {
  type DockerArchiveReferenceBackendOf,
  DockerArchiveReferenceBase,
  invalidReferenceError,
  parseRepoTag,
  refusePolicyScope,
  repoTagOf,
} from '@gantry/docker-save-format';

function invalidReference(reference: string, reason: string, cause?: unknown) {
  return invalidReferenceError('docker-archive', reference, reason, cause);
}

/** The parts of a `docker-archive:` reference. */
export interface DockerArchiveReferenceElements {
  path: string;
  /** The tag (normalised, tagged), if any. */
  dockerReference: DockerReference | undefined;
  /** `@N`; -1 when none. */
  sourceIndex: number;
}

/** Parses the part after `docker-archive:`; throws `ERR_GANTRY_INVALID_REFERENCE` naming the problem. */
export function parseReferenceElements(reference: string): DockerArchiveReferenceElements {
  if (reference === '') throw invalidReference(reference, 'expected <path>[:<reference>]');
  const colon = reference.indexOf(':');
  const archivePath = colon === -1 ? reference : reference.slice(0, colon);
  if (colon === -1) return { path: archivePath, dockerReference: undefined, sourceIndex: -1 };
  const tagOrIndex = reference.slice(colon + 1);
  if (tagOrIndex.startsWith('@')) {
    const text = tagOrIndex.slice(1);
    if (!/^[+-]?\d+$/.test(text)) throw invalidReference(reference, `invalid source index ${tagOrIndex}`);
    const index = Number(text);
    if (!Number.isSafeInteger(index))
      throw invalidReference(reference, `invalid source index ${tagOrIndex}: out of range`);
    if (index < 0) throw invalidReference(reference, `invalid source index @${index}: must not be negative`);
    return { path: archivePath, dockerReference: undefined, sourceIndex: index };
  }
  let parsed: DockerReference;
  try {
    parsed = parseRepoTag(tagOrIndex);
  } catch (error) {
    throw invalidReference(reference, (error as Error).message, error);
  }
  return { path: archivePath, dockerReference: parsed, sourceIndex: -1 };
}

/** What `DockerArchiveReference` needs from its transport. */
export type DockerArchiveReferenceBackend = DockerArchiveReferenceBackendOf<DockerArchiveReference>;

/** An image in a `docker save` archive. */
export class DockerArchiveReference extends DockerArchiveReferenceBase<DockerArchiveReference> {
  readonly path: string;
  /** The tag chosen (reading) or recorded (writing), if any. */
  readonly tag: DockerReference | undefined;
  /** The `@N` item index; -1 when none. */
  readonly sourceIndex: number;

  constructor(
    transport: Transport,
    backend: DockerArchiveReferenceBackend,
    elements: DockerArchiveReferenceElements,
  ) {
    const text = `${elements.path}${elements.dockerReference ? `:${elements.dockerReference}` : ''}`;
    if (elements.path.includes(':'))
      throw invalidReference(text, `colon in path "${elements.path}" is not supported`);
    if (elements.dockerReference && elements.sourceIndex !== -1) {
      throw invalidReference(text, 'cannot use both a tag and a source index');
    }
    let tag: DockerReference | undefined;
    try {
      tag = elements.dockerReference ? repoTagOf(elements.dockerReference) : undefined;
    } catch (error) {
      throw invalidReference(text, (error as Error).message, error);
    }
    if (elements.sourceIndex < -1 || !Number.isSafeInteger(elements.sourceIndex)) {
      throw invalidReference(text, `index @${elements.sourceIndex} must not be negative`);
    }
    super(transport, backend);
    this.path = elements.path;
    this.tag = tag;
    this.sourceIndex = elements.sourceIndex;
  }

  /** `path`, `path:docker.io/library/name:tag` or `path:@N`. */
  stringWithinTransport(): string {
    if (this.tag) return `${this.path}:${this.tag}`;
    if (this.sourceIndex !== -1) return `${this.path}:@${this.sourceIndex}`;
    return this.path;
  }

  dockerReference(): DockerReference | undefined {
    return this.tag;
  }
}

/** Policy scopes: only the default '' exists for `docker-archive:`; any other is refused. */
export function validatePolicyConfigurationScope(_scope: string): void {
  refusePolicyScope('docker-archive');
}
