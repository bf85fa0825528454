#!/usr/bin/env node
// Reads the vitest JSON reports in the given directory and prints one line: "N passed, N failed".
// A test file that failed without running any test (e.g. an import error) counts as one failure. With
// `--exit-status N` (the test command's exit status), a run that failed with no failed test in the
// reports (vitest reports unhandled errors in its exit status, not in its JSON report) counts as one.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const directory = process.argv[2];
const statusFlag = process.argv.indexOf('--exit-status');
const exitStatus = statusFlag > 0 ? Number(process.argv[statusFlag + 1]) : 0;
let passed = 0;
let failed = 0;
let skipped = 0;
/** Each failed test, named with its file and the first line of its message: CI shows only the tail of the log. */
const failures = [];
/** Tests that failed once and passed when run again (CI runs each failed test a second time). */
const flaky = [];
const firstLine = (text) =>
  String(text ?? '')
    .trim()
    .split('\n')[0]
    .slice(0, 400);
for (const name of readdirSync(directory).sort()) {
  if (!name.endsWith('.json')) continue;
  const report = JSON.parse(readFileSync(join(directory, name), 'utf8'));
  passed += report.numPassedTests ?? 0;
  failed += report.numFailedTests ?? 0;
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  for (const file of report.testResults ?? []) {
    if (file.status === 'failed' && (file.assertionResults ?? []).length === 0) {
      failed += 1;
      failures.push(`${file.name}: ${firstLine(file.message)}`);
    }
    for (const assertion of file.assertionResults ?? []) {
      if (assertion.status === 'passed' && (assertion.failureMessages ?? []).length > 0) {
        flaky.push(`${file.name} > ${assertion.fullName}: ${firstLine(assertion.failureMessages.join(' '))}`);
      }
      if (assertion.status !== 'failed') continue;
      failures.push(
        `${file.name} > ${assertion.fullName}: ${firstLine((assertion.failureMessages ?? []).join(' '))}`,
      );
    }
  }
}
if (exitStatus !== 0 && failed === 0) {
  failed += 1;
  failures.push(
    `the test command exited with status ${exitStatus} though no test failed (an unhandled error, or a task before the tests: see the log)`,
  );
}
for (const test of flaky) console.log(`FLAKY (passed when run again) ${test}`);
for (const failure of failures) console.log(`FAILED ${failure}`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
