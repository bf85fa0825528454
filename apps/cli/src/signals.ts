/**
 * Signals that were ignored when gantry started. Node.js resets every signal's disposition to the
 * default when it starts, so the launcher (bin/gantry) reads the ignored set from /proc before it runs
 * Node and hands it over in `GANTRY_IGNORED_SIGNALS` (comma-separated names); it is taken out of the
 * environment here so programs gantry runs do not inherit it.
 */
export function ignoredSignalsAtStart(environment: NodeJS.ProcessEnv): ReadonlySet<string> {
  const value = environment.GANTRY_IGNORED_SIGNALS;
  delete environment.GANTRY_IGNORED_SIGNALS;
  return new Set(
    (value ?? '')
      .split(',')
      .map((name) => name.trim())
      .filter((name) => /^SIG[A-Z]+$/.test(name)),
  );
}
