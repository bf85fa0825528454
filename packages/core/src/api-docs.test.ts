/**
 * The API reference: typedoc reads the TSDoc of `@gantry/core`'s entry points (and
 * `@gantry/plugin-loader`'s) as the repository's typedoc.json says and writes HTML to docs/api/ (not
 * committed; `pnpm docs:api` builds it too). An exported name without documentation, or a `{@link}`
 * that resolves to nothing, fails the build and this test.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const execFileAsync = promisify(execFile);
const repositoryRoot = path.resolve(import.meta.dirname, '../../..');
const typedoc = path.join(repositoryRoot, 'node_modules', 'typedoc', 'bin', 'typedoc');

async function runTypedoc(args: string[], cwd: string): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [typedoc, ...args], {
      cwd,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? 1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

describe('API reference', () => {
  it('builds docs/api/ from the TSDoc with no undocumented export and no broken link', async () => {
    const result = await runTypedoc(['--options', 'typedoc.json'], repositoryRoot);
    expect(result.output).not.toMatch(/\[warning\]|\[error\]/);
    expect(result.code).toBe(0);
    const index = await readFile(path.join(repositoryRoot, 'docs', 'api', 'index.html'), 'utf8');
    for (const entry of [
      '@gantry/core',
      '@gantry/core/transport',
      '@gantry/core/testing',
      '@gantry/plugin-loader',
    ]) {
      expect(index).toContain(entry);
    }
  }, 600_000);

  it('fails with these settings on an undocumented export and on a broken link', async () => {
    const project = await mkdtemp(path.join(os.tmpdir(), 'gantry-typedoc-probe-'));
    try {
      const settings = JSON.parse(
        await readFile(path.join(repositoryRoot, 'typedoc.json'), 'utf8'),
      ) as Record<string, unknown>;
      await writeFile(
        path.join(project, 'package.json'),
        JSON.stringify({ name: 'typedoc-probe', type: 'module' }),
      );
      await writeFile(
        path.join(project, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: { module: 'NodeNext', strict: true, noEmit: true },
          include: ['index.ts'],
        }),
      );
      await writeFile(
        path.join(project, 'index.ts'),
        'export const undocumentedValue = 1;\n/** Like {@link NoSuchThing}. */\nexport const brokenLink = 2;\n',
      );
      await writeFile(
        path.join(project, 'typedoc.json'),
        JSON.stringify({
          ...settings,
          name: 'probe',
          entryPoints: ['index.ts'],
          tsconfig: 'tsconfig.json',
          out: 'out',
          packagesRequiringDocumentation: ['typedoc-probe'],
        }),
      );
      const result = await runTypedoc(['--options', 'typedoc.json'], project);
      expect(result.code).not.toBe(0);
      expect(result.output).toMatch(/undocumentedValue .*does not have any documentation/);
      expect(result.output).toMatch(/Failed to resolve link to "NoSuchThing"/);
    } finally {
      await rm(project, { recursive: true, force: true });
    }
  }, 300_000);
});
