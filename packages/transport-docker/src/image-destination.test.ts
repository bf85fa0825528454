import { Readable } from 'node:stream';
import { type Digest, digestOf } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { UploadPieceSource } from './image-destination.js';
import { sharedUploadResumeBudget } from './resume-budget.js';
import { type FaultProxy, startFaultProxy } from './testing/fault-proxy.js';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import { dockerContext } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

async function collect(source: AsyncIterable<Uint8Array>): Promise<number[]> {
  const sizes: number[] = [];
  for await (const chunk of source) sizes.push(chunk.byteLength);
  return sizes;
}

async function* pieces(sizes: number[]): AsyncGenerator<Uint8Array> {
  let value = 0;
  for (const size of sizes) {
    const chunk = Buffer.alloc(size);
    for (let index = 0; index < size; index++) chunk[index] = value++ & 0xff;
    yield chunk;
  }
}

/** The pieces an `UploadPieceSource` of `chunks` returns, gathered to at least `size` bytes. */
function upload(
  chunks: AsyncIterable<Uint8Array>,
  size: number,
  expectedDigest?: Digest,
  joined?: (piece: Uint8Array, chunks: readonly Uint8Array[]) => void,
): UploadPieceSource {
  return new UploadPieceSource(chunks[Symbol.asyncIterator](), size, expectedDigest, joined);
}

describe('UploadPieceSource', () => {
  it('joins small pieces into pieces of at least the size asked, keeping every byte in order', async () => {
    expect(await collect(upload(pieces([3, 3, 3, 3, 3]), 8))).toEqual([9, 6]);
    const joined = Buffer.concat(
      await (async () => {
        const chunks: Uint8Array[] = [];
        for await (const chunk of upload(pieces([5, 1, 7, 2, 9, 4]), 6)) chunks.push(chunk);
        return chunks;
      })(),
    );
    expect([...joined]).toEqual(Array.from({ length: 28 }, (_, index) => index));
  });

  it('passes large pieces through as they are and yields nothing for an empty source', async () => {
    const large = Buffer.alloc(10);
    const seen: Uint8Array[] = [];
    for await (const piece of upload(
      (async function* () {
        yield large;
        yield Buffer.alloc(2);
        yield Buffer.alloc(12);
      })(),
      8,
    ))
      seen.push(piece);
    expect(seen.map((piece) => piece.byteLength)).toEqual([10, 14]);
    expect(seen[0]).toBe(large);
    expect(await collect(upload(pieces([]), 8))).toEqual([]);
  });

  it('hashes the bytes when no digest is named, only counts them when one is, once the source ended', async () => {
    const bytes = Buffer.concat([Buffer.alloc(5, 1), Buffer.alloc(20, 2), Buffer.alloc(3, 3)]);
    const hashing = upload(pieces([5, 20, 3]), 8);
    expect(hashing.written).toBeUndefined();
    const taken: Uint8Array[] = [];
    const first = await hashing.next();
    taken.push(first.value!);
    // Before the source ended: nothing known yet.
    expect(hashing.written).toBeUndefined();
    for await (const piece of hashing) taken.push(piece);
    expect(taken.map((piece) => piece.byteLength)).toEqual([25, 3]);
    const expected = digestOf(Buffer.concat(taken));
    expect(hashing.written).toEqual({ digest: expected, size: 28 });
    const named = `sha256:${'0'.repeat(64)}` as Digest;
    const counting = upload(
      (async function* () {
        yield bytes;
      })(),
      8,
      named,
    );
    await collect(counting);
    expect(counting.written).toEqual({ digest: named, size: 28 });
  });

  it('tells which chunks a piece was joined from, before the piece is returned', async () => {
    const calls: Array<{ piece: number; chunks: number[] }> = [];
    const source = upload(pieces([3, 3, 3, 10, 1]), 8, undefined, (piece, chunks) =>
      calls.push({ piece: piece.byteLength, chunks: chunks.map((chunk) => chunk.byteLength) }),
    );
    const first = await source.next();
    expect(first.value?.byteLength).toBe(9);
    expect(calls).toEqual([{ piece: 9, chunks: [3, 3, 3] }]);
    // A large chunk with nothing gathered, then a single small one at the end: neither is a copy.
    expect(await collect(source)).toEqual([10, 1]);
    expect(calls).toHaveLength(1);
  });

  it('lets an error of the source through, records it and ends', async () => {
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield Buffer.alloc(2);
      throw new Error('verification failed');
    }
    const source = upload(failing(), 8);
    await expect(collect(source)).rejects.toThrow('verification failed');
    expect((source.failure.error as Error).message).toBe('verification failed');
    expect(source.written).toBeUndefined();
    expect(await source.next()).toEqual({ done: true, value: undefined });
  });
});

