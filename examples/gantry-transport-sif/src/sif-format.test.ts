import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hasErrorCode } from '@gantry/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  readSifImage,
  SifDataType,
  SifFileSystemType,
  SifPartitionType,
  selectSifDescriptor,
  sifDescriptorSize,
} from './sif-format.js';
import { buildSifFile } from './test-support/sif-writer.js';

const busybox = path.join(import.meta.dirname, '..', 'testdata', 'busybox_latest.sif');
let directory: string;

beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'gantry-sif-format-'));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function read(file: string) {
  const handle = await open(file, 'r');
  try {
    return await readSifImage(handle, (await handle.stat()).size, file);
  } finally {
    await handle.close();
  }
}

async function readBytes(bytes: Buffer) {
  const file = path.join(directory, `${Math.random().toString(16).slice(2)}.sif`);
  await writeFile(file, bytes);
  return read(file);
}

async function expectInvalid(bytes: Buffer, message: RegExp) {
  const error = await readBytes(bytes).catch((caught: unknown) => caught);
  expect(hasErrorCode(error, 'ERR_GANTRY_INVALID_LAYOUT'), String(error)).toBe(true);
  expect((error as Error).message).toMatch(message);
}

describe('readSifImage', () => {
  it('reads the header and descriptors of the SIF file in skopeo’s test data (singularity 3.8)', async () => {
    const image = await read(busybox);
    expect(image.header).toMatchObject({
      launchScript: '#!/usr/bin/env run-singularity\n',
      architecture: 'amd64',
      id: '4f307b4c-58a8-4753-9c0f-21dceefed4a6',
      createdAt: 1627931376,
      modifiedAt: 1627931376,
      descriptorsTotal: 48,
      descriptorsFree: 43,
      descriptorsOffset: 4096,
      descriptorsSize: 48 * sifDescriptorSize,
    });
    expect(image.descriptors.map((d) => [d.id, d.dataType, d.name])).toEqual([
      [1, SifDataType.definitionFile, '.'],
      [2, SifDataType.genericJson, 'inspect-metadata.json'],
      [3, SifDataType.genericJson, 'oci-config.json'],
      [4, SifDataType.partition, 'squashfs-275937245'],
      [5, SifDataType.signature, '.'],
    ]);
    expect(image.descriptors[3]).toMatchObject({
      offset: 45056,
      size: 745472,
      partition: {
        fileSystemType: SifFileSystemType.squashfs,
        partitionType: SifPartitionType.primarySystem,
        architecture: 'amd64',
      },
    });
    const bytes = await readFile(busybox);
    const definition = image.descriptors[0]!;
    expect(bytes.subarray(definition.offset, definition.offset + definition.size).toString()).toBe(
      'BootStrap: docker\nFrom: busybox:1.33.1\n',
    );
    // The squashfs superblock magic "hsqs" starts the partition.
    expect(bytes.subarray(45056, 45060).toString('latin1')).toBe('hsqs');
  });

  it('reads back what the test writer lays out, free slots skipped', async () => {
    const bytes = buildSifFile({
      architecture: 'arm64',
      id: '00112233-4455-6677-8899-aabbccddeeff',
      createdAt: 1,
      modifiedAt: 2,
      descriptorCapacity: 4,
      objects: [
        { dataType: SifDataType.definitionFile, data: Buffer.from('def') },
        {
          dataType: SifDataType.partition,
          name: 'root',
          data: Buffer.from('hsqs-not-really'),
          partition: { fileSystemType: 1, partitionType: 2, architecture: 'arm64' },
        },
      ],
    });
    const image = await readBytes(bytes);
    expect(image.header).toMatchObject({
      architecture: 'arm64',
      id: '00112233-4455-6677-8899-aabbccddeeff',
      createdAt: 1,
      modifiedAt: 2,
      descriptorsTotal: 4,
      descriptorsFree: 2,
    });
    expect(image.descriptors).toHaveLength(2);
    const partition = image.descriptors[1]!;
    expect(partition.offset % 4096).toBe(0);
    expect(bytes.subarray(partition.offset, partition.offset + partition.size).toString()).toBe(
      'hsqs-not-really',
    );
    expect(selectSifDescriptor(image, (d) => d.partition?.partitionType === 2)).toBe(partition);
    expect(selectSifDescriptor(image, (d) => d.dataType === SifDataType.signature)).toBe('none');
    expect(selectSifDescriptor(image, () => true)).toBe('several');
  });

  it('names an unknown architecture code "unknown", as sylabs/sif does', async () => {
    const bytes = buildSifFile({ objects: [] });
    bytes.write('99\0', 45, 'latin1');
    expect((await readBytes(bytes)).header.architecture).toBe('unknown');
  });

  it('refuses files that are not SIF version 01, or whose tables or objects lie outside the file', async () => {
    const good = buildSifFile({
      objects: [{ dataType: SifDataType.definitionFile, data: Buffer.from('x') }],
    });
    await expectInvalid(Buffer.from('#!/bin/sh\necho not a SIF file\n'), /unexpected EOF/);
    const badMagic = Buffer.from(good);
    badMagic.write('NOT_MAGIC', 32, 'latin1');
    await expectInvalid(badMagic, /invalid SIF magic/);
    const badVersion = Buffer.from(good);
    badVersion.write('02', 42, 'latin1');
    await expectInvalid(badVersion, /incompatible SIF version/);
    await expectInvalid(good.subarray(0, 5000), /reading descriptors: unexpected EOF/);
    const tooManyDescriptors = Buffer.from(good);
    tooManyDescriptors.writeBigInt64LE(1000n, 88);
    await expectInvalid(tooManyDescriptors, /1000 descriptors do not fit/);
    const objectOutside = Buffer.from(good);
    objectOutside.writeBigInt64LE(BigInt(good.length), 4096 + 25); // size of object 1
    await expectInvalid(objectOutside, /object 1 .* lies outside the file/);
    const hugeOffset = Buffer.from(good);
    hugeOffset.writeBigInt64LE(1n << 60n, 96);
    await expectInvalid(hugeOffset, /descriptors offset .* is out of range/);
  });
});
