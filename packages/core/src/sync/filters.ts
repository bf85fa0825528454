/**
 * Tag filters of `sync`: skopeo's `images-by-tag-regex` and `images-by-semver`, and Gantry's tag
 * exclusions and "newest N tags" limit.
 *
 * Regular expressions are skopeo's (Go's `regexp`, RE2): unanchored (`MatchString`), so `^…$` anchors
 * when wanted. They run as JavaScript regular expressions (with the `u` flag) after the RE2 spellings
 * JavaScript lacks are translated: a leading `(?flags)` group (i, m, s) and named groups `(?P<name>…)`.
 * Anything else JavaScript cannot compile is an error naming the expression.
 *
 * Versions follow Masterminds/semver (which skopeo uses): a tag is a version when it reads
 * `[v]MAJOR[.MINOR[.PATCH]][-prerelease][+build]` (missing parts are 0: `3.12` is 3.12.0). Constraints are
 * Masterminds's: comparisons (`=`, `!=`, `>`, `<`, `>=`, `<=`, `=<`), `~`, `^`, wildcards (`1.2.x`, `*`),
 * hyphen ranges (`1.2 - 1.4.5`), AND with a comma or a space, OR with `||`; they are evaluated by the
 * `semver` package (npm's), whose rules match Masterminds's for these forms, including that a
 * pre-release version matches only a constraint that names a pre-release of the same version.
 *
 * "Newest": the highest versions by semantic-version precedence (semver.org §11). Tags that are not
 * versions never count as newest: with a limit they are left out. The image config's `created` date is
 * not used: reading it costs a manifest and a config download per tag, and reproducible builds set it
 * to a fixed date (`SOURCE_DATE_EPOCH`), so it often says nothing.
 */
import { createRequire } from 'node:module';
import type { Range, SemVer } from 'semver';

/**
 * The `semver` package, loaded on first use: every `gantry` command loads core, few filter versions.
 * Required through a module-level `createRequire` so the CLI's one-file bundle carries it inside
 * (scripts/bundle-package.mjs inlines such requires of literal names).
 */
const require = createRequire(import.meta.url);
let semverModule: typeof import('semver') | undefined;
function semverPackage(): typeof import('semver') {
  semverModule ??= require('semver') as typeof import('semver');
  return semverModule;
}

import { ErrorCodes, GantryError } from '../errors.js';

/** A compiled tag pattern, with the expression as written (for messages). */
export interface TagPattern {
  source: string;
  test(tag: string): boolean;
}

/** Compiles an RE2-style (Go) regular expression for tags; throws `ERR_GANTRY_USAGE` naming the problem. */
export function compileTagPattern(expression: string): TagPattern {
  let body = expression;
  let flags = 'u';
  const leading = /^\(\?([imsU]+)\)/.exec(body);
  if (leading) {
    if (leading[1]!.includes('U')) {
      throw new GantryError(
        ErrorCodes.Usage,
        `invalid regular expression ${JSON.stringify(expression)}: the U (ungreedy) flag is not supported`,
      );
    }
    flags += [...new Set(leading[1]!)].join('');
    body = body.slice(leading[0].length);
  }
  body = body.replace(/\(\?P</g, '(?<');
  let regex: RegExp;
  try {
    regex = new RegExp(body, flags);
  } catch (error) {
    throw new GantryError(
      ErrorCodes.Usage,
      `invalid regular expression ${JSON.stringify(expression)}: ${(error as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /, '')}`,
    );
  }
  return { source: expression, test: (tag) => regex.test(tag) };
}

const versionPattern =
  /^v?(0|[1-9]\d*|\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$/;

/** The version a tag names (Masterminds's lenient reading), or undefined when it is not one. */
export function parseTagVersion(tag: string): SemVer | undefined {
  const match = versionPattern.exec(tag);
  if (!match) return undefined;
  const number = (text: string | undefined) => String(Number(text ?? '0'));
  let text = `${number(match[1])}.${number(match[2])}.${number(match[3])}`;
  if (match[4] !== undefined) text += `-${match[4]}`;
  if (match[5] !== undefined) text += `+${match[5]}`;
  return semverPackage().parse(text) ?? undefined;
}

/** A parsed version constraint. */
export interface VersionConstraint {
  source: string;
  /** True when the version satisfies the constraint. */
  test(version: SemVer): boolean;
}

/** Parses a Masterminds-style constraint; throws `ERR_GANTRY_USAGE` naming the problem. */
export function parseVersionConstraint(text: string): VersionConstraint {
  const invalid = (reason: string) =>
    new GantryError(
      ErrorCodes.Usage,
      `invalid semantic version constraint ${JSON.stringify(text)}: ${reason}`,
    );
  if (text.trim() === '') throw invalid('it is empty');
  const alternatives = text.split('||').map((alternative) => {
    // `!=` is Masterminds's, not npm's: taken out and checked apart.
    const excluded: SemVer[] = [];
    let rest = alternative.replace(/!=\s*([^\s,]+)/g, (_, version: string) => {
      const parsed = parseTagVersion(version);
      if (!parsed) throw invalid(`"${version}" is not a version`);
      excluded.push(parsed);
      return ' ';
    });
    rest = rest.replace(/=</g, '<=').replace(/,/g, ' ').trim();
    if (rest === '' && excluded.length === 0) throw invalid('an alternative of "||" is empty');
    // npm's grammar wants full versions after comparison operators; Masterminds accepts `>= 3.12`.
    const range = rest === '' ? '*' : rest;
    const semver = semverPackage();
    const valid = semver.validRange(range);
    if (valid === null) throw invalid(`"${alternative.trim()}" is not a constraint`);
    const compiled: Range = new semver.Range(range);
    return (version: SemVer) =>
      compiled.test(version) && excluded.every((other) => semver.neq(version, other));
  });
  return { source: text, test: (version) => alternatives.some((test) => test(version)) };
}

/** The tags a version constraint selects, in their order (tags that are not versions never match). */
export function tagsMatchingConstraint(tags: readonly string[], constraint: VersionConstraint): string[] {
  return tags.filter((tag) => {
    const version = parseTagVersion(tag);
    return version !== undefined && constraint.test(version);
  });
}

/**
 * At most `count` tags: the highest versions (ties, e.g. `1.2` and `1.2.0`, by tag text), in the
 * order they had. Tags that are not versions are left out.
 */
export function newestTags(tags: readonly string[], count: number): string[] {
  const versions = tags
    .map((tag) => ({ tag, version: parseTagVersion(tag) }))
    .filter((entry): entry is { tag: string; version: SemVer } => entry.version !== undefined)
    .sort(
      (left, right) =>
        semverPackage().rcompare(left.version, right.version) || (left.tag < right.tag ? -1 : 1),
    );
  const kept = new Set(versions.slice(0, count).map((entry) => entry.tag));
  return tags.filter((tag) => kept.has(tag));
}
