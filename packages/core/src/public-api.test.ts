/**
 * The public API is what `api/<entry>.exports.txt` lists: one line per exported name, `type ` before
 * the names that exist only as types. A name exported by an entry point and missing from its list (or
 * listed and not exported) fails here, so every change to the API is a reviewed change to a list.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const packageDirectory = path.dirname(import.meta.dirname);

/** Each entry point of package.json `exports` and its list. */
const entryPoints = [
  { specifier: '@gantry/core', source: 'src/index.ts', list: 'api/index.exports.txt' },
  {
    specifier: '@gantry/core/transport',
    source: 'src/transport/index.ts',
    list: 'api/transport.exports.txt',
  },
  { specifier: '@gantry/core/testing', source: 'src/testing/index.ts', list: 'api/testing.exports.txt' },
];

/** The names an entry point exports, `type X` for type-only ones, sorted. */
function exportedNames(sourceFile: string): string[] {
  const program = ts.createProgram([sourceFile], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  });
  const checker = program.getTypeChecker();
  const file = program.getSourceFile(sourceFile);
  if (!file) throw new Error(`cannot read ${sourceFile}`);
  const moduleSymbol = checker.getSymbolAtLocation(file);
  if (!moduleSymbol) throw new Error(`${sourceFile} is not a module`);
  return checker
    .getExportsOfModule(moduleSymbol)
    .map((symbol) => {
      const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
      return target.flags & ts.SymbolFlags.Value ? symbol.name : `type ${symbol.name}`;
    })
    .sort((a, b) => (a.replace(/^type /, '') < b.replace(/^type /, '') ? -1 : 1));
}

function listedNames(list: string): string[] {
  return readFileSync(path.join(packageDirectory, list), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

describe('public API', () => {
  it('package.json exports exactly the documented entry points', () => {
    const manifest = JSON.parse(readFileSync(path.join(packageDirectory, 'package.json'), 'utf8')) as {
      exports: Record<string, unknown>;
    };
    expect(Object.keys(manifest.exports).sort()).toEqual(['.', './package.json', './testing', './transport']);
  });

  for (const entry of entryPoints) {
    it(`${entry.specifier} exports exactly the names in ${entry.list}`, () => {
      const exported = exportedNames(path.join(packageDirectory, entry.source));
      const listed = listedNames(entry.list);
      expect(
        {
          unlisted: exported.filter((name) => !listed.includes(name)),
          missing: listed.filter((name) => !exported.includes(name)),
        },
        `update ${entry.list} (and the entry point's documentation) when the API changes on purpose`,
      ).toEqual({ unlisted: [], missing: [] });
    });
  }

  it('the run-time exports are the listed values', async () => {
    const root = await import('./index.js');
    const transport = await import('./transport/index.js');
    const values = (list: string) => listedNames(list).filter((name) => !name.startsWith('type '));
    expect(Object.keys(root).sort()).toEqual(values('api/index.exports.txt').sort());
    expect(Object.keys(transport).sort()).toEqual(values('api/transport.exports.txt').sort());
  });
});
