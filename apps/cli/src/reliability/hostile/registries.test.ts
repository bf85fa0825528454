/**
 * A registry that lies: Debian's docker-registry behind a small server that rewrites some answers
 * (misbehaving-front.ts). A manifest whose digest differs from the one asked for, a blob served with other
 * bytes, a blob stream longer than its descriptor, a redirect from HTTPS to plain HTTP, and a huge error
 * body. (Hostile manifests served by a registry: manifests.test.ts.)
 * Each: exit 1, the problem named, no stack trace, nothing committed to the destination.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  recordOutcome,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import {
  generateTestTlsMaterial,
  startTestRegistry,
  type TestRegistry,
} from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runGantry } from '../../test-support/run.js';
import { expectCleanFailure } from './expect-failure.js';
import { listTree } from './hostile-images.js';
import { fetchFromRegistry, type MisbehavingFront, startMisbehavingFront } from './misbehaving-front.js';

const testFile = 'apps/cli/src/reliability/hostile/registries.test.ts';

const workDirectory = mkdtempSync(join(tmpdir(), 'gantry-hostile-registries-'));
let registry: TestRegistry;
let front: MisbehavingFront;
let tlsFront: MisbehavingFront;
let caDirectory: string;
let image: FixtureImage;
let otherImage: FixtureImage;

beforeAll(async () => {
  registry = await startTestRegistry();
  front = await startMisbehavingFront(registry.host);
  await mkdir(join(workDirectory, 'tls'));
  const tls = await generateTestTlsMaterial(join(workDirectory, 'tls'));
  caDirectory = join(workDirectory, 'ca');
  await mkdir(caDirectory);
  copyFileSync(tls.caCertificatePath, join(caDirectory, 'ca.crt'));
  tlsFront = await startMisbehavingFront(registry.host, {
    certificatePath: tls.serverCertificatePath,
    keyPath: tls.serverKeyPath,
  });
  image = await buildFixtureImage(fixturePresets.ociMinimal, { directory: join(workDirectory, 'fixture') });
  otherImage = await buildFixtureImage(fixturePresets.dockerSchema2, {
    directory: join(workDirectory, 'other'),
  });
  for (const [fixture, tag] of [
    [image, 'good'],
    [otherImage, 'other'],
  ] as const) {
    const layout = join(workDirectory, `layout-${tag}`);
    await writeFixtureToOciLayout(fixture, layout, 'latest');
    const pushed = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      '--dest-tls-verify=false',
      `oci:${layout}:latest`,
      `docker://${registry.host}/hostile/image:${tag}`,
    ]);
    if (pushed.code !== 0) throw new Error(`push failed: ${pushed.stderr}`);
  }
}, 120_000);

afterAll(async () => {
  await front?.stop();
  await tlsFront?.stop();
  await registry?.stop();
  rmSync(workDirectory, { recursive: true, force: true });
});

let counter = 0;
/** Copies `reference` to a fresh oci: layout; returns the run and the layout's path. */
async function pull(reference: string, extraFlags: string[] = ['--src-tls-verify=false']) {
  const destination = join(workDirectory, `destination-${++counter}`);
  const result = await runGantry([
    '--debug',
    '--insecure-policy',
    'copy',
    '--retry-times=0',
    ...extraFlags,
    reference,
    `oci:${destination}`,
  ]);
  return { result, destination };
}

/** The destination holds no image: either nothing at all, or a layout whose index lists nothing. */
function expectNothingCommitted(destination: string): void {
  const tree = listTree(destination);
  expect(tree.filter((path) => path.startsWith('blobs/sha256/') || path === 'index.json')).toEqual([]);
}

const record = (caseName: string, outcome: string, transport = 'docker') =>
  recordOutcome({ suite: 'hostile-input', case: caseName, transport, outcome, ok: true, testFile });

/** A rule answering GETs (and HEADs) of `path` with `body`, once per request, with the registry's manifest headers. */
function serveManifest(path: RegExp, body: Buffer, mediaType: string, digestHeader?: string) {
  return (incoming: import('node:http').IncomingMessage, response: import('node:http').ServerResponse) => {
    if (!path.test(incoming.url ?? '') || (incoming.method !== 'GET' && incoming.method !== 'HEAD'))
      return false;
    const headers: Record<string, string | number> = {
      'content-type': mediaType,
      'content-length': body.length,
    };
    if (digestHeader !== undefined) headers['docker-content-digest'] = digestHeader;
    response.writeHead(200, headers);
    response.end(incoming.method === 'HEAD' ? undefined : body);
    return true;
  };
}

