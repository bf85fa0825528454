/**
 * The checks behind `runTransportConformanceSuite`, usable without vitest (they throw on failure), so the
 * suite's own tests can show that each check fails against a transport that breaks its rule.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { type Digest, digestOf, verifyingStage } from '../digest.js';
import { type ErrorCode, ErrorCodes, hasErrorCode, isGantryError } from '../errors.js';
import { parseImageConfig } from '../manifest/config.js';
import { guessManifestMediaType } from '../manifest/digests.js';
import { isManifestListMediaType, MediaTypes } from '../manifest/media-types.js';
import { parseManifest } from '../manifest/parse.js';
import type {
  ImageDestination,
  ImageDestinationProperties,
  ImageReference,
  ImageSource,
  Transport,
  TransportContext,
} from '../transport/contract.js';
import { assertTransport } from '../transport/registry.js';
import { buildFixtureImage, isFixtureListSpec } from './fixture-builder.js';
import { type FixturePresetName, fixturePresets } from './fixture-presets.js';
import { writeFixtureToDestination } from './fixture-source.js';
import type {
  FixtureImage,
  FixtureImageSpec,
  FixtureLayerCompression,
  FixtureListSpec,
} from './fixture-types.js';
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
  /**
   * What a stored image keeps of what was written. Default `'exact'`.
   *
   * - `'exact'`: the storage keeps manifests byte for byte (`oci:`, `dir:`, registries): images read back
   *   with identical manifest bytes (top level and per instance) and every blob identical.
   * - `'image'`: the storage keeps the image, not its manifest, and its source generates a manifest
   *   (`docker-archive:` stores configs and layers as `docker save` does). Each preset is written in the
   *   form the destination declares it accepts (`supportedManifestMimeTypes`, `desiredLayerCompression`):
   *   converted to Docker schema2 when the destination accepts Docker schema2 but not the preset's type
   *   (else to OCI), layers made plain tar for `'decompress'` or gzip for `'compress'`; the same content,
   *   so the layers keep their DiffIDs. When the preset's own manifest type is refused, writing it
   *   unconverted must fail with `ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE` and leave no image. Reading back
   *   checks what must survive: the generated manifest parses as a single image and describes the blobs
   *   the source serves (each layer hashes to the digest and size it names), the config keeps its digest,
   *   bytes and platform, the layers' uncompressed content keeps its DiffIDs in order (gzip layers are
   *   decompressed to check), and two opens generate the same manifest bytes (so its digest is stable).
   *   Not combinable with `manifestLists` (`runTransportConformanceSuite` throws).
   */
  manifestFidelity?: 'exact' | 'image';
  /**
   * What writing to a reference that already holds an image does. Default `'replace'`.
   *
   * - `'replace'`: the new image replaces the old one.
   * - `'refuse'`: the write (opening the destination, or any step up to `commit()`) rejects with
   *   `ERR_GANTRY_NOT_SUPPORTED` (as skopeo's `docker-archive:` does for a non-empty file), the existing
   *   image stays readable and unchanged, and no file under the test's temporary directory is added,
   *   removed or changed. With `severalImagesPerLocation`, that check does not replace images either.
   */
  overwrite?: 'replace' | 'refuse';
  /**
   * When reading, a reference's tag chooses the image at its location, so a tag the location does not
   * hold is `ERR_GANTRY_IMAGE_NOT_FOUND` while the image written under another tag stays readable (e.g.
   * `docker-archive:file:name:tag`, which writes one image per file but reads by tag). Default: the value
   * of `severalImagesPerLocation`. Needs `createReference` to use its `tag`.
   */
  tagSelectsImage?: boolean;
  /**
   * The transport only reads images others made (skopeo's `sif:`): `newImageDestination()` and
   * `deleteImage()` reject with `ERR_GANTRY_NOT_SUPPORTED`. The suite then reads the images
   * `createStoredImage` makes instead of writing presets: it checks the reference rules, a missing image,
   * that a stored image reads back consistently (config, layers and DiffIDs as the manifest and config
   * name them, the same manifest on every open), and that writes and deletes are refused and change no
   * file. Every other capability is ignored.
   */
  readOnly?: boolean;
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
   * `capabilities.manifestLists`. With `manifestFidelity: 'exact'`, presets whose manifest types the
   * destination does not accept (`supportedManifestMimeTypes`) are skipped, with the reason; with
   * `'image'` they are written in a form the destination accepts (see `manifestFidelity`).
   */
  presets?: FixturePresetName[];
  /**
   * With capability `readOnly`: makes an image the transport can read at or under `directory` (a path
   * that does not exist yet, in a temporary directory of its own) and returns its within-transport reference.
   */
  createStoredImage?(context: { directory: string }): string | Promise<string>;
}

