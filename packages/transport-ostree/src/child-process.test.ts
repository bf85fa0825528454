/**
 * Processes started with `posix_spawn`: what they get (arguments, environment, descriptors, signal
 * dispositions) and what is seen of them (output, exit code, the signal that ended them).
 */
import { closeSync, writeSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SpawnedProcess } from './child-process.js';
import { makePipe } from './native.js';

interface Outcome {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
}

function run(child: SpawnedProcess): Promise<Outcome> {
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  return new Promise((resolve) => {
    child.on('close', (code, signal) => resolve({ stdout, stderr, code, signal }));
  });
}

describe('SpawnedProcess', () => {
  it('passes the arguments and the environment, and reports output and exit code', async () => {
    process.env.GANTRY_SPAWN_TEST = 'value with spaces';
    try {
      const outcome = await run(
        SpawnedProcess.start('sh', [
          '-c',
          'echo "$1|$GANTRY_SPAWN_TEST"; echo oops >&2; exit 3',
          'sh',
          'a b',
        ]),
      );
      expect(outcome).toEqual({ stdout: 'a b|value with spaces\n', stderr: 'oops\n', code: 3, signal: null });
    } finally {
      delete process.env.GANTRY_SPAWN_TEST;
    }
  });

  it('gives the extra descriptor as 3, standard input as /dev/null, and no other descriptor', async () => {
    const [readEnd, writeEnd] = makePipe();
    const child = SpawnedProcess.start(
      'sh',
      ['-c', 'cat /dev/fd/3; wc -c < /dev/fd/0; ls /proc/self/fd | sort -n | tr "\\n" " "'],
      readEnd,
    );
    closeSync(readEnd);
    writeSync(writeEnd, 'through the pipe\n');
    closeSync(writeEnd);
    const outcome = await run(child);
    const [piped, stdinBytes, descriptors] = outcome.stdout.split('\n');
    expect(piped).toBe('through the pipe');
    expect(stdinBytes?.trim()).toBe('0');
    // 0–3, and the one `ls` opens to read /proc/self/fd.
    expect(descriptors?.trim().split(' ').map(Number).slice(0, 4)).toEqual([0, 1, 2, 3]);
    expect(descriptors?.trim().split(' ').length).toBeLessThanOrEqual(5);
    expect(outcome.code).toBe(0);
  });

  it('starts the process with no signal ignored or blocked', async () => {
    const outcome = await run(SpawnedProcess.start('grep', ['-E', '^Sig(Ign|Blk):', '/proc/self/status']));
    const masks = Object.fromEntries(
      outcome.stdout
        .trim()
        .split('\n')
        .map((line) => line.split(':\t') as [string, string]),
    );
    expect(BigInt(`0x${masks.SigBlk}`)).toBe(0n);
    // Signals 1–31 (glibc's own two, 32 and 33, it sets itself in the processes it starts).
    expect(BigInt(`0x${masks.SigIgn}`) & 0x7fffffffn).toBe(0n);
  });

  it('reports the signal that ended the process, and kills only until it is collected', async () => {
    const child = SpawnedProcess.start('sleep', ['60']);
    const outcome = run(child);
    expect(child.kill('SIGKILL')).toBe(true);
    expect(await outcome).toMatchObject({ code: null, signal: 'SIGKILL' });
    expect(child.signalCode).toBe('SIGKILL');
    expect(child.kill('SIGKILL')).toBe(false);
  });

  it('throws ENOENT for a command that does not exist', () => {
    expect(() => SpawnedProcess.start('gantry-no-such-command', [])).toThrow(
      expect.objectContaining({ code: 'ENOENT' }),
    );
  });
});
