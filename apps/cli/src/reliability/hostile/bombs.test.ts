/**
 * Decompression bombs: compressed data that expands far beyond any sane ratio, read by `gantry`.
 * - Archives: a `docker-archive:` or `oci-archive:` file compressed with gzip, xz or bzip2 (made by the
 *   real `gzip`, `xz` and `bzip2` commands) that also holds 48 MiB of zeros. Reading it decompresses it
 *   into a spool file; the expansion limit (`GANTRY_MAX_EXPANSION_RATIO`, `GANTRY_EXPANSION_ALLOWANCE_MIB`,
 *   here an 8 MiB allowance) stops it: exit 1 naming the limit, no stack trace, no spool file left. With
 *   the allowance raised to 128 MiB the same archive is read, so it is the limit that refused it.
 * - Layers: a gzip layer of 48 MiB of zeros (about 50 KiB) copied into a destination that takes
 *   uncompressed layers (`docker-archive:`, containers-storage): the pipeline's decompression stops at the
 *   limit; nothing is written.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  fixturePresets,
  recordOutcome,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { parseOwnedTemporaryName } from '@gantry/core/transport';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireTool, runGantry } from '../../test-support/run.js';
import { expectCleanFailure } from './expect-failure.js';

const testFile = 'apps/cli/src/reliability/hostile/bombs.test.ts';
const workDirectory = mkdtempSync(join(tmpdir(), 'gantry-bombs-'));
const zeroBytes = 48 * 1024 * 1024;
const compressors = [
  { command: 'gzip', suffix: 'gz' },
  { command: 'xz', suffix: 'xz' },
  { command: 'bzip2', suffix: 'bz2' },
] as const;
const archiveTransports = ['docker-archive', 'oci-archive'] as const;
/** transport → compression suffix → the compressed archive. */
const bombs = new Map<string, string>();
let bombLayout: string;

beforeAll(async () => {
  for (const tool of ['tar', 'gzip', 'xz', 'bzip2']) requireTool(tool);
  const small = await buildFixtureImage(fixturePresets.ociMinimal!, {
    directory: join(workDirectory, 'small-blobs'),
  });
  const smallLayout = join(workDirectory, 'small');
  await writeFixtureToOciLayout(small, smallLayout, 'latest');
  // 48 MiB of zeros (a sparse file; tar stores every zero).
  execFileSync('truncate', ['-s', String(zeroBytes), join(workDirectory, 'zeros')]);
  for (const transport of archiveTransports) {
    const archive = join(workDirectory, `${transport}.tar`);
    const destination =
      transport === 'docker-archive'
        ? `docker-archive:${archive}:bombs/small:latest`
        : `oci-archive:${archive}:small`;
    const written = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      `oci:${smallLayout}:latest`,
      destination,
    ]);
    expect(written.code, written.stderr).toBe(0);
    execFileSync('tar', ['--append', '-f', archive, '-C', workDirectory, 'zeros']);
    for (const { command, suffix } of compressors) {
      const compressed = `${archive}.${suffix}`;
      execFileSync('sh', ['-c', `${command} -c "$1" > "$2"`, 'sh', archive, compressed]);
      bombs.set(`${transport}.${suffix}`, compressed);
    }
  }
  // A gzip layer of 48 MiB of zeros.
  const bomb = await buildFixtureImage(
    {
      format: 'oci',
      layers: [
        {
          compression: 'gzip',
          entries: [{ type: 'file', path: 'zeros', content: new Uint8Array(zeroBytes) }],
        },
      ],
    },
    { directory: join(workDirectory, 'bomb-blobs') },
  );
  bombLayout = join(workDirectory, 'bomb-layer');
  await writeFixtureToOciLayout(bomb, bombLayout, 'latest');
}, 300_000);

const savedEnvironment = {
  ratio: process.env.GANTRY_MAX_EXPANSION_RATIO,
  allowance: process.env.GANTRY_EXPANSION_ALLOWANCE_MIB,
};
afterEach(() => {
  for (const [name, value] of [
    ['GANTRY_MAX_EXPANSION_RATIO', savedEnvironment.ratio],
    ['GANTRY_EXPANSION_ALLOWANCE_MIB', savedEnvironment.allowance],
  ] as const) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});
afterAll(() => {
  rmSync(workDirectory, { recursive: true, force: true });
});

/** Temporary files and directories of this process (`ownedTemporaryName`) directly in `directory`. */
function ownTemporaryEntries(directory: string): string[] {
  return readdirSync(directory).filter((name) => parseOwnedTemporaryName(name)?.owner.pid === process.pid);
}

function record(caseName: string, transport: string, outcome: string): void {
  recordOutcome({ suite: 'hostile-input', case: caseName, transport, outcome, ok: true, testFile });
}

