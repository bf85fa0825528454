import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  currentTemporaryOwner,
  makeOwnedTemporaryDirectory,
  ownedTemporaryName,
  parseOwnedTemporaryName,
  removeAbandonedTemporaryFiles,
  type TemporaryOwner,
  temporaryOwnerState,
} from './temporary-files.js';

let top: string;
beforeEach(async () => {
  top = await mkdtemp(path.join(os.tmpdir(), 'gantry-temporary-files-'));
});
afterEach(() => rm(top, { recursive: true, force: true }));

/** A name as `owner` would have made it. */
function nameOf(owner: TemporaryOwner, label?: string): string {
  const base = `.gantry-tmp-${owner.host}${owner.boot}${owner.pidNamespace}.${owner.pid}.${owner.start}.0123456789abcdef`;
  return label ? `${base}.${label}` : base;
}

/** Starts a real process, reads its start time, kills it and waits until it is gone. */
async function deadOwner(): Promise<TemporaryOwner> {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('spawn', resolve));
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
  const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
  return { ...currentTemporaryOwner(), pid: child.pid!, start };
}

describe('owned temporary names', () => {
  it('carry this process as owner, and a label', () => {
    const name = ownedTemporaryName('image.tar');
    expect(name.startsWith('.gantry-tmp-')).toBe(true);
    const parsed = parseOwnedTemporaryName(name)!;
    expect(parsed.owner).toEqual(currentTemporaryOwner());
    expect(parsed.owner.pid).toBe(process.pid);
    expect(parsed.owner.start).toBeGreaterThan(0);
    expect(parsed.label).toBe('image.tar');
    expect(parseOwnedTemporaryName(ownedTemporaryName())!.label).toBeUndefined();
    expect(ownedTemporaryName('x')).not.toBe(ownedTemporaryName('x'));
    expect(parseOwnedTemporaryName('.gantry-upload-0123456789abcdef')).toBeUndefined();
    expect(() => ownedTemporaryName('a/b')).toThrow(/contains "\/"/);
  });

  it('tell a live owner, a dead one, a reused PID, another boot, another machine and another PID namespace apart', async () => {
    const self = currentTemporaryOwner();
    expect(temporaryOwnerState(self)).toBe('alive');
    expect(temporaryOwnerState({ ...self, pid: process.ppid, start: self.start })).toBe('gone'); // PID reused
    const dead = await deadOwner();
    expect(temporaryOwnerState(dead)).toBe('gone');
    expect(temporaryOwnerState({ ...self, boot: '00000000' })).toBe('gone');
    expect(temporaryOwnerState({ ...dead, host: '00000000' })).toBe('unknown');
    expect(temporaryOwnerState({ ...dead, pidNamespace: '00000000' })).toBe('unknown');
  });
});

describe('removeAbandonedTemporaryFiles', () => {
  it("removes only dead owners' files and directories (with the label when given)", async () => {
    const dead = await deadOwner();
    const names = {
      deadFile: nameOf(dead, 'upload'),
      deadDirectory: nameOf(dead, 'staging'),
      deadOtherLabel: nameOf(dead, 'other.tar'),
      live: ownedTemporaryName('upload'),
      foreignHost: nameOf({ ...dead, host: '00000000' }, 'upload'),
      legacy: '.gantry-upload-0123456789abcdef',
      unrelated: 'index.json',
    };
    for (const [kind, name] of Object.entries(names)) {
      if (kind === 'deadDirectory') {
        await mkdir(path.join(top, name));
        await writeFile(path.join(top, name, 'partial'), 'x');
      } else {
        await writeFile(path.join(top, name), 'x');
      }
    }
    expect((await removeAbandonedTemporaryFiles(top, { label: 'upload' })).sort()).toEqual([names.deadFile]);
    expect((await removeAbandonedTemporaryFiles(top)).sort()).toEqual(
      [names.deadDirectory, names.deadOtherLabel].sort(),
    );
    expect((await readdir(top)).sort()).toEqual(
      [names.live, names.foreignHost, names.legacy, names.unrelated].sort(),
    );
    expect(await removeAbandonedTemporaryFiles(path.join(top, 'missing'))).toEqual([]);
  });

  it('makes private spool directories, removing abandoned ones of the same label first', async () => {
    const dead = await deadOwner();
    await mkdir(path.join(top, nameOf(dead, 'spool')));
    const directory = await makeOwnedTemporaryDirectory('spool', top);
    expect(await readdir(top)).toEqual([path.basename(directory)]);
    expect(parseOwnedTemporaryName(path.basename(directory))!.label).toBe('spool');
  });
});
