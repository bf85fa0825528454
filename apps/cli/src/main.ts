/**
 * The `gantry` program: runs the command line in this process (bin/gantry → dist/bin.cjs → this module,
 * which the build makes one CommonJS file, dist/main.cjs, holding the CLI and all its dependencies).
 */
import { constants as osConstants } from 'node:os';
import { ErrorCodes, GantryError } from '@gantry/core';
import { runCli } from './cli.js';
import { adoptDeferredExtraCaCerts } from './deferred-ca-certs.js';
import { ignoredSignalsAtStart } from './signals.js';
import { needsUserNamespace, runInUserNamespace } from './userns.js';

// Rootless containers-storage: run the command again as root of a user namespace (see userns.ts), and
// end with its exit code; otherwise run it here.
if (needsUserNamespace(process.argv.slice(2), process.env)) {
  void runInUserNamespace(process.argv.slice(2), process.env).then((exitCode) => process.exit(exitCode));
} else {
  runHere();
}

function runHere(): void {
  // The launcher (bin/gantry) kept NODE_EXTRA_CA_CERTS from Node's start-up: TLS code adds those
  // certificates on first use, and programs gantry runs (credential helpers) get the variable back.
  adoptDeferredExtraCaCerts(process.env);

  // Ctrl-C, SIGTERM and SIGHUP abort the command so a copy in progress discards what it wrote; then the
  // process ends by the same signal, as skopeo does (a shell sees 130, 143, 129 and stops its script). A
  // second signal ends it at once. Signals ignored when gantry started stay ignored (a background job of
  // a non-interactive shell ignores SIGINT, `nohup` ignores SIGHUP): Node resets every disposition at
  // start-up, so the launcher reads them first (see ignoredSignalsAtStart).
  const controller = new AbortController();
  let endingSignal: NodeJS.Signals | undefined;
  const endBySignal = (signalName: NodeJS.Signals): never => {
    process.removeAllListeners(signalName);
    process.kill(process.pid, signalName);
    // The default action ends the process as the signal is delivered; this is not reached.
    process.exit(128 + (osConstants.signals[signalName] ?? 0));
  };
  const ignored = ignoredSignalsAtStart(process.env);
  for (const signalName of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) {
    if (ignored.has(signalName)) {
      process.on(signalName, () => {});
      continue;
    }
    if (signalName === 'SIGQUIT') continue;
    process.on(signalName, () => {
      if (endingSignal !== undefined) endBySignal(signalName);
      endingSignal = signalName;
      controller.abort(new GantryError(ErrorCodes.Aborted, `interrupted by ${signalName}`));
    });
  }

  // A reader that goes away (`gantry inspect … | head -1`) ends gantry quietly, as SIGPIPE ends skopeo.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') {
        // Node ignores SIGPIPE; a listener added and removed restores the default action, which ends us.
        process.on('SIGPIPE', () => {});
        endBySignal('SIGPIPE');
      }
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
    // process.stdin is created on first use: only commands that read it (login) pay for it.
    get stdin() {
      return process.stdin;
    },
    env: process.env,
    cwd: process.cwd(),
    isTTY: process.stderr.isTTY === true,
    ...(process.stderr.columns ? { columns: process.stderr.columns } : {}),
    signal: controller.signal,
  }).then((exitCode) => {
    settled = true;
    if (endingSignal !== undefined) endBySignal(endingSignal);
    process.exitCode = exitCode;
    // Once nothing is left to do (output written, connections and files closed, clean-ups finished:
    // Node is about to exit), end by process.exit: Node then skips freeing its environment and V8's heap
    // piece by piece (about a hundred munmap calls and the walks before them), work the kernel does at
    // once when the process ends. 'exit' listeners (the compiled-code cache) run either way.
    process.once('beforeExit', () => process.exit());
  });
}
