import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const requireModule = createRequire(import.meta.url);
const undiciEntryPoint = 'undici';

/**
 * undici's `Pool`, loaded without undici's entry point (which also loads fetch, WebSocket, caches and
 * mocks, most of undici's start-up cost): the pool module and the request API, attached to
 * `Dispatcher.prototype` exactly as the entry point does. When the installed undici is laid out
 * differently, falls back to the entry point (same class, slower start; named through a variable so that
 * the CLI's one-file bundle does not pull it in).
 */
export function loadUndiciPool(): typeof Undici.Pool {
  try {
    const dispatcher = requireModule('undici/lib/dispatcher/dispatcher.js') as typeof Undici.Dispatcher;
    const api = requireModule('undici/lib/api/index.js') as Record<string, unknown>;
    const pool = requireModule('undici/lib/dispatcher/pool.js') as typeof Undici.Pool;
    if (typeof api.request !== 'function' || !(pool.prototype instanceof dispatcher)) {
      throw new Error('unexpected undici layout');
    }
    if (typeof (dispatcher.prototype as { request?: unknown }).request !== 'function') {
      Object.assign(dispatcher.prototype, api);
    }
    return pool;
  } catch {
    return (requireModule(undiciEntryPoint) as typeof Undici).Pool;
  }
}
