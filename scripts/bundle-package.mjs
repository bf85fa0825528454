#!/usr/bin/env node
// Bundles a package's compiled JavaScript (dist/, written by tsc) into one file per entry point.
//
// Node.js loads an ES module graph file by file: resolving, reading and compiling ~90 small modules
// costs a command-line run ~40 ms before it does any work. Each package is bundled on its own, its
// dependencies (other @gantry packages included) staying external imports, so that library users and
// plugins share one copy of @gantry/core. Entry points: every `exports` target under dist/, and
// dist/bin.js when present. Entries of one package share code through chunks (dist/shared-*.js), never
// through copies.
//
// `--self-contained NAME` (the CLI: `--self-contained main`) also writes dist/NAME.cjs: one CommonJS
// file holding tsc's dist/NAME.js and everything it imports, dependencies included (other @gantry
// packages, undici, tar-stream); only Node's built-in modules stay outside, so a run resolves and reads
// that one file (and the lazily required ones below when a command uses them). CommonJS, because Node starts it without its ES module loader and `require` of a
// built-in module does not load the module's lazy parts as an ES import does. Inside it:
// - modules reached only through `import()` are evaluated when first imported, not at start-up;
// - `createRequire(import.meta.url)` requires of literal module names (dependencies loaded on first
//   use: OpenPGP.js, yaml, semver) are bundled into files of their own beside it,
//   dist/NAME-lazy-PACKAGE.cjs, each holding the build Node's `require` loads (OpenPGP.js: its minified
//   CommonJS build) with what it imports, and required from there at the call: a command that does not
//   use them neither reads nor compiles them (~0.8 MiB of the CLI's ~2.4 MiB). The package's own
//   dependencies (native bindings) stay run-time requires, installed beside the file;
// - a module `bundled-transports.js` of the package, if any, is replaced by the list of the package's
//   dependencies that are transport packages (`@gantry/transport-*`, `gantry-transport-*`,
//   `@scope/gantry-transport-*`; devDependencies included, as a self-contained package bundles them):
//   name, version, the transport names their package.json declares, and
//   a `load()` that imports them from inside the file. Adding a transport dependency adds it there;
// - the code is printed without comments and in ASCII only (other characters escaped): Node then
//   reads it into a one-byte string, which it decodes and V8 scans faster. Names and lines are kept,
//   so stack traces stay readable.
// dist/NAME.cjs.LICENSES.txt lists the third-party packages inside these files, with their licence texts.
//
// Run from a package directory after `tsc`: `node ../../scripts/bundle-package.mjs [--self-contained NAME]`.
// Declarations (.d.ts) stay as tsc wrote them; tsc's .js files and their
// maps are replaced by the bundles (tsc's .cjs files stay).
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { rolldown } from 'rolldown';
import { minify } from 'rolldown/utils';

const { values: options } = parseArgs({
  options: { 'self-contained': { type: 'string', multiple: true, default: [] } },
});
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

function requireBuilt(file) {
  if (!existsSync(file)) {
    console.error(`bundle-package: ${relative(packageDirectory, file)} is missing: run tsc first`);
    process.exit(1);
  }
  return file;
}

const selfContainedFiles = new Map(
  options['self-contained'].map((name) => [requireBuilt(join(distDirectory, `${name}.js`)), name]),
);
const entryFiles = new Set(
  exportTargets(manifest.exports).map((target) => resolve(packageDirectory, target)),
);
if (existsSync(join(distDirectory, 'bin.js'))) entryFiles.add(join(distDirectory, 'bin.js'));
for (const file of selfContainedFiles.keys()) entryFiles.delete(file);
if (entryFiles.size === 0 && selfContainedFiles.size === 0) {
  console.error(`bundle-package: ${manifest.name} has no entry point under dist/`);
  process.exit(1);
}
const input = {};
for (const file of entryFiles) input[relative(distDirectory, requireBuilt(file)).replace(/\.js$/, '')] = file;

const bundleDirectory = join(packageDirectory, 'dist.bundle');
rmSync(bundleDirectory, { recursive: true, force: true });

