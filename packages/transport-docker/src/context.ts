import { ErrorCodes, GantryError, type TransportContext } from '@gantry/core/transport';

/**
 * docker:// settings of a `TransportContext`, given as `context.transportOptions.docker` (each transport
 * reads its own entry of `transportOptions`). Every member is optional; the defaults are skopeo's.
 *
 * | member           | skopeo flag                      | rule                                                        |
 * |------------------|----------------------------------|-------------------------------------------------------------|
 * | `tlsVerify`      | `--tls-verify`                   | false allows plain HTTP and unverified TLS; unset: true unless registries.conf says `insecure = true` |
 * | `certDirectory`  | `--cert-dir`                     | `*.crt` CA certificates, `*.cert` + `*.key` client pairs     |
 * | `credentials`    | `--creds USER[:PASS]`, `--username/--password` | used instead of any auth file                  |
 * | `registryToken`  | `--registry-token`               | a bearer token sent as is                                   |
 * | `noCredentials`  | `--no-creds`                     | access the registry anonymously                             |
 * | `authFilePath`   | `--authfile`                     | the only auth file read (else `$REGISTRY_AUTH_FILE`, defaults) |
 * | `userAgentPrefix`| `--user-agent-prefix` (global)   | every request's `User-Agent` becomes `<prefix> gantry/<version>` (skopeo: `<prefix> skopeo/<version>`) |
 * | `precomputeDigests` | `--dest-precompute-digests`   | destinations: a blob whose digest the pipeline does not know (it is compressing) is first written to a temporary file while hashed, and uploaded only when the registry lacks it |
 * | `uploadChunkSize` | (none)                          | destinations: upload every blob in chunks of this many bytes (raised to the registry's `OCI-Chunk-Min-Length`) instead of one streamed `PATCH` |
 * | `wholeUploadMaxBytes` | (none; `sync` uses 4 MiB) | destinations: a blob whose digest and size the pipeline knows, of at most this many bytes, is read whole and sent in the request that commits it (POST, then PUT `?digest=` with the bytes: the OCI distribution spec's monolithic upload) instead of a streamed `PATCH`; the blobs held so at once are bounded (`wholeUploadBudgetBytes`), a blob beyond that is streamed; default 0 (never) |
 * | `untaggedRepositories` | (none; `sync` sets it) | destinations: repositories (`host/path`) that had no tagged image when the caller started writing to them (a `Set`, consulted at each blob check, so it may be filled later, or an array); in them, a blob of at most `wholeUploadMaxBytes` that no cross-repository mount provides and that this process has not put there is uploaded without first asking whether the repository has it (a `HEAD` that would answer 404) |
 * | `idleTimeoutMs`  | (none; gantry's `--registry-idle-timeout`) | the longest a request waits for the server's answer, or for the next bytes of its body, before it fails (`ERR_GANTRY_TRANSIENT`; a blob download resumes); default 300000 (5 minutes) |
 *
 * `credentials`, `registryToken` and `noCredentials` are mutually exclusive. `uploadChunkSize` is a
 * positive integer; without it, blobs are streamed in one `PATCH` and chunks are used only when the
 * registry asks for them (see `DockerImageDestination`).
 */
export interface DockerContextOptions {
  tlsVerify?: boolean;
  certDirectory?: string;
  credentials?: string | { username: string; password: string };
  registryToken?: string;
  noCredentials?: boolean;
  authFilePath?: string;
  userAgentPrefix?: string;
  precomputeDigests?: boolean;
  uploadChunkSize?: number;
  wholeUploadMaxBytes?: number;
  untaggedRepositories?: ReadonlySet<string> | readonly string[];
  idleTimeoutMs?: number;
}

const noRepositories: ReadonlySet<string> = new Set();

/** How long a request may wait for the answer, or for the next body bytes, by default: 5 minutes. */
export const defaultIdleTimeoutMs = 300_000;

/** `DockerContextOptions` validated, with `credentials` split into user name and password. */
export interface ResolvedDockerContextOptions {
  /** As given; undefined lets registries.conf decide (verification on unless `insecure = true`). */
  tlsVerify: boolean | undefined;
  certDirectory: string | undefined;
  credentials: { username: string; password: string } | undefined;
  registryToken: string | undefined;
  noCredentials: boolean;
  authFilePath: string | undefined;
  /** Undefined or non-empty. */
  userAgentPrefix: string | undefined;
  precomputeDigests: boolean;
  /** A positive integer, or undefined (stream uploads). */
  uploadChunkSize: number | undefined;
  /** A whole number of bytes (0: every blob is streamed). */
  wholeUploadMaxBytes: number;
  /** Repositories (`host/path`) known to have had no tagged image (empty when not given). */
  untaggedRepositories: ReadonlySet<string>;
  /** Milliseconds, a positive integer (`defaultIdleTimeoutMs` unless given). */
  idleTimeoutMs: number;
}

function usage(message: string): GantryError {
  return new GantryError(ErrorCodes.Usage, message);
}

