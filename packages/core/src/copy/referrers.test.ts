import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Digest, digestOf } from '../digest.js';
import { ErrorCodes } from '../errors.js';
import { MediaTypes } from '../manifest/index.js';
import { insecureAcceptAnythingPolicy } from '../policy/index.js';
import {
  buildFixtureImage,
  createFixtureImageSource,
  type FixtureImage,
  type FixtureImageSpec,
  type FixtureListSpec,
  fixturePresets,
} from '../testing/index.js';
import type { ImageSource, ReferrerDescriptor } from '../transport/contract.js';
import { copyImage } from './copy.js';
import { maximumReferrerDepth, referrerDescriptorOf } from './referrers.js';
import { fakeReference, RecordingDestination, type RecordingDestinationOptions } from './test-support.js';
import type { CopyOptions, CopyProgressEvent } from './types.js';

let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gantry-'));
});

afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

const emptyConfig = Buffer.from('{}');
const emptyConfigDescriptor = {
  mediaType: 'application/vnd.oci.empty.v1+json',
  digest: digestOf(emptyConfig),
  size: emptyConfig.byteLength,
};

/** Manifests, blobs and referrer lists added to a fixture image's source. */
class ReferrerStore {
  readonly manifests = new Map<Digest, { bytes: Uint8Array; mediaType: string }>();
  readonly blobs = new Map<Digest, Uint8Array>();
  /** What `listReferrers` answers, per subject (tests may put anything there). */
  readonly listed = new Map<Digest, ReferrerDescriptor[]>();

  /** Adds an artifact manifest referring to `subject`, lists it for `subject`, returns its descriptor. */
  attach(
    subject: { digest: Digest; size: number; mediaType: string },
    options: { artifactType?: string; content?: string; annotations?: Record<string, string> } = {},
  ): ReferrerDescriptor {
    const layer = Buffer.from(options.content ?? `payload for ${subject.digest}`);
    const manifest: Record<string, unknown> = {
      schemaVersion: 2,
      mediaType: MediaTypes.OciManifest,
      ...(options.artifactType ? { artifactType: options.artifactType } : {}),
      config: emptyConfigDescriptor,
      layers: [
        { mediaType: 'application/vnd.example.payload', digest: digestOf(layer), size: layer.byteLength },
      ],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
      ...(options.annotations ? { annotations: options.annotations } : {}),
    };
    const bytes = Buffer.from(JSON.stringify(manifest));
    this.blobs.set(digestOf(layer), layer);
    this.blobs.set(emptyConfigDescriptor.digest, emptyConfig);
    return this.add(subject.digest, bytes, MediaTypes.OciManifest);
  }

  /** Stores `bytes` as a manifest and lists it as a referrer of `subject`. */
  add(subject: Digest, bytes: Uint8Array, mediaType: string): ReferrerDescriptor {
    const descriptor = referrerDescriptorOf(bytes, mediaType);
    this.manifests.set(descriptor.digest, { bytes, mediaType });
    this.list(subject, descriptor);
    return descriptor;
  }

  list(subject: Digest, descriptor: ReferrerDescriptor): void {
    this.listed.set(subject, [...(this.listed.get(subject) ?? []), descriptor]);
  }
}

function asSubject(descriptor: ReferrerDescriptor) {
  return { digest: descriptor.digest, size: descriptor.size, mediaType: descriptor.mediaType };
}

interface Harness {
  image: FixtureImage;
  store: ReferrerStore;
  destination: RecordingDestination;
  events: CopyProgressEvent[];
  listCalls: Digest[];
  copy(options?: CopyOptions): ReturnType<typeof copyImage>;
}

