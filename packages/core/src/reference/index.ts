/**
 * Docker references (`docker.io/library/busybox:latest`) with the grammar and normalisation rules of
 * distribution's `reference` package. See `reference.ts` for the rules of each function.
 */

export {
  defaultDockerDomain,
  defaultDockerTag,
  enclosingNamespaces,
  familiarName,
  familiarString,
  isNameOnly,
  legacyDefaultDockerDomain,
  parseDockerRef,
  parseDockerReference,
  parseNamed,
  parseNormalizedNamed,
  parseReferenceGrammar,
  repositoryNameTotalLengthMax,
  tagNameOnly,
  trimNamed,
  trimToName,
  validateTag,
  withDigest,
  withTag,
} from './reference.js';
export type { DockerReference } from './types.js';
