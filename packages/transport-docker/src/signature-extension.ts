/**
 * The `X-Registry-Supports-Signatures` API extension (OpenShift's integrated registry), used as
 * containers/image uses it when a registry announces it: simple-signing signatures are read from
 * `GET /extensions/v2/<repository>/signatures/<digest>` (`{"signatures": [{"schemaVersion": 2,
 * "name", "type": "atomic", "content": <base64>}]}`) instead of a lookaside, and each new one is
 * `PUT` to the same path as one such object, named `<digest>@<32 random hex digits>` (201 Created).
 */
import { randomBytes } from 'node:crypto';
import { type Digest, ErrorCodes, GantryError, throwIfAborted } from '@gantry/core/transport';
import type { RegistryClient } from './registry-client.js';
import { readLimitedBody } from './registry-errors.js';

/** The extension's signature schema version containers/image reads and writes. */
const extensionSchemaVersion = 2;
/** The extension's signature type of simple-signing signatures. */
const extensionTypeAtomic = 'atomic';
/** Largest signature list read (containers/image's `MaxSignatureListBodySize`). */
const maxSignatureListBytes = 4 * 1024 * 1024;

interface ExtensionSignature {
  schemaVersion?: unknown;
  name?: unknown;
  type?: unknown;
  content?: unknown;
}

function extensionPath(repository: string, digest: Digest): string {
  return `/extensions/v2/${repository}/signatures/${digest}`;
}

/** All signatures the extension lists for `digest`, as parsed objects. */
async function listExtensionSignatures(
  client: RegistryClient,
  repository: string,
  digest: Digest,
  signal: AbortSignal | undefined,
): Promise<ExtensionSignature[]> {
  const what = `downloading signatures for ${digest} in ${repository}`;
  const response = await client.requestExpecting(
    { method: 'GET', target: extensionPath(repository, digest), signal, what },
    [200],
    ErrorCodes.Internal,
  );
  const body = await readLimitedBody(response.body, maxSignatureListBytes + 1);
  if (body.byteLength > maxSignatureListBytes) {
    throw new GantryError(
      ErrorCodes.Internal,
      `${what}: the signature list is larger than ${maxSignatureListBytes} bytes`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new GantryError(ErrorCodes.Internal, `decoding signature list: ${(error as Error).message}`);
  }
  const list = (parsed as { signatures?: unknown } | null)?.signatures;
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list))
    throw new GantryError(ErrorCodes.Internal, 'decoding signature list: "signatures" is not an array');
  return list as ExtensionSignature[];
}

function contentOf(signature: ExtensionSignature): Uint8Array | undefined {
  if (signature.schemaVersion !== extensionSchemaVersion || signature.type !== extensionTypeAtomic)
    return undefined;
  if (typeof signature.content !== 'string') return undefined;
  return new Uint8Array(Buffer.from(signature.content, 'base64'));
}

/** The simple-signing signatures the extension holds for `digest` (other versions and types are skipped). */
export async function readExtensionSignatures(
  client: RegistryClient,
  repository: string,
  digest: Digest,
  signal: AbortSignal | undefined,
): Promise<Uint8Array[]> {
  throwIfAborted(signal);
  const signatures: Uint8Array[] = [];
  for (const entry of await listExtensionSignatures(client, repository, digest, signal)) {
    const content = contentOf(entry);
    if (content !== undefined) signatures.push(content);
  }
  return signatures;
}

/**
 * Adds simple-signing signatures of `digest` through the extension, skipping those already stored
 * (the extension has no way to remove one, so existing signatures stay, as in containers/image).
 */
export async function writeExtensionSignatures(
  client: RegistryClient,
  repository: string,
  digest: Digest,
  signatures: readonly Uint8Array[],
  signal: AbortSignal | undefined,
): Promise<void> {
  const existing = await listExtensionSignatures(client, repository, digest, signal);
  const names = new Set(existing.map((entry) => entry.name).filter((name) => typeof name === 'string'));
  const stored = existing.map(contentOf).filter((content): content is Uint8Array => content !== undefined);
  for (const signature of signatures) {
    if (stored.some((content) => Buffer.from(content).equals(Buffer.from(signature)))) continue;
    let name: string;
    do {
      name = `${digest}@${randomBytes(16).toString('hex')}`;
    } while (names.has(name));
    names.add(name);
    const body = JSON.stringify({
      schemaVersion: extensionSchemaVersion,
      name,
      type: extensionTypeAtomic,
      content: Buffer.from(signature).toString('base64'),
    });
    const path = extensionPath(repository, digest);
    const response = await client.requestExpecting(
      {
        method: 'PUT',
        target: path,
        headers: { 'content-type': 'application/json' },
        body,
        signal,
        what: `uploading signature to ${path}`,
      },
      [201],
      ErrorCodes.Internal,
    );
    await response.body.dump();
    stored.push(signature);
  }
}
