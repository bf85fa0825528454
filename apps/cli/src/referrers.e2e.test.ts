/**
 * `gantry copy --copy-referrers` between two real registries (Debian's docker-registry 2.8, which has
 * no referrers API): referrers are attached by raw HTTP as cosign / oras do against such a registry
 * (an artifact manifest with `subject`, pushed by digest, plus the referrers tag schema index), and
 * the copy must recreate both at the destination, digests unchanged.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { startTestRegistry, type TestRegistry } from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGantry, runSkopeo } from './test-support/run.js';

const ociManifest = 'application/vnd.oci.image.manifest.v1+json';
const ociIndex = 'application/vnd.oci.image.index.v1+json';

let root: string;
let first: TestRegistry;
let second: TestRegistry;
let single: FixtureImage;
let multiArch: FixtureImage;
let singleLayout: string;
let multiArchLayout: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-'));
  [first, second] = await Promise.all([startTestRegistry(), startTestRegistry()]);
  single = await buildFixtureImage(fixturePresets.ociMinimal!, { directory: join(root, 'single-blobs') });
  multiArch = await buildFixtureImage(fixturePresets.multiArchOci!, { directory: join(root, 'multi-blobs') });
  singleLayout = join(root, 'single-layout');
  multiArchLayout = join(root, 'multi-layout');
  await writeFixtureToOciLayout(single, singleLayout, 'latest');
  await writeFixtureToOciLayout(multiArch, multiArchLayout, 'latest');
}, 60_000);

afterAll(async () => {
  await first?.stop();
  await second?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function tagOf(digest: string): string {
  return digest.replace(':', '-');
}

function expectSuccess(result: { code: number; stderr: string }, what: string): void {
  expect({ what, code: result.code, stderr: result.stderr }).toEqual({ what, code: 0, stderr: '' });
}

/** Pushes a blob monolithically (POST, then PUT ?digest=). */
async function pushBlob(registry: TestRegistry, repository: string, bytes: Uint8Array): Promise<string> {
  const digest = sha256(bytes);
  const start = await fetch(`${registry.url}/v2/${repository}/blobs/uploads/`, { method: 'POST' });
  expect(start.status).toBe(202);
  const location = new URL(start.headers.get('location')!, `${registry.url}/`);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream' },
    body: bytes,
  });
  expect(put.status).toBe(201);
  return digest;
}

async function pushManifest(
  registry: TestRegistry,
  repository: string,
  reference: string,
  bytes: Uint8Array,
  mediaType: string,
): Promise<void> {
  const response = await fetch(`${registry.url}/v2/${repository}/manifests/${reference}`, {
    method: 'PUT',
    headers: { 'content-type': mediaType },
    body: bytes,
  });
  expect(response.status, await response.text()).toBe(201);
}

/** A manifest's bytes, or undefined on 404. */
async function getManifest(
  registry: TestRegistry,
  repository: string,
  reference: string,
): Promise<{ bytes: Buffer; mediaType: string } | undefined> {
  const response = await fetch(`${registry.url}/v2/${repository}/manifests/${reference}`, {
    headers: { accept: `${ociManifest}, ${ociIndex}` },
  });
  if (response.status === 404) return undefined;
  expect(response.status).toBe(200);
  return {
    bytes: Buffer.from(await response.arrayBuffer()),
    mediaType: response.headers.get('content-type') ?? '',
  };
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

interface Attached {
  descriptor: Descriptor;
  bytes: Buffer;
}

/**
 * Attaches an artifact to `subject` like oras/cosign against a registry without the referrers API:
 * blobs, the manifest by digest, then the subject's tag-schema index (GET, append, PUT).
 */
async function attach(
  registry: TestRegistry,
  repository: string,
  subject: Descriptor,
  artifactType: string,
  content: string,
  annotations?: Record<string, string>,
): Promise<Attached> {
  const config = Buffer.from('{}');
  const configDigest = await pushBlob(registry, repository, config);
  const layer = Buffer.from(content);
  const layerDigest = await pushBlob(registry, repository, layer);
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ociManifest,
      artifactType,
      config: {
        mediaType: 'application/vnd.oci.empty.v1+json',
        digest: configDigest,
        size: config.byteLength,
      },
      layers: [{ mediaType: 'application/vnd.example.payload', digest: layerDigest, size: layer.byteLength }],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
      ...(annotations ? { annotations } : {}),
    }),
  );
  const digest = sha256(bytes);
  await pushManifest(registry, repository, digest, bytes, ociManifest);
  const descriptor: Descriptor = {
    mediaType: ociManifest,
    digest,
    size: bytes.byteLength,
    artifactType,
    ...(annotations ? { annotations } : {}),
  };
  const existing = await getManifest(registry, repository, tagOf(subject.digest));
  const index = existing
    ? (JSON.parse(existing.bytes.toString('utf8')) as { manifests: Descriptor[] })
    : { schemaVersion: 2, mediaType: ociIndex, manifests: [] as Descriptor[] };
  index.manifests.push(descriptor);
  await pushManifest(
    registry,
    repository,
    tagOf(subject.digest),
    Buffer.from(JSON.stringify(index)),
    ociIndex,
  );
  return { descriptor, bytes };
}

