/**
 * Test helpers: a transport serving fixture images (as a copy source), a collecting destination (as a copy
 * target that keeps what it receives), and running the real tools.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { createFixtureImageSource, type FixtureImage } from '@gantry/core/testing';
import {
  type BlobInfo,
  type BlobToWrite,
  type Digest,
  digestOf,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageReference,
  type ImageSource,
  type Transport,
  transportSpecificationVersion,
} from '@gantry/core/transport';

const execFileAsync = promisify(execFile);

/** Runs a real tool; fails loudly (never skips) when it is missing. */
export async function run(
  tool: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  try {
    const { stdout } = await execFileAsync(tool, args, {
      maxBuffer: 64 * 1024 * 1024,
      ...(options.env ? { env: options.env } : {}),
    });
    return stdout;
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT') throw new Error(`${tool} is required by this test but is not installed`);
    throw new Error(`${tool} ${args.join(' ')} failed: ${failure.stderr ?? failure.message}`);
  }
}

export async function temporaryDirectory(): Promise<{ directory: string; remove: () => Promise<void> }> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  return { directory, remove: () => rm(directory, { recursive: true, force: true }) };
}

/** A transport `fixture:` whose single reference serves `image` (a copy source). */
export function fixtureReference(image: FixtureImage): ImageReference {
  const transport: Transport = {
    specificationVersion: transportSpecificationVersion,
    name: 'fixture',
    parseReference: () => reference,
    validatePolicyConfigurationScope: () => {},
  };
  const reference: ImageReference = {
    transport,
    stringWithinTransport: () => 'image',
    dockerReference: () => undefined,
    policyConfigurationIdentity: () => '',
    policyConfigurationNamespaces: () => [],
    newImageSource: async (): Promise<ImageSource> => createFixtureImageSource(image, reference),
    newImageDestination: async () => {
      throw new GantryError(ErrorCodes.NotSupported, 'fixture: is read-only');
    },
    deleteImage: async () => {
      throw new GantryError(ErrorCodes.NotSupported, 'fixture: is read-only');
    },
  };
  return reference;
}

/** What a `collectingReference` destination received. */
export interface Collected {
  blobs: Map<Digest, Buffer>;
  manifest?: { bytes: Uint8Array; mediaType: string };
  committed: boolean;
}

/**
 * A reference whose destination keeps blobs and the manifest in memory (small test images only), and
 * asks for layers as `desiredLayerCompression` says (default: as they are).
 */
export function collectingReference(
  collected: Collected,
  supported?: string[],
  desiredLayerCompression: 'preserve' | 'compress' | 'decompress' = 'preserve',
): ImageReference {
  const transport: Transport = {
    specificationVersion: transportSpecificationVersion,
    name: 'collect',
    parseReference: () => reference,
    validatePolicyConfigurationScope: () => {},
  };
  const reference: ImageReference = {
    transport,
    stringWithinTransport: () => 'collect',
    dockerReference: () => undefined,
    policyConfigurationIdentity: () => '',
    policyConfigurationNamespaces: () => [],
    newImageSource: async () => {
      throw new GantryError(ErrorCodes.NotSupported, 'collect: is write-only');
    },
    newImageDestination: async (): Promise<ImageDestination> => ({
      reference,
      properties: {
        supportedManifestMimeTypes: supported,
        desiredLayerCompression,
        acceptsForeignLayerURLs: false,
        mustMatchRuntimeOS: false,
        supportsSignatures: false,
        hasThreadSafePutBlob: false,
        ignoresEmbeddedDockerReference: true,
      },
      async putBlob(stream: Readable, _info: BlobToWrite): Promise<BlobInfo> {
        const chunks: Buffer[] = [];
        for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
        const bytes = Buffer.concat(chunks);
        const digest = digestOf(bytes);
        collected.blobs.set(digest, bytes);
        return { digest, size: bytes.length };
      },
      async putManifest(bytes: Uint8Array, mediaType: string) {
        collected.manifest = { bytes, mediaType };
      },
      async putSignatures(signatures: Uint8Array[]) {
        if (signatures.length > 0) throw new GantryError(ErrorCodes.NotSupported, 'no signatures');
      },
      async commit() {
        collected.committed = true;
      },
      async close() {},
    }),
    deleteImage: async () => {
      throw new GantryError(ErrorCodes.NotSupported, 'collect: cannot delete');
    },
  };
  return reference;
}

/** sha256 digest of a buffer. */
export function sha256(bytes: Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
}
