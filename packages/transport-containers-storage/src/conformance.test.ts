import { runTransportConformanceSuite } from '@gantry/core/testing';
import { createContainersStorageTransport } from './transport.js';

// The conformance suite on a vfs store per test (graph root and run root in the test's own directory).
// The store keeps manifests and configs byte for byte but layers only as files plus tar-split: the source
// serves them uncompressed, named by layerInfosForCopy (`manifestFidelity: 'image'`). A name moves to the
// image written last (`overwrite: 'replace'`); a store holds many images, a tag selects one.
runTransportConformanceSuite({
  name: 'containers-storage',
  transport: createContainersStorageTransport(),
  createReference: ({ directory, tag }) =>
    `[vfs@${directory}/root+${directory}/run]gantry.test/conformance:${tag}`,
  capabilities: {
    manifestFidelity: 'image',
    overwrite: 'replace',
    signatures: true,
    delete: true,
    severalImagesPerLocation: true,
    tagSelectsImage: true,
  },
  invalidReferences: [
    '',
    '[relative]x:t',
    '[vfs@]x:t',
    '[vfs@/abs]x:t@',
    '[vfs@/abs]Upper:t',
    `[vfs@/abs]x:t@sha256:${'0'.repeat(63)}`,
  ],
});
