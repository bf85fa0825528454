/**
 * A bounded soak: one process (this one) copies the same image round and round through the library —
 * OCI layout → registry (Debian's docker-registry) → OCI layout → dir: — with one long-lived set of
 * transports, as a program embedding Gantry would. After a warm-up, the heap, the resident set, the
 * open file descriptors and the sockets are measured, a fixed number of rounds run, and they are
 * measured again: none may grow beyond a small margin (a leak of a buffer, a stream, a file handle
 * or a connection per copy would show within the rounds).
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { copyImage, insecureAcceptAnythingPolicy, TransportRegistry } from '@gantry/core';
import { buildFixtureImage, recordOutcome, writeFixtureToOciLayout } from '@gantry/core/testing';
import dirTransport from '@gantry/transport-dir';
import { createDockerTransport } from '@gantry/transport-docker';
import { startTestRegistry, type TestRegistry } from '@gantry/transport-docker/testing';
import ociTransport from '@gantry/transport-oci';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const testFile = 'apps/cli/src/reliability/faults/soak.e2e.test.ts';
const warmUpRounds = 4;
const measuredRounds = 16;

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

let root: string;
let registry: TestRegistry;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-soak-'));
  registry = await startTestRegistry();
}, 60_000);

afterAll(async () => {
  await registry?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

/** Open file descriptors of this process, and how many of them are sockets. */
function descriptors(): { files: number; sockets: number } {
  let files = 0;
  let sockets = 0;
  for (const name of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${name}`);
    } catch {
      continue; // the directory's own descriptor, closed meanwhile
    }
    files++;
    if (target.startsWith('socket:')) sockets++;
  }
  return { files, sockets };
}

async function measure(): Promise<{ heap: number; rss: number; files: number; sockets: number }> {
  // Let closed handles finish closing, then collect twice (weak callbacks run between the two).
  await new Promise((resolve) => setTimeout(resolve, 200));
  collectGarbage();
  await new Promise((resolve) => setImmediate(resolve));
  collectGarbage();
  const usage = process.memoryUsage();
  return { heap: usage.heapUsed, rss: usage.rss, ...descriptors() };
}

describe('a bounded soak through the library', () => {
  it(`${measuredRounds} rounds oci → registry → oci → dir: no growth in memory, file descriptors or sockets`, async () => {
    const image = await buildFixtureImage(
      {
        format: 'oci',
        layers: [
          { entries: [{ type: 'file', path: 'a.bin', randomSize: 1024 * 1024, seed: 'soak-a' }] },
          { entries: [{ type: 'file', path: 'b.bin', randomSize: 1024 * 1024, seed: 'soak-b' }] },
        ],
      },
      { directory: join(root, 'fixture') },
    );
    await writeFixtureToOciLayout(image, join(root, 'source'), 'latest');
    const initial = await measure();
    const docker = createDockerTransport();
    const transports = new TransportRegistry([ociTransport, dirTransport, docker]);
    const options = {
      policy: insecureAcceptAnythingPolicy(),
      sourceContext: { transportOptions: { docker: { tlsVerify: false } } },
      destinationContext: { transportOptions: { docker: { tlsVerify: false } } },
    };
    const parse = (reference: string) => transports.parseImageReference(reference);
    const round = async (index: number): Promise<void> => {
      // A new tag each round: the registry already has the blobs, the manifest is new.
      const remote = `docker://${registry.host}/soak/app:round-${index}`;
      const pushed = await copyImage(parse(`oci:${join(root, 'source')}:latest`), parse(remote), options);
      const pulled = await copyImage(parse(remote), parse(`oci:${join(root, 'pulled')}:latest`), options);
      expect(pulled.manifestDigest).toBe(pushed.manifestDigest);
      await rm(join(root, 'dir'), { recursive: true, force: true });
      await copyImage(
        parse(`oci:${join(root, 'pulled')}:latest`),
        parse(`dir:${join(root, 'dir')}`),
        options,
      );
    };
    try {
      for (let index = 0; index < warmUpRounds; index++) await round(index);
      const before = await measure();
      for (let index = warmUpRounds; index < warmUpRounds + measuredRounds; index++) await round(index);
      const after = await measure();
      const growth = {
        heapMiB: (after.heap - before.heap) / 2 ** 20,
        rssMiB: (after.rss - before.rss) / 2 ** 20,
        files: after.files - before.files,
        sockets: after.sockets - before.sockets,
      };
      // Margins: a few MiB of heap (JIT, caches), more for RSS (the allocator keeps freed pages); file
      // descriptors and sockets come back to what they were (idle keep-alive connections included).
      expect(growth.heapMiB, JSON.stringify(growth)).toBeLessThan(6);
      expect(growth.rssMiB, JSON.stringify(growth)).toBeLessThan(48);
      expect(growth.files, JSON.stringify({ before, after })).toBeLessThanOrEqual(0);
      expect(growth.sockets, JSON.stringify({ before, after })).toBeLessThanOrEqual(0);
      recordOutcome({
        suite: 'faults',
        case: `soak: ${measuredRounds} rounds oci → registry → oci → dir in one process`,
        transport: 'library',
        outcome: `heap ${growth.heapMiB.toFixed(1)} MiB, RSS ${growth.rssMiB.toFixed(1)} MiB, fds ${growth.files}, sockets ${growth.sockets} (after warm-up)`,
        ok: true,
        testFile,
      });
    } finally {
      await docker.closeConnections();
    }
    // Closing the transport's connections leaves no socket of its own.
    expect((await measure()).sockets).toBeLessThanOrEqual(initial.sockets);
  }, 120_000);
});
