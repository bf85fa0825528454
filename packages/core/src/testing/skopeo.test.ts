import { describe, expect, it } from 'vitest';
import { runSkopeo } from './skopeo.js';

describe('runSkopeo', () => {
  it('returns what skopeo prints', async () => {
    expect((await runSkopeo(['--version'])).toString('utf8')).toMatch(/^skopeo version \d+\.\d+/);
  });

  it('names the command line and skopeo’s message when skopeo fails', async () => {
    await expect(runSkopeo(['inspect', 'no-such-transport:x'])).rejects.toThrow(
      /skopeo inspect no-such-transport:x failed: .*no-such-transport/,
    );
  });
});
