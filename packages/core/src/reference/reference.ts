import { type Digest, digestAlgorithms } from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
import {
  anchoredDigestRegexp,
  anchoredIdentifierRegexp,
  anchoredNameRegexp,
  anchoredTagRegexp,
  referenceRegexp,
} from './grammar.js';
import type { DockerReference } from './types.js';

/** Longest repository path (the name without its domain) a reference may have. */
export const repositoryNameTotalLengthMax = 255;
/** The registry that familiar names such as `busybox` refer to. */
export const defaultDockerDomain = 'docker.io';
/** The historical name of Docker Hub, normalised to `docker.io`. */
export const legacyDefaultDockerDomain = 'index.docker.io';
/** The tag `tagNameOnly` adds. */
export const defaultDockerTag = 'latest';
const officialRepositoryPrefix = 'library/';
const localhost = 'localhost';

/** distribution's error texts (reference.go and go-digest), used as the reason in messages. */
const reasons = {
  invalidFormat: 'invalid reference format',
  tagInvalidFormat: 'invalid tag format',
  digestInvalidFormat: 'invalid digest format',
  nameContainsUppercase: 'repository name must be lowercase',
  nameEmpty: 'repository name must have at least one component',
  nameTooLong: `repository name must not be more than ${repositoryNameTotalLengthMax} characters`,
  nameNotCanonical: 'repository name must be canonical',
  checksumFormat: 'invalid checksum digest format',
  checksumLength: 'invalid checksum digest length',
  checksumUnsupported: 'unsupported digest algorithm',
} as const;

/** go-digest's anchored `DigestRegexp`, used to tell a malformed digest from an unsupported algorithm. */
const goDigestRegexp = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

function invalidImageName(input: string, reason: string): GantryError {
  return new GantryError(ErrorCodes.InvalidReference, `Invalid image name "${input}": ${reason}`);
}

/**
 * Checks a digest like go-digest's `Digest.Validate` with sha256, sha384 and sha512 available.
 * Returns the reason it is invalid, or undefined.
 */
function digestProblem(value: string): string | undefined {
  const colon = value.indexOf(':');
  if (colon <= 0 || colon + 1 === value.length) return reasons.checksumFormat;
  const algorithm = value.slice(0, colon);
  const encoded = value.slice(colon + 1);
  if (!Object.hasOwn(digestAlgorithms, algorithm)) {
    return goDigestRegexp.test(value) ? reasons.checksumUnsupported : reasons.checksumFormat;
  }
  if (encoded.length !== digestAlgorithms[algorithm as keyof typeof digestAlgorithms])
    return reasons.checksumLength;
  if (!/^[a-f0-9]+$/.test(encoded)) return reasons.checksumFormat;
  return undefined;
}

/**
 * An immutable docker reference. Instances are frozen; `toString()` gives the canonical form
 * `domain/path[:tag][@digest]` (the name is just `path` when the domain is empty, which only the raw
 * grammar parser produces).
 */
class ParsedDockerReference implements DockerReference {
  readonly domain: string;
  readonly path: string;
  readonly name: string;
  readonly tag: string | undefined;
  readonly digest: Digest | undefined;

  constructor(domain: string, path: string, tag: string | undefined, digest: Digest | undefined) {
    this.domain = domain;
    this.path = path;
    this.name = domain === '' ? path : `${domain}/${path}`;
    this.tag = tag === '' ? undefined : tag;
    this.digest = digest === '' ? undefined : digest;
    Object.freeze(this);
  }

  toString(): string {
    return referenceString(this.name, this.tag, this.digest);
  }

  toJSON(): string {
    return this.toString();
  }
}
Object.freeze(ParsedDockerReference.prototype);

function referenceString(name: string, tag: string | undefined, digest: string | undefined): string {
  let result = name;
  if (tag !== undefined && tag !== '') result += `:${tag}`;
  if (digest !== undefined && digest !== '') result += `@${digest}`;
  return result;
}

/** The result of the raw grammar parser, or the reason the input does not parse. */
type GrammarResult = { reference: DockerReference } | { reason: string };

/**
 * distribution's `Parse`: the raw grammar, without normalisation. The domain is '' when the input
 * has none; a first component counts as a domain only when the name regexp says so.
 */
function parseGrammar(input: string): GrammarResult {
  if (input === '') return { reason: reasons.nameEmpty };
  const match = referenceRegexp.exec(input);
  if (!match) {
    const lower = input.toLowerCase();
    if (lower !== input && referenceRegexp.test(lower)) return { reason: reasons.nameContainsUppercase };
    return { reason: reasons.invalidFormat };
  }
  const name = match[1]!;
  const tag = match[2];
  const digest = match[3];
  let domain = '';
  let path = name;
  const nameMatch = anchoredNameRegexp.exec(name);
  if (nameMatch) {
    domain = nameMatch[1] ?? '';
    path = nameMatch[2]!;
  }
  if (path.length > repositoryNameTotalLengthMax) return { reason: reasons.nameTooLong };
  if (digest !== undefined) {
    const problem = digestProblem(digest);
    if (problem !== undefined) return { reason: problem };
  }
  return { reference: new ParsedDockerReference(domain, path, tag, digest as Digest | undefined) };
}

