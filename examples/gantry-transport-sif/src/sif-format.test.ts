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
import { siftool } from './test-support/siftool.js';

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

  it('writes files that sylabs/sif’s own reader (Debian’s siftool) lists as this reader does', async () => {
    const bytes = buildSifFile({
      architecture: 'arm64',
      id: '00112233-4455-6677-8899-aabbccddeeff',
      createdAt: 1_700_000_000,
      objects: [
        { dataType: SifDataType.definitionFile, data: Buffer.from('Bootstrap: scratch\n') },
        { dataType: SifDataType.genericJson, name: 'meta.json', data: Buffer.from('{}') },
        {
          dataType: SifDataType.partition,
          name: 'root',
          data: Buffer.alloc(5000, 1),
          partition: { fileSystemType: 1, partitionType: 2, architecture: 'arm64' },
        },
      ],
    });
    const file = path.join(directory, 'for-siftool.sif');
    await writeFile(file, bytes);
    const header = siftool('header', file);
    expect(header).toMatch(/Primary Architecture:\s+arm64/);
    expect(header).toMatch(/ID:\s+00112233-4455-6677-8899-aabbccddeeff/);
    expect(header).toMatch(/Descriptors Free:\s+45/);
    expect(header).toMatch(/Data Offset:\s+32176/);
    const image = await read(file);
    const listed = siftool('list', file)
      .split('\n')
      .filter((line) => /^\d+\s+\|/.test(line))
      .map((line) => line.split('|').map((cell) => cell.trim()));
    expect(listed.map(([id, , , position, type]) => [Number(id), position, type])).toEqual([
      [1, `${image.descriptors[0]!.offset}-${image.descriptors[0]!.offset + 19}`, 'Def.FILE'],
      [2, `${image.descriptors[1]!.offset}-${image.descriptors[1]!.offset + 2}`, 'JSON.Generic'],
      [
        3,
        `${image.descriptors[2]!.offset}-${image.descriptors[2]!.offset + 5000}`,
        'FS (Squashfs/*System/arm64)',
      ],
    ]);
    expect(siftool('dump', '1', file)).toBe('Bootstrap: scratch\n');
  });

  it('reads what sylabs/sif’s own writer (Debian’s siftool) writes', async () => {
    const file = path.join(directory, 'by-siftool.sif');
    const definition = path.join(directory, 'recipe.def');
    const partition = path.join(directory, 'rootfs.squashfs');
    await writeFile(definition, 'Bootstrap: scratch\n%runscript\n  echo hi\n');
    await writeFile(partition, Buffer.alloc(10000, 7));
    siftool('new', file);
    siftool('add', file, definition, '--datatype', '1');
    siftool(
      'add',
      file,
      partition,
      '--datatype',
      '4',
      '--parttype',
      '2',
      '--partfs',
      '1',
      '--partarch',
      '11',
    );
    const image = await read(file);
    expect(image.header.architecture).toBe('s390x');
    expect(image.descriptors.map((d) => [d.dataType, d.size, d.partition?.partitionType])).toEqual([
      [SifDataType.definitionFile, 40, undefined],
      [SifDataType.partition, 10000, SifPartitionType.primarySystem],
    ]);
    const bytes = await readFile(file);
    const root = image.descriptors[1]!;
    expect(root.offset % 4096).toBe(0);
    expect(bytes.subarray(root.offset, root.offset + root.size).equals(Buffer.alloc(10000, 7))).toBe(true);
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
