/**
 * The pipe writer `ostree commit --tree=tar=/dev/fd/3` reads from: every byte in order, small pieces
 * gathered, large ones written as they are; it waits while the reader does not read; a reader that
 * has gone is an `EPIPE` failure, not a hang.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SpawnedProcess } from './child-process.js';
import { makePipe } from './native.js';
import { PipeWriter } from './pipe-writer.js';

/** Runs `sh -c SCRIPT` with the pipe's read end as its descriptor 3; resolves with its output and exit code. */
function reader(script: string): {
  writer: PipeWriter;
  done: Promise<{ stdout: string; code: number | null }>;
} {
  const [readEnd, writeEnd] = makePipe();
  let child: SpawnedProcess;
  try {
    child = SpawnedProcess.start('sh', ['-c', script], readEnd);
  } finally {
    closeSync(readEnd);
  }
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr.resume();
  const done = new Promise<{ stdout: string; code: number | null }>((resolve) => {
    child.on('close', (code) => resolve({ stdout, code }));
  });
  return { writer: new PipeWriter(writeEnd), done };
}

/** Lets pending callbacks and thread-pool completions run a few times over. */
async function settle(): Promise<void> {
  for (let round = 0; round < 20; round++) await new Promise((resolve) => setImmediate(resolve));
}

describe('PipeWriter', () => {
  it('writes every piece in order, small ones gathered, then ends the pipe', async () => {
    const { writer, done } = reader('sha256sum <&3');
    const pieces: Buffer[] = [];
    for (let index = 0; index < 300; index++) {
      // Tar-like: headers and padding (small), file contents of every size up to a few MiB.
      pieces.push(randomBytes(512));
      pieces.push(randomBytes(index % 7 === 0 ? 3 * 1024 * 1024 + index : (index * 997) % 70_000));
    }
    const last = Buffer.alloc(1024);
    const expected = createHash('sha256');
    for (const piece of pieces) {
      expected.update(piece);
      await writer.write(piece);
    }
    expected.update(last);
    await writer.end(last);
    const { stdout, code } = await done;
    expect(code).toBe(0);
    expect(stdout.split(' ')[0]).toBe(expected.digest('hex'));
    expect(writer.failed).toBeUndefined();
  }, 120_000);

  it('waits while the reader does not read, and goes on once it does', async () => {
    const [readEnd, writeEnd] = makePipe();
    const writer = new PipeWriter(writeEnd);
    // Far more than the pipe holds plus what the writer queues ahead.
    const chunk = Buffer.alloc(1024 * 1024, 7);
    let written = 0;
    const writing = (async () => {
      for (let index = 0; index < 16; index++) {
        await writer.write(chunk);
        written++;
      }
      await writer.end(Buffer.alloc(0));
    })();
    await settle();
    // Nothing reads the pipe: the writer cannot have got past its queue limit.
    expect(written).toBeLessThan(16);
    const stream = createReadStream('', { fd: readEnd });
    let received = 0;
    for await (const data of stream) received += (data as Buffer).length;
    await writing;
    expect(written).toBe(16);
    expect(received).toBe(16 * chunk.length);
  }, 120_000);

  it('fails with EPIPE when the reader has gone, and every later write fails too', async () => {
    const { writer, done } = reader('head -c 10 <&3 > /dev/null');
    const chunk = Buffer.alloc(1024 * 1024, 1);
    const outcome = (async () => {
      for (let index = 0; index < 64; index++) await writer.write(chunk);
      await writer.flush();
    })();
    await expect(outcome).rejects.toMatchObject({ code: 'EPIPE' });
    expect((await done).code).toBe(0);
    expect(writer.failed).toMatchObject({ code: 'EPIPE' });
    await expect(writer.write(Buffer.alloc(10))).rejects.toMatchObject({ code: 'EPIPE' });
    await writer.destroy();
  }, 120_000);

  it('after destroy, writes fail and the descriptor is closed (the reader sees the end)', async () => {
    const { writer, done } = reader('wc -c <&3');
    await writer.write(Buffer.alloc(100_000, 2));
    await writer.flush();
    await writer.destroy();
    await expect(writer.write(Buffer.alloc(1))).rejects.toMatchObject({ code: 'EPIPE' });
    const { stdout, code } = await done;
    expect(code).toBe(0);
    expect(stdout.trim()).toBe('100000');
  }, 120_000);
});
