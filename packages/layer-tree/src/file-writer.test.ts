import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  BatchedFileWriter,
  type FileJob,
  fileWriterMode,
  fileWriterRunning,
  startFileWriter,
  stopFileWriter,
} from './file-writer.js';

let directory: string;
beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'gantry-file-writer-'));
});
afterEach(() => rmSync(directory, { recursive: true, force: true }));

function job(name: string, content: string, extra: Partial<FileJob> = {}): FileJob {
  return {
    directory: Buffer.from(dirname(join(directory, name))),
    name: basename(name),
    content: Buffer.from(content),
    openMode: 0o644,
    chmodMode: -1,
    uid: -1,
    gid: -1,
    atime: 1_000_000,
    mtime: 1_000_000,
    ...extra,
  };
}

const describeFailure = (entry: string, error: Error) => new Error(`entry "${entry}": ${error.message}`);

describe('startFileWriter', () => {
  // First in this file: no batch has started the shared worker yet.
  it('starts the shared worker before any batch, which then writes on it', async () => {
    expect(fileWriterRunning()).toBe(false);
    startFileWriter();
    expect(fileWriterRunning()).toBe(true);
    startFileWriter();
    const writer = new BatchedFileWriter({ ignoreChownErrors: false, describeFailure });
    await writer.add(job('early', 'written'), 'early');
    await writer.drain();
    expect(readFileSync(join(directory, 'early'), 'utf8')).toBe('written');
  });
});

describe.each(['libc', 'fs'] as const)('BatchedFileWriter (%s calls)', (mode) => {
  beforeAll(async () => {
    await stopFileWriter();
    if (mode === 'fs') process.env.GANTRY_FILE_WRITER_FS = '1';
    expect(await fileWriterMode()).toBe(mode);
  });
  afterAll(async () => {
    delete process.env.GANTRY_FILE_WRITER_FS;
    await stopFileWriter();
  });

  it('writes files in batches with their contents, modes and times', async () => {
    const writer = new BatchedFileWriter({ ignoreChownErrors: false, describeFailure, maxFilesPerBatch: 7 });
    for (let index = 0; index < 100; index++) {
      await writer.add(
        job(`f${index}`, `content ${index}`, index === 5 ? { chmodMode: 0o4755, mtime: 1234.5 } : {}),
        `f${index}`,
      );
    }
    await writer.drain();
    for (let index = 0; index < 100; index++) {
      expect(readFileSync(join(directory, `f${index}`), 'utf8')).toBe(`content ${index}`);
    }
    const special = statSync(join(directory, 'f5'));
    expect(special.mode & 0o7777).toBe(0o4755);
    expect(special.mtimeMs).toBe(1234500);
    expect(statSync(join(directory, 'f6')).mtimeMs).toBe(1_000_000_000);
  });

  it('sets owners (as root), set-id modes and sub-second times', async () => {
    const writer = new BatchedFileWriter({ ignoreChownErrors: false, describeFailure });
    const root = process.getuid?.() === 0;
    await writer.add(
      job('owned', 'o', { uid: root ? 1234 : -1, gid: root ? 5678 : -1, chmodMode: 0o2751 }),
      'owned',
    );
    // Before 1970 only through libc: node:fs takes a negative time for "now".
    const mtime = mode === 'libc' ? -1.5 : 1_500_000.75;
    await writer.add(job('times', 't', { atime: 2_000_000.25, mtime }), 'times');
    await writer.drain();
    const owned = statSync(join(directory, 'owned'));
    if (root) expect([owned.uid, owned.gid]).toEqual([1234, 5678]);
    expect(owned.mode & 0o7777).toBe(0o2751);
    const times = statSync(join(directory, 'times'), { bigint: true });
    expect(times.atimeNs).toBe(2_000_000_250_000_000n);
    expect(times.mtimeNs).toBe(BigInt(mtime * 1e9));
  });

  it("never writes through a symbolic link at the file's name", async () => {
    symlinkSync(join(directory, 'target'), join(directory, 'link'));
    const writer = new BatchedFileWriter({ ignoreChownErrors: false, describeFailure });
    await writer.add(job('link', 'through?'), 'link');
    await expect(writer.drain()).rejects.toThrow(/entry "link": EEXIST/);
    expect(existsSync(join(directory, 'target'))).toBe(false);
  });

  it('reports the first failing file by its entry name at drain, and never overwrites a file', async () => {
    const writer = new BatchedFileWriter({ ignoreChownErrors: false, describeFailure });
    await writer.add(job('good', 'x'), 'good');
    await writer.add(job('missing-directory/file', 'y'), 'missing-directory/file');
    await writer.add(job('good', 'overwritten?'), 'good again');
    await expect(writer.drain()).rejects.toThrow(/entry "missing-directory\/file": ENOENT/);
    expect(readFileSync(join(directory, 'good'), 'utf8')).toBe('x');
    // Once failed, nothing more is accepted.
    await expect(writer.add(job('later', 'z'), 'later')).rejects.toThrow(/missing-directory/);
  });

  it('writes many batches in flight at once without losing or mixing files', async () => {
    const writer = new BatchedFileWriter({ ignoreChownErrors: false, describeFailure, maxFilesPerBatch: 5 });
    for (let index = 0; index < 3000; index++) {
      await writer.add(job(`g${index}`, `content ${index}`.repeat(1 + (index % 7))), `g${index}`);
    }
    await writer.drain();
    for (let index = 0; index < 3000; index++) {
      expect(readFileSync(join(directory, `g${index}`), 'utf8')).toBe(
        `content ${index}`.repeat(1 + (index % 7)),
      );
    }
  });
});
