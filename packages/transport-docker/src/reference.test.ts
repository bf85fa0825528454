import { ErrorCodes, parseNormalizedNamed } from '@gantry/core/transport';
import { describe, expect, it } from 'vitest';
import { parseCredentialsOption, resolveDockerContextOptions } from './context.js';
import dockerTransportDefault, {
  createDockerTransport,
  dockerTransport,
  parseDockerRepositoryName,
} from './index.js';

const digest = 'sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
const transport = createDockerTransport();

describe('docker references', () => {
  it('exports a factory, a named default instance and a default export', () => {
    expect(dockerTransportDefault).toBe(dockerTransport);
    expect(dockerTransport.name).toBe('docker');
    expect(dockerTransport.specificationVersion).toBe('v1');
    expect(createDockerTransport()).not.toBe(dockerTransport);
  });

  it('parses and normalises like containers/image', () => {
    for (const [input, expected, within] of [
      ['//busybox:notlatest', 'docker.io/library/busybox:notlatest', '//busybox:notlatest'],
      [`//busybox@${digest}`, `docker.io/library/busybox@${digest}`, `//busybox@${digest}`],
      ['//busybox', 'docker.io/library/busybox:latest', '//busybox:latest'],
      // A fully qualified name stays fully qualified (`//busybox` would be a short name).
      [
        '//docker.io/library/busybox:latest',
        'docker.io/library/busybox:latest',
        '//docker.io/library/busybox:latest',
      ],
      ['//docker.io/busybox', 'docker.io/library/busybox:latest', '//docker.io/library/busybox:latest'],
      // A short name is kept as written.
      ['//library/busybox:1', 'docker.io/library/busybox:1', '//library/busybox:1'],
      ['//quay.io/ns/app', 'quay.io/ns/app:latest', '//quay.io/ns/app:latest'],
      ['//localhost:5000/a/b:c', 'localhost:5000/a/b:c', '//localhost:5000/a/b:c'],
      ['//user/app', 'docker.io/user/app:latest', '//user/app:latest'],
    ] as const) {
      const reference = transport.parseReference(input);
      expect(String(reference.dockerReference()), input).toBe(expected);
      expect(reference.stringWithinTransport(), input).toBe(within);
      expect(transport.parseReference(reference.stringWithinTransport()).policyConfigurationIdentity()).toBe(
        reference.policyConfigurationIdentity(),
      );
    }
    expect(transport.parseReference('//127.0.0.1:5000/a/b:t')).toMatchObject({
      registry: '127.0.0.1:5000',
      repository: 'a/b',
      tagOrDigest: 't',
    });
    expect(String(transport.parseReference('//a.io/b:t'))).toBe('docker://a.io/b:t');
  });

  it('refuses what skopeo refuses, with its reasons', () => {
    const refuse = (input: string, message: RegExp) => {
      expect(() => transport.parseReference(input), input).toThrow(message);
      try {
        transport.parseReference(input);
      } catch (error) {
        expect((error as { code?: string }).code).toBe(ErrorCodes.InvalidReference);
      }
    };
    refuse('busybox', /docker: image reference busybox does not start with \/\//);
    refuse(
      `//busybox:latest@${digest}`,
      /Docker references with both a tag and digest are currently not supported/,
    );
    refuse('//UPPERCASEISINVALID', /must be lowercase/);
    refuse('//busybox:bad!tag', /invalid reference format/);
    refuse(
      '//example.com/ns/busybox:tag1@@unknown-digest@@',
      /has unknown digest set but it contains either a tag or digest/,
    );
  });

  it('gives policy identities and namespaces as containers/image', () => {
    const cases: Record<string, string[]> = {
      'example.com/ns/repo': ['example.com/ns/repo', 'example.com/ns', 'example.com', '*.com'],
      'example.com/repo': ['example.com/repo', 'example.com', '*.com'],
      'localhost/ns/repo': ['localhost/ns/repo', 'localhost/ns', 'localhost'],
      'localhost/repo': ['localhost/repo', 'localhost'],
      'notlocalhost/repo': ['docker.io/notlocalhost/repo', 'docker.io/notlocalhost', 'docker.io', '*.io'],
      'docker.io/repo': ['docker.io/library/repo', 'docker.io/library', 'docker.io', '*.io'],
      repo: ['docker.io/library/repo', 'docker.io/library', 'docker.io', '*.io'],
      'yet.another.example.com:8443/ns/repo': [
        'yet.another.example.com:8443/ns/repo',
        'yet.another.example.com:8443/ns',
        'yet.another.example.com:8443',
        '*.another.example.com',
        '*.example.com',
        '*.com',
      ],
    };
    for (const [name, namespaces] of Object.entries(cases)) {
      const tagged = transport.parseReference(`//${name}:tag`);
      expect(tagged.policyConfigurationIdentity()).toBe(`${namespaces[0]}:tag`);
      expect(tagged.policyConfigurationNamespaces()).toEqual(namespaces);
      const digested = transport.parseReference(`//${name}@${digest}`);
      expect(digested.policyConfigurationIdentity()).toBe(`${namespaces[0]}@${digest}`);
      expect(digested.policyConfigurationNamespaces()).toEqual(namespaces);
    }
    expect(() => transport.validatePolicyConfigurationScope('anything/at:all')).not.toThrow();
  });

  it('supports @@unknown-digest@@ for tagless pushes only', async () => {
    const reference = transport.parseReference('//example.com/ns/busybox@@unknown-digest@@');
    expect(reference.isUnknownDigest).toBe(true);
    expect(reference.stringWithinTransport()).toBe('//example.com/ns/busybox@@unknown-digest@@');
    expect(reference.policyConfigurationIdentity()).toBe('example.com/ns/busybox');
    expect(reference.policyConfigurationNamespaces()).toEqual(['example.com/ns', 'example.com', '*.com']);
    await expect(reference.newImageSource()).rejects.toMatchObject({ code: ErrorCodes.NotSupported });
    await expect(reference.deleteImage()).rejects.toMatchObject({ code: ErrorCodes.NotSupported });
  });

  it('builds references from docker references, adding :latest', () => {
    expect(transport.newReference(parseNormalizedNamed('quay.io/a/b')).stringWithinTransport()).toBe(
      '//quay.io/a/b:latest',
    );
  });

  it('parses repository names for tag listing', () => {
    expect(String(parseDockerRepositoryName('//busybox'))).toBe('docker.io/library/busybox');
    expect(String(parseDockerRepositoryName('docker://quay.io/a/b'))).toBe('quay.io/a/b');
    expect(() => parseDockerRepositoryName('//busybox:latest')).toThrow(/No tag or digest allowed/);
    expect(() => parseDockerRepositoryName('busybox')).toThrow(/does not start with \/\//);
  });
});

describe('docker context options', () => {
  it('splits --creds at the first colon', () => {
    expect(parseCredentialsOption('user:pa:ss')).toEqual({ username: 'user', password: 'pa:ss' });
    expect(parseCredentialsOption('user')).toEqual({ username: 'user', password: '' });
    expect(() => parseCredentialsOption('')).toThrow(/credentials can’t be empty/);
    expect(() => parseCredentialsOption(':password')).toThrow(/username can’t be empty/);
  });

  it('leaves tlsVerify unset by default (registries.conf decides) and refuses contradictory or malformed options', () => {
    expect(resolveDockerContextOptions({})).toEqual({
      tlsVerify: undefined,
      certDirectory: undefined,
      credentials: undefined,
      registryToken: undefined,
      noCredentials: false,
      authFilePath: undefined,
      userAgentPrefix: undefined,
      precomputeDigests: false,
      uploadChunkSize: undefined,
      idleTimeoutMs: 300_000,
      wholeUploadMaxBytes: 0,
      untaggedRepositories: new Set(),
    });
    const resolve = (docker: unknown) => () => resolveDockerContextOptions({ transportOptions: { docker } });
    expect(resolve({ credentials: 'a:b', noCredentials: true })).toThrow(/mutually exclusive/);
    expect(resolve({ credentials: 'a:b', registryToken: 't' })).toThrow(/mutually exclusive/);
    expect(resolve({ tlsVerify: 'no' })).toThrow(/tlsVerify must be a boolean/);
    expect(resolve('yes')).toThrow(/must be an object/);
    expect(resolve({ wholeUploadMaxBytes: -1 })).toThrow(/wholeUploadMaxBytes must be a whole number/);
    expect(resolve({ wholeUploadMaxBytes: 1.5 })).toThrow(/wholeUploadMaxBytes must be a whole number/);
    expect(resolve({ untaggedRepositories: 'host/repo' })).toThrow(
      /untaggedRepositories must be a Set or an array/,
    );
    expect(
      resolveDockerContextOptions({
        transportOptions: { docker: { credentials: { username: 'u', password: 'p' } } },
      }).credentials,
    ).toEqual({
      username: 'u',
      password: 'p',
    });
  });
});
