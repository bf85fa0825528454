/**
 * gantry against Debian's skopeo 1.9.3, side by side:
 * - flag acceptance, per command: every flag `skopeo CMD --help` lists (its own and the global ones),
 *   plus the hidden ones skopeo's source defines (`--screds`/`--dcreds` and the deprecated
 *   `--tls-verify` of copy and sync, the root's `--tls-verify`, `--registries-conf`), plus flags skopeo
 *   refuses: each is given to both programs, and both must accept it or both refuse it with
 *   `unknown flag`;
 * - the error messages of common failures (wrong argument counts, bad values, unknown transports,
 *   missing images, a list without the wanted platform): the same `msg="…"` once skopeo's name, the
 *   temporary paths and the program name are set aside.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFixtureImage, writeFixtureToOciLayout } from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireTool, runGantry } from './test-support/run.js';

let root: string;
let home: string;
let environment: Record<string, string>;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-skopeo-compat-'));
  home = join(root, 'home');
  await mkdir(home, { recursive: true });
  // Commands such as `logout --all` act on the user's files: both programs get an empty home.
  environment = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    XDG_RUNTIME_DIR: join(root, 'run'),
    XDG_CONFIG_HOME: join(home, '.config'),
    REGISTRY_AUTH_FILE: join(root, 'auth.json'),
    GANTRY_BLOB_INFO_CACHE: 'off',
  };
  await mkdir(environment.XDG_RUNTIME_DIR!, { recursive: true });
});

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

interface Run {
  code: number;
  stderr: string;
}

function skopeo(args: string[]): Run {
  const result = spawnSync(requireTool('skopeo'), args, {
    cwd: root,
    env: environment,
    encoding: 'utf8',
    input: '',
    timeout: 60_000,
  });
  return { code: result.status ?? -1, stderr: result.stderr };
}

async function gantry(args: string[]): Promise<Run> {
  const { Readable } = await import('node:stream');
  const result = await runGantry(args, { cwd: root, env: environment, stdin: Readable.from([]) });
  return { code: result.code, stderr: result.stderr };
}

/** The fatal message of a run (`msg="…"`), program names and temporary paths set aside. */
function fatalMessage(run: Run): string {
  const match = /level=fatal msg="((?:[^"\\]|\\.)*)"/.exec(run.stderr);
  return (match?.[1] ?? run.stderr)
    .replaceAll(root, '<root>')
    .replace(/\bskopeo\b/g, '<program>')
    .replace(/\bgantry\b/g, '<program>');
}

function isUnknownFlag(run: Run): boolean {
  return /unknown (shorthand )?flag/.test(run.stderr);
}

/** skopeo's commands, from its help (the hidden untrusted-signature-dump-without-verification added). */
function skopeoCommands(): string[] {
  const help = spawnSync(requireTool('skopeo'), ['--help'], { encoding: 'utf8' }).stdout;
  const section = help.split('Available Commands:')[1]!.split('\n\n')[0]!;
  const names = section
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0]!)
    .filter((name) => name !== '' && name !== 'help');
  return [...names, 'untrusted-signature-dump-without-verification'];
}

interface FlagUse {
  /** As written on the command line: `--all`, `-a`, `--format=x`, `-f=x`. */
  word: string;
  /** The flag's name, for reports. */
  name: string;
}

/** Every flag `skopeo COMMAND --help` lists (the command's and the global ones), each written as a bool or with a value. */
function listedFlags(command: string): FlagUse[] {
  const help = spawnSync(requireTool('skopeo'), [command, '--help'], { encoding: 'utf8' }).stdout;
  const uses: FlagUse[] = [];
  for (const line of help.split('\n')) {
    const match = /^\s+(?:-([a-zA-Z]), )?--([a-z0-9.-]+)(?: (\S+))?/.exec(line);
    if (!match) continue;
    const [, short, name, valueName] = match;
    if (name === 'help') continue;
    const takesValue =
      valueName !== undefined &&
      !/^ {2,}/.test(
        line.slice(
          line.indexOf(`--${name}`) + name!.length + 2,
          line.indexOf(`--${name}`) + name!.length + 5,
        ),
      );
    const suffix = takesValue ? '=x' : '';
    uses.push({ word: `--${name}${suffix}`, name: `--${name}` });
    if (short) uses.push({ word: `-${short}${suffix}`, name: `-${short}` });
  }
  return uses;
}

