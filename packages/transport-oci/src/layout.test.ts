import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readSmallFile } from './layout.js';

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'gantry-oci-layout-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('readSmallFile', () => {
  it('reads a file whole, whatever its size under the limit', async () => {
    for (const size of [0, 1, 4095, 4096, 70_000]) {
      const content = Buffer.alloc(size, size % 251);
      const filePath = path.join(directory, `file-${size}`);
      await writeFile(filePath, content);
      const bytes = await readSmallFile(filePath, 70_000, 'test file');
      expect(Buffer.from(bytes).equals(content)).toBe(true);
    }
  });

  it('refuses a file larger than the limit, naming it', async () => {
    const filePath = path.join(directory, 'large');
    await writeFile(filePath, Buffer.alloc(1001));
    await expect(readSmallFile(filePath, 1000, 'test file')).rejects.toThrow(
      `test file ${filePath} is too large (1001 bytes, at most 1000 accepted)`,
    );
  });

  it('reads past the size the file reported, up to the limit (a file that grew)', async () => {
    // A /proc file reports size 0 and has content: the reader must keep reading beyond the reported size.
    const status = await readSmallFile('/proc/self/status', 1 << 20, 'status');
    expect(Buffer.from(status).toString('utf8')).toMatch(/^Name:/);
    await expect(readSmallFile('/proc/self/status', 16, 'status')).rejects.toThrow(
      'status /proc/self/status is larger than 16 bytes',
    );
  });

  it('rejects a missing file with the file-system error', async () => {
    await expect(readSmallFile(path.join(directory, 'missing'), 10, 'test file')).rejects.toMatchObject({
      code: 'ENOENT',
    });
  });
});
