import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { rolldown } from 'rolldown';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorCodes } from './errors.js';
import { DigestWorker, workerDigestFor, workerDigestMinimumBytes } from './worker-digester.js';

const execFileAsync = promisify(execFile);

function expected(algorithm: string, chunks: readonly Uint8Array[]): string {
  const hash = createHash(algorithm);
  for (const chunk of chunks) hash.update(chunk);
  return `${algorithm}:${hash.digest('hex')}`;
}

describe('DigestWorker', () => {
  const workers: DigestWorker[] = [];
  function newWorker(): DigestWorker {
    const worker = new DigestWorker();
    workers.push(worker);
    return worker;
  }
  afterAll(async () => {
    for (const worker of workers) await worker.terminate();
  });

  it('gives the digest of every chunk in order, whatever their sizes and however the ring wraps', async () => {
    const worker = newWorker();
    const chunks = [
      randomBytes(1),
      new Uint8Array(0),
      randomBytes(5),
      randomBytes(1024 * 1024),
      randomBytes(65_535),
      randomBytes(3),
      // Longer than the ring: published in pieces, waiting for the worker to free room.
      randomBytes(9 * 1024 * 1024 + 7),
      ...Array.from({ length: 300 }, (_, index) => randomBytes(1 + ((index * 7919) % 131_072))),
    ];
    const digest = worker.digest('sha256');
    for (const chunk of chunks) digest.update(chunk);
    expect(await digest.digest()).toBe(expected('sha256', chunks));
  });

  it('keeps digests apart when their chunks interleave, in each algorithm', async () => {
    const worker = newWorker();
    const algorithms = ['sha256', 'sha512', 'sha384', 'sha256'] as const;
    const digests = algorithms.map((algorithm) => worker.digest(algorithm));
    const chunks: Uint8Array[][] = algorithms.map(() => []);
    for (let round = 0; round < 40; round++) {
      for (const [index, digest] of digests.entries()) {
        const chunk = randomBytes(((round + 1) * (index + 3) * 4099) % 200_000);
        chunks[index]!.push(chunk);
        digest.update(chunk);
      }
    }
    const results = await Promise.all(digests.map((digest) => digest.digest()));
    expect(results).toEqual(algorithms.map((algorithm, index) => expected(algorithm, chunks[index]!)));
  });

  it('copies each chunk: a chunk overwritten as soon as update returns does not change the digest', async () => {
    const worker = newWorker();
    const reused = Buffer.allocUnsafe(128 * 1024);
    const originals: Buffer[] = [];
    const digest = worker.digest('sha256');
    for (let index = 0; index < 100; index++) {
      const bytes = randomBytes(reused.byteLength);
      originals.push(bytes);
      bytes.copy(reused);
      digest.update(reused);
      // What a read buffer given back to its pool gets next.
      reused.fill(index);
    }
    expect(await digest.digest()).toBe(expected('sha256', originals));
  });

  it('a discarded digest does not disturb the next ones', async () => {
    const worker = newWorker();
    const dropped = worker.digest('sha256');
    dropped.update(randomBytes(1000));
    dropped.discard();
    const bytes = randomBytes(300_000);
    const kept = worker.digest('sha256');
    kept.update(bytes);
    expect(await kept.digest()).toBe(expected('sha256', [bytes]));
    await expect(dropped.digest()).rejects.toThrow(/already finished/);
  });

  it('fails clearly once the worker is gone: pending digests reject, updates throw', async () => {
    const worker = newWorker();
    const digest = worker.digest('sha256');
    digest.update(randomBytes(1000));
    const other = worker.digest('sha256');
    other.update(randomBytes(1000));
    const finishing = other.digest();
    await worker.terminate();
    await expect(finishing).rejects.toMatchObject({
      code: ErrorCodes.Internal,
      retryable: true,
      message: expect.stringMatching(/digest worker thread failed/),
    });
    expect(() => digest.update(randomBytes(10))).toThrow(/digest worker thread failed/);
    expect(worker.failure?.code).toBe(ErrorCodes.Internal);
  });
});

describe('workerDigestFor', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('hashes long blobs on the worker with GANTRY_DIGEST_WORKER=on, short or unsized ones not, none by default', async () => {
    vi.stubEnv('GANTRY_DIGEST_WORKER', undefined);
    expect(workerDigestFor('sha256', workerDigestMinimumBytes * 10)).toBeUndefined();
    vi.stubEnv('GANTRY_DIGEST_WORKER', 'on');
    expect(workerDigestFor('sha256', 1000)).toBeUndefined();
    expect(workerDigestFor('sha256', -1)).toBeUndefined();
    const digest = workerDigestFor('sha256', workerDigestMinimumBytes);
    expect(digest).toBeDefined();
    const bytes = randomBytes(5000);
    digest!.update(bytes);
    expect(await digest!.digest()).toBe(expected('sha256', [bytes]));
    vi.stubEnv('GANTRY_DIGEST_WORKER', 'off');
    expect(workerDigestFor('sha256', workerDigestMinimumBytes * 10)).toBeUndefined();
    vi.stubEnv('GANTRY_DIGEST_WORKER', 'always');
    expect(workerDigestFor('sha256', 10)).toBeDefined();
  });

  it('a process that used the worker exits on its own once its work is done (the worker does not hold it)', async () => {
    const directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-digest-worker-'));
    try {
      const entry = path.join(directory, 'entry.ts');
      await writeFile(
        entry,
        `import { createHash } from 'node:crypto';
import { workerDigestFor } from ${JSON.stringify(path.join(import.meta.dirname, 'worker-digester.ts'))};
const bytes = Buffer.alloc(6 * 1024 * 1024, 7);
const digest = workerDigestFor('sha256', bytes.byteLength);
if (digest === undefined) throw new Error('no worker');
for (let offset = 0; offset < bytes.length; offset += 100_000) digest.update(bytes.subarray(offset, offset + 100_000));
const actual = await digest.digest();
const wanted = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
process.stdout.write(actual === wanted ? 'same' : 'different');
// Another digest started and left unfinished: its worker must not keep the process alive either.
workerDigestFor('sha256', bytes.byteLength)?.update(bytes);
`,
      );
      const builtins = new Set([...builtinModules, ...builtinModules.map((name) => `node:${name}`)]);
      const bundle = await rolldown({
        input: entry,
        platform: 'node',
        external: (id) => builtins.has(id),
        logLevel: 'warn',
      });
      const { output } = await bundle.write({ dir: path.join(directory, 'out'), format: 'esm' });
      await bundle.close();
      const { stdout } = await execFileAsync(
        process.execPath,
        [path.join(directory, 'out', output[0]!.fileName)],
        {
          env: { PATH: process.env.PATH, GANTRY_DIGEST_WORKER: 'on' },
        },
      );
      expect(stdout).toBe('same');
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});
