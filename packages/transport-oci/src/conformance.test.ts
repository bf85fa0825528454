import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runTransportConformanceSuite } from '@gantry/core/testing';
import { afterAll } from 'vitest';
import { ociTransport } from './index.js';

const sharedBlobDirectory = mkdtempSync(path.join(tmpdir(), 'gantry-'));
afterAll(() => rmSync(sharedBlobDirectory, { recursive: true, force: true }));

runTransportConformanceSuite({
  name: 'oci',
  transport: ociTransport,
  createReference: ({ directory, tag }) => `${directory}:${tag}`,
  capabilities: { manifestLists: true, delete: true, severalImagesPerLocation: true },
  invalidReferences: [
    '/tmp:bad!name',
    '/tmp:-leading-separator',
    '/tmp:@-1',
    '/tmp:@x',
    '/gantry-no-such-parent-directory/layout:tag',
  ],
});

runTransportConformanceSuite({
  name: 'oci with a shared blob directory',
  transport: ociTransport,
  createReference: ({ directory, tag }) => `${directory}:${tag}`,
  context: { ociSharedBlobDirectory: sharedBlobDirectory },
  capabilities: { manifestLists: true, delete: true, severalImagesPerLocation: true },
});
