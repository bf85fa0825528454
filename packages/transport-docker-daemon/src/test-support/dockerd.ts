/**
 * Test helper: a private dockerd (Debian's docker.io) with its own data root, exec root, pidfile and unix
 * socket, `--storage-driver vfs --iptables=false --bridge=none`; it starts its own containerd. Fails loudly
 * (with dockerd's log) when dockerd is missing or does not come up. With `tls`, it also listens on
 * `tcp://127.0.0.1:<free port>` with `--tlsverify` (client certificates signed by the given CA required).
 * With `dataRoot`, dockerd keeps its images (and its temporary files, `<data root>/tmp`) there instead of
 * under its own directory: a small file system there makes the daemon's disk fill up.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { DockerEngineClient } from '../client.js';

const run = promisify(execFile);

export const dockerdPath = '/usr/sbin/dockerd';

export interface TestDockerDaemon {
  directory: string;
  /** dockerd's `--data-root`. */
  dataRoot: string;
  /** `unix://<directory>/docker.sock` */
  host: string;
  /** `tcp://127.0.0.1:<port>` when started with `tls`. */
  tcpHost?: string;
  /** Runs the docker CLI against this daemon. */
  docker(...arguments_: string[]): Promise<string>;
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** dockerd's `--tlscacert`, `--tlscert`, `--tlskey` files. */
export interface TestDockerDaemonTls {
  caCertificatePath: string;
  serverCertificatePath: string;
  serverKeyPath: string;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

/** Starts dockerd and waits (up to `timeoutMs`) until `/_ping` answers on its unix socket. */
export async function startTestDockerDaemon(
  timeoutMs = 60_000,
  options: { tls?: TestDockerDaemonTls; dataRoot?: string } = {},
): Promise<TestDockerDaemon> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  const dataRoot = options.dataRoot ?? path.join(directory, 'data');
  const socket = path.join(directory, 'docker.sock');
  const host = `unix://${socket}`;
  const logPath = path.join(directory, 'dockerd.log');
  const tcpHost = options.tls ? `tcp://127.0.0.1:${await freePort()}` : undefined;
  const tlsArguments = options.tls
    ? [
        '--tlsverify',
        '--tlscacert',
        options.tls.caCertificatePath,
        '--tlscert',
        options.tls.serverCertificatePath,
        '--tlskey',
        options.tls.serverKeyPath,
        '-H',
        tcpHost as string,
      ]
    : [];
  const log = openSync(logPath, 'w');
  const child = spawn(
    dockerdPath,
    [
      '--storage-driver',
      'vfs',
      '--iptables=false',
      '--bridge=none',
      '--data-root',
      dataRoot,
      '--exec-root',
      path.join(directory, 'exec'),
      '--pidfile',
      path.join(directory, 'docker.pid'),
      '-H',
      host,
      ...tlsArguments,
    ],
    { stdio: ['ignore', log, log] },
  );
  closeSync(log);
  let spawnError: Error | undefined;
  child.once('error', (error) => {
    spawnError = error;
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      process.kill(child.pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null && child.pid !== undefined)
          process.kill(child.pid, 'SIGKILL');
      }, 15_000);
      await exited(child);
      clearTimeout(timer);
    }
    await rm(directory, { recursive: true, force: true });
    if (options.dataRoot) await rm(dataRoot, { recursive: true, force: true });
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (spawnError || child.exitCode !== null) {
      const output = readFileSync(logPath, 'utf8');
      await stop();
      throw new Error(
        `dockerd failed to start (${spawnError?.message ?? `exit ${child.exitCode}`}):\n${output}`,
      );
    }
    const client = new DockerEngineClient(host);
    try {
      await client.apiVersion();
      break;
    } catch {
      if (Date.now() > deadline) {
        const output = readFileSync(logPath, 'utf8');
        await stop();
        throw new Error(`dockerd did not answer /_ping within ${timeoutMs} ms:\n${output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      await client.close();
    }
  }
  return {
    directory,
    dataRoot,
    host,
    ...(tcpHost ? { tcpHost } : {}),
    async docker(...arguments_: string[]): Promise<string> {
      const { stdout } = await run('docker', ['-H', host, ...arguments_], { maxBuffer: 64 << 20 });
      return stdout;
    },
    stop,
  };
}
