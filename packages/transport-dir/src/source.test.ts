import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Digest, digestHex, digestOf, ErrorCodes, MediaTypes } from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDirTransport } from './index.js';

const transport = createDirTransport({ durable: false });
const encoder = new TextEncoder();

let top: string;
beforeEach(async () => {
  top = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
});
afterEach(async () => {
  await rm(top, { recursive: true, force: true });
});

describe('dir: source', () => {
  it('rejects a missing directory or manifest.json with ERR_GANTRY_IMAGE_NOT_FOUND naming the path', async () => {
    const missing = path.join(top, 'missing');
    await expect(transport.parseReference(missing).newImageSource()).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
      message: `dir:${missing}: image not found: stat ${missing}/manifest.json: no such file or directory`,
    });
    await mkdir(missing);
    await expect(transport.parseReference(missing).newImageSource()).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
    });
  });

  it('reads files written by hand: exact bytes, signatures in order up to the first gap', async () => {
    const directory = path.join(top, 'image');
    await mkdir(directory);
    // Not canonical JSON on purpose: bytes must come back unchanged.
    const manifest = encoder.encode('{ "schemaVersion": 2,\n  "layers": [] }\n');
    await writeFile(path.join(directory, 'manifest.json'), manifest);
    const blob = encoder.encode('blob content');
    await writeFile(path.join(directory, digestHex(digestOf(blob))), blob);
    await writeFile(path.join(directory, 'signature-1'), 'one');
    await writeFile(path.join(directory, 'signature-2'), 'two');
    await writeFile(path.join(directory, 'signature-4'), 'after a gap: ignored');

    const source = await transport.parseReference(directory).newImageSource();
    try {
      // No mediaType field and no config: guessed as containers/image does (OCI manifest).
      expect(await source.getManifest()).toEqual({ bytes: manifest, mediaType: MediaTypes.OciManifest });
      expect(await source.getSignatures()).toEqual([encoder.encode('one'), encoder.encode('two')]);
      const { stream, size } = await source.getBlob({ digest: digestOf(blob), size: -1 });
      expect(size).toBe(blob.length);
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      expect(Buffer.concat(chunks).toString()).toBe('blob content');

      await expect(source.getBlob({ digest: digestOf('absent'), size: -1 })).rejects.toMatchObject({
        code: ErrorCodes.BlobNotFound,
        message: expect.stringContaining(digestHex(digestOf('absent'))),
      });
      await expect(source.getBlob({ digest: '../manifest.json' as Digest, size: -1 })).rejects.toMatchObject({
        code: ErrorCodes.InvalidDigest,
      });
      const controller = new AbortController();
      controller.abort();
      await expect(source.getManifest(undefined, { signal: controller.signal })).rejects.toMatchObject({
        code: ErrorCodes.Aborted,
      });
    } finally {
      await source.close();
      await source.close();
    }
    await expect(source.getManifest()).rejects.toMatchObject({ code: ErrorCodes.Internal });
  });

  it('refuses a manifest or signature over 4 MiB (containers/image limits) without reading it whole', async () => {
    const directory = path.join(top, 'huge');
    await mkdir(directory);
    const manifestFile = path.join(directory, 'manifest.json');
    await writeFile(manifestFile, `{"schemaVersion":2,"x":"${'a'.repeat(4 * 1024 * 1024)}"}`);
    const source = await transport.parseReference(directory).newImageSource();
    try {
      await expect(source.getManifest()).rejects.toMatchObject({
        code: ErrorCodes.InvalidLayout,
        message: expect.stringMatching(
          /^manifest .*manifest\.json is too large \(\d+ bytes, at most 4194304 accepted\)$/,
        ),
      });
      await writeFile(manifestFile, '{"schemaVersion":2,"layers":[]}');
      await writeFile(path.join(directory, 'signature-1'), Buffer.alloc(4 * 1024 * 1024 + 1));
      await expect(source.getSignatures()).rejects.toMatchObject({
        code: ErrorCodes.InvalidLayout,
        message: expect.stringMatching(/^signature .*signature-1 is too large/),
      });
    } finally {
      await source.close();
    }
  });

  it('reads an image at a relative path and at "" (the working directory)', async () => {
    const directory = path.join(top, 'image');
    await mkdir(directory);
    await writeFile(path.join(directory, 'manifest.json'), '{}');
    const previous = process.cwd();
    process.chdir(top);
    try {
      const source = await transport.parseReference('image').newImageSource();
      expect(new TextDecoder().decode((await source.getManifest()).bytes)).toBe('{}');
      expect((await source.getManifest()).mediaType).toBe(''); // unrecognisable
      await source.close();
      process.chdir(directory);
      const here = await transport.parseReference('').newImageSource();
      expect(new TextDecoder().decode((await here.getManifest()).bytes)).toBe('{}');
      await here.close();
    } finally {
      process.chdir(previous);
    }
  });
});
