import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCodes, GantryError, hasErrorCode } from '../errors.js';
import type { ImageReference, Transport } from '../transport/contract.js';
import {
  defaultPolicyPath,
  evaluatePolicy,
  insecureAcceptAnythingPolicy,
  loadDefaultPolicy,
  parsePolicy,
  policyRequirementsFor,
} from './index.js';

/** A transport for tests: scopes must start with '/', like dir:. */
function fakeTransport(name: string, validated: string[] = []): Transport {
  return {
    specificationVersion: 'v1',
    name,
    parseReference: () => {
      throw new Error('not used');
    },
    validatePolicyConfigurationScope(scope: string) {
      validated.push(scope);
      if (!scope.startsWith('/'))
        throw new GantryError(ErrorCodes.InvalidReference, `scope ${scope} is not an absolute path`);
    },
  };
}

function fakeReference(transport: Transport, identity: string, namespaces: string[]): ImageReference {
  const fail = async (): Promise<never> => {
    throw new Error('not used');
  };
  return {
    transport,
    stringWithinTransport: () => identity,
    dockerReference: () => undefined,
    policyConfigurationIdentity: () => identity,
    policyConfigurationNamespaces: () => namespaces,
    newImageSource: fail,
    newImageDestination: fail,
    deleteImage: fail,
  };
}

const image = { manifest: { bytes: new TextEncoder().encode('{}'), mediaType: '' }, signatures: [] };

/** A policy where every scope says which scope it is through a distinct requirement list. */
function scopedPolicy(scopes: string[], transportName = 'fake'): string {
  const marker = (index: number) =>
    Array.from({ length: index + 1 }, () => ({ type: 'insecureAcceptAnything' }));
  return JSON.stringify({
    default: [{ type: 'reject' }],
    transports: { [transportName]: Object.fromEntries(scopes.map((scope, index) => [scope, marker(index)])) },
  });
}

describe('policyRequirementsFor chooses the scope like containers/image', () => {
  const transport = fakeTransport('fake');
  const reference = fakeReference(transport, '/a/b/c', ['/a/b', '/a']);
  const chosen = (scopes: string[]): string => {
    const policy = parsePolicy(scopedPolicy(scopes), 'test');
    const requirements = policyRequirementsFor(policy, reference);
    if (requirements === policy.default) return 'global default';
    return scopes[requirements.length - 1]!;
  };

  it.each([
    [['', '/a', '/a/b', '/a/b/c'], '/a/b/c'],
    [['/a/b/c', '/a/b', '/a', ''], '/a/b/c'],
    [['', '/a', '/a/b'], '/a/b'],
    [['/a', '/a/b'], '/a/b'],
    [['', '/a'], '/a'],
    [['', '/x'], ''],
    [['/x'], 'global default'],
    [[], 'global default'],
  ])('scopes %j → %s', (scopes, expected) => {
    expect(chosen(scopes)).toBe(expected);
  });

  it('uses the global default when the transport has no section', () => {
    const policy = parsePolicy(scopedPolicy(['', '/a'], 'other'), 'test');
    expect(policyRequirementsFor(policy, reference)).toBe(policy.default);
  });
});

