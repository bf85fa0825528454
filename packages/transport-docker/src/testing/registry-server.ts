import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Agent } from 'undici';
import {
  generateTestClientCertificate,
  generateTestTlsMaterial,
  generateTokenSigningMaterial,
} from './certificates.js';
import { startTestTokenServer, type TestTokenServer } from './token-server.js';

const execFileAsync = promisify(execFile);

/** The registry binary: Debian's `docker-registry` (CNCF Distribution 2.8). */
export const registryBinary = process.env.GANTRY_TEST_REGISTRY_BINARY ?? '/usr/bin/docker-registry';

export interface TestRegistryOptions {
  /** Serve HTTPS with a certificate signed by a CA generated for the test. */
  tls?: boolean;
  /**
   * With `tls`: require a client certificate signed by the test CA (`http.tls.clientcas`); the
   * certificate directory then also holds `client.cert` and `client.key`.
   */
  requireClientCertificate?: boolean;
  /** Basic authentication (`auth: htpasswd`) with these users; needs the `htpasswd` program (apache2-utils). */
  htpasswdUsers?: Record<string, string>;
  /** Token authentication (`auth: token`) with a test token server accepting these users. */
  tokenAuth?: {
    users: Record<string, string>;
    refreshTokens?: Record<string, string>;
    anonymousActions?: string[];
    tokenLifetimeSeconds?: number;
  };
}

/** One line of the registry's access log. */
export interface AccessLogEntry {
  method: string;
  /** Path and query. */
  path: string;
  status: number;
  userAgent: string;
}

export interface TestRegistry {
  /** `127.0.0.1:<port>`: the registry part of references. */
  host: string;
  port: number;
  /** `http://…` or `https://…`. */
  url: string;
  /** The registry's storage directory. */
  storageDirectory: string;
  /** With `tls`: a directory holding the CA certificate as `ca.crt` (a `--cert-dir`). */
  certificateDirectory: string | undefined;
  /** With `tokenAuth`: the token server and the requests it answered. */
  tokenServer: TestTokenServer | undefined;
  /** The access log so far, after waiting `settleMs` for lines of finished requests to arrive. */
  accessLog(settleMs?: number): Promise<AccessLogEntry[]>;
  /** Forgets the access log so far. */
  clearAccessLog(): void;
  /**
   * Kills the registry process (`signal`, default SIGKILL: a crash) and starts it again on the same
   * port with the same storage and configuration, resolving once `/v2/` answers again; requests in
   * flight break, and connections are refused until it is back.
   */
  restart(signal?: NodeJS.Signals): Promise<void>;
  /** Stops the registry (by PID) and the token server, and removes every file. Idempotent. */
  stop(): Promise<void>;
}

const accessLogPattern = /"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) \S+ "[^"]*" "([^"]*)"/;

/** A port free right now on 127.0.0.1. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function htpasswdLine(user: string, password: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync('htpasswd', ['-Bbn', user, password]);
    return stdout.trim();
  } catch (error) {
    throw new Error(
      `cannot create a bcrypt htpasswd entry: the htpasswd program (Debian package apache2-utils) is needed: ${(error as Error).message}`,
    );
  }
}

const runningRegistries = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Kills registries still running when the test process exits (e.g. after a crash). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of runningRegistries) {
      if (child.pid !== undefined && child.exitCode === null) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
  });
}

async function waitForRegistry(
  url: string,
  child: ChildProcess,
  output: () => string,
  clientCertificate: { cert: string; key: string } | undefined,
): Promise<void> {
  const agent = new Agent({ connect: { rejectUnauthorized: false, ...clientCertificate } });
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `docker-registry exited (${child.exitCode ?? child.signalCode}) before answering: ${output()}`,
        );
      }
      try {
        const target = new URL('/v2/', url);
        const response = await agent.request({ origin: target.origin, path: target.pathname, method: 'GET' });
        await response.body.dump();
        if (response.statusCode === 200 || response.statusCode === 401) return;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline)
        throw new Error(`docker-registry did not answer ${url}/v2/ within 30 s: ${output()}`);
      await delay(50);
    }
  } finally {
    await agent.close();
  }
}

/**
 * Starts the real Distribution registry (`docker-registry serve CONFIG`) on 127.0.0.1 and a free
 * port chosen now, with its own storage under a new temporary directory, deletes enabled, and waits
 * until `/v2/` answers. Call `stop()` in `afterAll`/`finally` (it kills the process by PID; a process
 * exit hook also kills registries left running). Fails loudly when the binary is missing.
 */
