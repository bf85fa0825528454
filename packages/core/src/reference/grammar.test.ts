import { describe, expect, it } from 'vitest';
import {
  anchoredDomainRegexp,
  anchoredIdentifierRegexp,
  anchoredNameRegexp,
  referenceRegexp,
} from './grammar.js';

// Tables ported from distribution/reference regexp_test.go (TestDomainRegexp, TestFullNameRegexp,
// TestReferenceRegexp, TestIdentifierRegexp).

interface RegexpCase {
  input: string;
  match: boolean;
  subs?: string[];
}

const domainCases: RegexpCase[] = [
  { input: 'test.com', match: true },
  { input: 'test.com:10304', match: true },
  { input: 'test.com:http', match: false },
  { input: 'localhost', match: true },
  { input: 'localhost:8080', match: true },
  { input: 'a', match: true },
  { input: 'a.b', match: true },
  { input: 'ab.cd.com', match: true },
  { input: 'a-b.com', match: true },
  { input: '-ab.com', match: false },
  { input: 'ab-.com', match: false },
  { input: 'ab.c-om', match: true },
  { input: 'ab.-com', match: false },
  { input: 'ab.com-', match: false },
  { input: '0101.com', match: true },
  { input: '001a.com', match: true },
  { input: 'b.gbc.io:443', match: true },
  { input: 'b.gbc.io', match: true },
  { input: 'xn--n3h.com', match: true },
  { input: 'Asdf.com', match: true },
  { input: '192.168.1.1:75050', match: true },
  { input: '192.168.1.1:750050', match: true },
  { input: '[fd00:1:2::3]:75050', match: true },
  { input: '[fd00:1:2::3]75050', match: false },
  { input: '[fd00:1:2::3]::75050', match: false },
  { input: '[fd00:1:2::3%eth0]:75050', match: false },
  { input: '[fd00123123123]:75050', match: true },
  { input: '[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050', match: true },
  { input: '[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:750505', match: true },
  { input: 'fd00:1:2::3:75050', match: false },
];

const fullNameCases: RegexpCase[] = [
  { input: '', match: false },
  { input: 'short', match: true, subs: ['', 'short'] },
  { input: 'simple/name', match: true, subs: ['simple', 'name'] },
  { input: 'library/ubuntu', match: true, subs: ['library', 'ubuntu'] },
  { input: 'docker/stevvooe/app', match: true, subs: ['docker', 'stevvooe/app'] },
  {
    input: 'aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb',
    match: true,
    subs: ['aa', 'aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb'],
  },
  { input: 'aa/aa/bb/bb/bb', match: true, subs: ['aa', 'aa/bb/bb/bb'] },
  { input: 'a/a/a/a', match: true, subs: ['a', 'a/a/a'] },
  { input: 'a/a/a/a/', match: false },
  { input: 'a//a/a', match: false },
  { input: 'a', match: true, subs: ['', 'a'] },
  { input: 'a/aa', match: true, subs: ['a', 'aa'] },
  { input: 'a/aa/a', match: true, subs: ['a', 'aa/a'] },
  { input: 'foo.com', match: true, subs: ['', 'foo.com'] },
  { input: 'foo.com/', match: false },
  { input: 'foo.com:8080/bar', match: true, subs: ['foo.com:8080', 'bar'] },
  { input: 'foo.com:http/bar', match: false },
  { input: 'foo.com/bar', match: true, subs: ['foo.com', 'bar'] },
  { input: 'foo.com/bar/baz', match: true, subs: ['foo.com', 'bar/baz'] },
  { input: 'localhost:8080/bar', match: true, subs: ['localhost:8080', 'bar'] },
  { input: 'sub-dom1.foo.com/bar/baz/quux', match: true, subs: ['sub-dom1.foo.com', 'bar/baz/quux'] },
  { input: 'blog.foo.com/bar/baz', match: true, subs: ['blog.foo.com', 'bar/baz'] },
  { input: 'a^a', match: false },
  { input: 'aa/asdf$$^/aa', match: false },
  { input: 'asdf$$^/aa', match: false },
  { input: 'aa-a/a', match: true, subs: ['aa-a', 'a'] },
  { input: 'a/'.repeat(128) + 'a', match: true, subs: ['a', 'a/'.repeat(127) + 'a'] },
  { input: 'a-/a/a/a', match: false },
  { input: 'foo.com/a-/a/a', match: false },
  { input: '-foo/bar', match: false },
  { input: 'foo/bar-', match: false },
  { input: 'foo-/bar', match: false },
  { input: 'foo/-bar', match: false },
  { input: '_foo/bar', match: false },
  { input: 'foo_bar', match: true, subs: ['', 'foo_bar'] },
  { input: 'foo_bar.com', match: true, subs: ['', 'foo_bar.com'] },
  { input: 'foo_bar.com:8080', match: false },
  { input: 'foo_bar.com:8080/app', match: false },
  { input: 'foo.com/foo_bar', match: true, subs: ['foo.com', 'foo_bar'] },
  { input: '____/____', match: false },
  { input: '_docker/_docker', match: false },
  { input: 'docker_/docker_', match: false },
  { input: 'b.gcr.io/test.example.com/my-app', match: true, subs: ['b.gcr.io', 'test.example.com/my-app'] },
  { input: 'xn--n3h.com/myimage', match: true, subs: ['xn--n3h.com', 'myimage'] },
  { input: 'xn--7o8h.com/myimage', match: true, subs: ['xn--7o8h.com', 'myimage'] },
  { input: 'example.com/xn--7o8h.com/myimage', match: true, subs: ['example.com', 'xn--7o8h.com/myimage'] },
  {
    input: 'example.com/some_separator__underscore/myimage',
    match: true,
    subs: ['example.com', 'some_separator__underscore/myimage'],
  },
  { input: 'example.com/__underscore/myimage', match: false },
  { input: 'example.com/..dots/myimage', match: false },
  { input: 'example.com/.dots/myimage', match: false },
  { input: 'example.com/nodouble..dots/myimage', match: false },
  { input: 'example.com/nodouble..dots/myimage', match: false },
  { input: 'docker./docker', match: false },
  { input: '.docker/docker', match: false },
  { input: 'docker-/docker', match: false },
  { input: '-docker/docker', match: false },
  { input: 'do..cker/docker', match: false },
  { input: 'do__cker:8080/docker', match: false },
  { input: 'do__cker/docker', match: true, subs: ['', 'do__cker/docker'] },
  { input: 'b.gcr.io/test.example.com/my-app', match: true, subs: ['b.gcr.io', 'test.example.com/my-app'] },
  {
    input: 'registry.io/foo/project--id.module--name.ver---sion--name',
    match: true,
    subs: ['registry.io', 'foo/project--id.module--name.ver---sion--name'],
  },
  { input: 'Asdf.com/foo/bar', match: true },
  { input: 'Foo/FarB', match: false },
];

