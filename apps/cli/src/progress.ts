/**
 * Copy progress on stderr, from core's `CopyProgressEvent`s.
 *
 * Not a terminal: skopeo's plain lines, exactly as skopeo 1.9 (Debian) writes them when its output is
 * not a terminal:
 *   Getting image source signatures
 *   Copying blob sha256:<full hex>          (one per layer, also for reused ones)
 *   Copying config sha256:<full hex>
 *   Writing manifest to image destination
 *   Storing signatures
 * and for lists copied with --all: `Getting image list signatures`, `Copying N of M images in list`,
 * `Copying image <digest> (i/N)`, then each image's lines, then `Writing manifest list to image
 * destination`, `Storing list signatures`. Like skopeo, "Storing signatures" follows every manifest
 * write whether or not there are signatures to store. With `--copy-referrers` (not in skopeo), each
 * referrer adds `Copying referrer <digest> (<artifact type>) of <subject digest>`, then its blobs' lines.
 *
 * A terminal: one line per blob redrawn in place with ANSI escapes (short digest, a bar, bytes done
 * / total, throughput), ending as `done` or `skipped: already exists`, like skopeo's progress bars.
 */
import type { CopyProgressEvent } from '@gantry/core';

export interface ProgressWriterOptions {
  write(text: string): void;
  isTTY: boolean;
  /** Terminal width; lines are cut to fit so redrawing stays in place. */
  columns?: number;
  now?: () => number;
}

