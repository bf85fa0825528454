/**
 * The built command as it is installed: `bin/gantry` → dist/bin.cjs → dist/main.cjs, one file holding
 * the CLI with its dependencies (scripts/bundle-package.mjs --self-contained), but for the packages it
 * requires on first use, each in a file beside it (dist/main-lazy-*.cjs). Run from a copy of the
 * package in a temporary node_modules with nothing else beside it, it works alone and loads no other
 * module file, and a lazy file only for a command that uses its package; with a third-party transport package beside it, which imports its own installed copy of
 * @gantry/core, that transport is found, checked, used, and shares what must be shared with the CLI's
 * bundled core (error brand and `instanceof`, the deferred NODE_EXTRA_CA_CERTS).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import {
  cp,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  buildFixtureImage,
  createTestGpgKey,
  type FixtureImage,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { startTestRegistry, type TestRegistry } from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSkopeo } from './test-support/run.js';
import { vaultTransportSource } from './test-support/vault-transport.js';

const cliDirectory = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const workspaceCore = resolve(cliDirectory, '../../packages/core');
const bundledTransportNames = [
  'containers-storage',
  'dir',
  'docker',
  'docker-archive',
  'docker-daemon',
  'oci',
  'oci-archive',
  'ostree',
];
let root: string;
let registry: TestRegistry;
let image: FixtureImage;
let layout: string;
/** The copied package: `<root>/<name>/node_modules/@gantry/cli`. */
let alone: string;
let withPlugin: string;

/** The CommonJS files of the built command: bin.cjs, main.cjs and the lazy files main-lazy-*.cjs. */
function distFiles(): string[] {
  return readdirSync(join(cliDirectory, 'dist')).filter((name) => name.endsWith('.cjs'));
}

/** The lazily required packages' files main.cjs names. */
function lazyFilesOf(bundle: string): string[] {
  return [
    ...new Set([...bundle.matchAll(/require\("\.\/(main-lazy-[\w.-]+\.cjs)"\)/g)].map((match) => match[1]!)),
  ];
}

/** Copies what an installed @gantry/cli holds (package.json, bin/, the dist files) into `modules`. */
async function installCli(modules: string): Promise<string> {
  const target = join(modules, '@gantry', 'cli');
  await mkdir(join(target, 'dist'), { recursive: true });
  await cp(join(cliDirectory, 'package.json'), join(target, 'package.json'));
  await cp(join(cliDirectory, 'bin'), join(target, 'bin'), { recursive: true });
  for (const file of distFiles()) {
    await cp(join(cliDirectory, 'dist', file), join(target, 'dist', file));
  }
  return target;
}

interface InstalledRun {
  status: number | null;
  stdout: string;
  stderr: string;
  /** The CommonJS module files Node loaded (`require.cache` at exit), besides the recorder itself. */
  loadedFiles: string[];
  /** The Node built-in modules loaded (`process.moduleLoadList`, public names such as `http`). */
  loadedBuiltins: string[];
}

