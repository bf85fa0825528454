/**
 * The library path bundles: a program importing `@gantry/core`'s root entry is bundled by rolldown into
 * one ES module (only Node's built-in modules left outside, no file of node_modules read at run time),
 * and the bundle inspects and copies an image through a transport the program defines itself.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { rolldown } from 'rolldown';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatInspectJson } from './manifest/inspect.js';
import { buildFixtureImage } from './testing/fixture-builder.js';
import { fixturePresets } from './testing/fixture-presets.js';
import type { FixtureImage } from './testing/fixture-types.js';

const execFileAsync = promisify(execFile);

/**
 * A program using the public API with a minimal `files:` transport: an image is a directory holding
 * `manifest` (the top-level manifest), `media-type` and one file per blob named by its digest.
 */
const program = `
import { createReadStream, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { copyImage, formatInspectJson, inspectImage, insecureAcceptAnythingPolicy, TransportRegistry } from '@gantry/core';

const transport = {
  specificationVersion: 'v1',
  name: 'files',
  parseReference(path) {
    const reference = {
      transport,
      stringWithinTransport: () => path,
      dockerReference: () => undefined,
      policyConfigurationIdentity: () => path,
      policyConfigurationNamespaces: () => [],
      async newImageSource() {
        return {
          reference,
          properties: { hasThreadSafeGetBlob: true },
          async getManifest(instance) {
            if (instance) throw new Error('no instances');
            return { bytes: readFileSync(join(path, 'manifest')), mediaType: readFileSync(join(path, 'media-type'), 'utf8') };
          },
          async getBlob(info) {
            const file = join(path, info.digest);
            return { stream: createReadStream(file), size: statSync(file).size };
          },
          async getSignatures() { return []; },
          async close() {},
        };
      },
      async newImageDestination() {
        mkdirSync(path, { recursive: true });
        return {
          reference,
          properties: {
            supportedManifestMimeTypes: undefined, desiredLayerCompression: 'preserve', acceptsForeignLayerURLs: false,
            mustMatchRuntimeOS: false, supportsSignatures: false, hasThreadSafePutBlob: false, ignoresEmbeddedDockerReference: true,
          },
          async putBlob(stream, info) {
            const hash = createHash('sha256');
            const chunks = [];
            for await (const chunk of stream) { hash.update(chunk); chunks.push(chunk); }
            const digest = 'sha256:' + hash.digest('hex');
            const bytes = Buffer.concat(chunks);
            writeFileSync(join(path, digest + '.tmp'), bytes);
            renameSync(join(path, digest + '.tmp'), join(path, digest));
            return { digest, size: bytes.length, mediaType: info.mediaType };
          },
          async putManifest(bytes, mediaType) {
            writeFileSync(join(path, 'manifest'), bytes);
            writeFileSync(join(path, 'media-type'), mediaType);
          },
          async putSignatures(signatures) { if (signatures.length > 0) throw new Error('no signatures'); },
          async commit() {},
          async close() {},
        };
      },
      async deleteImage() { throw new Error('not supported'); },
    };
    return reference;
  },
  validatePolicyConfigurationScope() {},
};

const [from, to] = process.argv.slice(2);
const registry = new TransportRegistry([transport]);
const signal = AbortSignal.timeout(60_000);
const result = await copyImage(registry.parseImageReference('files:' + from), registry.parseImageReference('files:' + to), {
  policy: insecureAcceptAnythingPolicy(),
  signal,
});
const inspection = await inspectImage(registry.parseImageReference('files:' + to), { signal });
process.stdout.write(JSON.stringify({ copied: result.manifestDigest, inspection: formatInspectJson(inspection) }));
`;

let directory: string;
let fixture: FixtureImage;

beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-bundled-library-'));
  fixture = await buildFixtureImage(fixturePresets.ociMinimal, {
    directory: path.join(directory, 'fixture'),
  });
  const image = path.join(directory, 'image');
  await mkdir(image);
  await writeFile(path.join(image, 'manifest'), fixture.topLevel.bytes);
  await writeFile(path.join(image, 'media-type'), fixture.topLevel.mediaType);
  for (const [digest, blob] of fixture.blobs)
    await writeFile(path.join(image, digest), await readFile(blob.path));
});

afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('the library bundled', () => {
  it('bundles into one module needing only Node built-ins, and copies and inspects from it', async () => {
    const entry = path.join(directory, 'program.mjs');
    await writeFile(entry, program);
    const builtins = new Set([...builtinModules, ...builtinModules.map((name) => `node:${name}`)]);
    const bundle = await rolldown({
      input: entry,
      platform: 'node',
      external: (id) => builtins.has(id),
      resolve: {
        alias: { '@gantry/core': path.join(import.meta.dirname, 'index.ts') },
        conditionNames: ['import', 'node', 'default'],
      },
      logLevel: 'warn',
    });
    const { output } = await bundle.write({
      dir: path.join(directory, 'out'),
      format: 'esm',
      codeSplitting: false,
    });
    await bundle.close();
    expect(output.filter((item) => item.type === 'chunk')).toHaveLength(1);
    const bundled = path.join(directory, 'out', output[0]!.fileName);
    const code = await readFile(bundled, 'utf8');
    const imported = [...code.matchAll(/^import .* from "([^"]+)";$/gm)].map((match) => match[1]!);
    expect(imported.filter((specifier) => !builtins.has(specifier))).toEqual([]);

    // Run from a directory without node_modules: everything the program needs is in the bundle.
    const { stdout } = await execFileAsync(
      process.execPath,
      [bundled, path.join(directory, 'image'), path.join(directory, 'copy')],
      {
        cwd: directory,
      },
    );
    const result = JSON.parse(stdout) as { copied: string; inspection: string };
    expect(result.copied).toBe(fixture.topLevel.digest);
    const inspection = JSON.parse(result.inspection) as { Digest: string; Layers: string[] };
    expect(inspection.Digest).toBe(fixture.topLevel.digest);
    expect(inspection.Layers).toHaveLength(fixture.images[0]!.diffIds.length);
    expect(formatInspectJson(JSON.parse(result.inspection))).toBe(result.inspection);
  }, 300_000);
});