if (Object.keys(input).length > 0) {
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
}

const builtins = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));
const transportPackagePattern =
  /^(?:@gantry\/transport-[a-z0-9._-]+|gantry-transport-[a-z0-9._-]+|@[a-z0-9._-]+\/gantry-transport-[a-z0-9._-]+)$/;

/**
 * The package's dependencies that are transport packages, with what bundled-transports.ts describes.
 * devDependencies count too: a self-contained package (the CLI) bundles its transports, so it lists
 * them there and its published manifest does not make npm fetch them.
 */
function bundledTransportPackages() {
  const requireFromPackage = createRequire(join(packageDirectory, 'package.json'));
  return [
    ...new Set([...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.devDependencies ?? {})]),
  ]
    .filter((name) => transportPackagePattern.test(name))
    .sort()
    .map((name) => {
      const dependency = JSON.parse(readFileSync(requireFromPackage.resolve(`${name}/package.json`), 'utf8'));
      const declared = dependency.gantry?.transports;
      return {
        packageName: name,
        version: dependency.version,
        ...(Array.isArray(declared) && declared.every((item) => typeof item === 'string')
          ? { declaredTransports: declared }
          : {}),
      };
    });
}

/** The package's own (optional) dependencies: installed beside the bundle, so required from there at run time. */
const runtimeDependencies = new Set([
  ...Object.keys(manifest.dependencies ?? {}),
  ...Object.keys(manifest.optionalDependencies ?? {}),
]);

/**
 * The files of the lazily required packages of a self-contained bundle: the name the bundle requires
 * (`./NAME-lazy-PACKAGE.cjs`, beside it, see lazyFileScheme) → the module names required from that package (a package
 * may be required by several of its files: undici's pool, agent, API…) → the file Node's `require`
 * resolves for each from the module that requires it. Filled while the bundle is built
 * (bundleCreateRequireCalls), then each package is bundled into its file, which exports a function
 * of the module name that requires it (evaluated at that call, as before).
 */
const lazyFiles = new Map();
/** The prefix of those names, set for the self-contained bundle being built. */
let lazyPrefix;
/**
 * How the bundle names a lazy file while it is built: a bare name, which the bundler keeps as written
 * (a relative one it would rewrite relative to the output), replaced by `./FILE` in the written file.
 */
const lazyFileScheme = 'gantry-lazy-file:';
const lazyFilePattern = /^gantry-lazy-file:[\w.-]+-lazy-[\w.-]+\.cjs$/;

/** The package a module name belongs to: `undici/lib/x.js` → `undici`, `@noble/ciphers/y` → `@noble/ciphers`. */
function packageNameOf(moduleName) {
  return moduleName
    .split('/')
    .slice(0, moduleName.startsWith('@') ? 2 : 1)
    .join('/');
}

/**
 * `createRequire(import.meta.url)` gives a module its own `require`; calls of it with a literal module
 * name become calls of the file beside the bundle that holds that package (`./NAME-lazy-PACKAGE.cjs`,
 * see lazyFiles), evaluated at the call as before. Both that form and the direct form
 * `createRequire(import.meta.url)("name")` stand for the file Node's `require` resolves from that
 * module (the package's `require` export: e.g. OpenPGP.js's minified CommonJS build), so the lazy file
 * holds what the module loads outside the bundle; names that are dependencies of the bundled package
 * itself (native bindings: koffi, zstd-napi…), or files of such a dependency (`zstd-napi/binding`),
 * stay run-time requires.
 */
