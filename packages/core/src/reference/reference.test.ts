import { describe, expect, it } from 'vitest';
import { hasErrorCode } from '../errors.js';
import {
  enclosingNamespaces,
  familiarName,
  familiarString,
  isNameOnly,
  parseDockerRef,
  parseDockerReference,
  parseNamed,
  parseNormalizedNamed,
  parseReferenceGrammar,
  tagNameOnly,
  trimNamed,
  trimToName,
  validateTag,
  withDigest,
  withTag,
} from './index.js';

const sha256Fs = `sha256:${'f'.repeat(64)}`;

function expectInvalid(action: () => unknown, message: string | RegExp): void {
  let thrown: unknown;
  try {
    action();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'expected an error').toBeDefined();
  expect(hasErrorCode(thrown, 'ERR_GANTRY_INVALID_REFERENCE')).toBe(true);
  if (typeof message === 'string') expect((thrown as Error).message).toBe(message);
  else expect((thrown as Error).message).toMatch(message);
}

// Ported from distribution/reference reference_test.go TestReferenceParse. `error` is distribution's
// error text. Deviation: sha512 is a supported algorithm here (distribution's test does not link it).
interface ParseCase {
  input: string;
  error?: string;
  repository?: string;
  domain?: string;
  tag?: string;
  digest?: string;
}
const parseCases: ParseCase[] = [
  { input: 'test_com', repository: 'test_com' },
  { input: 'test.com:tag', repository: 'test.com', tag: 'tag' },
  { input: 'test.com:5000', repository: 'test.com', tag: '5000' },
  { input: 'test.com/repo:tag', domain: 'test.com', repository: 'test.com/repo', tag: 'tag' },
  { input: 'test:5000/repo', domain: 'test:5000', repository: 'test:5000/repo' },
  { input: 'test:5000/repo:tag', domain: 'test:5000', repository: 'test:5000/repo', tag: 'tag' },
  {
    input: `test:5000/repo@${sha256Fs}`,
    domain: 'test:5000',
    repository: 'test:5000/repo',
    digest: sha256Fs,
  },
  {
    input: `test:5000/repo:tag@${sha256Fs}`,
    domain: 'test:5000',
    repository: 'test:5000/repo',
    tag: 'tag',
    digest: sha256Fs,
  },
  { input: '', error: 'repository name must have at least one component' },
  { input: ':justtag', error: 'invalid reference format' },
  { input: `@${sha256Fs}`, error: 'invalid reference format' },
  { input: `repo@sha256:${'f'.repeat(34)}`, error: 'invalid checksum digest length' },
  { input: `validname@invaliddigest:${'f'.repeat(64)}`, error: 'unsupported digest algorithm' },
  {
    input: `validname@sha512:${'f'.repeat(128)}`,
    repository: 'validname',
    digest: `sha512:${'f'.repeat(128)}`,
  },
  { input: 'Uppercase:tag', error: 'repository name must be lowercase' },
  { input: 'test:5000/Uppercase/lowercase:tag', error: 'repository name must be lowercase' },
  { input: 'lowercase:Uppercase', repository: 'lowercase', tag: 'Uppercase' },
  { input: `domain/${'a'.repeat(256)}:tag`, error: 'repository name must not be more than 255 characters' },
  {
    input: `${'a/'.repeat(127)}a:tag-puts-this-over-max`,
    domain: 'a',
    repository: `${'a/'.repeat(127)}a`,
    tag: 'tag-puts-this-over-max',
  },
  { input: 'aa/asdf$$^/aa', error: 'invalid reference format' },
  {
    input: 'sub-dom1.foo.com/bar/baz/quux',
    domain: 'sub-dom1.foo.com',
    repository: 'sub-dom1.foo.com/bar/baz/quux',
  },
  {
    input: 'sub-dom1.foo.com/bar/baz/quux:some-long-tag',
    domain: 'sub-dom1.foo.com',
    repository: 'sub-dom1.foo.com/bar/baz/quux',
    tag: 'some-long-tag',
  },
  {
    input: 'b.gcr.io/test.example.com/my-app:test.example.com',
    domain: 'b.gcr.io',
    repository: 'b.gcr.io/test.example.com/my-app',
    tag: 'test.example.com',
  },
  {
    input: 'xn--n3h.com/myimage:xn--n3h.com',
    domain: 'xn--n3h.com',
    repository: 'xn--n3h.com/myimage',
    tag: 'xn--n3h.com',
  },
  {
    input: `xn--7o8h.com/myimage:xn--7o8h.com@${sha256Fs}`,
    domain: 'xn--7o8h.com',
    repository: 'xn--7o8h.com/myimage',
    tag: 'xn--7o8h.com',
    digest: sha256Fs,
  },
  { input: 'foo_bar.com:8080', repository: 'foo_bar.com', tag: '8080' },
  { input: 'foo/foo_bar.com:8080', domain: 'foo', repository: 'foo/foo_bar.com', tag: '8080' },
  { input: '192.168.1.1', repository: '192.168.1.1' },
  { input: '192.168.1.1:tag', repository: '192.168.1.1', tag: 'tag' },
  { input: '192.168.1.1:5000', repository: '192.168.1.1', tag: '5000' },
  { input: '192.168.1.1/repo', domain: '192.168.1.1', repository: '192.168.1.1/repo' },
  { input: '192.168.1.1:5000/repo', domain: '192.168.1.1:5000', repository: '192.168.1.1:5000/repo' },
  {
    input: '192.168.1.1:5000/repo:5050',
    domain: '192.168.1.1:5000',
    repository: '192.168.1.1:5000/repo',
    tag: '5050',
  },
  { input: '[2001:db8::1]', error: 'invalid reference format' },
  { input: '[2001:db8::1]:5000', error: 'invalid reference format' },
  { input: '[2001:db8::1]:tag', error: 'invalid reference format' },
  { input: '[2001:db8::1]/repo', domain: '[2001:db8::1]', repository: '[2001:db8::1]/repo' },
  {
    input: '[2001:db8:1:2:3:4:5:6]/repo:tag',
    domain: '[2001:db8:1:2:3:4:5:6]',
    repository: '[2001:db8:1:2:3:4:5:6]/repo',
    tag: 'tag',
  },
  { input: '[2001:db8::1]:5000/repo', domain: '[2001:db8::1]:5000', repository: '[2001:db8::1]:5000/repo' },
  {
    input: '[2001:db8::1]:5000/repo:tag',
    domain: '[2001:db8::1]:5000',
    repository: '[2001:db8::1]:5000/repo',
    tag: 'tag',
  },
  {
    input: `[2001:db8::1]:5000/repo@${sha256Fs}`,
    domain: '[2001:db8::1]:5000',
    repository: '[2001:db8::1]:5000/repo',
    digest: sha256Fs,
  },
  {
    input: `[2001:db8::1]:5000/repo:tag@${sha256Fs}`,
    domain: '[2001:db8::1]:5000',
    repository: '[2001:db8::1]:5000/repo',
    tag: 'tag',
    digest: sha256Fs,
  },
  { input: '[2001:db8::]:5000/repo', domain: '[2001:db8::]:5000', repository: '[2001:db8::]:5000/repo' },
  { input: '[::1]:5000/repo', domain: '[::1]:5000', repository: '[::1]:5000/repo' },
  { input: '[fe80::1%eth0]:5000/repo', error: 'invalid reference format' },
  { input: '[fe80::1%@invalidzone]:5000/repo', error: 'invalid reference format' },
  {
    input: `example.com/${'a'.repeat(255)}:tag`,
    domain: 'example.com',
    repository: `example.com/${'a'.repeat(255)}`,
    tag: 'tag',
  },
  // Added: go-digest rejects uppercase hex even though the reference grammar allows it.
  { input: `repo@sha256:${'F'.repeat(64)}`, error: 'invalid checksum digest format' },
];

