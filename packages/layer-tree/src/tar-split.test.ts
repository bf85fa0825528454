import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { cleanPath, TarSplitLines } from '@gantry/core/transport';
import { describe, expect, it } from 'vitest';
import { cleanName, readTarSplit, TarSplitWriter } from './tar-split.js';

type Step =
  | { kind: 'segment'; payload: Buffer; keepEmpty?: boolean }
  | { kind: 'file'; name: Buffer; size: number; crc: Buffer | null };

/** The lines core's string formatter gives for the same steps: what the byte writer must reproduce. */
function expectedText(steps: readonly Step[]): string {
  const lines = new TarSplitLines();
  let text = '';
  for (const step of steps) {
    text +=
      step.kind === 'segment'
        ? (lines.segment(step.payload, step.keepEmpty) ?? '')
        : lines.file(step.name, step.size, step.crc);
  }
  return text + (lines.trailer('tar-split-0.11.2') ?? '');
}

/** The writer's gzip-compressed output for the steps. */
async function writeAndFinish(steps: readonly Step[]): Promise<Buffer> {
  const writer = new TarSplitWriter();
  for (const step of steps) {
    if (step.kind === 'segment') writer.addSegment(step.payload, step.keepEmpty);
    else writer.addFile(step.name, step.size, step.crc);
  }
  writer.finishTrailer('tar-split-0.11.2');
  return writer.finish();
}

async function written(steps: readonly Step[]): Promise<Buffer> {
  return gunzipSync(await writeAndFinish(steps));
}

describe('TarSplitWriter', () => {
  it('writes byte for byte the lines core formats: base64 of every length, names of every kind', async () => {
    const names = [
      'etc/hosts',
      './usr/bin/',
      '',
      'caf\u00e9/\u00fcn\u00ef.txt',
      'a<b>&"q\\',
      'tab\there\nnewline\u0001\u001f',
      '\u2028\u2029',
      'emoji-\u{1f600}',
    ].map((name) => Buffer.from(name, 'utf8'));
    names.push(Buffer.from([0x66, 0xe9, 0xff, 0x2f, 0x80])); // not UTF-8: name_raw
    const steps: Step[] = [];
    for (let length = 0; length <= 7; length++) steps.push({ kind: 'segment', payload: randomBytes(length) });
    steps.push({ kind: 'segment', payload: Buffer.alloc(0), keepEmpty: true });
    for (const [index, name] of names.entries()) {
      steps.push({ kind: 'segment', payload: randomBytes(512 + index) });
      steps.push({ kind: 'file', name, size: index * 1000, crc: index === 0 ? null : randomBytes(8) });
    }
    steps.push({ kind: 'segment', payload: randomBytes(1 << 20) }); // larger than one output buffer
    steps.push({ kind: 'segment', payload: Buffer.alloc(1024) });
    const bytes = await written(steps);
    expect(bytes.equals(Buffer.from(expectedText(steps), 'utf8'))).toBe(true);
    const entries = [];
    for await (const entry of readTarSplit(await writeAndFinish(steps))) entries.push(entry);
    expect(entries.filter((entry) => entry.type === 'file').map((entry) => entry.nameBytes)).toEqual(names);
  });

  it('spans many output buffers with positions counting on', async () => {
    const steps: Step[] = [];
    for (let index = 0; index < 5000; index++) {
      steps.push({ kind: 'segment', payload: randomBytes(1014) });
      steps.push({
        kind: 'file',
        name: Buffer.from(`many/d${index % 50}/f${index}.txt`),
        size: 7,
        crc: randomBytes(8),
      });
    }
    expect((await written(steps)).equals(Buffer.from(expectedText(steps), 'utf8'))).toBe(true);
  });

  it('fills its buffers again once the compressor has read them, the output unchanged', async () => {
    const steps: Step[] = [];
    const writer = new TarSplitWriter();
    for (let index = 0; index < 6000; index++) {
      const segment: Step = { kind: 'segment', payload: randomBytes(1014) };
      const file: Step = {
        kind: 'file',
        name: Buffer.from(`many/d${index % 50}/f${index}.txt`),
        size: 7,
        crc: randomBytes(8),
      };
      steps.push(segment, file);
      writer.addSegment(segment.payload);
      writer.addFile(file.name, file.size, file.crc);
      // Turns for the compressor, as the tar's reading gives it: buffers come back and are refilled.
      if (index % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
      if (writer.needsDrain) await writer.drained();
    }
    writer.finishTrailer('tar-split-0.11.2');
    const bytes = gunzipSync(await writer.finish());
    expect(bytes.equals(Buffer.from(expectedText(steps), 'utf8'))).toBe(true);
  });

  it('refuses a path seen before, as tar-split does', () => {
    const writer = new TarSplitWriter();
    writer.addFile(Buffer.from('a/b'), 1, randomBytes(8));
    expect(() => writer.addFile(Buffer.from('./a//b'), 1, randomBytes(8))).toThrow(/appears twice/);
    writer.destroy();
  });

  it('asks the caller to wait while the compressor is behind, and catches up', async () => {
    const writer = new TarSplitWriter();
    // ~4 MiB of lines added at once, without giving the compressor a turn.
    for (let index = 0; index < 4096; index++) writer.addSegment(randomBytes(768));
    expect(writer.needsDrain).toBe(true);
    await writer.drained();
    expect(writer.needsDrain).toBe(false);
    const text = gunzipSync(await writer.finish()).toString('latin1');
    expect(text.split('\n').filter((line) => line !== '')).toHaveLength(4096);
  });
});

describe('cleanName', () => {
  it('gives what cleanPath gives, for clean names and every kind of unclean one', () => {
    const components = ['a', 'bc', '.', '..', '', '.x', 'x.', '..x', 'x..', '.wh.x', 'é'];
    const names = new Set<string>(['', '/', '//', '.', '..', './', '../', '/.', '/..']);
    for (const first of components) {
      names.add(first);
      for (const second of components) {
        for (const separator of ['/', '//']) {
          const pair = `${first}${separator}${second}`;
          names.add(pair);
          names.add(`/${pair}`);
          names.add(`${pair}/`);
          for (const third of components) names.add(`${pair}/${third}`);
        }
      }
    }
    for (const name of names) expect(cleanName(name), JSON.stringify(name)).toBe(cleanPath(name));
    expect(names.size).toBeGreaterThan(2000);
  });

  it('returns a clean name itself', () => {
    for (const name of ['a', 'many/d0/f0.txt', 'usr/lib/x.so.1', 'a/b../c', 'a/b.'])
      expect(cleanName(name)).toBe(name);
  });
});
