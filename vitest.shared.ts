import { basename, join } from 'node:path';
import type { ViteUserConfig } from 'vitest/config';

/**
 * The vitest settings every package shares. Tests run on TypeScript sources: the `@gantry/source`
 * export condition points workspace packages at `src/` so no build is needed first.
 * With GANTRY_TEST_REPORT_DIR set (CI), each package also writes a JSON report there.
 * With CI set, a failed test runs once more before it counts as failed: the end-to-end tests drive real
 * registries, daemons and podman on a shared machine. A test that passed only the second time keeps its
 * first failure in the JSON report, and `scripts/summarize-test-reports.mjs` lists it as flaky.
 */
export function sharedTestConfig(packageDirectory: string): ViteUserConfig {
  const reportDirectory = process.env.GANTRY_TEST_REPORT_DIR;
  const conditions = ['@gantry/source', 'node', 'import', 'module', 'default'];
  return {
    resolve: { conditions },
    ssr: { resolve: { conditions, externalConditions: ['@gantry/source'] } },
    test: {
      include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
      testTimeout: 120_000,
      hookTimeout: 300_000,
      pool: 'forks',
      retry: process.env.CI ? 1 : 0,
      reporters: reportDirectory
        ? ['default', ['json', { outputFile: join(reportDirectory, `${basename(packageDirectory)}.json`) }]]
        : ['default'],
    },
  };
}
