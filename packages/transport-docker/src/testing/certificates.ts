import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await execFileAsync('openssl', args, { cwd });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(
      `openssl ${args[0]} failed (is /usr/bin/openssl installed?): ${stderr || (error as Error).message}`,
    );
  }
}

/** Files of a test CA and a server certificate it signed. */
export interface TestTlsMaterial {
  /** The CA certificate (PEM file); give its directory as a certificate directory. */
  caCertificatePath: string;
  caCertificate: string;
  serverCertificatePath: string;
  serverKeyPath: string;
}

/**
 * Generates, with `openssl`, a CA and a server certificate for `127.0.0.1` and `localhost` signed by
 * it, valid for two days, in `directory` (`ca.crt`, `ca.key`, `server.crt`, `server.key`).
 */
export async function generateTestTlsMaterial(directory: string): Promise<TestTlsMaterial> {
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(
    [
      'req',
      '-x509',
      ...ecKey,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      '/CN=Gantry Test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    directory,
  );
  await openssl(
    ['req', ...ecKey, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'],
    directory,
  );
  await writeFile(
    path.join(directory, 'server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n',
  );
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'server.crt',
      '-days',
      '2',
      '-extfile',
      'server.ext',
    ],
    directory,
  );
  const caCertificatePath = path.join(directory, 'ca.crt');
  return {
    caCertificatePath,
    caCertificate: await readFile(caCertificatePath, 'utf8'),
    serverCertificatePath: path.join(directory, 'server.crt'),
    serverKeyPath: path.join(directory, 'server.key'),
  };
}

/**
 * Generates, with `openssl`, a client certificate (`client.cert`, `client.key`, the names a
 * certificate directory uses) signed by the CA that `generateTestTlsMaterial` wrote in `directory`.
 */
export async function generateTestClientCertificate(
  directory: string,
): Promise<{ certificatePath: string; keyPath: string }> {
  await openssl(
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'client.key',
      '-out',
      'client.csr',
      '-subj',
      '/CN=gantry-test-client',
    ],
    directory,
  );
  await writeFile(
    path.join(directory, 'client.ext'),
    'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n',
  );
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      'client.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'client.cert',
      '-days',
      '2',
      '-extfile',
      'client.ext',
    ],
    directory,
  );
  return {
    certificatePath: path.join(directory, 'client.cert'),
    keyPath: path.join(directory, 'client.key'),
  };
}

/** A self-signed certificate and its RSA key, for signing registry tokens. */
export interface TokenSigningMaterial {
  certificatePath: string;
  certificate: string;
  privateKey: string;
}

/** Generates a self-signed RSA certificate for signing registry JWTs (`token.crt`, `token.key`). */
export async function generateTokenSigningMaterial(directory: string): Promise<TokenSigningMaterial> {
  await openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'token.key',
      '-out',
      'token.crt',
      '-days',
      '2',
      '-subj',
      '/CN=Gantry Test Token Signer',
    ],
    directory,
  );
  const certificatePath = path.join(directory, 'token.crt');
  return {
    certificatePath,
    certificate: await readFile(certificatePath, 'utf8'),
    privateKey: await readFile(path.join(directory, 'token.key'), 'utf8'),
  };
}
