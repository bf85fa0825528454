/**
 * The README's library example, as a user meets it: a fresh project outside the repository installs
 * the packed tarballs of the packages the example imports (and of the workspace packages those depend
 * on, which npm would otherwise fetch from the registry) with npm, third-party dependencies coming from
 * the npm registry; the example is type-checked with tsc and run.
 *
 * The example's source is read from README.md (the first `ts` block under "Using Gantry from
 * Node.js"), so changing the README changes what is tested. What the example may assume: `./layout`
 * is an OCI layout holding an image tagged `latest` (the test writes it), and paths under `/tmp/` are
 * redirected into the project's own `tmp/` directory.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import {
  buildFixtureImage,
  type FixtureImage,
  runSkopeo,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type PackedPackage,
  packPackages,
  publishablePackages,
  run,
  workspaceClosure,
  workspaceRoot,
} from './packing.js';

/** The example: the first ```ts block of the README's "Using Gantry from Node.js" section. */
export function readmeLibraryExample(readme: string): string {
  const section = /^## Using Gantry from Node\.js\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1];
  if (!section) throw new Error('README.md has no "## Using Gantry from Node.js" section');
  const code = /^```ts\n([\s\S]*?)^```$/m.exec(section)?.[1];
  if (!code) throw new Error('the "Using Gantry from Node.js" section of README.md has no ```ts block');
  return code;
}

/** The packages an example imports (`import … from '@gantry/x'`), without subpaths. */
export function importedPackages(code: string): string[] {
  const names = [...code.matchAll(/^\s*import\b[^;]*?\bfrom\s*['"]([^'"]+)['"]/gm)].map((match) => {
    const parts = match[1]!.split('/');
    return match[1]!.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
  });
  return [...new Set(names)].sort();
}

const rootManifest = JSON.parse(readFileSync(join(workspaceRoot, 'package.json'), 'utf8')) as {
  devDependencies: Record<string, string>;
};
const example = readmeLibraryExample(readFileSync(join(workspaceRoot, 'README.md'), 'utf8'));
let root: string;
let project: string;
let image: FixtureImage;
let installed: string[];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-library-install-'));
  project = join(root, 'project');
  expect(relative(workspaceRoot, project).startsWith('..')).toBe(true);
  const packages = publishablePackages();
  const wanted = importedPackages(example);
  expect(wanted).toContain('@gantry/core');
  expect(wanted).toContain('@gantry/transport-oci');
  installed = [...new Set(wanted.flatMap((name) => workspaceClosure(name, packages)))].sort();
  const packed = await packPackages(
    packages.filter((pkg) => installed.includes(pkg.name)),
    join(root, 'tarballs'),
  );

  await mkdir(join(project, 'tmp'), { recursive: true });
  await writeFile(
    join(project, 'package.json'),
    `${JSON.stringify({ name: 'gantry-library-user', version: '1.0.0', private: true, type: 'module' }, null, 2)}\n`,
  );
  // As a user would: npm, the packed tarballs, everything else from the npm registry. Optional
  // dependencies (zstd-napi builds from source) are left out: the example does not need them.
  await run(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      '--omit=optional',
      ...[...packed.values()].map((pkg: PackedPackage) => pkg.tarball),
      `typescript@${rootManifest.devDependencies.typescript}`,
      `@types/node@${rootManifest.devDependencies['@types/node']}`,
    ],
    { cwd: project, env: { ...process.env, npm_config_loglevel: 'error' }, timeout: 300_000 },
  );

  image = await buildFixtureImage(
    {
      format: 'oci',
      layers: [
        { entries: [{ type: 'file', path: 'etc/greeting', content: 'hello from the library test\n' }] },
        { entries: [{ type: 'file', path: 'data/random.bin', randomSize: 50_000, seed: 'library' }] },
      ],
    },
    { directory: join(root, 'fixture-blobs') },
  );
  await writeFixtureToOciLayout(image, join(project, 'layout'), 'latest');
  await writeFile(join(project, 'example.ts'), example.replaceAll('/tmp/', `${join(project, 'tmp')}/`));
  await writeFile(
    join(project, 'tsconfig.json'),
    `${JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          types: ['node'],
          outDir: 'out',
          skipLibCheck: false,
        },
        files: ['example.ts'],
      },
      null,
      2,
    )}\n`,
  );
}, 600_000);

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe("the README's library example, from packed tarballs", () => {
  it('installs only published packages: no workspace link, every README and LICENSE present', async () => {
    for (const name of installed) {
      const directory = join(project, 'node_modules', name);
      const manifest = JSON.parse(await readFile(join(directory, 'package.json'), 'utf8')) as {
        version: string;
      };
      expect(manifest.version).toMatch(/^\d+\.\d+\.\d+/);
      expect(existsSync(join(directory, 'README.md')), `${name} README.md`).toBe(true);
      expect(existsSync(join(directory, 'LICENSE')), `${name} LICENSE`).toBe(true);
      expect(existsSync(join(directory, 'src')), `${name} ships src/`).toBe(false);
    }
  });

  it("type-checks with tsc (strict, NodeNext, the libraries' declarations checked too)", async () => {
    let output = '';
    try {
      await run(join(project, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], {
        cwd: project,
        timeout: 300_000,
      });
    } catch (error) {
      output = (error as Error).message;
    }
    const errors = output
      .split('\n')
      .filter((line) => /error TS\d+/.test(line))
      // openpgp's own declarations name a package it does not depend on; not ours to fix.
      .filter((line) => !/^node_modules\/openpgp\/.*'@openpgp\/web-stream-tools'/.test(line));
    expect(errors).toEqual([]);
    expect(existsSync(join(project, 'out', 'example.js'))).toBe(true);
  });

  it('runs: the image is copied, and skopeo reads the copy with the same digest', async () => {
    const { stdout } = await run(process.execPath, ['out/example.js'], { cwd: project, timeout: 300_000 });
    const digest = image.topLevel.digest;
    expect(stdout).toContain(digest);
    // The copy the example made (under tmp/, where its /tmp/ paths went) is what skopeo sees.
    const copied = /dir:(\/tmp\/[^'"\s]+)/.exec(example)?.[1];
    if (copied !== undefined) {
      const target = join(project, 'tmp', copied.slice('/tmp/'.length));
      const raw = await runSkopeo(['inspect', '--raw', `dir:${target}`]);
      expect(raw.equals(Buffer.from(image.topLevel.bytes))).toBe(true);
    }
  });
});
