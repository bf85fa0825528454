import { expect } from 'vitest';
import type { CliRun } from '../../test-support/run.js';

/** What a JavaScript bug looks like on stderr: an engine error or a stack frame. */
const internalFailure =
  /TypeError|RangeError|ReferenceError|SyntaxError|Cannot read propert|is not a function|undefined is not|\n\s+at \S/;

/**
 * Asserts the run failed the way Gantry promises for bad input: exit 1 (or `code`), nothing on stdout,
 * exactly one fatal line and its message (unquoted) matches `message`, no stack trace or engine error even with `--debug`
 * (which prints the stack of any non-Gantry error). Returns the fatal message.
 */
export function expectCleanFailure(result: CliRun, message: RegExp, code = 1): string {
  const fatalLines = result.stderr.split('\n').filter((line) => line.includes('level=fatal'));
  expect(fatalLines, result.stderr).toHaveLength(1);
  expect(result.stderr).not.toMatch(internalFailure);
  const quoted =
    /msg="(.*)"$/.exec(fatalLines[0] ?? '')?.[1] ?? /msg=(.*)$/.exec(fatalLines[0] ?? '')?.[1] ?? '';
  const fatalMessage = quoted.replace(/\\(["\\])/g, '$1');
  expect(fatalMessage).toMatch(message);
  expect(result.code, result.stderr).toBe(code);
  expect(result.stdout.length).toBe(0);
  return fatalMessage;
}
