import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { manifestDigest } from '@gantry/core';
import { UsageError } from '../args.js';
import type { CommandContext, CommandDefinition } from '../context.js';
import { errorMessage, wrapError } from '../errors.js';

const goErrnoText: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
  ENOTDIR: 'not a directory',
  ELOOP: 'too many levels of symbolic links',
};

/** A file-system error worded like Go's `*PathError` (`open /x: no such file or directory`). */
export function goPathErrorMessage(error: unknown, operation: string, path: string): string {
  const code = (error as { code?: string }).code;
  const text = code ? goErrnoText[code] : undefined;
  if (!text) return errorMessage(error);
  return `${code === 'EISDIR' ? 'read' : operation} ${path}: ${text}`;
}

async function run(context: CommandContext): Promise<void> {
  if (context.positionals.length !== 1) throw new UsageError('Usage: gantry manifest-digest manifest');
  const path = context.positionals[0]!;
  let bytes: Uint8Array;
  try {
    bytes = await readFile(resolve(context.io.cwd, path));
  } catch (error) {
    throw wrapError(
      `Error reading manifest from ${path}`,
      new Error(goPathErrorMessage(error, 'open', path)),
    );
  }
  let digest: string;
  try {
    digest = manifestDigest(bytes);
  } catch (error) {
    throw wrapError('Error computing digest', error);
  }
  context.print(`${digest}\n`);
}

/** `gantry manifest-digest FILE`: skopeo manifest-digest. */
export const manifestDigestCommand: CommandDefinition = {
  name: 'manifest-digest',
  use: 'manifest-digest MANIFEST-FILE',
  short: 'Compute a manifest digest of a file',
  long: 'Compute a manifest digest of a file',
  examples: 'gantry manifest-digest manifest.json',
  flags: [],
  run,
};
