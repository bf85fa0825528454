import { runTransportConformanceSuite } from '@gantry/core/testing';
import { createDirTransport } from './index.js';

runTransportConformanceSuite({
  name: 'dir',
  transport: createDirTransport({ durable: false }),
  createReference: ({ directory }) => directory,
  capabilities: { manifestLists: true, signatures: true, delete: true },
});
