/**
 * `signedIdentity` rules (containers-policy.json(5)): whether the docker reference a signature names
 * is acceptable for the image, decided as containers/image decides it. References are compared in
 * their normalised full form (`docker.io/library/busybox:latest`).
 */
import { type DockerReference, isNameOnly, parseNamed, parseNormalizedNamed } from '../reference/index.js';
import type { PolicyReferenceMatch } from './types.js';

function tryParse(text: string): DockerReference | undefined {
  try {
    return parseNormalizedNamed(text);
  } catch {
    return undefined;
  }
}

/** matchRepoDigestOrExact on parsed references: a tagged image needs the exact reference, a digested one the repository. */
function repoDigestOrExact(intended: DockerReference, signed: DockerReference): boolean {
  if (isNameOnly(signed)) return false;
  if (intended.tag !== undefined) return signed.toString() === intended.toString();
  if (intended.digest !== undefined) return signed.name === intended.name;
  return false;
}

/** remapIdentity: `prefix` matches the whole name or a leading part ending before a `/`. */
function remapped(
  intended: DockerReference,
  prefix: string,
  signedPrefix: string,
): DockerReference | undefined {
  const name = intended.name;
  const matches =
    name.length === prefix.length ? name === prefix : name.startsWith(prefix) && name[prefix.length] === '/';
  if (!matches) return intended;
  try {
    return parseNamed(intended.toString().replace(prefix, signedPrefix));
  } catch {
    return undefined;
  }
}

/**
 * True when a signature claiming `signedReference` satisfies `rule` for an image whose docker
 * reference is `imageReference` (undefined for transports without one, such as `dir:` and `oci:`:
 * then only `exactReference` and `exactRepository` can match, since they do not look at the image).
 */
export function signedIdentityMatches(
  rule: PolicyReferenceMatch,
  imageReference: DockerReference | undefined,
  signedReference: string,
): boolean {
  const signed = tryParse(signedReference);
  if (signed === undefined) return false;
  switch (rule.type) {
    case 'exactReference': {
      const intended = tryParse(rule.dockerReference);
      if (intended === undefined || isNameOnly(intended) || isNameOnly(signed)) return false;
      return signed.toString() === intended.toString();
    }
    case 'exactRepository': {
      const intended = tryParse(rule.dockerRepository);
      return intended !== undefined && signed.name === intended.name;
    }
    default:
      break;
  }
  if (imageReference === undefined) return false;
  switch (rule.type) {
    case 'matchExact':
      if (isNameOnly(imageReference) || isNameOnly(signed)) return false;
      return signed.toString() === imageReference.toString();
    case 'matchRepoDigestOrExact':
      return repoDigestOrExact(imageReference, signed);
    case 'matchRepository':
      return signed.name === imageReference.name;
    case 'remapIdentity': {
      const intended = remapped(imageReference, rule.prefix, rule.signedPrefix);
      return intended !== undefined && repoDigestOrExact(intended, signed);
    }
    default:
      return false;
  }
}