describe('parseReferenceGrammar (distribution TestReferenceParse)', () => {
  it.each(parseCases)('$input', (testCase) => {
    if (testCase.error !== undefined) {
      expectInvalid(
        () => parseReferenceGrammar(testCase.input),
        `Invalid image name "${testCase.input}": ${testCase.error}`,
      );
      return;
    }
    const reference = parseReferenceGrammar(testCase.input);
    expect(reference.toString()).toBe(testCase.input);
    expect(reference.name).toBe(testCase.repository);
    expect(reference.domain).toBe(testCase.domain ?? '');
    expect(reference.tag).toBe(testCase.tag);
    expect(reference.digest).toBe(testCase.digest);
  });
});

describe('domain and path (distribution TestDomainAndPath)', () => {
  it.each([
    { input: 'test.com/foo', domain: 'test.com', path: 'foo' },
    { input: 'test_com/foo', domain: '', path: 'test_com/foo' },
    { input: 'test:8080/foo', domain: 'test:8080', path: 'foo' },
    { input: 'test.com:8080/foo', domain: 'test.com:8080', path: 'foo' },
    { input: 'test-com:8080/foo', domain: 'test-com:8080', path: 'foo' },
    { input: 'xn--n3h.com:18080/foo', domain: 'xn--n3h.com:18080', path: 'foo' },
  ])('$input', ({ input, domain, path }) => {
    const reference = parseReferenceGrammar(input);
    expect(reference.domain).toBe(domain);
    expect(reference.path).toBe(path);
  });
});

