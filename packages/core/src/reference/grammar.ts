/**
 * The docker reference grammar, as regular expressions built the same way as distribution's
 * `reference` package (github.com/distribution/reference, regexp.go):
 *
 * ```
 * reference        := name [ ":" tag ] [ "@" digest ]
 * name             := [domain '/'] remote-name
 * domain           := host [':' port-number]
 * host             := domain-name | IPv4address | \[ IPv6address \]
 * domain-name      := domain-component ['.' domain-component]*
 * domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
 * port-number      := /[0-9]+/
 * path-component   := alpha-numeric [separator alpha-numeric]*
 * remote-name      := path-component ['/' path-component]*
 * alpha-numeric    := /[a-z0-9]+/
 * separator        := /[_.]|__|[-]+/
 * tag              := /[\w][\w.-]{0,127}/
 * digest           := digest-algorithm ":" digest-hex
 * digest-algorithm := algorithm-component [ /[-_+.]/ algorithm-component ]...
 * algorithm-component := a letter, then letters and digits
 * digest-hex       := /[0-9a-fA-F]{32,}/
 * identifier       := /[a-f0-9]{64}/
 * ```
 *
 * JavaScript regular expressions without flags have the same meaning as Go's RE2 syntax for every
 * construct used here (`\w` is `[0-9A-Za-z_]` in both), and both pick the leftmost-first match for
 * capturing groups.
 */

/** Lowercase letters and digits: the atom of path components. */
const alphanumeric = '[a-z0-9]+';
/** One period, one or two underscores, or any number of dashes. */
const separator = '(?:[._]|__|[-]+)';
const domainNameComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const optionalPort = '(?::[0-9]+)?';
/** Valid tags (not anchored). */
export const tagPattern = '[\\w][\\w.-]{0,127}';
/** Digests as the reference grammar accepts them (not anchored); go-digest validates further. */
export const digestPattern = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}';
const identifierPattern = '([a-f0-9]{64})';
/** Bracketed IPv6 addresses, without zone identifiers. */
const ipv6Address = '\\[(?:[a-fA-F0-9:]+)\\]';
const domainName = `${domainNameComponent}(?:\\.${domainNameComponent})*`;
const host = `(?:${domainName}|${ipv6Address})`;
/** A registry host (DNS name, IPv4 or bracketed IPv6) with an optional port (not anchored). */
export const domainAndPortPattern = host + optionalPort;

const pathComponent = `${alphanumeric}(?:${separator}${alphanumeric})*`;
const remoteName = `${pathComponent}(?:/${pathComponent})*`;
/** A repository name with an optional domain, without tag or digest (not anchored). */
export const namePattern = `(?:${domainAndPortPattern}/)?${remoteName}`;

/** The full reference; captures name, tag and digest. */
export const referenceRegexp = new RegExp(`^(${namePattern})(?::(${tagPattern}))?(?:@(${digestPattern}))?$`);
/** A name; captures the domain (may be absent) and the remote name. */
export const anchoredNameRegexp = new RegExp(`^(?:(${domainAndPortPattern})/)?(${remoteName})$`);
export const anchoredTagRegexp = new RegExp(`^${tagPattern}$`);
export const anchoredDigestRegexp = new RegExp(`^${digestPattern}$`);
export const anchoredIdentifierRegexp = new RegExp(`^${identifierPattern}$`);
/** Exactly a domain with optional port. */
export const anchoredDomainRegexp = new RegExp(`^${domainAndPortPattern}$`);
/** Exactly a name (domain optional). */
export const anchoredFullNameRegexp = new RegExp(`^${namePattern}$`);
