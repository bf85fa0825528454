import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasErrorCode } from '../errors.js';
import { insecureAcceptAnythingPolicy, loadPolicy, parsePolicy } from './index.js';

const execFileAsync = promisify(execFile);

function parseError(text: string): Error {
  try {
    parsePolicy(text, 'test.json');
  } catch (error) {
    expect(hasErrorCode(error, 'ERR_GANTRY_INVALID_POLICY')).toBe(true);
    return error as Error;
  }
  throw new Error(`expected ${text} to be refused`);
}

const reject = '{"type":"reject"}';
const accept = '{"type":"insecureAcceptAnything"}';
const withDefault = (rest: string): string => `{"default":[${reject}]${rest}}`;
const withRequirement = (requirement: string): string => `{"default":[${requirement}]}`;
const signedByKey = '"type":"signedBy","keyType":"GPGKeys","keyPath":"/k.gpg"';

// Each invalid policy, and the text the error must contain (where and what).
const invalidPolicies: Array<[string, string, string]> = [
  ['not JSON', '{"default": [', 'unexpected end of JSON input'],
  ['duplicate key', `{"default":[${reject}],"default":[${accept}]}`, 'Duplicate key "default"'],
  ['trailing data', `${withDefault('')} {}`, 'unexpected data after the JSON value'],
  ['top level not an object', '[]', 'JSON object expected, got an array'],
  ['unknown top-level key', withDefault(',"bogus":1'), 'Unknown key "bogus"'],
  ['default missing', '{"transports":{}}', 'Default policy is missing'],
  ['default null', '{"default":null}', 'Default policy is missing'],
  ['default empty', '{"default":[]}', 'default: List of verification policy requirements must not be empty'],
  [
    'default not a list',
    `{"default":${reject}}`,
    'default: a list of policy requirements must be a JSON array, got an object',
  ],
  [
    'transports null',
    withDefault(',"transports":null'),
    'transports: "transports" must be a JSON object, got null',
  ],
  [
    'transport scopes not an object',
    withDefault(',"transports":{"docker":[]}'),
    'transports.docker: the scopes of transport "docker" must be a JSON object',
  ],
  [
    'scope list empty',
    withDefault(',"transports":{"docker":{"example.com":[]}}'),
    'transports.docker["example.com"]: List of verification policy requirements must not be empty',
  ],
  [
    'requirement not an object',
    withRequirement('"reject"'),
    'default[0]: policy requirement must be a JSON object, got a string',
  ],
  ['requirement type missing', withRequirement('{}'), 'default[0]: Unknown policy requirement type ""'],
  [
    'requirement type unknown',
    withRequirement('{"type":"rejectt"}'),
    'Unknown policy requirement type "rejectt"',
  ],
  [
    'requirement type not a string',
    withRequirement('{"type":1}'),
    'default[0].type: "type" must be a string, got a number',
  ],
  [
    'extra key on reject',
    withRequirement('{"type":"reject","keyPath":"/x"}'),
    'default[0]: Unknown key "keyPath"',
  ],
  [
    'extra key on insecureAcceptAnything',
    withRequirement('{"type":"insecureAcceptAnything","x":1}'),
    'Unknown key "x"',
  ],
  [
    'signedBy without key',
    withRequirement('{"type":"signedBy","keyType":"GPGKeys"}'),
    'Exactly one of keyPath, keyPaths and keyData must be specified, none of them present',
  ],
  [
    'signedBy with two keys',
    withRequirement(`{${signedByKey},"keyData":"YQ=="}`),
    'Exactly one of keyPath, keyPaths and keyData must be specified, more than one present',
  ],
  [
    'signedBy bad keyType',
    withRequirement('{"type":"signedBy","keyType":"PGP","keyPath":"/k"}'),
    'default[0].keyType: Unrecognized keyType value "PGP"',
  ],
  ['signedBy keyType missing', withRequirement('{"type":"signedBy","keyPath":"/k"}'), 'invalid keyType ""'],
  [
    'signedBy empty keyPath',
    withRequirement('{"type":"signedBy","keyType":"GPGKeys","keyPath":""}'),
    'exactly one of keyPath, keyPaths and keyData must be specified',
  ],
  [
    'signedBy keyPaths not strings',
    withRequirement('{"type":"signedBy","keyType":"GPGKeys","keyPaths":[1]}'),
    '"keyPaths" must be an array of strings',
  ],
  [
    'signedBy keyData not base64',
    withRequirement('{"type":"signedBy","keyType":"GPGKeys","keyData":"YQ="}'),
    'default[0].keyData: "keyData" must be base64-encoded data',
  ],
  ['signedBy unknown key', withRequirement(`{${signedByKey},"keyFile":"/k"}`), 'Unknown key "keyFile"'],
  [
    'signedIdentity unknown type',
    withRequirement(`{${signedByKey},"signedIdentity":{"type":"matchAll"}}`),
    'default[0].signedIdentity: Unknown policy reference match type "matchAll"',
  ],
  [
    'signedIdentity extra key',
    withRequirement(`{${signedByKey},"signedIdentity":{"type":"matchExact","x":1}}`),
    'Unknown key "x"',
  ],
  [
    'exactReference without tag',
    withRequirement(
      `{${signedByKey},"signedIdentity":{"type":"exactReference","dockerReference":"busybox"}}`,
    ),
    'dockerReference "busybox" contains neither a tag nor digest',
  ],
  [
    'exactReference invalid',
    withRequirement(`{${signedByKey},"signedIdentity":{"type":"exactReference","dockerReference":"Busy:1"}}`),
    'Invalid format of dockerReference "Busy:1": invalid reference format: repository name (library/Busy) must be lowercase',
  ],
  [
    'exactReference missing field',
    withRequirement(`{${signedByKey},"signedIdentity":{"type":"exactReference"}}`),
    'Key "dockerReference" missing in a JSON object',
  ],
  [
    'exactRepository invalid',
    withRequirement(`{${signedByKey},"signedIdentity":{"type":"exactRepository","dockerRepository":"a//b"}}`),
    'Invalid format of dockerRepository "a//b": invalid reference format',
  ],
  [
    'remapIdentity bad prefix',
    withRequirement(
      `{${signedByKey},"signedIdentity":{"type":"remapIdentity","prefix":"example.com/ns","signedPrefix":"b.example/ns:tag"}}`,
    ),
    'default[0].signedIdentity.signedPrefix: prefix "b.example/ns:tag" is not valid',
  ],
  [
    'signedBaseLayer missing identity',
    withRequirement('{"type":"signedBaseLayer"}'),
    'Key "baseLayerIdentity" missing in a JSON object',
  ],
  [
    'sigstoreSigned without key',
    withRequirement('{"type":"sigstoreSigned"}'),
    'exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified',
  ],
  [
    'sigstoreSigned two keys',
    withRequirement('{"type":"sigstoreSigned","keyPath":"/k","keyData":"YQ=="}'),
    'exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified',
  ],
  [
    'sigstoreSigned empty keyPaths',
    withRequirement('{"type":"sigstoreSigned","keyPaths":[]}'),
    '"keyPaths" contains no entries',
  ],
  [
    'sigstoreSigned two rekor keys',
    withRequirement(
      '{"type":"sigstoreSigned","keyPath":"/k","rekorPublicKeyPath":"/r","rekorPublicKeyData":"YQ=="}',
    ),
    'at most one of rekorPublicKeyPath',
  ],
  [
    'sigstoreSigned fulcio without rekor',
    withRequirement(
      '{"type":"sigstoreSigned","fulcio":{"caPath":"/ca","oidcIssuer":"https://i","subjectEmail":"a@b"}}',
    ),
    'must be specified if fulcio is used',
  ],
  [
    'fulcio without issuer',
    withRequirement(
      '{"type":"sigstoreSigned","rekorPublicKeyPath":"/r","fulcio":{"caPath":"/ca","subjectEmail":"a@b"}}',
    ),
    'default[0].fulcio: oidcIssuer not specified',
  ],
  [
    'fulcio with both CA forms',
    withRequirement(
      '{"type":"sigstoreSigned","rekorPublicKeyPath":"/r","fulcio":{"caPath":"/ca","caData":"YQ==","oidcIssuer":"i","subjectEmail":"a@b"}}',
    ),
    'caPath and caData cannot be used simultaneously',
  ],
  [
    'pki with rekor',
    withRequirement(
      '{"type":"sigstoreSigned","rekorPublicKeyPath":"/r","pki":{"caRootsPath":"/r","subjectEmail":"a@b"}}',
    ),
    'not supported for pki',
  ],
  [
    'pki without subject',
    withRequirement('{"type":"sigstoreSigned","pki":{"caRootsPath":"/r"}}'),
    'At least one of subjectEmail, subjectHostname must be specified',
  ],
  [
    'pki unknown key',
    withRequirement('{"type":"sigstoreSigned","pki":{"caRootsPath":"/r","subjectEmail":"a@b","x":1}}'),
    'default[0].pki: Unknown key "x"',
  ],
];

