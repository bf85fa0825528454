import os from 'node:os';
import type { Digest } from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
import type { PlatformOverrides } from '../transport/contract.js';
import { MediaTypes } from './media-types.js';
import type { ManifestList, Platform } from './parse.js';

/** Node's `process.arch` -> Go's GOARCH. */
function goArchitecture(arch: string, endianness: 'BE' | 'LE'): string {
  switch (arch) {
    case 'x64':
      return 'amd64';
    case 'ia32':
      return '386';
    case 'ppc64':
      return endianness === 'LE' ? 'ppc64le' : 'ppc64';
    case 'mips':
      return endianness === 'LE' ? 'mipsle' : 'mips';
    case 'mipsel':
      return 'mipsle';
    case 'mips64el':
      return 'mips64le';
    case 'loong64':
      return 'loong64';
    default:
      return arch; // arm, arm64, s390x, riscv64, mips64 have the same names
  }
}

/** Node's `process.platform` -> Go's GOOS. */
function goOperatingSystem(platform: string): string {
  switch (platform) {
    case 'win32':
      return 'windows';
    case 'sunos':
      return 'solaris';
    default:
      return platform; // linux, darwin, freebsd, openbsd, aix
  }
}

/** Inputs of `hostPlatform`, for tests; defaults to the running process. */
export interface HostDescription {
  platform?: string;
  arch?: string;
  endianness?: 'BE' | 'LE';
  /** `process.config.variables.arm_version` for 32-bit arm. */
  armVersion?: string | number;
}

/**
 * The platform of the host, with Go's names: `linux/amd64`, `linux/arm64` variant `v8`, `linux/arm`
 * variant `v<arm_version>` (from Node's build configuration), `386`, `ppc64le`, `s390x`, `riscv64`…
 */
export function hostPlatform(host: HostDescription = {}): Platform {
  const architecture = goArchitecture(host.arch ?? process.arch, host.endianness ?? os.endianness());
  const result: Platform = { os: goOperatingSystem(host.platform ?? process.platform), architecture };
  if (architecture === 'arm64') result.variant = 'v8';
  if (architecture === 'arm') {
    const armVersion =
      host.armVersion ?? (process.config.variables as unknown as Record<string, unknown>).arm_version;
    if (
      armVersion !== undefined &&
      armVersion !== null &&
      `${armVersion}` !== '' &&
      `${armVersion}` !== 'default'
    ) {
      result.variant = `v${armVersion}`;
    }
  }
  return result;
}

/**
 * The platform to choose from lists: each override replaces the host's value. As containers/image,
 * overriding the architecture drops the host's variant unless a variant is also given.
 */
export function wantedPlatform(overrides: PlatformOverrides = {}, host: Platform = hostPlatform()): Platform {
  const architecture = overrides.architecture ? overrides.architecture : host.architecture;
  let variant = overrides.architecture ? '' : (host.variant ?? '');
  if (overrides.variant) variant = overrides.variant;
  const result: Platform = { os: overrides.os ? overrides.os : host.os, architecture };
  if (variant !== '') result.variant = variant;
  return result;
}

/** Compatible variants, most capable first (containers/image platform_matcher.go). */
const variantCompatibility: Record<string, readonly string[]> = {
  arm: ['v8', 'v7', 'v6', 'v5'],
  arm64: ['v8'],
};

/**
 * The platforms acceptable for `wanted`, best first, as containers/image `WantedPlatforms`: with a
 * variant, that variant and the older compatible ones, then no variant (arm v7 -> v7, v6, v5, "");
 * without one, no variant first and then every known variant of the architecture.
 */
export function wantedPlatforms(wanted: Platform): Platform[] {
  const variant = wanted.variant ?? '';
  let variants: string[];
  if (variant !== '') {
    const order = variantCompatibility[wanted.architecture];
    const position = order ? order.indexOf(variant) : -1;
    variants = order && position !== -1 ? order.slice(position) : [variant];
    variants.push('');
  } else {
    variants = ['', ...(variantCompatibility[wanted.architecture] ?? [])];
  }
  return variants.map((item) => {
    const platform: Platform = { os: wanted.os, architecture: wanted.architecture };
    if (item !== '') platform.variant = item;
    return platform;
  });
}

function platformMatches(image: Platform, wanted: Platform): boolean {
  return (
    image.architecture === wanted.architecture &&
    image.os === wanted.os &&
    (image.variant ?? '') === (wanted.variant ?? '')
  );
}

const zstdInstanceAnnotation = 'io.github.containers.compression.zstd';

/**
 * Chooses the instance of a list for the wanted platform (`overrides` over the host's), as
 * containers/image: the instance matching the best-ranked of `wantedPlatforms`, the first such in
 * list order. In an OCI index, an instance without a platform matches as a last resort, and among
 * equally ranked instances one annotated as zstd is preferred. Throws
 * `ERR_GANTRY_NO_MATCHING_PLATFORM` worded as skopeo 1.9.3's containers/image words it: `no image found
 * in manifest list for architecture X, variant "Y", OS Z` ("image index" for OCI indexes).
 */
export function choosePlatformInstance(
  list: ManifestList,
  overrides?: PlatformOverrides,
  host?: Platform,
): Digest {
  const wanted = wantedPlatforms(wantedPlatform(overrides, host));
  const oci = list.mediaType === MediaTypes.OciIndex;
  let best: { rank: number; zstd: boolean; digest: Digest } | undefined;
  for (const instance of list.instances) {
    let rank = Number.MAX_SAFE_INTEGER;
    if (instance.platform || !oci) {
      const platform = instance.platform ?? { os: '', architecture: '' };
      rank = wanted.findIndex((candidate) => platformMatches(platform, candidate));
      if (rank === -1) continue;
    }
    const zstd = oci && instance.annotations?.[zstdInstanceAnnotation] === 'true';
    if (best === undefined || rank < best.rank || (rank === best.rank && zstd && !best.zstd)) {
      best = { rank, zstd, digest: instance.digest };
    }
  }
  if (best) return best.digest;
  const first = wanted[0]!;
  throw new GantryError(
    ErrorCodes.NoMatchingPlatform,
    `no image found in ${oci ? 'image index' : 'manifest list'} for architecture ${first.architecture}, variant ${JSON.stringify(first.variant ?? '')}, OS ${first.os}`,
  );
}