describe('an archive that is a decompression bomb', () => {
  const cases = archiveTransports.flatMap((transport) =>
    compressors.map(({ suffix }) => [transport, suffix] as const),
  );
  it.each(cases)(
    '%s, .tar.%s: refused at the expansion limit, no spool file left; read when the limit is raised',
    async (transport, suffix) => {
      const archive = bombs.get(`${transport}.${suffix}`)!;
      const temporary = join(workDirectory, `tmp-${transport}-${suffix}`);
      mkdirSync(temporary);
      process.env.GANTRY_EXPANSION_ALLOWANCE_MIB = '8';
      const refused = await runGantry(['--tmpdir', temporary, 'inspect', `${transport}:${archive}`]);
      expectCleanFailure(
        refused,
        /archive .*: decompression bomb refused: \d+ compressed bytes expanded to at least \d+ bytes, over the limit of 100:1 past the first 8 MiB \(GANTRY_MAX_EXPANSION_RATIO, GANTRY_EXPANSION_ALLOWANCE_MIB\)/,
      );
      expect(readdirSync(temporary)).toEqual([]);
      expect(ownTemporaryEntries(tmpdir())).toEqual([]);

      process.env.GANTRY_EXPANSION_ALLOWANCE_MIB = '128';
      const read = await runGantry(['--tmpdir', temporary, 'inspect', `${transport}:${archive}`]);
      expect(read.code, read.stderr).toBe(0);
      expect(readdirSync(temporary)).toEqual([]);
      record(
        `archive compressed as .tar.${suffix} expanding over 100:1 (48 MiB of zeros)`,
        transport,
        'refused at the 8 MiB allowance: "decompression bomb refused …" naming the settings; no spool file left; read with a 128 MiB allowance',
      );
    },
    120_000,
  );
});

describe('a layer that is a decompression bomb', () => {
  it('docker-archive: (uncompressed layers): refused at the limit; no archive, no temporary file', async () => {
    const temporary = join(workDirectory, 'tmp-layer-docker-archive');
    mkdirSync(temporary);
    const archive = join(workDirectory, 'from-bomb-layer.tar');
    process.env.GANTRY_EXPANSION_ALLOWANCE_MIB = '8';
    const result = await runGantry([
      '--insecure-policy',
      '--tmpdir',
      temporary,
      'copy',
      `oci:${bombLayout}:latest`,
      `docker-archive:${archive}:bombs/layer:latest`,
    ]);
    expectCleanFailure(
      result,
      /blob sha256:[0-9a-f]{64}.*decompression bomb refused: .*over the limit of 100:1 past the first 8 MiB/,
    );
    expect(existsSync(archive)).toBe(false);
    expect(readdirSync(workDirectory).filter((name) => name.includes('from-bomb-layer'))).toEqual([]);
    expect(readdirSync(temporary)).toEqual([]);
    record(
      'gzip layer expanding over 100:1 (48 MiB of zeros in 50 KiB)',
      'docker-archive',
      'refused at the limit (8 MiB allowance): "decompression bomb refused …" naming the blob; no archive, no temporary file',
    );
  }, 120_000);

  it.each(['containers-storage', 'ostree'] as const)(
    '%s (extracts the layer): refused at the limit; no image, no layer, nothing left of the extraction',
    async (destination) => {
      const temporary = join(workDirectory, `tmp-layer-${destination}`);
      mkdirSync(temporary);
      const store = join(workDirectory, `store-${destination}`);
      mkdirSync(store);
      const reference =
        destination === 'containers-storage'
          ? `containers-storage:[vfs@${store}/graph+${store}/run]bombs/layer:latest`
          : `ostree:bombs/layer:latest@${store}/repo`;
      process.env.GANTRY_EXPANSION_ALLOWANCE_MIB = '8';
      const result = await runGantry([
        '--insecure-policy',
        '--tmpdir',
        temporary,
        'copy',
        `oci:${bombLayout}:latest`,
        reference,
      ]);
      expectCleanFailure(
        result,
        /decompression bomb refused: .*over the limit of 100:1 past the first 8 MiB/,
      );
      expect(readdirSync(temporary)).toEqual([]);
      if (destination === 'containers-storage') {
        const listed = await runGantry(['inspect', '--raw', reference]);
        expect(listed.code).toBe(2);
        // No layer directory (complete or not) of the bomb was kept.
        const layers = join(store, 'graph', 'vfs', 'dir');
        expect(existsSync(layers) ? readdirSync(layers) : []).toEqual([]);
      } else {
        const refs = execFileSync('ostree', ['refs', `--repo=${store}/repo`], { encoding: 'utf8' });
        expect(refs.trim()).toBe('');
        const repositoryTemporary = join(store, 'repo', 'tmp');
        const leftovers = (existsSync(repositoryTemporary) ? readdirSync(repositoryTemporary) : []).filter(
          (name) => name.startsWith('gantry') || parseOwnedTemporaryName(name),
        );
        expect(leftovers).toEqual([]);
      }
      record(
        'gzip layer expanding over 100:1 (48 MiB of zeros in 50 KiB)',
        destination,
        'refused at the limit (8 MiB allowance) while extracting: "decompression bomb refused …" naming the layer; no image, nothing left of the extraction',
      );
    },
    120_000,
  );
});
