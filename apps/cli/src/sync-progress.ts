/**
 * `gantry sync` progress on stderr, from core's `SyncProgressEvent`s.
 *
 * Not a terminal: plain lines, one when an image starts and one when it ends
 *   Copying image 3/50 docker://src/app:1 to docker://dst/app:1
 *   Copied docker://src/app:1 to docker://dst/app:1 (12.3MiB in 1.2s)
 *   Skipped docker://src/app:2: docker://dst/app:2 already has sha256:…
 *   Failed docker://src/app:3: <error>
 * A terminal: the same finished lines scroll above a block of one line per running image, redrawn in
 * place (bytes done / planned size, a bar, throughput).
 * Either way a summary line ends the output (see `formatSyncSummary`).
 */
import type { SyncImage, SyncProgressEvent, SyncResult } from '@gantry/core';
import { formatBytes } from './progress.js';

export interface SyncProgressOptions {
  write(text: string): void;
  isTTY: boolean;
  columns?: number;
  now?: () => number;
}

function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** The line that ends a sync: copied, skipped, failed, bytes, time. */
export function formatSyncSummary(result: SyncResult): string {
  const parts = result.dryRun
    ? [`would copy ${result.wouldCopy}`, `skipped ${result.skipped}`, `failed ${result.failed}`]
    : [`copied ${result.copied}`, `skipped ${result.skipped}`, `failed ${result.failed}`];
  if (result.notStarted > 0) parts.push(`not started ${result.notStarted}`);
  const verb = result.dryRun ? 'Dry run' : 'Sync';
  return `${verb} done: ${parts.join(', ')}; ${formatBytes(result.bytes)} transferred in ${formatSeconds(result.durationMs)}\n`;
}

function finishedLine(event: Extract<SyncProgressEvent, { type: 'image-done' }>): string {
  const { entry } = event;
  switch (entry.result) {
    case 'copied':
      return `Copied ${entry.source} to ${entry.destination} (${formatBytes(entry.bytes)} in ${formatSeconds(entry.durationMs ?? 0)})\n`;
    case 'skipped':
      return `Skipped ${entry.source}: ${entry.destination} already has ${entry.digest}\n`;
    case 'would-copy':
      return `Would copy ${entry.source} to ${entry.destination}\n`;
    case 'failed':
      return `Failed ${entry.source}${entry.destination ? ` to ${entry.destination}` : ''}: ${entry.error?.message ?? 'unknown error'}\n`;
    default:
      return '';
  }
}

/** Returns an `onProgress` handler writing sync progress for the given output. */
export function createSyncProgressReporter(options: SyncProgressOptions): (event: SyncProgressEvent) => void {
  // process.hrtime, not performance.now(): Node loads perf_hooks at the first use of `performance`.
  const now = options.now ?? (() => Number(process.hrtime.bigint()) / 1e6);
  let total = 0;
  let startedCount = 0;
  const running = new Map<number, { image: SyncImage; bytes: number; startedAt: number }>();
  let drawnLines = 0;
  let lastDraw = 0;
  const columns = Math.max(40, options.columns ?? 80);
  const cut = (line: string) => (line.length > columns - 1 ? `${line.slice(0, columns - 2)}…` : line);
  const clear = () => {
    if (drawnLines > 0) options.write(`\x1b[${drawnLines}A\x1b[0J`);
    drawnLines = 0;
  };
  const draw = () => {
    const lines = [...running.values()].map(({ image, bytes, startedAt }) => {
      const seconds = Math.max(0.001, (now() - startedAt) / 1000);
      const fraction = image.size > 0 ? Math.min(1, bytes / image.size) : 0;
      const width = 20;
      const filled = Math.round(fraction * width);
      const bar = `[${'='.repeat(filled)}${' '.repeat(width - filled)}]`;
      return cut(
        `${bar} ${formatBytes(bytes)} / ${formatBytes(image.size)} ${formatBytes(bytes / seconds)}/s ${image.source}`,
      );
    });
    options.write(lines.map((line) => `${line}\n`).join(''));
    drawnLines = lines.length;
    lastDraw = now();
  };
  const print = (text: string) => {
    if (!options.isTTY) {
      options.write(text);
      return;
    }
    clear();
    options.write(text);
    draw();
  };
  return (event) => {
    switch (event.type) {
      case 'list-tags':
        if (!options.isTTY) options.write(`Listing tags of ${event.repository}\n`);
        return;
      case 'warning':
        print(`Warning: ${event.message}\n`);
        return;
      case 'planned':
        total = event.toCopy;
        print(
          `Found ${event.images.length} images: ${event.toCopy} to copy, ${event.skipped} already present${event.failed > 0 ? `, ${event.failed} failed` : ''}\n`,
        );
        return;
      case 'image-start':
        startedCount++;
        running.set(event.image.index, { image: event.image, bytes: 0, startedAt: now() });
        if (!options.isTTY) {
          options.write(
            `Copying image ${startedCount}/${total} ${event.image.source} to ${event.image.destination}\n`,
          );
        } else print('');
        return;
      case 'image-progress': {
        const state = running.get(event.image.index);
        if (!state) return;
        state.bytes = event.bytes;
        if (options.isTTY && now() - lastDraw >= 100) {
          clear();
          draw();
        }
        return;
      }
      case 'image-done':
        running.delete(event.image.index);
        print(finishedLine(event));
        return;
    }
  };
}
