#!/usr/bin/env node
// Installs the pnpm version named in package.json's packageManager (with npm: corepack's download is
// not relied on) and then the workspace's dependencies.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const rootPackage = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const wanted = rootPackage.packageManager.replace(/^pnpm@/, '');
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 18)) {
  console.error(`Gantry needs Node.js 20.18 or newer; this is ${process.version}.`);
  process.exit(1);
}

function run(command, args) {
  execFileSync(command, args, { stdio: 'inherit' });
}

let installed = '';
try {
  installed = execFileSync('pnpm', ['--version'], { encoding: 'utf8' }).trim();
} catch {
  // not installed
}
if (installed !== wanted) {
  console.error(`Installing pnpm ${wanted} with npm…`);
  run('npm', ['install', '--global', `pnpm@${wanted}`]);
}
run('pnpm', ['install', '--frozen-lockfile']);
