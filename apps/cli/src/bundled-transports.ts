/**
 * The transport packages built into the `gantry` command's bundle.
 *
 * Empty here: when the CLI runs from its sources (tests) or from its library build, transports are
 * found in node_modules. `scripts/bundle-package.mjs --self-contained` replaces this module in the
 * CLI's one-file bundle (dist/main.js) with the list of the CLI's dependencies that are transport
 * packages (`@gantry/transport-*`, `gantry-transport-*`, `@scope/gantry-transport-*`), each with the
 * transport names from its package.json and a `load()` that imports its code from inside the bundle,
 * so a command imports only the transports it names and reads no other file to do so.
 */

import type { BundledTransportPackage } from '@gantry/plugin-loader';

export type { BundledTransportPackage };

export const bundledTransportPackages: readonly BundledTransportPackage[] = [];