/** Same as `TransportConformanceOptions` (the name the architecture document uses). */
export type ConformanceOptions = TransportConformanceOptions;

/**
 * How a preset is changed before it is written, keeping its content: `format` converts the manifest
 * (OCI / Docker schema2), `layerCompression` recompresses every layer. Absent members keep the preset's.
 */
export interface FixtureForm {
  format?: 'oci' | 'docker';
  layerCompression?: FixtureLayerCompression;
}

/** Shared state of one run of the checks: fixtures built once, and temporary directories. */
export interface ConformanceContext {
  readonly options: TransportConformanceOptions;
  /** Builds (once) and returns a preset, optionally in another form. */
  fixture(name: FixturePresetName, form?: FixtureForm): Promise<FixtureImage>;
  /** The properties of the transport's destinations (read once, from a destination opened and closed). */
  destinationProperties(): Promise<ImageDestinationProperties>;
  /** A fresh location: a path that does not exist yet, inside a new temporary directory. */
  newDirectory(): Promise<string>;
  /** Removes every temporary directory. */
  dispose(): Promise<void>;
}

/** A check's outcome: done, or skipped with a reason (never silently). */
export type CheckResult = undefined | { skipped: string };

export function createConformanceContext(options: TransportConformanceOptions): ConformanceContext {
  const temporaryDirectories: string[] = [];
  const fixtures = new Map<string, Promise<FixtureImage>>();
  let fixtureDirectory: Promise<string> | undefined;
  let properties: Promise<ImageDestinationProperties> | undefined;
  const makeTemporary = async () => {
    const directory = await mkdtemp(path.join(options.context?.temporaryDirectory ?? os.tmpdir(), 'gantry-'));
    temporaryDirectories.push(directory);
    return directory;
  };
  return {
    options,
    fixture(name, form = {}) {
      const key = `${name}|${form.format ?? ''}|${form.layerCompression ?? ''}`;
      let built = fixtures.get(key);
      if (!built) {
        fixtureDirectory ??= makeTemporary();
        built = fixtureDirectory.then((directory) =>
          buildFixtureImage(presetInForm(fixturePresets[name], form), {
            directory: path.join(directory, 'blobs'),
          }),
        );
        fixtures.set(key, built);
      }
      return built;
    },
    destinationProperties() {
      properties ??= (async () => {
        const reference = options.transport.parseReference(
          await options.createReference({
            directory: path.join(await makeTemporary(), 'location'),
            tag: 'probe',
          }),
        );
        const destination = await reference.newImageDestination(options.context);
        try {
          return destination.properties;
        } finally {
          await destination.close();
        }
      })();
      return properties;
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
      properties = undefined;
    },
  };
}

/** `spec` converted to `form`, with the same layer content (so the same DiffIDs). */
function presetInForm(
  spec: FixtureImageSpec | FixtureListSpec,
  form: FixtureForm,
): FixtureImageSpec | FixtureListSpec {
  const convertImage = (image: FixtureImageSpec): FixtureImageSpec => ({
    ...image,
    ...(form.format ? { format: form.format } : {}),
    layers: image.layers.map((layer) =>
      form.layerCompression ? { ...layer, compression: form.layerCompression } : layer,
    ),
  });
  if (isFixtureListSpec(spec)) {
    return {
      ...spec,
      ...(form.format ? { format: form.format } : {}),
      images: spec.images.map((image) =>
        convertImage({ ...image, ...(form.format ? { format: form.format } : {}) }),
      ),
    };
  }
  return convertImage(spec);
}

function fidelity(context: ConformanceContext): 'exact' | 'image' {
  return context.options.capabilities?.manifestFidelity ?? 'exact';
}

/**
 * The form in which a preset is written: the preset itself with `manifestFidelity: 'exact'`; with
 * `'image'`, converted to what the destination declares it accepts (see `manifestFidelity`).
 */
