/**
 * `gantry completion bash|zsh|fish`: the scripts are loaded by the real shells, and bash and fish are
 * asked what they complete for command lines (bash through the completion function `complete -F`
 * registers, with COMP_WORDS/COMP_CWORD set as readline sets them; fish through `complete -C`).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commands, globalFlags } from './cli.js';
import { requireTool, runGantry } from './test-support/run.js';

let directory: string;
const scripts: Record<string, string> = {};

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gantry-completion-'));
  for (const shell of ['bash', 'zsh', 'fish']) {
    const result = await runGantry(['completion', shell]);
    expect(result.code, result.stderr).toBe(0);
    scripts[shell] = join(directory, `gantry.${shell}`);
    await writeFile(scripts[shell]!, result.stdout);
  }
  // A file for file-name completion.
  await writeFile(join(directory, 'policy-file.json'), '{}');
});

afterAll(async () => {
  if (directory) await rm(directory, { recursive: true, force: true });
});

/** What bash's completion of gantry offers for `words`, the cursor at the end of the last word. */
function bashCompletions(words: string[]): string[] {
  const script = [
    `source ${JSON.stringify(scripts.bash)}`,
    // The function `complete -F` registered for gantry, called as readline calls it.
    'function_name=$(complete -p gantry | sed -E "s/.* -F ([^ ]+) .*/\\1/")',
    `COMP_WORDS=(${words.map((word) => `'${word}'`).join(' ')})`,
    `COMP_CWORD=${words.length - 1}`,
    // biome-ignore lint/suspicious/noTemplateCurlyInString: bash parameter expansion, not a template.
    'COMP_LINE="${COMP_WORDS[*]}"',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: bash parameter expansion, not a template.
    'COMP_POINT=${#COMP_LINE}',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: bash parameter expansion, not a template.
    '"$function_name" gantry "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: bash parameter expansion, not a template.
    'printf "%s\\n" "${COMPREPLY[@]}"',
  ].join('\n');
  const result = spawnSync(requireTool('bash'), ['--norc', '--noprofile', '-c', script], {
    cwd: directory,
    encoding: 'utf8',
  });
  expect(result.status, result.stderr).toBe(0);
  expect(result.stderr).toBe('');
  return result.stdout.split('\n').filter((line) => line !== '');
}

/** What fish completes for `line` (`complete -C`), without the descriptions. */
function fishCompletions(line: string): string[] {
  const result = spawnSync(
    requireTool('fish'),
    ['--no-config', '-c', `source ${scripts.fish}; complete -C ${JSON.stringify(line)}`],
    { cwd: directory, encoding: 'utf8' },
  );
  expect(result.status, result.stderr).toBe(0);
  return result.stdout
    .split('\n')
    .filter((entry) => entry !== '')
    .map((entry) => entry.split('\t')[0]!);
}

const visibleCommandNames = commands.filter((command) => !command.hidden).map((command) => command.name);

describe('gantry completion bash', () => {
  it('completes command names', () => {
    expect(bashCompletions(['gantry', 'co'])).toEqual(['completion', 'copy']);
    expect(bashCompletions(['gantry', '']).sort()).toEqual([...visibleCommandNames, 'help'].sort());
  });

  it("completes a command's flags, including its prefixed registry flags, and the global flags", () => {
    expect(bashCompletions(['gantry', 'copy', '--src-cr'])).toEqual(['--src-creds']);
    expect(bashCompletions(['gantry', 'copy', '--dest-compress-f'])).toEqual(['--dest-compress-format']);
    expect(bashCompletions(['gantry', 'inspect', '--ra'])).toEqual(['--raw']);
    expect(bashCompletions(['gantry', 'inspect', '--insecure-p'])).toEqual(['--insecure-policy']);
    const copyFlags = bashCompletions(['gantry', 'copy', '-']);
    const copy = commands.find((command) => command.name === 'copy')!;
    for (const spec of copy.flags.filter((flag) => !flag.hidden))
      expect(copyFlags).toContain(`--${spec.name}`);
    for (const spec of globalFlags.filter((flag) => !flag.hidden))
      expect(copyFlags).toContain(`--${spec.name}`);
    // Hidden aliases are accepted but not offered.
    expect(copyFlags).not.toContain('--screds');
    // inspect has no copy flags.
    expect(bashCompletions(['gantry', 'inspect', '--src-'])).toEqual([]);
  });

  it('finds the command after global flags and their values, and completes file names for flag values', () => {
    expect(bashCompletions(['gantry', '--policy', 'policy-file.json', 'inspect', '--ra'])).toEqual(['--raw']);
    expect(bashCompletions(['gantry', '--policy', 'pol'])).toEqual(['policy-file.json']);
    expect(bashCompletions(['gantry', 'copy', '--authfile', 'pol'])).toEqual(['policy-file.json']);
    expect(bashCompletions(['gantry', '--debug', 'completion', ''])).toEqual(['bash', 'zsh', 'fish']);
    expect(bashCompletions(['gantry', 'help', 'ins'])).toEqual(['inspect']);
  });
});

describe('gantry completion fish', () => {
  it('completes commands, flags and fixed arguments', () => {
    expect(fishCompletions('gantry co')).toEqual(['completion', 'copy']);
    expect(fishCompletions('gantry copy --src-cr')).toEqual(['--src-creds']);
    expect(fishCompletions('gantry inspect --insecure-p')).toEqual(['--insecure-policy']);
    expect(fishCompletions('gantry completion ').sort()).toEqual(['bash', 'fish', 'zsh']);
  });
});

describe('gantry completion zsh', () => {
  it('is valid zsh and registers _gantry for gantry with compinit', () => {
    const zsh = requireTool('zsh');
    const syntax = spawnSync(zsh, ['-n', scripts.zsh!], { encoding: 'utf8' });
    expect(syntax.status, syntax.stderr).toBe(0);
    const loaded = spawnSync(
      zsh,
      [
        '-f',
        '-c',
        `autoload -U compinit; compinit -u -D; source ${scripts.zsh}; print -r -- $_comps[gantry]`,
      ],
      { encoding: 'utf8', cwd: directory },
    );
    expect(loaded.stderr).toBe('');
    expect(loaded.stdout.trim()).toBe('_gantry');
  });
});

describe('gantry completion errors', () => {
  it('refuses an unknown shell and a missing one', async () => {
    const unknown = await runGantry(['completion', 'tcsh']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('unsupported shell \\"tcsh\\": use bash, zsh or fish');
    const missing = await runGantry(['completion']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('Exactly one argument expected');
  });
});
