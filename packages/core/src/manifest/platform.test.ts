import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.js';
import { MediaTypes } from './media-types.js';
import { type ManifestList, type Platform, parseManifestList } from './parse.js';
import { choosePlatformInstance, hostPlatform, wantedPlatform, wantedPlatforms } from './platform.js';

describe('hostPlatform', () => {
  it.each([
    [
      { platform: 'linux', arch: 'x64' },
      { os: 'linux', architecture: 'amd64' },
    ],
    [
      { platform: 'linux', arch: 'arm64' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
    ],
    [
      { platform: 'linux', arch: 'arm', armVersion: '7' },
      { os: 'linux', architecture: 'arm', variant: 'v7' },
    ],
    [
      { platform: 'linux', arch: 'arm', armVersion: 6 },
      { os: 'linux', architecture: 'arm', variant: 'v6' },
    ],
    [
      { platform: 'linux', arch: 'ia32' },
      { os: 'linux', architecture: '386' },
    ],
    [
      { platform: 'linux', arch: 'ppc64', endianness: 'LE' as const },
      { os: 'linux', architecture: 'ppc64le' },
    ],
    [
      { platform: 'linux', arch: 'ppc64', endianness: 'BE' as const },
      { os: 'linux', architecture: 'ppc64' },
    ],
    [
      { platform: 'linux', arch: 's390x' },
      { os: 'linux', architecture: 's390x' },
    ],
    [
      { platform: 'linux', arch: 'riscv64' },
      { os: 'linux', architecture: 'riscv64' },
    ],
    [
      { platform: 'win32', arch: 'x64' },
      { os: 'windows', architecture: 'amd64' },
    ],
    [
      { platform: 'darwin', arch: 'arm64' },
      { os: 'darwin', architecture: 'arm64', variant: 'v8' },
    ],
  ])('%j -> %j', (host, expected) => {
    expect(hostPlatform(host)).toEqual(expected);
  });

  it('describes the running host with Go names', () => {
    const platform = hostPlatform();
    expect(platform.os).toBe(process.platform === 'win32' ? 'windows' : process.platform);
    if (process.arch === 'x64') expect(platform.architecture).toBe('amd64');
  });
});

describe('wantedPlatform', () => {
  const arm64: Platform = { os: 'linux', architecture: 'arm64', variant: 'v8' };
  it.each([
    [{}, arm64, arm64],
    [{ os: 'windows' }, arm64, { os: 'windows', architecture: 'arm64', variant: 'v8' }],
    [{ architecture: 'amd64' }, arm64, { os: 'linux', architecture: 'amd64' }],
    [{ architecture: 'arm', variant: 'v6' }, arm64, { os: 'linux', architecture: 'arm', variant: 'v6' }],
    [{ variant: 'v9' }, arm64, { os: 'linux', architecture: 'arm64', variant: 'v9' }],
  ])('%j over %j -> %j', (overrides, host, expected) => {
    expect(wantedPlatform(overrides, host)).toEqual(expected);
  });
});

describe('wantedPlatforms', () => {
  const variants = (architecture: string, variant?: string) =>
    wantedPlatforms({ os: 'linux', architecture, ...(variant ? { variant } : {}) }).map(
      (platform) => platform.variant ?? '',
    );
  it.each([
    ['arm64', 'v8', ['v8', '']],
    ['arm', 'v7', ['v7', 'v6', 'v5', '']],
    ['arm', 'v8', ['v8', 'v7', 'v6', 'v5', '']],
    ['arm', 'v5', ['v5', '']],
    ['arm', undefined, ['', 'v8', 'v7', 'v6', 'v5']],
    ['arm64', undefined, ['', 'v8']],
    ['amd64', undefined, ['']],
    ['amd64', 'v3', ['v3', '']],
    ['arm', 'v9', ['v9', '']],
  ])('%s %s -> %j', (architecture, variant, expected) => {
    expect(variants(architecture, variant)).toEqual(expected);
  });
});

describe('choosePlatformInstance', () => {
  const digest = (character: string) => `sha256:${character.repeat(64)}`;
  const list = (
    mediaType: string,
    instances: Array<{ platform?: Platform; annotations?: Record<string, string> }>,
  ): ManifestList => ({
    mediaType,
    bytes: new Uint8Array(),
    digest: digest('0'),
    instances: instances.map((instance, index) => ({
      digest: digest(String(index + 1)),
      size: 1,
      mediaType: MediaTypes.OciManifest,
      ...instance,
    })),
  });
  const linux = (architecture: string, variant?: string): Platform => ({
    os: 'linux',
    architecture,
    ...(variant ? { variant } : {}),
  });
  const amd64Host = linux('amd64');

  it('chooses the first instance of the best-ranked platform', () => {
    const instances = [
      { platform: linux('arm', 'v6') },
      { platform: linux('arm', 'v7') },
      { platform: linux('arm', 'v7') },
      { platform: linux('amd64') },
    ];
    for (const mediaType of [MediaTypes.OciIndex, MediaTypes.DockerManifestList]) {
      expect(
        choosePlatformInstance(list(mediaType, instances), { architecture: 'arm', variant: 'v7' }, amd64Host),
      ).toBe(digest('2'));
      expect(
        choosePlatformInstance(list(mediaType, instances), { architecture: 'arm', variant: 'v8' }, amd64Host),
      ).toBe(digest('2'));
      expect(choosePlatformInstance(list(mediaType, instances), {}, amd64Host)).toBe(digest('4'));
      expect(choosePlatformInstance(list(mediaType, instances), { architecture: 'arm' }, amd64Host)).toBe(
        digest('2'),
      );
    }
  });

  it('arm64/v8 accepts an instance without variant', () => {
    const instances = [{ platform: linux('amd64') }, { platform: linux('arm64') }];
    expect(
      choosePlatformInstance(list(MediaTypes.DockerManifestList, instances), {}, linux('arm64', 'v8')),
    ).toBe(digest('2'));
  });

  it('OCI: platform-less instances are a last resort; zstd-annotated instances preferred among equals', () => {
    const zstd = { 'io.github.containers.compression.zstd': 'true' };
    expect(
      choosePlatformInstance(list(MediaTypes.OciIndex, [{}, { platform: linux('amd64') }]), {}, amd64Host),
    ).toBe(digest('2'));
    expect(
      choosePlatformInstance(list(MediaTypes.OciIndex, [{}, { platform: linux('s390x') }]), {}, amd64Host),
    ).toBe(digest('1'));
    expect(
      choosePlatformInstance(
        list(MediaTypes.OciIndex, [
          { platform: linux('amd64') },
          { platform: linux('amd64'), annotations: zstd },
        ]),
        {},
        amd64Host,
      ),
    ).toBe(digest('2'));
  });

  it('throws ERR_GANTRY_NO_MATCHING_PLATFORM naming the wanted platform', () => {
    expect(() =>
      choosePlatformInstance(
        list(MediaTypes.DockerManifestList, [{ platform: linux('s390x') }, {}]),
        { architecture: 'arm', variant: 'v7' },
        amd64Host,
      ),
    ).toThrow(
      expect.objectContaining({
        code: ErrorCodes.NoMatchingPlatform,
        message: 'no image found in manifest list for architecture arm, variant "v7", OS linux',
      }),
    );
    expect(() =>
      choosePlatformInstance(
        list(MediaTypes.OciIndex, [{ platform: linux('s390x') }]),
        { os: 'windows' },
        amd64Host,
      ),
    ).toThrow('no image found in image index for architecture amd64, variant "", OS windows');
  });

  it('works on parsed fixtures', () => {
    const fixture = parseManifestList(
      readFileSync(path.join(import.meta.dirname, 'fixtures', 'schema2list-variants.json')),
    );
    const chosen = choosePlatformInstance(fixture, { architecture: 'arm', variant: 'v7' }, amd64Host);
    const instance = fixture.instances.find((item) => item.digest === chosen)!;
    expect(instance.platform).toMatchObject({ architecture: 'arm' });
  });
});
