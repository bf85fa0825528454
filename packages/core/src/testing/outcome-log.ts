import { appendFileSync } from 'node:fs';

/**
 * One fault or hostile input that a reliability test tried, and what Gantry did about it. The
 * reliability table in `docs/reliability.md` is generated from these records
 * (`scripts/reliability-table.mjs`), so every row is backed by a test that ran.
 */
export interface TriedOutcome {
  /** The table the row belongs to. */
  readonly suite: 'faults' | 'hostile-input' | 'secrets';
  /** What was tried, e.g. "connection reset mid-download" or "layer with ../ path". */
  readonly case: string;
  /** The transport (or "cli", "registry") the case was tried against, e.g. "docker", "oci". */
  readonly transport: string;
  /** What was observed, in a few words, e.g. "resumed with Range; digests match". */
  readonly outcome: string;
  /** Whether the observed outcome is the one Gantry promises (the test asserts it). */
  readonly ok: boolean;
  /** The test file that proves it, relative to the repository root. */
  readonly testFile: string;
}

/** The environment variable naming the JSON-lines file outcomes are appended to. */
export const outcomeLogEnvironmentVariable = 'GANTRY_OUTCOME_LOG';

/**
 * Appends `outcome` to the file named by `$GANTRY_OUTCOME_LOG` (one JSON object per line). Does
 * nothing when the variable is unset, so tests run the same without it. Call it after the test's
 * assertions passed, with `ok: true`, or record `ok: false` just before failing.
 */
export function recordOutcome(outcome: TriedOutcome): void {
  const logFile = process.env[outcomeLogEnvironmentVariable];
  if (logFile === undefined || logFile === '') return;
  appendFileSync(logFile, `${JSON.stringify(outcome)}\n`);
}
