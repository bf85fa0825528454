/**
 * Packing the workspace's publishable packages as `pnpm publish` would (`pnpm pack`: `workspace:`
 * ranges become versions, `publishConfig` fields replace the manifest's), and reading the tarballs back.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The repository's root directory. */
export const workspaceRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

export interface WorkspacePackage {
  name: string;
  version: string;
  /** Absolute directory. */
  directory: string;
  manifest: PackageManifest;
}

export interface PackageManifest {
  name: string;
  version: string;
  private?: boolean;
  license?: string;
  exports?: Record<string, unknown>;
  publishConfig?: { exports?: Record<string, unknown> };
  files?: string[];
  bin?: Record<string, string>;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  devDependencies?: Record<string, string>;
}

/** The workspace's packages that are published (not `private`), from pnpm-workspace.yaml's `packages/*` and `apps/*`. */
export function publishablePackages(): WorkspacePackage[] {
  const workspace = readFileSync(join(workspaceRoot, 'pnpm-workspace.yaml'), 'utf8');
  const globs = [...workspace.matchAll(/^\s*-\s*["']?([^"'\n]+?)\/\*["']?\s*$/gm)].map((match) => match[1]!);
  const packages: WorkspacePackage[] = [];
  for (const parent of globs) {
    const parentDirectory = join(workspaceRoot, parent);
    for (const entry of readdirSync(parentDirectory).sort()) {
      const manifestFile = join(parentDirectory, entry, 'package.json');
      if (!existsSync(manifestFile)) continue;
      const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as PackageManifest;
      if (manifest.private) continue;
      packages.push({
        name: manifest.name,
        version: manifest.version,
        directory: join(parentDirectory, entry),
        manifest,
      });
    }
  }
  return packages;
}

export interface PackedPackage {
  name: string;
  version: string;
  /** Absolute path of the .tgz. */
  tarball: string;
  /** Paths inside the package (without the `package/` prefix), sorted. */
  files: string[];
  /** The directory the tarball was extracted to (its `package/`). */
  extracted: string;
  /** The manifest as published. */
  manifest: PackageManifest;
}

/** Packs `pkg` into `destination` with `pnpm pack` and extracts the tarball beside it. */
export async function packPackage(pkg: WorkspacePackage, destination: string): Promise<PackedPackage> {
  await mkdir(destination, { recursive: true });
  const { stdout } = await execFileAsync('pnpm', ['pack', '--json', '--pack-destination', destination], {
    cwd: pkg.directory,
    maxBuffer: 64 * 1024 * 1024,
  });
  const report = JSON.parse(stdout) as { filename: string; files: { path: string }[] };
  const extracted = join(destination, `${pkg.name.replace('@', '').replace('/', '-')}-extracted`);
  await mkdir(extracted, { recursive: true });
  await execFileAsync('tar', ['-xzf', report.filename, '-C', extracted]);
  const packageDirectory = join(extracted, 'package');
  return {
    name: pkg.name,
    version: pkg.version,
    tarball: report.filename,
    files: report.files.map((file) => file.path).sort(),
    extracted: packageDirectory,
    manifest: JSON.parse(readFileSync(join(packageDirectory, 'package.json'), 'utf8')) as PackageManifest,
  };
}

/** Packs several packages, a few at a time (most of a `pnpm pack` is pnpm starting). */
export async function packPackages(
  packages: readonly WorkspacePackage[],
  destination: string,
): Promise<Map<string, PackedPackage>> {
  const results = new Array<PackedPackage>(packages.length);
  let next = 0;
  const worker = async () => {
    while (next < packages.length) {
      const index = next++;
      results[index] = await packPackage(packages[index]!, destination);
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, packages.length) }, worker));
  return new Map(results.map((pkg) => [pkg.name, pkg]));
}

/**
 * The names of the `@gantry/*` packages `name` needs installed at run time (dependencies and optional
 * dependencies, transitively), itself included: the tarballs a user's `npm install` would fetch.
 */
export function workspaceClosure(name: string, packages: readonly WorkspacePackage[]): string[] {
  const byName = new Map(packages.map((pkg) => [pkg.name, pkg]));
  const seen = new Set<string>();
  const visit = (current: string) => {
    if (seen.has(current)) return;
    const pkg = byName.get(current);
    if (!pkg) throw new Error(`${current} is not a publishable package of the workspace`);
    seen.add(current);
    const { dependencies = {}, optionalDependencies = {} } = pkg.manifest;
    for (const dependency of Object.keys({ ...dependencies, ...optionalDependencies })) {
      if (dependency.startsWith('@gantry/')) visit(dependency);
    }
  };
  visit(name);
  return [...seen].sort();
}

/** Runs a program and returns its output; a failure throws with the program's stdout and stderr. */
export async function run(
  program: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  try {
    return await execFileAsync(program, [...args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      timeout: options.timeout ?? 600_000,
      maxBuffer: 64 * 1024 * 1024,
      encoding: 'utf8',
    });
  } catch (error) {
    const failure = error as Error & { stdout?: string; stderr?: string };
    throw new Error(
      `${program} ${args.join(' ')} failed: ${failure.message}\nstdout:\n${failure.stdout ?? ''}\nstderr:\n${failure.stderr ?? ''}`,
    );
  }
}