/** Flags skopeo 1.9.3 defines hidden (cmd/skopeo/*.go: `Hidden = true`, `MarkHidden`), by command. */
const hiddenFlags: Record<string, FlagUse[]> = {
  copy: [
    { word: '--screds=x', name: '--screds' },
    { word: '--dcreds=x', name: '--dcreds' },
    { word: '--tls-verify', name: '--tls-verify' },
  ],
  sync: [
    { word: '--screds=x', name: '--screds' },
    { word: '--dcreds=x', name: '--dcreds' },
    { word: '--tls-verify', name: '--tls-verify' },
  ],
};
/** Flags no skopeo command has here (controls: both must refuse them). */
const refusedEverywhere: FlagUse[] = [
  { word: '--bogus-flag', name: '--bogus-flag' },
  { word: '--sign-by-sq-fingerprint=x', name: '--sign-by-sq-fingerprint' },
];

describe('flag acceptance, gantry against skopeo 1.9.3, command by command', () => {
  const commands = skopeoCommands();

  it('covers the commands skopeo has', () => {
    expect(commands).toEqual(
      expect.arrayContaining(['copy', 'delete', 'inspect', 'list-tags', 'login', 'logout', 'sync']),
    );
  });

  // skopeo commands gantry does not implement: refused with a clear message (see cli.test.ts).
  const notImplemented = new Set(['layers', 'proxy', 'completion']);

  it.each(commands.filter((command) => !notImplemented.has(command)))(
    '%s accepts and refuses the same flags',
    async (command) => {
      const uses = [
        ...listedFlags(command),
        ...(hiddenFlags[command] ?? []),
        { word: '--registries-conf=x', name: '--registries-conf' },
        ...refusedEverywhere,
        // Hidden aliases of other commands are no flags here.
        ...(command === 'copy' || command === 'sync'
          ? []
          : [
              { word: '--screds=x', name: '--screds' },
              { word: '--tls-verify', name: '--tls-verify' },
            ]),
      ];
      const differences: string[] = [];
      for (const use of uses) {
        // No arguments: both stop at the argument check (or at the flag).
        const theirs = skopeo([command, use.word]);
        const ours = await gantry([command, use.word]);
        if (isUnknownFlag(theirs) !== isUnknownFlag(ours)) {
          differences.push(
            `${command} ${use.word}: skopeo ${isUnknownFlag(theirs) ? 'refuses' : 'accepts'}, gantry ${isUnknownFlag(ours) ? 'refuses' : 'accepts'} (${fatalMessage(ours)})`,
          );
        }
      }
      expect(differences).toEqual([]);
      // The hidden aliases work as the flags they stand for: --screds takes the place of --src-creds.
    },
  );

  it('the root command accepts and refuses the same flags (the hidden --tls-verify, --registries-conf)', async () => {
    for (const word of ['--tls-verify', '--registries-conf=x', '--debug', '--bogus-flag', '--screds=x']) {
      const theirs = skopeo([word, 'manifest-digest']);
      const ours = await gantry([word, 'manifest-digest']);
      expect(isUnknownFlag(ours), word).toBe(isUnknownFlag(theirs));
    }
  });

  it('--screds and --dcreds stand for --src-creds and --dest-creds (both refuse them with --src-no-creds)', async () => {
    for (const [alias, prefix] of [
      ['--screds', 'src'],
      ['--dcreds', 'dest'],
    ] as const) {
      const args = [
        'copy',
        `${alias}=me:pw`,
        `--${prefix}-no-creds`,
        'docker://localhost:1/a:b',
        'oci:/nonexistent/x:y',
      ];
      const theirs = skopeo(['--insecure-policy', ...args]);
      const ours = await gantry(['--insecure-policy', ...args]);
      expect(theirs.code).toBe(1);
      expect(ours.code).toBe(1);
      expect(fatalMessage(ours)).toBe(fatalMessage(theirs));
    }
  });
});

