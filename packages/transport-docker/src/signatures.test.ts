import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import { type FixtureImage, fixturePresets } from '@gantry/core/testing';
import {
  type Digest,
  type ImageReference,
  parseNormalizedNamed,
  parseStoredSignature,
  type TransportContext,
} from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RegistryClient } from './registry-client.js';
import {
  type ParsedSignature,
  readDockerSignatures,
  signatureBlob,
  signatureStorageOptionsFrom,
  sigstoreAttachmentTag,
  sigstoreSignatureAnnotation,
  sigstoreSignatureMimeType,
  writeDockerSignatures,
} from './signatures.js';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import {
  createSigstoreTestSignature,
  createTestGpgKey,
  createTestSigstoreKey,
  fileUrl,
  runSkopeo,
  type SigstoreTestKey,
  type TestGpgKey,
  verifySigstoreTestSignature,
  writeRegistriesDirectory,
  writeRequirementPolicy,
} from './testing/signing.js';
import { buildImage, dockerContext, pushFixture } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

/** A sigstore signature in storage form, read by core, as `signatureBlob` takes it. */
function sigstoreOf(blob: Uint8Array): ParsedSignature {
  const parsed = parseStoredSignature(blob);
  if (parsed.format !== 'sigstore') throw new Error(`not a sigstore signature: ${parsed.format}`);
  return {
    format: 'sigstore-json',
    mimeType: parsed.mimeType,
    payload: parsed.payload,
    annotations: parsed.annotations,
  };
}

describe('signature storage forms', () => {
  it('keeps simple-signing signatures raw', () => {
    const raw = new Uint8Array([0xa3, 0x01, 0x02]);
    expect(signatureBlob({ format: 'simple-signing', signature: raw })).toBe(raw);
  });

  it('writes sigstore signatures as containers/image does, Go JSON with sorted annotations, read back by core', () => {
    const blob = signatureBlob({
      format: 'sigstore-json',
      mimeType: sigstoreSignatureMimeType,
      payload: Buffer.from('{"critical":1}<&>'),
      annotations: { [sigstoreSignatureAnnotation]: 'c2ln', 'a.first': 'x' },
    });
    expect(Buffer.from(blob).toString()).toBe(
      `\0sigstore-json\n{"mimeType":"application/vnd.dev.cosign.simplesigning.v1+json","payload":"${Buffer.from('{"critical":1}<&>').toString('base64')}","annotations":{"a.first":"x","dev.cosignproject.cosign/signature":"c2ln"}}`,
    );
    expect(signatureBlob(sigstoreOf(blob))).toEqual(blob);
    expect(
      Buffer.from(signatureBlob({ ...sigstoreOf(blob), annotations: null } as never)).toString(),
    ).toMatch(/"annotations":null}$/);
  });

  it('names sigstore attachment tags', () => {
    expect(sigstoreAttachmentTag(`sha256:${'0f'.repeat(32)}` as Digest)).toBe(
      `sha256-${'0f'.repeat(32)}.sig`,
    );
    expect(() => sigstoreAttachmentTag('sha256:../x' as Digest)).toThrow(/invalid manifest digest/);
  });
});