/** `139.0b`, `1.2KiB`, `3.4MiB` like the mpb counters skopeo shows. */
export function formatBytes(bytes: number): string {
  const units = ['b', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)}${units[unit]}`;
}

function shortHex(digest: string, length: number): string {
  return digest.slice(digest.indexOf(':') + 1).slice(0, length);
}

interface BlobLine {
  key: string;
  kind: 'layer' | 'config';
  digest: string;
  bytes: number;
  total: number;
  startedAt: number;
  state: 'running' | 'copied' | 'reused' | 'skipped';
}

/** Returns an `onProgress` handler writing progress for the given output. */
export function createProgressReporter(options: ProgressWriterOptions): (event: CopyProgressEvent) => void {
  return options.isTTY ? createTerminalReporter(options) : createPlainReporter(options);
}

function createListTracker() {
  let pendingList: { instanceCount: number; copyCount: number } | undefined;
  let pendingSignatureRead = false;
  let listMode = false;
  return {
    /** A signatures-read event: its line depends on whether a list follows, so it waits for the next event. */
    onSignaturesRead() {
      pendingSignatureRead = true;
    },
    /** The deferred "Getting … signatures" line, if any, for the event now arriving. */
    flush(event: CopyProgressEvent): string[] {
      if (!pendingSignatureRead || event.type === 'list-start') return [];
      pendingSignatureRead = false;
      const startsList = event.type === 'image-start' && event.total !== undefined && !listMode;
      return [startsList ? 'Getting image list signatures' : 'Getting image source signatures'];
    },
    onListStart(event: { instanceCount: number; copyCount: number }) {
      pendingList = event;
    },
    /** Lines to print for an image-start event. */
    onImageStart(event: Extract<CopyProgressEvent, { type: 'image-start' }>): string[] {
      if (event.total === undefined || event.index === undefined) return [];
      const lines: string[] = [];
      if (!listMode) {
        listMode = true;
        const list = pendingList ?? { instanceCount: event.total, copyCount: event.total };
        lines.push(`Copying ${list.copyCount} of ${list.instanceCount} images in list`);
      }
      lines.push(`Copying image ${event.instanceDigest ?? ''} (${event.index + 1}/${event.total})`);
      return lines;
    },
    /**
     * The lines for a manifest-write event: skopeo announces storing signatures right after writing
     * each manifest, whether or not there are signatures, so both lines come from this event.
     */
    manifestLines(event: Extract<CopyProgressEvent, { type: 'manifest-write' }>): string[] {
      return listMode && event.instanceDigest === undefined
        ? ['Writing manifest list to image destination', 'Storing list signatures']
        : ['Writing manifest to image destination', 'Storing signatures'];
    },
  };
}

/** `Copying referrer <digest> (<artifact type>) of <subject>` (`--copy-referrers`; skopeo has none). */
function referrerLine(event: Extract<CopyProgressEvent, { type: 'referrer-start' }>): string {
  const kind = event.referrer.artifactType ? ` (${event.referrer.artifactType})` : '';
  return `Copying referrer ${event.referrer.digest}${kind} of ${event.subject}`;
}

function blobKey(event: { blob: { digest: string }; kind: string }): string {
  return `${event.kind}:${event.blob.digest}`;
}

function createPlainReporter(options: ProgressWriterOptions): (event: CopyProgressEvent) => void {
  const list = createListTracker();
  const announced = new Set<string>();
  const line = (text: string) => options.write(`${text}\n`);
  return (event) => {
    for (const text of list.flush(event)) line(text);
    switch (event.type) {
      case 'signatures-read':
        list.onSignaturesRead();
        return;
      case 'list-start':
        list.onListStart(event);
        return;
      case 'image-start':
        for (const text of list.onImageStart(event)) line(text);
        announced.clear();
        return;
      case 'referrer-start':
        line(referrerLine(event));
        announced.clear();
        return;
      case 'blob-start':
      case 'blob-done': {
        const key = blobKey(event);
        if (announced.has(key)) return;
        announced.add(key);
        line(`Copying ${event.kind === 'config' ? 'config' : 'blob'} ${event.blob.digest}`);
        return;
      }
      case 'manifest-write':
        for (const text of list.manifestLines(event)) line(text);
        return;
      case 'signing':
        line(event.message);
        return;
      default:
        return;
    }
  };
}

function createTerminalReporter(options: ProgressWriterOptions): (event: CopyProgressEvent) => void {
  const list = createListTracker();
  const now = options.now ?? (() => performance.now());
  const columns = Math.max(20, options.columns ?? 80);
  let blobs: BlobLine[] = [];
  let drawnLines = 0;
  let lastDraw = 0;

  const render = (blob: BlobLine): string => {
    const label = `Copying ${blob.kind === 'config' ? 'config' : 'blob'} ${shortHex(blob.digest, blob.kind === 'config' ? 10 : 12)}`;
    const seconds = Math.max((now() - blob.startedAt) / 1000, 0.001);
    const throughput = `${formatBytes(blob.bytes / seconds)}/s`;
    let text: string;
    if (blob.state === 'reused' || blob.state === 'skipped') text = `${label} skipped: already exists`;
    else if (blob.state === 'copied') text = `${label} done   ${formatBytes(blob.bytes)} | ${throughput}`;
    else {
      const counters =
        blob.total >= 0 ? `${formatBytes(blob.bytes)} / ${formatBytes(blob.total)}` : formatBytes(blob.bytes);
      const barWidth = Math.max(
        10,
        Math.min(40, columns - label.length - counters.length - throughput.length - 10),
      );
      const filled =
        blob.total > 0 ? Math.min(barWidth, Math.floor((blob.bytes / blob.total) * barWidth)) : 0;
      const bar = `[${'='.repeat(filled)}${filled < barWidth ? '>' : ''}${' '.repeat(Math.max(0, barWidth - filled - 1))}]`;
      text = `${label} ${bar} ${counters} | ${throughput}`;
    }
    return text.length >= columns ? text.slice(0, columns - 1) : text;
  };

  const redraw = (force: boolean) => {
    const time = now();
    if (!force && time - lastDraw < 100) return;
    lastDraw = time;
    let out = drawnLines > 0 ? `\x1b[${drawnLines}A\x1b[J` : '';
    for (const blob of blobs) out += `${render(blob)}\n`;
    drawnLines = blobs.length;
    if (out !== '') options.write(out);
  };

  /** Prints a message line below the bars, after which the bars are final and no longer redrawn. */
  const message = (text: string) => {
    redraw(true);
    blobs = [];
    drawnLines = 0;
    options.write(`${text}\n`);
  };

  const blobFor = (event: { blob: { digest: string; size: number }; kind: 'layer' | 'config' }): BlobLine => {
    const key = blobKey(event);
    let blob = blobs.find((candidate) => candidate.key === key);
    if (!blob) {
      blob = {
        key,
        kind: event.kind,
        digest: event.blob.digest,
        bytes: 0,
        total: event.blob.size,
        startedAt: now(),
        state: 'running',
      };
      blobs.push(blob);
    }
    return blob;
  };

  return (event) => {
    for (const text of list.flush(event)) message(text);
    switch (event.type) {
      case 'signatures-read':
        list.onSignaturesRead();
        return;
      case 'list-start':
        list.onListStart(event);
        return;
      case 'image-start':
        for (const text of list.onImageStart(event)) message(text);
        return;
      case 'referrer-start':
        message(referrerLine(event));
        return;
      case 'blob-start':
        blobFor(event);
        redraw(true);
        return;
      case 'blob-progress': {
        const blob = blobFor(event);
        blob.bytes = event.bytes;
        if (event.total >= 0) blob.total = event.total;
        redraw(false);
        return;
      }
      case 'blob-done': {
        const blob = blobFor(event);
        blob.state = event.result;
        blob.bytes = event.bytes;
        redraw(true);
        return;
      }
      case 'manifest-write':
        for (const text of list.manifestLines(event)) message(text);
        return;
      case 'signing':
        message(event.message);
        return;
      default:
        return;
    }
  };
}
