/**
 * The containers-policy.json(5) model. Policies are plain data, deeply frozen (except the bytes of
 * `Uint8Array` members, which JavaScript cannot freeze); build them with `parsePolicy`, `loadPolicy`,
 * `loadDefaultPolicy` or `insecureAcceptAnythingPolicy`.
 */

/** How the identity in a signature must relate to the image's reference (`signedIdentity`). */
export type PolicyReferenceMatch =
  | { readonly type: 'matchExact' }
  | { readonly type: 'matchRepoDigestOrExact' }
  | { readonly type: 'matchRepository' }
  | { readonly type: 'exactReference'; readonly dockerReference: string }
  | { readonly type: 'exactRepository'; readonly dockerRepository: string }
  | { readonly type: 'remapIdentity'; readonly prefix: string; readonly signedPrefix: string };

/** `keyType` values of a `signedBy` requirement. */
export type SignedByKeyType = 'GPGKeys' | 'signedByGPGKeys' | 'X509Certificates' | 'signedByX509CAs';

/** Fulcio settings of a `sigstoreSigned` requirement. */
export interface SigstoreFulcio {
  readonly caPath?: string;
  readonly caData?: Uint8Array;
  readonly oidcIssuer: string;
  readonly subjectEmail: string;
}

/** PKI settings of a `sigstoreSigned` requirement. */
export interface SigstorePki {
  readonly caRootsPath?: string;
  readonly caRootsData?: Uint8Array;
  readonly caIntermediatesPath?: string;
  readonly caIntermediatesData?: Uint8Array;
  readonly subjectEmail?: string;
  readonly subjectHostname?: string;
}

/** One requirement; every requirement of the applicable list must accept an image. */
export type PolicyRequirement =
  | { readonly type: 'insecureAcceptAnything' }
  | { readonly type: 'reject' }
  | {
      readonly type: 'signedBy';
      readonly keyType: SignedByKeyType;
      /** Exactly one of keyPath, keyPaths and keyData is set. */
      readonly keyPath?: string;
      readonly keyPaths?: readonly string[];
      readonly keyData?: Uint8Array;
      readonly signedIdentity: PolicyReferenceMatch;
    }
  | { readonly type: 'signedBaseLayer'; readonly baseLayerIdentity: PolicyReferenceMatch }
  | {
      readonly type: 'sigstoreSigned';
      /** Exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio and pki is set. */
      readonly keyPath?: string;
      readonly keyPaths?: readonly string[];
      readonly keyData?: Uint8Array;
      readonly keyDatas?: readonly Uint8Array[];
      readonly fulcio?: SigstoreFulcio;
      readonly pki?: SigstorePki;
      /** At most one of the four rekor members is set. */
      readonly rekorPublicKeyPath?: string;
      readonly rekorPublicKeyPaths?: readonly string[];
      readonly rekorPublicKeyData?: Uint8Array;
      readonly rekorPublicKeyDatas?: readonly Uint8Array[];
      readonly signedIdentity: PolicyReferenceMatch;
    };

/** The `type` of a policy.json requirement (`insecureAcceptAnything`, `reject`, `signedBy`, …). */
export type PolicyRequirementType = PolicyRequirement['type'];

/** Requirement lists by scope, for one transport; the scope '' is the transport's default. */
export type PolicyTransportScopes = ReadonlyMap<string, readonly PolicyRequirement[]>;

/** A parsed signature policy. */
export interface Policy {
  /** Where the policy came from (a file path, or a name given to `parsePolicy`), for messages. */
  readonly source: string;
  /** Requirements used when no transport scope applies. Never empty. */
  readonly default: readonly PolicyRequirement[];
  /** Scopes by transport name. Scopes are checked against the transport when evaluating. */
  readonly transports: ReadonlyMap<string, PolicyTransportScopes>;
}
