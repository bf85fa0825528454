/**
 * Certificate authorities for verified TLS connections, when the `gantry` launcher deferred
 * `NODE_EXTRA_CA_CERTS`.
 *
 * Node.js parses every certificate named by `NODE_EXTRA_CA_CERTS` when the process starts, before any
 * JavaScript runs: for a system bundle of ~150 certificates that is ~0.1 s, on every run, also for
 * commands that make no TLS connection (skopeo pays nothing of the kind). The `gantry` launcher
 * (`apps/cli/bin/gantry`) therefore starts Node without the variable and hands its value over; the
 * CLI records it here with `deferNodeExtraCertificateAuthorities`, and transports that verify TLS
 * peers against Node's default roots use `defaultCertificateAuthorities()` to add those
 * certificates themselves, on their first verified connection. Nothing changes when no launcher
 * deferred anything: Node's default roots (with any extra certificates) apply as usual.
 */
import { readFileSync } from 'node:fs';

/** The environment variable through which the launcher hands `NODE_EXTRA_CA_CERTS` to the CLI. */
export const deferredNodeExtraCaCertsVariable = 'GANTRY_DEFERRED_NODE_EXTRA_CA_CERTS';

/** Shared through a global symbol, so that plugins that bundle their own copy of core see it too. */
const stateKey = Symbol.for('gantry.deferredNodeExtraCaCerts');
interface DeferredState {
  path: string;
  certificates?: string[];
}
const globalState = globalThis as typeof globalThis & { [stateKey]?: DeferredState };

/**
 * Records that `NODE_EXTRA_CA_CERTS` = `path` was not loaded by Node at start-up and must be added to
 * the default roots by whoever verifies TLS peers. Called by the CLI's entry point.
 */
export function deferNodeExtraCertificateAuthorities(path: string): void {
  globalState[stateKey] = { path };
}

/** The deferred `NODE_EXTRA_CA_CERTS` path, if any (e.g. to key caches of TLS contexts). */
export function deferredNodeExtraCertificateAuthoritiesPath(): string | undefined {
  return globalState[stateKey]?.path;
}

/** Forgets a deferral (tests). */
export function clearDeferredNodeExtraCertificateAuthorities(): void {
  delete globalState[stateKey];
}

const pemCertificate = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The certificates of the deferred `NODE_EXTRA_CA_CERTS` file (PEM), read once; [] when nothing was
 * deferred. A file that cannot be read gives a process warning and no certificates, as Node's own
 * start-up does.
 */
export function deferredNodeExtraCertificateAuthorities(): string[] {
  const state = globalState[stateKey];
  if (state === undefined) return [];
  if (state.certificates === undefined) {
    try {
      state.certificates = readFileSync(state.path, 'utf8').match(pemCertificate) ?? [];
    } catch (error) {
      process.emitWarning(
        `Ignoring extra certs from \`${state.path}\`, load failed: ${(error as Error).message}`,
      );
      state.certificates = [];
    }
  }
  return state.certificates;
}

/**
 * The `ca` option for a TLS connection that trusts Node's default roots plus `additional` (PEM, e.g.
 * a certs.d directory's `*.crt`): undefined when Node's defaults alone apply (nothing additional and
 * nothing deferred), so that Node's shared root store is used. An explicit `ca` replaces Node's roots,
 * hence the bundled roots and the deferred extra certificates in it.
 */
export function defaultCertificateAuthorities(additional: readonly string[] = []): string[] | undefined {
  const deferred = deferredNodeExtraCertificateAuthorities();
  if (additional.length === 0 && deferred.length === 0) return undefined;
  // node:tls is loaded here, on first use, not at start-up.
  return [...process.getBuiltinModule('node:tls').rootCertificates, ...deferred, ...additional];
}
