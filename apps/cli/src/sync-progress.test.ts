import type { SyncImage, SyncProgressEvent, SyncResult } from '@gantry/core';
import { describe, expect, it } from 'vitest';
import { createSyncProgressReporter, formatSyncSummary } from './sync-progress.js';

const image: SyncImage = {
  index: 0,
  source: 'docker://src/app:1',
  destination: 'docker://dst/app:1',
  size: 2048,
};
const events: SyncProgressEvent[] = [
  { type: 'list-tags', repository: 'src/app' },
  { type: 'planned', images: [image], toCopy: 1, skipped: 0, failed: 0 },
  { type: 'image-start', image },
  {
    type: 'image-progress',
    image,
    bytes: 1024,
    event: {
      type: 'blob-progress',
      blob: { digest: 'sha256:aa' as never, size: 2048 },
      kind: 'layer',
      bytes: 1024,
      total: 2048,
    },
  },
  {
    type: 'image-done',
    image,
    entry: {
      source: image.source,
      destination: image.destination,
      result: 'copied',
      size: 2048,
      bytes: 2048,
      durationMs: 1500,
    },
  },
];

function run(isTTY: boolean): string {
  let output = '';
  let clock = 0;
  const report = createSyncProgressReporter({
    write: (text) => (output += text),
    isTTY,
    columns: 100,
    now: () => (clock += 200),
  });
  for (const event of events) report(event);
  return output;
}

describe('sync progress', () => {
  it('writes plain lines when stderr is not a terminal', () => {
    expect(run(false)).toBe(
      [
        'Listing tags of src/app',
        'Found 1 images: 1 to copy, 0 already present',
        'Copying image 1/1 docker://src/app:1 to docker://dst/app:1',
        'Copied docker://src/app:1 to docker://dst/app:1 (2.0KiB in 1.5s)',
        '',
      ].join('\n'),
    );
  });

  it('redraws one line per running image on a terminal, finished lines above', () => {
    const output = run(true);
    expect(output).toContain('[==========          ] 1.0KiB / 2.0KiB');
    expect(output).toContain('\x1b[1A\x1b[0J');
    expect(output.endsWith('Copied docker://src/app:1 to docker://dst/app:1 (2.0KiB in 1.5s)\n')).toBe(true);
  });

  it('ends with a summary: copied, skipped, failed, bytes, time', () => {
    const result: SyncResult = {
      entries: [],
      copied: 48,
      skipped: 2,
      failed: 1,
      wouldCopy: 0,
      notStarted: 3,
      bytes: 3 * 1024 * 1024,
      durationMs: 40_100,
      dryRun: false,
    };
    expect(formatSyncSummary(result)).toBe(
      'Sync done: copied 48, skipped 2, failed 1, not started 3; 3.0MiB transferred in 40.1s\n',
    );
    expect(formatSyncSummary({ ...result, dryRun: true, wouldCopy: 5, notStarted: 0 })).toBe(
      'Dry run done: would copy 5, skipped 2, failed 1; 3.0MiB transferred in 40.1s\n',
    );
  });
});
