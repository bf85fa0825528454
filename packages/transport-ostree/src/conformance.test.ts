import { runTransportConformanceSuite } from '@gantry/core/testing';
import { createOstreeTransport } from './index.js';

// A repository per test, in the test's own directory. The repository keeps manifests and configs byte for
// byte but layers as file trees plus tar-split: the source serves them uncompressed, named by
// layerInfosForCopy (`manifestFidelity: 'image'`), and the destination takes Docker schema2 only. A
// repository holds many images, one branch per IMAGE.
runTransportConformanceSuite({
  name: 'ostree',
  transport: createOstreeTransport(),
  createReference: ({ directory, tag }) => `gantry.test/conformance:${tag}@${directory}`,
  capabilities: {
    manifestFidelity: 'image',
    overwrite: 'replace',
    signatures: true,
    delete: true,
    severalImagesPerLocation: true,
    tagSelectsImage: true,
  },
  invalidReferences: ['', 'UPPER:t@/tmp', 'x:t@/tmp/a:b', 'x:t@/nonexistent-parent-gantry/x/repo'],
});
