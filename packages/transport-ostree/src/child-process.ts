/**
 * A child process started with `posix_spawn` (native.ts `spawnProcess`) instead of Node.js's
 * `child_process.spawn`, which forks: after a fork every page of this process is copy-on-write, and
 * each one it writes again takes a page fault, a cost paid for every `ostree commit` started while a
 * copy's buffers are in use. The part of `ChildProcess` the layer stream uses: the output pipes, the
 * exit code or signal, `kill`, and the `exit` and `close` events.
 */

import { EventEmitter } from 'node:events';
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { makePipe, spawnProcess, waitForProcess } from './native.js';

export interface SpawnedProcessEvents {
  exit: [code: number | null, signal: NodeJS.Signals | null];
  close: [code: number | null, signal: NodeJS.Signals | null];
}

export class SpawnedProcess extends EventEmitter<SpawnedProcessEvents> {
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  /** Once collected, the process id may name another process: never signalled again. */
  private collected = false;

  private constructor(
    readonly pid: number,
    readonly stdout: Socket,
    readonly stderr: Socket,
  ) {
    super();
    let open = 2;
    const closed = () => {
      if (--open > 0) return;
      // Both pipes are closed: the process has ended (or is ending), so `waitpid` returns at once.
      waitForProcess(pid).then(
        ({ code, signal }) => {
          this.collected = true;
          this.exitCode = code;
          this.signalCode = signal;
          this.emit('exit', code, signal);
          this.emit('close', code, signal);
        },
        () => {
          this.collected = true;
          this.emit('exit', null, null);
          this.emit('close', null, null);
        },
      );
    };
    stdout.once('close', closed);
    stderr.once('close', closed);
  }

  /**
   * Starts `file` with `args`, standard input `/dev/null`, standard output and error read through pipes
   * (`stdout`, `stderr`), and `extra` (when given) as its descriptor 3; the caller keeps its own `extra`.
   * A failure to start throws (`code` `ENOENT` when `file` is not found).
   */
  static start(file: string, args: readonly string[], extra?: number): SpawnedProcess {
    const [outRead, outWrite] = makePipe();
    let errRead: number | undefined;
    let errWrite: number | undefined;
    try {
      [errRead, errWrite] = makePipe();
      const pid = spawnProcess(file, args, [outWrite, errWrite, ...(extra === undefined ? [] : [extra])]);
      const stdout = new Socket({ fd: outRead, readable: true, writable: false });
      const stderr = new Socket({ fd: errRead, readable: true, writable: false });
      return new SpawnedProcess(pid, stdout, stderr);
    } catch (error) {
      closeSync(outRead);
      if (errRead !== undefined) closeSync(errRead);
      throw error;
    } finally {
      closeSync(outWrite);
      if (errWrite !== undefined) closeSync(errWrite);
    }
  }

  /** Sends `signal` unless the process has been collected already. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.collected || this.exitCode !== null || this.signalCode !== null) return false;
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}
