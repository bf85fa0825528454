/**
 * Hostile and malformed archives are refused with clear errors, and reading them writes nothing anywhere
 * (the archive is never extracted; a copy from one leaves no destination file).
 */
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import { buildFixtureImage, type FixtureImage, fixturePresets } from '@gantry/core/testing';
import {
  type Digest,
  digestHex,
  digestOf,
  type ErrorCode,
  ErrorCodes,
  hasErrorCode,
} from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ociArchiveTransport } from './index.js';
import { makeTar, type TarSpec, temporaryDirectory } from './test-support/tools.js';

let directory = '';
let remove: () => Promise<void> = async () => {};
let image: FixtureImage;
let layerDigest: Digest;
beforeAll(async () => {
  ({ directory, remove } = await temporaryDirectory());
  image = await buildFixtureImage(fixturePresets.ociMinimal, { directory: path.join(directory, 'fixture') });
  layerDigest = image.images[0]!.layerDigests[0]!;
});
afterAll(() => remove());

const blobName = (digest: Digest) => `blobs/sha256/${digestHex(digest)}`;

/** The entries of a valid archive of the fixture, `index.json` naming it `t`. */
async function validEntries(): Promise<TarSpec[]> {
  const entries: TarSpec[] = [{ name: 'oci-layout', content: '{"imageLayoutVersion":"1.0.0"}' }];
  for (const blob of image.blobs.values())
    entries.push({ name: blobName(blob.digest), content: await readFile(blob.path) });
  for (const [digest, manifest] of image.manifests)
    entries.push({ name: blobName(digest), content: manifest.bytes });
  entries.push({
    name: 'index.json',
    content: indexJson(image.topLevel.digest, image.topLevel.bytes.byteLength),
  });
  return entries;
}

function indexJson(digest: Digest, size: number, name = 't'): string {
  return JSON.stringify({
    schemaVersion: 2,
    manifests: [
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest,
        size,
        annotations: { 'org.opencontainers.image.ref.name': name },
      },
    ],
  });
}

let counter = 0;
async function writeArchive(content: Buffer | Promise<Buffer>): Promise<string> {
  const file = path.join(directory, `archive-${++counter}.tar`);
  await writeFile(file, await content);
  return file;
}