describe('parsePolicy refuses invalid policies, naming the problem', () => {
  it.each(invalidPolicies)('%s', (_description, text, expected) => {
    const error = parseError(text);
    expect(error.message.startsWith('invalid policy in "test.json": ')).toBe(true);
    expect(error.message).toContain(expected);
  });
});

describe('parsePolicy reads valid policies', () => {
  it('reads scopes and requirements, with matchRepoDigestOrExact as the default identity', () => {
    const policy = parsePolicy(
      JSON.stringify({
        default: [{ type: 'reject' }],
        transports: {
          docker: {
            '': [{ type: 'insecureAcceptAnything' }],
            'example.com/signed': [{ type: 'signedBy', keyType: 'GPGKeys', keyData: 'YWJj' }],
            'example.com/sigstore': [
              {
                type: 'sigstoreSigned',
                keyPaths: ['/a.pub', '/b.pub'],
                signedIdentity: { type: 'matchRepository' },
              },
            ],
            'example.com/fulcio': [
              {
                type: 'sigstoreSigned',
                fulcio: { caPath: '/ca.pem', oidcIssuer: 'https://issuer', subjectEmail: 'a@example.com' },
                rekorPublicKeyPath: '/rekor.pub',
              },
            ],
          },
          dir: {
            '/srv/images': [
              {
                type: 'signedBaseLayer',
                baseLayerIdentity: { type: 'exactRepository', dockerRepository: 'x/y' },
              },
            ],
          },
        },
      }),
      'inline',
    );
    expect(policy.source).toBe('inline');
    expect(policy.default).toEqual([{ type: 'reject' }]);
    const docker = policy.transports.get('docker')!;
    expect([...docker.keys()]).toEqual([
      '',
      'example.com/signed',
      'example.com/sigstore',
      'example.com/fulcio',
    ]);
    expect(docker.get('example.com/signed')).toEqual([
      {
        type: 'signedBy',
        keyType: 'GPGKeys',
        keyData: new Uint8Array([0x61, 0x62, 0x63]),
        signedIdentity: { type: 'matchRepoDigestOrExact' },
      },
    ]);
    expect(docker.get('example.com/sigstore')).toEqual([
      { type: 'sigstoreSigned', keyPaths: ['/a.pub', '/b.pub'], signedIdentity: { type: 'matchRepository' } },
    ]);
    expect(docker.get('example.com/fulcio')![0]).toMatchObject({
      type: 'sigstoreSigned',
      fulcio: { caPath: '/ca.pem', oidcIssuer: 'https://issuer', subjectEmail: 'a@example.com' },
      rekorPublicKeyPath: '/rekor.pub',
    });
    expect(policy.transports.get('dir')!.get('/srv/images')).toEqual([
      { type: 'signedBaseLayer', baseLayerIdentity: { type: 'exactRepository', dockerRepository: 'x/y' } },
    ]);
  });

  it('returns an immutable policy', () => {
    const policy = parsePolicy(`{"default":[${reject}],"transports":{"docker":{"":[${accept}]}}}`, 'inline');
    expect(Object.isFrozen(policy)).toBe(true);
    expect(Object.isFrozen(policy.default)).toBe(true);
    expect(Object.isFrozen(policy.default[0])).toBe(true);
    expect(() => (policy.transports as Map<string, unknown>).set('dir', new Map())).toThrow(TypeError);
    expect(() => (policy.transports as Map<string, unknown>).delete('docker')).toThrow(TypeError);
    expect(() => (policy.transports.get('docker') as Map<string, unknown>).clear()).toThrow(TypeError);
    expect(policy.transports.size).toBe(1);
  });

  it('insecureAcceptAnythingPolicy accepts anything by default', () => {
    const policy = insecureAcceptAnythingPolicy();
    expect(policy.default).toEqual([{ type: 'insecureAcceptAnything' }]);
    expect(policy.transports.size).toBe(0);
    expect(Object.isFrozen(policy)).toBe(true);
  });
});