async function writableForm(context: ConformanceContext, name: FixturePresetName): Promise<FixtureForm> {
  if (fidelity(context) === 'exact') return {};
  const properties = await context.destinationProperties();
  const form: FixtureForm = {};
  const supported = properties.supportedManifestMimeTypes;
  const presetFormat = fixturePresets[name].format ?? 'oci';
  const presetType = presetFormat === 'docker' ? MediaTypes.DockerManifest : MediaTypes.OciManifest;
  if (supported && !supported.includes(presetType)) {
    if (supported.includes(MediaTypes.DockerManifest)) form.format = 'docker';
    else if (supported.includes(MediaTypes.OciManifest)) form.format = 'oci';
    else {
      assert.fail(
        `the destination accepts neither OCI nor Docker schema2 manifests (${supported.join(', ')}): no preset can be written`,
      );
    }
  }
  if (properties.desiredLayerCompression === 'decompress') form.layerCompression = 'none';
  if (properties.desiredLayerCompression === 'compress') form.layerCompression = 'gzip';
  return form;
}

/** A preset in the form it is written to the transport (see `writableForm`). */
async function writableFixture(context: ConformanceContext, name: FixturePresetName): Promise<FixtureImage> {
  return context.fixture(name, await writableForm(context, name));
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
export async function expectCode(
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

/**
 * Asserts that the image at `reference` holds `image`: with `manifestFidelity: 'exact'` manifests byte for
 * byte and every blob, with `'image'` what an image store keeps (see `expectEquivalentImage`).
 */
async function expectStoredImage(
  context: ConformanceContext,
  reference: ImageReference,
  image: FixtureImage,
): Promise<void> {
  if (fidelity(context) === 'image') await expectEquivalentImage(context, reference, image);
  else await expectExactImage(context, reference, image);
}

/** Reads a whole (small) blob: configs only. */
export async function readSmallBlob(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/**
 * Hashes a layer as served and its uncompressed content: gzip (recognised by its magic bytes) is
 * decompressed while streaming, anything else is taken as plain tar; zstd fails the check.
 */
export async function hashLayer(
  stream: AsyncIterable<Uint8Array>,
): Promise<{ digest: Digest; size: number; uncompressedDigest: Digest }> {
  const served = createHash('sha256');
  const plain = createHash('sha256');
  let size = 0;
  let head: Buffer | undefined = Buffer.alloc(0);
  let gunzip: ReturnType<typeof createGunzip> | undefined;
  let uncompressed: Promise<{ digest: Digest; size: number }> | undefined;
  const forward = async (chunk: Buffer) => {
    if (!gunzip) plain.update(chunk);
    else if (!gunzip.write(chunk)) await once(gunzip, 'drain');
  };
  try {
    for await (const chunk of stream) {
      served.update(chunk);
      size += chunk.byteLength;
      if (head === undefined) {
        await forward(Buffer.from(chunk));
        continue;
      }
      head = Buffer.concat([head, chunk]);
      if (head.byteLength < 2) continue;
      if (head[0] === 0x28 && head[1] === 0xb5)
        assert.fail('a zstd layer was read back: its content cannot be checked');
      if (head[0] === 0x1f && head[1] === 0x8b) {
        gunzip = createGunzip();
        uncompressed = hashStream(gunzip);
        uncompressed.catch(() => {}); // awaited below; a failure must not go unhandled meanwhile
      }
      const first = head;
      head = undefined;
      await forward(first);
    }
    if (head) plain.update(head);
    gunzip?.end();
    const uncompressedDigest = uncompressed
      ? (await uncompressed).digest
      : (`sha256:${plain.digest('hex')}` as Digest);
    return { digest: `sha256:${served.digest('hex')}`, size, uncompressedDigest };
  } finally {
    gunzip?.destroy();
  }
}

/**
 * `manifestFidelity: 'image'`: the image at `reference` is `image` (a single image): its generated
 * manifest parses and describes the blobs served (through `layerInfosForCopy` when the source has it), the config keeps digest, platform and bytes, the layers
 * keep their DiffIDs in order, and a second open generates the same manifest bytes.
 */
async function expectEquivalentImage(
  context: ConformanceContext,
  reference: ImageReference,
  image: FixtureImage,
): Promise<void> {
  const expected = image.images[0]!;
  assert.equal(image.images.length, 1, 'manifestFidelity "image" round-trips single images only');
  const manifestBytes = await withSource(context, reparse(context, reference), async (source) => {
    const top = await source.getManifest();
    const mediaType = top.mediaType || guessManifestMediaType(top.bytes);
    assert.ok(!isManifestListMediaType(mediaType), `a single image was written, a ${mediaType} was read`);
    const manifest = parseManifest(top.bytes, mediaType);
    assert.ok(manifest.config, 'the generated manifest names a config');
    const config = await source.getBlob(manifest.config);
    const configBytes = await readSmallBlob(config.stream);
    const expectedConfig = await readFile(image.blobs.get(expected.configDigest)!.path);
    const readConfig = parseImageConfig(configBytes);
    assert.deepEqual(
      { os: readConfig.os, architecture: readConfig.architecture, variant: readConfig.variant },
      {
        os: expected.platform.os,
        architecture: expected.platform.architecture,
        variant: expected.platform.variant,
      },
      'platform of the config read back',
    );
    assert.ok(configBytes.equals(expectedConfig), 'config bytes read back differ from what was written');
    assert.equal(manifest.config.digest, expected.configDigest, 'config digest read back');
    assert.equal(
      manifest.config.size,
      configBytes.byteLength,
      'the generated manifest names the config size served',
    );
    assert.equal(
      manifest.layers.length,
      expected.diffIds.length,
      'number of layers in the generated manifest',
    );
    // A source that stores layers in another form (containers-storage keeps them uncompressed) names the
    // blobs it serves through layerInfosForCopy; those are what it must serve.
    const layers = (await source.layerInfosForCopy?.()) ?? manifest.layers;
    assert.equal(layers.length, manifest.layers.length, 'layerInfosForCopy() lists one blob per layer');
    const diffIds: Digest[] = [];
    for (const layer of layers) {
      const read = await source.getBlob(layer);
      assert.ok(
        read.size === -1 || read.size === layer.size,
        `getBlob(${layer.digest}) size ${read.size}, the generated manifest says ${layer.size}`,
      );
      const hashed = await hashLayer(read.stream);
      assert.deepEqual(
        { digest: hashed.digest, size: hashed.size },
        { digest: layer.digest, size: layer.size },
        `the layer served for ${layer.digest} must be what the generated manifest describes`,
      );
      diffIds.push(hashed.uncompressedDigest);
    }
    assert.deepEqual(diffIds, expected.diffIds, 'layer DiffIDs (uncompressed content) read back, base first');
    return Buffer.from(top.bytes);
  });
  await withSource(context, reparse(context, reference), async (source) => {
    const again = await source.getManifest();
    assert.ok(
      manifestBytes.equals(Buffer.from(again.bytes)),
      'the generated manifest differs between two opens of the same image (its digest would change)',
    );
  });
}

/** Asserts that the image at `reference` holds exactly `image`: manifests byte for byte and every blob. */
async function expectExactImage(
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
  const form = await writableForm(context, preset);
  const image = await context.fixture(preset, form);
  if (form.format !== undefined && form.format !== (fixturePresets[preset].format ?? 'oci')) {
    // The preset was converted because the destination refuses its manifest type: check that it does.
    const refusedReference = await referenceAt(context, await context.newDirectory());
    await expectCode(
      writeImage(context, refusedReference, await context.fixture(preset)),
      ErrorCodes.UnsupportedManifestType,
      `writing ${preset} unconverted (a manifest type the destination does not declare)`,
    );
    await expectCode(
      reparse(context, refusedReference).newImageSource(context.options.context),
      ErrorCodes.ImageNotFound,
      'newImageSource() after a refused manifest',
    );
  }
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

/**
 * Opening a source at a location that does not exist is `ERR_GANTRY_IMAGE_NOT_FOUND` and creates nothing
 * (no empty archive or layout is left under the test's temporary directory).
 */
export async function checkMissingImage(context: ConformanceContext): Promise<CheckResult> {
  const directory = await context.newDirectory();
  const reference = await referenceAt(context, directory);
  const before = await snapshotFiles(path.dirname(directory));
  await expectCode(
    reference.newImageSource(context.options.context),
    ErrorCodes.ImageNotFound,
    'newImageSource() of a missing image',
  );
  assert.deepEqual(
    await snapshotFiles(path.dirname(directory)),
    before,
    'files under the test directory after reading a missing image',
  );
  return undefined;
}

/** A tag the location does not hold is missing, while the image under another tag stays readable. */
export async function checkMissingTag(context: ConformanceContext): Promise<CheckResult> {
  const directory = await context.newDirectory();
  const written = await referenceAt(context, directory, 'written');
  const absent = await referenceAt(context, directory, 'absent');
  assert.notEqual(
    written.stringWithinTransport(),
    absent.stringWithinTransport(),
    'createReference() must use its tag for this check',
  );
  const image = await writableFixture(context, 'ociMinimal');
  await writeImage(context, written, image);
  await expectCode(
    absent.newImageSource(context.options.context),
    ErrorCodes.ImageNotFound,
    'newImageSource() of a tag the location does not hold',
  );
  await expectStoredImage(context, written, image);
  return undefined;
}

export async function checkCloseWithoutCommit(context: ConformanceContext): Promise<CheckResult> {
  const image = await writableFixture(context, 'ociMinimal');
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
  const image = await writableFixture(context, 'ociMinimal');
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
  const image = await writableFixture(context, 'ociMinimal');
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
  const image = await writableFixture(context, 'ociMinimal');
  const reference = await referenceAt(context, await context.newDirectory());
  const destination = await openDestination(context, reference);
  assert.equal(destination.properties.supportsSignatures, true, 'properties.supportsSignatures');
  await writeFixtureToDestination(image, destination, { signatures: [signatureA, signatureB] });
  await withSource(context, reparse(context, reference), async (source) => {
    const read = (await source.getSignatures()).map((signature) => Buffer.from(signature));
    assert.deepEqual(read, [Buffer.from(signatureA), signatureB], 'signatures read back');
  });
  if (context.options.capabilities?.manifestLists) {
    const list = await writableFixture(context, 'multiArchOci');
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
  const image = await writableFixture(context, 'ociMinimal');
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
  const image = await writableFixture(context, 'ociMinimal');
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
  const imageA = await writableFixture(context, 'ociMinimal');
  const imageB = await writableFixture(context, 'whiteoutLayers');
  const imageC = await writableFixture(context, 'everyEntryType');
  await writeImage(context, first, imageA);
  await writeImage(context, second, imageB);
  await expectStoredImage(context, first, imageA);
  await expectStoredImage(context, second, imageB);
  // Replacing one image leaves the other intact (shared blobs included).
  if ((context.options.capabilities?.overwrite ?? 'replace') === 'replace') {
    await writeImage(context, first, imageC);
    await expectStoredImage(context, first, imageC);
    await expectStoredImage(context, second, imageB);
  }
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
  const first = await writableFixture(context, 'ociMinimal');
  const second = await writableFixture(context, 'whiteoutLayers');
  await writeImage(context, reference, first);
  await writeImage(context, reparse(context, reference), second);
  await expectStoredImage(context, reference, second);
  return undefined;
}

/**
 * What the files under `directory` are: path → kind and content digest (files), target (symlinks). A
 * missing directory is empty.
 */
export async function snapshotFiles(directory: string): Promise<Record<string, string>> {
  const snapshot: Record<string, string> = {};
  const visit = async (relative: string): Promise<void> => {
    const absolute = path.join(directory, relative);
    const status = await lstat(absolute);
    if (status.isDirectory()) {
      if (relative !== '') snapshot[relative] = 'directory';
      for (const name of (await readdir(absolute)).sort()) await visit(path.join(relative, name));
    } else if (status.isSymbolicLink()) {
      snapshot[relative] = `symlink to ${await readlink(absolute)}`;
    } else if (status.isFile()) {
      const { digest, size } = await hashStream(createReadStream(absolute));
      snapshot[relative] = `file ${digest} ${size} bytes`;
    } else {
      snapshot[relative] = `special file mode ${status.mode.toString(8)}`;
    }
  };
  try {
    await visit('');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw error;
  }
  return snapshot;
}

export async function checkOverwriteRefused(context: ConformanceContext): Promise<CheckResult> {
  const directory = await context.newDirectory();
  const reference = await referenceAt(context, directory);
  const first = await writableFixture(context, 'ociMinimal');
  const second = await writableFixture(context, 'whiteoutLayers');
  await writeImage(context, reference, first);
  const temporaryDirectory = path.dirname(directory);
  const before = await snapshotFiles(temporaryDirectory);
  await expectCode(
    writeImage(context, reparse(context, reference), second),
    ErrorCodes.NotSupported,
    'writing to a reference that holds an image (overwrite: refuse)',
  );
  assert.deepEqual(
    await snapshotFiles(temporaryDirectory),
    before,
    'files under the test directory after a refused write',
  );
  await expectStoredImage(context, reference, first);
  return undefined;
}
