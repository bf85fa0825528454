import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc64 } from './crc64.js';
import { pathFileGetter } from './file-getter.js';
import { assembleTarChunks, TarSplitWriter } from './tar-split.js';

let work: string;
let root: string;
let outside: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'gantry-file-getter-'));
  root = join(work, 'root');
  outside = join(work, 'outside');
  await mkdir(root);
  await mkdir(outside);
  await writeFile(join(outside, 'secret'), 'secret\n');
  await writeFile(join(root, 'inside'), 'secret\n');
  await symlink(outside, join(root, 'escape'));
  await symlink(join(outside, 'secret'), join(root, 'secret-link'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A tar-split naming one file with the content and CRC of `secret\n`. */
async function tarSplitNaming(name: string): Promise<Buffer> {
  const writer = new TarSplitWriter();
  writer.addSegment(Buffer.alloc(512));
  writer.addFile(Buffer.from(name), 7, crc64(Buffer.from('secret\n')));
  return writer.finish();
}

async function drain(tarSplit: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of assembleTarChunks(tarSplit, pathFileGetter(root))) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describe('pathFileGetter: a hostile tar-split reads nothing outside the layer', () => {
  it('reads a file inside the layer', async () => {
    expect((await drain(await tarSplitNaming('./inside'))).subarray(512).toString()).toBe('secret\n');
  });

  it('refuses names that climb out', async () => {
    await expect(drain(await tarSplitNaming('../outside/secret'))).rejects.toThrow(
      /layer file "\.\.\/outside\/secret" is outside the layer/,
    );
  });

  it('resolves a symbolic link in the path inside the layer, never out of it', async () => {
    await expect(drain(await tarSplitNaming('escape/secret'))).rejects.toThrow(
      /is missing from|cannot be opened/,
    );
  });

  it('does not follow a symbolic link as the file itself', async () => {
    await expect(drain(await tarSplitNaming('secret-link'))).rejects.toThrow(/cannot be opened/);
  });
});
