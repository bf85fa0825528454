/**
 * The checks behind `runTransportConformanceSuite`, usable without vitest (they throw on failure), so the
 * suite's own tests can show that each check fails against a transport that breaks its rule.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { type Digest, digestOf, verifyingStage } from '../digest.js';
import { type ErrorCode, ErrorCodes, hasErrorCode, isGantryError } from '../errors.js';
import type {
  ImageDestination,
  ImageReference,
  ImageSource,
  Transport,
  TransportContext,
} from '../transport/contract.js';
import { assertTransport } from '../transport/registry.js';
import { buildFixtureImage } from './fixture-builder.js';
import { type FixturePresetName, fixturePresets } from './fixture-presets.js';
import { writeFixtureToDestination } from './fixture-source.js';
import type { FixtureImage } from './fixture-types.js';
import { seededRandomBytes } from './random-data.js';

/** What a transport under test can do; a capability left out counts as absent. */
export interface TransportConformanceCapabilities {
  /** Stores OCI indexes / Docker manifest lists with their instances. */
  manifestLists?: boolean;
  /** Stores signatures (`putSignatures` / `getSignatures`); without it `putSignatures` must reject. */
  signatures?: boolean;
  /** Deletes images (`deleteImage`); without it `deleteImage` must reject with `ERR_GANTRY_NOT_SUPPORTED`. */
  delete?: boolean;
  /** Holds several images at one location, told apart by the tag (e.g. `oci:dir:tag`). */
  severalImagesPerLocation?: boolean;
}

/** Options of `runTransportConformanceSuite`. */
export interface TransportConformanceOptions {
  /** Names the suite in test output. */
  name: string;
  transport: Transport;
  /**
   * The within-transport reference string (no `name:` prefix) of a fresh location. `directory` is a path
   * that does not exist yet inside a per-test temporary directory (create it here if the transport
   * needs it to exist); `tag` is a valid docker tag, different for images that must coexist.
   */
  createReference(context: { directory: string; tag: string }): string | Promise<string>;
  /** Context passed to `newImageSource` / `newImageDestination` / `deleteImage`. */
  context?: TransportContext;
  capabilities?: TransportConformanceCapabilities;
  /**
   * Within-transport strings that `parseReference` must reject with `ERR_GANTRY_INVALID_REFERENCE`.
   * The check is registered only when some are given (some transports, like `dir:`, accept any path).
   */
  invalidReferences?: string[];
  /**
   * Presets to round-trip. Default: every single-image preset, plus the list presets when
   * `capabilities.manifestLists`. Presets whose manifest types the destination does not accept
   * (`supportedManifestMimeTypes`) are skipped, with the reason.
   */
  presets?: FixturePresetName[];
}

/** Same as `TransportConformanceOptions` (the name the architecture document uses). */
export type ConformanceOptions = TransportConformanceOptions;

/** Shared state of one run of the checks: fixtures built once, and temporary directories. */
export interface ConformanceContext {
  readonly options: TransportConformanceOptions;
  /** Builds (once) and returns a preset. */
  fixture(name: FixturePresetName): Promise<FixtureImage>;
  /** A fresh location: a path that does not exist yet, inside a new temporary directory. */
  newDirectory(): Promise<string>;
  /** Removes every temporary directory. */
  dispose(): Promise<void>;
}

/** A check's outcome: done, or skipped with a reason (never silently). */
export type CheckResult = undefined | { skipped: string };

export function createConformanceContext(options: TransportConformanceOptions): ConformanceContext {
  const temporaryDirectories: string[] = [];
  const fixtures = new Map<FixturePresetName, Promise<FixtureImage>>();
  let fixtureDirectory: Promise<string> | undefined;
  const makeTemporary = async () => {
    const directory = await mkdtemp(path.join(options.context?.temporaryDirectory ?? os.tmpdir(), 'gantry-'));
    temporaryDirectories.push(directory);
    return directory;
  };
  return {
    options,
    fixture(name) {
      let built = fixtures.get(name);
      if (!built) {
        fixtureDirectory ??= makeTemporary();
        built = fixtureDirectory.then((directory) =>
          buildFixtureImage(fixturePresets[name], { directory: path.join(directory, 'blobs') }),
        );
        fixtures.set(name, built);
      }
      return built;
    },
    async newDirectory() {
      return path.join(await makeTemporary(), 'location');
    },
    async dispose() {
      await Promise.all(
        temporaryDirectories.map((directory) => rm(directory, { recursive: true, force: true })),
      );
      temporaryDirectories.length = 0;
      fixtures.clear();
      fixtureDirectory = undefined;
    },
  };
}

