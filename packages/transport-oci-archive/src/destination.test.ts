/**
 * What the oci-archive: destination does beyond the conformance suite: keeping the images of an existing
 * archive (checked with skopeo and tar), refusing destinations that are not archives, leaving nothing behind
 * when a write fails, reusing blobs of the existing archive, storing a blob once, taking back failed blobs,
 * entry metadata, long (PAX) names.
 */
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  writeFixtureToDestination,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { type Digest, digestHex, digestOf, ErrorCodes, hasErrorCode } from '@gantry/core/transport';
import { openTarArchive } from '@gantry/tar-archive';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ociArchiveTransport } from './index.js';
import { runTool, skopeo, temporaryDirectory } from './test-support/tools.js';

let directory = '';
let remove: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ directory, remove } = await temporaryDirectory());
});
afterEach(() => remove());

async function fixture(name: keyof typeof fixturePresets): Promise<FixtureImage> {
  return buildFixtureImage(fixturePresets[name], { directory: path.join(directory, 'fixtures', name) });
}

async function write(reference: string, image: FixtureImage): Promise<void> {
  await writeFixtureToDestination(
    image,
    await ociArchiveTransport.parseReference(reference).newImageDestination(),
  );
}

async function listing(file: string): Promise<string[]> {
  return (await runTool('tar', ['-tf', file])).trim().split('\n');
}

/** Every blob name an image needs in an archive. */
function blobNames(image: FixtureImage): string[] {
  return [...image.blobs.keys(), ...image.manifests.keys()].map(
    (digest) => `blobs/sha256/${digestHex(digest)}`,
  );
}

async function rawManifest(reference: string): Promise<string> {
  return skopeo(['inspect', '--raw', `oci-archive:${reference}`]);
}

async function expectCode(operation: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  let failure: unknown;
  try {
    await operation;
  } catch (error) {
    failure = error;
  }
  expect(failure, 'the operation must reject').toBeDefined();
  if (!hasErrorCode(failure, code as never)) throw failure;
  expect((failure as Error).message).toMatch(message);
}

/** Files in `directory` other than the fixtures (temporary files must not be left behind). */
async function filesLeft(): Promise<string[]> {
  return (await readdir(directory)).filter((name) => name !== 'fixtures').sort();
}

