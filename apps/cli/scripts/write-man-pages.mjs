#!/usr/bin/env node
// Writes the man pages (dist/man/gantry.1, dist/man/gantry-COMMAND.1) from the built CLI's command and
// flag definitions (src/man-pages.ts). Run from apps/cli after tsc and the bundler: `pnpm build` does.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const packageDirectory = process.cwd();
const manifest = JSON.parse(readFileSync(join(packageDirectory, 'package.json'), 'utf8'));
const { commands, globalFlags, manPages } = await import(join(packageDirectory, 'dist', 'index.js'));

// The transports the command carries in its bundle: the transport packages among its dependencies.
const requireFromPackage = createRequire(join(packageDirectory, 'package.json'));
const transportNames = Object.keys({ ...manifest.dependencies, ...manifest.devDependencies })
  .filter((name) => /^(@gantry\/transport-|gantry-transport-|@[^/]+\/gantry-transport-)/.test(name))
  .flatMap(
    (name) =>
      JSON.parse(readFileSync(requireFromPackage.resolve(`${name}/package.json`), 'utf8')).gantry
        ?.transports ?? [],
  )
  .sort();

const directory = join(packageDirectory, 'dist', 'man');
rmSync(directory, { recursive: true, force: true });
mkdirSync(directory, { recursive: true });
const pages = manPages({
  commands,
  globalFlags,
  version: manifest.version,
  transportNames: transportNames.join(', '),
});
for (const [name, text] of pages) writeFileSync(join(directory, name), text);
console.log(`write-man-pages: ${pages.size} pages in dist/man`);
