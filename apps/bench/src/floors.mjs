// The machine's own limits on the data the rows move: hashing, copying, serving over loopback HTTP and
// (de)compressing the same bytes with Node's zlib and with the system's gzip. Each floor runs as its own
// process, measured like the rows (wall, CPU, peak memory through wait4).
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { measure } from './measure.mjs';

/** A Node one-liner reading `file` through `stage` (a node:crypto or node:zlib stream) to nowhere. */
const nodeScript = (setup) => `
const { createReadStream } = require('node:fs');
const { pipeline } = require('node:stream/promises');
const { Writable } = require('node:stream');
const crypto = require('node:crypto');
const zlib = require('node:zlib');
const sink = new Writable({ write(chunk, encoding, done) { done(); } });
(async () => { ${setup} })().catch((error) => { console.error(error); process.exit(1); });
`;

/**
 * Serves `file` at / on 127.0.0.1 from a child Node process (read stream piped to the socket), so the
 * measured client runs while this process waits for it; `stop` ends the server by PID.
 */
async function serveFile(file) {
  const script = `
const { createServer } = require('node:http');
const { createReadStream, statSync } = require('node:fs');
const file = process.argv[1];
const server = createServer((request, response) => {
  response.writeHead(200, { 'content-length': statSync(file).size });
  createReadStream(file, { highWaterMark: 1 << 20 }).pipe(response);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;
  const child = spawn(process.execPath, ['-e', script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
      if (output.includes('\n')) resolve(Number(output.trim()));
    });
    child.once('exit', (code) => reject(new Error(`the floor's HTTP server exited (${code})`)));
  });
  return {
    url: `http://127.0.0.1:${port}/`,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/**
 * Measures the floors. `compressed` is a gzip file of compressible data, `random` a large file of
 * incompressible data (a layer blob), `registryBlobUrl` (optional) a URL of the same random blob served
 * by the benchmark registry. Returns rows `{ name, description, bytes, seconds, cpuSeconds, peakMiB }`.
 */
export async function measureFloors({ workDirectory, compressed, random, registryBlobUrl }) {
  const floors = [];
  const add = (name, description, bytes, command, args) => {
    try {
      floors.push({ name, description, bytes, ...measure(command, args) });
    } catch (error) {
      floors.push({ name, description, bytes, error: error.message });
    }
  };
  const randomBytes = statSync(random).size;
  add(
    'sha256-node',
    `SHA-256 of ${describe(randomBytes)} by Node (node:crypto)`,
    randomBytes,
    process.execPath,
    [
      '-e',
      nodeScript(
        `const hash = crypto.createHash('sha256'); await pipeline(createReadStream(${JSON.stringify(random)}, { highWaterMark: 1 << 20 }), hash); hash.digest('hex');`,
      ),
    ],
  );
  add('sha256sum', `SHA-256 of the same bytes by sha256sum`, randomBytes, 'sha256sum', [random]);
  const copy = join(workDirectory, 'floor-copy');
  add('file-copy', `plain file copy of the same bytes (cp, then sync)`, randomBytes, 'sh', [
    '-c',
    'cp "$1" "$2" && sync "$2"',
    'floor-copy',
    random,
    copy,
  ]);
  await rm(copy, { force: true });
  if (existsSync('/usr/bin/curl')) {
    const server = await serveFile(random);
    try {
      add('http-loopback', `loopback HTTP, Node server → curl, same bytes`, randomBytes, 'curl', [
        '-sS',
        '-o',
        '/dev/null',
        server.url,
      ]);
    } finally {
      await server.stop();
    }
    if (registryBlobUrl) {
      add('http-registry', `the same blob from the benchmark registry → curl`, randomBytes, 'curl', [
        '-sS',
        '-L',
        '-o',
        '/dev/null',
        registryBlobUrl,
      ]);
    }
  }
  // Compressible data: the gzip layer, and its decompressed contents.
  const plain = join(workDirectory, 'floor-plain');
  await new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', 'gzip -dc "$1" > "$2"', 'floor-unpack', compressed, plain], {
      stdio: 'inherit',
    });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`gzip -d exited ${code}`))));
  });
  const plainBytes = statSync(plain).size;
  const compressedBytes = statSync(compressed).size;
  add(
    'gunzip-node',
    `gunzip of a ${describe(compressedBytes)} compressible layer by Node (node:zlib)`,
    plainBytes,
    process.execPath,
    [
      '-e',
      nodeScript(
        `await pipeline(createReadStream(${JSON.stringify(compressed)}, { highWaterMark: 1 << 20 }), zlib.createGunzip({ chunkSize: 1 << 20 }), sink);`,
      ),
    ],
  );
  add('gunzip-gzip', 'the same by gzip -d', plainBytes, 'sh', [
    '-c',
    'gzip -dc "$1" > /dev/null',
    'gunzip',
    compressed,
  ]);
  add(
    'gzip-node',
    `gzip -3 of the same ${describe(plainBytes)} by Node (node:zlib, one thread)`,
    plainBytes,
    process.execPath,
    [
      '-e',
      nodeScript(
        `await pipeline(createReadStream(${JSON.stringify(plain)}, { highWaterMark: 1 << 20 }), zlib.createGzip({ level: 3 }), sink);`,
      ),
    ],
  );
  add('gzip-gzip', 'the same by gzip -3', plainBytes, 'sh', [
    '-c',
    'gzip -3c "$1" > /dev/null',
    'gzip',
    plain,
  ]);
  if (existsSync('/usr/bin/zstd')) {
    add('zstd', 'zstd -3 of the same (one thread)', plainBytes, 'sh', [
      '-c',
      'zstd -q -3 -c "$1" > /dev/null',
      'zstd',
      plain,
    ]);
  }
  await rm(plain, { force: true });
  return floors;
}

function describe(bytes) {
  return `${(bytes / (1024 * 1024)).toFixed(0)} MiB`;
}
