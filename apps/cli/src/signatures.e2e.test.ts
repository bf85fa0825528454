/**
 * `gantry --registries.d DIR copy` carries GPG (simple-signing) signatures like `skopeo copy`: skopeo
 * signs with a test key (gpg), gantry copies through registries.d lookasides (to another repository,
 * and to dir:), and skopeo with a `signedBy` policy verifies what gantry wrote.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import {
  createTestGpgKey,
  fileUrl,
  runSkopeo,
  startTestRegistry,
  type TestGpgKey,
  type TestRegistry,
  writeRegistriesDirectory,
  writeRequirementPolicy,
} from '@gantry/transport-docker/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGantry } from './test-support/run.js';

let root: string;
let registry: TestRegistry;
let image: FixtureImage;
let gpgKey: TestGpgKey;
let signature: Buffer;
let signedLookaside: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-'));
  registry = await startTestRegistry();
  image = await buildFixtureImage(fixturePresets.ociMinimal!, { directory: join(root, 'blobs') });
  const layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
  gpgKey = await createTestGpgKey(root);
  signedLookaside = join(root, 'signed-lookaside');
  const signing = await writeRegistriesDirectory(join(root, 'registries-signing'), {
    [`${registry.host}/signed`]: { lookasideStaging: fileUrl(signedLookaside) },
  });
  await runSkopeo(
    [
      '--insecure-policy',
      '--registries.d',
      signing,
      'copy',
      '-q',
      '--dest-tls-verify=false',
      '--sign-by',
      gpgKey.fingerprint,
      `oci:${layout}:latest`,
      `docker://${registry.host}/signed/app:v1`,
    ],
    { GNUPGHOME: gpgKey.home },
  );
}, 120_000);

afterAll(async () => {
  await gpgKey?.dispose();
  await registry?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

function expectSuccess(result: { code: number; stderr: string }, what: string): void {
  expect({ what, code: result.code, stderr: result.stderr }).toEqual({ what, code: 0, stderr: '' });
}

describe('gantry copy with signatures (--registries.d)', () => {
  it('copies the signature skopeo made to another repository, and skopeo verifies it', async () => {
    // skopeo made one signature, of the manifest it pushed.
    const pushed = JSON.parse(
      (await runSkopeo(['inspect', '--tls-verify=false', `docker://${registry.host}/signed/app:v1`])).stdout,
    ) as { Digest: string };
    const hex = pushed.Digest.slice('sha256:'.length);
    const signatureDirectory = join(signedLookaside, 'signed', `app@sha256=${hex}`);
    expect(await readdir(signatureDirectory)).toEqual(['signature-1']);
    signature = await readFile(join(signatureDirectory, 'signature-1'));

    const copiedStaging = join(root, 'copied-staging');
    const registriesDirectory = await writeRegistriesDirectory(join(root, 'registries-gantry'), {
      [`${registry.host}/signed`]: { lookaside: fileUrl(signedLookaside) },
      [`${registry.host}/copied`]: { lookasideStaging: fileUrl(copiedStaging) },
    });
    const copy = (destination: string, extra: string[] = []) =>
      runGantry([
        '--insecure-policy',
        '--registries.d',
        registriesDirectory,
        'copy',
        '-q',
        '--src-tls-verify=false',
        '--dest-tls-verify=false',
        ...extra,
        `docker://${registry.host}/signed/app:v1`,
        destination,
      ]);
    expectSuccess(await copy(`docker://${registry.host}/copied/app:v1`), 'signed copy');
    expect(await readFile(join(copiedStaging, 'copied', `app@sha256=${hex}`, 'signature-1'))).toEqual(
      signature,
    );

    const verifying = await writeRegistriesDirectory(join(root, 'registries-verify'), {
      [`${registry.host}/copied`]: { lookaside: fileUrl(copiedStaging) },
    });
    const policy = await writeRequirementPolicy(join(root, 'policy-docker.json'), 'docker', registry.host, {
      type: 'signedBy',
      keyType: 'GPGKeys',
      keyPath: gpgKey.publicKeyPath,
      signedIdentity: { type: 'exactReference', dockerReference: `${registry.host}/signed/app:v1` },
    });
    const verify = (name: string) =>
      runSkopeo([
        '--policy',
        policy,
        '--registries.d',
        verifying,
        'copy',
        '-q',
        '--src-tls-verify=false',
        `docker://${registry.host}/${name}`,
        `dir:${join(root, `verified-${name.replace(/[/:]/g, '-')}`)}`,
      ]);
    await verify('copied/app:v1');

    // --remove-signatures: none written, and skopeo's policy refuses the copy.
    expectSuccess(
      await copy(`docker://${registry.host}/copied/unsigned:v1`, ['--remove-signatures']),
      'copy without signatures',
    );
    await expect(readdir(join(copiedStaging, 'copied'))).resolves.toEqual([`app@sha256=${hex}`]);
    await expect(verify('copied/unsigned:v1')).rejects.toThrow(
      /A signature was required, but no signature exists/,
    );

    // To dir:, the signature becomes signature-1, which skopeo's dir: reader accepts and verifies.
    const directory = join(root, 'signed-dir');
    expectSuccess(await copy(`dir:${directory}`), 'copy to dir:');
    expect(await readFile(join(directory, 'signature-1'))).toEqual(signature);
    const directoryPolicy = await writeRequirementPolicy(join(root, 'policy-dir.json'), 'dir', '', {
      type: 'signedBy',
      keyType: 'GPGKeys',
      keyPath: gpgKey.publicKeyPath,
      signedIdentity: { type: 'exactReference', dockerReference: `${registry.host}/signed/app:v1` },
    });
    await runSkopeo([
      '--policy',
      directoryPolicy,
      'copy',
      '-q',
      `dir:${directory}`,
      `dir:${join(root, 'from-dir')}`,
    ]);
    // And back: dir: → docker:// with the signature, read by gantry itself.
    expectSuccess(
      await runGantry([
        '--insecure-policy',
        '--registries.d',
        registriesDirectory,
        'copy',
        '-q',
        '--dest-tls-verify=false',
        `dir:${directory}`,
        `docker://${registry.host}/copied/from-dir:v1`,
      ]),
      'copy from dir:',
    );
    await verify('copied/from-dir:v1');
  }, 120_000);

  it('refuses an http lookaside for writing, naming the fix', async () => {
    const registriesDirectory = await writeRegistriesDirectory(join(root, 'registries-http'), {
      [`${registry.host}/signed`]: { lookaside: fileUrl(signedLookaside) },
      [`${registry.host}/http`]: { lookaside: 'https://lookaside.example.com/x' },
    });
    const result = await runGantry([
      '--insecure-policy',
      '--registries.d',
      registriesDirectory,
      'copy',
      '-q',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      `docker://${registry.host}/signed/app:v1`,
      `docker://${registry.host}/http/app:v1`,
    ]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(
      /Writing directly to a https lookaside https:\/\/lookaside\.example\.com\/x\/http\/app@sha256=[0-9a-f]{64}\/signature-1 is not supported\. Configure a lookaside-staging: location/,
    );
  }, 60_000);
});
