import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInstalledTransportLoader, loadInstalledTransports } from './index.js';

let project: string;

/** A transport module written as a third-party package would be, counting its imports. */
function transportModule(name: string): string {
  return `globalThis.pluginLoaderImports = globalThis.pluginLoaderImports ?? {};
globalThis.pluginLoaderImports[${JSON.stringify(name)}] = (globalThis.pluginLoaderImports[${JSON.stringify(name)}] ?? 0) + 1;
const transport = {
  specificationVersion: 'v1',
  name: ${JSON.stringify(name)},
  parseReference(reference) {
    return { transport, stringWithinTransport: () => reference, dockerReference: () => undefined,
      policyConfigurationIdentity: () => reference, policyConfigurationNamespaces: () => [],
      newImageSource: async () => { throw new Error('unused'); },
      newImageDestination: async () => { throw new Error('unused'); },
      deleteImage: async () => { throw new Error('unused'); } };
  },
  validatePolicyConfigurationScope() {},
};
export default transport;
`;
}

async function writePackage(
  name: string,
  files: Record<string, string>,
  manifest: Record<string, unknown> = {},
) {
  const directory = join(project, 'node_modules', name);
  await mkdir(directory, { recursive: true });
  await writeFile(
    join(directory, 'package.json'),
    JSON.stringify({ name, version: '1.0.0', type: 'module', exports: './index.js', ...manifest }),
  );
  for (const [file, text] of Object.entries(files)) await writeFile(join(directory, file), text);
}

function imports(): Record<string, number> {
  return { ...((globalThis as Record<string, unknown>).pluginLoaderImports as Record<string, number>) };
}

beforeAll(async () => {
  project = await mkdtemp(join(tmpdir(), 'gantry-plugin-loader-'));
  await writePackage('gantry-transport-alpha', { 'index.js': transportModule('alpha') });
  await writePackage('@acme/gantry-transport-bravo', { 'index.js': transportModule('bravo') });
  await writePackage(
    'gantry-transport-several',
    { 'index.js': transportModule('charlie') },
    { gantry: { transports: ['charlie'] } },
  );
  await writePackage('gantry-transport-broken', { 'index.js': "throw new Error('broken at import');" });
  await writePackage('unrelated-package', { 'index.js': transportModule('unrelated') });
});

afterAll(async () => {
  await rm(project, { recursive: true, force: true });
});

describe('createInstalledTransportLoader', () => {
  it('imports only the packages the wanted names need, then everything on demand', async () => {
    const warnings: string[] = [];
    const load = createInstalledTransportLoader({
      cwd: project,
      env: {},
      warn: (message) => warnings.push(message),
    });
    const registry = await load(['alpha']);
    expect(registry.get('alpha')?.name).toBe('alpha');
    expect(imports()).toEqual({ alpha: 1 });
    expect(warnings).toEqual([]);
    expect(registry.parseImageReference('alpha:x').stringWithinTransport()).toBe('x');

    const everything = await load();
    expect(everything.list().map((entry) => `${entry.transport.name} ${entry.origin}`)).toEqual([
      'alpha gantry-transport-alpha@1.0.0',
      'bravo @acme/gantry-transport-bravo@1.0.0',
      'charlie gantry-transport-several@1.0.0',
    ]);
    expect(imports()).toEqual({ alpha: 1, bravo: 1, charlie: 1 });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/gantry-transport-broken@1\.0\.0: loading .* failed: broken at import/);
  });

  it('loadInstalledTransports imports every installed transport from the working directory', async () => {
    const warnings: string[] = [];
    const registry = await loadInstalledTransports({
      cwd: project,
      env: {},
      warn: (message) => warnings.push(message),
    });
    expect(registry.list().map((entry) => entry.transport.name)).toEqual(['alpha', 'bravo', 'charlie']);
    expect(registry.get('unrelated')).toBeUndefined();
  });
});