/**
 * Parses a reference with the raw grammar only (distribution's `Parse`): no normalisation, the
 * domain is '' when the input has none (`busybox` gives domain '' and path `busybox`). Most callers
 * want `parseNormalizedNamed`; this exists for code that must see a reference exactly as written.
 * Throws `ERR_GANTRY_INVALID_REFERENCE` with distribution's reason.
 */
export function parseReferenceGrammar(input: string): DockerReference {
  const result = parseGrammar(input);
  if ('reason' in result) throw invalidImageName(input, result.reason);
  return result.reference;
}

/**
 * distribution's `splitDockerDomain`: decides whether the first component of `name` is a registry.
 * It is one when it is `localhost`, contains `.` or `:`, or contains uppercase characters (which
 * path components cannot); `index.docker.io` becomes `docker.io`; single-component names on
 * Docker Hub get the `library/` prefix.
 */
function splitDockerDomain(name: string): { domain: string; remainder: string } {
  const slash = name.indexOf('/');
  if (slash === -1) return { domain: defaultDockerDomain, remainder: officialRepositoryPrefix + name };
  const maybeDomain = name.slice(0, slash);
  const maybeRemainder = name.slice(slash + 1);
  let domain: string;
  let remainder: string;
  if (maybeDomain === localhost) {
    domain = maybeDomain;
    remainder = maybeRemainder;
  } else if (maybeDomain === legacyDefaultDockerDomain) {
    domain = defaultDockerDomain;
    remainder = maybeRemainder;
  } else if (maybeDomain.includes('.') || maybeDomain.includes(':')) {
    domain = maybeDomain;
    remainder = maybeRemainder;
  } else if (maybeDomain.toLowerCase() !== maybeDomain) {
    domain = maybeDomain;
    remainder = maybeRemainder;
  } else {
    domain = defaultDockerDomain;
    remainder = name;
  }
  if (domain === defaultDockerDomain && !remainder.includes('/'))
    remainder = officialRepositoryPrefix + remainder;
  return { domain, remainder };
}

/**
 * Parses a reference as users write it and normalises it (distribution's `ParseNormalizedNamed`):
 * `busybox` → `docker.io/library/busybox`, `index.docker.io/x/y` → `docker.io/x/y`,
 * `docker.io/busybox` → `docker.io/library/busybox`. The first component is a registry only when it
 * is `localhost` or contains `.`, `:` or an uppercase letter. Tag and digest are kept as written.
 *
 * Refused, with `ERR_GANTRY_INVALID_REFERENCE` and message `Invalid image name "<input>": <reason>`:
 * a 64-character hexadecimal string alone (it looks like an image ID), uppercase letters in the
 * repository path, anything outside the grammar, a path longer than 255 characters, a malformed or
 * unsupported digest (sha256, sha384 and sha512 are supported).
 */
export function parseNormalizedNamed(input: string): DockerReference {
  if (anchoredIdentifierRegexp.test(input)) {
    throw invalidImageName(
      input,
      `invalid repository name (${input}), cannot specify 64-byte hexadecimal strings`,
    );
  }
  const { domain, remainder } = splitDockerDomain(input);
  const tagSeparator = remainder.indexOf(':');
  const remote = tagSeparator === -1 ? remainder : remainder.slice(0, tagSeparator);
  if (remote.toLowerCase() !== remote) {
    throw invalidImageName(input, `invalid reference format: repository name (${remote}) must be lowercase`);
  }
  const result = parseGrammar(`${domain}/${remainder}`);
  if ('reason' in result) throw invalidImageName(input, result.reason);
  return result.reference;
}

/** Alias of `parseNormalizedNamed`, the name transports use for their docker references. */
export const parseDockerReference: (input: string) => DockerReference = parseNormalizedNamed;

/**
 * Parses a reference that must already be in canonical form (distribution's `ParseNamed`): the
 * normalised reference must print exactly as the input, so `docker.io/library/busybox` is accepted
 * and `busybox` or `docker.io/busybox` are refused ("repository name must be canonical").
 */
export function parseNamed(input: string): DockerReference {
  const reference = parseNormalizedNamed(input);
  if (reference.toString() !== input) throw invalidImageName(input, reasons.nameNotCanonical);
  return reference;
}

