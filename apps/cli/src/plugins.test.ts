import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFixtureImage, fixturePresets, writeFixtureToOciLayout } from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTransportLoader,
  discoverTransportPlugins,
  isTransportPackageName,
  loadTransportRegistry,
  transportNameHint,
  transportNamesOf,
  transportsFromModule,
} from './plugins.js';
import { memoryTransportSource } from './test-support/memory-transport.js';
import { runGantry } from './test-support/run.js';

let root: string;
let app: string;

async function writePackage(
  directory: string,
  name: string,
  source: string,
  extra: Record<string, unknown> = {},
) {
  await mkdir(directory, { recursive: true });
  await writeFile(
    join(directory, 'package.json'),
    JSON.stringify({
      name,
      version: '1.2.3',
      type: 'module',
      exports: { '.': { import: './index.mjs' } },
      ...extra,
    }),
  );
  await writeFile(join(directory, 'index.mjs'), source);
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-'));
  app = join(root, 'app');
  const modules = join(app, 'node_modules');
  await writePackage(
    join(modules, 'gantry-transport-memory'),
    'gantry-transport-memory',
    memoryTransportSource,
  );
  await writePackage(
    join(modules, 'gantry-transport-broken'),
    'gantry-transport-broken',
    "export default { name: 'broken', parseReference() {} };",
  );
  await writePackage(
    join(modules, '@acme', 'gantry-transport-throws'),
    '@acme/gantry-transport-throws',
    "throw new Error('boom at import');",
  );
  await writePackage(join(modules, 'unrelated-package'), 'unrelated-package', 'export default 1;');
  await mkdir(join(app, 'sub', 'dir'), { recursive: true });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('plugin discovery', () => {
  it('recognises plugin package names', () => {
    expect(isTransportPackageName('@gantry/transport-oci')).toBe(true);
    expect(isTransportPackageName('gantry-transport-memory')).toBe(true);
    expect(isTransportPackageName('@acme/gantry-transport-s3')).toBe(true);
    expect(isTransportPackageName('@acme/transport-s3')).toBe(false);
    expect(isTransportPackageName('gantry-transports')).toBe(false);
  });

  it('scans node_modules upward from the search directory', () => {
    const warnings: string[] = [];
    const candidates = discoverTransportPlugins({
      env: {},
      cwd: root,
      searchFrom: join(app, 'sub', 'dir'),
      warn: (m) => warnings.push(m),
    });
    expect(candidates.map((candidate) => candidate.origin).sort()).toEqual([
      '@acme/gantry-transport-throws@1.2.3',
      'gantry-transport-broken@1.2.3',
      'gantry-transport-memory@1.2.3',
    ]);
    expect(warnings).toEqual([]);
  });

  it('loads valid plugins and reports bad ones by package, without failing', async () => {
    const warnings: string[] = [];
    const registry = await loadTransportRegistry({
      env: {},
      cwd: root,
      searchFrom: app,
      warn: (m) => warnings.push(m),
    });
    expect(registry.list().map((entry) => [entry.transport.name, entry.origin])).toEqual([
      ['memory', 'gantry-transport-memory@1.2.3'],
    ]);
    expect(warnings).toHaveLength(2);
    expect(warnings.find((m) => m.includes('gantry-transport-broken@1.2.3'))).toMatch(
      /is not a valid Gantry transport: specificationVersion is undefined/,
    );
    expect(warnings.find((m) => m.includes('@acme/gantry-transport-throws@1.2.3'))).toMatch(/boom at import/);
  });

  it('takes named transport exports when there is no valid default', () => {
    const transport = {
      specificationVersion: 'v1',
      name: 'x',
      parseReference() {},
      validatePolicyConfigurationScope() {},
    };
    expect(transportsFromModule({ default: 42, xTransport: transport, other: {} }, 'pkg')).toEqual([
      transport,
    ]);
    expect(() => transportsFromModule({ other: {} }, 'pkg')).toThrow('pkg is not a valid Gantry transport');
  });

  it('finds the installed first-party transports beside the CLI', async () => {
    const registry = await loadTransportRegistry({
      env: {},
      cwd: root,
      warn: (m) => {
        throw new Error(m);
      },
    });
    const names = registry.list().map((entry) => entry.transport.name);
    expect(names).toEqual(expect.arrayContaining(['dir', 'oci']));
  });
});

describe('plugins through the CLI', () => {
  it('GANTRY_TRANSPORTS adds a third-party transport usable by copy and inspect', async () => {
    const image = await buildFixtureImage(fixturePresets.ociMinimal, { directory: join(root, 'blobs') });
    const layout = join(root, 'layout');
    await writeFixtureToOciLayout(image, layout, 'latest');
    const env = { ...process.env, GANTRY_TRANSPORTS: 'gantry-transport-memory,gantry-transport-broken' };
    const listed = await runGantry(['transports'], { env, cwd: app });
    expect(listed.code).toBe(0);
    expect(listed.stdout.toString()).toMatch(/^memory +gantry-transport-memory@1\.2\.3$/m);
    expect(listed.stdout.toString()).toMatch(/^oci +@gantry\/transport-oci@/m);
    expect(listed.stderr).toMatch(
      /level=warning msg=".*gantry-transport-broken@1\.2\.3 is not a valid Gantry transport/,
    );

    const copied = await runGantry(
      ['--insecure-policy', 'copy', '-q', `oci:${layout}:latest`, 'memory:test-image'],
      { env, cwd: app },
    );
    expect(copied.code, copied.stderr).toBe(0);
    const fromMemory = await runGantry(['inspect', '--raw', 'memory:test-image'], { env, cwd: app });
    expect(fromMemory.code).toBe(0);
    expect(Buffer.compare(fromMemory.stdout, Buffer.from(image.topLevel.bytes))).toBe(0);
    const missing = await runGantry(['inspect', 'memory:nothing'], { env, cwd: app });
    expect(missing.code).toBe(2);
  });

  it('the config file lists plugins by path; a missing one is a warning', async () => {
    const config = join(root, 'config-home', 'gantry');
    await mkdir(config, { recursive: true });
    await writeFile(join(config, 'plugin.mjs'), memoryTransportSource);
    await writeFile(
      join(config, 'config.json'),
      JSON.stringify({ transports: ['./plugin.mjs', 'gantry-transport-nonexistent'] }),
    );
    const env = { ...process.env, XDG_CONFIG_HOME: join(root, 'config-home') };
    const listed = await runGantry(['transports'], { env, cwd: root });
    expect(listed.code).toBe(0);
    const pluginPath = join(config, 'plugin.mjs').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    expect(listed.stdout.toString()).toMatch(new RegExp(`^memory +${pluginPath}$`, 'm'));
    expect(listed.stderr).toContain('gantry-transport-nonexistent');
    expect(listed.stderr).toContain('is not installed');
  });

  it('commands import only the plugins their arguments need; `transports` imports all', async () => {
    const env = {
      ...process.env,
      GANTRY_TRANSPORTS: 'gantry-transport-memory,@acme/gantry-transport-throws',
    };
    const missing = await runGantry(['inspect', 'memory:nothing'], { env, cwd: app });
    expect(missing.code).toBe(2);
    expect(missing.stderr).not.toContain('boom at import');
    const listed = await runGantry(['transports'], { env, cwd: app });
    expect(listed.code).toBe(0);
    expect(listed.stderr).toMatch(
      /level=warning msg=".*@acme\/gantry-transport-throws@1\.2\.3: loading .*boom at import/,
    );
  });

  it('a transport nobody installed is named in the error (exit 1)', async () => {
    // Every transport Gantry knows is installed beside the CLI in this workspace; the loader test
    // below ("a wanted name nobody provides…") covers a known one that is missing.
    const result = await runGantry(['inspect', 'nosuch:busybox:latest']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('unknown transport \\"nosuch\\"');
  });
});

/** A minimal valid transport module that counts its imports in `globalThis.gantryPluginImports`. */
function countingTransportSource(exportedNames: string[], counterKey: string): string {
  const transports = exportedNames.map(
    (name, index) =>
      `export const transport${index} = { specificationVersion: 'v1', name: ${JSON.stringify(name)}, parseReference(reference) { return { reference, origin: ${JSON.stringify(counterKey)} }; }, validatePolicyConfigurationScope() {} };`,
  );
  return [
    'globalThis.gantryPluginImports ??= {};',
    `globalThis.gantryPluginImports[${JSON.stringify(counterKey)}] = (globalThis.gantryPluginImports[${JSON.stringify(counterKey)}] ?? 0) + 1;`,
    ...transports,
  ].join('\n');
}

function importCounts(): Record<string, number> {
  return { ...((globalThis as { gantryPluginImports?: Record<string, number> }).gantryPluginImports ?? {}) };
}

describe('lazy plugin loading', () => {
  let lazyApp: string;
  const warnings: string[] = [];
  const options = () => ({
    env: {},
    cwd: lazyApp,
    searchFrom: lazyApp,
    warn: (message: string) => warnings.push(message),
  });

  beforeAll(async () => {
    lazyApp = join(root, 'lazy-app');
    const modules = join(lazyApp, 'node_modules');
    // Discovery order (sorted): @acme/gantry-transport-explodes, gantry-transport-alpha,
    // gantry-transport-bravo, gantry-transport-bravo-twin, gantry-transport-misnamed.
    await writePackage(
      join(modules, '@acme', 'gantry-transport-explodes'),
      '@acme/gantry-transport-explodes',
      "throw new Error('explodes at import');",
    );
    await writePackage(
      join(modules, 'gantry-transport-alpha'),
      'gantry-transport-alpha',
      countingTransportSource(['alpha'], 'lazy-alpha'),
    );
    await writePackage(
      join(modules, 'gantry-transport-bravo'),
      'gantry-transport-bravo',
      countingTransportSource(['bravo'], 'lazy-bravo'),
      { gantry: { transports: ['bravo'] } },
    );
    await writePackage(
      join(modules, 'gantry-transport-bravo-twin'),
      'gantry-transport-bravo-twin',
      countingTransportSource(['echo', 'bravo'], 'lazy-bravo-twin'),
      { gantry: { transports: ['echo', 'bravo'] } },
    );
    await writePackage(
      join(modules, 'gantry-transport-misnamed'),
      'gantry-transport-misnamed',
      countingTransportSource(['charlie'], 'lazy-misnamed'),
    );
  });

  it('gives each candidate its declared names or its name hint without importing it', () => {
    const before = importCounts();
    const candidates = discoverTransportPlugins(options());
    expect(
      candidates.map((candidate) => [
        candidate.origin,
        candidate.declaredTransports,
        candidate.hintedTransport,
      ]),
    ).toEqual([
      ['@acme/gantry-transport-explodes@1.2.3', undefined, 'explodes'],
      ['gantry-transport-alpha@1.2.3', undefined, 'alpha'],
      ['gantry-transport-bravo@1.2.3', ['bravo'], 'bravo'],
      ['gantry-transport-bravo-twin@1.2.3', ['echo', 'bravo'], 'bravo-twin'],
      ['gantry-transport-misnamed@1.2.3', undefined, 'misnamed'],
    ]);
    expect(importCounts()).toEqual(before);
    expect(transportNameHint('@gantry/transport-oci-archive')).toBe('oci-archive');
    expect(transportNameHint('@acme/gantry-transport-s3')).toBe('s3');
    expect(transportNameHint('left-pad')).toBeUndefined();
  });

  it('imports only what the wanted names need, each module once, and everything on demand', async () => {
    warnings.length = 0;
    const load = createTransportLoader(options());
    const before = importCounts();
    const imported = () => {
      const now = importCounts();
      return Object.fromEntries(
        Object.keys(now)
          .filter((key) => key.startsWith('lazy-'))
          .map((key) => [key, (now[key] ?? 0) - (before[key] ?? 0)])
          .filter(([, count]) => count !== 0),
      );
    };

    const alphaOnly = await load(['alpha']);
    expect(alphaOnly.list().map((entry) => entry.transport.name)).toEqual(['alpha']);
    expect(imported()).toEqual({ 'lazy-alpha': 1 });
    // The module that throws on import was never imported, so nothing was reported.
    expect(warnings).toEqual([]);

    // `echo` is declared only by the twin; it also provides `bravo` but loses it to the earlier package
    // once that one is needed, exactly as with eager loading.
    const withEcho = await load(['echo', 'alpha']);
    expect(withEcho.list().map((entry) => [entry.transport.name, entry.origin])).toEqual([
      ['alpha', 'gantry-transport-alpha@1.2.3'],
      ['bravo', 'gantry-transport-bravo-twin@1.2.3'],
      ['echo', 'gantry-transport-bravo-twin@1.2.3'],
    ]);
    const withBravo = await load(['bravo']);
    expect(withBravo.list().find((entry) => entry.transport.name === 'bravo')?.origin).toBe(
      'gantry-transport-bravo@1.2.3',
    );
    expect(imported()).toEqual({ 'lazy-alpha': 1, 'lazy-bravo-twin': 1, 'lazy-bravo': 1 });
    expect(warnings).toEqual([
      'ignoring transport "bravo" from gantry-transport-bravo-twin@1.2.3: transport "bravo" from gantry-transport-bravo-twin@1.2.3 conflicts with the one from gantry-transport-bravo@1.2.3',
    ]);

    // `charlie` is hinted by nobody: every remaining candidate is imported and the misnamed package found.
    warnings.length = 0;
    const withCharlie = await load(['charlie']);
    expect(withCharlie.get('charlie')).toBeDefined();
    expect(imported()).toEqual({
      'lazy-alpha': 1,
      'lazy-bravo-twin': 1,
      'lazy-bravo': 1,
      'lazy-misnamed': 1,
    });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /@acme\/gantry-transport-explodes@1\.2\.3: loading .* failed: explodes at import/,
    );

    // Everything is imported already: loading all again imports nothing twice and reports nothing new.
    warnings.length = 0;
    const everything = await load();
    expect(everything.list().map((entry) => entry.transport.name)).toEqual([
      'alpha',
      'bravo',
      'charlie',
      'echo',
    ]);
    expect(imported()).toEqual({
      'lazy-alpha': 1,
      'lazy-bravo-twin': 1,
      'lazy-bravo': 1,
      'lazy-misnamed': 1,
    });
    expect(warnings).toEqual([]);
  });

  it('a wanted name nobody provides imports every candidate and stays missing', async () => {
    warnings.length = 0;
    const registry = await createTransportLoader(options())(['ostree']);
    expect(registry.get('ostree')).toBeUndefined();
    expect(registry.list().map((entry) => entry.transport.name)).toEqual([
      'alpha',
      'bravo',
      'charlie',
      'echo',
    ]);
    expect(() => registry.parseImageReference('ostree:busybox:latest')).toThrow(
      'transport "ostree" is not installed: add @gantry/transport-ostree',
    );
    expect(warnings.some((message) => message.includes('explodes at import'))).toBe(true);
  });

  it('transportNamesOf splits transport:reference arguments', () => {
    expect(transportNamesOf(['oci:examples/hello:latest', 'dir:/tmp/x'])).toEqual(['oci', 'dir']);
    expect(transportNamesOf(['docker://registry.example.com/repo'])).toEqual(['docker']);
    expect(transportNamesOf(['no-prefix'])).toBeUndefined();
  });

  it('declares the names of the first-party transports in their package.json', () => {
    const candidates = discoverTransportPlugins({
      env: {},
      cwd: root,
      warn: (message) => {
        throw new Error(message);
      },
    });
    const declared = Object.fromEntries(
      candidates
        .filter((candidate) => candidate.origin.startsWith('@gantry/transport-'))
        .map((candidate) => [candidate.origin.replace(/@[^@]*$/, ''), candidate.declaredTransports]),
    );
    for (const name of ['oci', 'dir', 'docker', 'docker-archive', 'oci-archive']) {
      expect(declared[`@gantry/transport-${name}`]).toEqual([name]);
    }
  });
});
