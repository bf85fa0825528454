import { dirTransport } from '../../../transport-dir/src/index.js';
import { runTransportConformanceSuite } from './conformance.js';
runTransportConformanceSuite({
  name: 'dir probe',
  transport: dirTransport,
  createReference: ({ directory }) => directory,
  capabilities: { manifestLists: true, signatures: true },
});