export async function startTestRegistry(options: TestRegistryOptions = {}): Promise<TestRegistry> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-registry-'));
  let tokenServer: TestTokenServer | undefined;
  let child: ChildProcess | undefined;
  let output = '';
  const accessLog: AccessLogEntry[] = [];
  const stopAll = async (): Promise<void> => {
    if (child !== undefined) {
      const running = child;
      child = undefined;
      if (running.exitCode === null && running.signalCode === null && running.pid !== undefined) {
        const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
        process.kill(running.pid, 'SIGTERM');
        const killed = await Promise.race([exited.then(() => true), delay(5_000).then(() => false)]);
        if (!killed && running.pid !== undefined) {
          process.kill(running.pid, 'SIGKILL');
          await exited;
        }
      }
      runningRegistries.delete(running);
    }
    await tokenServer?.stop();
    tokenServer = undefined;
    await rm(directory, { recursive: true, force: true });
  };
  try {
    const storageDirectory = path.join(directory, 'storage');
    await mkdir(storageDirectory);
    let certificateDirectory: string | undefined;
    let clientCertificate: { cert: string; key: string } | undefined;
    const http: Record<string, unknown> = {
      secret: 'gantry-test-secret',
      headers: { 'X-Content-Type-Options': ['nosniff'] },
    };
    if (options.tls) {
      const tlsDirectory = path.join(directory, 'tls');
      await mkdir(tlsDirectory);
      const material = await generateTestTlsMaterial(tlsDirectory);
      http.tls = { certificate: material.serverCertificatePath, key: material.serverKeyPath };
      certificateDirectory = path.join(directory, 'certs');
      await mkdir(certificateDirectory);
      await writeFile(path.join(certificateDirectory, 'ca.crt'), material.caCertificate);
      if (options.requireClientCertificate) {
        const client = await generateTestClientCertificate(tlsDirectory);
        (http.tls as Record<string, unknown>).clientcas = [material.caCertificatePath];
        await writeFile(
          path.join(certificateDirectory, 'client.cert'),
          await readFile(client.certificatePath),
        );
        await writeFile(path.join(certificateDirectory, 'client.key'), await readFile(client.keyPath));
        clientCertificate = {
          cert: await readFile(client.certificatePath, 'utf8'),
          key: await readFile(client.keyPath, 'utf8'),
        };
      }
    }
    let auth: Record<string, unknown> | undefined;
    if (options.htpasswdUsers) {
      const lines = await Promise.all(
        Object.entries(options.htpasswdUsers).map(([user, password]) => htpasswdLine(user, password)),
      );
      const htpasswdPath = path.join(directory, 'htpasswd');
      await writeFile(htpasswdPath, `${lines.join('\n')}\n`);
      auth = { htpasswd: { realm: 'gantry-test-realm', path: htpasswdPath } };
    } else if (options.tokenAuth) {
      const signingDirectory = path.join(directory, 'token');
      await mkdir(signingDirectory);
      const signing = await generateTokenSigningMaterial(signingDirectory);
      const service = 'gantry-test-registry';
      const issuer = 'gantry-test-token-issuer';
      const tokenServerOptions: Parameters<typeof startTestTokenServer>[0] = {
        users: options.tokenAuth.users,
        service,
        issuer,
        signing,
      };
      if (options.tokenAuth.refreshTokens) tokenServerOptions.refreshTokens = options.tokenAuth.refreshTokens;
      if (options.tokenAuth.anonymousActions)
        tokenServerOptions.anonymousActions = options.tokenAuth.anonymousActions;
      if (options.tokenAuth.tokenLifetimeSeconds)
        tokenServerOptions.tokenLifetimeSeconds = options.tokenAuth.tokenLifetimeSeconds;
      tokenServer = await startTestTokenServer(tokenServerOptions);
      auth = {
        token: { realm: tokenServer.realm, service, issuer, rootcertbundle: signing.certificatePath },
      };
    }

    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      http.addr = `127.0.0.1:${port}`;
      const config: Record<string, unknown> = {
        version: 0.1,
        log: { level: 'warn', formatter: 'text' },
        storage: {
          filesystem: { rootdirectory: storageDirectory },
          delete: { enabled: true },
          maintenance: { uploadpurging: { enabled: false } },
        },
        http,
      };
      if (auth) config.auth = auth;
      const configPath = path.join(directory, 'config.yml');
      // JSON is YAML: no quoting pitfalls.
      await writeFile(configPath, JSON.stringify(config, null, 2));
      output = '';
      const started = spawnRegistry(configPath);
      const scheme = options.tls ? 'https' : 'http';
      const url = `${scheme}://127.0.0.1:${port}`;
      try {
        await Promise.race([
          waitForRegistry(url, started.child, () => output, clientCertificate),
          started.spawnError,
        ]);
      } catch (error) {
        const portTaken = /address already in use/.test(output);
        await stopAllButKeepFiles(started.child);
        child = undefined;
        if (portTaken && attempt < 3) continue;
        throw error;
      }
      // Forget the readiness probes.
      await delay(50);
      accessLog.length = 0;
      const registry: TestRegistry = {
        host: `127.0.0.1:${port}`,
        port,
        url,
        storageDirectory,
        certificateDirectory,
        tokenServer,
        async accessLog(settleMs = 150) {
          await delay(settleMs);
          return [...accessLog];
        },
        clearAccessLog() {
          accessLog.length = 0;
        },
        async restart(signal: NodeJS.Signals = 'SIGKILL') {
          const running = child;
          if (running === undefined) throw new Error('the test registry was stopped');
          child = undefined;
          runningRegistries.delete(running);
          if (running.exitCode === null && running.signalCode === null && running.pid !== undefined) {
            const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
            process.kill(running.pid, signal);
            await exited;
          }
          for (let retry = 0; ; retry++) {
            const again = spawnRegistry(configPath);
            try {
              await Promise.race([
                waitForRegistry(url, again.child, () => output, clientCertificate),
                again.spawnError,
              ]);
              return;
            } catch (error) {
              await stopAllButKeepFiles(again.child);
              child = undefined;
              // The old process's socket may linger a moment.
              if (/address already in use/.test(output) && retry < 20) {
                await delay(100);
                continue;
              }
              throw error;
            }
          }
        },
        stop: stopAll,
      };
      return registry;
    }
  } catch (error) {
    await stopAll();
    throw error;
  }

  function spawnRegistry(configPath: string): { child: ChildProcess; spawnError: Promise<never> } {
    let pending = '';
    const started = spawn(registryBinary, ['serve', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = started;
    runningRegistries.add(started);
    installExitHook();
    const spawnError = new Promise<never>((_, reject) =>
      started.once('error', (error) =>
        reject(new Error(`cannot run ${registryBinary} (Debian package docker-registry): ${error.message}`)),
      ),
    );
    started.stdout?.setEncoding('utf8').on('data', (text: string) => {
      pending += text;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        const match = accessLogPattern.exec(line);
        if (match)
          accessLog.push({
            method: match[1]!,
            path: match[2]!,
            status: Number(match[3]),
            userAgent: match[4]!,
          });
      }
    });
    started.stderr?.setEncoding('utf8').on('data', (text: string) => {
      output = (output + text).slice(-4000);
    });
    return { child: started, spawnError };
  }
}

async function stopAllButKeepFiles(running: ChildProcess): Promise<void> {
  runningRegistries.delete(running);
  if (running.exitCode !== null || running.signalCode !== null || running.pid === undefined) return;
  const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
  process.kill(running.pid, 'SIGKILL');
  await exited;
}