describe('loadPolicy', () => {
  let directory: string;
  beforeAll(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  });
  afterAll(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('names the file in parse errors and read errors', async () => {
    const file = path.join(directory, 'bad.json');
    await writeFile(file, withDefault(',"bogus":true'));
    await expect(loadPolicy(file)).rejects.toMatchObject({
      code: 'ERR_GANTRY_INVALID_POLICY',
      message: `invalid policy in "${file}": Unknown key "bogus"`,
    });
    const missing = path.join(directory, 'missing.json');
    await expect(loadPolicy(missing)).rejects.toMatchObject({
      code: 'ERR_GANTRY_INVALID_POLICY',
      message: `open ${missing}: no such file or directory`,
    });
  });

  it("loads Debian's /etc/containers/policy.json (installed with skopeo)", async () => {
    const policy = await loadPolicy('/etc/containers/policy.json');
    expect(policy.source).toBe('/etc/containers/policy.json');
    expect(policy.default.length).toBeGreaterThan(0);
  });

  it('loads the locked-down example of containers-policy.json(5), as skopeo does', async () => {
    const { stdout } = await execFileAsync('sh', ['-c', 'man 5 containers-policy.json | col -b'], {
      env: { ...process.env, MANWIDTH: '200', MAN_KEEP_FORMATTING: '' },
    });
    const section = stdout.slice(
      stdout.indexOf('A reasonably locked-down system'),
      stdout.indexOf('Completely disable security'),
    );
    const example = section
      .slice(section.indexOf('{'), section.lastIndexOf('}') + 1)
      .replace(/\/\*[\s\S]*?\*\//g, '');
    const file = path.join(directory, 'man-example.json');
    await writeFile(file, example);
    const policy = await loadPolicy(file);
    expect(policy.default).toEqual([{ type: 'reject' }]);
    expect([...policy.transports.keys()]).toEqual(['docker', 'dir', 'atomic']);
    expect(policy.transports.get('atomic')!.get('private-mirror:5000/vendor-mirror')![0]).toMatchObject({
      type: 'signedBy',
      signedIdentity: {
        type: 'remapIdentity',
        prefix: 'private-mirror:5000/vendor-mirror',
        signedPrefix: 'vendor.example.com',
      },
    });
    expect(await skopeoAcceptsPolicy(file)).toBe(true);
  });
});

/**
 * Runs the real skopeo with `--policy file` on a copy whose source does not exist: skopeo loads the
 * policy first, so "Error loading trust policy" means it refused the policy.
 */
async function skopeoAcceptsPolicy(file: string): Promise<boolean> {
  try {
    await execFileAsync('skopeo', [
      '--policy',
      file,
      'copy',
      'dir:/nonexistent-gantry-source',
      'dir:/nonexistent-gantry-destination',
    ]);
    throw new Error('skopeo copy from a missing directory unexpectedly succeeded');
  } catch (error) {
    const failure = error as { code?: unknown; stderr?: string };
    if (failure.code === 'ENOENT')
      throw new Error('skopeo is not installed (/usr/bin/skopeo); it is required for this test');
    const stderr = failure.stderr ?? '';
    if (stderr.includes('Error loading trust policy')) return false;
    if (stderr.includes('/nonexistent-gantry-source')) return true;
    throw new Error(`unexpected skopeo output: ${stderr}`);
  }
}

describe('agreement with skopeo on accepting or refusing policies', () => {
  let directory: string;
  beforeAll(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  });
  afterAll(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  // Only features of skopeo 1.9 (Debian) are used: it predates keyDatas, keyPaths for sigstore and pki.
  const cases: string[] = [
    withDefault(''),
    withDefault(',"transports":{"docker":{"":[{"type":"insecureAcceptAnything"}]}}'),
    withRequirement(`{${signedByKey}}`),
    withRequirement('{"type":"signedBy","keyType":"GPGKeys","keyPaths":["/a","/b"]}'),
    withRequirement('{"type":"sigstoreSigned","keyData":"YQ==","signedIdentity":{"type":"matchExact"}}'),
    withRequirement(
      `{${signedByKey},"signedIdentity":{"type":"exactReference","dockerReference":"busybox:1"}}`,
    ),
    withRequirement(
      `{${signedByKey},"signedIdentity":{"type":"remapIdentity","prefix":"a.example/ns","signedPrefix":"b.example"}}`,
    ),
    ...invalidPolicies
      .filter(
        ([description]) => !/pki|keyPaths|fulcio|rekor/.test(description) || description.includes('signedBy'),
      )
      .map(([, text]) => text),
  ];

  it.each(cases)('%s', async (text) => {
    const file = path.join(directory, 'policy.json');
    await writeFile(file, text);
    let ours = true;
    try {
      parsePolicy(text, file);
    } catch {
      ours = false;
    }
    expect(ours).toBe(await skopeoAcceptsPolicy(file));
  });
});
