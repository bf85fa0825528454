import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import {
  type FixtureImage,
  fixturePresets,
  runSkopeo,
  writeFixtureToDestination,
} from '@gantry/core/testing';
import { digestOf, ErrorCodes, type TransportContext } from '@gantry/core/transport';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { defaultUploadChunkBytes } from './blob-upload.js';
import { gantryUserAgent } from './connections.js';
import type { DockerContextOptions } from './context.js';
import { sharedUploadResumeBudget } from './resume-budget.js';
import { type FaultProxy, type ProxiedRequest, startFaultProxy } from './testing/fault-proxy.js';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import { buildImage, dockerContext, pushFixture } from './testing/test-helpers.js';
import { createDockerTransport, type DockerTransport } from './transport.js';

const isPatch = (request: ProxiedRequest) => request.method === 'PATCH';
const isStreamedPatch = (method: string, _path: string, headers: Record<string, unknown>) =>
  method === 'PATCH' && headers['content-range'] === undefined;
const isUploadStart = (method: string, requestPath: string) =>
  method === 'POST' && /\/blobs\/uploads\/(\?|$)/.test(requestPath) && !requestPath.includes('mount=');
const isUploadStartRequest = (request: ProxiedRequest) => isUploadStart(request.method, request.path);

/** Checks that the PATCHes of each upload session carry contiguous `Content-Range`s starting at 0. */
function expectContiguousChunks(patches: ProxiedRequest[]): void {
  let expectedStart = 0;
  for (const patch of patches) {
    expect(patch.contentRange, `${patch.method} ${patch.path}`).toMatch(/^\d+-\d+$/);
    const [start, end] = patch.contentRange!.split('-').map(Number) as [number, number];
    // A new session starts at 0 again.
    if (start === 0) expectedStart = 0;
    expect(start).toBe(expectedStart);
    expect(Number(patch.contentLength)).toBe(end - start + 1);
    expect(patch.bodyBytes).toBe(end - start + 1);
    expectedStart = end + 1;
  }
}

