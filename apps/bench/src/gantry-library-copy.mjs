#!/usr/bin/env node
// `gantry copy SOURCE DESTINATION` done through the library rather than the CLI: registers the
// docker://, oci: and dir: transports from their built packages and calls core's copyImage with
// TLS verification off for registries (what `--src-tls-verify=false --dest-tls-verify=false` asks
// of the CLI). `pnpm bench -- --gantry-library` runs it instead of the CLI for the registry rows, to
// show what the CLI's start-up adds; the output says so.
//
//   node gantry-library-copy.mjs oci:/path:tag docker://127.0.0.1:5000/repo:tag
import { copyImage, insecureAcceptAnythingPolicy, TransportRegistry } from '@gantry/core';
import dirTransport from '@gantry/transport-dir';
import { createDockerTransport } from '@gantry/transport-docker';
import ociTransport from '@gantry/transport-oci';

const [sourceName, destinationName] = process.argv.slice(2);
if (sourceName === undefined || destinationName === undefined) {
  console.error('usage: gantry-library-copy.mjs SOURCE DESTINATION');
  process.exit(2);
}
const docker = createDockerTransport();
const transports = new TransportRegistry([docker, ociTransport, dirTransport]);
const context = { transportOptions: { docker: { tlsVerify: false } } };
try {
  await copyImage(
    transports.parseImageReference(sourceName),
    transports.parseImageReference(destinationName),
    {
      sourceContext: context,
      destinationContext: context,
      policy: insecureAcceptAnythingPolicy(),
    },
  );
} catch (error) {
  console.error(`gantry-library-copy: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  await docker.closeConnections();
}