describe('a registry that lies', () => {
  test('a manifest whose digest differs from the one requested', async () => {
    const other = otherImage.topLevel;
    front.rules.splice(
      0,
      front.rules.length,
      serveManifest(/\/manifests\/sha256:/, Buffer.from(other.bytes), other.mediaType, image.topLevel.digest),
    );
    const { result, destination } = await pull(
      `docker://${front.host}/hostile/image@${image.topLevel.digest}`,
    );
    front.rules.length = 0;
    expectCleanFailure(result, /digest|does not match/i);
    expectNothingCommitted(destination);
    record(
      'manifest whose digest differs from the one requested',
      'refused: the manifest does not match the requested digest',
    );
  });

  test('a blob served with other bytes of the same length', async () => {
    const layerDigest = image.images[0]!.layerDigests[0]!;
    const real = await fetchFromRegistry(registry.host, 'GET', `/v2/hostile/image/blobs/${layerDigest}`);
    const forged = Buffer.from(real.body);
    forged[forged.length - 10] = (forged[forged.length - 10]! + 1) % 256;
    front.rules.splice(0, front.rules.length, (incoming, response) => {
      if (!(incoming.url ?? '').endsWith(`/blobs/${layerDigest}`) || incoming.method !== 'GET') return false;
      response.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': forged.length,
        'docker-content-digest': layerDigest,
      });
      response.end(forged);
      return true;
    });
    const { result, destination } = await pull(`docker://${front.host}/hostile/image:good`);
    front.rules.length = 0;
    expectCleanFailure(result, /digest/i);
    expectNothingCommitted(destination);
    record('blob served with other bytes', 'refused: digest mismatch naming the blob; nothing committed');
  });

  test('a blob longer than its descriptor (an endless stream is cut at the declared size)', async () => {
    const layerDigest = image.images[0]!.layerDigests[0]!;
    let written = 0;
    front.rules.splice(0, front.rules.length, (incoming, response) => {
      if (!(incoming.url ?? '').endsWith(`/blobs/${layerDigest}`) || incoming.method !== 'GET') return false;
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 7);
      const pump = () => {
        while (written < 512 * 1024 * 1024 && !response.destroyed) {
          written += chunk.length;
          if (!response.write(chunk)) return void response.once('drain', pump);
        }
        response.end();
      };
      response.on('close', () => undefined);
      pump();
      return true;
    });
    const { result, destination } = await pull(`docker://${front.host}/hostile/image:good`);
    front.rules.length = 0;
    expectCleanFailure(result, /size|digest/i);
    expectNothingCommitted(destination);
    expect(written, 'the download stops soon after the declared size').toBeLessThan(64 * 1024 * 1024);
    record('blob stream far longer than its descriptor', 'refused: size mismatch; reading stopped early');
  });

  test('a redirect from HTTPS to plain HTTP is refused', async () => {
    const layerDigest = image.images[0]!.layerDigests[0]!;
    let plainFetches = 0;
    front.rules.splice(0, front.rules.length, (incoming) => {
      if ((incoming.url ?? '').includes('/blobs/')) plainFetches++;
      return false;
    });
    tlsFront.rules.splice(0, tlsFront.rules.length, (incoming, response) => {
      if (!(incoming.url ?? '').endsWith(`/blobs/${layerDigest}`) || incoming.method !== 'GET') return false;
      response.writeHead(307, { location: `http://${front.host}${incoming.url}` });
      response.end();
      return true;
    });
    const { result, destination } = await pull(`docker://${tlsFront.host}/hostile/image:good`, [
      `--src-cert-dir=${caDirectory}`,
    ]);
    tlsFront.rules.length = 0;
    front.rules.length = 0;
    expectCleanFailure(result, /refusing a redirect from HTTPS to plain HTTP/);
    expect(plainFetches, 'nothing fetched over plain HTTP').toBe(0);
    expectNothingCommitted(destination);
    record('redirect from HTTPS to plain HTTP', 'refused before any plain-HTTP request');
  });

  test('a 64 MiB error body is read only up to a bound', async () => {
    let written = 0;
    front.rules.splice(0, front.rules.length, (incoming, response) => {
      if (!(incoming.url ?? '').includes('/manifests/')) return false;
      response.writeHead(400, { 'content-type': 'application/json' });
      response.write('{"errors":[{"code":"DENIED","message":"');
      const chunk = Buffer.alloc(64 * 1024, 'x');
      const pump = () => {
        while (written < 64 * 1024 * 1024 && !response.destroyed) {
          written += chunk.length;
          if (!response.write(chunk)) return void response.once('drain', pump);
        }
        response.end('"}]}');
      };
      pump();
      return true;
    });
    const { result, destination } = await pull(`docker://${front.host}/hostile/image:good`);
    front.rules.length = 0;
    const message = expectCleanFailure(result, /400|DENIED|denied|error/i);
    expect(message.length, 'the error message stays short').toBeLessThan(4096);
    expect(written, 'the body was not read to its end').toBeLessThan(32 * 1024 * 1024);
    expectNothingCommitted(destination);
    record('64 MiB error body', 'bounded read: short error message, body not read to its end');
  });
});

test('the unaltered registry serves the image (the cases above start from a working copy)', async () => {
  const { result } = await pull(`docker://${front.host}/hostile/image:good`);
  expect(result.code, result.stderr).toBe(0);
});
