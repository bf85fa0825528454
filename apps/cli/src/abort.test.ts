import { describe, expect, it } from 'vitest';
import { runGantry } from './test-support/run.js';

describe('io.signal', () => {
  it('an aborted signal stops the command with exit code 1 and the reason', async () => {
    const controller = new AbortController();
    controller.abort(new Error('interrupted by SIGINT'));
    const result = await runGantry(
      ['--insecure-policy', 'copy', 'oci:/nonexistent-gantry:a', 'oci:/nonexistent-gantry-2:b'],
      {
        signal: controller.signal,
      },
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('interrupted by SIGINT');
  });
});
