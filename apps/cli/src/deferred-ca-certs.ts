import { deferNodeExtraCertificateAuthorities, deferredNodeExtraCaCertsVariable } from '@gantry/core';

/**
 * Takes over what the launcher (`bin/gantry`) deferred: it started Node without `NODE_EXTRA_CA_CERTS`
 * (Node would parse the whole bundle at start-up) and passed the value in
 * `GANTRY_DEFERRED_NODE_EXTRA_CA_CERTS`. The certificates are recorded for TLS code to add on first
 * use, and `NODE_EXTRA_CA_CERTS` is put back into `environment` so that programs gantry runs
 * (credential helpers) see the user's setting. Does nothing when the launcher deferred nothing.
 */
export function adoptDeferredExtraCaCerts(environment: NodeJS.ProcessEnv): void {
  const deferred = environment[deferredNodeExtraCaCertsVariable];
  if (deferred === undefined) return;
  delete environment[deferredNodeExtraCaCertsVariable];
  if (deferred === '') return;
  environment.NODE_EXTRA_CA_CERTS = deferred;
  deferNodeExtraCertificateAuthorities(deferred);
}