const referenceRegexpCases: RegexpCase[] = [
  { input: 'registry.com:8080/myapp:tag', match: true, subs: ['registry.com:8080/myapp', 'tag', ''] },
  {
    input: 'registry.com:8080/myapp@sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912',
    match: true,
    subs: [
      'registry.com:8080/myapp',
      '',
      'sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912',
    ],
  },
  {
    input:
      'registry.com:8080/myapp:tag2@sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912',
    match: true,
    subs: [
      'registry.com:8080/myapp',
      'tag2',
      'sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912',
    ],
  },
  { input: 'registry.com:8080/myapp@sha256:badbadbadbad', match: false },
  { input: 'registry.com:8080/myapp:invalid~tag', match: false },
  { input: 'bad_hostname.com:8080/myapp:tag', match: false },
  {
    input: 'localhost:8080@sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912',
    match: true,
    subs: ['localhost', '8080', 'sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912'],
  },
  {
    input: 'localhost:8080/name@sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912',
    match: true,
    subs: [
      'localhost:8080/name',
      '',
      'sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912',
    ],
  },
  {
    input: 'localhost:http/name@sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912',
    match: false,
  },
  {
    input: 'localhost@sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912',
    match: true,
    subs: ['localhost', '', 'sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912'],
  },
  { input: 'registry.com:8080/myapp@bad', match: false },
  { input: 'registry.com:8080/myapp@2bad', match: false },
];

const identifierCases: RegexpCase[] = [
  { input: 'da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821', match: true },
  { input: '7EC43B381E5AEFE6E04EFB0B3F0693FF2A4A50652D64AEC573905F2DB5889A1C', match: false },
  { input: 'da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf', match: false },
  { input: 'sha256:da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821', match: false },
  { input: 'da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482', match: false },
];

function checkRegexp(regexp: RegExp, groupCount: number, testCase: RegexpCase): void {
  const match = regexp.exec(testCase.input);
  if (!testCase.match) {
    expect(match).toBeNull();
    return;
  }
  expect(match).not.toBeNull();
  expect(match![0]).toBe(testCase.input);
  expect(match!.length).toBe(groupCount + 1);
  if (testCase.subs) {
    const groups = match!.slice(1).map((group) => group ?? '');
    expect(groups.slice(0, testCase.subs.length)).toEqual(testCase.subs);
  }
}

describe('reference grammar regular expressions (distribution regexp_test.go)', () => {
  it.each(domainCases)('domain $input', (testCase) => checkRegexp(anchoredDomainRegexp, 0, testCase));
  it.each(fullNameCases)('name $input', (testCase) => checkRegexp(anchoredNameRegexp, 2, testCase));
  it.each(referenceRegexpCases)('reference $input', (testCase) => checkRegexp(referenceRegexp, 3, testCase));
  it.each(identifierCases)('identifier $input', (testCase) =>
    checkRegexp(anchoredIdentifierRegexp, 1, { input: testCase.input, match: testCase.match }),
  );

  it('does not backtrack catastrophically on long hostile input', () => {
    const started = Date.now();
    for (const input of [
      `${'a'.repeat(100_000)}!`,
      `${'a-'.repeat(50_000)}!`,
      `${'a.'.repeat(50_000)}/!`,
      `${'a__'.repeat(30_000)}_`,
      `${'a/'.repeat(50_000)}A`,
    ]) {
      expect(referenceRegexp.test(input)).toBe(false);
    }
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
