import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Digest, digestOf, MediaTypes, type ReferrerDescriptor } from '@gantry/core/transport';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { referrersFallbackTag } from './referrers.js';
import { dockerContext } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

describe('referrersFallbackTag', () => {
  it('follows the referrers tag schema table of distribution-spec 1.1', () => {
    expect(referrersFallbackTag(`sha256:${'a'.repeat(64)}` as Digest)).toBe(`sha256-${'a'.repeat(64)}`);
    expect(referrersFallbackTag(`sha512:${'a'.repeat(128)}` as Digest)).toBe(`sha512-${'a'.repeat(64)}`);
    expect(
      referrersFallbackTag(
        'test+algorithm+using+algorithm+separators+and+lots+of+characters+to+excercise+overall+truncation:alsoSome=InTheEncodedSectionToShowHyphenReplacementAndLotsAndLotsOfCharactersToExcerciseEncodedTruncation' as Digest,
      ),
    ).toBe(
      'test-algorithm-using-algorithm-s-alsoSome-InTheEncodedSectionToShowHyphenReplacementAndLotsAndLot',
    );
  });
});

/**
 * A distribution-spec server keeping manifests in memory. Repositories under `api/` have the referrers
 * API (a PUT of a manifest with `subject` is answered with `OCI-Subject`); the others do not.
 */
