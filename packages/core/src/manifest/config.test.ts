import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.js';
import {
  inspectConfigFields,
  ociConfigBytesFromDockerConfig,
  ociImageValue,
  parseImageConfig,
} from './config.js';
import { goJsonMarshal } from './go-json.js';

const bytesOf = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));
const invalidManifest = expect.objectContaining({ code: ErrorCodes.InvalidManifest });

describe('parseImageConfig', () => {
  it('types the fields Gantry reads and keeps everything in raw', () => {
    const config = parseImageConfig(
      bytesOf({
        created: '2024-01-01T00:00:00Z',
        author: 'me',
        architecture: 'arm64',
        variant: 'v8',
        os: 'linux',
        docker_version: '24',
        config: { Env: ['A=1'], Labels: { a: 'b' } },
        rootfs: { type: 'layers', diff_ids: [] },
        history: [{ created_by: 'x' }],
        custom: 1,
      }),
    );
    expect(config).toMatchObject({
      created: '2024-01-01T00:00:00Z',
      author: 'me',
      architecture: 'arm64',
      variant: 'v8',
      os: 'linux',
      dockerVersion: '24',
      config: { Env: ['A=1'], Labels: { a: 'b' } },
      rootfs: { type: 'layers', diff_ids: [] },
      history: [{ created_by: 'x' }],
    });
    expect(config.raw.custom).toBe(1);
  });

  it.each([['not json'], ['[1]'], ['"text"']])('rejects %s', (text) => {
    expect(() => parseImageConfig(new TextEncoder().encode(text))).toThrow(invalidManifest);
  });
});

describe('ociImageValue (Go decoding into image-spec Image)', () => {
  it('matches keys case-insensitively, drops unknown fields, applies omitempty', () => {
    const value = ociImageValue(
      bytesOf({
        Architecture: 'amd64',
        OS: 'linux',
        Config: { env: ['A=1'], labels: {} },
        RootFS: { Type: 'layers' },
        junk: 1,
      }),
    );
    expect(goJsonMarshal(value)).toBe(
      '{"architecture":"amd64","os":"linux","config":{"Env":["A=1"]},"rootfs":{"type":"layers","diff_ids":null}}',
    );
  });

  it('keeps empty slices that are not omitempty and re-formats times', () => {
    const bytes = ociConfigBytesFromDockerConfig(
      bytesOf({
        created: '2024-01-01T00:00:00.000Z',
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [] },
        history: [{ created: '2024-01-01T00:00:00.5+00:00', empty_layer: false }, null],
      }),
    );
    expect(new TextDecoder().decode(bytes)).toBe(
      '{"created":"2024-01-01T00:00:00Z","architecture":"amd64","os":"linux","config":{},' +
        '"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created":"2024-01-01T00:00:00.5Z"},{}]}',
    );
  });

  it.each([
    [{ architecture: 1 }],
    [{ created: 'yesterday' }],
    [{ config: { Env: 'A=1' } }],
    [{ config: { Labels: { a: 1 } } }],
    [{ config: { ExposedPorts: { '80/tcp': 1 } } }],
    [{ history: [1] }],
    [{ rootfs: [] }],
  ])('rejects type errors like Go: %j', (value) => {
    expect(() => ociImageValue(bytesOf(value))).toThrow(invalidManifest);
  });
});

describe('inspectConfigFields', () => {
  it('uses nil for a missing OCI created and Go zero time for Docker', () => {
    const bytes = bytesOf({ architecture: 'amd64', os: 'linux' });
    expect(inspectConfigFields(bytes, 'oci')).toEqual({
      created: null,
      dockerVersion: '',
      labels: null,
      architecture: 'amd64',
      variant: '',
      os: 'linux',
      env: null,
    });
    expect(inspectConfigFields(bytes, 'docker').created).toBe('0001-01-01T00:00:00Z');
  });

  it('reads labels and env from the config section (any key case)', () => {
    const fields = inspectConfigFields(bytesOf({ Config: { Labels: { b: '1', a: '2' }, Env: [] } }), 'oci');
    expect(fields.labels).toEqual(
      new Map([
        ['b', '1'],
        ['a', '2'],
      ]),
    );
    expect(fields.env).toEqual([]);
  });
});
