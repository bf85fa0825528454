/**
 * Source text of a third-party transport package (`gantry-transport-memory`) used by the plugin
 * tests: a real, self-contained in-memory transport written as plain JavaScript, the way a package
 * from npm would ship it (it does not import @gantry/core).
 */
export const memoryTransportSource = `
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

const images = new Map();
const brand = Symbol.for('gantry.error');

function notFound(name) {
  const error = new Error('image "' + name + '" not found in memory');
  error.code = 'ERR_GANTRY_IMAGE_NOT_FOUND';
  error[brand] = true;
  return error;
}

class MemoryReference {
  constructor(transport, name) { this.transport = transport; this.name = name; }
  stringWithinTransport() { return this.name; }
  dockerReference() { return undefined; }
  policyConfigurationIdentity() { return this.name; }
  policyConfigurationNamespaces() { return []; }
  async newImageSource() {
    const image = images.get(this.name);
    if (!image) throw notFound(this.name);
    return {
      reference: this,
      properties: { hasThreadSafeGetBlob: true },
      async getManifest(instanceDigest) {
        const manifest = image.manifests.get(instanceDigest ?? '');
        if (!manifest) throw notFound(instanceDigest);
        return manifest;
      },
      async getBlob(info) {
        const blob = image.blobs.get(info.digest);
        if (!blob) throw notFound(info.digest);
        return { stream: Readable.from([blob]), size: blob.length };
      },
      async getSignatures() { return []; },
      async close() {},
    };
  }
  async newImageDestination() {
    const staged = { manifests: new Map(), blobs: new Map() };
    const name = this.name;
    return {
      reference: this,
      properties: {
        supportedManifestMimeTypes: undefined,
        desiredLayerCompression: 'preserve',
        acceptsForeignLayerURLs: false,
        mustMatchRuntimeOS: false,
        supportsSignatures: true,
        hasThreadSafePutBlob: true,
        ignoresEmbeddedDockerReference: true,
      },
      async putBlob(stream, info) {
        const chunks = [];
        for await (const chunk of stream) chunks.push(chunk);
        const bytes = Buffer.concat(chunks);
        const digest = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
        staged.blobs.set(digest, bytes);
        return { digest, size: bytes.length, mediaType: info.mediaType };
      },
      async putManifest(bytes, mediaType, instanceDigest) {
        staged.manifests.set(instanceDigest ?? '', { bytes: new Uint8Array(bytes), mediaType });
      },
      async putSignatures() {},
      async commit() { images.set(name, staged); },
      async close() {},
    };
  }
  async deleteImage() {
    if (!images.delete(this.name)) throw notFound(this.name);
  }
}

const memoryTransport = {
  specificationVersion: 'v1',
  name: 'memory',
  parseReference(reference) {
    if (reference === '') {
      const error = new Error('Invalid image name "memory:": empty name');
      error.code = 'ERR_GANTRY_INVALID_REFERENCE';
      error[brand] = true;
      throw error;
    }
    return new MemoryReference(memoryTransport, reference);
  },
  validatePolicyConfigurationScope() {},
};

export { memoryTransport };
export default memoryTransport;
`;
