/**
 * The generated man pages: `man -l` renders each one without warnings, showing the command's flags as
 * the help lists them, and the build's dist/man holds exactly what the generator writes.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliVersion, commands, globalFlags } from './cli.js';
import { manPages } from './man-pages.js';
import { requireTool } from './test-support/run.js';

const cliDirectory = join(dirname(fileURLToPath(import.meta.url)), '..');
const transportNames =
  'containers-storage, dir, docker, docker-archive, docker-daemon, oci, oci-archive, ostree';
const pages = manPages({ commands, globalFlags, version: cliVersion(), transportNames });
let directory: string;

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gantry-man-'));
  for (const [name, text] of pages) await writeFile(join(directory, name), text);
});

afterAll(async () => {
  if (directory) await rm(directory, { recursive: true, force: true });
});

/** `man -l FILE` as plain text, with groff's warnings on. */
function renderManPage(file: string): { text: string; stderr: string } {
  const result = spawnSync(requireTool('man'), ['-l', file], {
    encoding: 'utf8',
    env: {
      ...process.env,
      MANPAGER: 'cat',
      PAGER: 'cat',
      MANWIDTH: '200',
      MANROFFOPT: '-ww',
      MAN_KEEP_FORMATTING: '',
    },
  });
  expect(result.status, result.stderr).toBe(0);
  // Overstrikes (bold, underline) out: plain text.
  return { text: result.stdout.replace(/.\x08/g, ''), stderr: result.stderr };
}

describe('man pages', () => {
  it('has gantry.1 and one page per command gantry --help lists', () => {
    const expected = [
      'gantry.1',
      ...commands.filter((command) => !command.hidden).map((command) => `gantry-${command.name}.1`),
    ];
    expect([...pages.keys()].sort()).toEqual(expected.sort());
  });

  it.each([...pages.keys()])('man -l renders %s without warnings', (name) => {
    requireTool('groff');
    const { text, stderr } = renderManPage(join(directory, name));
    expect(stderr).toBe('');
    expect(text).toContain('NAME');
    expect(text).toContain('SYNOPSIS');
    const command = commands.find((candidate) => `gantry-${candidate.name}.1` === name);
    const flags = command ? command.flags : globalFlags;
    for (const spec of flags.filter((flag) => !flag.hidden)) {
      expect(text, `${name} lists --${spec.name}`).toContain(`--${spec.name}`);
      if (spec.short) expect(text).toContain(`-${spec.short}, --${spec.name}`);
    }
    for (const spec of flags.filter((flag) => flag.hidden)) {
      expect(text, `${name} hides --${spec.name}`).not.toMatch(new RegExp(`--${spec.name}\\b(?!-)`));
    }
    if (command) expect(text).toContain(`gantry-${command.name} - ${command.short}`);
  });

  it('gantry-copy.1 shows the description with the transports and the flags with their value names', () => {
    const { text } = renderManPage(join(directory, 'gantry-copy.1'));
    expect(text).toContain(`Supported transports: ${transportNames}`);
    expect(text).toMatch(/--retry-times int\n\s+the number of times to possibly retry/);
    expect(text).toContain('-f, --format MANIFEST TYPE');
  });

  it('the build wrote the same pages to dist/man, which the package ships', () => {
    const built = join(cliDirectory, 'dist', 'man');
    expect(
      existsSync(built),
      'dist/man is missing: run `pnpm build` (turbo builds it before these tests)',
    ).toBe(true);
    expect(readdirSync(built).sort()).toEqual([...pages.keys()].sort());
    for (const [name, text] of pages) expect(readFileSync(join(built, name), 'utf8')).toBe(text);
    const manifest = JSON.parse(readFileSync(join(cliDirectory, 'package.json'), 'utf8')) as {
      files: string[];
    };
    expect(manifest.files).toContain('dist/man');
  });
});
