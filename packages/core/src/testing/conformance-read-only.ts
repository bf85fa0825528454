/**
 * The checks `runTransportConformanceSuite` runs for a read-only transport (capability `readOnly`): one
 * that only reads images others made (skopeo's `sif:`, a tarball importer…). Such a transport cannot write
 * the suite's fixture presets, so the test provides stored images (`createStoredImage`) and the checks
 * verify what the contract asks of a source, and that writing and deleting are refused.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { type Digest, digestOf } from '../digest.js';
import { ErrorCodes } from '../errors.js';
import { parseImageConfig } from '../manifest/config.js';
import { guessManifestMediaType } from '../manifest/digests.js';
import { isManifestListMediaType } from '../manifest/media-types.js';
import { parseManifest, parseManifestList } from '../manifest/parse.js';
import type { BlobInfo, ImageReference, ImageSource } from '../transport/contract.js';
import {
  type CheckResult,
  type ConformanceContext,
  expectCode,
  hashLayer,
  readSmallBlob,
  snapshotFiles,
} from './conformance-checks.js';

/** A stored image made by the test's `createStoredImage`, parsed, with the directory it lives in. */
async function storedImage(
  context: ConformanceContext,
): Promise<{ reference: ImageReference; directory: string }> {
  const create = context.options.createStoredImage;
  assert.ok(create, 'capability readOnly needs createStoredImage to make the images the checks read');
  const directory = await context.newDirectory();
  const text = await create({ directory });
  return { reference: context.options.transport.parseReference(text), directory };
}

async function withReadOnlySource<T>(
  context: ConformanceContext,
  reference: ImageReference,
  use: (source: ImageSource) => Promise<T>,
): Promise<T> {
  const source = await reference.newImageSource(context.options.context);
  try {
    return await use(source);
  } finally {
    await source.close();
  }
}

/** The bytes of a single image's manifest and what they name, checked against the blobs the source serves. */
async function readAndVerifyImage(source: ImageSource): Promise<Buffer> {
  const top = await source.getManifest();
  const mediaType = top.mediaType || guessManifestMediaType(top.bytes);
  const instances: { digest: Digest | undefined; bytes: Uint8Array; mediaType: string }[] = [];
  if (isManifestListMediaType(mediaType)) {
    const list = parseManifestList(top.bytes, mediaType);
    assert.ok(list.instances.length > 0, 'a manifest list read must list instances');
    for (const entry of list.instances) {
      const instance = await source.getManifest(entry.digest);
      assert.equal(
        digestOf(instance.bytes),
        entry.digest,
        `instance ${entry.digest} read back by its digest`,
      );
      instances.push({ digest: entry.digest, bytes: instance.bytes, mediaType: instance.mediaType });
    }
  } else {
    instances.push({ digest: undefined, bytes: top.bytes, mediaType });
  }
  for (const instance of instances) {
    const type = instance.mediaType || guessManifestMediaType(instance.bytes);
    const manifest = parseManifest(instance.bytes, type);
    assert.ok(manifest.config, `the manifest (${type}) names a config`);
    const configRead = await source.getBlob(manifest.config);
    const configBytes = await readSmallBlob(configRead.stream);
    assert.deepEqual(
      { digest: digestOf(configBytes), size: configBytes.byteLength },
      { digest: manifest.config.digest, size: manifest.config.size },
      'the config served is the one the manifest names',
    );
    const config = parseImageConfig(configBytes);
    const layers: readonly BlobInfo[] =
      (await source.layerInfosForCopy?.(instance.digest)) ?? manifest.layers;
    const diffIds = config.rootfs?.diff_ids ?? [];
    assert.equal(diffIds.length, layers.length, 'the config has one DiffID per layer');
    for (const [index, layer] of layers.entries()) {
      const read = await source.getBlob(layer);
      assert.ok(
        read.size === -1 || read.size === layer.size,
        `getBlob(${layer.digest}) size ${read.size}, the manifest says ${layer.size}`,
      );
      const hashed = await hashLayer(read.stream);
      assert.deepEqual(
        { digest: hashed.digest, size: hashed.size },
        { digest: layer.digest, size: layer.size },
        `the layer served for ${layer.digest} must be what the manifest describes`,
      );
      assert.equal(
        hashed.uncompressedDigest,
        diffIds[index],
        `layer ${index}'s content must match its DiffID`,
      );
    }
  }
  return Buffer.from(top.bytes);
}

