#!/usr/bin/env node
// Bundles a package's compiled JavaScript (dist/, written by tsc) into one file per entry point.
//
// Node.js loads an ES module graph file by file: resolving, reading and compiling ~90 small modules
// costs a command-line run ~40 ms before it does any work (measured: `gantry --version` 115 → 70 ms,
// a registry re-push 0.31 → 0.27 s). Each package is bundled on its own, its dependencies (other
// @gantry packages included) staying external imports, so a plugin and the CLI still share one copy
// of @gantry/core. Entry points: every `exports` target under dist/, and dist/bin.js when present.
// Entries of one package share code through chunks (dist/shared-*.js), never through copies.
//
// Run from a package directory after `tsc`: `node ../../scripts/bundle-package.mjs`. Declarations
// (.d.ts, with their maps to the sources) stay as tsc wrote them; tsc's .js files and their maps are
// replaced by the bundles.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { rolldown } from 'rolldown';

const packageDirectory = process.cwd();
const distDirectory = join(packageDirectory, 'dist');
const manifest = JSON.parse(readFileSync(join(packageDirectory, 'package.json'), 'utf8'));

/** The dist/ files the package's `exports` point at (the `default` condition of each subpath). */
function exportTargets(exportsField) {
  const targets = [];
  const visit = (value) => {
    if (typeof value === 'string') {
      if (value.startsWith('./dist/') && value.endsWith('.js')) targets.push(value);
    } else if (value && typeof value === 'object') {
      for (const [key, nested] of Object.entries(value)) if (key !== '@gantry/source') visit(nested);
    }
  };
  visit(exportsField);
  return targets;
}

const entryFiles = new Set(
  exportTargets(manifest.exports).map((target) => resolve(packageDirectory, target)),
);
if (existsSync(join(distDirectory, 'bin.js'))) entryFiles.add(join(distDirectory, 'bin.js'));
if (entryFiles.size === 0) {
  console.error(`bundle-package: ${manifest.name} has no entry point under dist/`);
  process.exit(1);
}
const input = {};
for (const file of entryFiles) {
  if (!existsSync(file)) {
    console.error(`bundle-package: ${relative(packageDirectory, file)} is missing: run tsc first`);
    process.exit(1);
  }
  input[relative(distDirectory, file).replace(/\.js$/, '')] = file;
}

const bundleDirectory = join(packageDirectory, 'dist.bundle');
rmSync(bundleDirectory, { recursive: true, force: true });
const bundle = await rolldown({
  input,
  platform: 'node',
  // Every bare import (node:*, undici, tar-stream, @gantry/*) stays an import.
  external: (id) => !id.startsWith('.') && !id.startsWith('/') && !id.startsWith('\0'),
  logLevel: 'warn',
});
await bundle.write({
  dir: bundleDirectory,
  format: 'esm',
  entryFileNames: '[name].js',
  // Chunks sit beside the entries: code that finds files relative to its own module stays one level below the package.
  chunkFileNames: 'shared-[name]-[hash].js',
});
await bundle.close();

/** Every file below `directory`. */
function filesBelow(directory) {
  return readdirSync(directory).flatMap((name) => {
    const path = join(directory, name);
    return statSync(path).isDirectory() ? filesBelow(path) : [path];
  });
}

// tsc's JavaScript goes; declarations stay; the bundles take the entry points' places.
for (const file of filesBelow(distDirectory)) {
  if (file.endsWith('.js') || file.endsWith('.js.map')) rmSync(file);
}
for (const file of filesBelow(bundleDirectory)) {
  const target = join(distDirectory, relative(bundleDirectory, file));
  mkdirSync(dirname(target), { recursive: true });
  renameSync(file, target);
}
rmSync(bundleDirectory, { recursive: true, force: true });
