import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { DockerEngineClient } from './client.js';

describe('DockerEngineClient.errorMessage', () => {
  it('reads at most 64 KiB of an error body and stops reading (an endless body cannot hang)', async () => {
    let produced = 0;
    const endless = new Readable({
      read() {
        produced += 4096;
        this.push(Buffer.alloc(4096, 'x'));
      },
    });
    const message = await DockerEngineClient.errorMessage({
      statusCode: 500,
      headers: {},
      body: endless,
    } as never);
    expect(message).toBe('x'.repeat(64 * 1024));
    expect(endless.destroyed).toBe(true);
    expect(produced).toBeLessThan(1024 * 1024);
  });

  it('returns the message of a JSON error body', async () => {
    const body = Readable.from([Buffer.from('{"message":"No such image: a:b"}')]);
    expect(await DockerEngineClient.errorMessage({ statusCode: 404, headers: {}, body } as never)).toBe(
      'No such image: a:b',
    );
  });
});