/**
 * A stored image reads back consistently: the manifest (and each instance of a list) parses; the config
 * and every layer served hash to the digest and size the manifest names; each layer's uncompressed
 * content matches the config's DiffID; a second open gives the same manifest bytes (a manifest the
 * source generates must be stable, or its digest changes between reads); an unknown instance is
 * `ERR_GANTRY_IMAGE_NOT_FOUND`, an unknown blob `ERR_GANTRY_BLOB_NOT_FOUND`; `getSignatures()` is an
 * array; `close()` twice is harmless.
 */
export async function checkStoredImageReads(context: ConformanceContext): Promise<CheckResult> {
  const { reference } = await storedImage(context);
  const first = await withReadOnlySource(context, reference, async (source) => {
    const manifest = await readAndVerifyImage(source);
    await expectCode(
      source.getManifest(digestOf('no such manifest')),
      ErrorCodes.ImageNotFound,
      'getManifest() of an unknown instance',
    );
    await expectCode(
      source.getBlob({ digest: digestOf('no such blob'), size: -1 }),
      ErrorCodes.BlobNotFound,
      'getBlob() of an unknown digest',
    );
    assert.ok(Array.isArray(await source.getSignatures()), 'getSignatures() resolves to an array');
    return manifest;
  });
  const again = context.options.transport.parseReference(reference.stringWithinTransport());
  const source = await again.newImageSource(context.options.context);
  try {
    assert.ok(
      first.equals(Buffer.from((await source.getManifest()).bytes)),
      'the manifest differs between two opens of the same image (its digest would change)',
    );
  } finally {
    await source.close();
  }
  await source.close();
  return undefined;
}

/**
 * `newImageDestination()` rejects with `ERR_GANTRY_NOT_SUPPORTED`, for a stored image and for a new
 * location, and changes no file.
 */
export async function checkWritingRefused(context: ConformanceContext): Promise<CheckResult> {
  const { reference, directory } = await storedImage(context);
  const parent = path.dirname(directory);
  const before = await snapshotFiles(parent);
  await expectCode(
    reference.newImageDestination(context.options.context),
    ErrorCodes.NotSupported,
    'newImageDestination() of a read-only transport (existing image)',
  );
  const fresh = context.options.transport.parseReference(
    await context.options.createReference({ directory: path.join(parent, 'fresh'), tag: 'latest' }),
  );
  await expectCode(
    fresh.newImageDestination(context.options.context),
    ErrorCodes.NotSupported,
    'newImageDestination() of a read-only transport (new location)',
  );
  assert.deepEqual(await snapshotFiles(parent), before, 'files after refused writes');
  return undefined;
}

/** `deleteImage()` of a stored image rejects with `ERR_GANTRY_NOT_SUPPORTED`, and the image stays readable. */
export async function checkReadOnlyDeleteRefused(context: ConformanceContext): Promise<CheckResult> {
  const { reference, directory } = await storedImage(context);
  const before = await snapshotFiles(path.dirname(directory));
  await expectCode(
    reference.deleteImage(context.options.context),
    ErrorCodes.NotSupported,
    'deleteImage() of a read-only transport',
  );
  assert.deepEqual(await snapshotFiles(path.dirname(directory)), before, 'files after a refused delete');
  await withReadOnlySource(context, reference, readAndVerifyImage);
  return undefined;
}
