/**
 * Every publishable package packed as it would be published (`pnpm pack`), then checked: publint and
 * arethetypeswrong on the tarball, and the rules below on its files and manifest.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { checkPackage, createPackageFromTarballData } from '@arethetypeswrong/core';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type PackageManifest,
  type PackedPackage,
  packPackages,
  publishablePackages,
  workspaceRoot,
} from './packing.js';

const packages = publishablePackages();
const rootLicence = readFileSync(join(workspaceRoot, 'LICENSE'), 'utf8');
let directory: string;
let packed: Map<string, PackedPackage>;

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gantry-pack-'));
  packed = await packPackages(packages, directory);
}, 300_000);

afterAll(async () => {
  if (directory) await rm(directory, { recursive: true, force: true });
});

/** What a published file may be; anything else in a tarball is a mistake. */
const allowedFiles: readonly RegExp[] = [
  /^package\.json$/,
  /^README\.md$/,
  /^LICENSE$/,
  /^CHANGELOG\.md$/,
  /^dist\/.+\.js$/,
  /^dist\/.+\.d\.ts$/,
];
/** The CLI is a command: its launcher, the bundle, the bundle's licence notices and the man pages. */
const allowedCliFiles: readonly RegExp[] = [
  /^package\.json$/,
  /^README\.md$/,
  /^LICENSE$/,
  /^CHANGELOG\.md$/,
  /^bin\/gantry$/,
  /^dist\/bin\.cjs$/,
  /^dist\/main\.cjs$/,
  /^dist\/main-lazy-[\w.-]+\.cjs$/,
  /^dist\/main\.cjs\.LICENSES\.txt$/,
  /^dist\/man\/gantry(-[a-z-]+)?\.1$/,
];

/** The files `exports` (all conditions) points at. */
function exportTargets(exportsField: unknown): string[] {
  if (typeof exportsField === 'string') return [exportsField];
  if (exportsField && typeof exportsField === 'object')
    return Object.values(exportsField).flatMap((value) => exportTargets(value));
  return [];
}

/** The workspace `exports` without the `@gantry/source` condition, dropping subpaths only that condition served. */
function exportsWithoutSourceCondition(exportsField: Record<string, unknown>): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const [subpath, target] of Object.entries(exportsField)) {
    if (typeof target !== 'object' || target === null) {
      result[subpath] = target;
      continue;
    }
    const rest = Object.fromEntries(Object.entries(target).filter(([key]) => key !== '@gantry/source'));
    if (Object.keys(rest).length > 0) result[subpath] = rest;
  }
  return result;
}

const builtins = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));

/** `lodash/fp` → `lodash`, `@scope/name/x` → `@scope/name`. */
function packageNameOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

interface ModuleImports {
  /** Bare specifiers imported statically (`import … from`, `export … from`): needed to load the module. */
  static: Set<string>;
  /** Bare specifiers loaded when a function runs (`import()`, `require()`, a `createRequire` require). */
  lazy: Set<string>;
  /** Relative specifiers (static and dynamic), resolved against the module's directory. */
  relative: Set<string>;
}