function subjectOf(image: FixtureImage, digest = image.topLevel.digest): Descriptor {
  const manifest = image.manifests.get(digest)!;
  return { mediaType: manifest.mediaType, digest, size: manifest.bytes.byteLength };
}

async function referrersTagIndex(registry: TestRegistry, repository: string, subject: string) {
  const stored = await getManifest(registry, repository, tagOf(subject));
  if (!stored) return undefined;
  expect(stored.mediaType).toBe(ociIndex);
  return (JSON.parse(stored.bytes.toString('utf8')) as { manifests: Descriptor[] }).manifests;
}

const tlsOff = ['--src-tls-verify=false', '--dest-tls-verify=false'];

describe('gantry copy --copy-referrers between registries without the referrers API', () => {
  let sbom: Attached;
  let signature: Attached;

  beforeAll(async () => {
    expectSuccess(
      await runGantry([
        '--insecure-policy',
        'copy',
        '-q',
        '--dest-tls-verify=false',
        `oci:${singleLayout}:latest`,
        `docker://${first.host}/team/app:v1`,
      ]),
      'push the image',
    );
    sbom = await attach(first, 'team/app', subjectOf(single), 'application/vnd.example.sbom', 'an SBOM', {
      'org.example.format': 'spdx',
    });
    // A signature of the SBOM: a referrer of a referrer.
    signature = await attach(
      first,
      'team/app',
      sbom.descriptor,
      'application/vnd.example.signature',
      'a signature',
    );
  });

  it('copies the referrers byte for byte with their digests and writes the tag-schema indexes', async () => {
    const result = await runGantry([
      '--insecure-policy',
      'copy',
      ...tlsOff,
      '--copy-referrers',
      `docker://${first.host}/team/app:v1`,
      `docker://${second.host}/mirror/app:v1`,
    ]);
    expect(result.code, result.stderr).toBe(0);
    // Progress goes to stderr, one line per referrer before its blobs' lines.
    const progress = result.stderr;
    expect(progress).toContain(
      `Copying referrer ${sbom.descriptor.digest} (application/vnd.example.sbom) of ${single.topLevel.digest}\n`,
    );
    expect(progress).toContain(
      `Copying referrer ${signature.descriptor.digest} (application/vnd.example.signature) of ${sbom.descriptor.digest}\n`,
    );
    const image = await getManifest(second, 'mirror/app', 'v1');
    expect(image?.bytes.equals(Buffer.from(single.topLevel.bytes))).toBe(true);
    for (const attached of [sbom, signature]) {
      const copied = await getManifest(second, 'mirror/app', attached.descriptor.digest);
      expect(copied?.bytes.equals(attached.bytes), attached.descriptor.digest).toBe(true);
      // Its blobs are there too (the registry checked them when the manifest was PUT; the real skopeo reads them).
      const skopeo = runSkopeo([
        'copy',
        '--insecure-policy',
        '--src-tls-verify=false',
        `docker://${second.host}/mirror/app@${attached.descriptor.digest}`,
        `dir:${join(root, `skopeo-${attached.descriptor.digest.slice(7, 19)}`)}`,
      ]);
      expect(skopeo.code, skopeo.stderr).toBe(0);
    }
    expect(await referrersTagIndex(second, 'mirror/app', single.topLevel.digest)).toEqual([sbom.descriptor]);
    expect(await referrersTagIndex(second, 'mirror/app', sbom.descriptor.digest)).toEqual([
      signature.descriptor,
    ]);
    // gantry's docker transport lists them back through the tag schema.
    const again = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      ...tlsOff,
      '--copy-referrers',
      `docker://${second.host}/mirror/app:v1`,
      `docker://${first.host}/round/trip:v1`,
    ]);
    expectSuccess(again, 'copy back');
    expect(await referrersTagIndex(first, 'round/trip', single.topLevel.digest)).toEqual([sbom.descriptor]);
  });

  it('does not duplicate tag-schema entries when copying again', async () => {
    for (let run = 0; run < 2; run++) {
      expectSuccess(
        await runGantry([
          '--insecure-policy',
          'copy',
          '-q',
          ...tlsOff,
          '--copy-referrers',
          `docker://${first.host}/team/app:v1`,
          `docker://${second.host}/twice/app:v1`,
        ]),
        `copy ${run + 1}`,
      );
    }
    expect(await referrersTagIndex(second, 'twice/app', single.topLevel.digest)).toEqual([sbom.descriptor]);
    expect(await referrersTagIndex(second, 'twice/app', sbom.descriptor.digest)).toEqual([
      signature.descriptor,
    ]);
  });

  it('copies nothing extra without the flag', async () => {
    expectSuccess(
      await runGantry([
        '--insecure-policy',
        'copy',
        '-q',
        ...tlsOff,
        `docker://${first.host}/team/app:v1`,
        `docker://${second.host}/plain/app:v1`,
      ]),
      'copy without referrers',
    );
    expect(await getManifest(second, 'plain/app', 'v1')).toBeDefined();
    expect(await getManifest(second, 'plain/app', sbom.descriptor.digest)).toBeUndefined();
    expect(await getManifest(second, 'plain/app', signature.descriptor.digest)).toBeUndefined();
    expect(await referrersTagIndex(second, 'plain/app', single.topLevel.digest)).toBeUndefined();
  });

  it('refuses a manifest conversion or a compression change with --copy-referrers, and moves no tag', async () => {
    for (const flags of [
      ['--format', 'v2s2'],
      ['--dest-compress-format', 'zstd'],
    ]) {
      const result = await runGantry([
        '--insecure-policy',
        'copy',
        '-q',
        ...tlsOff,
        '--copy-referrers',
        ...flags,
        `docker://${first.host}/team/app:v1`,
        `docker://${second.host}/converted/app:v1`,
      ]);
      expect(result.code, flags.join(' ')).not.toBe(0);
      expect(result.stderr).toMatch(
        /which would change digests: Instructed to copy referrers \(--copy-referrers\), which name manifests by their digests/,
      );
      expect(await getManifest(second, 'converted/app', 'v1')).toBeUndefined();
      expect(await referrersTagIndex(second, 'converted/app', single.topLevel.digest)).toBeUndefined();
    }
  });

  it('fails clearly towards a transport that cannot store referrers, and from one that cannot list them', async () => {
    const toLayout = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      '--src-tls-verify=false',
      '--copy-referrers',
      `docker://${first.host}/team/app:v1`,
      `oci:${join(root, 'oci-destination')}:v1`,
    ]);
    expect(toLayout.code).not.toBe(0);
    expect(toLayout.stderr).toContain(
      `Can not copy referrer ${sbom.descriptor.digest} of ${single.topLevel.digest} to oci:`,
    );
    expect(toLayout.stderr).toContain('the oci transport cannot store referrers');
    const fromLayout = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      '--dest-tls-verify=false',
      '--copy-referrers',
      `oci:${singleLayout}:latest`,
      `docker://${second.host}/from/layout:v1`,
    ]);
    expect(fromLayout.code).not.toBe(0);
    expect(fromLayout.stderr).toContain(`Can not copy referrers from oci:${singleLayout}:latest`);
    expect(fromLayout.stderr).toContain('the oci transport cannot list referrers');
    expect(await getManifest(second, 'from/layout', 'v1')).toBeUndefined();
  });
});

