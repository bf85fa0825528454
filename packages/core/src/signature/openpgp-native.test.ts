/**
 * The node:crypto OpenPGP verifier against keys and signatures made by the real `gpg` (GnuPG 2.2),
 * each decision compared with `gpg --verify`'s for the same key and signature.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  dearmor,
  InvalidOpenPgp,
  readNativeKeys,
  readSignedMessageUnverified,
  UnsupportedOpenPgp,
  verifyNativeSignedMessage,
} from './openpgp-native.js';
import { readGpgPublicKeys, verifyGpgSignature } from './simple-signing.js';

const execFileAsync = promisify(execFile);
const content = new TextEncoder().encode('{"critical":{"type":"atomic container signature"}}');

let root: string;
const homes: string[] = [];

/** Runs gpg in `home`, with `input` on stdin; returns stdout as bytes. */
function gpg(home: string, args: string[], input?: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'gpg',
      ['--batch', '--no-tty', '--pinentry-mode', 'loopback', '--passphrase', '', ...args],
      { env: { ...process.env, GNUPGHOME: home }, encoding: 'buffer', maxBuffer: 1 << 24 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`gpg ${args.join(' ')}: ${stderr.toString()}`));
        else resolve(stdout);
      },
    );
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input ?? Buffer.alloc(0));
  });
}

interface MadeKey {
  home: string;
  fingerprint: string;
  publicKey: Buffer;
}

async function makeKey(name: string, algorithm: string, usage = 'sign', expire = 'never'): Promise<MadeKey> {
  const home = path.join(root, name);
  await mkdir(home, { recursive: true, mode: 0o700 });
  homes.push(home);
  await gpg(home, ['--quick-generate-key', `${name} <${name}@example.com>`, algorithm, usage, expire]);
  const listing = (await gpg(home, ['--with-colons', '--list-keys'])).toString();
  const fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(listing)![1]!;
  return { home, fingerprint, publicKey: await gpg(home, ['--armor', '--export', fingerprint]) };
}

/** gpg's verdict on `signature` with only `publicKey` known: its status keyword (GOODSIG, EXPKEYSIG…). */
async function gpgVerdict(publicKey: Uint8Array, signature: Uint8Array): Promise<string> {
  const home = await mkdtemp(path.join(root, 'verify-'));
  homes.push(home);
  await gpg(home, ['--import'], publicKey);
  const file = path.join(home, 'signature.gpg');
  await writeFile(file, signature);
  const status = await new Promise<string>((resolve) => {
    execFile(
      'gpg',
      ['--batch', '--status-fd', '1', '--verify', file],
      { env: { ...process.env, GNUPGHOME: home } },
      (_error, stdout) => resolve(stdout),
    );
  });
  return (
    /\[GNUPG:\] (GOODSIG|EXPKEYSIG|REVKEYSIG|BADSIG|ERRSIG|EXPSIG)/.exec(status)?.[1] ?? `none: ${status}`
  );
}

async function sign(key: MadeKey, data = content, extra: string[] = []): Promise<Buffer> {
  return gpg(key.home, ['--sign', '--local-user', key.fingerprint, ...extra, '--output', '-'], data);
}

function nativeKeys(publicKey: Uint8Array) {
  return dearmor(publicKey).flatMap((part) => readNativeKeys(part));
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'gpg-native-'));
});

afterAll(async () => {
  for (const home of homes) {
    await execFileAsync('gpgconf', ['--kill', 'gpg-agent'], {
      env: { ...process.env, GNUPGHOME: home },
    }).catch(() => undefined);
  }
  if (root) await rm(root, { recursive: true, force: true });
});

