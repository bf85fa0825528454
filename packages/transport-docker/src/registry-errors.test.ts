import { Readable } from 'node:stream';
import { ErrorCodes } from '@gantry/core/transport';
import { describe, expect, it } from 'vitest';
import { readLimitedBody, statusError } from './registry-errors.js';

const body = (code: string, message: string) => Buffer.from(JSON.stringify({ errors: [{ code, message }] }));

describe('statusError', () => {
  it('reports a blob the registry refused for its digest or size as a mismatch', () => {
    const digest = statusError(
      400,
      body('DIGEST_INVALID', 'provided digest did not match uploaded content'),
      {
        what: 'uploading blob sha256:abc',
      },
    );
    expect(digest.code).toBe(ErrorCodes.DigestMismatch);
    expect(digest.message).toBe(
      'uploading blob sha256:abc: digest mismatch: digest invalid: provided digest did not match uploaded content',
    );
    const size = statusError(400, body('SIZE_INVALID', 'provided length did not match content length'), {
      what: 'uploading blob sha256:abc',
    });
    expect(size.code).toBe(ErrorCodes.SizeMismatch);
  });

  it('keeps other 400 answers internal errors', () => {
    expect(statusError(400, body('BLOB_UPLOAD_INVALID', 'blob upload invalid'), { what: 'x' }).code).toBe(
      ErrorCodes.Internal,
    );
  });
});

describe('readLimitedBody', () => {
  it('stops reading at the limit and destroys the body, so an endless body cannot hang a request', async () => {
    let produced = 0;
    const endless = new Readable({
      read() {
        produced += 1024;
        this.push(Buffer.alloc(1024, 1));
      },
    });
    const read = await readLimitedBody(endless as never, 10_000);
    expect(read.length).toBe(10_000);
    expect(endless.destroyed).toBe(true);
    expect(produced).toBeLessThan(100_000);
  });

  it('returns a shorter body whole', async () => {
    expect(
      (await readLimitedBody(Readable.from([Buffer.from('abc'), Buffer.from('de')]) as never, 10)).toString(),
    ).toBe('abcde');
  });
});
