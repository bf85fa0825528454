/**
 * The parsers this package loads on first use (most programs read no configuration file of a kind).
 * One `require` for the package, declared as `const … = createRequire(import.meta.url)`, called with
 * literal names only: the CLI's bundler (scripts/bundle-package.mjs) turns those calls into bundled
 * requires, so the `gantry` bundle holds the parsers and still evaluates them only when called.
 */
import { createRequire } from 'node:module';

const requireFromHere = createRequire(import.meta.url);

type SmolToml = typeof import('smol-toml');
type YamlLibrary = typeof import('yaml');

let smolToml: SmolToml | undefined;
let yamlLibrary: YamlLibrary | undefined;

/** smol-toml, loaded on the first call. */
export function smolTomlModule(): SmolToml {
  smolToml ??= requireFromHere('smol-toml') as SmolToml;
  return smolToml;
}

/** The `yaml` package, loaded on the first call. */
export function yamlModule(): YamlLibrary {
  yamlLibrary ??= requireFromHere('yaml') as YamlLibrary;
  return yamlLibrary;
}