/** Serves `root` read-only over HTTP (404 for anything missing); `/redirect/<path>` redirects to `/<path>`. */
async function serveDirectory(root: string): Promise<{ server: Server; url: string }> {
  const server = createServer((request, response) => {
    const pathname = new URL(request.url ?? '/', 'http://x').pathname;
    if (pathname.startsWith('/redirect/')) {
      response.writeHead(302, { location: pathname.slice('/redirect'.length) });
      response.end();
      return;
    }
    const file = path.join(root, decodeURIComponent(pathname));
    readFile(file).then(
      (bytes) => {
        response.writeHead(200, { 'content-type': 'application/octet-stream' });
        response.end(bytes);
      },
      () => {
        response.writeHead(404);
        response.end();
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  return { server, url: `http://127.0.0.1:${address.port}` };
}

describe('the registries.d configuration of signature storage', () => {
  it('is read once per transport context (not once per image), and again for another context', async () => {
    const directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-registries-d-memo-'));
    try {
      const registriesDirectory = path.join(directory, 'registries.d');
      const [first, second] = [path.join(directory, 'first'), path.join(directory, 'second')];
      await writeRegistriesDirectory(registriesDirectory, {
        'registry.test': { lookasideStaging: fileUrl(first) },
      });
      const reference = parseNormalizedNamed('registry.test/library/app:v1');
      // A lookaside on disk: the client is never asked for anything.
      const client = { supportsSignatureExtension: false } as unknown as RegistryClient;
      const digest = `sha256:${'a'.repeat(64)}` as Digest;
      const write = (context: TransportContext) =>
        writeDockerSignatures(
          { client, reference, manifestDigest: digest, options: signatureStorageOptionsFrom(context) },
          [new TextEncoder().encode('signature')],
        );
      const context: TransportContext = { registriesDirectoryPath: registriesDirectory };
      await write(context);
      // The directory changes while the operation runs: the same context keeps what it read…
      await writeRegistriesDirectory(registriesDirectory, {
        'registry.test': { lookasideStaging: fileUrl(second) },
      });
      await write(context);
      expect(await readdir(path.join(first, 'library', 'app@sha256=' + 'a'.repeat(64)))).toEqual([
        'signature-1',
      ]);
      await expect(readdir(second)).rejects.toMatchObject({ code: 'ENOENT' });
      // …and a new context reads the directory again.
      await write({ registriesDirectoryPath: registriesDirectory });
      expect(await readdir(path.join(second, 'library', 'app@sha256=' + 'a'.repeat(64)))).toEqual([
        'signature-1',
      ]);
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});

describe('signatures in a lookaside on disk', () => {
  it('reads signature-1, signature-2… until one is missing; none for an image without any; a file it cannot read is an error', async () => {
    const directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-lookaside-read-'));
    try {
      const registriesDirectory = path.join(directory, 'registries.d');
      const lookaside = path.join(directory, 'lookaside');
      await writeRegistriesDirectory(registriesDirectory, {
        'registry.test': { lookaside: fileUrl(lookaside) },
      });
      const context: TransportContext = { registriesDirectoryPath: registriesDirectory };
      const reference = parseNormalizedNamed('registry.test/library/app:v1');
      const client = { supportsSignatureExtension: false } as unknown as RegistryClient;
      const read = (hex: string) =>
        readDockerSignatures({
          client,
          reference,
          manifestDigest: `sha256:${hex.repeat(64)}` as Digest,
          options: signatureStorageOptionsFrom(context),
        });
      const signed = path.join(lookaside, 'library', `app@sha256=${'a'.repeat(64)}`);
      await mkdir(signed, { recursive: true });
      await writeFile(path.join(signed, 'signature-1'), 'first');
      await writeFile(path.join(signed, 'signature-2'), 'second');
      await writeFile(path.join(signed, 'signature-4'), 'after a gap: not read');
      expect((await read('a')).map((blob) => Buffer.from(blob).toString())).toEqual(['first', 'second']);
      expect(await read('b')).toEqual([]);
      // A directory where a signature file would be: reported, not taken as missing.
      await mkdir(path.join(lookaside, 'library', `app@sha256=${'c'.repeat(64)}`, 'signature-1'), {
        recursive: true,
      });
      await expect(read('c')).rejects.toMatchObject({ code: 'ERR_GANTRY_INTERNAL' });
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});

describe('signatures with skopeo, gpg and a real registry', () => {
  let source: TestRegistry;
  let target: TestRegistry;
  let directory: string;
  let image: FixtureImage;
  let gpgKey: TestGpgKey;
  let sigstoreKey: SigstoreTestKey;
  const transport = createDockerTransport();
  const tls = dockerContext({ tlsVerify: false });

  beforeAll(async () => {
    [source, target] = await Promise.all([startTestRegistry(), startTestRegistry()]);
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
    image = await buildImage(fixturePresets.dockerSchema2, path.join(directory, 'image'));
    gpgKey = await createTestGpgKey(directory);
    sigstoreKey = await createTestSigstoreKey(directory);
    await (await pushFixture(transport, source, 'plain/app:v1', image, tls)).close();
  }, 120_000);

  afterAll(async () => {
    await transport.closeConnections();
    await gpgKey?.dispose();
    await source?.stop();
    await target?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  const reference = (registry: TestRegistry, name: string): ImageReference =>
    transport.parseReference(`//${registry.host}/${name}`);

  /** `skopeo copy` of a registry image to a dir: under `policyFile` and `registriesDirectory` (skopeo verifies). */
  const skopeoVerify = async (policyFile: string, registriesDirectory: string, image: string) => {
    const out = await mkdtemp(path.join(directory, 'verify-'));
    await runSkopeo([
      '--policy',
      policyFile,
      '--registries.d',
      registriesDirectory,
      'copy',
      '--src-tls-verify=false',
      `docker://${image}`,
      `dir:${out}`,
    ]);
    return out;
  };

  it('carries a GPG signature skopeo made through lookasides, and skopeo verifies the copy', async () => {
    const sourceLookaside = path.join(directory, 'lookaside-source');
    const targetStaging = path.join(directory, 'lookaside-target');
    // skopeo signs into the source registry's staging directory.
    const signing = await writeRegistriesDirectory(path.join(directory, 'registries-signing'), {
      [source.host]: { lookasideStaging: fileUrl(sourceLookaside) },
    });
    await runSkopeo(
      [
        '--insecure-policy',
        '--registries.d',
        signing,
        'copy',
        '--src-tls-verify=false',
        '--dest-tls-verify=false',
        '--sign-by',
        gpgKey.fingerprint,
        `docker://${source.host}/plain/app:v1`,
        `docker://${source.host}/signed/app:v1`,
      ],
      { GNUPGHOME: gpgKey.home },
    );
    const manifestDigest = image.topLevel.digest;
    const hex = manifestDigest.slice('sha256:'.length);
    const skopeoSignature = await readFile(
      path.join(sourceLookaside, 'signed', `app@sha256=${hex}`, 'signature-1'),
    );

    // Gantry: reads from the source's lookaside, writes to the target's staging (its lookaside is
    // an http URL, which may not be written).
    const gantryDirectory = await writeRegistriesDirectory(path.join(directory, 'registries-gantry'), {
      [source.host]: { lookaside: fileUrl(sourceLookaside) },
      [target.host]: { lookaside: 'http://127.0.0.1:9/unused', lookasideStaging: fileUrl(targetStaging) },
    });
    const context = { ...tls, registriesDirectoryPath: gantryDirectory };
    const signedSource = await reference(source, 'signed/app:v1').newImageSource(context);
    try {
      const signatures = await signedSource.getSignatures();
      expect(signatures.map((signature) => Buffer.from(signature))).toEqual([skopeoSignature]);
    } finally {
      await signedSource.close();
    }
    const result = await copyImage(reference(source, 'signed/app:v1'), reference(target, 'copied/app:v1'), {
      sourceContext: context,
      destinationContext: context,
      policy: insecureAcceptAnythingPolicy(),
    });
    expect(result.manifestDigest).toBe(manifestDigest);
    const written = path.join(targetStaging, 'copied', `app@sha256=${hex}`);
    expect(await readdir(written)).toEqual(['signature-1']);
    expect(await readFile(path.join(written, 'signature-1'))).toEqual(skopeoSignature);

    // skopeo requires a signature by the key, read from the target's lookaside.
    const verifying = await writeRegistriesDirectory(path.join(directory, 'registries-verify'), {
      [target.host]: { lookaside: fileUrl(targetStaging) },
    });
    const policy = await writeRequirementPolicy(
      path.join(directory, 'policy-gpg.json'),
      'docker',
      target.host,
      {
        type: 'signedBy',
        keyType: 'GPGKeys',
        keyPath: gpgKey.publicKeyPath,
        signedIdentity: { type: 'exactReference', dockerReference: `${source.host}/signed/app:v1` },
      },
    );
    await skopeoVerify(policy, verifying, `${target.host}/copied/app:v1`);

    // --remove-signatures: nothing is written, and skopeo's policy then refuses the image.
    await copyImage(reference(source, 'signed/app:v1'), reference(target, 'unsigned/app:v1'), {
      sourceContext: context,
      destinationContext: context,
      policy: insecureAcceptAnythingPolicy(),
      removeSignatures: true,
    });
    await expect(readdir(path.join(targetStaging, 'unsigned'))).rejects.toThrow(/ENOENT/);
    await expect(skopeoVerify(policy, verifying, `${target.host}/unsigned/app:v1`)).rejects.toThrow(
      /signature/i,
    );

    // Reading over http(s): the same lookaside served by an HTTP server, through a redirect.
    const served = await serveDirectory(sourceLookaside);
    try {
      const httpDirectory = await writeRegistriesDirectory(path.join(directory, 'registries-http'), {
        [source.host]: { lookaside: `${served.url}/redirect` },
      });
      const httpSource = await reference(source, 'signed/app:v1').newImageSource({
        ...tls,
        registriesDirectoryPath: httpDirectory,
      });
      try {
        expect((await httpSource.getSignatures()).map((signature) => Buffer.from(signature))).toEqual([
          skopeoSignature,
        ]);
      } finally {
        await httpSource.close();
      }
      // Writing to an http lookaside is refused, as containers/image does.
      await expect(
        copyImage(reference(source, 'signed/app:v1'), reference(source, 'http-target/app:v1'), {
          sourceContext: context,
          destinationContext: { ...tls, registriesDirectoryPath: httpDirectory },
          policy: insecureAcceptAnythingPolicy(),
        }),
      ).rejects.toThrow(/Writing directly to a http lookaside .* Configure a lookaside-staging: location/);
    } finally {
      await new Promise((resolve) => served.server.close(resolve));
    }
  }, 120_000);

  it('carries sigstore attachments skopeo wrote, without duplicates, and skopeo reads them back intact', async () => {
    // Debian's skopeo cannot make or verify sigstore signatures ("Debian-local change: sigstore
    // disabled"), but it stores and reads sigstore attachments: a signature made here goes through
    // skopeo (dir: → registry), Gantry (registry → registry) and skopeo again (registry → dir:).
    const attachments = await writeRegistriesDirectory(path.join(directory, 'registries-sigstore'), {
      [source.host]: { useSigstoreAttachments: true },
      [target.host]: { useSigstoreAttachments: true },
    });
    const manifestDigest = image.topLevel.digest;
    const signed = path.join(directory, 'sigstore-dir');
    await runSkopeo([
      '--insecure-policy',
      'copy',
      '--src-tls-verify=false',
      `docker://${source.host}/plain/app:v1`,
      `dir:${signed}`,
    ]);
    const signature = createSigstoreTestSignature(
      sigstoreKey,
      manifestDigest,
      `${source.host}/sigstore/app:v1`,
    );
    // The target already has another signature of the image (skopeo attached it): Gantry adds to it.
    const existing = createSigstoreTestSignature(sigstoreKey, manifestDigest, `${target.host}/other/name:v1`);
    await writeFile(path.join(signed, 'signature-1'), existing);
    await runSkopeo([
      '--insecure-policy',
      '--registries.d',
      attachments,
      'copy',
      '--dest-tls-verify=false',
      `dir:${signed}`,
      `docker://${target.host}/sigstore-copy/app:v1`,
    ]);
    await writeFile(path.join(signed, 'signature-1'), signature);
    await runSkopeo([
      '--insecure-policy',
      '--registries.d',
      attachments,
      'copy',
      '--dest-tls-verify=false',
      `dir:${signed}`,
      `docker://${source.host}/sigstore/app:v1`,
    ]);
    const context = { ...tls, registriesDirectoryPath: attachments };
    const signedSource = await reference(source, 'sigstore/app:v1').newImageSource(context);
    let signatures: Uint8Array[];
    try {
      signatures = await signedSource.getSignatures();
    } finally {
      await signedSource.close();
    }
    // Byte for byte what containers/image stores (Go JSON of the same fields).
    expect(signatures.map((entry) => Buffer.from(entry))).toEqual([
      Buffer.from(signatureBlob(sigstoreOf(signature))),
    ]);
    verifySigstoreTestSignature(sigstoreKey, signatures[0]!, manifestDigest);

    const copy = () =>
      copyImage(reference(source, 'sigstore/app:v1'), reference(target, 'sigstore-copy/app:v1'), {
        sourceContext: context,
        destinationContext: context,
        policy: insecureAcceptAnythingPolicy(),
      });
    await copy();
    // A second copy finds its signature already attached and adds nothing.
    await copy();
    const tag = sigstoreAttachmentTag(manifestDigest);
    const attachment = JSON.parse(
      (
        await runSkopeo([
          'inspect',
          '--raw',
          '--tls-verify=false',
          `docker://${target.host}/sigstore-copy/app:${tag}`,
        ])
      ).stdout,
    );
    expect(attachment.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(attachment.layers).toHaveLength(2);
    for (const layer of attachment.layers) {
      expect(layer.mediaType).toBe(sigstoreSignatureMimeType);
      expect(Object.keys(layer.annotations)).toEqual([sigstoreSignatureAnnotation]);
    }

    // skopeo reads Gantry's attachment back into a dir: signature file, bytes intact.
    const out = path.join(directory, 'sigstore-out');
    await runSkopeo([
      '--insecure-policy',
      '--registries.d',
      attachments,
      'copy',
      '--src-tls-verify=false',
      `docker://${target.host}/sigstore-copy/app:v1`,
      `dir:${out}`,
    ]);
    expect(await readFile(path.join(out, 'signature-1'))).toEqual(
      Buffer.from(signatureBlob(sigstoreOf(existing))),
    );
    const readBack = await readFile(path.join(out, 'signature-2'));
    expect(readBack).toEqual(Buffer.from(signatures[0]!));
    await expect(readFile(path.join(out, 'signature-3'))).rejects.toThrow(/ENOENT/);
    verifySigstoreTestSignature(sigstoreKey, readBack, manifestDigest);

    // Without use-sigstore-attachments for the destination, the copy fails as with skopeo.
    const sourceOnly = await writeRegistriesDirectory(path.join(directory, 'registries-source-only'), {
      [source.host]: { useSigstoreAttachments: true },
    });
    await expect(
      copyImage(reference(source, 'sigstore/app:v1'), reference(target, 'refused/app:v1'), {
        sourceContext: { ...tls, registriesDirectoryPath: sourceOnly },
        destinationContext: { ...tls, registriesDirectoryPath: sourceOnly },
        policy: insecureAcceptAnythingPolicy(),
      }),
    ).rejects.toThrow(/writing sigstore attachments is disabled by configuration/);
  }, 120_000);
});