// distribution's TestWithTag / TestWithDigest use 37-digit digests, which WithDigest accepts there;
// here digests must be valid (see withDigest), so full sha256 digests are used.
const sampleDigest = 'sha256:1234567890098765432112345667890098765432112345667890098765432112';

describe('withTag (distribution TestWithTag)', () => {
  it.each([
    { name: 'test.com/foo', tag: 'tag', combined: 'test.com/foo:tag' },
    { name: 'foo', tag: 'tag2', combined: 'foo:tag2' },
    { name: 'test.com:8000/foo', tag: 'tag4', combined: 'test.com:8000/foo:tag4' },
    { name: 'test.com:8000/foo', tag: 'TAG5', combined: 'test.com:8000/foo:TAG5' },
    {
      name: 'test.com:8000/foo',
      digest: sampleDigest,
      tag: 'TAG5',
      combined: `test.com:8000/foo:TAG5@${sampleDigest}`,
    },
  ])('$combined', ({ name, digest, tag, combined }) => {
    let reference = parseReferenceGrammar(name);
    if (digest !== undefined) reference = withDigest(reference, digest);
    expect(withTag(reference, tag).toString()).toBe(combined);
  });
});

describe('withDigest (distribution TestWithDigest)', () => {
  it.each([
    { name: 'test.com/foo', combined: `test.com/foo@${sampleDigest}` },
    { name: 'foo', combined: `foo@${sampleDigest}` },
    { name: 'test.com:8000/foo', combined: `test.com:8000/foo@${sampleDigest}` },
    { name: 'test.com:8000/foo', tag: 'latest', combined: `test.com:8000/foo:latest@${sampleDigest}` },
  ])('$combined', ({ name, tag, combined }) => {
    let reference = parseReferenceGrammar(name);
    if (tag !== undefined) reference = withTag(reference, tag);
    expect(withDigest(reference, sampleDigest).toString()).toBe(combined);
  });

  it('refuses malformed digests', () => {
    const reference = parseNormalizedNamed('busybox');
    expectInvalid(() => withDigest(reference, 'foo'), 'Invalid digest "foo": invalid digest format');
    expectInvalid(
      () => withDigest(reference, 'sha256:1234567890098765432112345667890098765'),
      'Invalid digest "sha256:1234567890098765432112345667890098765": invalid checksum digest length',
    );
    expectInvalid(
      () => withDigest(reference, `md5:${'a'.repeat(32)}`),
      `Invalid digest "md5:${'a'.repeat(32)}": unsupported digest algorithm`,
    );
  });
});

describe('parseNamed (distribution TestParseNamed)', () => {
  it.each([
    { input: 'test.com/foo', domain: 'test.com', path: 'foo' },
    { input: 'test:8080/foo', domain: 'test:8080', path: 'foo' },
    { input: 'test_com/foo', error: true },
    { input: 'test.com', error: true },
    { input: 'foo', error: true },
    { input: 'library/foo', error: true },
    { input: 'docker.io/library/foo', domain: 'docker.io', path: 'library/foo' },
    { input: 'docker.io/foo', error: true },
  ])('$input', ({ input, domain, path, error }) => {
    if (error) {
      expectInvalid(
        () => parseNamed(input),
        `Invalid image name "${input}": repository name must be canonical`,
      );
      return;
    }
    const reference = parseNamed(input);
    expect(reference.domain).toBe(domain);
    expect(reference.path).toBe(path);
  });
});

