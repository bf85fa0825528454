/**
 * The channel between the blob pipeline and the layer stream: chunks handed over as they are (the
 * same buffers, not copies), in order; the writer held back above the high-water mark; `close`
 * releasing a waiting writer and failing the reader.
 */
import { describe, expect, it } from 'vitest';
import { ChunkChannel } from './chunk-channel.js';

async function settle(): Promise<void> {
  for (let round = 0; round < 10; round++) await new Promise((resolve) => setImmediate(resolve));
}

describe('ChunkChannel', () => {
  it('hands the pushed buffers themselves to the reader, in order, then ends', async () => {
    const channel = new ChunkChannel(1 << 20);
    const pushed = [Buffer.from('a'), Buffer.alloc(300_000, 1), Buffer.from('c')];
    const reading = (async () => {
      const received: Uint8Array[] = [];
      for await (const chunk of channel) received.push(chunk);
      return received;
    })();
    for (const chunk of pushed) await channel.push(chunk);
    channel.end();
    const received = await reading;
    expect(received).toHaveLength(3);
    for (const [index, chunk] of received.entries()) expect(chunk).toBe(pushed[index]);
  });

  it('holds the writer back while the high-water mark is reached, until the reader takes chunks', async () => {
    const channel = new ChunkChannel(100);
    let pushedAll = false;
    const writing = (async () => {
      await channel.push(Buffer.alloc(60));
      await channel.push(Buffer.alloc(60)); // 120 waiting: held back
      pushedAll = true;
    })();
    await settle();
    expect(pushedAll).toBe(false); // nothing reads yet, so nothing can release it
    const iterator = channel[Symbol.asyncIterator]();
    expect((await iterator.next()).value).toHaveLength(60);
    await writing;
    expect(pushedAll).toBe(true);
    channel.end();
    expect((await iterator.next()).value).toHaveLength(60);
    expect((await iterator.next()).done).toBe(true);
  });

  it('close releases a waiting writer, drops what waits and makes the reader fail', async () => {
    const channel = new ChunkChannel(10);
    const writing = channel.push(Buffer.alloc(20));
    channel.close();
    await writing;
    expect(channel.closed).toBe(true);
    await channel.push(Buffer.alloc(5)); // a no-op now
    const reading = (async () => {
      for await (const _ of channel) {
        // nothing is handed over
      }
    })();
    await expect(reading).rejects.toThrow(/closed before its end/);
  });

  it('a reader that stops early closes the channel, so the writer is not left waiting', async () => {
    const channel = new ChunkChannel(10);
    const first = channel.push(Buffer.alloc(10));
    const second = channel.push(Buffer.alloc(10));
    for await (const _ of channel) break;
    await first;
    await second;
    expect(channel.closed).toBe(true);
  });
});
