#!/usr/bin/env node
// The README's first command ends here: a real copy of the example image shipped in examples/hello
// (an OCI layout) into a dir: directory, then an inspect of the copy.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const gantry = (...args) => {
  console.error(`$ gantry ${args.join(' ')}`);
  execFileSync(process.execPath, [join(root, 'apps/cli/dist/bin.cjs'), ...args], { stdio: 'inherit' });
};
const destination = join(mkdtempSync(join(tmpdir(), 'gantry-demo-')), 'hello');
gantry('--insecure-policy', 'copy', `oci:${join(root, 'examples/hello')}:latest`, `dir:${destination}`);
gantry(
  'inspect',
  '--format',
  '{{.Architecture}} {{.Os}} {{len .Layers}} layer(s) {{.Digest}}',
  `dir:${destination}`,
);
console.error(`\nThe copy is in ${destination}`);
