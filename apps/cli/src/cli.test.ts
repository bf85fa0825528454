import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliVersion } from './cli.js';
import { formatLogLine } from './logger.js';
import { runGantry } from './test-support/run.js';

const fatalLine = /^time="\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:\d{2})" level=fatal msg=/;

describe('usage errors (exit 1, skopeo wording, nothing on stdout)', () => {
  const cases: Array<[string[], string]> = [
    [['inspect', '--bogus', 'x'], 'msg="unknown flag: --bogus"'],
    [['--bogus'], 'msg="unknown flag: --bogus"'],
    [['inspect', '-x', 'a'], `msg="unknown shorthand flag: 'x' in -x"`],
    [['inspect'], 'msg="Exactly one argument expected"'],
    [['inspect', 'a', 'b'], 'msg="Exactly one argument expected"'],
    [['copy', 'a'], 'msg="Exactly two arguments expected"'],
    [['inspect', '--format'], 'msg="flag needs an argument: --format"'],
    [['inspect', '--raw', '--format', 'x', 'oci:/x'], 'msg="raw output does not support format option"'],
    [['inspect', '--retry-times=x', 'oci:/x'], 'strconv.ParseInt: parsing \\"x\\": invalid syntax'],
    [['--command-timeout', '5', 'inspect', 'oci:/x'], 'time: missing unit in duration \\"5\\"'],
    [[], `msg="Missing command 'gantry COMMAND'\\nTry 'gantry --help' for more information"`],
    [['bogus'], 'msg="Unrecognized command `gantry bogus`\\nTry \'gantry --help\' for more information"'],
    [['inspex'], 'Did you mean this?\\n\\tinspect'],
    [
      ['--insecure-policy', 'copy', '--format', 'v2s3', 'oci:/a', 'oci:/b'],
      `unknown format \\"v2s3\\". Choose one of the supported formats: 'oci', 'v2s1', or 'v2s2'`,
    ],
    [
      ['--insecure-policy', 'copy', '--all', '--multi-arch', 'all', 'oci:/a', 'oci:/b'],
      'Cannot use --all and --multi-arch flags together',
    ],
    [
      ['--insecure-policy', 'copy', '--multi-arch', 'x', 'oci:/a', 'oci:/b'],
      `unknown multi-arch option \\"x\\"`,
    ],
    [['inspect', '--src-daemon-host', 'unix:///x', 'oci:/x'], 'unknown flag: --src-daemon-host'],
    [
      ['--insecure-policy', 'copy', '--encryption-key', 'jwe:/k.pem', 'oci:/a', 'oci:/b'],
      '--encryption-key is not supported by gantry: image encryption is not available in gantry yet',
    ],
    [
      ['--insecure-policy', 'copy', '--sign-identity', 'example.com/a:1', 'oci:/a', 'oci:/b'],
      '--sign-identity can only be used with --sign-by or --sign-by-sigstore-private-key',
    ],
    [
      ['inspect', '--creds', 'u:p', '--no-creds', 'oci:/x'],
      'creds and no-creds cannot be specified at the same time',
    ],
    [
      ['inspect', '--creds', 'u:p', '--username', 'u', 'oci:/x'],
      'creds and username cannot be specified at the same time',
    ],
    [['inspect', '--username', 'u', 'oci:/x'], 'password must be specified when username is specified'],
    [
      ['--insecure-policy', 'copy', '--dest-password', 'p', 'oci:/a', 'oci:/b'],
      'username must be specified when password is specified',
    ],
    [['list-tags', 'docker://127.0.0.1:1/repo:tag'], 'msg="No tag or digest allowed in reference"'],
    [['list-tags', 'oci:/x'], "Unsupported transport 'oci' for tag listing. Only supported: docker"],
    [
      ['login', '-p', 'x', '--password-stdin', '127.0.0.1:1'],
      "Can't specify both --password-stdin and --password",
    ],
    [['login'], 'please provide a registry to login to'],
    [['logout'], 'please provide a registry to logout from'],
    [['logout', '--all', '127.0.0.1:1'], '--all takes no arguments'],
    [['sync', 'oci:/x', 'dir:/y'], 'A source transport must be specified'],
    [['layers', 'docker://x'], 'gantry does not implement the skopeo command \\"layers\\" yet'],
    [['manifest-digest'], 'msg="Usage: gantry manifest-digest manifest"'],
  ];
  for (const [argv, message] of cases) {
    it(`gantry ${argv.join(' ')}`, async () => {
      const result = await runGantry(argv);
      expect(result.code).toBe(1);
      expect(result.stdout.length).toBe(0);
      expect(result.stderr).toMatch(fatalLine);
      expect(result.stderr).toContain(message);
    });
  }

  it('wrong argument counts also show the usage line', async () => {
    const result = await runGantry(['inspect']);
    expect(result.stderr).toContain('Usage:\n  gantry inspect [command options] IMAGE-NAME\n');
  });

  it('global flags are accepted after the command too', async () => {
    const result = await runGantry(['inspect', '--debug', '--override-arch', 'arm64', 'nocolon']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('level=debug');
    expect(result.stderr).toContain('expected colon-separated transport:reference');
  });
});

describe('help and version', () => {
  it('--version prints "gantry version X" like skopeo', async () => {
    for (const flag of ['--version', '-v']) {
      const result = await runGantry([flag]);
      expect(result.code).toBe(0);
      expect(result.stdout.toString()).toBe(`gantry version ${cliVersion()}\n`);
    }
    expect(cliVersion()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('--help on the root and every command goes to stdout with exit 0', async () => {
    const root = await runGantry(['--help']);
    expect(root.code).toBe(0);
    expect(root.stdout.toString()).toContain(
      'Available Commands:\n  completion            Print a shell completion script\n  copy ',
    );
    expect(root.stdout.toString()).toContain('      --insecure-policy ');
    expect(root.stdout.toString()).toContain('  standalone-verify ');
    // Hidden, as in skopeo, but its help is there.
    expect(root.stdout.toString()).not.toContain('untrusted-signature-dump-without-verification');
    for (const command of [
      'copy',
      'delete',
      'generate-sigstore-key',
      'inspect',
      'list-tags',
      'login',
      'logout',
      'manifest-digest',
      'standalone-sign',
      'standalone-verify',
      'transports',
      'untrusted-signature-dump-without-verification',
    ]) {
      for (const argv of [
        [command, '--help'],
        [command, '-h'],
        ['help', command],
      ]) {
        const result = await runGantry(argv);
        expect(result.code, argv.join(' ')).toBe(0);
        expect(result.stdout.toString()).toContain(`Usage:\ngantry ${command}`);
        expect(result.stderr).toBe('');
        // Gantry's help points to what exists: no skopeo man page, no other program's defaults.
        expect(result.stdout.toString()).not.toMatch(/skopeo(-[a-z-]+)?\(1\)|containers\/image defaults/);
      }
    }
    const inspectHelp = (await runGantry(['inspect', '--help'])).stdout.toString();
    expect(inspectHelp).toContain('  -f, --format string ');
    expect(inspectHelp).toMatch(/Supported transports:\n.*\boci\b/);
    const listTagsHelp = (await runGantry(['list-tags', '--help'])).stdout.toString();
    const listed = /Supported transports:\n(.*)\n/.exec(listTagsHelp)?.[1]?.split(', ');
    expect(listed).toContain('docker');
    expect(listed).not.toContain('oci');
    const copyHelp = (await runGantry(['help', 'copy'])).stdout.toString();
    expect(copyHelp).toContain('See containers-transports(5) for the expected format');
    expect(copyHelp).toMatch(/--image-parallel-copies uint +Maximum .* \(default 6\)\n/);
    expect(copyHelp).toContain('      --dest-oci-accept-uncompressed-layers ');
    expect(copyHelp).toContain('  -q, --quiet ');
  });
});

describe('manifest-digest', () => {
  it('prints the digest with a newline; a missing file is worded like Go', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'gantry-'));
    try {
      const file = join(directory, 'manifest.json');
      await writeFile(file, '{"schemaVersion":2}\n');
      const result = await runGantry(['manifest-digest', file]);
      expect(result.code).toBe(0);
      const expected = createHash('sha256').update('{"schemaVersion":2}\n').digest('hex');
      expect(result.stdout.toString()).toBe(`sha256:${expected}\n`);
      const missing = await runGantry(['manifest-digest', join(directory, 'nope')]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain(
        `Error reading manifest from ${join(directory, 'nope')}: open ${join(directory, 'nope')}: no such file or directory`,
      );
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});

describe('log format', () => {
  const now = () => new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
  it('non-terminal: logrus text format, quoting only when needed', () => {
    expect(formatLogLine('fatal', 'plain-message', { isTTY: false, now })).toMatch(
      /level=fatal msg=plain-message\n$/,
    );
    expect(formatLogLine('fatal', 'a "quoted"\nmessage', { isTTY: false, now })).toMatch(
      /msg="a \\"quoted\\"\\nmessage"\n$/,
    );
    expect(formatLogLine('warning', 'x y', { isTTY: false, now })).toMatch(
      /^time="[^"]+" level=warning msg="x y"\n$/,
    );
  });
  it('terminal: coloured level, elapsed seconds, message padded to 44 columns', () => {
    expect(formatLogLine('fatal', 'unknown flag: --bogus', { isTTY: true, now, startTime: now() })).toBe(
      `\x1b[31mFATA\x1b[0m[0000] ${'unknown flag: --bogus'.padEnd(44)} \n`,
    );
    expect(
      formatLogLine('debug', 'x', { isTTY: true, now, startTime: new Date(now().getTime() - 3000) }),
    ).toContain('\x1b[37mDEBU\x1b[0m[0003] x');
  });
});

describe('--format output', () => {
  it('aligns tab-separated columns like skopeo’s tabwriter and handles \\t / \\n escapes', async () => {
    const { formatInspectJson } = await import('@gantry/core');
    const { renderFormatted } = await import('./format.js');
    const { inspectTemplateData } = await import('./template-data.js');
    const output = {
      Digest: 'sha256:x',
      RepoTags: [],
      Created: null,
      DockerVersion: '',
      Labels: null,
      Architecture: 'amd64',
      Os: 'linux',
      Layers: [],
      Env: null,
    };
    expect(renderFormatted('{{.Os}}\\t{{.Architecture}}', output, inspectTemplateData(output), 't')).toBe(
      `linux${' '.repeat(7)}amd64\n`,
    );
    expect(renderFormatted('{{.Os}}\\n{{.Architecture}}\n', output, inspectTemplateData(output), 't')).toBe(
      'linux\namd64\n',
    );
    expect(renderFormatted('{{json .}}', output, inspectTemplateData(output), 't')).toBe(
      `${formatInspectJson(output)}\n`,
    );
    expect(
      renderFormatted(
        '{{.Labels}} {{.Env}} {{.Created}} [{{.Name}}]',
        output,
        inspectTemplateData(output),
        't',
      ),
    ).toBe('map[] [] <nil> []\n');
  });
});