describe('DockerImageDestination.putReferrer', () => {
  const manifests = new Map<string, { bytes: Buffer; mediaType: string }>();
  const requests: string[] = [];
  let server: Server;
  let host: string;

  beforeAll(async () => {
    server = createServer((request, response) => {
      const url = new URL(request.url ?? '/', 'http://x');
      requests.push(`${request.method} ${url.pathname}`);
      if (url.pathname === '/v2/') {
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        return;
      }
      const match = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
      if (!match) {
        response.writeHead(404).end();
        return;
      }
      const [, repository, reference] = match as unknown as [string, string, string];
      const key = `${repository}/${reference}`;
      if (request.method === 'PUT') {
        const chunks: Buffer[] = [];
        request.on('data', (chunk: Buffer) => chunks.push(chunk));
        request.on('end', () => {
          const bytes = Buffer.concat(chunks);
          manifests.set(key, { bytes, mediaType: request.headers['content-type'] ?? '' });
          const subject = (JSON.parse(bytes.toString('utf8')) as { subject?: { digest: string } }).subject;
          const headers: Record<string, string> = { 'docker-content-digest': digestOf(bytes) };
          if (repository.startsWith('api/') && subject) headers['oci-subject'] = subject.digest;
          response.writeHead(201, headers).end();
        });
        return;
      }
      const stored = manifests.get(key);
      if (!stored) {
        response.writeHead(404, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }));
        return;
      }
      response.writeHead(200, { 'content-type': stored.mediaType }).end(stored.bytes);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(() => {
    requests.length = 0;
  });

  const subject = `sha256:${'5'.repeat(64)}` as Digest;

  function referrer(content: string): { bytes: Buffer; descriptor: ReferrerDescriptor } {
    const bytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.OciManifest,
        artifactType: 'application/vnd.example.sbom',
        config: {
          mediaType: 'application/vnd.oci.empty.v1+json',
          digest: digestOf(Buffer.from('{}')),
          size: 2,
        },
        layers: [],
        subject: { mediaType: MediaTypes.OciManifest, digest: subject, size: 100 },
        annotations: { note: content },
      }),
    );
    return {
      bytes,
      descriptor: {
        mediaType: MediaTypes.OciManifest,
        digest: digestOf(bytes),
        size: bytes.byteLength,
        artifactType: 'application/vnd.example.sbom',
        annotations: { note: content },
      },
    };
  }

  async function writeReferrers(repository: string, referrers: ReturnType<typeof referrer>[]): Promise<void> {
    const transport = createDockerTransport();
    const destination = await transport
      .parseReference(`//${host}/${repository}:v1`)
      .newImageDestination(dockerContext({ tlsVerify: false }));
    try {
      const tagKey = `${repository}/${referrersFallbackTag(subject)}`;
      const before = manifests.get(tagKey);
      for (const entry of referrers) await destination.putReferrer!(entry.bytes, entry.descriptor, subject);
      // Only the manifests by digest before commit: the tag index moves at commit.
      expect(manifests.get(tagKey)).toBe(before);
      await destination.commit();
    } finally {
      await destination.close();
      await transport.closeConnections();
    }
  }

  function tagIndex(
    repository: string,
  ): { manifests: ReferrerDescriptor[]; annotations?: unknown } | undefined {
    const stored = manifests.get(`${repository}/${referrersFallbackTag(subject)}`);
    if (!stored) return undefined;
    expect(stored.mediaType).toBe(MediaTypes.OciIndex);
    return JSON.parse(stored.bytes.toString('utf8')) as { manifests: ReferrerDescriptor[] };
  }

  it('writes the manifest by digest and creates the tag index on a registry without the referrers API', async () => {
    const sbom = referrer('first');
    await writeReferrers('plain/app', [sbom, sbom]);
    expect(manifests.get(`plain/app/${sbom.descriptor.digest}`)?.bytes.equals(sbom.bytes)).toBe(true);
    expect(tagIndex('plain/app')).toEqual({
      schemaVersion: 2,
      mediaType: MediaTypes.OciIndex,
      manifests: [sbom.descriptor],
    });
    const tag = referrersFallbackTag(subject);
    expect(requests.filter((line) => line.includes(tag))).toEqual([
      `GET /v2/plain/app/manifests/${tag}`,
      `PUT /v2/plain/app/manifests/${tag}`,
    ]);
  });

  it('appends to an existing tag index, keeping its entries and fields, and adds nothing twice', async () => {
    const existing = { mediaType: MediaTypes.OciManifest, digest: `sha256:${'e'.repeat(64)}`, size: 5 };
    manifests.set(`kept/app/${referrersFallbackTag(subject)}`, {
      bytes: Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MediaTypes.OciIndex,
          manifests: [existing],
          annotations: { kept: 'yes' },
        }),
      ),
      mediaType: MediaTypes.OciIndex,
    });
    const sbom = referrer('second');
    await writeReferrers('kept/app', [sbom]);
    expect(tagIndex('kept/app')).toEqual({
      schemaVersion: 2,
      mediaType: MediaTypes.OciIndex,
      manifests: [existing, sbom.descriptor],
      annotations: { kept: 'yes' },
    });
    requests.length = 0;
    await writeReferrers('kept/app', [sbom]);
    // Already listed: read, not written again.
    expect(
      requests.filter((line) => line.startsWith('PUT') && line.includes(referrersFallbackTag(subject))),
    ).toEqual([]);
  });

  it('leaves the tag alone on a registry that answers OCI-Subject', async () => {
    const sbom = referrer('third');
    await writeReferrers('api/app', [sbom]);
    expect(manifests.get(`api/app/${sbom.descriptor.digest}`)?.bytes.equals(sbom.bytes)).toBe(true);
    expect(tagIndex('api/app')).toBeUndefined();
    expect(requests.some((line) => line.includes(referrersFallbackTag(subject)))).toBe(false);
  });

  it('refuses to overwrite a tag that holds something else than an OCI index', async () => {
    manifests.set(`odd/app/${referrersFallbackTag(subject)}`, {
      bytes: Buffer.from(
        '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}',
      ),
      mediaType: MediaTypes.DockerManifest,
    });
    await expect(writeReferrers('odd/app', [referrer('fourth')])).rejects.toMatchObject({
      code: 'ERR_GANTRY_INVALID_MANIFEST',
      message: expect.stringContaining('not an OCI index; not overwriting it'),
    });
    expect(manifests.get(`odd/app/${referrersFallbackTag(subject)}`)?.mediaType).toBe(
      MediaTypes.DockerManifest,
    );
  });
});