/**
 * distribution's `ParseDockerRef`: `parseNormalizedNamed`, then a reference with both tag and digest
 * keeps only the digest, and a name without either gets `:latest`.
 */
export function parseDockerRef(input: string): DockerReference {
  const reference = parseNormalizedNamed(input);
  if (reference.tag !== undefined && reference.digest !== undefined) {
    return new ParsedDockerReference(reference.domain, reference.path, undefined, reference.digest);
  }
  return tagNameOnly(reference);
}

/** The name and path with Docker Hub's defaults removed (`docker.io/library/x` → `x`). */
function familiarize(reference: DockerReference): { domain: string; path: string } {
  if (reference.domain !== defaultDockerDomain) return { domain: reference.domain, path: reference.path };
  let path = reference.path;
  if (path.startsWith(officialRepositoryPrefix)) {
    const rest = path.slice(officialRepositoryPrefix.length);
    if (!rest.includes('/')) path = rest;
  }
  return { domain: '', path };
}

/**
 * The name as Docker shows it: `docker.io/` and, for single-component official images, `library/`
 * removed (`docker.io/library/busybox` → `busybox`, `docker.io/user/app` → `user/app`).
 */
export function familiarName(reference: DockerReference): string {
  const { domain, path } = familiarize(reference);
  return domain === '' ? path : `${domain}/${path}`;
}

/** `familiarName` with the tag and digest: `busybox:latest`. */
export function familiarString(reference: DockerReference): string {
  return referenceString(familiarName(reference), reference.tag, reference.digest);
}

/** True when the reference has neither a tag nor a digest. */
export function isNameOnly(reference: DockerReference): boolean {
  return reference.tag === undefined && reference.digest === undefined;
}

/** The reference with the tag `latest` added when it has neither a tag nor a digest; otherwise as is. */
export function tagNameOnly(reference: DockerReference): DockerReference {
  return isNameOnly(reference) ? withTag(reference, defaultDockerTag) : reference;
}

/**
 * Checks a tag against `[\w][\w.-]{0,127}`; throws `ERR_GANTRY_INVALID_REFERENCE`
 * (`Invalid tag "<tag>": invalid tag format`) otherwise.
 */
export function validateTag(tag: string): void {
  if (!anchoredTagRegexp.test(tag)) {
    throw new GantryError(ErrorCodes.InvalidReference, `Invalid tag "${tag}": ${reasons.tagInvalidFormat}`);
  }
}

/** A new reference with the same name and digest, and the given tag (validated by `validateTag`). */
export function withTag(reference: DockerReference, tag: string): DockerReference {
  validateTag(tag);
  return new ParsedDockerReference(reference.domain, reference.path, tag, reference.digest);
}

/**
 * A new reference with the same name and tag, and the given digest. The digest must match the
 * reference grammar's digest rule and, stricter than distribution's `WithDigest` (which accepts any
 * 32+ hex digits), be a valid sha256/sha384/sha512 digest, so that `reference.digest` is always a
 * valid `Digest`. Throws `ERR_GANTRY_INVALID_REFERENCE` (`Invalid digest "<digest>": <reason>`).
 */
export function withDigest(reference: DockerReference, digest: Digest | string): DockerReference {
  const problem = anchoredDigestRegexp.test(digest) ? digestProblem(digest) : reasons.digestInvalidFormat;
  if (problem !== undefined) {
    throw new GantryError(ErrorCodes.InvalidReference, `Invalid digest "${digest}": ${problem}`);
  }
  return new ParsedDockerReference(reference.domain, reference.path, reference.tag, digest as Digest);
}

/** The reference without tag and digest (distribution's `TrimNamed`). */
export function trimToName(reference: DockerReference): DockerReference {
  return new ParsedDockerReference(reference.domain, reference.path, undefined, undefined);
}

/** Alias of `trimToName`, under distribution's name. */
export const trimNamed: (reference: DockerReference) => DockerReference = trimToName;

/**
 * The scopes that contain the repository `name` (`host[:port]/path`), most specific first, as
 * containers/image's docker transport lists them for policy.json and registries.d: the repository, each
 * enclosing namespace up to the registry host (with its port), then wildcard domains from the host
 * without its port (`*.example.com`, `*.com`).
 */
export function enclosingNamespaces(name: string): string[] {
  const namespaces: string[] = [];
  let current = name;
  for (;;) {
    namespaces.push(current);
    const lastSlash = current.lastIndexOf('/');
    if (lastSlash === -1) break;
    current = current.slice(0, lastSlash);
  }
  const portColon = current.indexOf(':');
  if (portColon !== -1) current = current.slice(0, portColon);
  for (;;) {
    const firstDot = current.indexOf('.');
    if (firstDot === -1) break;
    current = current.slice(firstDot + 1);
    namespaces.push(`*.${current}`);
  }
  return namespaces;
}
