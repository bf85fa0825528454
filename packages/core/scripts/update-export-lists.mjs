// Rewrites api/<entry>.exports.txt from the entry points' exports (run after a deliberate API change;
// src/public-api.test.ts fails while a list and its entry point differ).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const packageDirectory = path.dirname(import.meta.dirname);
const entryPoints = [
  ['@gantry/core', 'src/index.ts', 'api/index.exports.txt'],
  ['@gantry/core/transport', 'src/transport/index.ts', 'api/transport.exports.txt'],
  ['@gantry/core/testing', 'src/testing/index.ts', 'api/testing.exports.txt'],
];

/** The names `source` exports, `type X` for type-only ones, sorted by name. */
export function exportedNames(source) {
  const program = ts.createProgram([source], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  });
  const checker = program.getTypeChecker();
  const file = program.getSourceFile(source);
  const moduleSymbol = file && checker.getSymbolAtLocation(file);
  if (!moduleSymbol) throw new Error(`${source} is not a module`);
  const bare = (name) => name.replace(/^type /, '');
  return checker
    .getExportsOfModule(moduleSymbol)
    .map((symbol) => {
      const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
      return target.flags & ts.SymbolFlags.Value ? symbol.name : `type ${symbol.name}`;
    })
    .sort((a, b) => (bare(a) < bare(b) ? -1 : bare(a) > bare(b) ? 1 : 0));
}

if (process.argv[1] === import.meta.filename) {
  for (const [specifier, source, list] of entryPoints) {
    const names = exportedNames(path.join(packageDirectory, source));
    writeFileSync(
      path.join(packageDirectory, list),
      `# ${specifier}: every exported name ("type " marks type-only ones); src/public-api.test.ts checks it.\n${names.join('\n')}\n`,
    );
  }
}
