import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { type FixtureImage, fixturePresets } from '@gantry/core/testing';
import { type Digest, digestOf, ErrorCodes, MediaTypes } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gantryUserAgent } from './connections.js';
import { referrersFallbackTag } from './referrers.js';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import { buildImage, digestStream, dockerContext, pushFixture } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

describe('docker transport against a real registry (plain HTTP)', () => {
  let registry: TestRegistry;
  let directory: string;
  let image: FixtureImage;
  let list: FixtureImage;
  const transport = createDockerTransport();
  const context = dockerContext({ tlsVerify: false });

  beforeAll(async () => {
    registry = await startTestRegistry();
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
    image = await buildImage(fixturePresets.ociMinimal, path.join(directory, 'single'));
    list = await buildImage(fixturePresets.multiArchOci, path.join(directory, 'list'));
  });

  afterAll(async () => {
    await transport.closeConnections();
    await registry?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  const reference = (repositoryAndTag: string) =>
    transport.parseReference(`//${registry.host}/${repositoryAndTag}`);

  it('pushes an image and reads it back byte for byte', async () => {
    await pushFixture(transport, registry, 'gantry/single:v1', image, context);
    const source = await reference('gantry/single:v1').newImageSource(context);
    try {
      const manifest = await source.getManifest();
      expect(Buffer.from(manifest.bytes).equals(Buffer.from(image.topLevel.bytes))).toBe(true);
      expect(manifest.mediaType).toBe(image.topLevel.mediaType);
      for (const blob of image.blobs.values()) {
        const fetched = await source.getBlob({ digest: blob.digest, size: blob.size });
        expect(fetched.size).toBe(blob.size);
        expect(await digestStream(fetched.stream)).toEqual({ digest: blob.digest, size: blob.size });
      }
      expect(await source.getSignatures()).toEqual([]);
    } finally {
      await source.close();
    }
    // By digest too, verified against the digest.
    const byDigest = await reference(`gantry/single@${image.topLevel.digest}`).newImageSource(context);
    expect(digestOf((await byDigest.getManifest()).bytes)).toBe(image.topLevel.digest);
    await byDigest.close();
    const log = await registry.accessLog();
    expect(log.length).toBeGreaterThan(0);
    expect(new Set(log.map((entry) => entry.userAgent))).toEqual(new Set([gantryUserAgent()]));
    expect(gantryUserAgent()).toMatch(/^gantry\/\d+\.\d+\.\d+/);
  });

  it('pushes a multi-arch index and reads every instance', async () => {
    await pushFixture(transport, registry, 'gantry/list:multi', list, context);
    const source = await reference('gantry/list:multi').newImageSource(context);
    const top = await source.getManifest();
    expect(Buffer.from(top.bytes).equals(Buffer.from(list.topLevel.bytes))).toBe(true);
    expect(top.mediaType).toBe(MediaTypes.OciIndex);
    for (const single of list.images) {
      const instance = await source.getManifest(single.manifestDigest);
      expect(
        Buffer.from(instance.bytes).equals(Buffer.from(list.manifests.get(single.manifestDigest)!.bytes)),
      ).toBe(true);
    }
    await source.close();
  });

  it('reports a missing image, tag and blob with the right codes', async () => {
    await expect(reference('gantry/absent:v1').newImageSource(context)).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
      message: expect.stringContaining(`reading manifest v1 in ${registry.host}/gantry/absent`),
    });
    await expect(reference('gantry/single:no-such-tag').newImageSource(context)).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
    });
    const source = await reference('gantry/single:v1').newImageSource(context);
    const missing = digestOf('not stored anywhere');
    await expect(source.getBlob({ digest: missing, size: -1 })).rejects.toMatchObject({
      code: ErrorCodes.BlobNotFound,
      message: expect.stringContaining(missing),
    });
    await expect(source.getManifest(digestOf('no such manifest'))).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
    });
    await source.close();
  });

  it('finds blobs already present with HEAD and uploads nothing on a re-push', async () => {
    // A fresh transport knows no other repository holding the blobs, so it has nothing to mount from.
    const fresh = createDockerTransport();
    try {
      const destination = await fresh
        .parseReference(`//${registry.host}/gantry/single:v2`)
        .newImageDestination(context);
      registry.clearAccessLog();
      for (const blob of image.blobs.values()) {
        const result = await destination.tryReusingBlob!(
          { digest: blob.digest, size: blob.size },
          { isConfig: false, canSubstitute: true },
        );
        expect(result).toEqual({ reused: true, blob: { digest: blob.digest, size: blob.size } });
      }
      await destination.putManifest(image.topLevel.bytes, image.topLevel.mediaType);
      await destination.commit();
      await destination.close();
      const log = await registry.accessLog();
      expect(log.filter((entry) => entry.method === 'HEAD').length).toBe(image.blobs.size);
      expect(log.filter((entry) => entry.method === 'PATCH' || entry.method === 'POST')).toEqual([]);
      expect(log.filter((entry) => entry.method === 'GET' && entry.path.includes('/blobs/'))).toEqual([]);
    } finally {
      await fresh.closeConnections();
    }
  });

  it('writes the top-level manifest once, by tag, when nothing but commit follows it', async () => {
    const fresh = createDockerTransport();
    try {
      const destination = await fresh
        .parseReference(`//${registry.host}/gantry/single:v3`)
        .newImageDestination(context);
      registry.clearAccessLog();
      await destination.putManifest(image.topLevel.bytes, image.topLevel.mediaType, undefined, {
        lastBeforeCommit: true,
      });
      await destination.commit();
      await destination.close();
      const puts = (await registry.accessLog()).filter((entry) => entry.method === 'PUT');
      expect(puts.map((entry) => `${entry.path} ${entry.status}`)).toEqual([
        '/v2/gantry/single/manifests/v3 201',
      ]);
      // Without the hint, the tag moves only at commit: a PUT by digest, then one by tag.
      const cautious = await fresh
        .parseReference(`//${registry.host}/gantry/single:v4`)
        .newImageDestination(context);
      registry.clearAccessLog();
      await cautious.putManifest(image.topLevel.bytes, image.topLevel.mediaType);
      const beforeCommit = (await registry.accessLog()).filter((entry) => entry.method === 'PUT');
      expect(beforeCommit.map((entry) => entry.path)).toEqual([
        `/v2/gantry/single/manifests/${image.topLevel.digest}`,
      ]);
      await cautious.commit();
      await cautious.close();
      const all = (await registry.accessLog()).filter((entry) => entry.method === 'PUT');
      expect(all.map((entry) => entry.path).at(-1)).toBe('/v2/gantry/single/manifests/v4');
    } finally {
      await fresh.closeConnections();
    }
  });

  it('mounts blobs from another repository of the same registry and uploads nothing', async () => {
    // A fresh transport: it learns where the blobs are from the source's manifest only.
    const fresh = createDockerTransport();
    try {
      const source = await fresh
        .parseReference(`//${registry.host}/gantry/single:v1`)
        .newImageSource(context);
      const destination = await fresh
        .parseReference(`//${registry.host}/other/copy:v1`)
        .newImageDestination(context);
      registry.clearAccessLog();
      for (const blob of image.blobs.values()) {
        const result = await destination.tryReusingBlob!(
          { digest: blob.digest, size: blob.size },
          { isConfig: false, canSubstitute: true },
        );
        expect(result.reused).toBe(true);
      }
      await destination.putManifest(image.topLevel.bytes, image.topLevel.mediaType);
      await destination.commit();
      await destination.close();
      await source.close();
      const log = await registry.accessLog();
      const mounts = log.filter((entry) => entry.method === 'POST' && entry.path.includes('mount='));
      expect(mounts.length).toBe(image.blobs.size);
      expect(
        mounts.every((entry) => entry.status === 201 && entry.path.includes('from=gantry%2Fsingle')),
      ).toBe(true);
      expect(log.filter((entry) => entry.method === 'PATCH')).toEqual([]);
      expect(log.filter((entry) => entry.method === 'GET' && entry.path.includes('/blobs/'))).toEqual([]);
      const copied = await fresh.parseReference(`//${registry.host}/other/copy:v1`).newImageSource(context);
      for (const blob of image.blobs.values()) {
        expect(
          (await digestStream((await copied.getBlob({ digest: blob.digest, size: blob.size })).stream))
            .digest,
        ).toBe(blob.digest);
      }
      await copied.close();
    } finally {
      await fresh.closeConnections();
    }
  });

  it('untaggedRepositories: small blobs are not asked for there, a mount is still tried, big blobs are asked for', async () => {
    const fresh = createDockerTransport();
    const untagged = new Set<string>();
    const untaggedContext = dockerContext({
      tlsVerify: false,
      wholeUploadMaxBytes: 4096,
      untaggedRepositories: untagged,
    });
    try {
      const small = Buffer.from('a small blob of an untagged repository');
      const big = Buffer.alloc(8192, 7);
      const destination = await fresh
        .parseReference(`//${registry.host}/untagged/first:v1`)
        .newImageDestination(untaggedContext);
      // Filled after the destination was opened: the set is consulted at each check.
      untagged.add(`${registry.host}/untagged/first`);
      registry.clearAccessLog();
      const ask = (bytes: Buffer) =>
        destination.tryReusingBlob!(
          { digest: digestOf(bytes), size: bytes.byteLength },
          { isConfig: false, canSubstitute: true },
        );
      expect(await ask(small)).toEqual({ reused: false });
      expect(await ask(big)).toEqual({ reused: false });
      const heads = async () =>
        (await registry.accessLog())
          .filter((entry) => entry.method === 'HEAD')
          .map((entry) => entry.path.split('/').at(-1));
      expect(await heads()).toEqual([digestOf(big)]);
      // Put there by this process: asked for (it is there), not uploaded again.
      await destination.putBlob(
        Readable.from([small]),
        { digest: digestOf(small), size: small.byteLength },
        {
          isConfig: false,
        },
      );
      registry.clearAccessLog();
      expect(await ask(small)).toEqual({
        reused: true,
        blob: { digest: digestOf(small), size: small.byteLength },
      });
      expect(await heads()).toEqual([digestOf(small)]);
      await destination.close();

      // Another untagged repository: the blob this process put in the first one is mounted from there.
      const second = await fresh
        .parseReference(`//${registry.host}/untagged/second:v1`)
        .newImageDestination(untaggedContext);
      untagged.add(`${registry.host}/untagged/second`);
      registry.clearAccessLog();
      expect(
        await second.tryReusingBlob!(
          { digest: digestOf(small), size: small.byteLength },
          { isConfig: false, canSubstitute: true },
        ),
      ).toEqual({ reused: true, blob: { digest: digestOf(small), size: small.byteLength } });
      const log = await registry.accessLog();
      expect(log.map((entry) => `${entry.method} ${entry.status}`)).toEqual(['POST 201']);
      expect(log[0]!.path).toContain('from=untagged%2Ffirst');
      await second.close();

      // Without the option, the same blob is asked for in a repository.
      const asked = await fresh
        .parseReference(`//${registry.host}/untagged/third:v1`)
        .newImageDestination(dockerContext({ tlsVerify: false, wholeUploadMaxBytes: 4096 }));
      registry.clearAccessLog();
      const other = Buffer.from('a blob nobody wrote');
      expect(
        await asked.tryReusingBlob!(
          { digest: digestOf(other), size: other.byteLength },
          { isConfig: false, canSubstitute: true },
        ),
      ).toEqual({ reused: false });
      expect(await heads()).toEqual([digestOf(other)]);
      await asked.close();
    } finally {
      await fresh.closeConnections();
    }
  });

  it('writes manifests by digest and moves the tag only at commit', async () => {
    const destination = await reference('gantry/transactional:v1').newImageDestination(context);
    for (const blob of image.blobs.values()) {
      await destination.tryReusingBlob!(
        { digest: blob.digest, size: blob.size },
        { isConfig: false, canSubstitute: true },
      );
    }
    registry.clearAccessLog();
    await destination.putManifest(image.topLevel.bytes, image.topLevel.mediaType);
    await destination.close();
    // Closed without commit: the tag does not exist, the manifest is there by digest only.
    await expect(reference('gantry/transactional:v1').newImageSource(context)).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
    });
    const byDigest = await reference(`gantry/transactional@${image.topLevel.digest}`).newImageSource(context);
    await byDigest.close();
    const committed = await reference('gantry/transactional:v1').newImageDestination(context);
    await committed.putManifest(image.topLevel.bytes, image.topLevel.mediaType);
    await committed.commit();
    await committed.close();
    const puts = (await registry.accessLog())
      .filter((entry) => entry.method === 'PUT')
      .map((entry) => entry.path);
    expect(puts).toEqual([
      `/v2/gantry/transactional/manifests/${image.topLevel.digest}`,
      `/v2/gantry/transactional/manifests/${image.topLevel.digest}`,
      '/v2/gantry/transactional/manifests/v1',
    ]);
    const source = await reference('gantry/transactional:v1').newImageSource(context);
    expect(Buffer.from((await source.getManifest()).bytes).equals(Buffer.from(image.topLevel.bytes))).toBe(
      true,
    );
    await source.close();
  });

  it('computes the digest of a blob written without one, and never commits a wrong blob', async () => {
    const destination = await reference('gantry/blobs:v1').newImageDestination(context);
    const bytes = Buffer.from('a blob whose digest the pipeline does not know yet');
    const stored = await destination.putBlob(
      Readable.from([bytes.subarray(0, 10), bytes.subarray(10)]),
      { size: -1 },
      { isConfig: false },
    );
    expect(stored).toEqual({ digest: digestOf(bytes), size: bytes.byteLength });
    const wrongDigest = digestOf('something else');
    await expect(
      destination.putBlob(
        Readable.from([Buffer.from('the real content')]),
        { digest: wrongDigest, size: -1 },
        { isConfig: false },
      ),
    ).rejects.toMatchObject({ code: ErrorCodes.DigestMismatch });
    const failing = new Readable({
      read() {
        this.push(Buffer.from('partial'));
        this.destroy(Object.assign(new Error('verification failed upstream'), { code: 'TEST' }));
      },
    });
    await expect(
      destination.putBlob(failing, { digest: digestOf('partial'), size: 7 }, { isConfig: false }),
    ).rejects.toThrow(/verification failed upstream/);
    expect(
      await destination.tryReusingBlob!(
        { digest: wrongDigest, size: -1 },
        { isConfig: false, canSubstitute: false },
      ),
    ).toEqual({
      reused: false,
    });
    expect(
      await destination.tryReusingBlob!(
        { digest: digestOf('partial'), size: 7 },
        { isConfig: false, canSubstitute: false },
      ),
    ).toEqual({ reused: false });
    expect(
      await destination.tryReusingBlob!(
        { digest: digestOf(bytes), size: -1 },
        { isConfig: false, canSubstitute: false },
      ),
    ).toEqual({ reused: true, blob: { digest: digestOf(bytes), size: bytes.byteLength } });
    await destination.close();
  });

  it('stops an upload when the signal fires, with ERR_GANTRY_ABORTED, and stores nothing', async () => {
    const destination = await reference('gantry/aborted:v1').newImageDestination(context);
    const controller = new AbortController();
    let produced = 0;
    const endless = new Readable({
      read() {
        produced++;
        if (produced === 5) controller.abort();
        setTimeout(() => this.push(Buffer.alloc(64 * 1024, produced)), 5);
      },
    });
    const claimed = digestOf('never fully sent');
    await expect(
      destination.putBlob(
        endless,
        { digest: claimed, size: -1 },
        { isConfig: false, signal: controller.signal },
      ),
    ).rejects.toMatchObject({ code: ErrorCodes.Aborted });
    expect(endless.destroyed).toBe(true);
    expect(
      await destination.tryReusingBlob!(
        { digest: claimed, size: -1 },
        { isConfig: false, canSubstitute: false },
      ),
    ).toEqual({
      reused: false,
    });
    await destination.close();
  });

  it('refuses a manifest that does not match the digest in the reference', async () => {
    const destination = await reference(`gantry/single@${digestOf('other manifest')}`).newImageDestination(
      context,
    );
    await expect(
      destination.putManifest(image.topLevel.bytes, image.topLevel.mediaType),
    ).rejects.toMatchObject({
      code: ErrorCodes.DigestMismatch,
    });
    await destination.close();
  });

  it('lists every tag across pages', async () => {
    const tags = ['a1', 'a2', 'b1', 'b2', 'c1'];
    for (const tag of tags) {
      const destination = await reference(`gantry/tags:${tag}`).newImageDestination(context);
      for (const blob of image.blobs.values()) {
        expect(
          (
            await destination.tryReusingBlob!(
              { digest: blob.digest, size: blob.size },
              { isConfig: false, canSubstitute: true },
            )
          ).reused,
        ).toBe(true);
      }
      await destination.putManifest(image.topLevel.bytes, image.topLevel.mediaType);
      await destination.commit();
      await destination.close();
    }
    // Distribution 2.8 ignores `n` for tags (pagination came in 3.0): everything comes in one page.
    expect(
      (await transport.listTags(`//${registry.host}/gantry/tags`, context, { pageSize: 2 })).sort(),
    ).toEqual(tags);
    expect(await transport.listTags(`docker://${registry.host}/gantry/tags`, context)).toHaveLength(
      tags.length,
    );
    await expect(transport.listTags(`//${registry.host}/gantry/none`, context)).rejects.toMatchObject({
      code: ErrorCodes.RepositoryNotFound,
    });
    expect(() => transport.listTags(`//${registry.host}/gantry/tags:a1`, context)).toThrow(
      /No tag or digest allowed/,
    );
  });

  it('lists the registry catalog across pages', async () => {
    registry.clearAccessLog();
    const all = await transport.listRepositories(registry.host, context);
    expect(all).toEqual([...all].sort());
    expect(all).toEqual(
      expect.arrayContaining(['gantry/single', 'gantry/list', 'gantry/tags', 'other/copy']),
    );
    expect(await transport.listRepositories(registry.host, context, { pageSize: 2 })).toEqual(all);
    const pages = (await registry.accessLog()).filter((entry) => entry.path.startsWith('/v2/_catalog'));
    // One unpaged request, then pages of two.
    expect(pages.length - 1).toBeGreaterThanOrEqual(Math.ceil(all.length / 2));
    expect(pages.slice(1).every((entry) => entry.path.includes('n=2'))).toBe(true);
  });

  it('lists referrers through the referrers tag schema when the registry has no referrers API', async () => {
    const subject = image.topLevel.digest;
    const target = reference('gantry/single:v1');
    expect(await transport.listReferrers(target, subject, context)).toEqual([]);
    const destination = await reference('gantry/single:v1').newImageDestination(context);
    const emptyConfig = Buffer.from('{}');
    await destination.putBlob(
      Readable.from([emptyConfig]),
      { digest: digestOf(emptyConfig), size: 2 },
      { isConfig: true },
    );
    const artifact = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.OciManifest,
        artifactType: 'application/vnd.example.sbom',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf(emptyConfig), size: 2 },
        layers: [],
        subject: {
          mediaType: image.topLevel.mediaType,
          digest: subject,
          size: image.topLevel.bytes.byteLength,
        },
      }),
    );
    const artifactDigest = digestOf(artifact);
    await destination.putManifest(artifact, MediaTypes.OciManifest, artifactDigest);
    const descriptor = {
      mediaType: MediaTypes.OciManifest,
      digest: artifactDigest,
      size: artifact.byteLength,
      artifactType: 'application/vnd.example.sbom',
    };
    const index = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.OciIndex, manifests: [descriptor] }),
    );
    const tagged = await reference(`gantry/single:${referrersFallbackTag(subject)}`).newImageDestination(
      context,
    );
    await tagged.putManifest(index, MediaTypes.OciIndex);
    await tagged.commit();
    await tagged.close();
    await destination.close();
    expect(await transport.listReferrers(target, subject, context)).toEqual([descriptor]);
    expect(
      await transport.listReferrers(target, subject, context, {
        artifactType: 'application/vnd.example.sbom',
      }),
    ).toEqual([descriptor]);
    expect(
      await transport.listReferrers(target, subject, context, {
        artifactType: 'application/vnd.example.other',
      }),
    ).toEqual([]);
  });

  it('deletes an image by tag (resolving it to a digest) and by digest', async () => {
    await pushFixture(transport, registry, 'gantry/delete:t1', image, context);
    registry.clearAccessLog();
    await reference('gantry/delete:t1').deleteImage(context);
    const log = await registry.accessLog();
    // No ping: the push just before pinged this registry with the same settings (RegistryPings).
    expect(log.map((entry) => `${entry.method} ${entry.path} ${entry.status}`)).toEqual([
      'HEAD /v2/gantry/delete/manifests/t1 200',
      `DELETE /v2/gantry/delete/manifests/${image.topLevel.digest} 202`,
    ]);
    await expect(reference('gantry/delete:t1').newImageSource(context)).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
    });
    await expect(reference('gantry/delete:t1').deleteImage(context)).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
    });
    await pushFixture(transport, registry, 'gantry/delete:t2', image, context);
    await reference(`gantry/delete@${image.topLevel.digest as Digest}`).deleteImage(context);
    await expect(reference('gantry/delete:t2').newImageSource(context)).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
    });
  });

  it('pushes without a tag to @@unknown-digest@@, storing the manifest by its digest', async () => {
    registry.clearAccessLog();
    await pushFixture(transport, registry, 'gantry/tagless@@unknown-digest@@', image, context);
    const log = await registry.accessLog();
    expect(
      log
        .filter((entry) => entry.method === 'PUT' && entry.path.includes('/manifests/'))
        .map((entry) => entry.path),
    ).toEqual([`/v2/gantry/tagless/manifests/${image.topLevel.digest}`]);
    const source = await reference(`gantry/tagless@${image.topLevel.digest}`).newImageSource(context);
    expect(Buffer.from((await source.getManifest()).bytes).equals(Buffer.from(image.topLevel.bytes))).toBe(
      true,
    );
    await source.close();
    // No tag was created: Distribution 2.8 reports a repository without tags as unknown.
    await expect(transport.listTags(`//${registry.host}/gantry/tagless`, context)).rejects.toMatchObject({
      code: ErrorCodes.RepositoryNotFound,
    });
  });

  it('refuses plain HTTP while TLS verification is on, saying why', async () => {
    await expect(reference('gantry/single:v1').newImageSource(dockerContext({}))).rejects.toMatchObject({
      message: expect.stringMatching(/does not speak TLS.*--tls-verify=false/),
    });
  });
});
