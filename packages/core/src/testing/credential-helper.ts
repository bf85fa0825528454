/**
 * A real credential helper for tests of the docker-credential-helpers protocol.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** A helper written by `writeTestCredentialHelper`, and ways to look at what it holds. */
export interface TestCredentialHelper {
  /** The program's path (`<directory>/docker-credential-<name>`); put `directory` on PATH. */
  program: string;
  /** The JSON file holding `{ServerURL: {Username, Secret}}`. */
  storePath: string;
  /** What the helper holds now. */
  entries(): Promise<Record<string, { Username: string; Secret: string }>>;
  /** `<command> <server>` for each call so far, in order. */
  calls(): Promise<string[]>;
  /** Makes `command` fail from now on, like a locked keyring. */
  failOn(command: string): Promise<void>;
  /** Undoes `failOn`. */
  stopFailing(command: string): Promise<void>;
}

/**
 * Writes `docker-credential-<name>`, a real credential helper (a node script) speaking the
 * docker-credential-helpers protocol: get/store/erase/list against `<name>-store.json` next to it,
 * each call logged (command and server, never the secret) in `<name>-calls.log`. A file
 * `<name>-fail-<command>` makes that command fail like a broken keyring: the secret it was given is
 * echoed on stdout and the whole input on stderr (to prove neither reaches Gantry's errors).
 */
export async function writeTestCredentialHelper(
  directory: string,
  name: string,
): Promise<TestCredentialHelper> {
  const script = `#!${process.execPath}
const fs = require('node:fs');
const path = require('node:path');
const base = path.join(__dirname, ${JSON.stringify(name)});
const command = process.argv[2];
const input = fs.readFileSync(0, 'utf8');
const storePath = base + '-store.json';
const store = fs.existsSync(storePath) ? JSON.parse(fs.readFileSync(storePath, 'utf8')) : {};
const save = () => fs.writeFileSync(storePath, JSON.stringify(store));
const fail = (message) => { process.stdout.write(message + '\\n'); process.exit(1); };
const server = command === 'store' ? JSON.parse(input).ServerURL : input.trim();
fs.appendFileSync(base + '-calls.log', command + ' ' + server + '\\n');
if (fs.existsSync(base + '-fail-' + command)) {
  process.stderr.write('input was: ' + input + '\\n');
  const secret = command === 'store' ? JSON.parse(input).Secret : '';
  fail('keyring is locked (was given secret ' + secret + ')');
}
switch (command) {
  case 'store': {
    const credentials = JSON.parse(input);
    if (!credentials.ServerURL) fail('no credentials server URL');
    store[credentials.ServerURL] = { Username: credentials.Username, Secret: credentials.Secret };
    save();
    break;
  }
  case 'get': {
    const entry = store[server];
    if (!entry) fail('credentials not found in native keychain');
    process.stdout.write(JSON.stringify({ ServerURL: server, Username: entry.Username, Secret: entry.Secret }));
    break;
  }
  case 'erase':
    if (!store[server]) fail('credentials not found in native keychain');
    delete store[server];
    save();
    break;
  case 'list': {
    const list = {};
    for (const [url, entry] of Object.entries(store)) list[url] = entry.Username;
    process.stdout.write(JSON.stringify(list));
    break;
  }
  default:
    fail('unknown credential action');
}
`;
  const program = path.join(directory, `docker-credential-${name}`);
  await writeFile(program, script, { mode: 0o755 });
  const base = path.join(directory, name);
  return {
    program,
    storePath: `${base}-store.json`,
    async entries(): Promise<Record<string, { Username: string; Secret: string }>> {
      try {
        return JSON.parse(await readFile(`${base}-store.json`, 'utf8'));
      } catch {
        return {};
      }
    },
    async calls(): Promise<string[]> {
      try {
        return (await readFile(`${base}-calls.log`, 'utf8')).trim().split('\n');
      } catch {
        return [];
      }
    },
    async failOn(command: string): Promise<void> {
      await writeFile(`${base}-fail-${command}`, '');
    },
    async stopFailing(command: string): Promise<void> {
      await rm(`${base}-fail-${command}`, { force: true });
    },
  };
}
