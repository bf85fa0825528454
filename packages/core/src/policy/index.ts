/**
 * Signature policy (containers-policy.json(5)): loading, strict parsing and evaluation.
 */
export {
  evaluatePolicy,
  type PolicyImage,
  policyRequirementsFor,
  preparePolicyEvaluation,
  validatePolicyScopes,
} from './evaluate.js';
export {
  type DefaultPolicyOptions,
  defaultPolicyPath,
  loadDefaultPolicy,
  loadPolicy,
  systemPolicyPath,
  userPolicyRelativePath,
} from './load.js';
export { insecureAcceptAnythingPolicy, parsePolicy } from './parse.js';
export { signedIdentityMatches } from './reference-match.js';
export type {
  Policy,
  PolicyReferenceMatch,
  PolicyRequirement,
  PolicyRequirementType,
  PolicyTransportScopes,
  SignedByKeyType,
  SigstoreFulcio,
  SigstorePki,
} from './types.js';
