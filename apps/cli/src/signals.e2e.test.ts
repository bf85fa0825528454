/**
 * Signals and the installed command, with real processes: a copy from a registry that answers slowly
 * (a throttling proxy in front of Debian's docker-registry) is interrupted while its layer is being
 * copied. gantry discards what it wrote, then ends by the same signal, so a shell sees 130 / 143 as it
 * does for skopeo; run as a background job of a non-interactive shell (SIGINT ignored), it ignores
 * SIGINT and finishes the copy.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFixtureImage, writeFixtureToOciLayout } from '@gantry/core/testing';
import { startTestRegistry, type TestRegistry } from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireTool } from './test-support/run.js';
import { type SlowProxy, startSlowProxy } from './test-support/slow-proxy.js';
import { requireBuiltGantry } from './test-support/terminal.js';

let root: string;
let registry: TestRegistry;
let slow: SlowProxy;
let source: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-signals-'));
  registry = await startTestRegistry();
  const image = await buildFixtureImage(
    {
      layers: [
        { entries: [{ type: 'file', path: 'big.bin', randomSize: 6 * 1024 * 1024, seed: 'signals' }] },
      ],
    },
    { directory: join(root, 'blobs') },
  );
  await writeFixtureToOciLayout(image, join(root, 'layout'), 'latest');
  const pushed = spawn(requireTool('skopeo'), [
    '--insecure-policy',
    'copy',
    '-q',
    '--dest-tls-verify=false',
    `oci:${join(root, 'layout')}:latest`,
    `docker://${registry.host}/signals/big:v1`,
  ]);
  expect(await new Promise((resolve) => pushed.on('close', resolve))).toBe(0);
  // 6 MiB of random data at 1.5 MiB/s: the layer takes about four seconds.
  slow = await startSlowProxy(registry.host, 1.5 * 1024 * 1024);
  source = `docker://${slow.host}/signals/big:v1`;
}, 120_000);

afterAll(async () => {
  await slow?.stop();
  await registry?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

interface Started {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves once stderr shows this text. */
  seen(text: string): Promise<void>;
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(program: string, args: string[]): Started {
  const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => {
    stderr += chunk;
    for (const waiter of waiters.filter((each) => stderr.includes(each.text))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  });
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    seen: (text) =>
      stderr.includes(text) ? Promise.resolve() : new Promise((resolve) => waiters.push({ text, resolve })),
    closed: new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal }))),
  };
}

function copyArguments(destination: string): string[] {
  return ['--insecure-policy', 'copy', '--src-tls-verify=false', source, `oci:${destination}:v1`];
}

/** What an interrupted copy into an OCI layout left: no image, no blob files in progress. */
async function expectNothingHalfWritten(layout: string): Promise<void> {
  const index = await readFile(join(layout, 'index.json'), 'utf8').catch(() => '{"manifests":[]}');
  expect(JSON.parse(index).manifests).toEqual([]);
  const blobs = await readdir(join(layout, 'blobs', 'sha256')).catch(() => [] as string[]);
  const temporary = await readdir(join(layout, 'blobs')).catch(() => [] as string[]);
  expect(temporary.filter((name) => name.startsWith('.'))).toEqual([]);
  // Only the small blobs may have been completed; never the layer in progress.
  expect(blobs.length).toBeLessThanOrEqual(1);
}

/** The process a shell started in the foreground (its only child). */
async function onlyChildOf(pid: number): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim();
    if (children !== '') return Number(children.split(' ')[0]);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`process ${pid} started no child`);
}

describe('an interrupted copy', () => {
  for (const [signal, status] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    it(`${signal}: cleans up, then ends by ${signal}; the shell sees ${status}`, async () => {
      const destination = join(root, `interrupted-${signal}`);
      const shell = start('sh', [
        '-c',
        '"$0" "$@"; echo "status=$?"',
        requireBuiltGantry(),
        ...copyArguments(destination),
      ]);
      await shell.seen('Copying blob');
      const gantry = await onlyChildOf(shell.child.pid!);
      process.kill(gantry, signal);
      expect(await shell.closed).toEqual({ code: 0, signal: null });
      expect(shell.stdout()).toBe(`status=${status}\n`);
      expect(shell.stderr()).toContain(`interrupted by ${signal}`);
      await expectNothingHalfWritten(destination);
    });
  }

  it('a second SIGINT during the clean-up ends it at once, by SIGINT', async () => {
    const destination = join(root, 'twice');
    const gantry = start(requireBuiltGantry(), copyArguments(destination));
    await gantry.seen('Copying blob');
    gantry.child.kill('SIGINT');
    gantry.child.kill('SIGINT');
    expect(await gantry.closed).toEqual({ code: null, signal: 'SIGINT' });
  });

  it('SIGINT ignored at start (a background job of a script) stays ignored: the copy finishes', async () => {
    const destination = join(root, 'background');
    const shell = start('sh', [
      '-c',
      '"$0" "$@" & echo "pid=$!"; wait $!; echo "status=$?"',
      requireBuiltGantry(),
      ...copyArguments(destination),
    ]);
    await shell.seen('Copying blob');
    const pid = Number(/pid=(\d+)/.exec(shell.stdout())![1]);
    process.kill(pid, 'SIGINT');
    expect(await shell.closed).toEqual({ code: 0, signal: null });
    expect(shell.stdout()).toBe(`pid=${pid}\nstatus=0\n`);
    expect(shell.stderr()).toContain('Writing manifest to image destination');
    const index = JSON.parse(await readFile(join(destination, 'index.json'), 'utf8'));
    expect(index.manifests).toHaveLength(1);
  });
});

describe('a reader that goes away', () => {
  it('ends gantry by SIGPIPE, as it ends skopeo', async () => {
    for (const program of [requireBuiltGantry(), requireTool('skopeo')]) {
      const child = spawn(program, ['inspect', `oci:${join(root, 'layout')}:latest`], {
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      // The reader closes its end before anything was written.
      child.stdout!.destroy();
      const ended = await new Promise((resolve) =>
        child.on('close', (code, signal) => resolve({ code, signal })),
      );
      expect({ program, ended }).toEqual({ program, ended: { code: null, signal: 'SIGPIPE' } });
    }
  });
});