async function harness(
  spec: FixtureImageSpec | FixtureListSpec,
  options: { destination?: RecordingDestinationOptions; sourceListsReferrers?: boolean } = {},
): Promise<Harness> {
  const image = await buildFixtureImage(spec, { directory: join(directory, 'fixture') });
  const store = new ReferrerStore();
  const destination = new RecordingDestination(options.destination);
  const events: CopyProgressEvent[] = [];
  const listCalls: Digest[] = [];
  const sourceReference = fakeReference({
    name: 'fixture',
    openSource: (reference) => {
      const fixture = createFixtureImageSource(image, reference);
      const source: ImageSource = {
        ...fixture,
        async getManifest(instanceDigest, operation) {
          const extra = instanceDigest === undefined ? undefined : store.manifests.get(instanceDigest);
          return extra ? { ...extra } : fixture.getManifest(instanceDigest, operation);
        },
        async getBlob(info, operation) {
          const extra = store.blobs.get(info.digest);
          if (extra) return { stream: Readable.from([Buffer.from(extra)]), size: extra.byteLength };
          return fixture.getBlob(info, operation);
        },
      };
      if (options.sourceListsReferrers !== false) {
        source.listReferrers = async (subject) => {
          listCalls.push(subject);
          return [...(store.listed.get(subject) ?? [])];
        };
      }
      return source;
    },
  });
  const destinationReference = fakeReference({ name: 'destination', openDestination: () => destination });
  return {
    image,
    store,
    destination,
    events,
    listCalls,
    copy: (copyOptions = {}) =>
      copyImage(sourceReference, destinationReference, {
        policy: insecureAcceptAnythingPolicy(),
        onProgress: (event) => events.push(event),
        ...copyOptions,
      }),
  };
}

function topLevelSubject(image: FixtureImage) {
  return {
    digest: image.topLevel.digest,
    size: image.topLevel.bytes.byteLength,
    mediaType: image.topLevel.mediaType,
  };
}