describe('parseNormalizedNamed (distribution normalize_test.go)', () => {
  const validReferenceNames = [
    'docker/docker',
    'library/debian',
    'debian',
    'localhost/library/debian',
    'localhost/debian',
    'LOCALDOMAIN/library/debian',
    'LOCALDOMAIN/debian',
    'docker.io/docker/docker',
    'docker.io/library/debian',
    'docker.io/debian',
    'index.docker.io/docker/docker',
    'index.docker.io/library/debian',
    'index.docker.io/debian',
    '127.0.0.1:5000/docker/docker',
    '127.0.0.1:5000/library/debian',
    '127.0.0.1:5000/debian',
    '192.168.0.1',
    '192.168.0.1:80',
    '192.168.0.1:8/debian',
    '192.168.0.2:25000/debian',
    'thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev',
    '[fc00::1]:5000/docker',
    '[fc00::1]:5000/docker/docker',
    '[fc00:1:2:3:4:5:6:7]:5000/library/debian',
    'docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a',
    'Docker/docker',
    'DOCKER/docker',
    // TestValidateRemoteName
    'docker-rules/docker',
    'docker---rules/docker',
    'doc/docker',
    'd/docker',
    'jess/t',
    'dock__er/docker',
  ];
  const invalidReferenceNames = [
    'https://github.com/docker/docker',
    'docker/Docker',
    '-docker',
    '-docker/docker',
    '-docker.io/docker/docker',
    'docker///docker',
    'docker.io/docker/Docker',
    'docker.io/docker///docker',
    '[fc00::1]',
    '[fc00::1]:5000',
    'fc00::1:5000/debian',
    '[fe80::1%eth0]:5000/debian',
    '[2001:db8:3:4::192.0.2.33]:5000/debian',
    '1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a',
    // TestValidateRemoteName
    'docker-/docker',
    '-docker-/docker',
    '____/____',
    '_docker/_docker',
    'dock..er/docker',
    'dock_.er/docker',
    'dock-.er/docker',
    'docker/',
    `${'this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_'.repeat(4)}/docker`,
  ];

  it.each(validReferenceNames)('accepts %s', (input) => {
    expect(() => parseNormalizedNamed(input)).not.toThrow();
  });
  it.each(invalidReferenceNames)('refuses %s', (input) => {
    expectInvalid(
      () => parseNormalizedNamed(input),
      new RegExp(`^Invalid image name "${escapeRegExp(input)}": `),
    );
  });

  // TestParseRepositoryInfo
  const repositoryInfo = [
    {
      remoteName: 'fooo',
      familiarName: 'localhost/fooo',
      fullName: 'localhost/fooo',
      ambiguousName: 'localhost/fooo',
      domain: 'localhost',
    },
    {
      remoteName: 'fooo/bar',
      familiarName: 'localhost/fooo/bar',
      fullName: 'localhost/fooo/bar',
      ambiguousName: 'localhost/fooo/bar',
      domain: 'localhost',
    },
    {
      remoteName: 'fooo',
      familiarName: 'LOCALDOMAIN/fooo',
      fullName: 'LOCALDOMAIN/fooo',
      ambiguousName: 'LOCALDOMAIN/fooo',
      domain: 'LOCALDOMAIN',
    },
    {
      remoteName: 'fooo/bar',
      familiarName: 'LOCALDOMAIN/fooo/bar',
      fullName: 'LOCALDOMAIN/fooo/bar',
      ambiguousName: 'LOCALDOMAIN/fooo/bar',
      domain: 'LOCALDOMAIN',
    },
    {
      remoteName: 'fooo/bar',
      familiarName: 'fooo/bar',
      fullName: 'docker.io/fooo/bar',
      ambiguousName: 'index.docker.io/fooo/bar',
      domain: 'docker.io',
    },
    {
      remoteName: 'library/ubuntu',
      familiarName: 'ubuntu',
      fullName: 'docker.io/library/ubuntu',
      ambiguousName: 'library/ubuntu',
      domain: 'docker.io',
    },
    {
      remoteName: 'nonlibrary/ubuntu',
      familiarName: 'nonlibrary/ubuntu',
      fullName: 'docker.io/nonlibrary/ubuntu',
      ambiguousName: '',
      domain: 'docker.io',
    },
    {
      remoteName: 'other/library',
      familiarName: 'other/library',
      fullName: 'docker.io/other/library',
      ambiguousName: '',
      domain: 'docker.io',
    },
    {
      remoteName: 'private/moonbase',
      familiarName: '127.0.0.1:8000/private/moonbase',
      fullName: '127.0.0.1:8000/private/moonbase',
      ambiguousName: '',
      domain: '127.0.0.1:8000',
    },
    {
      remoteName: 'privatebase',
      familiarName: '127.0.0.1:8000/privatebase',
      fullName: '127.0.0.1:8000/privatebase',
      ambiguousName: '',
      domain: '127.0.0.1:8000',
    },
    {
      remoteName: 'private/moonbase',
      familiarName: 'example.com/private/moonbase',
      fullName: 'example.com/private/moonbase',
      ambiguousName: '',
      domain: 'example.com',
    },
    {
      remoteName: 'privatebase',
      familiarName: 'example.com/privatebase',
      fullName: 'example.com/privatebase',
      ambiguousName: '',
      domain: 'example.com',
    },
    {
      remoteName: 'private/moonbase',
      familiarName: 'example.com:8000/private/moonbase',
      fullName: 'example.com:8000/private/moonbase',
      ambiguousName: '',
      domain: 'example.com:8000',
    },
    {
      remoteName: 'privatebasee',
      familiarName: 'example.com:8000/privatebasee',
      fullName: 'example.com:8000/privatebasee',
      ambiguousName: '',
      domain: 'example.com:8000',
    },
    {
      remoteName: 'library/ubuntu-12.04-base',
      familiarName: 'ubuntu-12.04-base',
      fullName: 'docker.io/library/ubuntu-12.04-base',
      ambiguousName: 'index.docker.io/library/ubuntu-12.04-base',
      domain: 'docker.io',
    },
    {
      remoteName: 'library/foo',
      familiarName: 'foo',
      fullName: 'docker.io/library/foo',
      ambiguousName: 'docker.io/foo',
      domain: 'docker.io',
    },
    {
      remoteName: 'library/foo/bar',
      familiarName: 'library/foo/bar',
      fullName: 'docker.io/library/foo/bar',
      ambiguousName: '',
      domain: 'docker.io',
    },
    {
      remoteName: 'store/foo/bar',
      familiarName: 'store/foo/bar',
      fullName: 'docker.io/store/foo/bar',
      ambiguousName: '',
      domain: 'docker.io',
    },
    { remoteName: 'bar', familiarName: 'Foo/bar', fullName: 'Foo/bar', ambiguousName: '', domain: 'Foo' },
    { remoteName: 'bar', familiarName: 'FOO/bar', fullName: 'FOO/bar', ambiguousName: '', domain: 'FOO' },
  ];
  const repositoryInfoRows = repositoryInfo.flatMap((info) =>
    [info.familiarName, info.fullName, info.ambiguousName]
      .filter((input) => input !== '')
      .map((input) => ({ input, ...info })),
  );
  it.each(repositoryInfoRows)('normalises $input', (row) => {
    const reference = parseNormalizedNamed(row.input);
    expect(familiarName(reference)).toBe(row.familiarName);
    expect(reference.toString()).toBe(row.fullName);
    expect(reference.name).toBe(row.fullName);
    expect(reference.domain).toBe(row.domain);
    expect(reference.path).toBe(row.remoteName);
  });

  it('keeps tag and digest together (TestParseReferenceWithTagAndDigest)', () => {
    const shortReference =
      'busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa';
    const reference = parseNormalizedNamed(shortReference);
    expect(reference.toString()).toBe(`docker.io/library/${shortReference}`);
    expect(reference.tag).toBe('latest');
    expect(reference.digest).toBe('sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa');
    expect(familiarString(reference)).toBe(shortReference);
  });

  it('refuses invalid components (TestInvalidReferenceComponents)', () => {
    expectInvalid(() => parseNormalizedNamed('-foo'), 'Invalid image name "-foo": invalid reference format');
    const reference = parseNormalizedNamed('busybox');
    expectInvalid(() => withTag(reference, '-foo'), 'Invalid tag "-foo": invalid tag format');
    expectInvalid(() => withDigest(reference, 'foo'), 'Invalid digest "foo": invalid digest format');
  });

  // TestParseAnyReference, named cases (digest-only references are not DockerReferences here).
  it.each([
    ['redis', 'docker.io/library/redis'],
    ['redis:latest', 'docker.io/library/redis:latest'],
    ['docker.io/library/redis:latest', 'docker.io/library/redis:latest'],
    [
      'redis@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c',
      'docker.io/library/redis@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c',
    ],
    ['dmcgowan/myapp', 'docker.io/dmcgowan/myapp'],
    ['dmcgowan/myapp:latest', 'docker.io/dmcgowan/myapp:latest'],
    ['docker.io/mcgowan/myapp:latest', 'docker.io/mcgowan/myapp:latest'],
    [
      'dmcgowan/myapp@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c',
      'docker.io/dmcgowan/myapp@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c',
    ],
    [
      'dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9',
      'docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9',
    ],
    ['dbcc1', 'docker.io/library/dbcc1'],
  ])('%s is %s', (input, equivalent) => {
    const reference = parseNormalizedNamed(input);
    expect(reference.toString()).toBe(equivalent);
    expect(parseNamed(equivalent)).toEqual(reference);
  });

  // TestNormalizedSplitHostname
  it.each([
    { input: 'test.com/foo', domain: 'test.com', path: 'foo' },
    { input: 'test_com/foo', domain: 'docker.io', path: 'test_com/foo' },
    { input: 'docker/migrator', domain: 'docker.io', path: 'docker/migrator' },
    { input: 'test.com:8080/foo', domain: 'test.com:8080', path: 'foo' },
    { input: 'test-com:8080/foo', domain: 'test-com:8080', path: 'foo' },
    { input: 'foo', domain: 'docker.io', path: 'library/foo' },
    { input: 'xn--n3h.com/foo', domain: 'xn--n3h.com', path: 'foo' },
    { input: 'xn--n3h.com:18080/foo', domain: 'xn--n3h.com:18080', path: 'foo' },
    { input: 'docker.io/foo', domain: 'docker.io', path: 'library/foo' },
    { input: 'docker.io/library/foo', domain: 'docker.io', path: 'library/foo' },
    { input: 'docker.io/library/foo/bar', domain: 'docker.io', path: 'library/foo/bar' },
  ])('splits $input', ({ input, domain, path }) => {
    const reference = parseNormalizedNamed(input);
    expect(reference.domain).toBe(domain);
    expect(reference.path).toBe(path);
  });

  it('names the problem in its messages', () => {
    expectInvalid(
      () => parseNormalizedNamed('Foo'),
      'Invalid image name "Foo": invalid reference format: repository name (library/Foo) must be lowercase',
    );
    expectInvalid(
      () => parseNormalizedNamed('docker.io/docker/Docker:tag'),
      'Invalid image name "docker.io/docker/Docker:tag": invalid reference format: repository name (docker/Docker) must be lowercase',
    );
    const hex = '1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a';
    expectInvalid(
      () => parseNormalizedNamed(hex),
      `Invalid image name "${hex}": invalid repository name (${hex}), cannot specify 64-byte hexadecimal strings`,
    );
    expectInvalid(() => parseNormalizedNamed(''), 'Invalid image name "": invalid reference format');
    expectInvalid(
      () => parseNormalizedNamed(`example.com/${'a'.repeat(256)}`),
      `Invalid image name "example.com/${'a'.repeat(256)}": repository name must not be more than 255 characters`,
    );
    expectInvalid(
      () => parseNormalizedNamed('busybox@sha256:abc'),
      'Invalid image name "busybox@sha256:abc": invalid reference format',
    );
  });
});

