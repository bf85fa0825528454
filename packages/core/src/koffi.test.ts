import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { koffiNativeModulePath, koffiPackageDirectory, loadKoffi } from './koffi.js';

const require = createRequire(import.meta.url);

describe('loadKoffi', () => {
  const made: string[] = [];
  afterEach(() => {
    for (const directory of made.splice(0)) rmSync(directory, { recursive: true, force: true });
  });

  it('finds the koffi package the resolver finds, and its native module for this system', () => {
    const here = dirname(fileURLToPath(import.meta.url));
    const resolved = dirname(require.resolve('koffi'));
    expect(koffiPackageDirectory(here)).toBe(realpathSync(resolved));
    if (process.platform === 'linux') {
      // The native module the direct load takes is the one koffi's own entry loads (same real path).
      const native = koffiNativeModulePath(koffiPackageDirectory(here)!);
      const viaKoffi = require('koffi') as { version: string };
      expect((require(native) as { version: string }).version).toBe(viaKoffi.version);
      expect(Object.keys(require.cache)).toContain(realpathSync(native));
    }
  });

  it('looks in every directory above, through symbolic links, and answers undefined when there is none', () => {
    const root = realpathSync(mkdtempSync(join(tmpdir(), 'gantry-koffi-')));
    made.push(root);
    const store = join(root, 'store', 'koffi');
    mkdirSync(store, { recursive: true });
    writeFileSync(join(store, 'package.json'), '{"name":"koffi","version":"0.0.0"}');
    mkdirSync(join(root, 'app', 'node_modules'), { recursive: true });
    symlinkSync(store, join(root, 'app', 'node_modules', 'koffi'));
    mkdirSync(join(root, 'app', 'dist', 'deep'), { recursive: true });
    expect(koffiPackageDirectory(join(root, 'app', 'dist', 'deep'))).toBe(store);
    expect(koffiNativeModulePath(store)).toBe(
      join(
        root,
        'store',
        '@koromix',
        `koffi-${process.platform}-${process.arch}`,
        `${process.platform}_${process.arch}`,
        'koffi.node',
      ),
    );
    expect(koffiPackageDirectory(join(root, 'store'))).toBeUndefined();
  });

  it('loads koffi once, with the functions its entry exports', () => {
    const koffi = loadKoffi();
    expect(koffi).not.toBeNull();
    expect(loadKoffi()).toBe(koffi);
    const viaEntry = require('koffi') as typeof import('koffi');
    for (const name of ['load', 'view', 'address', 'errno'] as const) {
      expect(typeof koffi![name]).toBe('function');
      expect(koffi![name]).toBe(viaEntry[name]);
    }
    const strlen = koffi!.load('libc.so.6').func('size_t strlen(const char *text)');
    expect(Number(strlen('gantry'))).toBe(6);
  });
});
