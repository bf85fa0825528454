import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  clearDeferredNodeExtraCertificateAuthorities,
  defaultCertificateAuthorities,
  deferNodeExtraCertificateAuthorities,
  deferredNodeExtraCertificateAuthorities,
  deferredNodeExtraCertificateAuthoritiesPath,
} from './tls-trust.js';

// Two of Node's own roots stand in for a bundle: real PEM certificates.
const bundle = `${rootCertificates[0]}\n# a comment between certificates\n${rootCertificates[1]}\n`;

afterEach(() => {
  clearDeferredNodeExtraCertificateAuthorities();
  vi.restoreAllMocks();
});

describe('deferred NODE_EXTRA_CA_CERTS', () => {
  it('adds nothing when nothing was deferred: Node defaults apply', () => {
    expect(deferredNodeExtraCertificateAuthoritiesPath()).toBeUndefined();
    expect(deferredNodeExtraCertificateAuthorities()).toEqual([]);
    expect(defaultCertificateAuthorities()).toBeUndefined();
  });

  it('reads the deferred bundle once and puts it after Node roots and before certs.d certificates', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'gantry-'));
    try {
      const file = join(directory, 'extra.pem');
      await writeFile(file, bundle);
      deferNodeExtraCertificateAuthorities(file);
      expect(deferredNodeExtraCertificateAuthoritiesPath()).toBe(file);
      expect(deferredNodeExtraCertificateAuthorities()).toEqual([rootCertificates[0], rootCertificates[1]]);
      // Read once: a later change of the file is not seen (Node reads it once at start-up too).
      await writeFile(file, '');
      expect(deferredNodeExtraCertificateAuthorities()).toHaveLength(2);
      const ca = defaultCertificateAuthorities(['ADDITIONAL']);
      expect(ca).toHaveLength(rootCertificates.length + 3);
      expect(ca!.slice(0, rootCertificates.length)).toEqual([...rootCertificates]);
      expect(ca!.at(-1)).toBe('ADDITIONAL');
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  it('warns like Node and adds nothing when the file cannot be read', () => {
    const warning = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    deferNodeExtraCertificateAuthorities('/nonexistent/gantry-extra.pem');
    expect(deferredNodeExtraCertificateAuthorities()).toEqual([]);
    expect(String(warning.mock.calls[0]?.[0])).toMatch(
      /Ignoring extra certs from `\/nonexistent\/gantry-extra.pem`/,
    );
    expect(defaultCertificateAuthorities()).toBeUndefined();
  });

  it('still gives Node roots plus certs.d certificates without a deferral', () => {
    expect(defaultCertificateAuthorities(['X'])).toEqual([...rootCertificates, 'X']);
  });
});