describe('OpenPGP with node:crypto, against gpg', () => {
  for (const algorithm of ['rsa2048', 'rsa4096', 'ed25519', 'nistp256', 'nistp384', 'nistp521']) {
    it(`verifies a ${algorithm} signature as gpg does, and rejects a tampered one and another key's`, async () => {
      const key = await makeKey(`k-${algorithm}`, algorithm);
      const other = await makeKey(`o-${algorithm}`, algorithm);
      const keys = nativeKeys(key.publicKey);
      expect(keys.map((k) => k.primary.fingerprint)).toEqual([key.fingerprint]);
      // gpg compresses (ZIP/ZLIB) by default; also uncompressed and with a SHA-512 digest.
      for (const extra of [[], ['--compress-algo', 'none'], ['--digest-algo', 'SHA512']]) {
        const signature = await sign(key, content, extra);
        expect(await gpgVerdict(key.publicKey, signature)).toBe('GOODSIG');
        const verified = verifyNativeSignedMessage(signature, keys);
        expect(Buffer.from(verified.content).toString()).toBe(Buffer.from(content).toString());
        expect(verified.keyFingerprint).toBe(key.fingerprint);
        expect(readSignedMessageUnverified(signature).keyIds).toEqual([key.fingerprint.slice(-16)]);
      }
      const signature = await sign(key, content, ['--compress-algo', 'none']);
      // Flip a byte of the signed content (inside the literal data packet).
      const tampered = Buffer.from(signature);
      const at = tampered.indexOf(Buffer.from('atomic'));
      tampered[at] = tampered[at]! ^ 0x20;
      expect(await gpgVerdict(key.publicKey, tampered)).toBe('BADSIG');
      expect(() => verifyNativeSignedMessage(tampered, keys)).toThrow(/does not verify/);
      expect(await gpgVerdict(other.publicKey, signature)).toBe('ERRSIG');
      // gpgme's dump of the signature, as skopeo words it (the CLI's signing e2e compares it with skopeo's).
      expect(() => verifyNativeSignedMessage(signature, nativeKeys(other.publicKey))).toThrow(
        new RegExp(
          `^Invalid GPG signature: gpgme\\.Signature\\{Summary:128, Fingerprint:"${key.fingerprint}", Status:gpgme\\.Error\\{err:0x9\\}, Timestamp:time\\.Date\\(\\d{4}, time\\.[A-Z][a-z]+, \\d+, \\d+, \\d+, \\d+, 0, time\\.Local\\), `,
        ),
      );
    }, 120_000);
  }

  it('verifies a signature by a signing subkey, reporting the primary fingerprint', async () => {
    const key = await makeKey('subkey', 'ed25519', 'cert');
    await gpg(key.home, ['--quick-add-key', key.fingerprint, 'rsa2048', 'sign']);
    const publicKey = await gpg(key.home, ['--armor', '--export', key.fingerprint]);
    const signature = await sign(key);
    expect(await gpgVerdict(publicKey, signature)).toBe('GOODSIG');
    const keys = nativeKeys(publicKey);
    expect(keys[0]!.subkeys).toHaveLength(1);
    expect(verifyNativeSignedMessage(signature, keys).keyFingerprint).toBe(key.fingerprint);
  }, 120_000);

  it('rejects a signature by a key that has expired since, as gpg (EXPKEYSIG) and gpgme do', async () => {
    const key = await makeKey('expiring', 'ed25519', 'sign', 'seconds=4');
    const signature = await sign(key);
    const keys = nativeKeys(key.publicKey);
    expect(verifyNativeSignedMessage(signature, keys).keyFingerprint).toBe(key.fingerprint);
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    expect(await gpgVerdict(key.publicKey, signature)).toBe('EXPKEYSIG');
    expect(() => verifyNativeSignedMessage(signature, keys)).toThrow(/expired/);
    await expect(
      verifyGpgSignature(signature, await readGpgPublicKeys([key.publicKey])),
    ).rejects.toMatchObject({
      code: 'ERR_GANTRY_INVALID_SIGNATURE',
      message: expect.stringMatching(/^Invalid GPG signature: key .* expired$/),
    });
  }, 120_000);

  it('rejects a signature by a revoked key, as gpg (REVKEYSIG)', async () => {
    const key = await makeKey('revoked', 'rsa2048');
    const signature = await sign(key);
    // gpg writes a revocation certificate at key generation, its armor line escaped with a colon.
    const directory = path.join(key.home, 'openpgp-revocs.d');
    const [certificate] = await readdir(directory);
    const revocation = (await readFile(path.join(directory, certificate!), 'utf8')).replace(
      /^:-----BEGIN/m,
      '-----BEGIN',
    );
    await gpg(key.home, ['--import'], Buffer.from(revocation));
    const publicKey = await gpg(key.home, ['--armor', '--export', key.fingerprint]);
    expect(await gpgVerdict(publicKey, signature)).toBe('REVKEYSIG');
    expect(() => verifyNativeSignedMessage(signature, nativeKeys(publicKey))).toThrow(/revoked/);
    // The key read before the revocation still verifies: the revocation is what rejects.
    expect(verifyNativeSignedMessage(signature, nativeKeys(key.publicKey)).keyFingerprint).toBe(
      key.fingerprint,
    );
  }, 120_000);

  it('rejects a message with two signatures, and data that is not a signature', async () => {
    const key = await makeKey('twice', 'ed25519');
    const other = await makeKey('twice-other', 'ed25519');
    await gpg(key.home, ['--import'], await gpg(other.home, ['--export-secret-keys', other.fingerprint]));
    const signature = await gpg(
      key.home,
      ['--sign', '--local-user', key.fingerprint, '--local-user', other.fingerprint, '--output', '-'],
      content,
    );
    const keys = [...nativeKeys(key.publicKey), ...nativeKeys(other.publicKey)];
    expect(() => verifyNativeSignedMessage(signature, keys)).toThrow('Unexpected GPG signature count 2');
    expect(() => verifyNativeSignedMessage(new TextEncoder().encode('not a signature'), keys)).toThrow(
      InvalidOpenPgp,
    );
    expect(() => verifyNativeSignedMessage(key.publicKey, keys)).toThrow(InvalidOpenPgp);
  }, 120_000);

  it('leaves what it does not check to OpenPGP.js: text-mode and bzip2 messages still verify, brainpool keys are still read', async () => {
    const key = await makeKey('fallback', 'ed25519');
    const keys = await readGpgPublicKeys([key.publicKey]);
    for (const extra of [['--textmode'], ['--compress-algo', 'bzip2']]) {
      const signature = await sign(key, content, extra);
      expect(await gpgVerdict(key.publicKey, signature)).toBe('GOODSIG');
      expect(() => verifyNativeSignedMessage(signature, nativeKeys(key.publicKey))).toThrow(
        UnsupportedOpenPgp,
      );
      const verified = await verifyGpgSignature(signature, keys);
      expect(verified.keyFingerprint).toBe(key.fingerprint);
      expect(Buffer.from(verified.content).toString()).toBe(Buffer.from(content).toString());
      const other = await readGpgPublicKeys([
        (await makeKey(`fallback-other-${extra.length}`, 'ed25519')).publicKey,
      ]);
      await expect(verifyGpgSignature(signature, other)).rejects.toMatchObject({
        code: 'ERR_GANTRY_INVALID_SIGNATURE',
      });
    }
    const brainpool = await makeKey('brainpool', 'brainpoolP256r1');
    expect(() => nativeKeys(brainpool.publicKey)).toThrow(UnsupportedOpenPgp);
    expect((await readGpgPublicKeys([brainpool.publicKey])).fingerprints).toEqual([brainpool.fingerprint]);
  }, 120_000);

  it('reads binary and armored key files, several keys in one file, and nothing from a file that is not a key', async () => {
    const first = await makeKey('many-1', 'rsa2048');
    const second = await makeKey('many-2', 'ed25519');
    const binary = await gpg(first.home, ['--export', first.fingerprint]);
    const both = Buffer.concat([binary, await gpg(second.home, ['--export', second.fingerprint])]);
    expect((await readGpgPublicKeys([both])).fingerprints).toEqual([first.fingerprint, second.fingerprint]);
    expect((await readGpgPublicKeys([first.publicKey, second.publicKey])).fingerprints).toEqual([
      first.fingerprint,
      second.fingerprint,
    ]);
    expect((await readGpgPublicKeys([new TextEncoder().encode('not a key')])).fingerprints).toEqual([]);
  }, 120_000);
});
