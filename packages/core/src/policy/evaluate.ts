import { ErrorCodes, GantryError } from '../errors.js';
import type { ImageReference, ManifestBlob, Transport } from '../transport/contract.js';
import type { Policy, PolicyRequirement } from './types.js';

/** What `evaluatePolicy` looks at besides the reference. */
export interface PolicyImage {
  manifest: ManifestBlob;
  signatures: Uint8Array[];
}

/** `transport:reference`, as containers/image's transports.ImageName. */
function imageName(reference: ImageReference): string {
  return `${reference.transport.name}:${reference.stringWithinTransport()}`;
}

const validatedTransports = new WeakMap<Policy, WeakSet<Transport>>();

/**
 * Checks every scope the policy lists for `transport` (except the transport default '') with
 * `transport.validatePolicyConfigurationScope`. Sections of other transports are not checked.
 * Throws `ERR_GANTRY_INVALID_POLICY` naming the scope and the transport's reason.
 */
export function validatePolicyScopes(policy: Policy, transport: Transport): void {
  if (validatedTransports.get(policy)?.has(transport)) return;
  const scopes = policy.transports.get(transport.name);
  if (scopes) {
    for (const scope of scopes.keys()) {
      if (scope === '') continue;
      try {
        transport.validatePolicyConfigurationScope(scope);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new GantryError(
          ErrorCodes.InvalidPolicy,
          `invalid policy in "${policy.source}": transports[${JSON.stringify(transport.name)}][${JSON.stringify(scope)}]: ` +
            `invalid scope for transport "${transport.name}": ${reason}`,
          { cause: error },
        );
      }
    }
  }
  let checked = validatedTransports.get(policy);
  if (!checked) {
    checked = new WeakSet();
    validatedTransports.set(policy, checked);
  }
  checked.add(transport);
}

/**
 * The requirements that apply to `reference`, chosen exactly like containers/image's policy_eval:
 * in the section of the reference's transport, the scope equal to
 * `reference.policyConfigurationIdentity()`, else the first of
 * `reference.policyConfigurationNamespaces()` (most specific first) that is listed, else the
 * transport default scope ''; when none of these exists (or the transport has no section), the
 * global `default`.
 */
export function policyRequirementsFor(
  policy: Policy,
  reference: ImageReference,
): readonly PolicyRequirement[] {
  const scopes = policy.transports.get(reference.transport.name);
  if (scopes) {
    const identity = scopes.get(reference.policyConfigurationIdentity());
    if (identity) return identity;
    for (const namespace of reference.policyConfigurationNamespaces()) {
      const requirements = scopes.get(namespace);
      if (requirements) return requirements;
    }
    const transportDefault = scopes.get('');
    if (transportDefault) return transportDefault;
  }
  return policy.default;
}

function rejected(message: string): GantryError {
  return new GantryError(ErrorCodes.PolicyRejected, message);
}

/**
 * Decides whether the image may be used, like containers/image's `IsRunningImageAllowed`: every
 * requirement of the applicable list (see `policyRequirementsFor`) must accept it. Before that, the
 * scopes listed for the reference's transport are validated (`validatePolicyScopes`).
 *
 * - `insecureAcceptAnything` accepts.
 * - `reject` rejects: `Running image <transport:ref> is rejected by policy.`
 * - `signedBy`, `sigstoreSigned` and `signedBaseLayer` reject: Gantry does not verify signatures
 *   yet. Rejecting is the safe choice: accepting would let unsigned or forged images through a
 *   policy that asks for signatures. The message says that verification for that requirement type
 *   is not supported yet.
 *
 * Resolves when the image is accepted; rejects with `ERR_GANTRY_POLICY_REJECTED` otherwise, or
 * `ERR_GANTRY_INVALID_POLICY` when a scope is invalid for the transport.
 */
export async function evaluatePolicy(
  policy: Policy,
  reference: ImageReference,
  image: PolicyImage,
): Promise<void> {
  validatePolicyScopes(policy, reference.transport);
  const requirements = policyRequirementsFor(policy, reference);
  const name = imageName(reference);
  if (requirements.length === 0) {
    throw rejected(
      `Running image ${name} is rejected by policy: List of verification policy requirements must not be empty`,
    );
  }
  for (const requirement of requirements) {
    switch (requirement.type) {
      case 'insecureAcceptAnything':
        continue;
      case 'reject':
        throw rejected(`Running image ${name} is rejected by policy.`);
      case 'signedBy':
      case 'sigstoreSigned':
      case 'signedBaseLayer':
        throw rejected(
          `Running image ${name} is rejected by policy: signature verification for requirement type ` +
            `"${requirement.type}" is not supported yet by Gantry (the image has ${image.signatures.length} ` +
            `signature${image.signatures.length === 1 ? '' : 's'}); use a policy without this requirement for this image`,
        );
      default: {
        const unknown: { type?: unknown } = requirement;
        throw rejected(
          `Running image ${name} is rejected by policy: unknown requirement type ${JSON.stringify(unknown.type)}`,
        );
      }
    }
  }
}