/**
 * Splits `--creds` as skopeo does: `USER[:PASSWORD]`, the first colon separating them; an empty
 * string or an empty user name is refused.
 */
export function parseCredentialsOption(value: string): { username: string; password: string } {
  if (value === '') throw usage('credentials can’t be empty');
  const colon = value.indexOf(':');
  const username = colon === -1 ? value : value.slice(0, colon);
  const password = colon === -1 ? '' : value.slice(colon + 1);
  if (username === '') throw usage('username can’t be empty');
  return { username, password };
}

/** Reads and validates `context.transportOptions.docker`. Throws `ERR_GANTRY_USAGE` naming a bad member. */
export function resolveDockerContextOptions(context: TransportContext): ResolvedDockerContextOptions {
  const raw = context.transportOptions?.docker;
  if (raw !== undefined && (typeof raw !== 'object' || raw === null)) {
    throw usage('transportOptions.docker must be an object');
  }
  const options = (raw ?? {}) as DockerContextOptions;
  const optionalString = (name: keyof DockerContextOptions): string | undefined => {
    const value = options[name];
    if (value !== undefined && typeof value !== 'string')
      throw usage(`transportOptions.docker.${name} must be a string`);
    return value;
  };
  const optionalBoolean = (name: keyof DockerContextOptions): boolean | undefined => {
    const value = options[name];
    if (value !== undefined && typeof value !== 'boolean')
      throw usage(`transportOptions.docker.${name} must be a boolean`);
    return value;
  };
  let credentials: { username: string; password: string } | undefined;
  if (typeof options.credentials === 'string') credentials = parseCredentialsOption(options.credentials);
  else if (options.credentials !== undefined) {
    const { username, password } = options.credentials as { username?: unknown; password?: unknown };
    if (typeof username !== 'string' || typeof password !== 'string') {
      throw usage('transportOptions.docker.credentials must be "USER[:PASSWORD]" or { username, password }');
    }
    if (username === '') throw usage('username can’t be empty');
    credentials = { username, password };
  }
  const registryToken = optionalString('registryToken');
  const noCredentials = optionalBoolean('noCredentials') ?? false;
  const exclusive = [credentials !== undefined, registryToken !== undefined, noCredentials].filter(
    Boolean,
  ).length;
  if (exclusive > 1) throw usage('credentials, a registry token and no-creds are mutually exclusive');
  const uploadChunkSize = options.uploadChunkSize;
  if (
    uploadChunkSize !== undefined &&
    (typeof uploadChunkSize !== 'number' || !Number.isSafeInteger(uploadChunkSize) || uploadChunkSize <= 0)
  ) {
    throw usage('transportOptions.docker.uploadChunkSize must be a positive integer (bytes)');
  }
  const wholeUploadMaxBytes = options.wholeUploadMaxBytes;
  if (
    wholeUploadMaxBytes !== undefined &&
    (typeof wholeUploadMaxBytes !== 'number' ||
      !Number.isSafeInteger(wholeUploadMaxBytes) ||
      wholeUploadMaxBytes < 0)
  ) {
    throw usage('transportOptions.docker.wholeUploadMaxBytes must be a whole number of bytes');
  }
  const untagged = options.untaggedRepositories;
  let untaggedRepositories: ReadonlySet<string> = noRepositories;
  if (untagged !== undefined) {
    if (untagged instanceof Set) untaggedRepositories = untagged;
    else if (Array.isArray(untagged) && untagged.every((name) => typeof name === 'string'))
      untaggedRepositories = new Set(untagged);
    else throw usage('transportOptions.docker.untaggedRepositories must be a Set or an array of strings');
  }
  const idleTimeoutMs = options.idleTimeoutMs;
  if (
    idleTimeoutMs !== undefined &&
    (typeof idleTimeoutMs !== 'number' || !Number.isSafeInteger(idleTimeoutMs) || idleTimeoutMs <= 0)
  ) {
    throw usage('transportOptions.docker.idleTimeoutMs must be a positive integer (milliseconds)');
  }
  const userAgentPrefix = optionalString('userAgentPrefix');
  if (userAgentPrefix !== undefined && /[\u0000-\u001f\u007f]/.test(userAgentPrefix)) {
    throw usage('transportOptions.docker.userAgentPrefix must not contain control characters');
  }
  return {
    tlsVerify: optionalBoolean('tlsVerify'),
    certDirectory: optionalString('certDirectory'),
    credentials,
    registryToken,
    noCredentials,
    authFilePath: optionalString('authFilePath'),
    userAgentPrefix: userAgentPrefix === '' ? undefined : userAgentPrefix,
    precomputeDigests: optionalBoolean('precomputeDigests') ?? false,
    uploadChunkSize,
    wholeUploadMaxBytes: wholeUploadMaxBytes ?? 0,
    untaggedRepositories,
    idleTimeoutMs: idleTimeoutMs ?? defaultIdleTimeoutMs,
  };
}