describe('error messages of common failures, gantry against skopeo 1.9.3', () => {
  let layout: string;

  beforeAll(async () => {
    const image = await buildFixtureImage(
      {
        format: 'oci',
        images: [
          {
            layers: [{ entries: [{ type: 'file', path: 'arm', content: 'arm64\n' }] }],
            platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
          },
          {
            layers: [{ entries: [{ type: 'file', path: 'ppc', content: 'ppc64le\n' }] }],
            platform: { os: 'linux', architecture: 'ppc64le' },
          },
        ],
      },
      { directory: join(root, 'blobs') },
    );
    layout = join(root, 'layout');
    await writeFixtureToOciLayout(image, layout, 'list');
  });

  const cases: Array<[string, () => string[]]> = [
    [
      'inspect: a list without the wanted platform',
      () => ['--override-arch', 'amd64', '--override-os', 'linux', 'inspect', `oci:${layout}:list`],
    ],
    [
      'copy: a list without the wanted platform',
      () => [
        '--insecure-policy',
        '--override-arch',
        'amd64',
        '--override-os',
        'linux',
        'copy',
        `oci:${layout}:list`,
        `oci:${join(root, 'copy')}:x`,
      ],
    ],
    ['inspect: no argument', () => ['inspect']],
    ['copy: one argument', () => ['copy', 'oci:/x']],
    ['inspect: an unknown flag', () => ['inspect', '--bogus', 'oci:/x']],
    ['inspect: a bad --retry-times', () => ['inspect', '--retry-times=x', 'oci:/x']],
    [
      'copy: a --retry-times too large',
      () => ['copy', '--retry-times=99999999999999999999', 'oci:/a', 'oci:/b'],
    ],
    ['inspect: an unknown transport', () => ['inspect', 'nosuch:image']],
    ['inspect: no transport', () => ['inspect', 'image']],
    ['inspect: a missing OCI layout', () => ['inspect', `oci:${join(root, 'missing')}:x`]],
    ['inspect: a tag the layout lacks', () => ['inspect', `oci:${layout}:nosuchtag`]],
    ['inspect: an invalid docker reference', () => ['inspect', 'docker://UPPER/case']],
    [
      'copy: --all with --multi-arch',
      () => ['--insecure-policy', 'copy', '--all', '--multi-arch', 'all', 'oci:/a', 'oci:/b'],
    ],
    [
      'copy: an unknown --format',
      () => ['--insecure-policy', 'copy', '--format', 'v2s3', 'oci:/a', 'oci:/b'],
    ],
    [
      'copy: a missing policy file',
      () => ['--policy', join(root, 'nosuch-policy.json'), 'copy', `oci:${layout}:list`, 'oci:/b:x'],
    ],
    [
      'copy: --src-creds with --src-no-creds',
      () => [
        '--insecure-policy',
        'copy',
        '--src-creds=a:b',
        '--src-no-creds',
        'docker://localhost:1/a',
        'oci:/b',
      ],
    ],
    ['manifest-digest: a missing file', () => ['manifest-digest', join(root, 'nosuch-manifest.json')]],
    ['a bad --command-timeout', () => ['--command-timeout', '5', 'inspect', 'oci:/x']],
    ['delete: no argument', () => ['delete']],
    ['list-tags: a transport without tags', () => ['list-tags', `oci:${layout}`]],
  ];

  /**
   * Where gantry differs on purpose, pinned: the exit codes skopeo gives and gantry's own, and why.
   * Everything else must be the same exit code and the same message.
   */
  const knownDifferences: Record<
    string,
    { skopeoCode: number; gantryCode: number; gantryMessage?: string; why: string }
  > = {
    'copy: one argument': {
      skopeoCode: 0,
      gantryCode: 1,
      gantryMessage: 'Exactly two arguments expected',
      why: 'skopeo 1.9.3 prints the usage and exits 0 on a wrong argument count; a script must see the failure',
    },
    'inspect: a missing OCI layout': {
      skopeoCode: 1,
      gantryCode: 2,
      why: 'gantry exits 2 whenever the image is not there (README, exit codes); same message',
    },
    'inspect: a tag the layout lacks': {
      skopeoCode: 1,
      gantryCode: 2,
      gantryMessage:
        'Error parsing image name \\"oci:<root>/layout:nosuchtag\\": image \\"nosuchtag\\" not found in OCI layout <root>/layout: no descriptor found for reference \\"nosuchtag\\"',
      why: "gantry exits 2 whenever the image is not there (README, exit codes); its library error also names the image and the layout, before skopeo's words",
    },
    'inspect: an invalid docker reference': {
      skopeoCode: 1,
      gantryCode: 1,
      gantryMessage: 'Error parsing image name \\"docker://UPPER/case\\": pinging container registry UPPER: ',
      why: 'gantry follows the current docker reference grammar (a first component with capitals is a registry host), skopeo 1.9.3 the older one',
    },
  };

  it.each(cases)('%s', async (name, args) => {
    const theirs = skopeo(args());
    const ours = await gantry(args());
    const known = knownDifferences[name];
    if (known) {
      expect(theirs.code, theirs.stderr).toBe(known.skopeoCode);
      expect(ours.code, ours.stderr).toBe(known.gantryCode);
      if (known.gantryMessage !== undefined) expect(fatalMessage(ours)).toContain(known.gantryMessage);
      else expect(fatalMessage(ours)).toBe(fatalMessage(theirs));
      return;
    }
    expect(ours.code, ours.stderr).toBe(theirs.code);
    expect(fatalMessage(ours)).toBe(fatalMessage(theirs));
  });
});
