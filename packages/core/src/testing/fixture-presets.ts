import type { FixtureEntry, FixtureImageSpec, FixtureLayerSpec, FixtureListSpec } from './fixture-types.js';

const baseLayer: FixtureLayerSpec = {
  entries: [
    { type: 'directory', path: 'etc' },
    { type: 'file', path: 'etc/os-release', content: 'NAME="Gantry fixture"\nID=gantry\n' },
    { type: 'directory', path: 'bin' },
    { type: 'file', path: 'bin/hello', content: '#!/bin/sh\necho hello\n', mode: 0o755 },
  ],
};

function manySmallFiles(count: number): FixtureEntry[] {
  const entries: FixtureEntry[] = [{ type: 'directory', path: 'many' }];
  for (let index = 0; index < count; index++) {
    if (index % 100 === 0) entries.push({ type: 'directory', path: `many/d${index / 100}` });
    entries.push({
      type: 'file',
      path: `many/d${Math.floor(index / 100)}/f${index}.txt`,
      content: `file ${index}\n`,
    });
  }
  return entries;
}

const longDirectory = `deep/${'directory-with-a-long-name-'.repeat(3)}end`;
const longFileName = `${'very-long-file-name-'.repeat(6)}end.txt`;

function platformImage(architecture: string, variant?: string): FixtureImageSpec {
  const platformName = variant ? `${architecture}/${variant}` : architecture;
  return {
    platform: variant ? { os: 'linux', architecture, variant } : { os: 'linux', architecture },
    layers: [
      baseLayer,
      { entries: [{ type: 'file', path: 'etc/platform', content: `linux/${platformName}\n` }] },
    ],
    config: { Env: ['PATH=/usr/bin:/bin', `FIXTURE_PLATFORM=linux/${platformName}`], Cmd: ['/bin/hello'] },
  };
}

/**
 * Named fixture specs (`fixturePresets`) covering every kind of image the interop tests use. All are small (well under
 * a few MB); build large images for benchmarks from explicit specs with `randomSize` files.
 *
 * - `ociMinimal`: one gzip layer, OCI.
 * - `dockerSchema2`: two gzip layers, Docker schema2.
 * - `uncompressedLayers`: OCI with uncompressed (plain tar) layers, one of them random data.
 * - `dockerUncompressed`: Docker schema2 with an uncompressed layer.
 * - `everyEntryType`: files (text, binary, random, setuid mode, non-root owner), directories, symlinks,
 *   hardlinks, a whiteout and an opaque directory, in one image.
 * - `longAndNonAsciiNames`: non-ASCII names and paths/link targets over 100 bytes (PAX headers).
 * - `manySmallFiles`: 2000 small files in one layer.
 * - `whiteoutLayers`: three layers where later ones delete files (`.wh.`) and make directories opaque.
 * - `multiArchOci`: an OCI index of linux/amd64, linux/arm64/v8 and linux/arm/v7 images.
 * - `multiArchDocker`: a Docker manifest list of linux/amd64 and linux/arm64/v8 images.
 * - `specialCharacterConfig`: labels, env and annotations with `<&>` and unicode (JSON escaping tests).
 */