describe('evaluatePolicy', () => {
  const transport = fakeTransport('fake');
  const reference = fakeReference(transport, '/images/app', ['/images']);

  it('accepts with insecureAcceptAnything', async () => {
    await expect(evaluatePolicy(insecureAcceptAnythingPolicy(), reference, image)).resolves.toBeUndefined();
  });

  it('rejects with reject, naming the image', async () => {
    const policy = parsePolicy('{"default":[{"type":"reject"}]}', 'test');
    await expect(evaluatePolicy(policy, reference, image)).rejects.toMatchObject({
      code: 'ERR_GANTRY_POLICY_REJECTED',
      message: 'Running image fake:/images/app is rejected by policy.',
    });
  });

  it('needs every requirement of the list to accept', async () => {
    const policy = parsePolicy('{"default":[{"type":"insecureAcceptAnything"},{"type":"reject"}]}', 'test');
    await expect(evaluatePolicy(policy, reference, image)).rejects.toMatchObject({
      code: 'ERR_GANTRY_POLICY_REJECTED',
    });
  });

  it('applies the scope that matches: namespace accepts while the default rejects', async () => {
    const policy = parsePolicy(
      JSON.stringify({
        default: [{ type: 'reject' }],
        transports: {
          fake: { '/images': [{ type: 'insecureAcceptAnything' }], '/images/other': [{ type: 'reject' }] },
        },
      }),
      'test',
    );
    await expect(evaluatePolicy(policy, reference, image)).resolves.toBeUndefined();
    await expect(
      evaluatePolicy(policy, fakeReference(transport, '/elsewhere', []), image),
    ).rejects.toMatchObject({
      code: 'ERR_GANTRY_POLICY_REJECTED',
    });
  });

  it.each([
    ['signedBy', '{"type":"signedBy","keyType":"GPGKeys","keyPath":"/key.gpg"}'],
    ['sigstoreSigned', '{"type":"sigstoreSigned","keyPath":"/cosign.pub"}'],
  ])('rejects an unsigned image under %s', async (_type, requirement) => {
    const policy = parsePolicy(`{"default":[{"type":"insecureAcceptAnything"},${requirement}]}`, 'test');
    await expect(evaluatePolicy(policy, reference, image)).rejects.toMatchObject({
      code: 'ERR_GANTRY_POLICY_REJECTED',
      message: 'A signature was required, but no signature exists',
    });
  });

  it('rejects signedBaseLayer, which containers/image does not implement either', async () => {
    const policy = parsePolicy(
      '{"default":[{"type":"signedBaseLayer","baseLayerIdentity":{"type":"matchRepository"}}]}',
      'test',
    );
    await expect(evaluatePolicy(policy, reference, image)).rejects.toThrow(
      'signedBaseLayer not implemented yet!',
    );
  });

  it('validates the scopes of the evaluated transport only, once', async () => {
    const validated: string[] = [];
    const checkedTransport = fakeTransport('fake', validated);
    const policy = parsePolicy(
      JSON.stringify({
        default: [{ type: 'insecureAcceptAnything' }],
        transports: {
          fake: { '': [{ type: 'insecureAcceptAnything' }], '/ok': [{ type: 'insecureAcceptAnything' }] },
          unknowntransport: { 'not a path': [{ type: 'reject' }] },
        },
      }),
      'test',
    );
    const checkedReference = fakeReference(checkedTransport, '/ok', []);
    await evaluatePolicy(policy, checkedReference, image);
    await evaluatePolicy(policy, checkedReference, image);
    expect(validated).toEqual(['/ok']);
  });

  it('refuses a policy whose scope is invalid for the transport', async () => {
    const policy = parsePolicy(
      JSON.stringify({
        default: [{ type: 'insecureAcceptAnything' }],
        transports: { fake: { relative: [{ type: 'reject' }] } },
      }),
      '/etc/p.json',
    );
    const evaluation = evaluatePolicy(policy, reference, image);
    await expect(evaluation).rejects.toMatchObject({ code: 'ERR_GANTRY_INVALID_POLICY' });
    await expect(evaluation).rejects.toThrow(
      'invalid policy in "/etc/p.json": transports["fake"]["relative"]: invalid scope for transport "fake": scope relative is not an absolute path',
    );
  });
});

describe('default policy lookup', () => {
  let directory: string;
  let savedHome: string | undefined;
  beforeEach(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
    savedHome = process.env.HOME;
    process.env.HOME = directory;
  });
  afterEach(async () => {
    if (savedHome === undefined) delete process.env.HOME;
    else process.env.HOME = savedHome;
    await rm(directory, { recursive: true, force: true });
  });

  it('prefers $HOME/.config/containers/policy.json', async () => {
    const userFile = path.join(directory, '.config', 'containers', 'policy.json');
    await mkdir(path.dirname(userFile), { recursive: true });
    await writeFile(userFile, '{"default":[{"type":"reject"}]}');
    expect(await defaultPolicyPath()).toBe(userFile);
    const policy = await loadDefaultPolicy();
    expect(policy.source).toBe(userFile);
    expect(policy.default).toEqual([{ type: 'reject' }]);
  });

  it('falls back to /etc/containers/policy.json', async () => {
    expect(await defaultPolicyPath()).toBe('/etc/containers/policy.json');
    expect((await loadDefaultPolicy()).source).toBe('/etc/containers/policy.json');
  });

  it('fails naming both paths and suggesting --insecure-policy when neither exists', async () => {
    const systemPolicyPath = path.join(directory, 'no-such-system-policy.json');
    const userFile = path.join(directory, '.config', 'containers', 'policy.json');
    let thrown: unknown;
    try {
      await loadDefaultPolicy({ systemPolicyPath });
    } catch (error) {
      thrown = error;
    }
    expect(hasErrorCode(thrown, 'ERR_GANTRY_INVALID_POLICY')).toBe(true);
    const message = (thrown as Error).message;
    expect(message).toContain(
      `no policy.json file found at any of the following: "${userFile}", "${systemPolicyPath}"`,
    );
    expect(message).toContain('--insecure-policy');
  });

  it('reports an invalid user policy instead of falling back', async () => {
    const userFile = path.join(directory, '.config', 'containers', 'policy.json');
    await mkdir(path.dirname(userFile), { recursive: true });
    await writeFile(userFile, '{"default":[]}');
    await expect(loadDefaultPolicy()).rejects.toThrow(
      `invalid policy in "${userFile}": default: List of verification`,
    );
  });
});