/** Runs `<package>/bin/gantry args` in a clean environment, recording the module files it loaded. */
function runInstalled(
  packageDirectory: string,
  args: string[],
  environment: Record<string, string> = {},
): InstalledRun {
  const recorder = join(root, 'record-loaded-files.cjs');
  const loadedList = join(root, `loaded-${Math.random().toString(36).slice(2)}.json`);
  const result = spawnSync(join(packageDirectory, 'bin', 'gantry'), args, {
    encoding: 'utf8',
    timeout: 120_000,
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: join(root, 'home'),
      NODE_OPTIONS: `--require ${recorder}`,
      GANTRY_LOADED_FILES: loadedList,
      ...environment,
    },
  });
  const loaded = existsSync(loadedList)
    ? (JSON.parse(readFileSync(loadedList, 'utf8')) as { files: string[]; builtins: string[] })
    : { files: [], builtins: [] };
  return {
    status: result.status,
    stdout: result.stdout,
    stderr: result.stderr,
    loadedFiles: loaded.files.filter((file) => file !== recorder),
    loadedBuiltins: loaded.builtins,
  };
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-bundle-'));
  for (const file of ['bin.cjs', 'main.cjs']) {
    if (!existsSync(join(cliDirectory, 'dist', file))) {
      throw new Error(`dist/${file} is missing: run \`pnpm build\` (turbo builds it before these tests)`);
    }
  }
  await mkdir(join(root, 'home'));
  await writeFile(
    join(root, 'record-loaded-files.cjs'),
    "process.on('exit', () => require('node:fs').writeFileSync(process.env.GANTRY_LOADED_FILES, JSON.stringify({ files: Object.keys(require.cache), builtins: process.moduleLoadList.filter((entry) => entry.startsWith('NativeModule ')).map((entry) => entry.slice('NativeModule '.length)) })));\n",
  );
  image = await buildFixtureImage(
    {
      format: 'oci',
      layers: [
        { entries: [{ type: 'file', path: 'etc/hello', content: 'hello from the bundle test\n' }] },
        { entries: [{ type: 'file', path: 'data/random.bin', randomSize: 20_000, seed: 'bundle' }] },
      ],
    },
    { directory: join(root, 'blobs') },
  );
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
  registry = await startTestRegistry();
  const pushed = runSkopeo([
    '--insecure-policy',
    'copy',
    '-q',
    '--dest-tls-verify=false',
    `oci:${layout}:latest`,
    `docker://${registry.host}/bundle/image:v1`,
  ]);
  if (pushed.code !== 0) throw new Error(`skopeo push failed: ${pushed.stderr}`);

  alone = await installCli(join(root, 'alone', 'node_modules'));
  const pluginModules = join(root, 'with-plugin', 'node_modules');
  withPlugin = await installCli(pluginModules);
  const plugin = join(pluginModules, 'gantry-transport-vault');
  await mkdir(plugin, { recursive: true });
  await writeFile(
    join(plugin, 'package.json'),
    JSON.stringify({
      name: 'gantry-transport-vault',
      version: '3.1.4',
      type: 'module',
      exports: { '.': { import: './index.mjs' } },
      peerDependencies: { '@gantry/core': '*' },
    }),
  );
  await writeFile(join(plugin, 'index.mjs'), vaultTransportSource);
  // The plugin's @gantry/core: the package as installed for library users (its own dist/ build).
  await symlink(workspaceCore, join(pluginModules, '@gantry', 'core'), 'dir');
}, 180_000);

