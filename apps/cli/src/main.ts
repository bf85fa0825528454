/**
 * The `gantry` program: runs the command line in this process (bin/gantry → dist/bin.cjs → this module,
 * which the build makes one CommonJS file, dist/main.cjs, holding the CLI and all its dependencies).
 */
import { ErrorCodes, GantryError } from '@gantry/core';
import { runCli } from './cli.js';
import { adoptDeferredExtraCaCerts } from './deferred-ca-certs.js';

// The launcher (bin/gantry) kept NODE_EXTRA_CA_CERTS from Node's start-up: TLS code adds those
// certificates on first use, and programs gantry runs (credential helpers) get the variable back.
adoptDeferredExtraCaCerts(process.env);

// Ctrl-C / SIGTERM abort the command so a copy in progress discards what it wrote; a second signal exits at once.
const controller = new AbortController();
for (const signalName of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signalName, () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort(new GantryError(ErrorCodes.Aborted, `interrupted by ${signalName}`));
  });
}

// A reader that goes away (`gantry inspect … | head -1`) ends gantry quietly, as SIGPIPE ends skopeo.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(141);
    throw error;
  });
}

// No top-level await: the command's bundle is a CommonJS file (see bin.cts). Should Node run out of
// work before the command settles (nothing left to wait for), it must not exit as a success.
let settled = false;
process.on('exit', () => {
  if (settled) return;
  process.stderr.write('gantry: the command stopped before it finished (nothing left to wait for)\n');
  process.exitCode = 1;
});
void runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
  isTTY: process.stderr.isTTY === true,
  ...(process.stderr.columns ? { columns: process.stderr.columns } : {}),
  signal: controller.signal,
}).then((exitCode) => {
  settled = true;
  process.exitCode = exitCode;
});
