import { describe, expect, it } from 'vitest';
import { parseNormalizedNamed } from '../reference/index.js';
import { signedIdentityMatches } from './reference-match.js';
import type { PolicyReferenceMatch } from './types.js';

const digest = `sha256:${'a'.repeat(64)}`;
const image = (text: string | undefined) => (text === undefined ? undefined : parseNormalizedNamed(text));

// [rule, image reference (undefined: the transport has none), signed reference, expected]
const cases: Array<[PolicyReferenceMatch, string | undefined, string, boolean]> = [
  [{ type: 'matchExact' }, 'example.com/a/b:v1', 'example.com/a/b:v1', true],
  [{ type: 'matchExact' }, 'busybox:latest', 'docker.io/library/busybox:latest', true],
  [{ type: 'matchExact' }, 'example.com/a/b:v1', 'example.com/a/b:v2', false],
  [{ type: 'matchExact' }, `example.com/a/b@${digest}`, `example.com/a/b@${digest}`, true],
  [{ type: 'matchExact' }, `example.com/a/b@${digest}`, 'example.com/a/b:v1', false],
  [{ type: 'matchExact' }, 'example.com/a/b', 'example.com/a/b', false],
  [{ type: 'matchExact' }, undefined, 'example.com/a/b:v1', false],
  [{ type: 'matchRepoDigestOrExact' }, 'example.com/a/b:v1', 'example.com/a/b:v1', true],
  [{ type: 'matchRepoDigestOrExact' }, 'example.com/a/b:v1', 'example.com/a/b:v2', false],
  [{ type: 'matchRepoDigestOrExact' }, `example.com/a/b@${digest}`, 'example.com/a/b:any', true],
  [{ type: 'matchRepoDigestOrExact' }, `example.com/a/b@${digest}`, 'example.com/a/c:any', false],
  [{ type: 'matchRepoDigestOrExact' }, `example.com/a/b@${digest}`, 'example.com/a/b', false],
  [{ type: 'matchRepository' }, 'example.com/a/b:v1', 'example.com/a/b:v9', true],
  [{ type: 'matchRepository' }, 'example.com/a/b:v1', 'example.com/a/b', true],
  [{ type: 'matchRepository' }, 'example.com/a/b:v1', 'example.com/a/bc:v1', false],
  [{ type: 'exactReference', dockerReference: 'example.com/a/b:v1' }, undefined, 'example.com/a/b:v1', true],
  [
    { type: 'exactReference', dockerReference: 'example.com/a/b:v1' },
    'other.example/x:y',
    'example.com/a/b:v2',
    false,
  ],
  [{ type: 'exactRepository', dockerRepository: 'example.com/a/b' }, undefined, 'example.com/a/b:v7', true],
  [{ type: 'exactRepository', dockerRepository: 'example.com/a/b' }, undefined, 'example.com/a/c:v7', false],
  [
    { type: 'remapIdentity', prefix: 'mirror.example/team', signedPrefix: 'example.com/team' },
    'mirror.example/team/app:v1',
    'example.com/team/app:v1',
    true,
  ],
  [
    { type: 'remapIdentity', prefix: 'mirror.example/team', signedPrefix: 'example.com/team' },
    'mirror.example/teams/app:v1',
    'example.com/team/app:v1',
    false,
  ],
  [
    { type: 'remapIdentity', prefix: 'mirror.example/team', signedPrefix: 'example.com/team' },
    'example.com/team/app:v1',
    'example.com/team/app:v1',
    true,
  ],
  [{ type: 'matchExact' }, 'example.com/a/b:v1', 'Not A Reference', false],
];

describe('signedIdentityMatches decides like containers/image', () => {
  it.each(cases)('%j, image %s, signed %s → %s', (rule, imageReference, signed, expected) => {
    expect(signedIdentityMatches(rule, image(imageReference), signed)).toBe(expected);
  });
});