async function referenceAt(
  context: ConformanceContext,
  directory: string,
  tag = 'latest',
): Promise<ImageReference> {
  const text = await context.options.createReference({ directory, tag });
  return context.options.transport.parseReference(text);
}

/** A new reference object for the same image, as a later process would get it. */
function reparse(context: ConformanceContext, reference: ImageReference): ImageReference {
  return context.options.transport.parseReference(reference.stringWithinTransport());
}

function describeError(error: unknown): string {
  if (isGantryError(error)) return `${error.code}: ${error.message}`;
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Asserts that `operation` rejects with a Gantry error carrying `code`. */
async function expectCode(
  operation: Promise<unknown> | (() => unknown),
  code: ErrorCode,
  what: string,
): Promise<unknown> {
  try {
    await (typeof operation === 'function' ? operation() : operation);
  } catch (error) {
    if (!hasErrorCode(error, code)) assert.fail(`${what}: expected ${code}, got ${describeError(error)}`);
    return error;
  }
  assert.fail(`${what}: expected a rejection with ${code}, but it succeeded`);
}

async function withSource<T>(
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

async function hashStream(stream: AsyncIterable<Uint8Array>): Promise<{ digest: Digest; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    size += chunk.byteLength;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

function manifestMediaTypes(image: FixtureImage): string[] {
  return [...new Set([...image.manifests.values()].map((manifest) => manifest.mediaType))];
}

async function openDestination(
  context: ConformanceContext,
  reference: ImageReference,
): Promise<ImageDestination> {
  return reference.newImageDestination(context.options.context);
}

/** Writes `image` at `reference` (contract call order, commit, close). */
async function writeImage(
  context: ConformanceContext,
  reference: ImageReference,
  image: FixtureImage,
  extra: Parameters<typeof writeFixtureToDestination>[2] = {},
): Promise<void> {
  await writeFixtureToDestination(image, await openDestination(context, reference), extra);
}

/** Asserts that the image at `reference` holds exactly `image`: manifests byte for byte and every blob. */
async function expectStoredImage(
  context: ConformanceContext,
  reference: ImageReference,
  image: FixtureImage,
): Promise<void> {
  await withSource(context, reparse(context, reference), async (source) => {
    const top = await source.getManifest();
    assert.ok(
      Buffer.from(top.bytes).equals(Buffer.from(image.topLevel.bytes)),
      `top-level manifest bytes differ from what was written (${top.bytes.byteLength} vs ${image.topLevel.bytes.byteLength} bytes)`,
    );
    if (top.mediaType !== '')
      assert.equal(top.mediaType, image.topLevel.mediaType, 'top-level manifest MIME type');
    if (image.images.length > 1 || image.images[0]!.manifestDigest !== image.topLevel.digest) {
      for (const single of image.images) {
        const instance = await source.getManifest(single.manifestDigest);
        const expected = image.manifests.get(single.manifestDigest)!;
        assert.ok(
          Buffer.from(instance.bytes).equals(Buffer.from(expected.bytes)),
          `manifest of instance ${single.manifestDigest} differs from what was written`,
        );
        if (instance.mediaType !== '')
          assert.equal(instance.mediaType, expected.mediaType, 'instance MIME type');
      }
    }
    for (const blob of image.blobs.values()) {
      const read = await source.getBlob({ digest: blob.digest, size: blob.size, mediaType: blob.mediaType });
      assert.ok(
        read.size === -1 || read.size === blob.size,
        `getBlob(${blob.digest}) size ${read.size}, expected ${blob.size}`,
      );
      assert.deepEqual(
        await hashStream(read.stream),
        { digest: blob.digest, size: blob.size },
        `bytes of blob ${blob.digest}`,
      );
    }
  });
}

export async function checkTransportShape(context: ConformanceContext): Promise<CheckResult> {
  const { transport, name } = context.options;
  assert.equal(assertTransport(transport, name), transport);
  const reference = await referenceAt(context, await context.newDirectory());
  assert.equal(
    reference.transport,
    transport,
    'parseReference() must return references whose transport is this one',
  );
  for (const method of [
    'stringWithinTransport',
    'dockerReference',
    'policyConfigurationIdentity',
    'policyConfigurationNamespaces',
    'newImageSource',
    'newImageDestination',
    'deleteImage',
  ] as const) {
    assert.equal(typeof reference[method], 'function', `ImageReference.${method} must be a function`);
  }
  assert.ok(
    Array.isArray(reference.policyConfigurationNamespaces()),
    'policyConfigurationNamespaces() returns an array',
  );
  return undefined;
}

export async function checkReferenceRoundTrip(context: ConformanceContext): Promise<CheckResult> {
  const { transport } = context.options;
  const reference = await referenceAt(context, await context.newDirectory(), 'round-trip');
  const text = reference.stringWithinTransport();
  assert.equal(typeof text, 'string');
  const again = transport.parseReference(text);
  assert.equal(
    again.stringWithinTransport(),
    text,
    'parseReference(ref.stringWithinTransport()) must give an equal reference',
  );
  assert.equal(
    again.policyConfigurationIdentity(),
    reference.policyConfigurationIdentity(),
    'policy identity after round trip',
  );
  assert.deepEqual(
    again.policyConfigurationNamespaces(),
    reference.policyConfigurationNamespaces(),
    'policy namespaces',
  );
  assert.equal(
    again.dockerReference()?.toString(),
    reference.dockerReference()?.toString(),
    'docker reference',
  );
  return undefined;
}

export async function checkInvalidReferences(context: ConformanceContext): Promise<CheckResult> {
  const invalid = context.options.invalidReferences ?? [];
  assert.ok(invalid.length > 0, 'no invalid references were given to check');
  for (const text of invalid) {
    await expectCode(
      () => context.options.transport.parseReference(text),
      ErrorCodes.InvalidReference,
      `parseReference(${JSON.stringify(text)})`,
    );
  }
  return undefined;
}

export async function checkImageRoundTrip(
  context: ConformanceContext,
  preset: FixturePresetName,
): Promise<CheckResult> {
  const image = await context.fixture(preset);
  const reference = await referenceAt(context, await context.newDirectory());
  const destination = await openDestination(context, reference);
  const supported = destination.properties.supportedManifestMimeTypes;
  const unsupported = supported ? manifestMediaTypes(image).filter((type) => !supported.includes(type)) : [];
  if (unsupported.length > 0) {
    await destination.close();
    return { skipped: `the destination does not accept ${unsupported.join(', ')}` };
  }
  await writeFixtureToDestination(image, destination);
  await expectStoredImage(context, reference, image);
  await withSource(context, reparse(context, reference), async (source) => {
    await expectCode(
      source.getManifest(digestOf(`no such manifest ${preset}`)),
      ErrorCodes.ImageNotFound,
      'getManifest() of an unknown instance',
    );
    assert.deepEqual(await source.getSignatures(), [], 'an image written without signatures has none');
  });
  return undefined;
}

export async function checkMissingImage(context: ConformanceContext): Promise<CheckResult> {
  const reference = await referenceAt(context, await context.newDirectory());
  await expectCode(
    reference.newImageSource(context.options.context),
    ErrorCodes.ImageNotFound,
    'newImageSource() of a missing image',
  );
  return undefined;
}

export async function checkCloseWithoutCommit(context: ConformanceContext): Promise<CheckResult> {
  const image = await context.fixture('ociMinimal');
  const reference = await referenceAt(context, await context.newDirectory());
  await writeImage(context, reference, image, { commit: false });
  await expectCode(
    reparse(context, reference).newImageSource(context.options.context),
    ErrorCodes.ImageNotFound,
    'newImageSource() after close() without commit()',
  );
  return undefined;
}

/** Writes `stream` with putBlob expecting a rejection, then commits a valid image and checks the blob is absent. */
async function checkFailedPutBlob(
  context: ConformanceContext,
  stream: Readable,
  claimed: { digest: Digest; size: number },
  expectedCode: ErrorCode | undefined,
  what: string,
): Promise<CheckResult> {
  const image = await context.fixture('ociMinimal');
  const reference = await referenceAt(context, await context.newDirectory());
  const destination = await openDestination(context, reference);
  try {
    const putting = destination.putBlob(
      stream,
      { digest: claimed.digest, size: claimed.size },
      { isConfig: false },
    );
    if (expectedCode) {
      await expectCode(putting, expectedCode, what);
    } else {
      await assert.rejects(putting, `${what} must reject`);
    }
  } catch (error) {
    await destination.close();
    throw error;
  }
  // The destination stays usable: retries write other blobs after a failed one.
  await writeFixtureToDestination(image, destination);
  await withSource(context, reparse(context, reference), async (source) => {
    let stored: Awaited<ReturnType<ImageSource['getBlob']>> | undefined;
    try {
      stored = await source.getBlob(claimed);
    } catch (error) {
      if (!hasErrorCode(error, ErrorCodes.BlobNotFound)) {
        assert.fail(
          `getBlob() of a failed blob: expected ${ErrorCodes.BlobNotFound}, got ${describeError(error)}`,
        );
      }
    }
    if (stored) {
      const content = await hashStream(stored.stream);
      assert.fail(`${what}: a blob was stored under ${claimed.digest} (${content.size} bytes)`);
    }
  });
  await expectStoredImage(context, reference, image);
  return undefined;
}

export async function checkPutBlobStreamFailure(context: ConformanceContext): Promise<CheckResult> {
  const size = 256 * 1024;
  const chunks: Uint8Array[] = [];
  for await (const chunk of seededRandomBytes('conformance-stream-failure', size)) chunks.push(chunk);
  const whole = Buffer.concat(chunks);
  const digest = digestOf(whole);
  async function* failing() {
    yield whole.subarray(0, size / 2);
    await new Promise((resolve) => setTimeout(resolve, 5));
    throw new Error('simulated read failure half-way through the blob');
  }
  return checkFailedPutBlob(
    context,
    Readable.from(failing()),
    { digest, size },
    undefined,
    'putBlob() of a stream that errors',
  );
}

export async function checkPutBlobVerificationFailure(context: ConformanceContext): Promise<CheckResult> {
  const content = Buffer.from('content that does not match the digest it is announced with\n'.repeat(1000));
  const wrongDigest = digestOf('some other content');
  const verify = verifyingStage({ expectedDigest: wrongDigest, expectedSize: content.byteLength });
  const stream = Readable.from(
    verify(Readable.from([content.subarray(0, 30_000), content.subarray(30_000)])),
  );
  return checkFailedPutBlob(
    context,
    stream,
    { digest: wrongDigest, size: content.byteLength },
    ErrorCodes.DigestMismatch,
    'putBlob() through a failing digest verification stage',
  );
}

export async function checkPutBlobWithUnknownDigest(context: ConformanceContext): Promise<CheckResult> {
  const image = await context.fixture('ociMinimal');
  const layerDigest = image.images[0]!.layerDigests[0]!;
  const layer = image.blobs.get(layerDigest)!;
  const reference = await referenceAt(context, await context.newDirectory());
  const destination = await openDestination(context, reference);
  try {
    const stored = await destination.putBlob(
      layer.open(),
      { size: -1, mediaType: layer.mediaType },
      { isConfig: false },
    );
    assert.equal(stored.digest, layerDigest, 'putBlob() without a digest must return the digest it computed');
    assert.equal(stored.size, layer.size, 'putBlob() without a size must return the size it stored');
  } catch (error) {
    await destination.close();
    throw error;
  }
  // Writing the image (the layer again, with its digest) and committing makes it readable.
  await writeFixtureToDestination(image, destination);
  await expectStoredImage(context, reference, image);
  return undefined;
}

export async function checkTryReusingBlob(context: ConformanceContext): Promise<CheckResult> {
  const reference = await referenceAt(context, await context.newDirectory());
  const destination = await openDestination(context, reference);
  try {
    if (!destination.tryReusingBlob) return { skipped: 'the destination has no tryReusingBlob()' };
    const absent = digestOf('a blob nobody stored');
    const result = await destination.tryReusingBlob(
      { digest: absent, size: 21 },
      { isConfig: false, canSubstitute: false },
    );
    assert.deepEqual(result, { reused: false }, 'tryReusingBlob() of a blob the destination does not have');
  } finally {
    await destination.close();
  }
  return undefined;
}

const signatureA = new Uint8Array([0x89, 0x00, 0x01, 0xff, 0x42, 0x0a]);
const signatureB = Buffer.from('second signature, text\n');

export async function checkSignaturesRoundTrip(context: ConformanceContext): Promise<CheckResult> {
  const image = await context.fixture('ociMinimal');
  const reference = await referenceAt(context, await context.newDirectory());
  const destination = await openDestination(context, reference);
  assert.equal(destination.properties.supportsSignatures, true, 'properties.supportsSignatures');
  await writeFixtureToDestination(image, destination, { signatures: [signatureA, signatureB] });
  await withSource(context, reparse(context, reference), async (source) => {
    const read = (await source.getSignatures()).map((signature) => Buffer.from(signature));
    assert.deepEqual(read, [Buffer.from(signatureA), signatureB], 'signatures read back');
  });
  if (context.options.capabilities?.manifestLists) {
    const list = await context.fixture('multiArchOci');
    const listReference = await referenceAt(context, await context.newDirectory());
    const instance = list.images[1]!.manifestDigest;
    await writeImage(context, listReference, list, {
      signatures: [signatureB],
      instanceSignatures: new Map([[instance, [signatureA]]]),
    });
    await withSource(context, reparse(context, listReference), async (source) => {
      assert.deepEqual(
        (await source.getSignatures(instance)).map((signature) => Buffer.from(signature)),
        [Buffer.from(signatureA)],
        'instance signatures',
      );
      assert.deepEqual(
        (await source.getSignatures()).map((signature) => Buffer.from(signature)),
        [signatureB],
        'top-level signatures of a list',
      );
      assert.deepEqual(
        await source.getSignatures(list.images[0]!.manifestDigest),
        [],
        'an instance without signatures',
      );
    });
  }
  return undefined;
}

export async function checkSignaturesUnsupported(context: ConformanceContext): Promise<CheckResult> {
  const reference = await referenceAt(context, await context.newDirectory());
  const destination = await openDestination(context, reference);
  try {
    assert.equal(
      destination.properties.supportsSignatures,
      false,
      'properties.supportsSignatures without the capability',
    );
    await expectCode(
      destination.putSignatures([signatureA]),
      ErrorCodes.NotSupported,
      'putSignatures() without support',
    );
  } finally {
    await destination.close();
  }
  return undefined;
}

export async function checkDelete(context: ConformanceContext): Promise<CheckResult> {
  const image = await context.fixture('ociMinimal');
  const reference = await referenceAt(context, await context.newDirectory());
  await writeImage(context, reference, image);
  await reparse(context, reference).deleteImage(context.options.context);
  await expectCode(
    reparse(context, reference).newImageSource(context.options.context),
    ErrorCodes.ImageNotFound,
    'newImageSource() after deleteImage()',
  );
  await expectCode(
    reparse(context, reference).deleteImage(context.options.context),
    ErrorCodes.ImageNotFound,
    'deleteImage() of a deleted image',
  );
  return undefined;
}

export async function checkDeleteUnsupported(context: ConformanceContext): Promise<CheckResult> {
  const image = await context.fixture('ociMinimal');
  const reference = await referenceAt(context, await context.newDirectory());
  await writeImage(context, reference, image);
  await expectCode(
    reference.deleteImage(context.options.context),
    ErrorCodes.NotSupported,
    'deleteImage() without support',
  );
  await expectStoredImage(context, reference, image);
  return undefined;
}

export async function checkSeveralImagesPerLocation(context: ConformanceContext): Promise<CheckResult> {
  const directory = await context.newDirectory();
  const first = await referenceAt(context, directory, 'first');
  const second = await referenceAt(context, directory, 'second');
  assert.notEqual(
    first.stringWithinTransport(),
    second.stringWithinTransport(),
    'two tags give two references',
  );
  const imageA = await context.fixture('ociMinimal');
  const imageB = await context.fixture('whiteoutLayers');
  const imageC = await context.fixture('everyEntryType');
  await writeImage(context, first, imageA);
  await writeImage(context, second, imageB);
  await expectStoredImage(context, first, imageA);
  await expectStoredImage(context, second, imageB);
  // Replacing one image leaves the other intact (shared blobs included).
  await writeImage(context, first, imageC);
  await expectStoredImage(context, first, imageC);
  await expectStoredImage(context, second, imageB);
  if (context.options.capabilities?.delete) {
    await first.deleteImage(context.options.context);
    await expectCode(
      first.newImageSource(context.options.context),
      ErrorCodes.ImageNotFound,
      'deleted image',
    );
    await expectStoredImage(context, second, imageB);
  }
  return undefined;
}

export async function checkOverwrite(context: ConformanceContext): Promise<CheckResult> {
  const reference = await referenceAt(context, await context.newDirectory());
  const first = await context.fixture('ociMinimal');
  const second = await context.fixture('whiteoutLayers');
  await writeImage(context, reference, first);
  await writeImage(context, reparse(context, reference), second);
  await expectStoredImage(context, reference, second);
  return undefined;
}