describe('chunks handed back once written (PutBlobOptions.chunkWritten, real registry)', () => {
  let registry: TestRegistry;
  let proxy: FaultProxy;
  const context = dockerContext({ tlsVerify: false });

  beforeAll(async () => {
    registry = await startTestRegistry();
    proxy = await startFaultProxy(registry.host);
  }, 60_000);

  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
  });

  /** Pieces of random bytes: mostly 1 MiB, some small enough to be joined before they are sent. */
  function blobPieces(seed: number, count = 40): Buffer[] {
    const sizes = [1024 * 1024, 3000, 5000, 20_000, 700, 512 * 1024, 100_000];
    const pieces: Buffer[] = [];
    for (let index = 0; index < count; index++) {
      const piece = Buffer.alloc(sizes[index % sizes.length]!);
      for (let offset = 0; offset < piece.byteLength; offset += 4) {
        piece.writeUInt32LE((Math.imul(seed + index, 2654435761) ^ offset) >>> 0, offset - (offset % 4));
      }
      pieces.push(piece);
    }
    return pieces;
  }

  /**
   * Uploads `pieces` to `host` with a `chunkWritten` that overwrites every chunk handed back at once:
   * a chunk handed back while its bytes still wait in the socket's queue would reach the registry
   * overwritten, and the registry would refuse the digest.
   */
  async function uploadOverwritingHandedBack(
    host: string,
    repository: string,
    pieces: Buffer[],
  ): Promise<{ stored: { digest: string; size: number }; handedBack: Uint8Array[] }> {
    const intact = Buffer.concat(pieces);
    const blob = { digest: digestOf(intact), size: intact.byteLength };
    const handedBack: Uint8Array[] = [];
    const transport = createDockerTransport();
    try {
      const destination = await transport
        .parseReference(`//${host}/${repository}`)
        .newImageDestination(context);
      try {
        const stored = await destination.putBlob(Readable.from(pieces, { objectMode: false }), blob, {
          isConfig: false,
          chunkWritten: (chunk) => {
            handedBack.push(chunk);
            chunk.fill(0xee);
          },
        });
        return { stored, handedBack };
      } finally {
        await destination.close();
      }
    } finally {
      await transport.closeConnections();
    }
  }

  it('hands every chunk back once, only after its bytes left: overwriting them then changes nothing uploaded', async () => {
    // Nothing kept for resuming: a chunk is handed back as soon as its bytes are known to have left.
    const { totalBytes, perUploadBytes } = sharedUploadResumeBudget;
    sharedUploadResumeBudget.resize(1, 1);
    onTestFinished(() => sharedUploadResumeBudget.resize(totalBytes, perUploadBytes));
    const pieces = blobPieces(1);
    const intact = Buffer.concat(pieces);
    const { stored, handedBack } = await uploadOverwritingHandedBack(
      registry.host,
      'handed-back/plain:v1',
      pieces,
    );
    expect(stored).toMatchObject({ digest: digestOf(intact), size: intact.byteLength });
    // Every chunk of the stream, each once (the joined ones at once, the others once written).
    expect(handedBack).toHaveLength(pieces.length);
    expect(new Set(handedBack).size).toBe(pieces.length);
    const handedBackSet = new Set(handedBack);
    expect(pieces.every((piece) => handedBackSet.has(piece))).toBe(true);
    // The registry checked the digest of what it received when the upload was committed.
    const head = await fetch(`http://${registry.host}/v2/handed-back/plain/blobs/${stored.digest}`, {
      method: 'HEAD',
    });
    expect(head.status).toBe(200);
  }, 60_000);

  it('hands back the chunks of a resumed upload too, each once, none before it was written again', async () => {
    // The buffering proxy drops the first PATCH after 3 MB: the registry holds nothing, and the bytes
    // kept for resuming (16 MiB: more than the socket buffers hold when the drop is seen) are sent
    // again from memory; the blob is larger, so chunks are handed back while it streams.
    const { totalBytes, perUploadBytes } = sharedUploadResumeBudget;
    sharedUploadResumeBudget.resize(16 * 1024 * 1024, 16 * 1024 * 1024);
    onTestFinished(() => sharedUploadResumeBudget.resize(totalBytes, perUploadBytes));
    proxy.requestFaults.push({
      buffered: true,
      matches: (method) => method === 'PATCH',
      cutAfterBytes: 3_000_000,
      times: 1,
    });
    proxy.requests.length = 0;
    const pieces = blobPieces(2, 120);
    const intact = Buffer.concat(pieces);
    const { stored, handedBack } = await uploadOverwritingHandedBack(
      proxy.host,
      'handed-back/resumed:v1',
      pieces,
    );
    expect(proxy.requestFaults[0]!.times).toBe(0);
    expect(proxy.requests.some((request) => request.method === 'GET' && request.status === 204)).toBe(true);
    expect(stored).toMatchObject({ digest: digestOf(intact), size: intact.byteLength });
    expect(handedBack).toHaveLength(pieces.length);
    expect(new Set(handedBack).size).toBe(pieces.length);
  }, 60_000);
});
