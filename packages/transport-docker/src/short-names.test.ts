/**
 * Short-name resolution of docker:// references through registries.conf, against two real
 * registries (the search order is visible in their access logs).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { copyImage, insecureAcceptAnythingPolicy, parsePolicy } from '@gantry/core';
import { type FixtureImage, fixturePresets } from '@gantry/core/testing';
import { digestOf, ErrorCodes, type TransportContext } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveDockerImageReference } from './reference.js';
import { startTestRegistry, type TestRegistry } from './testing/registry-server.js';
import { buildImage, dockerContext, pushFixture } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

let first: TestRegistry;
let second: TestRegistry;
let directory: string;
/** In `second` only, as only-second/app:v1. */
let image: FixtureImage;
/** both/app:v1 in `first`. */
let firstImage: FixtureImage;
/** both/app:v1 in `second`. */
let secondImage: FixtureImage;
const transport = createDockerTransport();
const plain = dockerContext({ tlsVerify: false });
let configurationCount = 0;

beforeAll(async () => {
  [first, second] = await Promise.all([startTestRegistry(), startTestRegistry()]);
  directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  [image, firstImage, secondImage] = await Promise.all([
    buildImage(fixturePresets.ociMinimal!, path.join(directory, 'image')),
    buildImage(fixturePresets.dockerSchema2!, path.join(directory, 'first')),
    buildImage(fixturePresets.uncompressedLayers!, path.join(directory, 'second')),
  ]);
  await pushFixture(transport, second, 'only-second/app:v1', image, plain);
  await pushFixture(transport, first, 'both/app:v1', firstImage, plain);
  await pushFixture(transport, second, 'both/app:v1', secondImage, plain);
}, 60_000);

afterAll(async () => {
  await transport.closeConnections();
  await first?.stop();
  await second?.stop();
  if (directory) await rm(directory, { recursive: true, force: true });
});

interface ConfigurationOptions {
  search?: TestRegistry[];
  mode?: 'enforcing' | 'permissive' | 'disabled';
  aliases?: Record<string, string>;
  blocked?: TestRegistry[];
}

/**
 * A context with a registries.conf of its own (the system's drop-ins are still merged, as
 * containers/image does; the names used here are in none of them). Both registries are insecure
 * (plain HTTP) through registries.conf, so no tlsVerify is given.
 */
async function contextWith(options: ConfigurationOptions): Promise<TransportContext> {
  const lines: string[] = [];
  if (options.search) {
    lines.push(`unqualified-search-registries = [${options.search.map((r) => `"${r.host}"`).join(', ')}]`);
  }
  if (options.mode) lines.push(`short-name-mode = "${options.mode}"`);
  for (const registry of [first, second]) {
    const blocked = options.blocked?.includes(registry) ?? false;
    lines.push('[[registry]]', `location = "${registry.host}"`, 'insecure = true', `blocked = ${blocked}`);
  }
  if (options.aliases) {
    lines.push('[aliases]');
    for (const [name, value] of Object.entries(options.aliases)) lines.push(`"${name}" = "${value}"`);
  }
  const file = path.join(directory, `registries-${configurationCount++}.conf`);
  await writeFile(file, `${lines.join('\n')}\n`);
  return { registriesConfPath: file };
}

async function clearLogs(): Promise<void> {
  // Lines of earlier requests may still be on their way.
  await Promise.all([first.accessLog(), second.accessLog()]);
  first.clearAccessLog();
  second.clearAccessLog();
}

async function pathsSeen(registry: TestRegistry, fragment: string): Promise<string[]> {
  return (await registry.accessLog())
    .filter((entry) => entry.path.includes(fragment))
    .map((entry) => `${entry.method} ${entry.path} ${entry.status}`);
}

