import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFixtureImage, fixturePresets, writeFixtureToOciLayout } from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  discoverTransportPlugins,
  isTransportPackageName,
  loadTransportRegistry,
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
    expect(listed.stdout.toString()).toContain(`memory  ${join(config, 'plugin.mjs')}`);
    expect(listed.stderr).toContain('gantry-transport-nonexistent');
    expect(listed.stderr).toContain('is not installed');
  });

  it('a transport that is known but not installed names its package', async () => {
    const result = await runGantry(['inspect', 'docker-archive:/x.tar']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      'transport \\"docker-archive\\" is not installed: add @gantry/transport-docker-archive',
    );
  });
});