describe('oci-archive: destination', () => {
  it('keeps the images of an existing archive and replaces the one with the same name', async () => {
    const file = path.join(directory, 'images.tar');
    const [imageA, imageB, imageC] = await Promise.all([
      fixture('ociMinimal'),
      fixture('whiteoutLayers'),
      fixture('everyEntryType'),
    ]);
    await write(`${file}:a`, imageA);
    await write(`${file}:b`, imageB);
    expect(await rawManifest(`${file}:a`)).toBe(Buffer.from(imageA.topLevel.bytes).toString());
    expect(await rawManifest(`${file}:b`)).toBe(Buffer.from(imageB.topLevel.bytes).toString());

    await write(`${file}:a`, imageC);
    expect(await rawManifest(`${file}:a`)).toBe(Buffer.from(imageC.topLevel.bytes).toString());
    expect(await rawManifest(`${file}:b`)).toBe(Buffer.from(imageB.topLevel.bytes).toString());
    const names = await listing(file);
    expect(names.at(-1)).toBe('index.json');
    expect(new Set(names).size).toBe(names.length);
    // Exactly the blobs of the images named in the archive: image A's own blobs were dropped.
    const expected = new Set([...blobNames(imageB), ...blobNames(imageC)]);
    expect(names.filter((name) => /^blobs\/sha256\/[0-9a-f]{64}$/.test(name)).sort()).toEqual(
      [...expected].sort(),
    );
    const index = JSON.parse(await runTool('tar', ['-xOf', file, 'index.json'])) as { manifests: unknown[] };
    expect(index.manifests).toHaveLength(2);
    await skopeo(['copy', '--insecure-policy', `oci-archive:${file}:b`, `oci:${directory}/out:b`]);
    expect(await filesLeft()).toEqual(['images.tar', 'out']);
  });

  it('writers to one archive take turns: one opened while another writes adds to what that one committed', async () => {
    const file = path.join(directory, 'shared.tar');
    const [imageA, imageB] = await Promise.all([fixture('ociMinimal'), fixture('whiteoutLayers')]);
    const first = await ociArchiveTransport.parseReference(`${file}:a`).newImageDestination();
    expect(await filesLeft()).toContain('.shared.tar.gantry-lock');
    // Opened while the first writer holds the archive: it waits for the first one's commit, and reads
    // the archive that commit made (without the lock it would start from no archive and drop image a).
    const second = ociArchiveTransport.parseReference(`${file}:b`).newImageDestination();
    await writeFixtureToDestination(imageA, first);
    await writeFixtureToDestination(imageB, await second);
    expect(await rawManifest(`${file}:a`)).toBe(Buffer.from(imageA.topLevel.bytes).toString());
    expect(await rawManifest(`${file}:b`)).toBe(Buffer.from(imageB.topLevel.bytes).toString());
    expect(await filesLeft()).toEqual(['shared.tar']);
  });

  it('a writer waiting for the archive stops when its copy is aborted', async () => {
    const file = path.join(directory, 'busy.tar');
    const holder = await ociArchiveTransport.parseReference(`${file}:a`).newImageDestination();
    const controller = new AbortController();
    const waiting = ociArchiveTransport
      .parseReference(`${file}:b`)
      .newImageDestination({ signal: controller.signal });
    controller.abort(new Error('stop waiting'));
    await expectCode(waiting, ErrorCodes.Aborted, /stop waiting/);
    await holder.close();
    expect(await filesLeft()).toEqual([]);
  });

  it('replaces the whole archive on a write without a name, as skopeo', async () => {
    const [imageA, imageB, imageC] = await Promise.all([
      fixture('ociMinimal'),
      fixture('whiteoutLayers'),
      fixture('everyEntryType'),
    ]);
    const indexOf = async (file: string) =>
      (JSON.parse(await runTool('tar', ['-xOf', file, 'index.json'])) as { manifests: unknown[] }).manifests;
    for (const tool of ['gantry', 'skopeo'] as const) {
      const file = path.join(directory, `unnamed-${tool}.tar`);
      const source = path.join(directory, 'source');
      const writeWith = async (reference: string, image: FixtureImage, name: string) => {
        if (tool === 'gantry') return write(reference, image);
        await writeFixtureToOciLayout(image, source, name);
        await skopeo(['copy', '--insecure-policy', `oci:${source}:${name}`, `oci-archive:${reference}`]);
      };
      await writeWith(`${file}:c`, imageC, 'c');
      await writeWith(file, imageA, 'a');
      await writeWith(file, imageB, 'b');
      expect(await indexOf(file), tool).toHaveLength(1);
      expect(await rawManifest(file)).toBe(Buffer.from(imageB.topLevel.bytes).toString());
      // Exactly image B's blobs.
      expect(
        (await listing(file)).filter((name) => /^blobs\/sha256\/[0-9a-f]{64}$/.test(name)).sort(),
      ).toEqual(blobNames(imageB).sort());
      // The same image again: still one entry.
      await writeWith(`${file}:`, imageB, 'b');
      expect(await indexOf(file), tool).toHaveLength(1);
    }
  });

  it('keeps named images on a named write but drops unnamed ones (which skopeo would have replaced)', async () => {
    const file = path.join(directory, 'mixed.tar');
    const [imageA, imageB] = await Promise.all([fixture('ociMinimal'), fixture('whiteoutLayers')]);
    await write(file, imageA);
    await write(`${file}:b`, imageB);
    // Only image B remains, so the archive reads without a name again.
    expect(await rawManifest(file)).toBe(Buffer.from(imageB.topLevel.bytes).toString());
    expect(await rawManifest(`${file}:b`)).toBe(Buffer.from(imageB.topLevel.bytes).toString());
  });

  it('refuses a destination file that is not an OCI archive, and leaves it as it was', async () => {
    const file = path.join(directory, 'notes.txt');
    await writeFile(file, 'precious data\n');
    await expectCode(
      ociArchiveTransport.parseReference(`${file}:t`).newImageDestination(),
      ErrorCodes.InvalidLayout,
      /not a readable OCI archive/,
    );
    expect(await readFile(file, 'utf8')).toBe('precious data\n');
    expect(await filesLeft()).toEqual(['notes.txt']);
  });

  it('refuses a directory as the destination', async () => {
    await mkdir(path.join(directory, 'layout'));
    await expectCode(
      ociArchiveTransport.parseReference(`${directory}/layout:t`).newImageDestination(),
      ErrorCodes.InvalidLayout,
      /is a directory/,
    );
  });

  it('refuses a FIFO as the destination', async () => {
    await runTool('mkfifo', [path.join(directory, 'fifo')]);
    await expectCode(
      ociArchiveTransport.parseReference(`${directory}/fifo:t`).newImageDestination(),
      ErrorCodes.NotSupported,
      /not a regular file/,
    );
  });

  it('writes into an empty existing file', async () => {
    const file = path.join(directory, 'empty.tar');
    await writeFile(file, '');
    const image = await fixture('ociMinimal');
    await write(`${file}:t`, image);
    expect(await rawManifest(`${file}:t`)).toBe(Buffer.from(image.topLevel.bytes).toString());
  });

  it('leaves no file when a write is not committed, and an existing archive unchanged', async () => {
    const file = path.join(directory, 'kept.tar');
    const image = await fixture('ociMinimal');
    await writeFixtureToDestination(
      image,
      await ociArchiveTransport.parseReference(`${file}:t`).newImageDestination(),
      {
        commit: false,
      },
    );
    expect(await filesLeft()).toEqual([]);
    await write(`${file}:t`, image);
    const before = await readFile(file);
    const other = await fixture('whiteoutLayers');
    await writeFixtureToDestination(
      other,
      await ociArchiveTransport.parseReference(`${file}:u`).newImageDestination(),
      {
        commit: false,
      },
    );
    expect(Buffer.compare(await readFile(file), before)).toBe(0);
    expect(await filesLeft()).toEqual(['kept.tar']);
  });

  it('leaves no file when a copy is aborted half-way', async () => {
    const image = await fixture('manySmallFiles');
    const sourceFile = path.join(directory, 'source.tar');
    await write(`${sourceFile}:t`, image);
    const controller = new AbortController();
    const destination = path.join(directory, 'aborted.tar');
    let failure: unknown;
    try {
      await copyImage(
        ociArchiveTransport.parseReference(`${sourceFile}:t`),
        ociArchiveTransport.parseReference(`${destination}:t`),
        {
          policy: insecureAcceptAnythingPolicy(),
          signal: controller.signal,
          onProgress: (event) => {
            if (event.type === 'blob-progress') controller.abort(new Error('stop now'));
          },
        },
      );
    } catch (error) {
      failure = error;
    }
    expect(hasErrorCode(failure, ErrorCodes.Aborted)).toBe(true);
    expect(await filesLeft()).toEqual(['source.tar']);
  });

  it('reuses blobs of the existing archive, also for the image replacing theirs', async () => {
    const file = path.join(directory, 'reuse.tar');
    const image = await fixture('ociMinimal');
    await write(`${file}:a`, image);
    for (const name of ['copy', 'a']) {
      const destination = await ociArchiveTransport.parseReference(`${file}:${name}`).newImageDestination();
      try {
        for (const blob of image.blobs.values()) {
          const reused = await destination.tryReusingBlob!(
            { digest: blob.digest, size: blob.size },
            { isConfig: false, canSubstitute: false },
          );
          expect(reused).toEqual({ reused: true, blob: { digest: blob.digest, size: blob.size } });
        }
        await destination.putManifest(image.topLevel.bytes, image.topLevel.mediaType);
        await destination.commit();
      } finally {
        await destination.close();
      }
    }
    // Both names hold the complete image: skopeo copies each out, verifying every blob.
    for (const name of ['a', 'copy']) {
      await skopeo([
        'copy',
        '--insecure-policy',
        `oci-archive:${file}:${name}`,
        `oci:${directory}/out-${name}:x`,
      ]);
    }
    const names = await listing(file);
    expect(new Set(names).size).toBe(names.length);
  });

  it('stores a blob written twice once, also when its digest was not known', async () => {
    const file = path.join(directory, 'once.tar');
    const image = await fixture('ociMinimal');
    const layerDigest = image.images[0]!.layerDigests[0]!;
    const layer = image.blobs.get(layerDigest)!;
    const destination = await ociArchiveTransport.parseReference(`${file}:t`).newImageDestination();
    const stored = await destination.putBlob(layer.open(), { size: -1 }, { isConfig: false });
    expect(stored).toEqual({ digest: layerDigest, size: layer.size });
    expect(await destination.putBlob(layer.open(), { size: -1 }, { isConfig: false })).toEqual(stored);
    await writeFixtureToDestination(image, destination);
    const names = await listing(file);
    expect(names.filter((name) => name === `blobs/sha256/${digestHex(layerDigest)}`)).toHaveLength(1);
    expect(await rawManifest(`${file}:t`)).toBe(Buffer.from(image.topLevel.bytes).toString());
  });

  it('takes back a blob whose size is not the announced one, and stays usable', async () => {
    const file = path.join(directory, 'sizes.tar');
    const image = await fixture('ociMinimal');
    const destination = await ociArchiveTransport.parseReference(`${file}:t`).newImageDestination();
    const content = Buffer.from('twelve bytes');
    let failure: unknown;
    try {
      await destination.putBlob(
        Readable.from([content]),
        { digest: digestOf(content), size: 5 },
        { isConfig: false },
      );
    } catch (error) {
      failure = error;
    }
    expect(hasErrorCode(failure, ErrorCodes.SizeMismatch)).toBe(true);
    await writeFixtureToDestination(image, destination);
    expect(await listing(file)).not.toContain(`blobs/sha256/${digestHex(digestOf(content))}`);
    expect(await rawManifest(`${file}:t`)).toBe(Buffer.from(image.topLevel.bytes).toString());
  });

  it('takes back a blob whose stream fails after data was written, and stays usable', async () => {
    const file = path.join(directory, 'failing.tar');
    const image = await fixture('ociMinimal');
    // More than one write batch (1 MiB), so that data reaches the file before the failure.
    const content = Buffer.alloc(1_500_000, 7);
    const failing = () =>
      Readable.from(
        (async function* () {
          yield content.subarray(0, 1_200_000);
          throw new Error('source broke');
        })(),
      );
    const destination = await ociArchiveTransport.parseReference(`${file}:t`).newImageDestination();
    const known = { digest: digestOf(content), size: content.byteLength };
    const sha512 = digestOf(content, 'sha512') as Digest;
    for (const info of [
      known,
      { digest: known.digest, size: -1 },
      { digest: sha512, size: -1 },
      { size: -1 },
    ]) {
      await expect(destination.putBlob(failing(), info, { isConfig: false })).rejects.toThrow(/source broke/);
    }
    await writeFixtureToDestination(image, destination);
    const clean = path.join(directory, 'clean.tar');
    await write(`${clean}:t`, image);
    // Nothing of the failed blobs remains but the directory `blobs/sha512/`, written before the blob: GNU
    // tar reads every entry, and the archive is one header block larger than a clean write.
    const names = await listing(file);
    expect(names.filter((name) => name !== 'blobs/sha512/')).toEqual(await listing(clean));
    expect(names).toContain('blobs/sha512/');
    expect((await stat(file)).size).toBe((await stat(clean)).size + 512);
    expect(await rawManifest(`${file}:t`)).toBe(Buffer.from(image.topLevel.bytes).toString());
  });

  it('writes entries owned by 0:0, files 0644 and directories 0755, dated at the write', async () => {
    const file = path.join(directory, 'owners.tar');
    const image = await fixture('ociMinimal');
    const started = Math.floor(Date.now() / 1000);
    await write(`${file}:t`, image);
    const reader = await openTarArchive(file);
    try {
      for (const entry of reader.entries) {
        expect(entry.mode, entry.name).toBe(entry.type === 'directory' ? 0o755 : 0o644);
        expect([entry.uid, entry.gid], entry.name).toEqual([0, 0]);
        expect(entry.mtime, entry.name).toBeGreaterThanOrEqual(started);
        expect(entry.mtime, entry.name).toBeLessThanOrEqual(Date.now() / 1000);
      }
    } finally {
      await reader.close();
    }
    const verbose = (await runTool('tar', ['--numeric-owner', '-tvf', file])).trim().split('\n');
    expect(verbose.filter((line) => !/^(-rw-r--r--|drwxr-xr-x) 0\/0 /.test(line))).toEqual([]);
  });

  it('writes names longer than ustar allows (sha512 blobs) with PAX headers that tar and Gantry read', async () => {
    const file = path.join(directory, 'sha512.tar');
    const image = await fixture('ociMinimal');
    const content = Buffer.from('a blob named by its sha512 digest\n');
    const digest = digestOf(content, 'sha512') as Digest;
    const destination = await ociArchiveTransport.parseReference(`${file}:t`).newImageDestination();
    expect(
      await destination.putBlob(
        Readable.from([content]),
        { digest, size: content.byteLength },
        { isConfig: false },
      ),
    ).toEqual({
      digest,
      size: content.byteLength,
    });
    await writeFixtureToDestination(image, destination);
    const name = `blobs/sha512/${digestHex(digest)}`;
    expect(name.length).toBeGreaterThan(100);
    expect(await listing(file)).toContain(name);
    expect(await runTool('tar', ['-xOf', file, name])).toBe(content.toString());
    const source = await ociArchiveTransport.parseReference(`${file}:t`).newImageSource();
    try {
      const blob = await source.getBlob({ digest, size: content.byteLength });
      const chunks: Buffer[] = [];
      for await (const chunk of blob.stream) chunks.push(chunk as Buffer);
      expect(Buffer.concat(chunks).toString()).toBe(content.toString());
    } finally {
      await source.close();
    }
  });

  it('copies an image to another name within the same archive', async () => {
    const file = path.join(directory, 'same.tar');
    const image = await fixture('multiArchOci');
    await write(`${file}:original`, image);
    const result = await copyImage(
      ociArchiveTransport.parseReference(`${file}:original`),
      ociArchiveTransport.parseReference(`${file}:copy`),
      { policy: insecureAcceptAnythingPolicy(), imageListSelection: 'all' },
    );
    expect(result.manifestDigest).toBe(image.topLevel.digest);
    for (const name of ['original', 'copy']) {
      expect(await rawManifest(`${file}:${name}`)).toBe(Buffer.from(image.topLevel.bytes).toString());
    }
    const names = await listing(file);
    expect(new Set(names).size).toBe(names.length);
    expect(await filesLeft()).toEqual(['same.tar']);
  });

  it('refuses @N destinations', async () => {
    await expectCode(
      ociArchiveTransport.parseReference(`${directory}/a.tar:@0`).newImageDestination(),
      ErrorCodes.InvalidReference,
      /must not contain a manifest index @0/,
    );
  });

  it('refuses deleteImage with ERR_GANTRY_NOT_SUPPORTED', async () => {
    await expectCode(
      ociArchiveTransport.parseReference(`${directory}/a.tar:t`).deleteImage(),
      ErrorCodes.NotSupported,
      /not supported/,
    );
    await expect(stat(path.join(directory, 'a.tar'))).rejects.toThrow();
  });
});
