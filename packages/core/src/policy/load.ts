import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { ErrorCodes, GantryError } from '../errors.js';
import { parsePolicy } from './parse.js';
import type { Policy } from './types.js';

/** The system-wide policy file, as in containers/image. */
export const systemPolicyPath = '/etc/containers/policy.json';
/** The per-user policy file, relative to the home directory. */
export const userPolicyRelativePath = path.join('.config', 'containers', 'policy.json');

/** Turns a Node file-system error into Go's wording: `open <path>: no such file or directory`. */
function describeReadError(filePath: string, error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const match = /^[A-Z0-9_]+: (.*?), \w+ '.*'$/.exec(message);
  return `open ${filePath}: ${match ? match[1] : message}`;
}

/**
 * Reads and parses a policy.json file (see `parsePolicy` for the rules). Throws
 * `ERR_GANTRY_INVALID_POLICY` when the file cannot be read (`open <path>: <reason>`) or is invalid
 * (`invalid policy in "<path>": <problem>`).
 */
export async function loadPolicy(filePath: string): Promise<Policy> {
  let text: string;
  try {
    // Read synchronously, as the other configuration files: a small local file read before anything
    // else can run, where an asynchronous read would start libuv's thread pool for it alone.
    text = readFileSync(filePath, 'utf8');
  } catch (error) {
    throw new GantryError(ErrorCodes.InvalidPolicy, describeReadError(filePath, error), { cause: error });
  }
  return parsePolicy(text, filePath);
}

/** Where `loadDefaultPolicy` looks; tests point these elsewhere. */
export interface DefaultPolicyOptions {
  /** The home directory; default `os.homedir()` (which is `$HOME` when set). */
  homeDirectory?: string;
  /** The system-wide file; default `/etc/containers/policy.json`. */
  systemPolicyPath?: string;
}

function exists(filePath: string): boolean {
  try {
    statSync(filePath);
    return true;
  } catch {
    return false;
  }
}

/**
 * The policy file containers/image would use: `$HOME/.config/containers/policy.json` when it
 * exists, else `/etc/containers/policy.json` when it exists. Throws `ERR_GANTRY_INVALID_POLICY`
 * naming both paths when neither exists.
 */
export async function defaultPolicyPath(options: DefaultPolicyOptions = {}): Promise<string> {
  const userPath = path.join(options.homeDirectory ?? homedir(), userPolicyRelativePath);
  if (exists(userPath)) return userPath;
  const systemPath = options.systemPolicyPath ?? systemPolicyPath;
  if (exists(systemPath)) return systemPath;
  throw new GantryError(
    ErrorCodes.InvalidPolicy,
    `no policy.json file found at any of the following: "${userPath}", "${systemPath}"; ` +
      'create one (see containers-policy.json(5)), or use --insecure-policy to accept any image without checking signatures',
  );
}

/**
 * Loads the default policy like skopeo without `--policy`: the first existing file of
 * `$HOME/.config/containers/policy.json` and `/etc/containers/policy.json`, parsed strictly.
 * Errors as `defaultPolicyPath` and `loadPolicy`.
 */
export async function loadDefaultPolicy(options: DefaultPolicyOptions = {}): Promise<Policy> {
  return loadPolicy(await defaultPolicyPath(options));
}
