import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { runTransportConformanceSuite } from '@gantry/core/testing';
import { afterAll, beforeAll } from 'vitest';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import { dockerContext } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

let registry: TestRegistry | undefined;
const transport = createDockerTransport();
// Signatures go to a lookaside in a temporary directory (registries.d `default-docker`).
const signatureDirectory = mkdtempSync(path.join(os.tmpdir(), 'gantry-'));
const registriesDirectory = path.join(signatureDirectory, 'registries.d');
mkdirSync(registriesDirectory);
writeFileSync(
  path.join(registriesDirectory, 'default.yaml'),
  `default-docker:\n  lookaside: ${pathToFileURL(path.join(signatureDirectory, 'lookaside')).href}\n`,
);

beforeAll(async () => {
  registry = await startTestRegistry();
});

afterAll(async () => {
  await transport.closeConnections();
  await registry?.stop();
  rmSync(signatureDirectory, { recursive: true, force: true });
});

runTransportConformanceSuite({
  name: 'docker (real registry)',
  transport,
  // Each fresh location is its own repository, named after the test's temporary directory.
  createReference: ({ directory, tag }) => {
    if (!registry) throw new Error('the test registry is not running');
    const repository = createHash('sha256').update(directory).digest('hex').slice(0, 16);
    return `//${registry.host}/conformance/r${repository}:${tag}`;
  },
  context: { ...dockerContext({ tlsVerify: false }), registriesDirectoryPath: registriesDirectory },
  capabilities: { manifestLists: true, signatures: true, delete: true, severalImagesPerLocation: true },
  invalidReferences: [
    'busybox',
    '/busybox',
    '//Busybox',
    '//busybox:bad!tag',
    '//busybox:tag@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
    '//busybox@sha256:0123',
    '//0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
  ],
});

// The same with blobs of known digest and size sent whole, in the PUT that commits them (as sync does).
runTransportConformanceSuite({
  name: 'docker (real registry), blobs uploaded whole',
  transport,
  createReference: ({ directory, tag }) => {
    if (!registry) throw new Error('the test registry is not running');
    const repository = createHash('sha256').update(directory).digest('hex').slice(0, 16);
    return `//${registry.host}/conformance-whole/r${repository}:${tag}`;
  },
  context: {
    ...dockerContext({ tlsVerify: false, wholeUploadMaxBytes: 4 * 1024 * 1024 }),
    registriesDirectoryPath: registriesDirectory,
  },
  capabilities: { manifestLists: true, signatures: true, delete: true, severalImagesPerLocation: true },
  invalidReferences: ['busybox'],
});
