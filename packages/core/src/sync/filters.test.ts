import { describe, expect, it } from 'vitest';
import {
  compileTagPattern,
  newestTags,
  parseTagVersion,
  parseVersionConstraint,
  tagsMatchingConstraint,
} from './filters.js';

describe('tag patterns (RE2 style)', () => {
  it('are unanchored like Go MatchString, with (?i) and (?P<name>) translated', () => {
    expect(compileTagPattern('rc').test('1.0-rc1')).toBe(true);
    expect(compileTagPattern('^rc').test('1.0-rc1')).toBe(false);
    expect(compileTagPattern('(?i)^LATEST$').test('latest')).toBe(true);
    expect(compileTagPattern('^(?P<major>\\d+)\\.').test('12.1')).toBe(true);
  });
  it('name the expression when it does not compile', () => {
    expect(() => compileTagPattern('a(')).toThrow(/invalid regular expression "a\(": /);
  });
});

describe('versions and constraints (Masterminds rules)', () => {
  it('reads tags leniently as Masterminds does', () => {
    expect(parseTagVersion('v3')?.version).toBe('3.0.0');
    expect(parseTagVersion('3.12')?.version).toBe('3.12.0');
    expect(parseTagVersion('1.2.3-rc.1+build5')?.version).toBe('1.2.3-rc.1');
    for (const tag of ['latest', '1.2.3.4', 'sha-1234abc', '']) expect(parseTagVersion(tag)).toBeUndefined();
  });
  const tags = ['1.0.0', '1.1.0', '1.2.0-rc1', '2.0.0', 'v3', 'latest', '3.12', '3.13.1'];
  const cases: Array<[string, string[]]> = [
    ['>= 1.1.0', ['1.1.0', '2.0.0', 'v3', '3.12', '3.13.1']],
    ['>= 3.12', ['3.12', '3.13.1']],
    ['~1.1', ['1.1.0']],
    ['^1.0', ['1.0.0', '1.1.0']],
    ['1.x', ['1.0.0', '1.1.0']],
    ['>= 1.0, < 2', ['1.0.0', '1.1.0']],
    ['>= 1.0 < 2', ['1.0.0', '1.1.0']],
    ['< 1.1 || >= 3.13', ['1.0.0', '3.13.1']],
    ['!= 1.1.0, < 2', ['1.0.0']],
    ['=< 1.0.0', ['1.0.0']],
    ['1.0 - 1.1', ['1.0.0', '1.1.0']],
    ['>= 1.2.0-rc0, < 1.3', ['1.2.0-rc1']],
    ['*', ['1.0.0', '1.1.0', '2.0.0', 'v3', '3.12', '3.13.1']],
  ];
  for (const [constraint, expected] of cases) {
    it(`"${constraint}" selects ${expected.join(', ')}`, () => {
      expect(tagsMatchingConstraint(tags, parseVersionConstraint(constraint))).toEqual(expected);
    });
  }
  it('refuses constraints that are not, naming them', () => {
    for (const text of ['', '>= banana', '1.0 ||', '!= x']) {
      expect(() => parseVersionConstraint(text)).toThrow(/invalid semantic version constraint/);
    }
  });
});

describe('newestTags', () => {
  it('keeps the highest versions in their listed order and leaves out tags that are not versions', () => {
    expect(newestTags(['latest', '1.10.0', '1.9.0', 'v2', '1.2.0-rc1', '0.1'], 2)).toEqual(['1.10.0', 'v2']);
    expect(newestTags(['1.0', 'stable'], 5)).toEqual(['1.0']);
  });
  it('ranks a pre-release below its release', () => {
    expect(newestTags(['1.2.0-rc1', '1.2.0', '1.1.0'], 1)).toEqual(['1.2.0']);
  });
});