describe('copyImage with copyReferrers', () => {
  it('copies referrers and referrers of referrers, byte for byte, after the image and before commit', async () => {
    const test = await harness(fixturePresets.ociMinimal!);
    const sbom = test.store.attach(topLevelSubject(test.image), {
      artifactType: 'application/vnd.example.sbom',
      annotations: { 'org.example.format': 'spdx' },
    });
    // A signature of the SBOM, without artifactType: the config's media type stands in for it.
    const signature = test.store.attach(asSubject(sbom), { content: 'signature bytes' });
    const result = await test.copy({ copyReferrers: true });
    expect(result.manifestDigest).toBe(test.image.topLevel.digest);
    const { destination } = test;
    expect(destination.committed).toBe(true);
    expect(destination.referrers.map((entry) => [entry.subject, entry.referrer])).toEqual([
      [
        test.image.topLevel.digest,
        {
          mediaType: MediaTypes.OciManifest,
          digest: sbom.digest,
          size: sbom.size,
          artifactType: 'application/vnd.example.sbom',
          annotations: { 'org.example.format': 'spdx' },
        },
      ],
      [
        sbom.digest,
        {
          mediaType: MediaTypes.OciManifest,
          digest: signature.digest,
          size: signature.size,
          artifactType: 'application/vnd.oci.empty.v1+json',
        },
      ],
    ]);
    for (const entry of destination.referrers) {
      expect(
        Buffer.from(entry.bytes).equals(Buffer.from(test.store.manifests.get(entry.referrer.digest)!.bytes)),
      ).toBe(true);
    }
    // Every blob of both referrers is stored, verified; the shared empty config once.
    for (const [digest, bytes] of test.store.blobs) {
      expect(Buffer.from(destination.committedBlobs.get(digest)!.bytes!).equals(Buffer.from(bytes))).toBe(
        true,
      );
    }
    expect(destination.committedBlobs.get(emptyConfigDescriptor.digest)!.isConfig).toBe(true);
    const calls = destination.calls.filter((call) => !call.startsWith('tryReusingBlob'));
    const topLevelWrite = calls.indexOf(`putManifest ${MediaTypes.OciManifest}`);
    const sbomWrite = calls.indexOf(`putReferrer ${sbom.digest} ${test.image.topLevel.digest}`);
    const signatureWrite = calls.indexOf(`putReferrer ${signature.digest} ${sbom.digest}`);
    expect(topLevelWrite).toBeGreaterThanOrEqual(0);
    expect(sbomWrite).toBeGreaterThan(topLevelWrite);
    expect(signatureWrite).toBeGreaterThan(sbomWrite);
    expect(calls.slice(signatureWrite + 1)).toEqual(['commit', 'close']);
    // The SBOM's layer is written before the SBOM manifest.
    const sbomLayer = digestOf(Buffer.from(`payload for ${test.image.topLevel.digest}`));
    expect(calls.indexOf(`putBlob ${sbomLayer}`)).toBeGreaterThan(topLevelWrite);
    expect(calls.indexOf(`putBlob ${sbomLayer}`)).toBeLessThan(sbomWrite);
    expect(test.events.filter((event) => event.type === 'referrer-start')).toEqual([
      { type: 'referrer-start', subject: test.image.topLevel.digest, referrer: sbom },
      { type: 'referrer-start', subject: sbom.digest, referrer: signature },
    ]);
    expect(test.listCalls).toEqual([test.image.topLevel.digest, sbom.digest, signature.digest]);
  });

  it('copies nothing extra without the option', async () => {
    const test = await harness(fixturePresets.ociMinimal!);
    test.store.attach(topLevelSubject(test.image), { artifactType: 'application/vnd.example.sbom' });
    await test.copy();
    expect(test.listCalls).toEqual([]);
    expect(test.destination.referrers).toEqual([]);
    expect(test.destination.calls.some((call) => call.startsWith('putReferrer'))).toBe(false);
  });

  it('copies the referrers of each instance and of the list with --all', async () => {
    const test = await harness(fixturePresets.multiArchOci!);
    const listSignature = test.store.attach(topLevelSubject(test.image), { content: 'list signature' });
    const instance = test.image.images[1]!.manifestDigest;
    const instanceManifest = test.image.manifests.get(instance)!;
    const instanceSbom = test.store.attach(
      { digest: instance, size: instanceManifest.bytes.byteLength, mediaType: instanceManifest.mediaType },
      { artifactType: 'application/vnd.example.sbom' },
    );
    await test.copy({ copyReferrers: true, imageListSelection: 'all' });
    expect(test.destination.referrers.map((entry) => [entry.subject, entry.referrer.digest])).toEqual([
      [instance, instanceSbom.digest],
      [test.image.topLevel.digest, listSignature.digest],
    ]);
    // Every copied manifest was asked for its referrers: the instances, then the list.
    expect(test.listCalls.slice(0, 4)).toEqual([
      ...test.image.images.map((entry) => entry.manifestDigest),
      test.image.topLevel.digest,
    ]);
  });

  it('copies the chosen instance referrers, not the list one, when one image is chosen from a list', async () => {
    const test = await harness(fixturePresets.multiArchOci!);
    test.store.attach(topLevelSubject(test.image), { content: 'list signature' });
    const chosen = test.image.images.find((entry) => entry.platform.architecture === 'arm64')!.manifestDigest;
    const chosenManifest = test.image.manifests.get(chosen)!;
    const sbom = test.store.attach(
      { digest: chosen, size: chosenManifest.bytes.byteLength, mediaType: chosenManifest.mediaType },
      { artifactType: 'application/vnd.example.sbom' },
    );
    const result = await test.copy({
      copyReferrers: true,
      sourceContext: { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    });
    expect(result.manifestDigest).toBe(chosen);
    expect(test.destination.referrers.map((entry) => entry.referrer.digest)).toEqual([sbom.digest]);
  });

  it('refuses a manifest conversion, naming the reason, and commits nothing', async () => {
    const test = await harness(fixturePresets.ociMinimal!, {
      destination: {
        properties: {
          supportedManifestMimeTypes: [MediaTypes.DockerManifest, MediaTypes.DockerManifestList],
        },
      },
    });
    test.store.attach(topLevelSubject(test.image));
    const failure = test.copy({ copyReferrers: true });
    await expect(failure).rejects.toMatchObject({ code: ErrorCodes.DigestsNotPreservable });
    await expect(failure).rejects.toThrow(
      /converting its manifest from application\/vnd\.oci\.image\.manifest\.v1\+json to application\/vnd\.docker\.distribution\.manifest\.v2\+json, which would change digests: Instructed to copy referrers \(--copy-referrers\)/,
    );
    expect(test.destination.committed).toBe(false);
    // Without the option the same copy converts.
    const converted = await test.copy();
    expect(converted.manifestMediaType).toBe(MediaTypes.DockerManifest);
  });

  it('refuses a forced format and a requested compression change', async () => {
    const test = await harness(fixturePresets.ociMinimal!, {
      destination: { properties: { desiredLayerCompression: 'compress' } },
    });
    await expect(
      test.copy({ copyReferrers: true, manifestMediaType: MediaTypes.DockerManifest }),
    ).rejects.toMatchObject({ code: ErrorCodes.DigestsNotPreservable });
    await expect(test.copy({ copyReferrers: true, destinationCompression: 'zstd' })).rejects.toThrow(
      /with zstd was requested, which would change digests: Instructed to copy referrers/,
    );
    expect(test.destination.committed).toBe(false);
  });

  it('fails before writing anything when the source cannot list referrers', async () => {
    const test = await harness(fixturePresets.ociMinimal!, { sourceListsReferrers: false });
    const failure = test.copy({ copyReferrers: true });
    await expect(failure).rejects.toMatchObject({ code: ErrorCodes.NotSupported });
    await expect(failure).rejects.toThrow(
      'Can not copy referrers from fake:fixture: the fake transport cannot list referrers',
    );
    // The destination is not even opened.
    expect(test.destination.calls).toEqual([]);
  });

  it('copies to a destination without referrers when there are none, and fails when there are', async () => {
    const test = await harness(fixturePresets.ociMinimal!, { destination: { offerReferrers: false } });
    await test.copy({ copyReferrers: true });
    expect(test.destination.committed).toBe(true);
    const sbom = test.store.attach(topLevelSubject(test.image));
    test.destination.committed = false;
    const failure = test.copy({ copyReferrers: true });
    await expect(failure).rejects.toMatchObject({ code: ErrorCodes.NotSupported });
    await expect(failure).rejects.toThrow(
      `Can not copy referrer ${sbom.digest} of ${test.image.topLevel.digest} to fake:destination: the fake transport cannot store referrers`,
    );
    expect(test.destination.committed).toBe(false);
  });

  it('refuses a referrer whose subject is not the manifest it is listed for', async () => {
    const test = await harness(fixturePresets.ociMinimal!);
    const other = test.store.attach(topLevelSubject(test.image), { content: 'first' });
    // A forged listing: a referrer of `other` listed for the image itself.
    const stray = test.store.attach(asSubject(other), { content: 'stray' });
    test.store.list(test.image.topLevel.digest, stray);
    const failure = test.copy({ copyReferrers: true });
    await expect(failure).rejects.toMatchObject({ code: ErrorCodes.InvalidManifest });
    await expect(failure).rejects.toThrow(
      `referrer ${stray.digest} is listed for ${test.image.topLevel.digest} but its subject is ${other.digest}`,
    );
    expect(test.destination.committed).toBe(false);
  });

  it('verifies referrer manifests and blobs', async () => {
    const test = await harness(fixturePresets.ociMinimal!);
    const sbom = test.store.attach(topLevelSubject(test.image));
    const stored = test.store.manifests.get(sbom.digest)!;
    test.store.manifests.set(sbom.digest, { ...stored, bytes: Buffer.from(`${Buffer.from(stored.bytes)} `) });
    await expect(test.copy({ copyReferrers: true })).rejects.toMatchObject({
      code: ErrorCodes.DigestMismatch,
    });
    test.store.manifests.set(sbom.digest, stored);
    const layer = digestOf(Buffer.from(`payload for ${test.image.topLevel.digest}`));
    test.store.blobs.set(layer, Buffer.from('tampered'));
    const failure = test.copy({ copyReferrers: true });
    await expect(failure).rejects.toMatchObject({ code: ErrorCodes.SizeMismatch });
    expect(test.destination.committed).toBe(false);
    expect(test.destination.referrers).toEqual([]);
  });

  it('copies each referrer once when listed twice or listing its own subject', async () => {
    const test = await harness(fixturePresets.ociMinimal!);
    const sbom = test.store.attach(topLevelSubject(test.image));
    test.store.list(test.image.topLevel.digest, sbom);
    test.store.list(sbom.digest, {
      mediaType: test.image.topLevel.mediaType,
      digest: test.image.topLevel.digest,
      size: test.image.topLevel.bytes.byteLength,
    });
    await test.copy({ copyReferrers: true });
    expect(test.destination.referrers.map((entry) => entry.referrer.digest)).toEqual([sbom.digest]);
  });

  it(`copies ${maximumReferrerDepth} levels of referrers and refuses more`, async () => {
    const test = await harness(fixturePresets.ociMinimal!);
    let subject = topLevelSubject(test.image);
    for (let level = 1; level <= maximumReferrerDepth; level++) {
      subject = asSubject(test.store.attach(subject, { content: `level ${level}` }));
    }
    await test.copy({ copyReferrers: true });
    expect(test.destination.referrers).toHaveLength(maximumReferrerDepth);
    const tooDeep = test.store.attach(subject, { content: 'one level too many' });
    test.destination.committed = false;
    const failure = test.copy({ copyReferrers: true });
    await expect(failure).rejects.toMatchObject({ code: ErrorCodes.NotSupported });
    await expect(failure).rejects.toThrow(
      `referrer ${tooDeep.digest} of ${subject.digest} is more than ${maximumReferrerDepth} levels deep`,
    );
    expect(test.destination.committed).toBe(false);
  });

  it('copies an index referrer with the manifests it lists before it', async () => {
    const test = await harness(fixturePresets.ociMinimal!);
    const child = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.OciManifest,
        artifactType: 'application/vnd.example.attestation',
        config: emptyConfigDescriptor,
        layers: [],
      }),
    );
    const childDigest = digestOf(child);
    test.store.manifests.set(childDigest, { bytes: child, mediaType: MediaTypes.OciManifest });
    test.store.blobs.set(emptyConfigDescriptor.digest, emptyConfig);
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.OciIndex,
        artifactType: 'application/vnd.example.bundle',
        manifests: [{ mediaType: MediaTypes.OciManifest, digest: childDigest, size: child.byteLength }],
        subject: topLevelSubject(test.image),
      }),
    );
    const bundle = test.store.add(test.image.topLevel.digest, index, MediaTypes.OciIndex);
    expect(bundle.artifactType).toBe('application/vnd.example.bundle');
    await test.copy({ copyReferrers: true });
    const calls = test.destination.calls;
    const childWrite = calls.indexOf(`putManifest ${MediaTypes.OciManifest} ${childDigest}`);
    expect(childWrite).toBeGreaterThan(0);
    expect(calls.indexOf(`putReferrer ${bundle.digest} ${test.image.topLevel.digest}`)).toBeGreaterThan(
      childWrite,
    );
    expect(test.destination.referrers.map((entry) => entry.referrer)).toEqual([bundle]);
  });
});

describe('referrerDescriptorOf', () => {
  it('refuses manifest types that cannot have a subject', () => {
    expect(() => referrerDescriptorOf(Buffer.from('{}'), MediaTypes.DockerManifest)).toThrow(
      /only OCI image manifests and indexes can be referrers/,
    );
  });
});