const presets = {
  ociMinimal: {
    format: 'oci',
    layers: [baseLayer],
  },
  dockerSchema2: {
    format: 'docker',
    layers: [
      baseLayer,
      { entries: [{ type: 'file', path: 'etc/motd', content: 'docker schema2 fixture\n' }] },
    ],
    config: { Env: ['PATH=/usr/bin:/bin'], Entrypoint: ['/bin/hello'], WorkingDir: '/', User: '0:0' },
  },
  uncompressedLayers: {
    format: 'oci',
    layers: [
      { ...baseLayer, compression: 'none' },
      {
        compression: 'none',
        entries: [
          { type: 'file', path: 'data/random.bin', randomSize: 64 * 1024 + 17, seed: 'uncompressed' },
        ],
      },
    ],
  },
  dockerUncompressed: {
    format: 'docker',
    layers: [{ ...baseLayer, compression: 'none' }],
  },
  everyEntryType: {
    format: 'oci',
    layers: [
      {
        entries: [
          { type: 'directory', path: 'etc' },
          { type: 'file', path: 'etc/hosts', content: '127.0.0.1 localhost\n' },
          { type: 'file', path: 'etc/empty', content: '' },
          { type: 'file', path: 'etc/binary', content: new Uint8Array([0, 1, 2, 255, 254, 0, 10]) },
          { type: 'directory', path: 'usr', mode: 0o750 },
          { type: 'directory', path: 'usr/bin' },
          { type: 'file', path: 'usr/bin/tool', content: '#!/bin/sh\n', mode: 0o4755 },
          { type: 'file', path: 'usr/bin/owned', content: 'owned by 1000\n', uid: 1000, gid: 1000 },
          { type: 'file', path: 'usr/random.bin', randomSize: 100_000, seed: 'every-entry-type' },
          { type: 'symlink', path: 'usr/bin/tool-link', target: 'tool' },
          { type: 'symlink', path: 'absolute-link', target: '/etc/hosts' },
          { type: 'symlink', path: 'dangling-link', target: '/does/not/exist' },
          { type: 'hardlink', path: 'etc/hosts-hardlink', target: 'etc/hosts' },
          { type: 'directory', path: 'var' },
          { type: 'directory', path: 'var/cache' },
          { type: 'file', path: 'var/cache/old', content: 'old\n' },
          { type: 'file', path: 'var/doomed', content: 'to be deleted\n' },
        ],
      },
      {
        entries: [
          { type: 'whiteout', path: 'var/doomed' },
          { type: 'directory', path: 'var/cache' },
          { type: 'opaque', path: 'var/cache' },
          { type: 'file', path: 'var/cache/new', content: 'new\n' },
        ],
      },
    ],
  },
  longAndNonAsciiNames: {
    format: 'oci',
    layers: [
      {
        entries: [
          { type: 'directory', path: 'données' },
          { type: 'file', path: 'données/café.txt', content: 'crème brûlée\n' },
          { type: 'file', path: 'données/日本語のファイル.txt', content: 'こんにちは\n' },
          { type: 'file', path: 'données/emoji-🚢.txt', content: '🚢\n' },
          { type: 'directory', path: 'deep' },
          { type: 'directory', path: longDirectory },
          { type: 'file', path: `${longDirectory}/${longFileName}`, content: 'long path\n' },
          { type: 'file', path: longFileName, content: 'long name without directory\n' },
          { type: 'symlink', path: 'long-link', target: `/${longDirectory}/${longFileName}` },
          { type: 'hardlink', path: 'long-hardlink', target: `${longDirectory}/${longFileName}` },
        ],
      },
    ],
  },
  manySmallFiles: {
    format: 'oci',
    layers: [{ entries: manySmallFiles(2000) }],
  },
  whiteoutLayers: {
    format: 'oci',
    layers: [
      {
        entries: [
          { type: 'directory', path: 'app' },
          { type: 'file', path: 'app/keep.txt', content: 'keep\n' },
          { type: 'file', path: 'app/remove.txt', content: 'remove\n' },
          { type: 'directory', path: 'app/plugins' },
          { type: 'file', path: 'app/plugins/a.so', content: 'plugin a\n' },
          { type: 'file', path: 'app/plugins/b.so', content: 'plugin b\n' },
        ],
      },
      {
        entries: [
          { type: 'whiteout', path: 'app/remove.txt' },
          { type: 'directory', path: 'app/plugins' },
          { type: 'opaque', path: 'app/plugins' },
          { type: 'file', path: 'app/plugins/c.so', content: 'plugin c\n' },
        ],
      },
      {
        entries: [
          { type: 'whiteout', path: 'app/plugins' },
          { type: 'file', path: 'app/added.txt', content: 'added in layer 3\n' },
        ],
      },
    ],
  },
  multiArchOci: {
    format: 'oci',
    images: [platformImage('amd64'), platformImage('arm64', 'v8'), platformImage('arm', 'v7')],
    annotations: { 'org.opencontainers.image.description': 'gantry multi-arch fixture' },
  },
  multiArchDocker: {
    format: 'docker',
    images: [platformImage('amd64'), platformImage('arm64', 'v8')],
  },
  specialCharacterConfig: {
    format: 'oci',
    layers: [baseLayer],
    config: {
      Env: ['PATH=/usr/bin:/bin', 'GREETING=<hello & goodbye>', 'UNICODE=héllo wörld ☃ 🚢'],
      Labels: {
        'org.example.html': '<b>bold</b> & "quoted"',
        'org.example.unicode': 'naïve café ☃ 日本',
        'org.example.plain': 'plain',
      },
      Cmd: ['/bin/hello', '--message', '<&>'],
      WorkingDir: '/données',
      User: 'nobody',
    },
    annotations: { 'org.example.annotation': '<&> ünïcödé' },
  },
} satisfies Record<string, FixtureImageSpec | FixtureListSpec>;

/** The name of a preset in `fixturePresets`. */
export type FixturePresetName = keyof typeof presets;

/** The preset catalogue described on `presets` above: specs for `buildFixtureImage`, by name. */
export const fixturePresets: Readonly<Record<FixturePresetName, FixtureImageSpec | FixtureListSpec>> =
  presets;

/** Names of the presets that are single images. */
export const singleImagePresetNames = (Object.keys(presets) as FixturePresetName[]).filter(
  (name) => !('images' in presets[name]),
);

/** Names of the presets that are lists (OCI index / Docker manifest list). */
export const listPresetNames = (Object.keys(presets) as FixturePresetName[]).filter(
  (name) => 'images' in presets[name],
);
