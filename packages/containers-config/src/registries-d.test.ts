import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Digest } from '@gantry/core/transport';
import { parseNormalizedNamed } from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  loadRegistriesDirectory,
  lookasideBaseUrl,
  lookasideSignatureUrl,
  lookasideTopLevel,
  parseRegistriesDirectoryFile,
  parseRegistriesDirectoryYaml,
  registriesDirectoryLocation,
  signatureStorageScopesFor,
  usesSigstoreAttachments,
} from './registries-d.js';

// The example of containers-registries.d(5), "Developing and Signing Containers, Staging Signatures".
const manPageExample = `
docker:
    registry.example.com:
        lookaside: https://registry-lookaside.example.com
    registry.example.com/mydepartment:
        lookaside: https://lookaside.mydepartment.example.com
        lookaside-staging: file:///mnt/mydepartment/lookaside-staging
    registry.example.com/mydepartment/myproject:mybranch:
        lookaside: http://localhost:4242/lookaside
        lookaside-staging: file:///home/useraccount/webroot/lookaside
`;

const digest = `sha256:${'ab'.repeat(32)}` as Digest;

describe('parseRegistriesDirectoryYaml', () => {
  it('reads nested block mappings, quoted scalars, comments and nulls', () => {
    const value = parseRegistriesDirectoryYaml(
      [
        '--- # document start',
        '# a comment',
        'default-docker:',
        "  lookaside: 'file:///it''s #not a comment'",
        '  lookaside-staging: "file:///a\\tb\\u00e9" # comment',
        '  sigstore: ~',
        'docker: {}',
        'other: plain text with # hash',
        '',
      ].join('\n'),
      'x.yaml',
    );
    expect(value.kind).toBe('mapping');
    if (value.kind !== 'mapping') return;
    const defaults = value.entries.get('default-docker');
    expect(defaults?.kind).toBe('mapping');
    if (defaults?.kind !== 'mapping') return;
    expect(defaults.entries.get('lookaside')).toMatchObject({
      kind: 'scalar',
      value: "file:///it's #not a comment",
    });
    expect(defaults.entries.get('lookaside-staging')).toMatchObject({
      kind: 'scalar',
      value: 'file:///a\tbé',
    });
    expect(defaults.entries.get('sigstore')).toMatchObject({ kind: 'null' });
    expect(value.entries.get('docker')).toMatchObject({ kind: 'mapping' });
    expect(value.entries.get('other')).toMatchObject({ kind: 'scalar', value: 'plain text with' });
  });

  it('accepts a consistently indented top-level mapping', () => {
    const value = parseRegistriesDirectoryYaml('  a: b\n  c:\n    d: e\n', 'x.yaml');
    expect(value).toMatchObject({ kind: 'mapping' });
    expect(() => parseRegistriesDirectoryYaml('  a: b\nc: d\n', 'x.yaml')).toThrow(
      /line 2: Unexpected scalar at node end/,
    );
  });

  it('reads an empty or comment-only file as null', () => {
    expect(parseRegistriesDirectoryYaml('', 'x.yaml').kind).toBe('null');
    expect(parseRegistriesDirectoryYaml('# nothing\n\n', 'x.yaml').kind).toBe('null');
  });

  it('reads flow collections, anchors and block scalars as YAML does', () => {
    const value = parseRegistriesDirectoryYaml(
      'base: &base {lookaside: "file:///a"}\ndocker:\n  x: *base\n  y: |\n    text\n',
      'x.yaml',
    );
    if (value.kind !== 'mapping') throw new Error('expected a mapping');
    const docker = value.entries.get('docker');
    if (docker?.kind !== 'mapping') throw new Error('expected a mapping');
    const x = docker.entries.get('x');
    if (x?.kind !== 'mapping') throw new Error('expected a mapping');
    expect(x.entries.get('lookaside')).toMatchObject({ kind: 'scalar', value: 'file:///a', quoted: true });
    expect(docker.entries.get('y')).toMatchObject({ kind: 'scalar', value: 'text\n', line: 4 });
  });

  it.each([
    ['a: b\na: c\n', /line 2: Map keys must be unique/],
    ['a:\n\tb: c\n', /line 2: .*[Tt]ab/],
    ['a: b\n  c: d\n', /line 1: Nested mappings are not allowed/],
    ["a: 'open\n", /line 2: Missing closing 'quote/],
    ['a: "x" y\n', /line 1: /],
    ['a: b\n---\nc: d\n', /line 2: several YAML documents/],
    ['a: b: c\n', /line 1: Nested mappings are not allowed in compact mappings/],
  ])('rejects %j with its line', (text, message) => {
    expect(() => parseRegistriesDirectoryYaml(text, '/etc/x.yaml')).toThrow(message);
    expect(() => parseRegistriesDirectoryYaml(text, '/etc/x.yaml')).toThrow(
      /^parsing \/etc\/x\.yaml: line \d+: /,
    );
  });

  it('refuses values of the wrong kind in a file', () => {
    expect(() => parseRegistriesDirectoryFile('docker:\n  - a\n', '/etc/x.yaml')).toThrow(
      /line 2: "docker" must be a mapping of scopes/,
    );
    expect(() => parseRegistriesDirectoryFile('just text\n', '/etc/x.yaml')).toThrow(
      /line 1: the document must be a mapping/,
    );
    expect(() => parseRegistriesDirectoryFile('docker:\n  example.com: [a]\n', '/etc/x.yaml')).toThrow(
      /line 2: docker."example.com" must be a mapping, got a sequence/,
    );
  });
});

describe('parseRegistriesDirectoryFile', () => {
  it('reads the man page example', () => {
    const file = parseRegistriesDirectoryFile(manPageExample, 'example.yaml');
    expect(file.defaultDocker).toBeUndefined();
    expect([...file.docker.keys()]).toEqual([
      'registry.example.com',
      'registry.example.com/mydepartment',
      'registry.example.com/mydepartment/myproject:mybranch',
    ]);
    expect(file.docker.get('registry.example.com/mydepartment')).toEqual({
      lookaside: 'https://lookaside.mydepartment.example.com',
      lookasideStaging: 'file:///mnt/mydepartment/lookaside-staging',
    });
  });

  it("reads containers-common's default.yaml (a default-docker section with only comments)", () => {
    const file = parseRegistriesDirectoryFile(
      [
        '# This is a default registries.d configuration file.  You may',
        '# add to this file or create additional files in registries.d/.',
        '#',
        '# lookaside: for reading/writing simple signing signatures',
        'default-docker:',
        '#  lookaside: https://…',
        '#  lookaside-staging: file:///…',
        '',
      ].join('\n'),
      'default.yaml',
    );
    expect(file).toEqual({ docker: new Map() });
  });

  it('reads every section key, booleans as yaml.v3 decodes them into a bool, and ignores unknown keys', () => {
    const file = parseRegistriesDirectoryFile(
      [
        'default-docker:',
        '  sigstore: file:///old',
        '  sigstore-staging: file:///old-staging',
        '  use-sigstore-attachments: yes',
        'docker:',
        '  a.example:',
        '    use-sigstore-attachments: False',
        '    unknown-key: whatever',
        '  b.example:',
        '  "c.example:5000/ns":',
        '    use-sigstore-attachments: true',
        'unknown-top-level:',
        '  nested: value',
      ].join('\n'),
      'f.yaml',
    );
    expect(file.defaultDocker).toEqual({
      sigstore: 'file:///old',
      sigstoreStaging: 'file:///old-staging',
      useSigstoreAttachments: true,
    });
    expect(file.docker.get('a.example')).toEqual({ useSigstoreAttachments: false });
    expect(file.docker.get('b.example')).toEqual({});
    expect(file.docker.get('c.example:5000/ns')).toEqual({ useSigstoreAttachments: true });
  });

  it('rejects wrongly typed values', () => {
    expect(() =>
      parseRegistriesDirectoryFile('docker:\n  a:\n    use-sigstore-attachments: maybe\n', 'f.yaml'),
    ).toThrow(/line 3: docker\."a"\.use-sigstore-attachments must be a boolean, got "maybe"/);
    expect(() => parseRegistriesDirectoryFile('docker: text\n', 'f.yaml')).toThrow(
      /"docker" must be a mapping/,
    );
    expect(() => parseRegistriesDirectoryFile('default-docker: text\n', 'f.yaml')).toThrow(
      /default-docker must be a mapping/,
    );
    expect(() =>
      parseRegistriesDirectoryFile('docker:\n  a:\n    lookaside:\n      x: y\n', 'f.yaml'),
    ).toThrow(/docker\."a"\.lookaside must be a string/);
  });
});

describe('scopes and lookups', () => {
  const configuration = {
    docker: new Map([
      ['registry.example.com', { lookaside: 'https://registry-lookaside.example.com' }],
      [
        'registry.example.com/mydepartment',
        {
          lookaside: 'https://lookaside.mydepartment.example.com',
          lookasideStaging: 'file:///mnt/mydepartment/lookaside-staging',
        },
      ],
      [
        'registry.example.com/mydepartment/myproject:mybranch',
        {
          lookaside: 'http://localhost:4242/lookaside',
          lookasideStaging: 'file:///home/user/webroot/lookaside',
        },
      ],
      ['registry.example.com/attachments-only', { useSigstoreAttachments: true }],
      ['*.wild.example', { lookaside: 'file:///wild' }],
      ['localhost:5000/ns', { useSigstoreAttachments: false }],
      ['localhost:5000', { useSigstoreAttachments: true }],
    ]),
    defaultDocker: { lookaside: 'file:///default' },
  };

  it('lists scopes as the docker transport does, most specific first', () => {
    expect(signatureStorageScopesFor(parseNormalizedNamed('registry.example.com:5000/a/b:tag'))).toEqual([
      'registry.example.com:5000/a/b:tag',
      'registry.example.com:5000/a/b',
      'registry.example.com:5000/a',
      'registry.example.com:5000',
      '*.example.com',
      '*.com',
    ]);
    expect(signatureStorageScopesFor(parseNormalizedNamed(`busybox@${digest}`))).toEqual([
      `docker.io/library/busybox@${digest}`,
      'docker.io/library/busybox',
      'docker.io/library',
      'docker.io',
      '*.io',
    ]);
  });

  it('uses the most specific scope, staging for writes, and falls back to less specific ones', () => {
    const branch = parseNormalizedNamed('registry.example.com/mydepartment/myproject:mybranch');
    expect(lookasideTopLevel(configuration, branch, false)).toBe('http://localhost:4242/lookaside');
    expect(lookasideTopLevel(configuration, branch, true)).toBe('file:///home/user/webroot/lookaside');
    const other = parseNormalizedNamed('registry.example.com/mydepartment/myproject:other');
    expect(lookasideTopLevel(configuration, other, false)).toBe('https://lookaside.mydepartment.example.com');
    expect(lookasideTopLevel(configuration, other, true)).toBe('file:///mnt/mydepartment/lookaside-staging');
    const elsewhere = parseNormalizedNamed('registry.example.com/other/x:1');
    expect(lookasideTopLevel(configuration, elsewhere, true)).toBe('https://registry-lookaside.example.com');
    // A matching scope without a lookaside passes the lookup on (containers/image's code).
    const attachmentsOnly = parseNormalizedNamed('registry.example.com/attachments-only:1');
    expect(lookasideTopLevel(configuration, attachmentsOnly, false)).toBe(
      'https://registry-lookaside.example.com',
    );
    expect(lookasideTopLevel(configuration, parseNormalizedNamed('a.wild.example/x:1'), false)).toBe(
      'file:///wild',
    );
    expect(lookasideTopLevel(configuration, parseNormalizedNamed('quay.io/x:1'), false)).toBe(
      'file:///default',
    );
  });

  it('uses the built-in default lookaside when nothing matches', () => {
    const empty = { docker: new Map() };
    const reference = parseNormalizedNamed('quay.io/x:1');
    expect(lookasideTopLevel(empty, reference, true, { isRoot: true })).toBe(
      'file:///var/lib/containers/sigstore',
    );
    expect(lookasideTopLevel(empty, reference, false, { isRoot: false, homeDirectory: '/home/u' })).toBe(
      'file:///home/u/.local/share/containers/sigstore',
    );
  });

  it('builds lookaside URLs as docs/signature-protocols.md says', () => {
    const reference = parseNormalizedNamed('registry.example.com/mydepartment/app:1');
    const base = lookasideBaseUrl(configuration, reference, false);
    expect(base.href).toBe('https://lookaside.mydepartment.example.com/mydepartment/app');
    expect(lookasideSignatureUrl(base, digest, 0).href).toBe(
      `https://lookaside.mydepartment.example.com/mydepartment/app@sha256=${'ab'.repeat(32)}/signature-1`,
    );
    expect(lookasideSignatureUrl(lookasideBaseUrl(configuration, reference, true), digest, 2).href).toBe(
      `file:///mnt/mydepartment/lookaside-staging/mydepartment/app@sha256=${'ab'.repeat(32)}/signature-3`,
    );
    expect(() => lookasideSignatureUrl(base, 'sha256:../x' as Digest, 0)).toThrow(/invalid manifest digest/);
    const relative = { docker: new Map([['quay.io', { lookaside: '/no/scheme' }]]) };
    expect(() => lookasideBaseUrl(relative, parseNormalizedNamed('quay.io/x:1'), false)).toThrow(
      /Unsupported signature storage URL "\/no\/scheme"/,
    );
  });

  it('decides sigstore attachments by the most specific scope that sets it', () => {
    expect(
      usesSigstoreAttachments(configuration, parseNormalizedNamed('registry.example.com/attachments-only:1')),
    ).toBe(true);
    expect(usesSigstoreAttachments(configuration, parseNormalizedNamed('localhost:5000/ns/x:1'))).toBe(false);
    expect(usesSigstoreAttachments(configuration, parseNormalizedNamed('localhost:5000/other:1'))).toBe(true);
    expect(usesSigstoreAttachments(configuration, parseNormalizedNamed('quay.io/x:1'))).toBe(false);
  });
});

describe('loadRegistriesDirectory', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('prefers the explicit directory, then the user one when it exists, then the system one', async () => {
    const home = path.join(root, 'home');
    const system = path.join(root, 'system');
    expect(await registriesDirectoryLocation({ homeDirectory: home, systemDirectory: system })).toBe(system);
    await mkdir(path.join(home, '.config', 'containers', 'registries.d'), { recursive: true });
    expect(await registriesDirectoryLocation({ homeDirectory: home, systemDirectory: system })).toBe(
      path.join(home, '.config', 'containers', 'registries.d'),
    );
    expect(
      await registriesDirectoryLocation({
        registriesDirectoryPath: '/x',
        homeDirectory: home,
        systemDirectory: system,
      }),
    ).toBe('/x');
  });

  it('merges *.yaml files, ignores other names, and reads a missing directory as empty', async () => {
    await writeFile(path.join(root, 'a.yaml'), 'default-docker:\n  lookaside: file:///a\n');
    await writeFile(path.join(root, 'b.yaml'), manPageExample);
    await writeFile(path.join(root, 'c.yml'), 'this is: [not read]\n');
    const configuration = await loadRegistriesDirectory({ registriesDirectoryPath: root });
    expect(configuration.files).toEqual([path.join(root, 'a.yaml'), path.join(root, 'b.yaml')]);
    expect(configuration.defaultDocker).toEqual({ lookaside: 'file:///a' });
    expect(configuration.docker.size).toBe(3);
    const missing = await loadRegistriesDirectory({ registriesDirectoryPath: path.join(root, 'missing') });
    expect(missing.files).toEqual([]);
    expect(missing.docker.size).toBe(0);
  });

  it('refuses a default-docker or a scope defined in two files', async () => {
    await writeFile(path.join(root, 'a.yaml'), 'default-docker:\n  lookaside: file:///a\n');
    await writeFile(path.join(root, 'b.yaml'), 'default-docker:\n  lookaside: file:///b\n');
    await expect(loadRegistriesDirectory({ registriesDirectoryPath: root })).rejects.toThrow(
      /"default-docker" defined both in ".*a\.yaml" and ".*b\.yaml"/,
    );
    await writeFile(path.join(root, 'b.yaml'), 'docker:\n  quay.io:\n    lookaside: file:///b\n');
    await writeFile(path.join(root, 'c.yaml'), 'docker:\n  quay.io: {}\n');
    await expect(loadRegistriesDirectory({ registriesDirectoryPath: root })).rejects.toThrow(
      /"docker" namespace "quay.io" defined both in ".*b\.yaml" and ".*c\.yaml"/,
    );
  });

  it('names the file of a YAML error', async () => {
    await writeFile(path.join(root, 'bad.yaml'), 'docker:\n  - x\n');
    await expect(loadRegistriesDirectory({ registriesDirectoryPath: root })).rejects.toThrow(
      new RegExp(`parsing ${path.join(root, 'bad.yaml').replaceAll('.', '\\.')}: line 2`),
    );
  });
});
