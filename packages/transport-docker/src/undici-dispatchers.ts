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

/** The Dispatcher class of undici (its request API is attached to the prototype). */
type DispatcherClass = { prototype: Record<string, unknown> };

/**
 * Loads only the undici modules the transport uses instead of undici's entry point, which also loads
 * fetch, WebSocket, caches and mocks: that saves about a third of a CLI run's start-up time (~120 ms
 * of ~450 ms on a small machine). The pool and the two parts of the request API that Gantry calls
 * (`request`, `stream`) load at once; the agent (token realms, blob redirects) and the proxy agent
 * (with the rest of the API, `connect` among it, which the proxy agent tunnels with) load when first
 * used, so a command talking to one registry without a proxy loads neither. The API is attached to
 * `Dispatcher.prototype` exactly as undici's entry point does. When the installed undici is laid out
 * differently, falls back to the entry point: same classes, slower start. (The CLI's one-file bundle
 * holds these modules; the entry point, named through a variable, is not pulled into it.)
 */
export function loadUndiciDispatchers(): UndiciDispatchers {
  let pool: typeof Undici.Pool;
  let dispatcher: DispatcherClass;
  try {
    dispatcher = requireModule('undici/lib/dispatcher/dispatcher.js') as DispatcherClass;
    const request = requireModule('undici/lib/api/api-request.js') as unknown;
    const stream = requireModule('undici/lib/api/api-stream.js') as unknown;
    pool = requireModule('undici/lib/dispatcher/pool.js') as typeof Undici.Pool;
    if (typeof request !== 'function' || typeof stream !== 'function') throw new Error('no API');
    if (!(pool.prototype instanceof (dispatcher as unknown as typeof Undici.Dispatcher))) {
      throw new Error('unexpected class layout');
    }
    if (typeof dispatcher.prototype.request !== 'function') {
      Object.assign(dispatcher.prototype, { request, stream });
    }
  } catch {
    return fromEntryPoint();
  }
  let agent: typeof Undici.Agent | undefined;
  let proxyAgent: typeof Undici.ProxyAgent | undefined;
  return {
    Pool: pool,
    get Agent() {
      agent ??= loadClass<typeof Undici.Agent>('undici/lib/dispatcher/agent.js', dispatcher, 'Agent');
      return agent;
    },
    get ProxyAgent() {
      proxyAgent ??= loadClass<typeof Undici.ProxyAgent>(
        'undici/lib/dispatcher/proxy-agent.js',
        dispatcher,
        'ProxyAgent',
      );
      return proxyAgent;
    },
  };
}

/** The classes from undici's entry point (which attaches its whole request API). */
function fromEntryPoint(): UndiciDispatchers {
  const undici = requireModule(undiciEntryPoint) as typeof Undici;
  return { Agent: undici.Agent, Pool: undici.Pool, ProxyAgent: undici.ProxyAgent };
}

/**
 * One dispatcher class of undici, loaded on first use, with the whole request API attached (the
 * proxy agent tunnels through `connect`); undici's entry point's class when the layout differs.
 */
function loadClass<T>(file: string, dispatcher: DispatcherClass, name: keyof UndiciDispatchers): T {
  try {
    const api = requireModule('undici/lib/api/index.js') as Record<string, unknown>;
    const loaded = requireModule(file) as T & { prototype: object };
    if (
      ['request', 'stream', 'pipeline', 'upgrade', 'connect'].some((key) => typeof api[key] !== 'function')
    ) {
      throw new Error('no API');
    }
    if (!(loaded.prototype instanceof (dispatcher as unknown as typeof Undici.Dispatcher))) {
      throw new Error('unexpected class layout');
    }
    for (const [key, value] of Object.entries(api)) {
      if (typeof dispatcher.prototype[key] !== 'function') dispatcher.prototype[key] = value;
    }
    return loaded;
  } catch {
    return fromEntryPoint()[name] as T;
  }
}

/**
 * The `maxHeaderSize` to give undici's clients: Node's default (16 KiB), the value undici otherwise
 * reads from `node:http`. Given explicitly, undici's client never loads `node:http` (~3 ms of CPU per
 * run, a module nothing else of a registry command uses). Undefined, so that undici asks Node as
 * before, when Node's command line or NODE_OPTIONS may change it (`--max-http-header-size`, or a
 * configuration file of options).
 */
export function undiciMaxHeaderSize(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions: string | undefined = process.env.NODE_OPTIONS,
): number | undefined {
  const mayChange = (text: string): boolean => /max-http-header-size|config-file/.test(text);
  if (execArgv.some(mayChange) || (nodeOptions !== undefined && mayChange(nodeOptions))) return undefined;
  return nodeDefaultMaxHeaderSize;
}

/** Node's default `--max-http-header-size` (the same since Node 14). */
export const nodeDefaultMaxHeaderSize = 16 * 1024;
