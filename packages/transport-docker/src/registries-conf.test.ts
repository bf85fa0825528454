import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type FixtureImage, fixturePresets } from '@gantry/core/testing';
import { digestOf, ErrorCodes, type TransportContext } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import { buildImage, dockerContext, pushFixture } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

describe('registries.conf: mirrors, location, insecure, blocked (real registries)', () => {
  let primary: TestRegistry;
  let mirror: TestRegistry;
  let directory: string;
  let image: FixtureImage;
  let other: FixtureImage;
  const transport = createDockerTransport();
  const plain = dockerContext({ tlsVerify: false });

  beforeAll(async () => {
    [primary, mirror] = await Promise.all([startTestRegistry(), startTestRegistry()]);
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
    image = await buildImage(fixturePresets.ociMinimal, path.join(directory, 'image'));
    other = await buildImage(fixturePresets.dockerSchema2, path.join(directory, 'other'));
    // The mirror has app:v1 under a namespace; the primary has only app:v2.
    await pushFixture(transport, mirror, 'mirrored/app:v1', image, plain);
    await pushFixture(transport, primary, 'app:v2', other, plain);
  });

  afterAll(async () => {
    await transport.closeConnections();
    await primary?.stop();
    await mirror?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  /** A context using a registries.conf with `text`, and no explicit tlsVerify. */
  async function contextWith(name: string, text: string): Promise<TransportContext> {
    const file = path.join(directory, `${name}.conf`);
    await writeFile(file, text);
    return { registriesConfPath: file };
  }

  const mirrorConfiguration = (extra = '') => `
[[registry]]
location = "${primary.host}"
insecure = true
${extra}
[[registry.mirror]]
location = "${mirror.host}/mirrored"
insecure = true
`;

  it('reads from a mirror first, with the reference rewritten, and from the primary when the mirror lacks the image', async () => {
    const context = await contextWith('mirror', mirrorConfiguration());
    primary.clearAccessLog();
    mirror.clearAccessLog();
    const fromMirror = await transport.parseReference(`//${primary.host}/app:v1`).newImageSource(context);
    expect(digestOf((await fromMirror.getManifest()).bytes)).toBe(image.topLevel.digest);
    const [blob] = image.blobs.values();
    await (await fromMirror.getBlob({ digest: blob!.digest, size: blob!.size })).stream.resume();
    await fromMirror.close();
    const mirrorLog = await mirror.accessLog();
    expect(
      mirrorLog.some((entry) => entry.path === '/v2/mirrored/app/manifests/v1' && entry.status === 200),
    ).toBe(true);
    expect(mirrorLog.some((entry) => entry.path === `/v2/mirrored/app/blobs/${blob!.digest}`)).toBe(true);
    expect((await primary.accessLog()).filter((entry) => entry.path.includes('/app/'))).toEqual([]);

    const fromPrimary = await transport.parseReference(`//${primary.host}/app:v2`).newImageSource(context);
    expect(digestOf((await fromPrimary.getManifest()).bytes)).toBe(other.topLevel.digest);
    await fromPrimary.close();

    await expect(
      transport.parseReference(`//${primary.host}/app:v3`).newImageSource(context),
    ).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
      message: expect.stringMatching(
        /reading manifest v3 in .*\/app: .*\(mirrors also failed: \[.*mirrored\/app:v3: /,
      ),
    });
  });

  it('manifestHead for pulling asks the mirror first, then the primary, with HEAD requests only; for pushing only the primary', async () => {
    const context = await contextWith('mirror-head', mirrorConfiguration());
    primary.clearAccessLog();
    mirror.clearAccessLog();
    const at = (name: string) => transport.parseReference(`//${primary.host}/${name}`);
    expect(await transport.manifestHead(at('app:v1'), context, 'pull')).toEqual({
      digest: image.topLevel.digest,
      mediaType: image.topLevel.mediaType,
      size: image.topLevel.bytes.byteLength,
    });
    expect((await transport.manifestHead(at('app:v2'), context, 'pull'))?.digest).toBe(other.topLevel.digest);
    expect(await transport.manifestHead(at('app:v3'), context, 'pull')).toBeUndefined();
    // Writing goes to the primary only, which does not have v1.
    expect(await transport.manifestHead(at('app:v1'), context, 'push')).toBeUndefined();
    const manifestRequests = (log: Awaited<ReturnType<TestRegistry['accessLog']>>) =>
      log
        .filter((entry) => entry.path.includes('/manifests/'))
        .map((entry) => `${entry.method} ${entry.path}`);
    expect(manifestRequests(await mirror.accessLog())).toEqual([
      'HEAD /v2/mirrored/app/manifests/v1',
      'HEAD /v2/mirrored/app/manifests/v2',
      'HEAD /v2/mirrored/app/manifests/v3',
    ]);
    expect(manifestRequests(await primary.accessLog())).toEqual([
      'HEAD /v2/app/manifests/v2',
      'HEAD /v2/app/manifests/v3',
      'HEAD /v2/app/manifests/v1',
    ]);
  });

  it('skips digest-only mirrors for tag pulls', async () => {
    const context = await contextWith(
      'digest-only',
      `${mirrorConfiguration()}pull-from-mirror = "digest-only"\n`,
    );
    await expect(
      transport.parseReference(`//${primary.host}/app:v1`).newImageSource(context),
    ).rejects.toMatchObject({
      code: ErrorCodes.ImageNotFound,
    });
    const byDigest = await transport
      .parseReference(`//${primary.host}/app@${image.topLevel.digest}`)
      .newImageSource(context);
    await byDigest.close();
  });

  it('rewrites the location of a prefix for reads', async () => {
    const context = await contextWith(
      'location',
      `[[registry]]\nprefix = "${primary.host}/virtual"\nlocation = "${mirror.host}/mirrored"\ninsecure = true\n`,
    );
    const source = await transport.parseReference(`//${primary.host}/virtual/app:v1`).newImageSource(context);
    expect(digestOf((await source.getManifest()).bytes)).toBe(image.topLevel.digest);
    await source.close();
  });

  it('allows plain HTTP for insecure registries, and --tls-verify=true still wins', async () => {
    const context = await contextWith(
      'insecure',
      `[[registry]]\nlocation = "${primary.host}"\ninsecure = true\n`,
    );
    const source = await transport.parseReference(`//${primary.host}/app:v2`).newImageSource(context);
    await source.close();
    const destination = await transport
      .parseReference(`//${primary.host}/app:v9`)
      .newImageDestination(context);
    await destination.close();
    await expect(
      transport
        .parseReference(`//${primary.host}/app:v2`)
        .newImageSource({ ...context, transportOptions: { docker: { tlsVerify: true } } }),
    ).rejects.toThrow(/does not speak TLS/);
    const secure = await contextWith('secure', '');
    await expect(transport.parseReference(`//${primary.host}/app:v2`).newImageSource(secure)).rejects.toThrow(
      /does not speak TLS/,
    );
  });

  it('refuses blocked registries before any network traffic', async () => {
    const context = await contextWith(
      'blocked',
      `[[registry]]\nlocation = "${primary.host}"\nblocked = true\n`,
    );
    primary.clearAccessLog();
    const reference = transport.parseReference(`//${primary.host}/app:v2`);
    // Started one at a time: a rejection nobody awaits yet would be reported as unhandled.
    for (const attempt of [
      () => reference.newImageSource(context),
      () => reference.newImageDestination(context),
      () => reference.deleteImage(context),
      () => transport.listTags(`//${primary.host}/app`, context),
      () => transport.checkLogin(primary.host, context),
    ]) {
      await expect(attempt()).rejects.toMatchObject({
        code: ErrorCodes.PolicyRejected,
        message: expect.stringContaining(
          `registry ${primary.host} is blocked in ${path.join(directory, 'blocked.conf')}`,
        ),
      });
    }
    expect(await primary.accessLog()).toEqual([]);
  });
});
