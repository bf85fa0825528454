import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type FixtureImage, fixturePresets, runSkopeo, writeFixtureToOciLayout } from '@gantry/core/testing';
import { digestOf } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import { buildImage, digestStream, dockerContext, pushFixture } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

describe('interoperability with skopeo (real registry)', () => {
  let registry: TestRegistry;
  let secureRegistry: TestRegistry;
  let directory: string;
  let image: FixtureImage;
  let dockerImage: FixtureImage;
  let list: FixtureImage;
  const transport = createDockerTransport();
  const context = dockerContext({ tlsVerify: false });

  beforeAll(async () => {
    [registry, secureRegistry] = await Promise.all([
      startTestRegistry(),
      startTestRegistry({ tls: true, htpasswdUsers: { dana: 'p4ss' } }),
    ]);
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
    image = await buildImage(fixturePresets.ociMinimal, path.join(directory, 'oci'));
    dockerImage = await buildImage(fixturePresets.dockerSchema2, path.join(directory, 'docker'));
    list = await buildImage(fixturePresets.multiArchOci, path.join(directory, 'list'));
  });

  afterAll(async () => {
    await transport.closeConnections();
    await registry?.stop();
    await secureRegistry?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  it('reads an image skopeo pushed, byte for byte', async () => {
    const layout = path.join(directory, 'layout');
    await writeFixtureToOciLayout(image, layout, 't');
    await runSkopeo([
      'copy',
      '--insecure-policy',
      '--dest-tls-verify=false',
      `oci:${layout}:t`,
      `docker://${registry.host}/skopeo/pushed:t`,
    ]);
    const raw = await runSkopeo([
      'inspect',
      '--raw',
      '--tls-verify=false',
      `docker://${registry.host}/skopeo/pushed:t`,
    ]);
    const source = await transport
      .parseReference(`//${registry.host}/skopeo/pushed:t`)
      .newImageSource(context);
    const manifest = await source.getManifest();
    expect(Buffer.from(manifest.bytes).equals(raw)).toBe(true);
    expect(digestOf(manifest.bytes)).toBe(image.topLevel.digest);
    for (const blob of image.blobs.values()) {
      expect(
        await digestStream((await source.getBlob({ digest: blob.digest, size: blob.size })).stream),
      ).toEqual({
        digest: blob.digest,
        size: blob.size,
      });
    }
    await source.close();
  });

  it('pushes images that skopeo inspects with the same manifest digest and copies out intact', async () => {
    for (const [name, fixture] of [
      ['oci', image],
      ['docker', dockerImage],
      ['list', list],
    ] as const) {
      await pushFixture(transport, registry, `gantry/${name}:t`, fixture, context);
      const raw = await runSkopeo([
        'inspect',
        '--raw',
        '--tls-verify=false',
        `docker://${registry.host}/gantry/${name}:t`,
      ]);
      expect(raw.equals(Buffer.from(fixture.topLevel.bytes))).toBe(true);
      if (name !== 'list') {
        const inspected = JSON.parse(
          (
            await runSkopeo(['inspect', '--tls-verify=false', `docker://${registry.host}/gantry/${name}:t`])
          ).toString(),
        );
        expect(inspected.Digest).toBe(fixture.topLevel.digest);
        expect(inspected.Layers).toEqual(fixture.images[0]!.layerDigests);
      }
    }
    // skopeo verifies every blob digest while copying out of the registry.
    const out = path.join(directory, 'out');
    await runSkopeo([
      'copy',
      '--insecure-policy',
      '--src-tls-verify=false',
      '--all',
      `docker://${registry.host}/gantry/list:t`,
      `oci:${out}:t`,
    ]);
    const index = JSON.parse((await runSkopeo(['inspect', '--raw', `oci:${out}:t`])).toString());
    expect(index.manifests.map((entry: { digest: string }) => entry.digest)).toEqual(
      list.images.map((single) => single.manifestDigest),
    );
  });

  it('shares credentials and TLS settings with skopeo (auth file, certificate directory)', async () => {
    const authFile = path.join(directory, 'auth.json');
    await writeFile(
      authFile,
      JSON.stringify({
        auths: { [secureRegistry.host]: { auth: Buffer.from('dana:p4ss').toString('base64') } },
      }),
    );
    const secureContext = dockerContext({
      authFilePath: authFile,
      certDirectory: secureRegistry.certificateDirectory!,
    });
    await pushFixture(transport, secureRegistry, 'shared/app:t', image, secureContext);
    const inspected = JSON.parse(
      (
        await runSkopeo([
          'inspect',
          '--authfile',
          authFile,
          '--cert-dir',
          secureRegistry.certificateDirectory!,
          `docker://${secureRegistry.host}/shared/app:t`,
        ])
      ).toString(),
    );
    expect(inspected.Digest).toBe(image.topLevel.digest);
    await runSkopeo([
      'copy',
      '--insecure-policy',
      '--src-authfile',
      authFile,
      '--src-cert-dir',
      secureRegistry.certificateDirectory!,
      '--dest-authfile',
      authFile,
      '--dest-cert-dir',
      secureRegistry.certificateDirectory!,
      `docker://${secureRegistry.host}/shared/app:t`,
      `docker://${secureRegistry.host}/shared/by-skopeo:t`,
    ]);
    const source = await transport
      .parseReference(`//${secureRegistry.host}/shared/by-skopeo:t`)
      .newImageSource(secureContext);
    expect(digestOf((await source.getManifest()).bytes)).toBe(image.topLevel.digest);
    await source.close();
  });
});
