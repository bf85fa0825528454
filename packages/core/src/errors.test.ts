import { describe, expect, it } from 'vitest';
import {
  abortError,
  ErrorCodes,
  GantryError,
  hasErrorCode,
  isGantryError,
  throwIfAborted,
} from './errors.js';

describe('GantryError', () => {
  it('carries a stable code and a cross-copy brand', () => {
    const error = new GantryError(ErrorCodes.ImageNotFound, 'no such image', { cause: new Error('inner') });
    expect(error.code).toBe('ERR_GANTRY_IMAGE_NOT_FOUND');
    expect(error.retryable).toBe(false);
    expect(isGantryError(error)).toBe(true);
    expect(hasErrorCode(error, ErrorCodes.ImageNotFound)).toBe(true);
    expect(hasErrorCode(error, ErrorCodes.Internal)).toBe(false);
    expect((error.cause as Error).message).toBe('inner');
    // An error from another copy of the package carries the same registered symbol.
    const foreign = Object.assign(new Error('x'), {
      code: 'ERR_GANTRY_INTERNAL',
      [Symbol.for('gantry.error')]: true,
    });
    expect(isGantryError(foreign)).toBe(true);
    expect(isGantryError(new Error('plain'))).toBe(false);
    expect(isGantryError(null)).toBe(false);
  });

  it('is instanceof-compatible across copies of the package; subclasses check their prototype', () => {
    const foreign = Object.assign(new Error('from a plugin'), {
      code: 'ERR_GANTRY_IMAGE_NOT_FOUND',
      [Symbol.for('gantry.error')]: true,
    });
    expect(foreign instanceof GantryError).toBe(true);
    expect(new GantryError(ErrorCodes.Internal, 'x') instanceof GantryError).toBe(true);
    expect(new Error('plain') instanceof GantryError).toBe(false);
    expect((null as unknown) instanceof GantryError).toBe(false);
    class SpecificError extends GantryError {}
    expect(new SpecificError(ErrorCodes.Internal, 'x') instanceof SpecificError).toBe(true);
    expect(new GantryError(ErrorCodes.Internal, 'x') instanceof SpecificError).toBe(false);
    expect(foreign instanceof SpecificError).toBe(false);
    expect(new SpecificError(ErrorCodes.Internal, 'x') instanceof GantryError).toBe(true);
  });

  it('turns abort reasons into Aborted errors', () => {
    const controller = new AbortController();
    expect(() => throwIfAborted(controller.signal)).not.toThrow();
    controller.abort(new Error('stop now'));
    expect(abortError(controller.signal)).toMatchObject({ code: ErrorCodes.Aborted, message: 'stop now' });
    expect(() => throwIfAborted(controller.signal)).toThrowError('stop now');
  });
});
