import { type FixturePresetName, fixturePresets, runTransportConformanceSuite } from '@gantry/core/testing';
import { ociArchiveTransport } from './index.js';

/** The destination accepts OCI manifests and indexes only; Docker presets are covered by copy.test.ts (converted). */
const ociPresets = (Object.keys(fixturePresets) as FixturePresetName[]).filter(
  (name) => fixturePresets[name].format !== 'docker',
);

runTransportConformanceSuite({
  name: 'oci-archive',
  transport: ociArchiveTransport,
  createReference: ({ directory, tag }) => `${directory}.tar:${tag}`,
  capabilities: { manifestLists: true, delete: false, severalImagesPerLocation: true },
  presets: ociPresets,
  invalidReferences: [
    '/tmp/a.tar:bad!name',
    '/tmp/a.tar:-leading-separator',
    '/tmp/a.tar:@-1',
    '/tmp/a.tar:@x',
    '/gantry-no-such-parent-directory/a.tar:tag',
  ],
});
