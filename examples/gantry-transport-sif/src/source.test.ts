import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Digest, hasErrorCode, type ImageSource } from '@gantry/core';
import { digestOf } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSifTransport, sifTransport } from './index.js';
import { SifDataType, SifFileSystemType, SifPartitionType } from './sif-format.js';
import { buildSifFile, buildSquashfs, buildTestSif } from './test-support/sif-writer.js';

const busybox = path.join(import.meta.dirname, '..', 'testdata', 'busybox_latest.sif');
let directory: string;
let temporary: string;

beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'gantry-sif-source-'));
  temporary = path.join(directory, 'tmp');
  await mkdir(temporary);
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function writeSif(name: string, bytes: Buffer): Promise<string> {
  const file = path.join(directory, name);
  await writeFile(file, bytes);
  return file;
}

async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

async function errorOf(operation: Promise<unknown>): Promise<Error & { code?: string }> {
  const error = await operation.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error, 'the operation should have failed').toBeInstanceOf(Error);
  return error as Error & { code?: string };
}

interface ReadImage {
  manifest: {
    mediaType: string;
    config: { digest: Digest; size: number };
    layers: { mediaType: string; digest: Digest; size: number }[];
  };
  config: Record<string, unknown>;
  layer: Buffer;
}

async function readImage(source: ImageSource): Promise<ReadImage> {
  const manifestBlob = await source.getManifest();
  const manifest = JSON.parse(Buffer.from(manifestBlob.bytes).toString()) as ReadImage['manifest'];
  const configBytes = await readAll((await source.getBlob(manifest.config)).stream);
  const layer = await readAll((await source.getBlob(manifest.layers[0]!)).stream);
  return { manifest, config: JSON.parse(configBytes.toString()) as Record<string, unknown>, layer };
}

/** The running processes whose command line has an argument containing `text`. */
function processesWith(text: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (command.some((part) => part.includes(text))) found.push(`${pid} ${command.join(' ')}`);
    } catch {}
  }
  return found;
}

