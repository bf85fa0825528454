/**
 * Runs the installed `gantry` command (bin/gantry → dist/bin.cjs) on a real pseudo-terminal, through
 * python3's pty module (pty-bridge.py): stdin, stdout and stderr are the terminal, of the size asked.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireTool } from './run.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The launcher users run. */
export const gantryLauncher = resolve(here, '../../bin/gantry');
const bridge = join(here, 'pty-bridge.py');

/** Fails (never skips) when the built command is missing. */
export function requireBuiltGantry(): string {
  const entry = resolve(here, '../../dist/bin.cjs');
  if (!existsSync(entry))
    throw new Error(`${entry} is missing: run \`pnpm build\` (turbo builds it before @gantry/cli's tests)`);
  return gantryLauncher;
}

export interface TerminalStep {
  /** Waits until the terminal output (since the previous step's match) contains this text … */
  waitFor: string;
  /** … then types this. */
  send: string;
}

export interface TerminalRun {
  /** Everything the terminal showed: the program's output and the terminal's echo of the keys. */
  output: string;
  exitCode: number | undefined;
  signal: number | undefined;
}

/**
 * Runs `gantry ARGS` (or `program ARGS`) on a `columns`×`rows` terminal, typing each step's keys once
 * its text appeared.
 */
export function runInTerminal(options: {
  program?: string;
  args: string[];
  columns: number;
  rows?: number;
  env?: Record<string, string | undefined>;
  steps?: TerminalStep[];
  timeoutMs?: number;
}): Promise<TerminalRun> {
  const python = requireTool('python3');
  const program = options.program ?? requireBuiltGantry();
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries({ ...process.env, TERM: 'xterm', ...options.env })) {
    if (value !== undefined) env[name] = value;
  }
  delete env.COLUMNS;
  const child = spawn(
    python,
    [bridge, String(options.columns), String(options.rows ?? 24), program, ...options.args],
    { env, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const steps = [...(options.steps ?? [])];
  let output = '';
  let searchFrom = 0;
  let status = '';
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${program} on a terminal did not finish; output so far:\n${output}`));
    }, options.timeoutMs ?? 60_000);
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      while (steps.length > 0) {
        const found = output.indexOf(steps[0]!.waitFor, searchFrom);
        if (found === -1) break;
        searchFrom = found + steps[0]!.waitFor.length;
        child.stdin.write(steps.shift()!.send);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => {
      status += chunk.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      const exit = /^exit (\d+)$/m.exec(status);
      const signal = /^signal (\d+)$/m.exec(status);
      if (!exit && !signal) {
        reject(new Error(`the terminal bridge failed: ${status}`));
        return;
      }
      resolvePromise({
        output,
        exitCode: exit ? Number(exit[1]) : undefined,
        signal: signal ? Number(signal[1]) : undefined,
      });
    });
  });
}

/** The text a terminal shows for `output`: colour and cursor-movement escapes removed. */
export function withoutEscapes(output: string): string {
  return output.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
}