afterAll(async () => {
  await registry?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('dist/main.cjs', () => {
  it('holds every dependency: it and its lazy files require only Node built-in modules and each other', () => {
    const bundle = readFileSync(join(cliDirectory, 'dist', 'main.cjs'), 'utf8');
    const lazyFiles = lazyFilesOf(bundle);
    // The packages required on first use: OpenPGP.js, yaml, semver, undici (not for local images)…
    expect(lazyFiles).toEqual(
      expect.arrayContaining(['main-lazy-openpgp.cjs', 'main-lazy-yaml.cjs', 'main-lazy-undici.cjs']),
    );
    expect(distFiles().sort()).toEqual(['bin.cjs', 'main.cjs', ...lazyFiles].sort());
    // `node:`-only modules (node:sqlite, which undici probes for) are built-in too.
    const builtins = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));
    const isAllowed = (name: string) =>
      builtins.has(name) || name.startsWith('node:') || lazyFiles.includes(name.replace(/^\.\//, ''));
    for (const file of ['main.cjs', ...lazyFiles]) {
      const code = readFileSync(join(cliDirectory, 'dist', file), 'utf8');
      const named = [...code.matchAll(/(?<![.\w$])(?:require|import)\(\s*"([^"]+)"\s*\)/g)].map(
        (match) => match[1]!,
      );
      expect(named.filter((name) => !isAllowed(name))).toEqual([]);
      expect(code).not.toMatch(/^import |^export /m);
    }
  });
});

/** The files of dist/ a run loaded, by name. */
function loadedNames(run: InstalledRun, packageDirectory: string): string[] {
  return run.loadedFiles
    .map((file) =>
      dirname(file) === join(packageDirectory, 'dist') ? file.slice(dirname(file).length + 1) : file,
    )
    .sort();
}

describe('the installed command, alone', () => {
  it('lists the transports bundled in it, loading no module file but bin.cjs and main.cjs', () => {
    // Without the compile cache main.cjs is required as usual, so require.cache lists it.
    const listed = runInstalled(alone, ['transports'], { NODE_DISABLE_COMPILE_CACHE: '1' });
    expect(listed.stderr).toBe('');
    expect(listed.status).toBe(0);
    const rows = listed.stdout
      .trim()
      .split('\n')
      .map((line) => line.split(/ +/));
    expect(rows.map(([name]) => name)).toEqual(bundledTransportNames);
    for (const [name, origin] of rows)
      expect(origin).toMatch(new RegExp(`^@gantry/transport-${name}@\\d+\\.`));
    expect(loadedNames(listed, alone)).toEqual(['bin.cjs', 'main.cjs']);
  });

  it('inspects an image in a registry (with undici, from its lazy file) and copies oci: → dir:', async () => {
    const inspected = runInstalled(
      alone,
      ['inspect', '--tls-verify=false', `docker://${registry.host}/bundle/image:v1`],
      { NODE_DISABLE_COMPILE_CACHE: '1' },
    );
    expect(inspected.stderr).toBe('');
    expect(JSON.parse(inspected.stdout).Digest).toBe(image.topLevel.digest);
    const inspectFiles = loadedNames(inspected, alone);
    expect(inspectFiles).toEqual(expect.arrayContaining(['bin.cjs', 'main.cjs', 'main-lazy-undici.cjs']));
    // Nothing from outside dist/, and none of the packages inspect does not use.
    expect(
      inspectFiles.filter((name) => !/^(bin|main|main-lazy-(undici|smol-toml))\.cjs$/.test(name)),
    ).toEqual([]);
    // undici's requires of node:http are deferred by the bundler (requireHttpLazilyInUndici) and Gantry
    // gives undici's clients their maxHeaderSize: a registry command loads neither node:http nor http2.
    expect(inspected.loadedBuiltins).toEqual(expect.arrayContaining(['net', 'tls']));
    expect(inspected.loadedBuiltins.filter((name) => /^(http|https|http2|_http_\w+)$/.test(name))).toEqual(
      [],
    );

    const copyDirectory = join(root, 'dir-copy');
    const copied = runInstalled(alone, [
      '--insecure-policy',
      'copy',
      '-q',
      `oci:${layout}:latest`,
      `dir:${copyDirectory}`,
    ]);
    expect(copied.stderr).toBe('');
    expect(copied.status).toBe(0);
    expect(await readFile(join(copyDirectory, 'manifest.json'))).toEqual(Buffer.from(image.topLevel.bytes));
  });
});

describe('modules core loads on first use, from the bundle alone', () => {
  it("holds OpenPGP.js's minified build (never the full one), yaml and semver, with no import.meta left", () => {
    const bundle = ['main.cjs', 'main-lazy-openpgp.cjs', 'main-lazy-yaml.cjs', 'main-lazy-semver.cjs']
      .map((file) => readFileSync(join(cliDirectory, 'dist', file), 'utf8'))
      .join('\n');
    // A function name the minified build mangles; the banner both builds carry.
    expect(bundle).toContain('OpenPGP.js v6');
    expect(bundle).not.toContain('createVerificationObject');
    expect(bundle).not.toMatch(/\{\}\.resolve\(/);
    // Only the CLI's own dependencies (native bindings) are required at run time by name.
    const runtime = [...bundle.matchAll(/createRequire\)\([^)]*\)\)\("([^"]+)"\)/g)].map((match) => match[1]);
    expect(
      runtime.filter((name) => !['koffi', 'zstd-napi', 'xz-decompress', 'unbzip2-stream'].includes(name!)),
    ).toEqual([]);
  });

  it('syncs from a YAML file with a semver filter (yaml, semver) and verifies a signature OpenPGP.js must check', async () => {
    const yamlFile = join(root, 'sync.yaml');
    await writeFile(
      yamlFile,
      `${registry.host}:\n  tls-verify: false\n  images-by-semver:\n    bundle/image: ">=0"\n  images:\n    bundle/image: [v1]\n`,
    );
    const synced = runInstalled(
      alone,
      [
        '--insecure-policy',
        'sync',
        '--dry-run',
        '--src',
        'yaml',
        '--dest',
        'dir',
        yamlFile,
        join(root, 'synced'),
      ],
      { NODE_DISABLE_COMPILE_CACHE: '1' },
    );
    expect(synced.stderr).not.toMatch(/Cannot find module|fatal/);
    expect(synced.status).toBe(0);
    expect(synced.stdout).toContain(`${registry.host}/bundle/image:v1`);
    const syncFiles = loadedNames(synced, alone);
    expect(syncFiles).toEqual(
      expect.arrayContaining(['bin.cjs', 'main.cjs', 'main-lazy-yaml.cjs', 'main-lazy-semver.cjs']),
    );
    expect(syncFiles.filter((name) => !/^(bin|main|main-lazy-[\w.-]+)\.cjs$/.test(name))).toEqual([]);
    expect(syncFiles).not.toContain('main-lazy-openpgp.cjs');

    // A text-mode signature: the node:crypto verifier leaves it to OpenPGP.js.
    const key = await createTestGpgKey(join(root, 'gpg'));
    try {
      const manifestPath = join(root, 'manifest.json');
      await writeFile(manifestPath, image.topLevel.bytes);
      const identity = `${registry.host}/bundle/image:v1`;
      const payload = JSON.stringify({
        critical: {
          identity: { 'docker-reference': identity },
          image: { 'docker-manifest-digest': image.topLevel.digest },
          type: 'atomic container signature',
        },
        optional: { creator: 'bundle test' },
      });
      const signaturePath = join(root, 'signature');
      const signed = spawnSync(
        'gpg',
        ['--batch', '--textmode', '--sign', '--local-user', key.fingerprint, '--output', signaturePath],
        { input: payload, env: { ...process.env, GNUPGHOME: key.home } },
      );
      expect(signed.status).toBe(0);
      const verified = runInstalled(
        alone,
        [
          'standalone-verify',
          '--public-key-file',
          key.publicKeyPath,
          manifestPath,
          identity,
          key.fingerprint,
          signaturePath,
        ],
        { NODE_DISABLE_COMPILE_CACHE: '1' },
      );
      expect(verified.stderr).toBe('');
      expect(verified.stdout).toBe(`Signature verified, digest ${image.topLevel.digest}\n`);
      const verifyFiles = loadedNames(verified, alone);
      expect(verifyFiles).toEqual(expect.arrayContaining(['bin.cjs', 'main.cjs', 'main-lazy-openpgp.cjs']));
      expect(verifyFiles.filter((name) => !/^(bin|main|main-lazy-[\w.-]+)\.cjs$/.test(name))).toEqual([]);
    } finally {
      await key.dispose();
    }
  }, 180_000);
});

describe('the compiled-code cache', () => {
  it('is written by a first run, used by the next, and replaced when V8 refuses it', async () => {
    const cacheHome = join(root, 'cache-home');
    const environment = { XDG_CACHE_HOME: cacheHome };
    const reference = `oci:${layout}:latest`;
    const first = runInstalled(alone, ['inspect', '--raw', reference], environment);
    expect(first.stderr).toBe('');
    expect(first.stdout).toBe(Buffer.from(image.topLevel.bytes).toString('utf8'));
    // Only the entry point goes through require(): main.cjs (and any lazy file the command needs) is
    // compiled with the cached code, one cache file each.
    expect(first.loadedFiles).toEqual([join(alone, 'dist', 'bin.cjs')]);
    const directory = join(cacheHome, 'gantry', 'compile-cache');
    const cacheFiles = (await readdir(directory)).filter((name) => name.endsWith('.cache'));
    const namePattern = new RegExp(
      `^gantry-${process.version}-${process.arch}-(main|main-lazy-[\\w.-]+)-\\d+-\\d+-inspect-oci\\.cache$`,
    );
    for (const name of cacheFiles) expect(name).toMatch(namePattern);
    const mainCacheFiles = cacheFiles.filter((name) => namePattern.exec(name)?.[1] === 'main');
    expect(mainCacheFiles).toHaveLength(1);
    const cacheFile = join(directory, mainCacheFiles[0]!);
    expect((await stat(directory)).mode & 0o777).toBe(0o700);
    const written = await stat(cacheFile);
    expect(written.size).toBeGreaterThan(10_000);

    const second = runInstalled(alone, ['inspect', '--raw', reference], environment);
    expect(second.stderr).toBe('');
    expect(second.stdout).toBe(first.stdout);
    // Used as it was, not written again.
    expect((await stat(cacheFile)).mtimeMs).toBe(written.mtimeMs);

    await writeFile(cacheFile, 'not code V8 made');
    const afterDamage = runInstalled(alone, ['inspect', '--raw', reference], environment);
    expect(afterDamage.stderr).toBe('');
    expect(afterDamage.stdout).toBe(first.stdout);
    expect((await stat(cacheFile)).size).toBeGreaterThan(10_000);
  });
});

describe('parsed configuration files, kept in the compiled-code cache directory', () => {
  it('are written by a run that parses registries.conf and read back by the next, for the same text only', async () => {
    const cacheHome = join(root, 'cache-home-toml');
    const configuration = join(root, 'registries-cached.conf');
    await writeFile(configuration, `[[registry]]\nlocation = "${registry.host}"\ninsecure = true\n`);
    const environment = { XDG_CACHE_HOME: cacheHome, CONTAINERS_REGISTRIES_CONF: configuration };
    const args = ['inspect', '--raw', `docker://${registry.host}/bundle/image:v1`];
    const first = runInstalled(alone, args, environment);
    expect(first.stderr).toBe('');
    expect(first.stdout).toBe(Buffer.from(image.topLevel.bytes).toString('utf8'));
    const cacheFile = join(cacheHome, 'gantry', 'compile-cache', 'gantry-toml-v1.json');
    const stored = JSON.parse(await readFile(cacheFile, 'utf8')) as { entries: Array<{ text: string }> };
    expect(stored.entries.map((entry) => entry.text)).toContain(await readFile(configuration, 'utf8'));
    const written = await stat(cacheFile);

    const second = runInstalled(alone, args, environment);
    expect(second.stderr).toBe('');
    expect(second.stdout).toBe(first.stdout);
    expect((await stat(cacheFile)).mtimeMs).toBe(written.mtimeMs);

    // A changed file is parsed again (here: the registry is no longer insecure, so HTTPS is required).
    await writeFile(configuration, `[[registry]]\nlocation = "${registry.host}"\ninsecure = false\n`);
    const changed = runInstalled(alone, args, environment);
    expect(changed.status).not.toBe(0);
    expect(changed.stdout).toBe('');
  });
});

describe('the compiled-code cache directory', () => {
  it('is pruned by a run that writes a cache file: stale files, then the oldest beyond 256, others left alone', async () => {
    const cacheHome = join(root, 'cache-home-prune');
    const directory = join(cacheHome, 'gantry', 'compile-cache');
    await mkdir(directory, { recursive: true, mode: 0o700 });
    const day = 86_400_000;
    const stale = join(directory, 'gantry-v0.0.0-x64-main-1-1-inspect-oci.cache');
    const deadRunLeftover = join(directory, 'gantry-v0.0.0-x64-main-1-1-copy.cache.4242.tmp');
    const notOurs = join(directory, 'someone-else.bin');
    for (const file of [stale, deadRunLeftover, notOurs]) {
      await writeFile(file, 'x');
      await utimes(file, new Date(Date.now() - 40 * day), new Date(Date.now() - 40 * day));
    }
    // 300 files of older builds, one day apart in age: the 256 newest stay (with this run's files, which
    // are newer still, the oldest of them go too).
    for (let index = 0; index < 300; index++) {
      const file = join(directory, `gantry-v0.0.0-x64-main-${index}-1-other.cache`);
      await writeFile(file, 'x');
      const at = new Date(Date.now() - (index + 1) * 60_000);
      await utimes(file, at, at);
    }
    const run = runInstalled(alone, ['inspect', '--raw', `oci:${layout}:latest`], {
      XDG_CACHE_HOME: cacheHome,
    });
    expect(run.stderr).toBe('');
    const names = await readdir(directory);
    expect(names).not.toContain('gantry-v0.0.0-x64-main-1-1-inspect-oci.cache');
    expect(names).not.toContain('gantry-v0.0.0-x64-main-1-1-copy.cache.4242.tmp');
    expect(names).toContain('someone-else.bin');
    const cacheFiles = names.filter((name) => name.endsWith('.cache'));
    expect(cacheFiles).toHaveLength(256);
    // This run's own cache files are kept, and the newest of the older ones; the oldest went.
    expect(
      cacheFiles.some((name) => name.endsWith('-inspect-oci.cache') && !name.startsWith('gantry-v0.0.0')),
    ).toBe(true);
    expect(cacheFiles).toContain('gantry-v0.0.0-x64-main-0-1-other.cache');
    expect(cacheFiles).not.toContain('gantry-v0.0.0-x64-main-299-1-other.cache');

    // A run that only reads the cache prunes nothing.
    const extra = join(directory, 'gantry-v0.0.0-x64-main-1000-1-other.cache');
    await writeFile(extra, 'x');
    await utimes(extra, new Date(Date.now() - 40 * day), new Date(Date.now() - 40 * day));
    const again = runInstalled(alone, ['inspect', '--raw', `oci:${layout}:latest`], {
      XDG_CACHE_HOME: cacheHome,
    });
    expect(again.stderr).toBe('');
    expect(await readdir(directory)).toContain('gantry-v0.0.0-x64-main-1000-1-other.cache');
  });
});

describe('the compiled-code cache of a command that compiles WebAssembly', () => {
  it('is used by the next run: the V8 flags set for WebAssembly are set back before the code is stored', async () => {
    // inspect docker:// compiles undici's HTTP parser, which sets V8 flags (see bin.cts); code stored
    // under other flags than the next run starts with would be refused and written again by every run.
    const cacheHome = join(root, 'cache-home-wasm');
    const environment = { XDG_CACHE_HOME: cacheHome };
    const args = ['inspect', '--tls-verify=false', `docker://${registry.host}/bundle/image:v1`];
    const first = runInstalled(alone, args, environment);
    expect(first.stderr).toBe('');
    expect(JSON.parse(first.stdout).Digest).toBe(image.topLevel.digest);
    const directory = join(cacheHome, 'gantry', 'compile-cache');
    const cacheFiles = (await readdir(directory)).filter((name) => name.endsWith('.cache'));
    expect(cacheFiles.some((name) => name.includes('-main-lazy-undici-'))).toBe(true);
    const writtenAt = new Map<string, number>();
    for (const name of cacheFiles) writtenAt.set(name, (await stat(join(directory, name))).mtimeMs);

    const second = runInstalled(alone, args, environment);
    expect(second.stderr).toBe('');
    expect(second.stdout).toBe(first.stdout);
    // Each cache file used as it was, none written again.
    const afterSecond = (await readdir(directory)).filter((name) => name.endsWith('.cache'));
    expect(afterSecond.sort()).toEqual([...cacheFiles].sort());
    for (const name of afterSecond)
      expect({ name, mtimeMs: (await stat(join(directory, name))).mtimeMs }).toEqual({
        name,
        mtimeMs: writtenAt.get(name),
      });
  });
});

describe('the compiled-code cache of a copy (started with a V8 flag by bin/gantry)', () => {
  it('is used by the next run: the flags are those of a start without V8 flags when the code is stored', async () => {
    const cacheHome = join(root, 'cache-home-copy');
    const environment = { XDG_CACHE_HOME: cacheHome };
    const run = (destination: string) =>
      runInstalled(
        alone,
        [
          'copy',
          '--quiet',
          '--src-tls-verify=false',
          `docker://${registry.host}/bundle/image:v1`,
          `dir:${destination}`,
        ],
        environment,
      );
    const first = run(join(root, 'copy-cache-1'));
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    const directory = join(cacheHome, 'gantry', 'compile-cache');
    const cacheFiles = (await readdir(directory)).filter((name) => name.endsWith('.cache'));
    expect(cacheFiles.some((name) => name.includes('-main-lazy-undici-'))).toBe(true);
    const writtenAt = new Map<string, number>();
    for (const name of cacheFiles) writtenAt.set(name, (await stat(join(directory, name))).mtimeMs);

    const second = run(join(root, 'copy-cache-2'));
    expect(second.stderr).toBe('');
    expect(second.status).toBe(0);
    const afterSecond = (await readdir(directory)).filter((name) => name.endsWith('.cache'));
    expect(afterSecond.sort()).toEqual([...cacheFiles].sort());
    for (const name of afterSecond)
      expect({ name, mtimeMs: (await stat(join(directory, name))).mtimeMs }).toEqual({
        name,
        mtimeMs: writtenAt.get(name),
      });
  });
});

describe('a copy started with the heap flag (bin/gantry) and one started without', () => {
  it('share one compiled-code cache: bin.cjs sets the flag back before any code is compiled', async () => {
    // V8 accepts compiled code (ours, and the built-in modules' that Node ships) only under the flags it
    // was made with: the flag bin/gantry gives copy and sync is set back to V8's default at start, so a
    // copy run by Node without it finds the same flags and uses the same cache.
    const cacheHome = join(root, 'cache-home-heap-flag');
    const environment = { XDG_CACHE_HOME: cacheHome };
    const args = (destination: string) => [
      'copy',
      '--quiet',
      '--src-tls-verify=false',
      `docker://${registry.host}/bundle/image:v1`,
      `dir:${join(root, destination)}`,
    ];
    const launched = runInstalled(alone, args('heap-flag-1'), environment);
    expect(launched.stderr).toBe('');
    expect(launched.status).toBe(0);
    const directory = join(cacheHome, 'gantry', 'compile-cache');
    const cacheFiles = (await readdir(directory)).filter((name) => name.endsWith('.cache')).sort();
    expect(cacheFiles.some((name) => /-main-\d+-\d+-copy-docker-dir\.cache$/.test(name))).toBe(true);
    const writtenAt = async () =>
      Promise.all(
        cacheFiles.map(async (name) => ({ name, mtimeMs: (await stat(join(directory, name))).mtimeMs })),
      );
    const before = await writtenAt();

    // The same command, Node started without the flag (as bin/gantry starts every other command).
    const direct = spawnSync(process.execPath, [join(alone, 'dist', 'bin.cjs'), ...args('heap-flag-2')], {
      encoding: 'utf8',
      timeout: 120_000,
      cwd: root,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: join(root, 'home'), ...environment },
    });
    expect(direct.stderr).toBe('');
    expect(direct.status).toBe(0);
    expect((await readdir(directory)).filter((name) => name.endsWith('.cache')).sort()).toEqual(cacheFiles);
    expect(await writtenAt()).toEqual(before);

    const again = runInstalled(alone, args('heap-flag-3'), environment);
    expect(again.stderr).toBe('');
    expect(again.status).toBe(0);
    expect(await writtenAt()).toEqual(before);
  });
});

