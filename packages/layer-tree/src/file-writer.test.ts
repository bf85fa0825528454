import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BatchedFileWriter, type FileJob, fileWriterRunning, startFileWriter } from './file-writer.js';

let directory: string;
beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'gantry-file-writer-'));
});
afterEach(() => rmSync(directory, { recursive: true, force: true }));

function job(name: string, content: string, extra: Partial<FileJob> = {}): FileJob {
  return {
    path: Buffer.from(join(directory, name)),
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

describe('BatchedFileWriter', () => {
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