describe('blob uploads (real registry behind a fault proxy)', () => {
  let registry: TestRegistry;
  let proxy: FaultProxy;
  let directory: string;
  let small: FixtureImage;
  let big: FixtureImage;
  let uncompressed: FixtureImage;
  const plain = dockerContext({ tlsVerify: false });

  beforeAll(async () => {
    registry = await startTestRegistry();
    proxy = await startFaultProxy(registry.host);
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
    small = await buildImage(fixturePresets.uncompressedLayers, path.join(directory, 'small'));
    big = await buildImage(
      {
        layers: [
          {
            entries: [{ type: 'file', path: 'big.bin', randomSize: 9_500_000, seed: 'upload' }],
            compression: 'none',
          },
        ],
      },
      path.join(directory, 'big'),
    );
    uncompressed = small;
    const seeding = createDockerTransport();
    try {
      await pushFixture(seeding, registry, 'source/uncompressed:v1', uncompressed, plain);
    } finally {
      await seeding.closeConnections();
    }
  }, 60_000);

  afterEach(() => {
    proxy.statusFaults.length = 0;
    proxy.headerFaults.length = 0;
    proxy.faults.length = 0;
  });

  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  /** Pushes a fixture through the proxy with a fresh transport (no mounts, no remembered refusals). */
  async function pushThroughProxy(
    image: FixtureImage,
    repositoryAndTag: string,
    options: DockerContextOptions = {},
    transport: DockerTransport = createDockerTransport(),
  ): Promise<void> {
    const context: TransportContext = dockerContext({ tlsVerify: false, ...options });
    try {
      const destination = await transport
        .parseReference(`//${proxy.host}/${repositoryAndTag}`)
        .newImageDestination(context);
      await writeFixtureToDestination(image, destination);
    } finally {
      await transport.closeConnections();
    }
  }

  /** skopeo pulls the image from the registry: same manifest, every blob with its digest. */
  async function expectSkopeoPullsIdentical(image: FixtureImage, repositoryAndTag: string): Promise<void> {
    const reference = `docker://${registry.host}/${repositoryAndTag}`;
    const raw = await runSkopeo(['inspect', '--raw', '--tls-verify=false', reference]);
    expect(digestOf(raw)).toBe(image.topLevel.digest);
    const target = await mkdtemp(path.join(directory, 'pulled-'));
    await runSkopeo([
      '--insecure-policy',
      'copy',
      '-q',
      '--src-tls-verify=false',
      reference,
      `dir:${target}`,
    ]);
    const files = (await readdir(target)).filter((name) => /^[0-9a-f]{64}$/.test(name)).sort();
    const expected = [...image.blobs.keys()].map((digest) => digest.slice('sha256:'.length)).sort();
    expect(files).toEqual(expected);
  }

  it('uploads in chunks when the registry refuses a streamed PATCH on sight, losing nothing', async () => {
    proxy.statusFaults.push({ matches: isStreamedPatch, status: 400, immediate: true, times: 100 });
    proxy.requests.length = 0;
    await pushThroughProxy(small, 'chunks/refused:v1');
    const patches = proxy.requests.filter(isPatch);
    // Refused once: the transport remembers the registry wants chunks.
    expect(patches.filter((request) => request.contentRange === undefined).map((r) => r.status)).toEqual([
      400,
    ]);
    const chunks = patches.filter((request) => request.contentRange !== undefined);
    expect(chunks.length).toBe(small.blobs.size);
    expect(chunks.every((request) => request.status === 202)).toBe(true);
    expectContiguousChunks(chunks);
    await expectSkopeoPullsIdentical(small, 'chunks/refused:v1');
  });

  it('fails with a retryable error when a streamed PATCH is refused after 8 MiB, then uploads in chunks', async () => {
    // This refusal comes after the whole body was read: the bytes are gone, the blob must be sent again.
    proxy.statusFaults.push({ matches: isStreamedPatch, status: 413, times: 1 });
    const transport = createDockerTransport();
    proxy.requests.length = 0;
    await expect(pushThroughProxy(big, 'chunks/late-refusal:v1', {}, transport)).rejects.toMatchObject({
      code: ErrorCodes.Transient,
      retryable: true,
      message: expect.stringContaining('refused a streamed upload'),
    });
    expect(proxy.requests.filter(isPatch).map((request) => request.status)).toEqual([413]);
    proxy.requests.length = 0;
    await pushThroughProxy(big, 'chunks/late-refusal:v1', {}, transport);
    const patches = proxy.requests.filter(isPatch);
    expectContiguousChunks(patches);
    const layerSize = big.blobs.get(big.images[0]!.layerDigests[0]!)!.size;
    expect(patches.map((request) => Number(request.contentLength))).toEqual([
      defaultUploadChunkBytes,
      layerSize - defaultUploadChunkBytes,
      big.blobs.get(big.images[0]!.configDigest)!.size,
    ]);
    await expectSkopeoPullsIdentical(big, 'chunks/late-refusal:v1');
  });

  it('honours OCI-Chunk-Min-Length from the POST answer', async () => {
    proxy.headerFaults.push({
      matches: isUploadStart,
      headers: { 'oci-chunk-min-length': '9000000' },
      times: Number.POSITIVE_INFINITY,
    });
    proxy.requests.length = 0;
    await pushThroughProxy(big, 'chunks/minimum:v1');
    const patches = proxy.requests.filter(isPatch);
    expectContiguousChunks(patches);
    const layerSize = big.blobs.get(big.images[0]!.layerDigests[0]!)!.size;
    expect(patches.map((request) => Number(request.contentLength))).toEqual([
      9_000_000,
      layerSize - 9_000_000,
      big.blobs.get(big.images[0]!.configDigest)!.size,
    ]);
    await expectSkopeoPullsIdentical(big, 'chunks/minimum:v1');
  });

  it('uploads in chunks of uploadChunkSize (raised to the registry minimum), following each Location', async () => {
    proxy.requests.length = 0;
    await pushThroughProxy(small, 'chunks/forced:v1', { uploadChunkSize: 10_000 });
    let patches = proxy.requests.filter(isPatch);
    expectContiguousChunks(patches);
    expect(patches.length).toBeGreaterThan(small.blobs.size + 5);
    expect(patches.every((request) => Number(request.contentLength) <= 10_000)).toBe(true);
    // Distribution encodes the offset in each Location's `_state`: a stale location would fail.
    expect(new Set(patches.map((request) => request.path)).size).toBe(patches.length);
    await expectSkopeoPullsIdentical(small, 'chunks/forced:v1');

    proxy.headerFaults.push({
      matches: isUploadStart,
      headers: { 'oci-chunk-min-length': '16384' },
      times: Number.POSITIVE_INFINITY,
    });
    proxy.requests.length = 0;
    await pushThroughProxy(small, 'chunks/forced-minimum:v1', { uploadChunkSize: 10_000 });
    patches = proxy.requests.filter(isPatch);
    expectContiguousChunks(patches);
    const sizes = patches.map((request) => Number(request.contentLength));
    expect(sizes.filter((size) => size === 16384).length).toBeGreaterThan(2);
    expect(sizes.every((size) => size <= 16384)).toBe(true);
    await expectSkopeoPullsIdentical(small, 'chunks/forced-minimum:v1');
  });

  describe('blobs sent whole (wholeUploadMaxBytes)', () => {
    const isBlobCommit = (request: ProxiedRequest) =>
      request.method === 'PUT' && request.path.includes('/blobs/uploads/');
    const smallBlobSizes = () => [...small.blobs.values()].map((blob) => blob.size).sort((a, b) => a - b);

    it('sends a blob of known digest and size up to the limit in the PUT that commits it: no PATCH', async () => {
      proxy.requests.length = 0;
      await pushThroughProxy(small, 'whole/small:v1', { wholeUploadMaxBytes: 4 * 1024 * 1024 });
      expect(proxy.requests.filter(isPatch)).toEqual([]);
      expect(proxy.requests.filter(isUploadStartRequest)).toHaveLength(small.blobs.size);
      const commits = proxy.requests.filter(isBlobCommit);
      expect(commits.map((request) => request.status)).toEqual(commits.map(() => 201));
      expect(commits.map((request) => request.bodyBytes).sort((a, b) => a - b)).toEqual(smallBlobSizes());
      await expectSkopeoPullsIdentical(small, 'whole/small:v1');
    });

    it('streams a blob above the limit as before', async () => {
      proxy.requests.length = 0;
      await pushThroughProxy(big, 'whole/big:v1', { wholeUploadMaxBytes: 1024 * 1024 });
      const patches = proxy.requests.filter(isPatch);
      // The layer (9.5 MB) is streamed; the config (small) is sent whole.
      expect(patches).toHaveLength(1);
      expect(patches[0]!.bodyBytes).toBeGreaterThan(9_000_000);
      await expectSkopeoPullsIdentical(big, 'whole/big:v1');
    });

    it('sends the bytes again in a new session when the connection drops during the PUT', async () => {
      proxy.requestFaults.push({
        matches: (method, requestPath) => method === 'PUT' && requestPath.includes('/blobs/uploads/'),
        cutAfterBytes: 100,
        times: 1,
      });
      proxy.requests.length = 0;
      await pushThroughProxy(small, 'whole/dropped:v1', { wholeUploadMaxBytes: 4 * 1024 * 1024 });
      expect(proxy.requestFaults[0]!.times).toBe(0);
      expect(proxy.requests.filter(isPatch)).toEqual([]);
      // One session more than blobs: the dropped one was replaced.
      expect(proxy.requests.filter(isUploadStartRequest)).toHaveLength(small.blobs.size + 1);
      await expectSkopeoPullsIdentical(small, 'whole/dropped:v1');
    });

    it('refuses a stream longer than the size it was announced with, sending nothing', async () => {
      const transport = createDockerTransport();
      try {
        const destination = await transport
          .parseReference(`//${proxy.host}/whole/mismatch:v1`)
          .newImageDestination(dockerContext({ tlsVerify: false, wholeUploadMaxBytes: 4 * 1024 * 1024 }));
        proxy.requests.length = 0;
        const bytes = Buffer.from('eleven bytes');
        await expect(
          destination.putBlob(
            Readable.from([bytes]),
            { digest: digestOf(bytes), size: 5 },
            { isConfig: false },
          ),
        ).rejects.toMatchObject({ code: ErrorCodes.SizeMismatch });
        expect(proxy.requests.filter(isBlobCommit)).toEqual([]);
        await destination.close();
      } finally {
        await transport.closeConnections();
      }
    });
  });

  describe('chunks handed back once written (PutBlobOptions.chunkWritten)', () => {
    /**
     * A blob as `count` chunks of `chunkBytes` with a small one every `smallEvery` (gathered into pieces
     * before they are sent), and a `chunkWritten` that overwrites each chunk it gets, as a buffer pool
     * reading into it again would: the registry checks the digest at the PUT, so a chunk handed back
     * before its bytes left the process fails the upload.
     */
    function lentChunks(count: number, chunkBytes: number, seed: number, smallEvery = 7) {
      const chunks: Buffer[] = [];
      for (let index = 0; index < count; index += 1) {
        const size = smallEvery > 0 && index % smallEvery === 3 ? 1000 : chunkBytes;
        const chunk = Buffer.allocUnsafe(size);
        for (let offset = 0; offset < size; offset += 1)
          chunk[offset] = (offset * 31 + index * 7 + seed) & 0xff;
        chunks.push(chunk);
      }
      const bytes = Buffer.concat(chunks);
      const handedBack: Uint8Array[] = [];
      let handedBackBeforeTheEnd = 0;
      let ended = false;
      const chunkWritten = (chunk: Uint8Array): void => {
        handedBack.push(chunk);
        if (!ended) handedBackBeforeTheEnd += 1;
        chunk.fill(0xaa);
      };
      async function* stream(): AsyncGenerator<Buffer> {
        for (const chunk of chunks) {
          yield chunk;
          // Let the socket drain now and then, as a real source does.
          await new Promise((resolve) => setImmediate(resolve));
        }
        ended = true;
      }
      return {
        chunks,
        blob: { digest: digestOf(bytes), size: bytes.byteLength },
        readable: () => Readable.from(stream(), { objectMode: true }),
        chunkWritten,
        handedBack,
        handedBackBeforeTheEnd: () => handedBackBeforeTheEnd,
      };
    }

    async function putLent(
      repository: string,
      lent: ReturnType<typeof lentChunks>,
      options: DockerContextOptions = {},
    ) {
      const transport = createDockerTransport();
      try {
        const destination = await transport
          .parseReference(`//${proxy.host}/${repository}:v1`)
          .newImageDestination(dockerContext({ tlsVerify: false, ...options }));
        const stored = await destination.putBlob(lent.readable(), lent.blob, {
          isConfig: false,
          chunkWritten: lent.chunkWritten,
        });
        await destination.close();
        return stored;
      } finally {
        await transport.closeConnections();
      }
    }

    /** Each chunk of the stream was handed back exactly once (the very object read). */
    function expectEachHandedBackOnce(lent: ReturnType<typeof lentChunks>): void {
      expect(new Set(lent.handedBack).size).toBe(lent.handedBack.length);
      expect(new Set(lent.handedBack)).toEqual(new Set(lent.chunks));
    }

    it('a streamed upload hands each chunk back once, most of them while it still streams', async () => {
      const lent = lentChunks(400, 64 * 1024, 1);
      proxy.requests.length = 0;
      const stored = await putLent('lent/streamed', lent);
      expect(stored.digest).toBe(lent.blob.digest);
      expect(proxy.requests.filter(isPatch)).toHaveLength(1);
      expectEachHandedBackOnce(lent);
      // Beyond the resume window (8 MiB) and the margin, chunks come back as the upload goes.
      expect(lent.handedBackBeforeTheEnd()).toBeGreaterThan(lent.chunks.length / 2);
    }, 60_000);

    it('a streamed upload resumed after a dropped connection sends the right bytes, chunks handed back once', async () => {
      // As in upload-resume.test.ts: the buffering proxy drops the first PATCH whole, the registry reports
      // 0 bytes, and a window larger than what was sent lets the upload go on from memory.
      const { totalBytes, perUploadBytes } = sharedUploadResumeBudget;
      sharedUploadResumeBudget.resize(64 * 1024 * 1024, 64 * 1024 * 1024);
      try {
        const lent = lentChunks(400, 64 * 1024, 2);
        proxy.requestFaults.push({
          buffered: true,
          matches: (method) => method === 'PATCH',
          cutAfterBytes: 3_000_000,
          times: 1,
        });
        proxy.requests.length = 0;
        const stored = await putLent('lent/resumed', lent);
        expect(proxy.requestFaults[0]!.times).toBe(0);
        expect(stored.digest).toBe(lent.blob.digest);
        expect(proxy.requests.filter(isPatch).length).toBeGreaterThanOrEqual(2);
        expectEachHandedBackOnce(lent);
      } finally {
        sharedUploadResumeBudget.resize(totalBytes, perUploadBytes);
      }
    }, 60_000);

    it('a blob sent whole hands its chunks back once the registry took it', async () => {
      const lent = lentChunks(40, 64 * 1024, 3);
      const stored = await putLent('lent/whole', lent, { wholeUploadMaxBytes: 4 * 1024 * 1024 });
      expect(stored.digest).toBe(lent.blob.digest);
      expectEachHandedBackOnce(lent);
      expect(lent.handedBackBeforeTheEnd()).toBe(0);
    }, 60_000);

    it('a failed upload hands back only chunks that left the resume window, each once', async () => {
      // No small chunks: those are copied into gathered pieces and handed back at once.
      const lent = lentChunks(300, 64 * 1024, 4, 0);
      async function* failing(): AsyncGenerator<Buffer> {
        for (const [index, chunk] of lent.chunks.entries()) {
          if (index === 250) throw new Error('the source failed');
          yield chunk;
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
      const transport = createDockerTransport();
      try {
        const destination = await transport
          .parseReference(`//${proxy.host}/lent/failed:v1`)
          .newImageDestination(dockerContext({ tlsVerify: false }));
        await expect(
          destination.putBlob(Readable.from(failing(), { objectMode: true }), lent.blob, {
            isConfig: false,
            chunkWritten: lent.chunkWritten,
          }),
        ).rejects.toThrow('the source failed');
        expect(new Set(lent.handedBack).size).toBe(lent.handedBack.length);
        // The last 8 MiB read (the resume window) and more were not written for sure: not handed back.
        const handedBackBytes = lent.handedBack.reduce((sum, chunk) => sum + chunk.byteLength, 0);
        const readBytes = lent.chunks.slice(0, 250).reduce((sum, chunk) => sum + chunk.byteLength, 0);
        expect(handedBackBytes).toBeGreaterThan(0);
        expect(handedBackBytes).toBeLessThanOrEqual(readBytes - 8 * 1024 * 1024);
        await destination.close();
      } finally {
        await transport.closeConnections();
      }
    }, 60_000);
  });

  describe('upload sessions opened ahead', () => {
    const isBlobCommit = (request: ProxiedRequest) =>
      request.method === 'PUT' && request.path.includes('/blobs/uploads/');
    const isUploadCancel = (request: ProxiedRequest) =>
      request.method === 'DELETE' && request.path.includes('/blobs/uploads/');
    /** The requests since the last reset, but the ping. */
    const blobRequests = () => proxy.requests.filter((request) => request.path.includes('/blobs/'));

    /** A destination on the proxy with a fresh transport; `use` runs with it, then everything closes. */
    async function withDestination(
      repositoryAndTag: string,
      use: (
        destination: Awaited<
          ReturnType<ReturnType<DockerTransport['parseReference']>['newImageDestination']>
        >,
      ) => Promise<void>,
    ): Promise<void> {
      const transport = createDockerTransport();
      try {
        const destination = await transport
          .parseReference(`//${proxy.host}/${repositoryAndTag}`)
          .newImageDestination(plain);
        try {
          await use(destination);
        } finally {
          await destination.close();
        }
      } finally {
        await transport.closeConnections();
      }
    }

    it('POSTs the session when tryReusingBlob finds no blob, and the upload takes it: one POST per blob', async () => {
      const bytes = Buffer.from('a layer the repository does not have yet');
      const blob = { digest: digestOf(bytes), size: bytes.byteLength };
      proxy.requests.length = 0;
      await withDestination('ahead/taken:v1', async (destination) => {
        expect(await destination.tryReusingBlob!(blob, { isConfig: false, canSubstitute: false })).toEqual({
          reused: false,
        });
        // The session is opened before any upload asks for it.
        await vi.waitFor(() => expect(proxy.requests.filter(isUploadStartRequest)).toHaveLength(1), {
          timeout: 10_000,
        });
        const stored = await destination.putBlob(Readable.from([bytes]), blob, { isConfig: false });
        expect(stored).toMatchObject(blob);
      });
      expect(blobRequests().map((request) => `${request.method} ${request.status}`)).toEqual([
        'HEAD 404',
        'POST 202',
        'PATCH 202',
        'PUT 201',
      ]);
      const head = await fetch(`http://${registry.host}/v2/ahead/taken/blobs/${blob.digest}`, {
        method: 'HEAD',
      });
      expect(head.status).toBe(200);
    });

    it('cancels at close a session no upload took, and opens none for a blob of unknown size', async () => {
      const bytes = Buffer.from('a blob that is asked for but never uploaded');
      proxy.requests.length = 0;
      await withDestination('ahead/untaken:v1', async (destination) => {
        // The pipeline asks for other compressions of a layer with an unknown size: no session for those.
        await destination.tryReusingBlob!(
          { digest: digestOf(Buffer.from('another compression')), size: -1 },
          { isConfig: false, canSubstitute: false },
        );
        await destination.tryReusingBlob!(
          { digest: digestOf(bytes), size: bytes.byteLength },
          { isConfig: false, canSubstitute: false },
        );
      });
      const methods = proxy.requests.map((request) => `${request.method} ${request.status}`);
      expect(methods.filter((method) => method.startsWith('POST'))).toEqual(['POST 202']);
      const cancels = proxy.requests.filter(isUploadCancel);
      expect(cancels.map((request) => request.status)).toEqual([204]);
      const post = proxy.requests.find(isUploadStartRequest)!;
      expect(post.status).toBe(202);
    });

    it('POSTs again when the session opened ahead was refused, and reports nothing of it', async () => {
      proxy.statusFaults.push({ matches: isUploadStart, status: 400, times: 1 });
      const bytes = Buffer.from('a layer whose first session is refused');
      const blob = { digest: digestOf(bytes), size: bytes.byteLength };
      proxy.requests.length = 0;
      await withDestination('ahead/refused:v1', async (destination) => {
        await destination.tryReusingBlob!(blob, { isConfig: false, canSubstitute: false });
        await destination.putBlob(Readable.from([bytes]), blob, { isConfig: false });
      });
      expect(proxy.statusFaults[0]!.times).toBe(0);
      expect(proxy.requests.filter(isUploadStartRequest).map((request) => request.status)).toEqual([
        400, 202,
      ]);
      expect(proxy.requests.filter(isBlobCommit).map((request) => request.status)).toEqual([201]);
      expect(proxy.requests.filter(isUploadCancel)).toEqual([]);
    });
  });

  it('resumes a chunk answered 416 from the offset the registry reports', async () => {
    proxy.statusFaults.push({
      matches: (method, _path, headers) => method === 'PATCH' && headers['content-range'] === '10000-19999',
      status: 416,
      times: 1,
    });
    proxy.requests.length = 0;
    await pushThroughProxy(small, 'chunks/range:v1', { uploadChunkSize: 10_000 });
    const refused = proxy.requests.findIndex((request) => request.status === 416);
    expect(refused).toBeGreaterThanOrEqual(0);
    const after = proxy.requests.slice(refused + 1);
    expect(after[0]).toMatchObject({ method: 'GET', status: 204 });
    expect(after[0]!.path).toContain('/blobs/uploads/');
    expect(after[1]).toMatchObject({ method: 'PATCH', contentRange: '10000-19999', status: 202 });
    expect(proxy.statusFaults[0]!.times).toBe(0);
    await expectSkopeoPullsIdentical(small, 'chunks/range:v1');
  });

  describe('precomputed digests (--dest-precompute-digests)', () => {
    /** Copies the uncompressed source image to the proxy (compressed on the way) with a fresh transport. */
    async function copyCompressing(
      repositoryAndTag: string,
      options: DockerContextOptions,
      temporaryDirectory: string,
    ) {
      const transport = createDockerTransport();
      try {
        proxy.requests.length = 0;
        const result = await copyImage(
          transport.parseReference(`//${registry.host}/source/uncompressed:v1`),
          transport.parseReference(`//${proxy.host}/${repositoryAndTag}`),
          {
            sourceContext: plain,
            destinationContext: {
              ...dockerContext({ tlsVerify: false, ...options }),
              temporaryDirectory,
            },
            policy: insecureAcceptAnythingPolicy(),
            destinationCompression: 'gzip',
          },
        );
        return { result, requests: [...proxy.requests] };
      } finally {
        await transport.closeConnections();
      }
    }

    it('uploads no layer the registry already has, and removes its temporary files', async () => {
      const temporaryDirectory = await mkdtemp(path.join(directory, 'spool-'));
      const first = await copyCompressing(
        'target/precomputed:v1',
        { precomputeDigests: true },
        temporaryDirectory,
      );
      const layerCount = uncompressed.images[0]!.layerDigests.length;
      // First copy: every layer is compressed, found missing, uploaded; the config too.
      expect(first.requests.filter(isUploadStartRequest).length).toBe(layerCount + 1);
      expect(
        first.requests.filter(isPatch).reduce((total, request) => total + request.bodyBytes, 0),
      ).toBeGreaterThan(65_536);

      const second = await copyCompressing(
        'target/precomputed:v2',
        { precomputeDigests: true },
        temporaryDirectory,
      );
      expect(second.result.manifestDigest).toBe(first.result.manifestDigest);
      expect(second.requests.filter(isUploadStartRequest)).toEqual([]);
      expect(second.requests.filter(isPatch)).toEqual([]);
      const heads = second.requests.filter(
        (request) => request.method === 'HEAD' && request.path.includes('/blobs/') && request.status === 200,
      );
      expect(heads.length).toBeGreaterThanOrEqual(layerCount);
      expect(await readdir(temporaryDirectory)).toEqual([]);

      // Without the option, the compressed layers (digests unknown in advance) are uploaded again.
      const third = await copyCompressing('target/precomputed:v3', {}, temporaryDirectory);
      expect(third.result.manifestDigest).toBe(first.result.manifestDigest);
      expect(third.requests.filter(isUploadStartRequest).length).toBe(layerCount);
      expect(
        third.requests.filter(isPatch).reduce((total, request) => total + request.bodyBytes, 0),
      ).toBeGreaterThan(65_536);

      const pulled = await runSkopeo([
        'inspect',
        '--raw',
        '--tls-verify=false',
        `docker://${registry.host}/target/precomputed:v2`,
      ]);
      expect(digestOf(pulled)).toBe(first.result.manifestDigest);
    });

    it('removes the temporary file when the upload fails', async () => {
      const temporaryDirectory = await mkdtemp(path.join(directory, 'spool-'));
      proxy.statusFaults.push({ matches: isUploadStart, status: 403, times: 100 });
      await expect(
        copyCompressing('target/failing:v1', { precomputeDigests: true }, temporaryDirectory),
      ).rejects.toMatchObject({ code: ErrorCodes.Unauthorized });
      expect(await readdir(temporaryDirectory)).toEqual([]);
    });

    it('names the temporary file when it cannot be written', async () => {
      const missing = path.join(directory, 'no-such-directory');
      await expect(
        copyCompressing('target/unwritable:v1', { precomputeDigests: true }, missing),
      ).rejects.toMatchObject({
        code: ErrorCodes.Internal,
        message: expect.stringMatching(/writing the temporary file .*no-such-directory.*ENOENT/),
      });
    });
  });

  describe('User-Agent prefix (--user-agent-prefix)', () => {
    it('sends "<prefix> gantry/<version>" with every request, reads included', async () => {
      const expected = `acme-mirror/2.0 (ci) ${gantryUserAgent()}`;
      expect(gantryUserAgent()).toMatch(/^gantry\/\d+\.\d+\.\d+/);
      proxy.requests.length = 0;
      registry.clearAccessLog();
      const transport = createDockerTransport();
      try {
        const context = dockerContext({ tlsVerify: false, userAgentPrefix: 'acme-mirror/2.0 (ci)' });
        const destination = await transport
          .parseReference(`//${proxy.host}/agent/app:v1`)
          .newImageDestination(context);
        await writeFixtureToDestination(small, destination);
        const source = await transport.parseReference(`//${proxy.host}/agent/app:v1`).newImageSource(context);
        await source.getManifest();
        await source.close();
        expect(await transport.listTags(`//${proxy.host}/agent/app`, context)).toEqual(['v1']);
      } finally {
        await transport.closeConnections();
      }
      expect(proxy.requests.length).toBeGreaterThan(5);
      expect(new Set(proxy.requests.map((request) => request.userAgent))).toEqual(new Set([expected]));
      // Only this test's repository: a request of an earlier test may be logged after the log was cleared.
      const log = (await registry.accessLog()).filter((entry) => entry.path.startsWith('/v2/agent/'));
      expect(log.length).toBeGreaterThan(5);
      expect(new Set(log.map((entry) => entry.userAgent))).toEqual(new Set([expected]));

      // Without a prefix: the transport's own.
      proxy.requests.length = 0;
      const unprefixed = createDockerTransport();
      try {
        await unprefixed.listTags(`//${proxy.host}/agent/app`, plain);
      } finally {
        await unprefixed.closeConnections();
      }
      expect(new Set(proxy.requests.map((request) => request.userAgent))).toEqual(
        new Set([gantryUserAgent()]),
      );
    });

    it('refuses a prefix with control characters', async () => {
      const transport = createDockerTransport();
      await expect(
        transport
          .parseReference(`//${proxy.host}/agent/app:v1`)
          .newImageSource(dockerContext({ tlsVerify: false, userAgentPrefix: 'evil\r\nX-Injected: 1' })),
      ).rejects.toMatchObject({
        code: ErrorCodes.Usage,
        message: expect.stringContaining('userAgentPrefix'),
      });
    });
  });
});
