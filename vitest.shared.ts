import { basename, join } from 'node:path';
import type { ViteUserConfig } from 'vitest/config';

/**
 * The vitest settings every package shares. Tests run on TypeScript sources: the `@gantry/source`
 * export condition points workspace packages at `src/` so no build is needed first.
 * With GANTRY_TEST_REPORT_DIR set (CI), each package also writes a JSON report there.
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
      reporters: reportDirectory
        ? ['default', ['json', { outputFile: join(reportDirectory, `${basename(packageDirectory)}.json`) }]]
        : ['default'],
    },
  };
}
