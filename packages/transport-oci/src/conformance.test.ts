import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type FixturePresetName, fixturePresets, runTransportConformanceSuite } from '@gantry/core/testing';
import { afterAll } from 'vitest';
import { ociTransport } from './index.js';

const sharedBlobDirectory = mkdtempSync(path.join(tmpdir(), 'gantry-'));
afterAll(() => rmSync(sharedBlobDirectory, { recursive: true, force: true }));

// An oci: destination accepts OCI manifests and indexes only (the copy pipeline converts Docker
// images before they reach it), so the suite writes the OCI presets.
const ociPresets = (Object.keys(fixturePresets) as FixturePresetName[]).filter(
  (name) => fixturePresets[name].format !== 'docker',
);

runTransportConformanceSuite({
  name: 'oci',
  transport: ociTransport,
  createReference: ({ directory, tag }) => `${directory}:${tag}`,
  capabilities: { manifestLists: true, delete: true, severalImagesPerLocation: true },
  presets: ociPresets,
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
  context: { transportOptions: { oci: { sharedBlobDirectory } } },
  capabilities: { manifestLists: true, delete: true, severalImagesPerLocation: true },
  presets: ociPresets,
});
