import { runTransportConformanceSuite } from '@gantry/core/testing';
import { dockerArchiveTransport } from './index.js';

// A `docker save` archive does not store the manifest: the source generates a Docker schema2 manifest from
// the config and the layers (`manifestFidelity: 'image'`), the destination accepts Docker schema2 with
// uncompressed layers only (the suite writes the presets in that form), and, as skopeo, it refuses to
// write over a non-empty archive (`overwrite: 'refuse'`). An archive holds one image when written but is
// read by tag (`tagSelectsImage`).
runTransportConformanceSuite({
  name: 'docker-archive',
  transport: dockerArchiveTransport,
  createReference: ({ directory, tag }) => `${directory}.tar:gantry.test/conformance:${tag}`,
  capabilities: { manifestFidelity: 'image', overwrite: 'refuse', tagSelectsImage: true },
  invalidReferences: [
    '',
    '/tmp/a.tar:bad!name',
    '/tmp/a.tar:Busybox',
    '/tmp/a.tar:@-1',
    '/tmp/a.tar:@x',
    '/tmp/a.tar:busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
    '/tmp/a.tar:@0:extra',
  ],
});