/** The imports of a published JavaScript file (rolldown's output: one statement per line). */
function importsOf(file: string, code: string): ModuleImports {
  const result: ModuleImports = { static: new Set(), lazy: new Set(), relative: new Set() };
  const add = (specifier: string, kind: 'static' | 'lazy') => {
    if (specifier.startsWith('.')) result.relative.add(normalize(join(dirname(file), specifier)));
    else if (!builtins.has(specifier) && !specifier.startsWith('node:'))
      result[kind].add(packageNameOf(specifier));
  };
  for (const match of code.matchAll(/^\s*(?:import|export)\b[^;'"]*?\bfrom\s*["']([^"']+)["']/gm))
    add(match[1]!, 'static');
  for (const match of code.matchAll(/^\s*import\s*["']([^"']+)["']/gm)) add(match[1]!, 'static');
  for (const match of code.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) add(match[1]!, 'lazy');
  for (const match of code.matchAll(/(?<![.\w$])require\(\s*["']([^"']+)["']\s*\)/g)) add(match[1]!, 'lazy');
  // A require made with createRequire, called at once: `createRequire(…)("koffi")` (CommonJS bundle).
  for (const match of code.matchAll(/createRequire\)?\((?:[^()]|\([^()]*\))*\)\(\s*["']([^"']+)["']\s*\)/g))
    add(match[1]!, 'lazy');
  return result;
}

/**
 * The bare packages reached from `entry` (a path inside the package): those the entry's static import
 * graph needs to load, and those loaded lazily anywhere in the modules it reaches.
 */
async function packagesReachedFrom(
  pkg: PackedPackage,
  entry: string,
): Promise<{ static: Set<string>; lazy: Set<string> }> {
  const needed = new Set<string>();
  const lazy = new Set<string>();
  const visited = new Set<string>();
  const visit = async (file: string, staticallyReached: boolean) => {
    const key = `${file}:${staticallyReached}`;
    if (visited.has(key)) return;
    visited.add(key);
    const code = await readFile(join(pkg.extracted, file), 'utf8');
    const imports = importsOf(file, code);
    for (const name of imports.static) (staticallyReached ? needed : lazy).add(name);
    for (const name of imports.lazy) lazy.add(name);
    const staticRelative = new Set(
      [...code.matchAll(/^\s*(?:import|export)\b[^;'"]*?\bfrom\s*["'](\.[^"']+)["']/gm)].map((match) =>
        normalize(join(dirname(file), match[1]!)),
      ),
    );
    for (const relative of imports.relative) {
      expect(pkg.files, `${pkg.name}: ${file} imports ${relative}, which is not published`).toContain(
        relative,
      );
      await visit(relative, staticallyReached && staticRelative.has(relative));
    }
  };
  await visit(normalize(entry), true);
  return { static: needed, lazy };
}

/** The JavaScript entry points a published manifest offers: `exports` targets and `bin` files run by Node. */
function javascriptEntries(manifest: PackageManifest): { subpath: string; file: string }[] {
  const entries: { subpath: string; file: string }[] = [];
  for (const [subpath, target] of Object.entries(manifest.exports ?? {})) {
    for (const file of exportTargets(target)) {
      if (/\.(c|m)?js$/.test(file)) entries.push({ subpath, file });
    }
  }
  if (manifest.name === '@gantry/cli') {
    entries.push({ subpath: 'bin', file: './dist/bin.cjs' }, { subpath: 'bin', file: './dist/main.cjs' });
  }
  return entries;
}

describe.each(packages.map((pkg) => [pkg.name, pkg] as const))('%s, packed', (name, workspacePackage) => {
  const pkg = () => packed.get(name)!;

  it('ships its README and the Apache-2.0 LICENSE of the repository', async () => {
    expect(pkg().files).toContain('README.md');
    expect((await readFile(join(pkg().extracted, 'README.md'), 'utf8')).length).toBeGreaterThan(200);
    expect(pkg().files).toContain('LICENSE');
    expect(await readFile(join(pkg().extracted, 'LICENSE'), 'utf8')).toBe(rootLicence);
    expect(rootLicence).toContain('Apache License\n                           Version 2.0, January 2004');
    expect(pkg().manifest.license).toBe('Apache-2.0');
  });

  it('ships only what users need: no sources, tests, test support or source maps', () => {
    const allowed = name === '@gantry/cli' ? allowedCliFiles : allowedFiles;
    const unexpected = pkg().files.filter((file) => !allowed.some((pattern) => pattern.test(file)));
    expect(unexpected, `${name}: files that should not ship`).toEqual([]);
    const publishedSubpaths = Object.keys(pkg().manifest.exports ?? {});
    const testLike = pkg().files.filter(
      (file) =>
        /(^|\/)src\/|\.map$|\.test\.|test-support|test-helper|fixtures?\//.test(file) ||
        (/(^|\/)testing(\/|\.)/.test(file) && !publishedSubpaths.includes('./testing')),
    );
    expect(testLike, `${name}: test files or maps in the tarball`).toEqual([]);
  });

  it('publishes a manifest without workspace-only parts', async () => {
    const text = await readFile(join(pkg().extracted, 'package.json'), 'utf8');
    expect(text).not.toContain('@gantry/source');
    expect(text).not.toContain('workspace:');
    expect(pkg().manifest.publishConfig).toBeUndefined();
    // The published exports are the workspace's minus the source condition: the two cannot drift apart.
    if (name !== '@gantry/cli') {
      expect(pkg().manifest.exports).toEqual(
        exportsWithoutSourceCondition(workspacePackage.manifest.exports!),
      );
    } else {
      // The command is the product; its library build serves the workspace only.
      expect(pkg().manifest.exports).toEqual({ './package.json': './package.json' });
      expect(
        Object.keys(pkg().manifest.dependencies ?? {}).filter((dep) => dep.startsWith('@gantry/')),
      ).toEqual([]);
    }
    for (const target of exportTargets(pkg().manifest.exports)) {
      expect(pkg().files, `${name}: exports names ${target}`).toContain(normalize(target));
    }
    for (const binFile of Object.values(pkg().manifest.bin ?? {})) {
      expect(pkg().files).toContain(normalize(binFile));
    }
  });

  it('declares every package its code imports, and every @gantry one is published from this workspace', async () => {
    const manifest = pkg().manifest;
    const dependencies = new Set(Object.keys(manifest.dependencies ?? {}));
    const requiredPeers = Object.keys(manifest.peerDependencies ?? {}).filter(
      (peer) => !manifest.peerDependenciesMeta?.[peer]?.optional,
    );
    const optionalPeers = Object.keys(manifest.peerDependencies ?? {}).filter(
      (peer) => manifest.peerDependenciesMeta?.[peer]?.optional,
    );
    const loadable = new Set([...dependencies, ...requiredPeers]);
    const lazilyLoadable = new Set([
      ...loadable,
      ...Object.keys(manifest.optionalDependencies ?? {}),
      ...optionalPeers,
    ]);
    for (const entry of javascriptEntries(manifest)) {
      const reached = await packagesReachedFrom(pkg(), entry.file);
      // A test-support entry may need its optional peers (vitest, tar-stream); the library never does.
      const allowedStatic = entry.subpath === './testing' ? lazilyLoadable : loadable;
      for (const dependency of reached.static) {
        expect(allowedStatic, `${name} ${entry.file} imports ${dependency}`).toContain(dependency);
      }
      for (const dependency of reached.lazy) {
        expect(lazilyLoadable, `${name} ${entry.file} loads ${dependency}`).toContain(dependency);
      }
    }
    const workspaceNames = new Map(packages.map((other) => [other.name, other.version]));
    for (const [dependency, range] of Object.entries({
      ...manifest.dependencies,
      ...manifest.optionalDependencies,
      ...manifest.peerDependencies,
    })) {
      if (!dependency.startsWith('@gantry/')) continue;
      expect(workspaceNames.has(dependency), `${name} depends on ${dependency}`).toBe(true);
      expect(range).toBe(`^${workspaceNames.get(dependency)}`);
    }
  });

  if (name === '@gantry/cli')
    it('the CLI ships its man pages, and its bundle has no import() Node 20 cannot run from the code cache', async () => {
      expect(pkg().files).toContain('dist/man/gantry.1');
      expect(pkg().files).toContain('dist/man/gantry-copy.1');
      expect(pkg().files).toContain('dist/man/gantry-inspect.1');
      // bin.cjs runs main.cjs through vm.Script with V8's code cache on Node 20; a script compiled from
      // that cache has no dynamic import callback, so an import() of anything but a plugin (which goes
      // through the importer bin.cjs provides) fails there.
      expect(pkg().files).toContain('dist/main-lazy-undici.cjs');
      expect(pkg().files).toContain('dist/main-lazy-openpgp.cjs');
      const bundle = (
        await Promise.all(
          pkg()
            .files.filter((file) => /^dist\/main(-lazy-[\w.-]+)?\.cjs$/.test(file))
            .map((file) => readFile(join(pkg().extracted, file), 'utf8')),
        )
      ).join('\n');
      const imports = [...bundle.matchAll(/(?<![.\w$])import\(([^)]*)\)/g)].map((match) => match[1]);
      expect(imports.filter((argument) => /^["'`]/.test(argument!))).toEqual([]);
    });

  it('passes publint (strict)', async () => {
    const tarball = await readFile(pkg().tarball);
    const result = await publint({
      pack: {
        tarball: tarball.buffer.slice(tarball.byteOffset, tarball.byteOffset + tarball.byteLength),
      },
      level: 'suggestion',
      strict: true,
    });
    const messages = result.messages.map(
      (message) => `${message.type}: ${formatMessage(message, result.pkg, { color: false })}`,
    );
    expect(messages).toEqual([]);
  });

  if (name !== '@gantry/cli')
    it('passes arethetypeswrong (ESM only: Node 16+ ESM and bundlers)', async () => {
      const result = await checkPackage(createPackageFromTarballData(await readFile(pkg().tarball)));
      expect(result.types, `${name} has no types`).not.toBe(false);
      // The packages are ESM only (`type: module`, no `require` condition): resolutions for CommonJS
      // importers and Node 10 are not offered, as arethetypeswrong's `esm-only` profile says.
      const problems = ('problems' in result ? result.problems : []).filter(
        (problem) =>
          !('resolutionKind' in problem) || !['node10', 'node16-cjs'].includes(problem.resolutionKind),
      );
      expect(problems).toEqual([]);
    });
});
