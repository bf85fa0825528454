import { createRequire } from 'node:module';
import type * as Undici from 'undici';

/** The undici classes the transport uses. */
export interface UndiciDispatchers {
  Agent: typeof Undici.Agent;
  Pool: typeof Undici.Pool;
  ProxyAgent: typeof Undici.ProxyAgent;
}

const requireModule = createRequire(import.meta.url);
const undiciEntryPoint = 'undici';

/**
 * Loads only the undici modules the transport uses (pools, agents, the proxy agent and the request
 * API) instead of undici's entry point, which also loads fetch, WebSocket, caches and mocks: that
 * saves about a third of a CLI run's start-up time (~120 ms of ~450 ms on a small machine). The
 * request API is attached to `Dispatcher.prototype` exactly as undici's entry point does. When the
 * installed undici is laid out differently, falls back to the entry point: same classes, slower start.
 * (The CLI's one-file bundle holds these modules; the entry point, named through a variable, is not
 * pulled into it.)
 */
export function loadUndiciDispatchers(): UndiciDispatchers {
  try {
    const dispatcher = requireModule('undici/lib/dispatcher/dispatcher.js') as { prototype: object };
    const api = requireModule('undici/lib/api/index.js') as Record<string, unknown>;
    const loaded: UndiciDispatchers = {
      Agent: requireModule('undici/lib/dispatcher/agent.js') as typeof Undici.Agent,
      Pool: requireModule('undici/lib/dispatcher/pool.js') as typeof Undici.Pool,
      ProxyAgent: requireModule('undici/lib/dispatcher/proxy-agent.js') as typeof Undici.ProxyAgent,
    };
    if (typeof api.request !== 'function' || typeof api.stream !== 'function') throw new Error('no API');
    if (!(loaded.Pool.prototype instanceof (dispatcher as unknown as typeof Undici.Dispatcher))) {
      throw new Error('unexpected class layout');
    }
    if (typeof (dispatcher.prototype as { request?: unknown }).request !== 'function') {
      Object.assign(dispatcher.prototype, api);
    }
    return loaded;
  } catch {
    const undici = requireModule(undiciEntryPoint) as typeof Undici;
    return { Agent: undici.Agent, Pool: undici.Pool, ProxyAgent: undici.ProxyAgent };
  }
}
