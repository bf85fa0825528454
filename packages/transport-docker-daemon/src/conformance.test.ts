import { runTransportConformanceSuite } from '@gantry/core/testing';
import { afterAll, beforeAll } from 'vitest';
import { dockerDaemonTransport } from './index.js';
import { startTestDockerDaemon, type TestDockerDaemon } from './test-support/dockerd.js';

// The conformance suite against a private real dockerd. The daemon does not store manifests: the source
// generates a Docker schema2 manifest from `docker save` output (`manifestFidelity: 'image'`); the destination
// accepts Docker schema2 with uncompressed layers only. `docker load` retags (`overwrite: 'replace'`), and a
// repository holds several tags (`severalImagesPerLocation`, a tag selects the image).
const daemonOptions: { host?: string } = {};
let daemon: TestDockerDaemon | undefined;
let counter = 0;

beforeAll(async () => {
  daemon = await startTestDockerDaemon();
  daemonOptions.host = daemon.host;
}, 90_000);

afterAll(async () => {
  await daemon?.stop();
}, 30_000);

runTransportConformanceSuite({
  name: 'docker-daemon',
  transport: dockerDaemonTransport,
  createReference: ({ tag }) => `gantry.test/conformance${counter++}:${tag}`,
  context: { transportOptions: { 'docker-daemon': daemonOptions } },
  capabilities: {
    manifestFidelity: 'image',
    overwrite: 'replace',
    severalImagesPerLocation: true,
    tagSelectsImage: true,
  },
  invalidReferences: [
    '',
    'busybox',
    'Busybox:1',
    'sha256:abc',
    `sha512:${'ab'.repeat(64)}`,
    'busybox:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
  ],
});
