import { describe, expect, it } from 'vitest';
import { idMapArguments, subordinateRanges } from './userns.js';

describe('rootless ID maps', () => {
  const subuid = [
    '# comment',
    'alice:100000:65536',
    'bob:165536:65536',
    '1001:300000000:1000',
    'alice:bad:1',
    'alice:400000000:0',
    '',
  ].join('\n');

  it('reads every range of the user, by name or numeric ID, in the file order, skipping invalid ones', () => {
    expect(subordinateRanges(subuid, 'alice', 1001)).toEqual([
      { start: 100000, count: 65536 },
      { start: 300000000, count: 1000 },
    ]);
    expect(subordinateRanges(subuid, 'carol', 1002)).toEqual([]);
  });

  it('maps 0 to the user, then each range after the previous one, as podman does', () => {
    expect(
      idMapArguments(1001, [
        { start: 100000, count: 65536 },
        { start: 300000000, count: 1000 },
      ]),
    ).toEqual(['0', '1001', '1', '1', '100000', '65536', '65537', '300000000', '1000']);
    expect(idMapArguments(1001, [])).toEqual(['0', '1001', '1']);
  });
});