describe('parseDockerRef (distribution TestParseDockerRef)', () => {
  const digest = 'sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582';
  it.each([
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:latest', 'docker.io/library/busybox:latest'],
    [`busybox@${digest}`, `docker.io/library/busybox@${digest}`],
    ['library/busybox', 'docker.io/library/busybox:latest'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['docker.io/library/busybox', 'docker.io/library/busybox:latest'],
    ['docker.io/busybox:latest', 'docker.io/library/busybox:latest'],
    ['library/busybox:latest', 'docker.io/library/busybox:latest'],
    ['docker.io/library/busybox:latest', 'docker.io/library/busybox:latest'],
    ['gcr.io/library/busybox', 'gcr.io/library/busybox:latest'],
    [`gcr.io/library/busybox:latest@${digest}`, `gcr.io/library/busybox@${digest}`],
  ])('%s', (input, expected) => {
    const output = parseDockerRef(input).toString();
    expect(output).toBe(expected);
    expect(parseReferenceGrammar(output).toString()).toBe(output);
  });
});

describe('helpers', () => {
  it('parseDockerReference is parseNormalizedNamed', () => {
    expect(parseDockerReference('busybox').toString()).toBe('docker.io/library/busybox');
  });

  it('tagNameOnly and isNameOnly', () => {
    const name = parseNormalizedNamed('busybox');
    expect(isNameOnly(name)).toBe(true);
    const tagged = tagNameOnly(name);
    expect(tagged.toString()).toBe('docker.io/library/busybox:latest');
    expect(isNameOnly(tagged)).toBe(false);
    const digested = parseNormalizedNamed(`busybox@${sampleDigest}`);
    expect(isNameOnly(digested)).toBe(false);
    expect(tagNameOnly(digested)).toBe(digested);
    expect(tagNameOnly(parseNormalizedNamed('busybox:1'))).toEqual(parseNormalizedNamed('busybox:1'));
  });

  it('trimToName drops tag and digest', () => {
    const reference = parseNormalizedNamed(`quay.io/a/b:tag@${sampleDigest}`);
    expect(trimToName(reference).toString()).toBe('quay.io/a/b');
    expect(trimNamed(reference).toString()).toBe('quay.io/a/b');
    expect(trimToName(reference).tag).toBeUndefined();
    expect(trimToName(reference).digest).toBeUndefined();
  });

  it('familiar forms', () => {
    expect(familiarString(parseNormalizedNamed('docker.io/library/busybox:latest'))).toBe('busybox:latest');
    expect(familiarString(parseNormalizedNamed('docker.io/user/app:1'))).toBe('user/app:1');
    expect(familiarString(parseNormalizedNamed('localhost:5000/app'))).toBe('localhost:5000/app');
    expect(familiarName(parseNormalizedNamed('docker.io/library/a/b'))).toBe('library/a/b');
  });

  it('validateTag', () => {
    expect(() => validateTag('v1.0_rc-1')).not.toThrow();
    expect(() => validateTag('a'.repeat(128))).not.toThrow();
    expectInvalid(() => validateTag('a'.repeat(129)), /invalid tag format/);
    expectInvalid(() => validateTag('.hidden'), 'Invalid tag ".hidden": invalid tag format');
    expectInvalid(() => validateTag(''), 'Invalid tag "": invalid tag format');
  });

  it('references are frozen, with canonical toString and JSON', () => {
    const reference = parseNormalizedNamed('busybox:1.36');
    expect(Object.isFrozen(reference)).toBe(true);
    expect(() => {
      (reference as { tag: string | undefined }).tag = 'other';
    }).toThrow(TypeError);
    expect(reference.tag).toBe('1.36');
    expect(String(reference)).toBe('docker.io/library/busybox:1.36');
    expect(`${reference}`).toBe('docker.io/library/busybox:1.36');
    expect(JSON.stringify({ reference })).toBe('{"reference":"docker.io/library/busybox:1.36"}');
    const tagged = withTag(reference, '2');
    expect(reference.tag).toBe('1.36');
    expect(tagged.tag).toBe('2');
  });

  it('accepts references implemented elsewhere', () => {
    const foreign = {
      domain: 'example.com',
      path: 'ns/app',
      name: 'example.com/ns/app',
      tag: undefined,
      digest: undefined,
    };
    const tagged = withTag({ ...foreign, toString: () => foreign.name }, 'x');
    expect(tagged.toString()).toBe('example.com/ns/app:x');
  });
});

function escapeRegExp(value: string): string {
  return value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('enclosingNamespaces', () => {
  it('lists the repository, its namespaces, the host and wildcard domains, most specific first', () => {
    expect(enclosingNamespaces('registry.example.com:5000/team/app')).toEqual([
      'registry.example.com:5000/team/app',
      'registry.example.com:5000/team',
      'registry.example.com:5000',
      '*.example.com',
      '*.com',
    ]);
    expect(enclosingNamespaces('localhost/app')).toEqual(['localhost/app', 'localhost']);
  });
});
