/**
 * Image signatures of `docker://` images, stored as containers/image stores them:
 * - a *lookaside* storage configured in containers-registries.d(5) (see core's `registries-d.ts`) for
 *   simple-signing (GPG) signatures: `<base>/<repository>@<algorithm>=<hex>/signature-<n>`, n from 1,
 *   read over `file://` or `http(s)://` (the first missing one ends the list), written to `file://`
 *   only (`lookaside-staging`; an http(s) URL for writing is an error);
 * - *sigstore attachments* (when `use-sigstore-attachments` is set for the image): an OCI image
 *   manifest tagged `sha256-<hex>.sig` in the image's repository, one layer per signature (the
 *   payload), with the signature, certificate and chain in the layer's annotations
 *   (`dev.cosignproject.cosign/signature`, `dev.sigstore.cosign/certificate`, `dev.sigstore.cosign/chain`).
 *
 * Signatures travel in the transport contract's `Uint8Array[]` in containers/image's storage form
 * (`signature.Blob`), which is also what its `dir:` transport writes to `signature-<n>` files:
 * - a simple-signing signature is the raw OpenPGP message (its first byte is an OpenPGP packet tag);
 * - any other format is a zero byte, the format name, a newline, then the format's data; for
 *   sigstore: `\0sigstore-json\n{"mimeType":…,"payload":<base64>,"annotations":{…}}`.
 * Core's `parseStoredSignature` reads both (and `\0simple-signing\n<raw>`, normalised to the raw form).
 *
 * Deviation: containers/image refuses a stored signature of unknown format when reading it; Gantry
 * passes such bytes on unchanged as an opaque signature (stored in the lookaside like simple-signing
 * ones), as its other transports do: verifying signatures is the policy's business. A malformed
 * `\0sigstore-json\n` signature is an error.
 *
 * A registry that announces the `X-Registry-Supports-Signatures` API extension (OpenShift's integrated
 * registry) keeps the simple-signing signatures itself: they are then read and written through the
 * extension (signature-extension.ts) instead of a lookaside, as containers/image does.
 */
import { statSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  loadRegistriesDirectory,
  lookasideBaseUrl,
  lookasideSignatureUrl,
  type RegistriesDirectoryConfiguration,
  usesSigstoreAttachments,
} from '@gantry/containers-config';
import {
  type Digest,
  type DockerReference,
  digestOf,
  ErrorCodes,
  GantryError,
  goJsonMarshal,
  isGantryError,
  MediaTypes,
  makeDirectories,
  manifestDigest,
  parseStoredSignature,
  type SigstoreSignature,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core/transport';
import { networkError } from './connections.js';
import { memoForContext } from './context-memo.js';
import { fetchManifest, headerValue } from './manifests.js';
import type { RegistryClient } from './registry-client.js';
import { readLimitedBody, responseError } from './registry-errors.js';
import { readExtensionSignatures, writeExtensionSignatures } from './signature-extension.js';

/** containers/image's limit on the number of lookaside signatures read for one manifest. */
export const maxLookasideSignatures = 128;
/** containers/image's limit on the size of one signature (`iolimits.MaxSignatureBodySize`). */
export const maxSignatureBytes = 4 * 1024 * 1024;
/** Limit on the size of a sigstore attachment config (`iolimits.MaxConfigBodySize`). */
const maxConfigBytes = 4 * 1024 * 1024;

// The sigstore MIME type and annotation names are core's (signature/stored.ts).
export {
  sigstoreCertificateAnnotation,
  sigstoreChainAnnotation,
  sigstoreSignatureAnnotation,
  sigstoreSignatureMimeType,
} from '@gantry/core/transport';

/** A signature of a known format, parsed from its storage form. */
export type ParsedSignature =
  | { format: 'simple-signing'; signature: Uint8Array }
  | {
      format: 'sigstore-json';
      mimeType: string;
      payload: Uint8Array;
      annotations: Record<string, string> | null;
    };

/**
 * The storage form of a signature (containers/image's `signature.Blob`): raw for simple-signing;
 * `\0sigstore-json\n` + Go's `json.Marshal` of `{mimeType, payload, annotations}` for sigstore.
 */
export function signatureBlob(signature: ParsedSignature): Uint8Array {
  if (signature.format === 'simple-signing') return signature.signature;
  const annotations = signature.annotations === null ? null : new Map(Object.entries(signature.annotations));
  const json = goJsonMarshal({
    mimeType: signature.mimeType,
    payload: Buffer.from(signature.payload).toString('base64'),
    annotations,
  });
  return new Uint8Array(
    Buffer.concat([Buffer.from('\0sigstore-json\n', 'latin1'), Buffer.from(json, 'utf8')]),
  );
}

/**
 * How a signature in storage form is stored: a sigstore signature, parsed; anything else as the bytes
 * to keep (`\0simple-signing\n<raw>` becomes `<raw>`; unknown formats are kept unchanged).
 */
function classifySignature(
  blob: Uint8Array,
): Extract<ParsedSignature, { format: 'sigstore-json' }> | { format: 'other'; blob: Uint8Array } {
  const prefix = (text: string): boolean =>
    blob.byteLength >= text.length && Buffer.from(blob.subarray(0, text.length)).toString('latin1') === text;
  if (prefix('\0sigstore-json\n')) {
    const parsed = parseStoredSignature(blob) as SigstoreSignature;
    return {
      format: 'sigstore-json',
      mimeType: parsed.mimeType,
      payload: parsed.payload,
      annotations: parsed.annotations,
    };
  }
  if (prefix('\0simple-signing\n'))
    return { format: 'other', blob: blob.subarray('\0simple-signing\n'.length) };
  return { format: 'other', blob };
}

/** Options of signature storage, from the transport context. */
export interface SignatureStorageOptions {
  /** `TransportContext.registriesDirectoryPath`. */
  registriesDirectoryPath?: string;
  /**
   * The transport context the options come from: the registries.d directory is then read once per
   * context (see context-memo.ts), not once per image of a sync or copy of a list.
   */
  context?: TransportContext;
}

function loadConfiguration(options: SignatureStorageOptions): Promise<RegistriesDirectoryConfiguration> {
  const load = () =>
    loadRegistriesDirectory(
      options.registriesDirectoryPath === undefined
        ? {}
        : { registriesDirectoryPath: options.registriesDirectoryPath },
    );
  return options.context === undefined
    ? load()
    : memoForContext(options.context, `registries.d\n${options.registriesDirectoryPath ?? ''}`, load);
}

/** The sigstore attachment tag of a manifest digest: `sha256:<hex>` → `sha256-<hex>.sig`. */
export function sigstoreAttachmentTag(digest: Digest): string {
  if (!/^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(digest)) {
    throw new GantryError(ErrorCodes.InvalidDigest, `invalid manifest digest ${JSON.stringify(digest)}`);
  }
  return `${digest.replace(':', '-')}.sig`;
}

/** Redacts a URL's password for messages. */
function redacted(url: URL): string {
  if (url.password === '') return url.href;
  const copy = new URL(url.href);
  copy.password = 'xxxxx';
  return copy.href;
}

/**
 * Reads one lookaside signature; undefined when it does not exist (ENOENT, HTTP 404).
 * HTTP(S) requests go through the registry client's TLS settings, without registry credentials.
 */
async function readLookasideSignature(
  client: RegistryClient,
  url: URL,
  signal: AbortSignal | undefined,
): Promise<Uint8Array | undefined> {
  let blob: Uint8Array;
  if (url.protocol === 'file:') {
    const file = fileURLToPath(url);
    // Most images have no signature: a stat that answers "no such file" without an exception is
    // much cheaper than a failed read (an error object per image of a sync). Anything else (a file,
    // or a stat that fails otherwise) is read, and the read reports what is wrong.
    let present = true;
    try {
      present = statSync(file, { throwIfNoEntry: false }) !== undefined;
    } catch {
      // Read below.
    }
    if (!present) return undefined;
    try {
      blob = await readFile(file, { signal });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      if (signal?.aborted) throw networkError(error, `reading signature ${file}`, signal);
      throw new GantryError(ErrorCodes.Internal, `reading signature ${file}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  } else if (url.protocol === 'http:' || url.protocol === 'https:') {
    const what = `reading signature from ${redacted(url)}`;
    let target = url;
    let response = await client.request({ method: 'GET', target, anonymous: true, signal, what });
    // Redirects are followed as Go's HTTP client does (at most 10).
    for (let redirects = 0; redirects < 10; redirects++) {
      const location = headerValue(response.headers, 'location');
      if (![301, 302, 303, 307, 308].includes(response.statusCode) || location === undefined) break;
      await response.body.dump();
      target = new URL(location, target);
      if (target.protocol !== 'http:' && target.protocol !== 'https:') {
        throw new GantryError(
          ErrorCodes.Internal,
          `${what}: redirect to unsupported URL ${redacted(target)}`,
        );
      }
      response = await client.request({ method: 'GET', target, anonymous: true, signal, what });
    }
    if (response.statusCode === 404) {
      await response.body.dump();
      return undefined;
    }
    if (response.statusCode !== 200) {
      throw await responseError(response, { what, credentialsSent: 'none' });
    }
    let bytes: Buffer;
    try {
      bytes = await readLimitedBody(response.body, maxSignatureBytes + 1);
    } catch (error) {
      throw networkError(error, what, signal);
    }
    if (bytes.byteLength > maxSignatureBytes) {
      throw new GantryError(
        ErrorCodes.Internal,
        `${what}: the signature is larger than ${maxSignatureBytes} bytes`,
      );
    }
    blob = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  } else {
    throw new GantryError(
      ErrorCodes.NotSupported,
      `Unsupported scheme when reading signature from ${redacted(url)}`,
    );
  }
  try {
    const classified = classifySignature(blob);
    return classified.format === 'other' ? classified.blob : signatureBlob(classified);
  } catch (error) {
    throw new GantryError(
      isGantryError(error) ? error.code : ErrorCodes.Internal,
      `parsing signature ${url.protocol === 'file:' ? JSON.stringify(fileURLToPath(url)) : redacted(url)}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/** GETs a blob of the repository into memory (at most `limit` bytes) and checks its digest. */
async function fetchSmallBlob(
  client: RegistryClient,
  digest: Digest,
  limit: number,
  what: string,
  signal: AbortSignal | undefined,
): Promise<Uint8Array> {
  const response = await client.requestExpecting(
    { method: 'GET', target: `/v2/${client.scope.repository}/blobs/${digest}`, signal, what },
    [200],
    ErrorCodes.BlobNotFound,
  );
  let bytes: Buffer;
  try {
    bytes = await readLimitedBody(response.body, limit + 1);
  } catch (error) {
    throw networkError(error, what, signal);
  }
  if (bytes.byteLength > limit) {
    throw new GantryError(ErrorCodes.Internal, `${what}: larger than ${limit} bytes`);
  }
  const algorithm = digest.slice(0, digest.indexOf(':'));
  if (algorithm !== 'sha256' && algorithm !== 'sha512' && algorithm !== 'sha384') {
    throw new GantryError(ErrorCodes.InvalidDigest, `${what}: unsupported digest algorithm ${algorithm}`);
  }
  if (digestOf(bytes, algorithm) !== digest) {
    throw new GantryError(
      ErrorCodes.DigestMismatch,
      `${what}: the registry served bytes that do not match ${digest}`,
    );
  }
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

interface OciDescriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

interface AttachmentManifest {
  schemaVersion: number;
  mediaType?: string;
  artifactType?: string;
  config: OciDescriptor;
  layers: OciDescriptor[];
  subject?: OciDescriptor;
  annotations?: Record<string, string>;
}

function isDescriptor(value: unknown): value is OciDescriptor {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  return (
    typeof record.mediaType === 'string' &&
    typeof record.digest === 'string' &&
    typeof record.size === 'number' &&
    (record.annotations === undefined ||
      (typeof record.annotations === 'object' &&
        record.annotations !== null &&
        Object.values(record.annotations).every((entry) => typeof entry === 'string')))
  );
}

/**
 * The sigstore attachment manifest of `digest` in the client's repository, or undefined when the tag
 * does not exist. It must be an OCI image manifest.
 */
async function fetchAttachmentManifest(
  client: RegistryClient,
  digest: Digest,
  signal: AbortSignal | undefined,
): Promise<{ manifest: AttachmentManifest; name: string } | undefined> {
  const tag = sigstoreAttachmentTag(digest);
  const name = `${client.scope.registry}/${client.scope.repository}:${tag}`;
  let blob: Awaited<ReturnType<typeof fetchManifest>>;
  try {
    blob = await fetchManifest(client, tag, signal);
  } catch (error) {
    if (isGantryError(error) && error.code === ErrorCodes.ImageNotFound) return undefined;
    throw error;
  }
  if (blob.mediaType !== MediaTypes.OciManifest) {
    throw new GantryError(
      ErrorCodes.InvalidManifest,
      `unexpected MIME type for sigstore attachment manifest ${name}: ${JSON.stringify(blob.mediaType)}`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(blob.bytes).toString('utf8'));
  } catch (error) {
    throw new GantryError(
      ErrorCodes.InvalidManifest,
      `parsing manifest ${name}: ${(error as Error).message}`,
    );
  }
  const record = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const layers = record.layers ?? [];
  if (!isDescriptor(record.config) || !Array.isArray(layers) || !layers.every(isDescriptor)) {
    throw new GantryError(
      ErrorCodes.InvalidManifest,
      `parsing manifest ${name}: expected an OCI image manifest with a config and layers`,
    );
  }
  return {
    manifest: { ...(record as unknown as AttachmentManifest), layers: layers as OciDescriptor[] },
    name,
  };
}

/** Where and how to read or write the signatures of one manifest. */
export interface SignatureLocation {
  /** A client for the image's repository (`pull` to read, `pull,push` to write). */
  client: RegistryClient;
  /**
   * The docker reference that selects the registries.d scope and the lookaside path: a source's
   * physical reference (a mirror's, when one is used), a destination's reference.
   */
  reference: DockerReference;
  /** The manifest the signatures sign. */
  manifestDigest: Digest;
  options: SignatureStorageOptions;
  signal?: AbortSignal | undefined;
}

/** The lookaside signatures of `digest`: `signature-1`, `signature-2`, … until one is missing. */
async function readLookasideSignatures(
  client: RegistryClient,
  base: URL,
  digest: Digest,
  signal: AbortSignal | undefined,
): Promise<Uint8Array[]> {
  const signatures: Uint8Array[] = [];
  for (let index = 0; ; index++) {
    if (index >= maxLookasideSignatures) {
      throw new GantryError(
        ErrorCodes.Internal,
        `server provided ${maxLookasideSignatures} signatures, assuming that's unreasonable and a server error`,
      );
    }
    const signature = await readLookasideSignature(
      client,
      lookasideSignatureUrl(base, digest, index),
      signal,
    );
    if (signature === undefined) return signatures;
    signatures.push(signature);
  }
}

/**
 * The signatures of a manifest, in storage form (see the module comment): the lookaside ones
 * (`signature-1`, `signature-2`, … until one is missing; at most `maxLookasideSignatures`), then,
 * when `use-sigstore-attachments` is set for the reference, one per layer of the attachment
 * manifest (every layer, whatever its MIME type, as containers/image does), each layer's digest checked.
 */
export async function readDockerSignatures(location: SignatureLocation): Promise<Uint8Array[]> {
  const { client, reference, manifestDigest: digest, signal } = location;
  throwIfAborted(signal);
  const configuration = await loadConfiguration(location.options);
  const signatures: Uint8Array[] = [];
  if (client.supportsSignatureExtension) {
    signatures.push(...(await readExtensionSignatures(client, reference.path, digest, signal)));
  } else {
    signatures.push(
      ...(await readLookasideSignatures(
        client,
        lookasideBaseUrl(configuration, reference, false),
        digest,
        signal,
      )),
    );
  }
  if (!usesSigstoreAttachments(configuration, reference)) return signatures;
  const attachment = await fetchAttachmentManifest(client, digest, signal);
  if (attachment === undefined) return signatures;
  for (const [index, layer] of attachment.manifest.layers.entries()) {
    const payload = await fetchSmallBlob(
      client,
      layer.digest,
      maxSignatureBytes,
      `fetching sigstore attachment ${index + 1}/${attachment.manifest.layers.length} (${layer.digest}) of ${attachment.name}`,
      signal,
    );
    signatures.push(
      signatureBlob({
        format: 'sigstore-json',
        mimeType: layer.mediaType,
        payload,
        annotations: layer.annotations ?? null,
      }),
    );
  }
  return signatures;
}

/** Uploads a small blob (HEAD first: an existing blob is not uploaded again); returns its descriptor. */
async function uploadSmallBlob(
  client: RegistryClient,
  bytes: Uint8Array,
  mediaType: string,
  signal: AbortSignal | undefined,
): Promise<OciDescriptor> {
  const digest = digestOf(bytes);
  const repository = client.scope.repository;
  const name = `${client.scope.registry}/${repository}`;
  const head = await client.request({
    method: 'HEAD',
    target: `/v2/${repository}/blobs/${digest}`,
    signal,
    what: `checking whether blob ${digest} exists in ${name}`,
  });
  await head.body.dump();
  if (head.statusCode !== 200) {
    const what = `writing blob ${digest} to ${name}`;
    const started = await client.requestExpecting(
      { method: 'POST', target: `/v2/${repository}/blobs/uploads/`, signal, what },
      [202],
    );
    await started.body.dump();
    const location = headerValue(started.headers, 'location');
    if (location === undefined) {
      throw new GantryError(ErrorCodes.Internal, `${what}: the registry gave no upload location`);
    }
    const target = new URL(location, `${client.origin}/`);
    target.searchParams.set('digest', digest);
    const finished = await client.requestExpecting(
      {
        method: 'PUT',
        target,
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) },
        body: bytes,
        signal,
        what,
      },
      [201, 204],
    );
    await finished.body.dump();
  }
  return { mediaType, digest, size: bytes.byteLength };
}

function sameAnnotations(
  left: Record<string, string> | undefined | null,
  right: Record<string, string> | null,
): boolean {
  const leftEntries = Object.entries(left ?? {});
  const rightRecord = right ?? {};
  return (
    leftEntries.length === Object.keys(rightRecord).length &&
    leftEntries.every(([key, value]) => Object.hasOwn(rightRecord, key) && rightRecord[key] === value)
  );
}

/** Go's JSON of an OCI descriptor (struct order; annotations sorted; empty members omitted). */
function descriptorJson(descriptor: OciDescriptor): Record<string, unknown> {
  const result: Record<string, unknown> = {
    mediaType: descriptor.mediaType,
    digest: descriptor.digest,
    size: descriptor.size,
  };
  for (const key of ['urls', 'annotations', 'data', 'platform', 'artifactType'] as const) {
    const value = descriptor[key];
    if (value === undefined || value === null || value === '') continue;
    if (key === 'annotations') {
      if (Object.keys(value as object).length === 0) continue;
      result.annotations = new Map(Object.entries(value as Record<string, string>));
    } else if (Array.isArray(value) && value.length === 0) {
    } else {
      result[key] = value;
    }
  }
  return result;
}

/**
 * Adds sigstore signatures to the attachment manifest of a manifest (`sha256-<hex>.sig`), as
 * containers/image does: the existing manifest and config are read (or a new manifest with an empty
 * config is made), each signature whose payload, MIME type and annotations are not already a layer is
 * uploaded as a new layer (and its digest appended to the config's `rootfs.diff_ids`), then the
 * config and the manifest are written, the manifest by tag.
 */
async function putSigstoreAttachments(
  location: SignatureLocation,
  signatures: Array<Extract<ParsedSignature, { format: 'sigstore-json' }>>,
): Promise<void> {
  const { client, manifestDigest: digest, signal } = location;
  const existing = await fetchAttachmentManifest(client, digest, signal);
  let config: Record<string, unknown>;
  let manifest: AttachmentManifest;
  if (existing === undefined) {
    manifest = {
      schemaVersion: 2,
      mediaType: MediaTypes.OciManifest,
      config: { mediaType: MediaTypes.OciConfig, digest: '' as Digest, size: 0 },
      layers: [],
    };
    config = { architecture: '', os: '', config: {}, rootfs: { type: 'layers', diff_ids: [] } };
  } else {
    manifest = existing.manifest;
    const configBytes = await fetchSmallBlob(
      client,
      manifest.config.digest,
      maxConfigBytes,
      `fetching sigstore attachment config ${manifest.config.digest} of ${existing.name}`,
      signal,
    );
    try {
      const parsed: unknown = JSON.parse(Buffer.from(configBytes).toString('utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new Error('not an object');
      config = parsed as Record<string, unknown>;
    } catch (error) {
      throw new GantryError(
        ErrorCodes.InvalidManifest,
        `parsing sigstore attachment config ${manifest.config.digest} in ${existing.name}: ${(error as Error).message}`,
      );
    }
  }
  const rootfs = (
    typeof config.rootfs === 'object' && config.rootfs !== null ? config.rootfs : { type: 'layers' }
  ) as Record<string, unknown>;
  const diffIds = Array.isArray(rootfs.diff_ids) ? [...(rootfs.diff_ids as unknown[])] : [];
  const layers = [...manifest.layers];
  for (const signature of signatures) {
    const payloadDigest = digestOf(signature.payload);
    const alreadyThere = layers.some(
      (layer) =>
        layer.mediaType === signature.mimeType &&
        layer.size === signature.payload.byteLength &&
        layer.digest === payloadDigest &&
        sameAnnotations(layer.annotations, signature.annotations),
    );
    if (alreadyThere) continue;
    const descriptor = await uploadSmallBlob(client, signature.payload, signature.mimeType, signal);
    if (signature.annotations !== null && Object.keys(signature.annotations).length > 0) {
      descriptor.annotations = signature.annotations;
    }
    layers.push(descriptor);
    diffIds.push(descriptor.digest);
  }
  const configBytes = new Uint8Array(
    Buffer.from(goJsonMarshal({ ...config, rootfs: { ...rootfs, diff_ids: diffIds } }), 'utf8'),
  );
  const configDescriptor = await uploadSmallBlob(client, configBytes, MediaTypes.OciConfig, signal);
  const manifestJson: Record<string, unknown> = { schemaVersion: manifest.schemaVersion };
  manifestJson.mediaType = manifest.mediaType ?? MediaTypes.OciManifest;
  if (manifest.artifactType) manifestJson.artifactType = manifest.artifactType;
  manifestJson.config = descriptorJson(configDescriptor);
  manifestJson.layers = layers.map(descriptorJson);
  if (manifest.subject !== undefined) manifestJson.subject = descriptorJson(manifest.subject);
  if (manifest.annotations !== undefined && Object.keys(manifest.annotations).length > 0) {
    manifestJson.annotations = new Map(Object.entries(manifest.annotations));
  }
  const tag = sigstoreAttachmentTag(digest);
  const response = await client.requestExpecting(
    {
      method: 'PUT',
      target: `/v2/${client.scope.repository}/manifests/${tag}`,
      headers: { 'content-type': MediaTypes.OciManifest },
      body: goJsonMarshal(manifestJson),
      signal,
      what: `writing sigstore attachment manifest ${tag} to ${client.scope.registry}/${client.scope.repository}`,
    },
    [200, 201, 202, 204],
  );
  await response.body.dump();
}

/** Writes simple-signing signatures to a `file:` lookaside, then removes surplus older ones. */
async function putLookasideSignatures(
  configuration: RegistriesDirectoryConfiguration,
  location: SignatureLocation,
  signatures: Uint8Array[],
): Promise<void> {
  const base = lookasideBaseUrl(configuration, location.reference, true);
  const fileOf = (index: number): string => {
    const url = lookasideSignatureUrl(base, location.manifestDigest, index);
    if (url.protocol === 'http:' || url.protocol === 'https:') {
      throw new GantryError(
        ErrorCodes.NotSupported,
        `Writing directly to a ${url.protocol.slice(0, -1)} lookaside ${redacted(url)} is not supported. Configure a lookaside-staging: location`,
      );
    }
    if (url.protocol !== 'file:') {
      throw new GantryError(
        ErrorCodes.NotSupported,
        `Unsupported scheme when writing signature to ${redacted(url)}`,
      );
    }
    return fileURLToPath(url);
  };
  for (const [index, signature] of signatures.entries()) {
    throwIfAborted(location.signal);
    const file = fileOf(index);
    try {
      await makeDirectories(path.dirname(file), 0o755);
      await writeFile(file, signature, { mode: 0o644 });
    } catch (error) {
      throw new GantryError(ErrorCodes.Internal, `writing signature ${file}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  // Remove older signatures beyond the new ones, up to the first missing one (readers stop there).
  for (let index = signatures.length; ; index++) {
    const file = fileOf(index);
    try {
      await rm(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') break;
      throw new GantryError(ErrorCodes.Internal, `deleting signature ${file}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
}

/**
 * Stores signatures (storage form) of a manifest, as containers/image does: sigstore signatures are
 * added to the sigstore attachment (an error when `use-sigstore-attachments` is not set for the
 * reference: "writing sigstore attachments is disabled by configuration"); the other signatures
 * replace the lookaside's (`lookaside-staging`, else `lookaside`, else the built-in default directory;
 * `file:` only). Writes happen at once (a registry has no transaction; containers/image does the same).
 * Nothing is done for an empty list.
 */
export async function writeDockerSignatures(
  location: SignatureLocation,
  signatures: Uint8Array[],
): Promise<void> {
  throwIfAborted(location.signal);
  if (signatures.length === 0) return;
  const sigstore: Array<Extract<ParsedSignature, { format: 'sigstore-json' }>> = [];
  const others: Uint8Array[] = [];
  for (const signature of signatures) {
    const classified = classifySignature(signature);
    if (classified.format === 'other') others.push(classified.blob);
    else sigstore.push(classified);
  }
  const configuration = await loadConfiguration(location.options);
  if (sigstore.length > 0) {
    if (!usesSigstoreAttachments(configuration, location.reference)) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        `${location.reference}: writing sigstore attachments is disabled by configuration (set use-sigstore-attachments in registries.d, or use --remove-signatures)`,
      );
    }
    await putSigstoreAttachments(location, sigstore);
  }
  if (others.length > 0) {
    if (location.client.supportsSignatureExtension) {
      await writeExtensionSignatures(
        location.client,
        location.reference.path,
        location.manifestDigest,
        others,
        location.signal,
      );
    } else {
      await putLookasideSignatures(configuration, location, others);
    }
  }
}

/**
 * The digest whose signatures a source reads: `instanceDigest`, else the reference's digest when it
 * is a sha256 one, else the digest of the top-level manifest.
 */
export function signedManifestDigest(
  instanceDigest: Digest | undefined,
  reference: DockerReference,
  topLevelManifest: () => Promise<{ bytes: Uint8Array }>,
): Promise<Digest> {
  if (instanceDigest !== undefined) return Promise.resolve(instanceDigest);
  if (reference.digest?.startsWith('sha256:')) return Promise.resolve(reference.digest);
  return topLevelManifest().then((manifest) => manifestDigest(manifest.bytes));
}

/** The signature storage options of a transport context (`registriesDirectoryPath`). */
export function signatureStorageOptionsFrom(context: TransportContext): SignatureStorageOptions {
  return context.registriesDirectoryPath === undefined || context.registriesDirectoryPath === ''
    ? { context }
    : { registriesDirectoryPath: context.registriesDirectoryPath, context };
}
