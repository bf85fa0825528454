#!/usr/bin/env node
/**
 * The `gantry` command's entry point (bin/gantry runs it with Node). It turns on Node's on-disk cache of
 * compiled code, then loads the command: dist/main.cjs, one CommonJS file holding the CLI and every
 * dependency it needs (built from main.ts by `scripts/bundle-package.mjs --self-contained`). The cache
 * must be on before that file is compiled, hence this separate small file.
 *
 * CommonJS, not an ES module: Node starts a CommonJS entry without its ES module loader, and
 * `require('node:…')` does not enumerate a built-in module's exports as an ES import does (which
 * loads their lazy parts, such as fs streams); ~20 ms per run on a small machine.
 *
 * `module.enableCompileCache` exists from Node 22.1: V8 then stores the code it compiled for
 * main.cjs in a directory (`$NODE_COMPILE_CACHE`, else `<os temp dir>/node-compile-cache`) and later
 * runs reuse it instead of parsing and compiling the bundle again. Node 20 lacks it and compiles as
 * before; `NODE_DISABLE_COMPILE_CACHE=1` turns it off; a cache that cannot be written is skipped by Node.
 */
const nodeModule: { enableCompileCache?: () => unknown } = require('node:module');

nodeModule.enableCompileCache?.();
require('./main.cjs');