const bundleCreateRequireCalls = {
  name: 'bundle-create-require-calls',
  transform(code, id) {
    /** The call the bundle makes for a literal module name. */
    const requireOf = (name) => {
      // Already rewritten (a module may hold several `const require = createRequire(…)`).
      if (lazyFilePattern.test(name)) return `require(${JSON.stringify(name)})`;
      if (runtimeDependencies.has(packageNameOf(name)) || builtins.has(name))
        return `createRequire(import.meta.url)(${JSON.stringify(name)})`;
      const resolved = createRequire(id).resolve(name);
      const lazyName = `${lazyFileScheme}${lazyPrefix}-lazy-${packageNameOf(name)
        .replace(/^@/, '')
        .replace(/[^\w.-]+/g, '-')}.cjs`;
      if (!lazyFiles.has(lazyName)) lazyFiles.set(lazyName, new Map());
      const modules = lazyFiles.get(lazyName);
      if (modules.has(name) && modules.get(name) !== resolved)
        throw new Error(`bundle-package: ${name} resolves to both ${modules.get(name)} and ${resolved}`);
      modules.set(name, resolved);
      return `require(${JSON.stringify(lazyName)})(${JSON.stringify(name)})`;
    };
    let result = code;
    // Every `const x = createRequire(import.meta.url);` of the module (a bundled library holds one per
    // source file that had it, renamed x, x$1, …): its calls with a literal name are rewritten.
    for (const [, name] of result.matchAll(/\bconst ([\w$]+) = createRequire\(import\.meta\.url\);/g)) {
      const escaped = name.replace(/\$/g, '\\$');
      const callOfLiteral = new RegExp(`(?<![\\w$.])${escaped}\\((["'])([^"'\\n]+)\\1\\)`, 'g');
      result = result.replace(callOfLiteral, (_call, _quote, literal) => requireOf(literal));
    }
    // A module-level `const require = …` would shadow the `require` the bundler follows.
    result = result.replace(
      /\bconst require = createRequire\(import\.meta\.url\);/g,
      'const moduleRequire = createRequire(import.meta.url);',
    );
    result = result.replace(
      /\bcreateRequire\(import\.meta\.url\)\((["'])([^"'\n]+)\1\)/g,
      (_call, _quote, name) => requireOf(name),
    );
    return result === code ? null : { code: result };
  },
};

/** Replaces the package's own dist/bundled-transports.js by the generated list. */
const generateBundledTransports = {
  name: 'generate-bundled-transports',
  load(id) {
    if (id !== join(distDirectory, 'bundled-transports.js')) return null;
    const entries = bundledTransportPackages().map(
      (entry) =>
        `  { ...${JSON.stringify(entry)}, load: () => import(${JSON.stringify(entry.packageName)}) },`,
    );
    return `export const bundledTransportPackages = [\n${entries.join('\n')}\n];\n`;
  },
};

/** Directory of the installed package a bundled module file belongs to (its package.json), or undefined. */
function packageDirectoryOf(file) {
  const marker = `${'/'}node_modules${'/'}`;
  const index = file.lastIndexOf(marker);
  if (index < 0) return undefined;
  const rest = file.slice(index + marker.length).split('/');
  return file.slice(0, index + marker.length) + rest.slice(0, rest[0].startsWith('@') ? 2 : 1).join('/');
}

/** The licence notices of the third-party packages whose modules are in the bundle. */
function thirdPartyLicences(moduleIds) {
  const directories = [...new Set(moduleIds.map(packageDirectoryOf).filter(Boolean))].sort();
  return directories
    .map((directory) => {
      const dependency = JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8'));
      const licenceFile = readdirSync(directory).find((name) => /^(licen[cs]e|copying)(\.|$)/i.test(name));
      const text = licenceFile
        ? readFileSync(join(directory, licenceFile), 'utf8').trim()
        : '(no licence file)';
      return `${dependency.name}@${dependency.version} (${dependency.license ?? 'see text'})\n\n${text}\n`;
    })
    .join(`\n${'-'.repeat(72)}\n\n`);
}

/** Reprints a chunk without comments (legal ones kept); names, lines and indentation stay. */
const printWithoutComments = {
  name: 'print-without-comments',
  async renderChunk(code, chunk) {
    const printed = await minify(chunk.fileName, code, {
      compress: false,
      mangle: false,
      codegen: { removeWhitespace: false, legalComments: 'inline' },
    });
    if (printed.errors.length > 0) throw new Error(printed.errors.map((error) => error.message).join('\n'));
    return printed.code;
  },
};

/**
 * `code` in ASCII: `\uXXXX` means the same character in strings, identifiers, regular expressions,
 * comments and (cooked) templates; astral characters become surrogate pairs. Only raw template strings
 * would differ, so code using `String.raw` is refused.
 */
function escapeNonAscii(code) {
  if (!/[^\0-\x7f]/.test(code)) return code;
  if (/String\.raw/.test(code))
    throw new Error('bundle-package: String.raw in the bundle, escaping would change it');
  return code.replace(
    /[^\0-\x7f]/g,
    (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * Node built-in modules that cost start-up time to load (Node compiles them at their first `require`)
 * and that many commands never use. The bundler requires every built-in module a bundle imports at its
 * top, before any code runs: in a self-contained bundle, these are required at their first use instead
 * (child_process, worker_threads and stream/web alone cost a short command ~5 % of its CPU time).
 */
const lazyBuiltins = new Set([
  'child_process',
  'crypto',
  'dgram',
  'dns',
  'http',
  'http2',
  'https',
  'net',
  'perf_hooks',
  'readline',
  'stream/web',
  'timers/promises',
  'tls',
  'v8',
  'vm',
  'worker_threads',
  'zlib',
]);

/**
 * Rewrites the top-level `let node_x = require("node:x");` of the built-in modules in lazyBuiltins into
 * a stand-in that requires the module at its first property access (a Proxy, so that exports of a newer
 * Node, looked for before use, are seen), also where the bundle converts the module with `__toESM` for a
 * namespace import (node:zlib, imported so by the compression code and loaded by no command that moves
 * no compressed bytes). And `const x = require("node:assert");` of a module that only calls
 * `x(…)` becomes a check that requires node:assert when it fails (see below).
 */
function requireBuiltinsLazily(code) {
  let rewritten = 0;
  let result = code.replace(
    /^let (node_[\w$]+) = require\("node:([\w/]+)"\);(\n\1 = __toESM\(\1, 1\);)?$/gm,
    (line, variable, name, converted) => {
      if (!lazyBuiltins.has(name)) return line;
      // A namespace or default import (`import * as zlib`): the bundle converts the module with
      // `__toESM(x, 1)`, which copies its properties at once and adds `default` (the module itself).
      // The stand-in then answers `default` with the module.
      if (converted === undefined && code.includes(`${variable} = __toESM(`)) return line;
      rewritten += 1;
      return `let ${variable} = __lazyBuiltin("node:${name}"${converted ? ', true' : ''});`;
    },
  );
  // node:assert (with its AssertionError, diffing and colour support) costs a run that loads undici
  // ~3 % of its CPU time, for checks that hold: where a module only calls it (`assert(condition)`,
  // no `assert.method`), it is loaded at the first check that fails.
  let assertsRewritten = 0;
  result = result.replace(/^(\s*)const ([\w$]+) = require\("node:assert"\);$/gm, (line, indent, variable) => {
    const escaped = variable.replace(/\$/g, '\\$');
    if (new RegExp(`(?<![\\w$.])${escaped}\\s*\\.`).test(code)) return line;
    assertsRewritten += 1;
    return `${indent}const ${variable} = __lazyAssert;`;
  });
  if (rewritten === 0 && assertsRewritten === 0) return code;
  const helper =
    (rewritten === 0
      ? ''
      : 'var __lazyBuiltin = (name, withDefault) => {\n' +
        '\tlet loaded;\n' +
        '\tconst load = () => loaded ??= require(name);\n' +
        '\tconst target = () => withDefault ? { ...load(), default: load() } : load();\n' +
        '\treturn new Proxy({}, {\n' +
        '\t\tget: (_, key) => withDefault && key === "default" ? load() : load()[key],\n' +
        '\t\thas: (_, key) => key in target(),\n' +
        '\t\townKeys: () => Reflect.ownKeys(target()),\n' +
        '\t\tgetOwnPropertyDescriptor: (_, key) => {\n' +
        '\t\t\tconst descriptor = Reflect.getOwnPropertyDescriptor(target(), key);\n' +
        '\t\t\treturn descriptor && { ...descriptor, configurable: true };\n' +
        '\t\t}\n' +
        '\t});\n' +
        '};\n') +
    (assertsRewritten === 0
      ? ''
      : 'var __lazyAssert = function (value, ...rest) {\n' +
        '\tif (!value) require("node:assert")(value, ...rest);\n' +
        '};\n');
  // After a leading "use strict" if any; the helper's lines shift the code down.
  return result.startsWith('"use strict";\n')
    ? `"use strict";\n${helper}${result.slice('"use strict";\n'.length)}`
    : helper + result;
}

/**
 * CommonJS modules of bundled packages that a module requires at its top but needs only when it calls
 * them, and that are costly to evaluate: undici's HTTP/2 client (client-h2.js requires node:http2,
 * whose loading with the node:assert it requires costs a run that loads undici ~6 % of its CPU time;
 * Gantry's connections speak HTTP/1.1). `const x = require_m();` becomes a function that evaluates the
 * module at its first call, where every use of `x` in the requiring module is a call.
 */
const modulesEvaluatedOnFirstCall = new Set(['require_client_h2']);

function evaluateOnFirstCall(code) {
  return code.replace(
    /^(\s*)const ([\w$]+) = (require_[\w$]+)\(\);$/gm,
    (line, indent, variable, moduleFunction, offset) => {
      if (!modulesEvaluatedOnFirstCall.has(moduleFunction)) return line;
      // The requiring module: from the line to the next module of the file.
      const rest = code.slice(offset + line.length);
      const next = rest.search(/^var require_[\w$]+ = __commonJSMin\(/m);
      const body = next < 0 ? rest : rest.slice(0, next);
      const escaped = variable.replace(/\$/g, '\\$');
      const uses = body.match(new RegExp(`(?<![\\w$.])${escaped}(?![\\w$])`, 'g'))?.length ?? 0;
      const calls = body.match(new RegExp(`(?<![\\w$.])${escaped}\\(`, 'g'))?.length ?? 0;
      if (uses !== calls) return line;
      return `${indent}const ${variable} = (...args) => ${moduleFunction}()(...args);`;
    },
  );
}

/**
 * undici requires `node:http` in two modules, for two things a registry command never needs (Node
 * compiles node:http at its first `require`: ~3 ms of CPU per run, and nothing else of Gantry's
 * registry commands loads it):
 * - core/util.js: `IncomingMessage`, compared with a stream's constructor when streams are destroyed.
 *   The comparison becomes a call of a function that loads node:http only for a constructor named
 *   IncomingMessage (then node:http's class, or an impostor: the comparison is made as before);
 * - dispatcher/client.js: `http.maxHeaderSize`, the default of a client's `maxHeaderSize`, read when
 *   the module is evaluated. It is read when a client without `maxHeaderSize` is made instead (Gantry
 *   gives its clients one, see transport-docker's undici-dispatchers.ts), with the same result and
 *   the same error.
 * Each rewrite applies only where the module has exactly the expected form (every use of the name is
 * the one rewritten); otherwise the module keeps its `require`.
 */
function requireHttpLazilyInUndici(code) {
  const modules = code.split(/(?=^var require_[\w$]+ = __commonJSMin\()/m);
  return modules
    .map((module) => {
      let result = module;
      const incoming = /^(\s*)const \{ IncomingMessage \} = require\("node:http"\);$/m.exec(result);
      if (incoming) {
        const uses = result.match(/(?<![\w$.])IncomingMessage(?![\w$])/g).length - 1;
        const comparisons = /([\w$]+(?:\.[\w$]+|\([\w$]*\))*\.constructor) === IncomingMessage(?![\w$])/g;
        if (uses > 0 && (result.match(comparisons)?.length ?? 0) === uses) {
          result = result
            .replace(
              incoming[0],
              `${incoming[1]}const isIncomingMessage = (constructor) => typeof constructor === "function" && ` +
                'constructor.name === "IncomingMessage" && constructor === require("node:http").IncomingMessage;',
            )
            .replace(comparisons, 'isIncomingMessage($1)');
        }
      }
      const http = /^(\s*)const http = require\("node:http"\);$/m.exec(result);
      const defaultSize =
        /^(\s*)const getDefaultNodeMaxHeaderSize = (http && http\.maxHeaderSize && Number\.isInteger\(http\.maxHeaderSize\) && http\.maxHeaderSize > 0 \? \(\) => http\.maxHeaderSize : \(\) => \{\n[^\n]*\n\1\});$/m.exec(
          result,
        );
      if (http && defaultSize) {
        // No other use of the name in the module (a string holding the word counts too, to be safe).
        const rest = result.replace(http[0], '').replace(defaultSize[0], '');
        if (!/(?<![\w$.])http(?![\w$])/.test(rest)) {
          result = result
            .replace(
              http[0],
              `${http[1]}const http = { get maxHeaderSize() { return require("node:http").maxHeaderSize; } };`,
            )
            .replace(
              defaultSize[0],
              `${defaultSize[1]}const getDefaultNodeMaxHeaderSize = () => (${defaultSize[2]})();`,
            );
        }
      }
      return result;
    })
    .join('');
}

/** Bundles `file` and what it imports into one CommonJS file, `bundleDirectory/name.cjs`; returns its module ids. */
async function writeOneFile(file, name, plugins) {
  const bundle = await rolldown({
    input: { [name]: file },
    platform: 'node',
    external: (id) => id.startsWith('node:') || builtins.has(id) || lazyFilePattern.test(id),
    // The packages' built files, not their TypeScript sources.
    resolve: { conditionNames: ['import', 'node', 'default'] },
    plugins,
    logLevel: 'warn',
  });
  const { output } = await bundle.write({
    dir: bundleDirectory,
    format: 'cjs',
    entryFileNames: '[name].cjs',
    codeSplitting: false,
    plugins: [printWithoutComments],
  });
  await bundle.close();
  const bundleFile = join(bundleDirectory, `${name}.cjs`);
  const code = requireHttpLazilyInUndici(
    evaluateOnFirstCall(
      requireBuiltinsLazily(
        readFileSync(bundleFile, 'utf8').replaceAll(`require("${lazyFileScheme}`, 'require("./'),
      ),
    ),
  );
  writeFileSync(bundleFile, escapeNonAscii(code));
  return output.flatMap((chunk) => (chunk.type === 'chunk' ? chunk.moduleIds : []));
}

for (const [file, name] of selfContainedFiles) {
  lazyFiles.clear();
  lazyPrefix = name;
  const moduleIds = await writeOneFile(file, name, [bundleCreateRequireCalls, generateBundledTransports]);
  // Each lazily required package, in its file (a package it requires lazily in turn gets its own).
  for (let done = 0; done < lazyFiles.size; done += 1) {
    const [lazyName, modules] = [...lazyFiles][done];
    const entry = `\0${lazyName}`;
    const cases = [...modules].map(
      ([moduleName, resolved]) =>
        `    case ${JSON.stringify(moduleName)}: return require(${JSON.stringify(resolved)});`,
    );
    const lazyEntry = {
      name: 'lazy-entry',
      resolveId: (id) => (id === entry ? id : null),
      load: (id) =>
        id === entry
          ? `module.exports = function requireLazily(name) {\n  switch (name) {\n${cases.join('\n')}\n  }\n  throw new Error(\`\${name} is not in this file\`);\n};\n`
          : null,
    };
    moduleIds.push(
      ...(await writeOneFile(entry, lazyName.slice(lazyFileScheme.length, -'.cjs'.length), [
        lazyEntry,
        bundleCreateRequireCalls,
      ])),
    );
  }
  writeFileSync(join(bundleDirectory, `${name}.cjs.LICENSES.txt`), thirdPartyLicences(moduleIds));
}

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
