import { describeFileSystemError, errorCode, resolvePathToFullyExplicit } from '@gantry/core/transport';
import { describe, expect, it } from 'vitest';
import * as fileSystem from './file-system.js';
import { randomSuffix } from './file-system.js';

// resolvePathToFullyExplicit, describeFileSystemError and errorCode live in @gantry/core (tested there).
describe('re-exported file-system helpers', () => {
  it('are the @gantry/core ones', () => {
    expect(fileSystem.resolvePathToFullyExplicit).toBe(resolvePathToFullyExplicit);
    expect(fileSystem.describeFileSystemError).toBe(describeFileSystemError);
    expect(fileSystem.errorCode).toBe(errorCode);
  });
});

describe('randomSuffix', () => {
  it('makes distinct temporary suffixes', () => {
    expect(randomSuffix()).toMatch(/^[0-9a-f]{16}$/);
    expect(randomSuffix()).not.toBe(randomSuffix());
  });
});
