/**
 * Source text of a third-party transport package (`gantry-transport-vault`) for the tests of the built
 * command: plain JavaScript as a package from npm would ship it, importing `@gantry/core` from its own
 * node_modules (so it uses a copy of core other than the one inside the CLI's bundle).
 *
 * `vault:DIRECTORY` stores one image in a directory: `blobs/<hex>` and `manifest.json` (the manifest
 * bytes with their type), written by `commit` only. It reports what it sees of its copy of core to the
 * file named by `GANTRY_VAULT_REPORT` (JSON lines): where `@gantry/core` was loaded from, the deferred
 * NODE_EXTRA_CA_CERTS path that copy knows, and, for the reference `slow`, whether the reason of the
 * abort the CLI's core sent is `instanceof GantryError` of the plugin's copy.
 */
export const vaultTransportSource = `
import { createHash } from 'node:crypto';
import { appendFileSync, createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ErrorCodes, GantryError, isGantryError } from '@gantry/core';
import { deferredNodeExtraCertificateAuthoritiesPath, transportSpecificationVersion } from '@gantry/core/transport';

function report(entry) {
  const file = process.env.GANTRY_VAULT_REPORT;
  if (file) appendFileSync(file, JSON.stringify(entry) + '\\n');
}

report({
  event: 'loaded',
  coreModule: import.meta.resolve('@gantry/core'),
  deferredCaCerts: deferredNodeExtraCertificateAuthoritiesPath() ?? null,
});

class VaultReference {
  constructor(transport, directory) { this.transport = transport; this.directory = directory; }
  stringWithinTransport() { return this.directory; }
  dockerReference() { return undefined; }
  policyConfigurationIdentity() { return this.directory; }
  policyConfigurationNamespaces() { return []; }

  async newImageSource(context = {}) {
    if (this.directory === 'slow') {
      const signal = context.signal;
      // Like a transport waiting on a connection: something keeps the process alive until the abort.
      const pending = setInterval(() => {}, 1000);
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
      clearInterval(pending);
      report({
        event: 'aborted',
        reasonIsGantryError: signal.reason instanceof GantryError,
        reasonBranded: isGantryError(signal.reason),
        reasonCode: signal.reason?.code ?? null,
      });
      throw signal.reason;
    }
    let stored;
    try {
      stored = JSON.parse(await readFile(join(this.directory, 'manifest.json'), 'utf8'));
    } catch (error) {
      if (error.code === 'ENOENT') {
        throw new GantryError(ErrorCodes.ImageNotFound, 'no image in vault ' + this.directory);
      }
      throw error;
    }
    const directory = this.directory;
    return {
      reference: this,
      properties: { hasThreadSafeGetBlob: true },
      async getManifest(instanceDigest) {
        if (instanceDigest !== undefined) {
          throw new GantryError(ErrorCodes.ImageNotFound, 'the vault holds no manifest lists');
        }
        return { bytes: Buffer.from(stored.manifest, 'base64'), mediaType: stored.mediaType };
      },
      async getBlob(info) {
        const path = join(directory, 'blobs', info.digest.slice('sha256:'.length));
        const { size } = await stat(path).catch(() => {
          throw new GantryError(ErrorCodes.BlobNotFound, 'blob ' + info.digest + ' is not in the vault');
        });
        return { stream: createReadStream(path), size };
      },
      async getSignatures() { return []; },
      async close() {},
    };
  }

  async newImageDestination() {
    const directory = this.directory;
    await mkdir(join(directory, 'blobs'), { recursive: true });
    let pending;
    return {
      reference: this,
      properties: {
        supportedManifestMimeTypes: undefined,
        desiredLayerCompression: 'preserve',
        acceptsForeignLayerURLs: false,
        mustMatchRuntimeOS: false,
        supportsSignatures: false,
        hasThreadSafePutBlob: true,
        ignoresEmbeddedDockerReference: true,
      },
      async putBlob(stream, info) {
        const temporary = join(directory, 'blobs', '.incoming-' + Math.random().toString(36).slice(2));
        const hash = createHash('sha256');
        let size = 0;
        await pipeline(stream, async function* (source) {
          for await (const chunk of source) { hash.update(chunk); size += chunk.length; yield chunk; }
        }, createWriteStream(temporary));
        const digest = 'sha256:' + hash.digest('hex');
        await rename(temporary, join(directory, 'blobs', digest.slice('sha256:'.length)));
        return { digest, size, mediaType: info.mediaType };
      },
      async putManifest(bytes, mediaType) {
        pending = { manifest: Buffer.from(bytes).toString('base64'), mediaType };
      },
      async putSignatures() {
        throw new GantryError(ErrorCodes.NotSupported, 'the vault stores no signatures');
      },
      async commit() { await writeFile(join(directory, 'manifest.json'), JSON.stringify(pending)); },
      async close() {},
    };
  }

  async deleteImage() {
    throw new GantryError(ErrorCodes.NotSupported, 'the vault deletes nothing');
  }
}

export const vaultTransport = {
  specificationVersion: transportSpecificationVersion,
  name: 'vault',
  parseReference(reference) {
    if (reference === '') throw new GantryError(ErrorCodes.InvalidReference, 'Invalid image name "vault:": empty');
    return new VaultReference(vaultTransport, reference);
  },
  validatePolicyConfigurationScope() {},
};

export default vaultTransport;
`;