describe('docker:// short names (real registries)', () => {
  it('finds an image present only in the second search registry, after asking the first', async () => {
    const context = await contextWith({ search: [first, second] });
    await clearLogs();
    const reference = transport.parseReference('//only-second/app:v1');
    expect(reference.shortName).toBe('only-second/app');
    const source = await reference.newImageSource(context);
    try {
      expect(String(source.reference.dockerReference())).toBe(`${second.host}/only-second/app:v1`);
      expect(source.reference.policyConfigurationIdentity()).toBe(`${second.host}/only-second/app:v1`);
      expect(digestOf((await source.getManifest()).bytes)).toBe(image.topLevel.digest);
    } finally {
      await source.close();
    }
    expect(await pathsSeen(first, '/only-second/app/manifests/')).toEqual([
      'GET /v2/only-second/app/manifests/v1 404',
    ]);
    expect(await pathsSeen(second, '/only-second/app/manifests/')).toEqual([
      'GET /v2/only-second/app/manifests/v1 200',
    ]);
    // The reference itself is unchanged and round-trips what was written.
    expect(reference.stringWithinTransport()).toBe('//only-second/app:v1');
    expect(String(reference.dockerReference())).toBe('docker.io/only-second/app:v1');
    expect(transport.parseReference(reference.stringWithinTransport()).shortName).toBe('only-second/app');
  });

  it('permissive and disabled modes use the first search registry that has the image', async () => {
    for (const mode of ['permissive', 'disabled'] as const) {
      const context = await contextWith({ search: [first, second], mode });
      await clearLogs();
      const source = await transport.parseReference('//both/app:v1').newImageSource(context);
      try {
        expect(String(source.reference.dockerReference()), mode).toBe(`${first.host}/both/app:v1`);
        expect(digestOf((await source.getManifest()).bytes), mode).toBe(firstImage.topLevel.digest);
      } finally {
        await source.close();
      }
      expect(await pathsSeen(second, '/both/app/'), mode).toEqual([]);
    }
  });

  it('an alias wins over the search registries', async () => {
    const context = await contextWith({
      search: [first, second],
      mode: 'enforcing',
      aliases: { 'both/app': `${second.host}/both/app` },
    });
    await clearLogs();
    const source = await transport.parseReference('//both/app:v1').newImageSource(context);
    try {
      expect(String(source.reference.dockerReference())).toBe(`${second.host}/both/app:v1`);
      expect(digestOf((await source.getManifest()).bytes)).toBe(secondImage.topLevel.digest);
    } finally {
      await source.close();
    }
    expect(await pathsSeen(first, '/both/app/')).toEqual([]);
  });

  it('enforcing mode with two candidates fails naming them, before any traffic', async () => {
    const context = await contextWith({ search: [first, second], mode: 'enforcing' });
    await clearLogs();
    const opening = transport.parseReference('//both/app:v1').newImageSource(context);
    await expect(opening).rejects.toMatchObject({ code: ErrorCodes.InvalidReference });
    await expect(opening).rejects.toThrow(
      `short-name resolution enforced but cannot prompt without a TTY: short name "both/app:v1" has 2 candidates from the unqualified-search registries of ${context.registriesConfPath}`,
    );
    await expect(opening).rejects.toThrow(`(${first.host}/both/app:v1, ${second.host}/both/app:v1)`);
    expect(await first.accessLog()).toEqual([]);
    expect(await second.accessLog()).toEqual([]);
    // One search registry is not ambiguous.
    const single = await contextWith({ search: [second], mode: 'enforcing' });
    const source = await transport.parseReference('//both/app:v1').newImageSource(single);
    expect(String(source.reference.dockerReference())).toBe(`${second.host}/both/app:v1`);
    await source.close();
  });

  it('a blocked search registry is refused without traffic; the next one is used', async () => {
    const onlyBlocked = await contextWith({ search: [first], blocked: [first] });
    await clearLogs();
    await expect(transport.parseReference('//both/app:v1').newImageSource(onlyBlocked)).rejects.toMatchObject(
      {
        code: ErrorCodes.PolicyRejected,
        message: expect.stringContaining(
          `registry ${first.host} is blocked in ${onlyBlocked.registriesConfPath}`,
        ),
      },
    );
    const blockedFirst = await contextWith({ search: [first, second], blocked: [first] });
    const source = await transport.parseReference('//both/app:v1').newImageSource(blockedFirst);
    try {
      expect(String(source.reference.dockerReference())).toBe(`${second.host}/both/app:v1`);
    } finally {
      await source.close();
    }
    expect(await first.accessLog()).toEqual([]);
  });

  it('keeps a digest (and a tag) on the resolved reference', async () => {
    const context = await contextWith({ search: [first, second] });
    const digested = await transport
      .parseReference(`//only-second/app@${image.topLevel.digest}`)
      .newImageSource(context);
    try {
      expect(String(digested.reference.dockerReference())).toBe(
        `${second.host}/only-second/app@${image.topLevel.digest}`,
      );
      expect(digestOf((await digested.getManifest()).bytes)).toBe(image.topLevel.digest);
    } finally {
      await digested.close();
    }
    const { candidates } = await resolveDockerImageReference(
      transport.parseReference('//only-second/app:some-tag'),
      context,
      'pull',
    );
    expect(candidates.map((candidate) => candidate.stringWithinTransport())).toEqual([
      `//${first.host}/only-second/app:some-tag`,
      `//${second.host}/only-second/app:some-tag`,
    ]);
  });

  it('lists every candidate and its failure when none has the image', async () => {
    const context = await contextWith({ search: [first, second] });
    const opening = transport.parseReference('//nothing/here:v1').newImageSource(context);
    await expect(opening).rejects.toMatchObject({ code: ErrorCodes.ImageNotFound });
    await expect(opening).rejects.toThrow(
      /docker:\/\/nothing\/here:v1: short name resolved to 2 candidates \(unqualified-search registries of .*\), none could be read:\n \* 127\.0\.0\.1:\d+\/nothing\/here:v1: .*\n \* 127\.0\.0\.1:\d+\/nothing\/here:v1: /,
    );
  });

  it('falls back to skopeo’s normalisation without aliases and search registries', async () => {
    const context = await contextWith({});
    const { candidates } = await resolveDockerImageReference(
      transport.parseReference('//gantry-test/nowhere'),
      context,
      'pull',
    );
    expect(candidates.map(String)).toEqual(['docker://docker.io/gantry-test/nowhere:latest']);
    // A fully qualified reference is never resolved.
    const qualified = transport.parseReference('//docker.io/library/x');
    expect(qualified.shortName).toBe(undefined);
    expect(
      (await resolveDockerImageReference(qualified, await contextWith({ search: [first] }), 'pull'))
        .candidates,
    ).toEqual([qualified]);
  });

  it('writes and deletes through one search registry or an alias; several are ambiguous', async () => {
    const single = await contextWith({ search: [second] });
    const destination = await pushFixture(transport, second, 'pushed/short:v1', image, plain);
    await destination.close();
    const written = await transport.parseReference('//written/short:v1').newImageDestination(single);
    expect(String(written.reference.dockerReference())).toBe(`${second.host}/written/short:v1`);
    await written.close();

    const aliased = await contextWith({
      search: [first, second],
      aliases: { 'via/alias': `${first.host}/aliased/target` },
    });
    const copied = await copyImage(
      transport.parseReference(`//${second.host}/only-second/app:v1`),
      transport.parseReference('//via/alias:v2'),
      { sourceContext: plain, destinationContext: aliased, policy: insecureAcceptAnythingPolicy() },
    );
    expect(copied.manifestDigest).toBe(image.topLevel.digest);
    const readBack = await transport
      .parseReference(`//${first.host}/aliased/target:v2`)
      .newImageSource(plain);
    expect(digestOf((await readBack.getManifest()).bytes)).toBe(image.topLevel.digest);
    await readBack.close();

    const ambiguous = await contextWith({ search: [first, second], mode: 'disabled' });
    await clearLogs();
    await expect(
      transport.parseReference('//written/short:v1').newImageDestination(ambiguous),
    ).rejects.toMatchObject({
      code: ErrorCodes.InvalidReference,
      message: expect.stringMatching(
        new RegExp(
          `short name "written/short:v1" is ambiguous for writing: the unqualified-search registries of ${ambiguous.registriesConfPath}.* give 2 candidates \\(${first.host}/written/short:v1, ${second.host}/written/short:v1\\)`,
        ),
      ),
    });
    await expect(transport.parseReference('//pushed/short:v1').deleteImage(ambiguous)).rejects.toMatchObject({
      code: ErrorCodes.InvalidReference,
    });
    expect(await first.accessLog()).toEqual([]);
    expect(await second.accessLog()).toEqual([]);
    await transport.parseReference('//pushed/short:v1').deleteImage(single);
    await expect(
      transport.parseReference(`//${second.host}/pushed/short:v1`).newImageSource(plain),
    ).rejects.toMatchObject({ code: ErrorCodes.ImageNotFound });
  });

  it('lists tags of a short name through the search registries', async () => {
    const context = await contextWith({ search: [first, second] });
    expect(await transport.listTags('//only-second/app', context)).toEqual(['v1']);
    expect(await transport.listTags(transport.parseReference('//only-second/app:x'), context)).toEqual([
      'v1',
    ]);
    await expect(transport.listTags('//nothing/there', context)).rejects.toMatchObject({
      code: ErrorCodes.RepositoryNotFound,
      message: expect.stringContaining('short name resolved to 2 candidates'),
    });
  });

  it('policy.json scopes see the resolved reference', async () => {
    const context = await contextWith({ search: [first, second] });
    const policyAccepting = (scope: string) =>
      parsePolicy(
        JSON.stringify({
          default: [{ type: 'reject' }],
          transports: { docker: { [scope]: [{ type: 'insecureAcceptAnything' }] } },
        }),
        'policy.json',
      );
    const copy = (scope: string, target: string) =>
      copyImage(
        transport.parseReference('//only-second/app:v1'),
        transport.parseReference(`//${second.host}/policy/${target}:v1`),
        { sourceContext: context, destinationContext: plain, policy: policyAccepting(scope) },
      );
    expect((await copy(`${second.host}/only-second`, 'accepted')).manifestDigest).toBe(image.topLevel.digest);
    await expect(copy('docker.io/only-second', 'refused')).rejects.toMatchObject({
      code: ErrorCodes.PolicyRejected,
    });
  });
});
