/**
 * The installed command on a real pseudo-terminal (python3's pty module, see test-support/terminal.ts)
 * and with real pipes: `login` prompts (username echoed, password not), `--password-stdin` from a pipe,
 * and copy's progress display at 50 and 200 columns. skopeo runs the same login on the same terminal.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFixtureImage, skopeoBinary, writeFixtureToOciLayout } from '@gantry/core/testing';
import { startTestRegistry, type TestRegistry } from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuiltGantry, runInTerminal, withoutEscapes } from './test-support/terminal.js';

let root: string;
let registry: TestRegistry;
let layout: string;
const user = 'alice';
const password = 'pty-s3cret';

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-terminal-'));
  registry = await startTestRegistry({ htpasswdUsers: { [user]: password } });
  // Two layers of a few MiB each (random, so gzip keeps them that size) and a config: three lines.
  const image = await buildFixtureImage(
    {
      layers: [1, 2].map((n) => ({
        entries: [
          { type: 'file' as const, path: `data${n}.bin`, randomSize: n * 3 * 1024 * 1024, seed: `tty${n}` },
        ],
      })),
    },
    { directory: join(root, 'blobs') },
  );
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
}, 60_000);

afterAll(async () => {
  await registry?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

function storedAuth(authFile: string): Promise<unknown> {
  return readFile(authFile, 'utf8').then((text) => JSON.parse(text).auths[registry.host]);
}

const expectedAuth = { auth: Buffer.from(`${user}:${password}`).toString('base64') };

describe('login on a terminal', () => {
  for (const [name, program] of [
    ['gantry', undefined],
    ['skopeo', skopeoBinary],
  ] as const) {
    it(`${name} prompts for the username (echoed) and the password (not echoed), then logs in`, async () => {
      const authFile = join(root, `${name}-prompted.json`);
      const run = await runInTerminal({
        ...(program ? { program } : {}),
        args: ['login', '--tls-verify=false', '--authfile', authFile, registry.host],
        columns: 80,
        steps: [
          { waitFor: 'Username: ', send: `${user}\r` },
          // A typo corrected with Backspace, as a user would.
          { waitFor: 'Password: ', send: `${password}x\x7f\r` },
        ],
      });
      expect(run.exitCode, run.output).toBe(0);
      const shown = run.output.replaceAll('\r\n', '\n');
      expect(shown).toBe(`Username: ${user}\nPassword: \nLogin Succeeded!\n`);
      expect(run.output).not.toContain(password);
      expect(await storedAuth(authFile)).toEqual(expectedAuth);
    });
  }

  it('gantry: Ctrl-D at the password prompt ends with a clear error and stores nothing', async () => {
    const authFile = join(root, 'eof.json');
    const run = await runInTerminal({
      args: ['login', '--tls-verify=false', '--authfile', authFile, '-u', user, registry.host],
      columns: 80,
      steps: [{ waitFor: 'Password: ', send: '\x04' }],
    });
    expect(run.exitCode).toBe(1);
    expect(withoutEscapes(run.output)).toContain('getting username and password: reading password: EOF');
    await expect(stat(authFile)).rejects.toThrow();
  });

  it('gantry: Ctrl-C at the password prompt ends gantry by SIGINT, the terminal echoing again', async () => {
    const authFile = join(root, 'interrupted.json');
    const run = await runInTerminal({
      program: 'sh',
      args: [
        '-c',
        `"$0" login --tls-verify=false --authfile ${authFile} -u ${user} ${registry.host}; echo "status=$?"; stty -a`,
        requireBuiltGantry(),
      ],
      columns: 80,
      steps: [{ waitFor: 'Password: ', send: '\x03' }],
    });
    expect(run.output).toContain('status=130');
    expect(run.output).toMatch(/(^|\s)echo(\s|$)/m);
    expect(run.output).toMatch(/(^|\s)icanon(\s|$)/m);
    await expect(stat(authFile)).rejects.toThrow();
  });
});

describe('login --password-stdin from a pipe', () => {
  it('gantry reads the password from its standard input, as skopeo does', async () => {
    for (const [name, program] of [
      ['gantry', requireBuiltGantry()],
      ['skopeo', skopeoBinary],
    ] as const) {
      const authFile = join(root, `${name}-stdin.json`);
      const child = spawn(
        program,
        [
          'login',
          '--tls-verify=false',
          '--authfile',
          authFile,
          '-u',
          user,
          '--password-stdin',
          registry.host,
        ],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk) => (stdout += chunk));
      child.stderr.on('data', (chunk) => (stderr += chunk));
      child.stdin.end(`${password}\n`);
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect({ name, code, stdout, stderr }).toEqual({
        name,
        code: 0,
        stdout: 'Login Succeeded!\n',
        stderr: '',
      });
      expect(await storedAuth(authFile)).toEqual(expectedAuth);
    }
  });
});

describe('copy progress on a terminal', () => {
  for (const columns of [50, 200]) {
    it(`at ${columns} columns: lines fit, keep their sizes, and end as done lines`, async () => {
      const destination = join(root, `progress-${columns}`);
      const run = await runInTerminal({
        args: ['--insecure-policy', 'copy', `oci:${layout}:latest`, `oci:${destination}:latest`],
        columns,
      });
      expect(run.exitCode, run.output).toBe(0);
      // Every frame the terminal was sent: each line is shorter than the terminal (no wrapping).
      const lines = withoutEscapes(run.output).split('\r\n').filter(Boolean);
      for (const line of lines) expect(line.length, line).toBeLessThan(columns);
      // Running lines show bytes done / total; the last frame shows every blob done with its size.
      expect(lines.some((line) => / \/ 6\.0MiB( |$)/.test(line))).toBe(true);
      const frames = run.output.split(/\x1b\[\d+A\x1b\[J/);
      const last = withoutEscapes(frames.at(-1)!).split('\r\n').filter(Boolean);
      expect(last.slice(0, 3)).toEqual([
        expect.stringMatching(/^Copying blob [0-9a-f]{12} done 3\.0MiB/),
        expect.stringMatching(/^Copying blob [0-9a-f]{12} done 6\.0MiB/),
        expect.stringMatching(/^Copying config [0-9a-f]{10} done \d+\.0b/),
      ]);
      expect(last.slice(3)).toEqual(['Writing manifest to image destination', 'Storing signatures']);
      if (columns === 200) expect(last[0]).toMatch(/ \| [\d.]+(b|KiB|MiB|GiB)\/s$/);
    });
  }
});

describe('every command on a terminal', () => {
  it('prints what it prints through a pipe; errors in logrus terminal format, as skopeo', async () => {
    const manifest = join(root, 'manifest.json');
    await writeFile(manifest, '{"schemaVersion":2}\n');
    await writeFile(join(root, 'empty-auth.json'), '{"auths":{}}');
    const copy = join(root, 'to-delete');
    const copied = await runInTerminal({
      args: ['--insecure-policy', 'copy', '-q', `oci:${layout}:latest`, `oci:${copy}:latest`],
      columns: 80,
    });
    expect(copied).toEqual({ output: '', exitCode: 0, signal: undefined });
    const runs: string[][] = [
      ['inspect', `oci:${layout}:latest`],
      ['inspect', '--config', `oci:${layout}:latest`],
      [
        'list-tags',
        '--tls-verify=false',
        '--creds',
        `${user}:${password}`,
        `docker://${registry.host}/nothing/here`,
      ],
      ['manifest-digest', manifest],
      ['transports'],
      ['logout', '--authfile', join(root, 'empty-auth.json'), '--all'],
      ['delete', `oci:${copy}:latest`],
    ];
    for (const args of runs) {
      const onTerminal = await runInTerminal({ args, columns: 100 });
      if (args[0] === 'list-tags') {
        // A failure: logrus' terminal format (colour, seconds since start), exit 1, as skopeo's.
        const skopeo = await runInTerminal({ program: skopeoBinary, args, columns: 100 });
        expect(onTerminal.exitCode).toBe(1);
        expect(skopeo.exitCode).toBe(1);
        for (const output of [onTerminal.output, skopeo.output])
          expect(output).toMatch(/^\x1b\[31mFATA\x1b\[0m\[0000\] Error listing repository tags: /);
        continue;
      }
      expect({ args, code: onTerminal.exitCode }).toEqual({ args, code: 0 });
      if (args[0] === 'delete') {
        expect(onTerminal.output).toBe('');
        continue;
      }
      const piped = spawnSync(requireBuiltGantry(), args, { encoding: 'utf8' });
      expect(onTerminal.output.replaceAll('\r\n', '\n')).toBe(piped.stdout + piped.stderr);
    }
  });
});