async function expectRejected(operation: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<void> {
  let failure: unknown;
  try {
    await operation;
  } catch (error) {
    failure = error;
  }
  expect(failure, 'the operation must reject').toBeDefined();
  if (!hasErrorCode(failure, code)) throw failure;
  expect(failure.message).toMatch(message);
}

/** Opens the archive as a source and copies from it; both must fail; nothing may appear on disk. */
async function expectRefused(file: string, code: ErrorCode, message: RegExp): Promise<void> {
  const before = await readdir(directory);
  await expectRejected(ociArchiveTransport.parseReference(`${file}:t`).newImageSource(), code, message);
  const destination = path.join(directory, `copy-of-${path.basename(file)}`);
  await expectRejected(
    copyImage(
      ociArchiveTransport.parseReference(`${file}:t`),
      ociArchiveTransport.parseReference(`${destination}:t`),
      { policy: insecureAcceptAnythingPolicy() },
    ),
    code,
    message,
  );
  expect(await readdir(directory)).toEqual(before);
  await expect(stat('/evil')).rejects.toThrow();
  await expect(stat(path.join(directory, '..', 'evil'))).rejects.toThrow();
}

describe('hostile archives', () => {
  it('reads the valid archive these tests start from', async () => {
    const file = await writeArchive(makeTar(await validEntries()));
    const source = await ociArchiveTransport.parseReference(`${file}:t`).newImageSource();
    expect(Buffer.from((await source.getManifest()).bytes)).toEqual(Buffer.from(image.topLevel.bytes));
    await source.close();
  });

  it('refuses entries with ..', async () => {
    const file = await writeArchive(makeTar([{ name: '../evil', content: 'x' }, ...(await validEntries())]));
    await expectRefused(file, ErrorCodes.InvalidLayout, /\.\./);
  });

  it('refuses entries with .. inside the name', async () => {
    const file = await writeArchive(
      makeTar([...(await validEntries()), { name: 'blobs/../../evil', content: 'x' }]),
    );
    await expectRefused(file, ErrorCodes.InvalidLayout, /\.\./);
  });

  it('refuses absolute names', async () => {
    const file = await writeArchive(makeTar([{ name: '/evil', content: 'x' }, ...(await validEntries())]));
    await expectRefused(file, ErrorCodes.InvalidLayout, /evil/);
  });

  it('refuses symbolic links pointing outside the archive', async () => {
    const entries = (await validEntries()).filter((entry) => entry.name !== blobName(layerDigest));
    entries.unshift({ name: blobName(layerDigest), type: 'symlink', linkname: '../../../../../etc/passwd' });
    await expectRefused(
      await writeArchive(makeTar(entries)),
      ErrorCodes.InvalidLayout,
      /outside|escap|\.\./i,
    );
  });

  it('refuses hard links pointing outside the archive', async () => {
    const entries = (await validEntries()).filter((entry) => entry.name !== blobName(layerDigest));
    entries.unshift({ name: blobName(layerDigest), type: 'link', linkname: '../etc/passwd' });
    await expectRefused(
      await writeArchive(makeTar(entries)),
      ErrorCodes.InvalidLayout,
      /outside|escap|\.\./i,
    );
  });

  it('refuses duplicate entries', async () => {
    const entries = await validEntries();
    entries.push({ name: 'index.json', content: indexJson(digestOf('other'), 5) });
    await expectRefused(await writeArchive(makeTar(entries)), ErrorCodes.InvalidLayout, /duplicate/);
  });

  it('refuses duplicate entries spelled differently (./index.json)', async () => {
    const entries = await validEntries();
    entries.push({ name: './index.json', content: indexJson(digestOf('other'), 5) });
    await expectRefused(await writeArchive(makeTar(entries)), ErrorCodes.InvalidLayout, /duplicate/);
  });

  it('refuses truncated archives', async () => {
    const whole = await makeTar(await validEntries());
    const layerSize = image.blobs.get(layerDigest)!.size;
    // Cut inside the data of the second entry (the first blob).
    const file = await writeArchive(whole.subarray(0, 1024 + 512 + Math.floor(layerSize / 2)));
    await expectRefused(file, ErrorCodes.InvalidLayout, /truncated/);
  });

  it('refuses an archive without index.json', async () => {
    const entries = (await validEntries()).filter((entry) => entry.name !== 'index.json');
    await expectRefused(await writeArchive(makeTar(entries)), ErrorCodes.InvalidLayout, /no index\.json/);
  });

  it('refuses a file that is not a tar archive', async () => {
    const file = await writeArchive(Promise.resolve(Buffer.from('not a tar archive\n'.repeat(100))));
    await expectRefused(file, ErrorCodes.InvalidLayout, /not a valid tar archive/);
  });

  it('refuses a manifest whose bytes do not have its digest', async () => {
    const entries = (await validEntries()).map((entry) =>
      entry.name === blobName(image.topLevel.digest) && 'content' in entry
        ? {
            name: entry.name,
            content: Buffer.from(Buffer.from(entry.content).toString().replace('layers', 'layerz')),
          }
        : entry,
    );
    await expectRefused(await writeArchive(makeTar(entries)), ErrorCodes.InvalidLayout, /corrupt/);
  });

  it('refuses a manifest larger than 4 MiB', async () => {
    const huge = Buffer.alloc(4 * 1024 * 1024 + 1, 0x20);
    const digest = digestOf(huge);
    const entries = (await validEntries()).filter((entry) => entry.name !== 'index.json');
    entries.push(
      { name: blobName(digest), content: huge },
      { name: 'index.json', content: indexJson(digest, huge.byteLength) },
    );
    await expectRefused(await writeArchive(makeTar(entries)), ErrorCodes.InvalidLayout, /too large/);
  });

  it('refuses a blob whose size differs from the manifest', async () => {
    const entries = (await validEntries()).map((entry) =>
      entry.name === blobName(layerDigest) && 'content' in entry
        ? { name: entry.name, content: Buffer.concat([Buffer.from(entry.content), Buffer.from('extra')]) }
        : entry,
    );
    const file = await writeArchive(makeTar(entries));
    const source = await ociArchiveTransport.parseReference(`${file}:t`).newImageSource();
    try {
      const layer = image.blobs.get(layerDigest)!;
      await expectRejected(
        source.getBlob({ digest: layerDigest, size: layer.size }),
        ErrorCodes.SizeMismatch,
        new RegExp(
          `size mismatch: the archive holds ${layer.size + 5} bytes, the manifest says ${layer.size}`,
        ),
      );
    } finally {
      await source.close();
    }
    const destination = path.join(directory, 'size-mismatch-copy.tar');
    await expectRejected(
      copyImage(
        ociArchiveTransport.parseReference(`${file}:t`),
        ociArchiveTransport.parseReference(`${destination}:t`),
        {
          policy: insecureAcceptAnythingPolicy(),
        },
      ),
      ErrorCodes.SizeMismatch,
      /size mismatch/,
    );
    await expect(stat(destination)).rejects.toThrow();
    expect((await readdir(directory)).filter((name) => name.includes('gantry-'))).toEqual([]);
  });
});