describe('the installed command with a third-party transport beside it', () => {
  it('finds, checks and uses it; its own @gantry/core shares the error brand, instanceof and the deferred certificates', async () => {
    const report = join(root, 'vault-report.jsonl');
    const caFile = join(root, 'extra-ca.pem');
    await writeFile(caFile, '');
    const environment = { GANTRY_VAULT_REPORT: report, NODE_EXTRA_CA_CERTS: caFile };

    const listed = runInstalled(withPlugin, ['transports'], environment);
    expect(listed.status).toBe(0);
    expect(listed.stderr).toBe('');
    expect(listed.stdout).toMatch(/^vault +gantry-transport-vault@3\.1\.4$/m);
    expect(listed.stdout.trim().split('\n')).toHaveLength(bundledTransportNames.length + 1);

    const vault = join(root, 'vault');
    const intoVault = runInstalled(
      withPlugin,
      ['--insecure-policy', 'copy', '-q', `oci:${layout}:latest`, `vault:${vault}`],
      environment,
    );
    expect(intoVault.stderr).toBe('');
    expect(intoVault.status).toBe(0);
    const back = join(root, 'from-vault');
    const outOfVault = runInstalled(
      withPlugin,
      ['--insecure-policy', 'copy', '-q', `vault:${vault}`, `oci:${back}:copy`],
      environment,
    );
    expect(outOfVault.stderr).toBe('');
    // skopeo reads the round trip: the same image, digest for digest.
    const inspected = runSkopeo(['inspect', '--raw', `oci:${back}:copy`]);
    expect(inspected.code).toBe(0);
    expect(inspected.stdout.equals(Buffer.from(image.topLevel.bytes))).toBe(true);

    // Its GantryError (its own copy's class) is recognised by the CLI: not found exits 2.
    const missing = runInstalled(withPlugin, ['inspect', `vault:${join(root, 'nothing-here')}`], environment);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('no image in vault');

    // The CLI's abort reason (made by the bundled core) is instanceof the plugin's GantryError.
    const slow = runInstalled(withPlugin, ['--command-timeout', '1s', 'inspect', 'vault:slow'], environment);
    expect(slow.status).toBe(1);
    expect(slow.stderr).toContain('context deadline exceeded');

    const entries = (await readFile(report, 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const loads = entries.filter((entry) => entry.event === 'loaded');
    expect(loads.length).toBeGreaterThan(0);
    for (const load of loads) {
      // A copy of core other than the bundle's: the installed package's own build.
      expect(fileURLToPath(String(load.coreModule))).toBe(join(workspaceCore, 'dist', 'index.js'));
      expect(load.deferredCaCerts).toBe(caFile);
    }
    expect(entries.find((entry) => entry.event === 'aborted')).toEqual({
      event: 'aborted',
      reasonIsGantryError: true,
      reasonBranded: true,
      reasonCode: 'ERR_GANTRY_ABORTED',
    });
    // Commands that name only bundled transports do not import it.
    const before = loads.length;
    const unrelated = runInstalled(
      withPlugin,
      ['--insecure-policy', 'copy', '-q', `oci:${layout}:latest`, `dir:${join(root, 'dir-2')}`],
      environment,
    );
    expect(unrelated.status).toBe(0);
    const after = (await readFile(report, 'utf8'))
      .trim()
      .split('\n')
      .filter((line) => line.includes('"loaded"'));
    expect(after).toHaveLength(before);
  }, 180_000);
});
