import type { TransportContext } from '@gantry/core/transport';

/**
 * How long a value read from the user's configuration (registries.conf, the short-name alias cache,
 * certificate directories, the credentials found in the auth files for a registry client) is reused
 * for the same context object: one operation (a copy, a sync of many images) reads each file once
 * instead of once per image and request, while a long-lived context still sees an edited file (a
 * login) after this long. A new context object reads them again at once.
 */
export const contextMemoLifetimeMs = 10_000;

interface MemoEntry {
  readAt: number;
  value: Promise<unknown>;
}

const memos = new WeakMap<TransportContext, Map<string, MemoEntry>>();

/**
 * `load()`, shared by every caller with the same `context` object and `key` for
 * `contextMemoLifetimeMs`; concurrent callers share one load. A load that fails is forgotten at once
 * (the next caller reads again), so an error is never reused.
 */
export function memoForContext<T>(
  context: TransportContext,
  key: string,
  load: () => Promise<T>,
): Promise<T> {
  let entries = memos.get(context);
  if (entries === undefined) {
    entries = new Map();
    memos.set(context, entries);
  }
  // process.hrtime, not performance.now(): Node loads perf_hooks (~5 ms) at the first use of `performance`.
  const now = Number(process.hrtime.bigint() / 1_000_000n);
  const cached = entries.get(key);
  if (cached !== undefined && now - cached.readAt < contextMemoLifetimeMs) return cached.value as Promise<T>;
  const value = load();
  const entry: MemoEntry = { readAt: now, value };
  entries.set(key, entry);
  value.catch(() => {
    if (entries.get(key) === entry) entries.delete(key);
  });
  return value;
}