describe('sif: source', () => {
  it('reads skopeo’s busybox SIF as a one-layer OCI image with skopeo’s config', async () => {
    const source = await sifTransport
      .parseReference(busybox)
      .newImageSource({ temporaryDirectory: temporary });
    try {
      const { manifest, config, layer } = await readImage(source);
      expect(manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
      expect(manifest.layers).toHaveLength(1);
      expect(manifest.layers[0]!.mediaType).toBe('application/vnd.oci.image.layer.v1.tar');
      expect(digestOf(layer)).toBe(manifest.layers[0]!.digest);
      expect(layer.length).toBe(manifest.layers[0]!.size);
      const diffId = manifest.layers[0]!.digest;
      const hex = diffId.slice('sha256:'.length);
      expect(config).toEqual({
        created: '2021-08-02T19:09:36Z',
        architecture: 'amd64',
        os: 'linux',
        config: { Cmd: ['bash'] },
        rootfs: { type: 'layers', diff_ids: [diffId] },
        history: [
          {
            created: '2021-08-02T19:09:36Z',
            created_by: `/bin/sh -c #(nop) ADD file:${hex} in /`,
            comment: 'imported from SIF, uuid: 4f307b4c-58a8-4753-9c0f-21dceefed4a6',
          },
          {
            created: '2021-08-02T19:09:36Z',
            created_by: '/bin/sh -c #(nop) CMD ["bash"]',
            empty_layer: true,
          },
        ],
      });
      // A tar stream: the first entry is the root directory "./".
      expect(layer.subarray(0, 100).toString('latin1')).toMatch(/^\.\/PaxHeaders\/\.|^\.\//);
      expect((await source.getSignatures()).length).toBe(0);
    } finally {
      await source.close();
    }
  });

  it('gives the same layer and manifest on every open (the layer is reproducible)', async () => {
    const reference = sifTransport.parseReference(busybox);
    const manifests: string[] = [];
    for (let run = 0; run < 2; run++) {
      const source = await reference.newImageSource({ temporaryDirectory: temporary });
      manifests.push(Buffer.from((await source.getManifest()).bytes).toString());
      await source.close();
    }
    expect(manifests[1]).toBe(manifests[0]);
  });

  it('adds /podman/runscript from %environment and %runscript, dated as the SIF, and makes it the command', async () => {
    const file = await writeSif(
      'runscript.sif',
      await buildTestSif({
        architecture: 'arm64',
        modifiedAt: 1_650_000_000,
        definitionFile: 'Bootstrap: scratch\n%environment\n  export A=1\n%runscript\n  exec /bin/app "$@"\n',
        entries: [{ type: 'file', path: 'bin/app', content: 'app', mode: 0o755 }],
      }),
    );
    const source = await sifTransport.parseReference(file).newImageSource({ temporaryDirectory: temporary });
    try {
      const { config, layer } = await readImage(source);
      expect(config).toMatchObject({
        created: '2022-04-15T05:20:00Z',
        architecture: 'arm64',
        config: { Cmd: ['/podman/runscript'] },
      });
      const script = '#!/bin/bash\nexport A=1\nexec /bin/app "$@"\n';
      const at = layer.indexOf(script);
      expect(at).toBeGreaterThan(0);
    } finally {
      await source.close();
    }
  });

  it('removes its temporary directory on close, and on a failed conversion', async () => {
    const own = await mkdtemp(path.join(directory, 'own-tmp-'));
    const source = await sifTransport.parseReference(busybox).newImageSource({ temporaryDirectory: own });
    expect((await readdir(own)).length).toBe(1);
    await source.close();
    await source.close();
    expect(await readdir(own)).toEqual([]);

    const corrupt = await buildTestSif({
      entries: [{ type: 'file', path: 'a', content: 'a'.repeat(10000) }],
    });
    const partitionStart = corrupt.indexOf(Buffer.from('hsqs'));
    corrupt.fill(0x5a, partitionStart + 96, partitionStart + 2000);
    const file = await writeSif('corrupt.sif', corrupt);
    const error = await errorOf(
      sifTransport.parseReference(file).newImageSource({ temporaryDirectory: own }),
    );
    expect(hasErrorCode(error, 'ERR_GANTRY_INVALID_LAYOUT'), String(error)).toBe(true);
    expect(error.message).toMatch(
      /converting rootfs from SquashFS to Tarball: converting image: exit status/,
    );
    expect(await readdir(own)).toEqual([]);
  });

  it('reports a missing file as ERR_GANTRY_IMAGE_NOT_FOUND and other bad files clearly', async () => {
    const missing = await errorOf(
      sifTransport.parseReference(path.join(directory, 'none.sif')).newImageSource(),
    );
    expect(hasErrorCode(missing, 'ERR_GANTRY_IMAGE_NOT_FOUND')).toBe(true);
    expect(missing.message).toBe(
      `loading SIF file: open ${path.join(directory, 'none.sif')}: no such file or directory`,
    );

    const notSif = await errorOf(sifTransport.parseReference(import.meta.filename).newImageSource());
    expect(hasErrorCode(notSif, 'ERR_GANTRY_INVALID_LAYOUT')).toBe(true);
    expect(notSif.message).toMatch(/invalid SIF magic/);

    const aDirectory = await errorOf(sifTransport.parseReference(directory).newImageSource());
    expect(aDirectory.message).toMatch(/is not a regular file/);

    const squashfs = await buildSquashfs([{ type: 'file', path: 'a', content: 'a' }]);
    const partition = (partitionType: number, fileSystemType: number = SifFileSystemType.squashfs) => ({
      dataType: SifDataType.partition,
      data: squashfs,
      partition: { fileSystemType, partitionType, architecture: 'amd64' },
    });
    const noRoot = await writeSif(
      'no-root.sif',
      buildSifFile({ objects: [partition(SifPartitionType.data)] }),
    );
    expect((await errorOf(sifTransport.parseReference(noRoot).newImageSource())).message).toBe(
      `looking up rootfs from SIF file ${noRoot}: object not found`,
    );
    const twoRoots = await writeSif(
      'two-roots.sif',
      buildSifFile({
        objects: [partition(SifPartitionType.primarySystem), partition(SifPartitionType.primarySystem)],
      }),
    );
    expect((await errorOf(sifTransport.parseReference(twoRoots).newImageSource())).message).toBe(
      `looking up rootfs from SIF file ${twoRoots}: multiple objects found`,
    );
    const ext3 = await writeSif(
      'ext3.sif',
      buildSifFile({ objects: [partition(SifPartitionType.primarySystem, SifFileSystemType.ext3)] }),
    );
    const ext3Error = await errorOf(sifTransport.parseReference(ext3).newImageSource());
    expect(hasErrorCode(ext3Error, 'ERR_GANTRY_NOT_SUPPORTED')).toBe(true);
    expect(ext3Error.message).toMatch(/file system type is 2, not squashfs/);
  });

  it('names the tool that is missing', async () => {
    const transport = createSifTransport({
      tools: { unsquashfs: '/nonexistent/unsquashfs', tar: 'tar', fakeroot: 'fakeroot' },
    });
    const error = await errorOf(
      transport.parseReference(busybox).newImageSource({ temporaryDirectory: temporary }),
    );
    expect(hasErrorCode(error, 'ERR_GANTRY_NOT_SUPPORTED'), String(error)).toBe(true);
    expect(error.message).toMatch(/\/nonexistent\/unsquashfs or tar is needed to read sif: images/);
    const noFakeroot = await errorOf(
      sifTransport.parseReference(busybox).newImageSource({
        temporaryDirectory: temporary,
        transportOptions: {
          sif: { tools: { unsquashfs: 'unsquashfs', tar: 'tar', fakeroot: '/nonexistent/fakeroot' } },
        },
      }),
    );
    expect(noFakeroot.message).toMatch(/\/nonexistent\/fakeroot is needed to read sif: images/);
    const badOption = await errorOf(
      sifTransport
        .parseReference(busybox)
        .newImageSource({ transportOptions: { sif: { tools: { unsquashfs: 'unsquashfs', tar: 7 } } } }),
    );
    expect(hasErrorCode(badOption, 'ERR_GANTRY_INVALID_CONFIGURATION')).toBe(true);
    expect(badOption.message).toBe('transportOptions.sif.tools.tar must be the name or path of a program');
    expect(await readdir(temporary)).toEqual([]);
  });

  it('stops the conversion when aborted, leaving no temporary file', async () => {
    // A big, incompressible root file system keeps the conversion busy long enough to abort it.
    const big = await buildTestSif({
      squashfs: { uncompressed: true },
      entries: Array.from({ length: 6 }, (_, index) => ({
        type: 'file' as const,
        path: `data/${index}`,
        content: randomBytes(4 * 1024 * 1024),
      })),
    });
    const file = await writeSif('big.sif', big);
    const own = await mkdtemp(path.join(directory, 'abort-tmp-'));
    const fakedBefore = processesWith('faked-').length;
    const controller = new AbortController();
    const opening = sifTransport
      .parseReference(file)
      .newImageSource({ temporaryDirectory: own, signal: controller.signal });
    setTimeout(() => controller.abort(new Error('stop now')), 50);
    const error = await errorOf(opening);
    expect(hasErrorCode(error, 'ERR_GANTRY_ABORTED'), String(error)).toBe(true);
    expect(error.message).toBe('stop now');
    expect(await readdir(own)).toEqual([]);
    // unsquashfs, tar and the shell are gone, and fakeroot's daemon (outside their process group) too.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(processesWith(file)).toEqual([]);
    expect(processesWith('faked-').length).toBeLessThanOrEqual(fakedBefore);
  });

  it('refuses writing and deleting, as skopeo does', async () => {
    const reference = sifTransport.parseReference(busybox);
    const write = await errorOf(reference.newImageDestination());
    expect(hasErrorCode(write, 'ERR_GANTRY_NOT_SUPPORTED')).toBe(true);
    expect(write.message).toBe('"sif:" locations can only be read from, not written to');
    const remove = await errorOf(reference.deleteImage());
    expect(remove.message).toBe('Deleting images not implemented for sif: images');
    expect(await readFile(busybox)).toHaveLength(792293);
  });
});

describe('sif: references', () => {
  it('keeps the path as given and resolves it for policy', () => {
    const relative = path.relative(process.cwd(), busybox);
    const reference = sifTransport.parseReference(relative);
    expect(reference.stringWithinTransport()).toBe(relative);
    expect(reference.policyConfigurationIdentity()).toBe(busybox);
    expect(reference.policyConfigurationNamespaces()[0]).toBe(path.dirname(busybox));
    expect(reference.policyConfigurationNamespaces()).not.toContain('/');
    expect(reference.dockerReference()).toBeUndefined();
    expect(String(reference)).toBe(`sif:${relative}`);
  });

  it('validates policy scopes as containers/image does for path transports', () => {
    expect(() => sifTransport.validatePolicyConfigurationScope('/a/b')).not.toThrow();
    expect(() => sifTransport.validatePolicyConfigurationScope('a/b')).toThrow(
      'Invalid scope a/b: Must be an absolute path',
    );
    expect(() => sifTransport.validatePolicyConfigurationScope('/')).toThrow('Use the generic default scope');
    expect(() => sifTransport.validatePolicyConfigurationScope('/a//b/')).toThrow('perhaps try /a/b');
  });
});
