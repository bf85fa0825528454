#!/usr/bin/env node
// Reads the vitest JSON reports in the given directory and prints one line: "N passed, N failed".
// A test file that failed without running any test (e.g. an import error) counts as one failure.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const directory = process.argv[2];
let passed = 0;
let failed = 0;
let skipped = 0;
/** Each failed test, named with its file and the first line of its message: CI shows only the tail of the log. */
const failures = [];
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
      if (assertion.status !== 'failed') continue;
      failures.push(
        `${file.name} > ${assertion.fullName}: ${firstLine((assertion.failureMessages ?? []).join(' '))}`,
      );
    }
  }
}
for (const failure of failures) console.log(`FAILED ${failure}`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
