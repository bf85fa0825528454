/**
 * Test helper: a CA, a dockerd server certificate (for `127.0.0.1` and `localhost`) and a client certificate,
 * made with `openssl`, valid for two days. Fails loudly when `openssl` is missing.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function openssl(arguments_: string[], directory: string): Promise<void> {
  try {
    await run('openssl', arguments_, { cwd: directory });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(
      `openssl ${arguments_[0]} failed (is /usr/bin/openssl installed?): ${stderr || (error as Error).message}`,
    );
  }
}

const ellipticCurveKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function signedCertificate(
  directory: string,
  name: string,
  subject: string,
  extensions: string,
): Promise<void> {
  await openssl(
    ['req', ...ellipticCurveKey, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', subject],
    directory,
  );
  await writeFile(path.join(directory, `${name}.ext`), extensions);
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca-key.pem',
      '-CAcreateserial',
      '-out',
      `${name}-cert.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    ],
    directory,
  );
}

/** The files `generateDockerTlsMaterial` writes. */
export interface DockerTlsMaterial {
  /** `ca.pem`, `server-cert.pem`, `server-key.pem` (dockerd's `--tlscacert`, `--tlscert`, `--tlskey`). */
  caCertificatePath: string;
  serverCertificatePath: string;
  serverKeyPath: string;
  /** A docker client certificate directory: `ca.pem`, `cert.pem`, `key.pem`. */
  clientDirectory: string;
  /** A directory with `ca.pem` only (no client certificate). */
  caOnlyDirectory: string;
}

/** Generates the CA, server and client certificates in `directory` (which must exist). */
export async function generateDockerTlsMaterial(directory: string): Promise<DockerTlsMaterial> {
  await openssl(
    [
      'req',
      '-x509',
      ...ellipticCurveKey,
      '-keyout',
      'ca-key.pem',
      '-out',
      'ca.pem',
      '-days',
      '2',
      '-subj',
      '/CN=Gantry Test Docker CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    directory,
  );
  await signedCertificate(
    directory,
    'server',
    '/CN=127.0.0.1',
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n',
  );
  await signedCertificate(
    directory,
    'client',
    '/CN=gantry-test-client',
    'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n',
  );
  const clientDirectory = path.join(directory, 'client');
  const caOnlyDirectory = path.join(directory, 'ca-only');
  await mkdir(clientDirectory);
  await mkdir(caOnlyDirectory);
  await copyFile(path.join(directory, 'ca.pem'), path.join(clientDirectory, 'ca.pem'));
  await copyFile(path.join(directory, 'client-cert.pem'), path.join(clientDirectory, 'cert.pem'));
  await copyFile(path.join(directory, 'client-key.pem'), path.join(clientDirectory, 'key.pem'));
  await copyFile(path.join(directory, 'ca.pem'), path.join(caOnlyDirectory, 'ca.pem'));
  return {
    caCertificatePath: path.join(directory, 'ca.pem'),
    serverCertificatePath: path.join(directory, 'server-cert.pem'),
    serverKeyPath: path.join(directory, 'server-key.pem'),
    clientDirectory,
    caOnlyDirectory,
  };
}
