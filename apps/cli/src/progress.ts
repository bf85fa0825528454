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
 * destination`, `Storing list signatures` (with `--multi-arch index-only`: `Getting image list signatures`,
 * `Copying 0 of M images in list`, then the list's two lines). Like skopeo, "Storing signatures" follows every manifest
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
  /** Terminal width; lines are fitted into it (the total size kept) so redrawing stays in place. */
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
  /** The line as it stays once the blob is finished, rendered when it finished. */
  final?: string;
}

/** An `onProgress` handler; `close` stops its redraw timer (call it when the copy ends, however it ends). */
export type ProgressReporter = ((event: CopyProgressEvent) => void) & { close(): void };

/** Returns an `onProgress` handler writing progress for the given output. */
export function createProgressReporter(options: ProgressWriterOptions): ProgressReporter {
  return options.isTTY
    ? createTerminalReporter(options)
    : Object.assign(createPlainReporter(options), { close: () => {} });
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
    /**
     * A list is about to be copied. Its lines normally start with the first instance's image-start
     * (a list copied for one platform, `--multi-arch system`, prints only that image's lines, as
     * skopeo); a list copied without any instance (`--multi-arch index-only`) starts them here.
     */
    onListStart(event: { instanceCount: number; copyCount: number }): string[] {
      pendingList = event;
      if (event.copyCount > 0 || listMode) return [];
      listMode = true;
      const lines: string[] = [];
      if (pendingSignatureRead) {
        pendingSignatureRead = false;
        lines.push('Getting image list signatures');
      }
      lines.push(`Copying 0 of ${event.instanceCount} images in list`);
      return lines;
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
        for (const text of list.onListStart(event)) line(text);
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

/**
 * Fits a progress line into `width` characters: `required` parts always stay (the label is cut from
 * its end if even they do not fit), `optional` parts are dropped from the last one first.
 */
export function fitProgressLine(
  width: number,
  label: string,
  required: string[],
  optional: string[],
  bar?: (width: number) => string,
): string {
  const tail = required.join(' ');
  if (label.length + 1 + tail.length > width) {
    const room = Math.max(0, width - tail.length - 1);
    return `${label.slice(0, room)} ${tail}`.slice(0, width);
  }
  const kept = [...optional];
  let text = `${label} ${[tail, ...kept].join(' ')}`;
  while (text.length > width && kept.length > 0) {
    kept.pop();
    text = `${label} ${[tail, ...kept].join(' ')}`;
  }
  if (!bar) return text;
  // The bar goes between the label and the counters, in the room left (at least 5 columns, at most 40).
  const barWidth = Math.min(40, width - text.length - 1);
  if (barWidth < 5) return text;
  return `${label} ${bar(barWidth)} ${[tail, ...kept].join(' ')}`;
}

function progressBar(width: number, bytes: number, total: number): string {
  const inner = width - 2;
  const filled = total > 0 ? Math.min(inner, Math.floor((bytes / total) * inner)) : 0;
  return `[${'='.repeat(filled)}${filled < inner ? '>' : ''}${' '.repeat(Math.max(0, inner - filled - 1))}]`;
}

/** How often the terminal display is redrawn while blobs are copied. */
const redrawIntervalMs = 100;

/**
 * The terminal display. Progress events only record numbers (no formatting, no output); a timer
 * redraws the lines every 100 ms while blobs are running, so the copy's hot path does not pay for the
 * display. A finished blob's line is rendered once, when it finishes (its rate is the rate it was
 * copied at), and stays as it is.
 */
function createTerminalReporter(options: ProgressWriterOptions): ProgressReporter {
  const list = createListTracker();
  // process.hrtime, not performance.now(): Node loads perf_hooks at the first use of `performance`.
  const now = options.now ?? (() => Number(process.hrtime.bigint()) / 1e6);
  // The last column is left empty: writing into it makes some terminals wrap, breaking the redraw.
  const width = Math.max(20, options.columns ?? 80) - 1;
  let blobs: BlobLine[] = [];
  const byKey = new Map<string, BlobLine>();
  let drawnLines = 0;
  let timer: NodeJS.Timeout | undefined;

  const render = (blob: BlobLine): string => {
    if (blob.final !== undefined) return blob.final;
    const label = `Copying ${blob.kind === 'config' ? 'config' : 'blob'} ${shortHex(blob.digest, blob.kind === 'config' ? 10 : 12)}`;
    if (blob.state === 'reused' || blob.state === 'skipped')
      return fitProgressLine(width, label, ['skipped: already exists'], []);
    const seconds = Math.max((now() - blob.startedAt) / 1000, 0.001);
    const rate = `| ${formatBytes(blob.bytes / seconds)}/s`;
    if (blob.state === 'copied')
      return fitProgressLine(width, label, ['done', formatBytes(blob.bytes)], [rate]);
    const counters =
      blob.total >= 0 ? `${formatBytes(blob.bytes)} / ${formatBytes(blob.total)}` : formatBytes(blob.bytes);
    return fitProgressLine(width, label, [counters], [rate], (barWidth) =>
      progressBar(barWidth, blob.bytes, blob.total),
    );
  };

  const redraw = () => {
    let out = drawnLines > 0 ? `\x1b[${drawnLines}A\x1b[J` : '';
    for (const blob of blobs) out += `${render(blob)}\n`;
    drawnLines = blobs.length;
    if (out !== '') options.write(out);
  };

  const stopTimer = () => {
    if (timer) clearInterval(timer);
    timer = undefined;
  };
  const startTimer = () => {
    timer ??= setInterval(redraw, redrawIntervalMs);
    timer.unref();
  };

  /** Prints a message line below the bars, after which the bars are final and no longer redrawn. */
  const message = (text: string) => {
    stopTimer();
    redraw();
    blobs = [];
    byKey.clear();
    drawnLines = 0;
    options.write(`${text}\n`);
  };

  const blobFor = (event: { blob: { digest: string; size: number }; kind: 'layer' | 'config' }): BlobLine => {
    const key = blobKey(event);
    let blob = byKey.get(key);
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
      byKey.set(key, blob);
    }
    return blob;
  };

  const report = (event: CopyProgressEvent) => {
    for (const text of list.flush(event)) message(text);
    switch (event.type) {
      case 'signatures-read':
        list.onSignaturesRead();
        return;
      case 'list-start':
        for (const text of list.onListStart(event)) message(text);
        return;
      case 'image-start':
        for (const text of list.onImageStart(event)) message(text);
        return;
      case 'referrer-start':
        message(referrerLine(event));
        return;
      case 'blob-start':
        blobFor(event);
        redraw();
        startTimer();
        return;
      case 'blob-progress': {
        const blob = byKey.get(blobKey(event)) ?? blobFor(event);
        blob.bytes = event.bytes;
        if (event.total >= 0) blob.total = event.total;
        return;
      }
      case 'blob-done': {
        const blob = blobFor(event);
        blob.state = event.result;
        blob.bytes = event.bytes;
        blob.final = render(blob);
        redraw();
        if (blobs.every((each) => each.final !== undefined)) stopTimer();
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
  return Object.assign(report, { close: stopTimer });
}