describe('gantry copy --all --copy-referrers of a multi-arch image', () => {
  it('keeps the referrers of the instances and of the index', async () => {
    expectSuccess(
      await runGantry([
        '--insecure-policy',
        'copy',
        '-q',
        '--all',
        '--dest-tls-verify=false',
        `oci:${multiArchLayout}:latest`,
        `docker://${first.host}/team/multi:v1`,
      ]),
      'push the list',
    );
    const instance = multiArch.images[1]!.manifestDigest;
    const instanceSbom = await attach(
      first,
      'team/multi',
      subjectOf(multiArch, instance),
      'application/vnd.example.sbom',
      'SBOM of one instance',
    );
    const listSignature = await attach(
      first,
      'team/multi',
      subjectOf(multiArch),
      'application/vnd.example.signature',
      'signature of the index',
    );
    expectSuccess(
      await runGantry([
        '--insecure-policy',
        'copy',
        '-q',
        '--all',
        ...tlsOff,
        '--copy-referrers',
        `docker://${first.host}/team/multi:v1`,
        `docker://${second.host}/mirror/multi:v1`,
      ]),
      'copy the list',
    );
    const list = await getManifest(second, 'mirror/multi', 'v1');
    expect(list?.bytes.equals(Buffer.from(multiArch.topLevel.bytes))).toBe(true);
    for (const attached of [instanceSbom, listSignature]) {
      const copied = await getManifest(second, 'mirror/multi', attached.descriptor.digest);
      expect(copied?.bytes.equals(attached.bytes)).toBe(true);
    }
    expect(await referrersTagIndex(second, 'mirror/multi', instance)).toEqual([instanceSbom.descriptor]);
    expect(await referrersTagIndex(second, 'mirror/multi', multiArch.topLevel.digest)).toEqual([
      listSignature.descriptor,
    ]);
    for (const other of multiArch.images.filter((entry) => entry.manifestDigest !== instance)) {
      expect(await referrersTagIndex(second, 'mirror/multi', other.manifestDigest)).toBeUndefined();
    }
  });
});
