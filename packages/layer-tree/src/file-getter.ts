import { closeSync, constants, createReadStream, fstatSync, openSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { layerError } from './errors.js';
import { LayerRoot } from './layer-root.js';
import { cleanPath } from './tar-split.js';

const maxReadBuffer = 1 << 20;

/**
 * Opens layer files for reassembly from a directory holding the layer's files (vfs: the layer's full
 * tree; overlay: its diff directory). Names are resolved inside the directory as the layer was applied
 * (symbolic links followed as if the directory were `/`, never out of it; the file itself is not a link).
 */
export function pathFileGetter(directory: string): (name: string, nameBytes?: Buffer) => Promise<Readable> {
  const root = new LayerRoot(directory, undefined);
  return async (name, nameBytes) => {
    const raw = (nameBytes ?? Buffer.from(name, 'utf8')).toString('latin1');
    const clean = cleanPath(raw.startsWith('/') ? raw.slice(1) : raw);
    if (clean === '.' || clean === '..' || clean.startsWith('../'))
      throw layerError(`layer file "${name}" is outside the layer`);
    const slash = clean.lastIndexOf('/');
    const parent = slash === -1 ? [] : clean.slice(0, slash).split('/');
    const base = slash === -1 ? clean : clean.slice(slash + 1);
    const resolved = root.resolveDirectory(parent, name, false);
    if (resolved === undefined) throw layerError(`layer file "${name}" is missing from ${directory}`);
    const relative = resolved === '' ? base : `${resolved}/${base}`;
    let fd: number;
    try {
      fd = openSync(root.full(relative), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (error) {
      throw layerError(
        `layer file "${name}" cannot be opened in ${directory}: ${(error as Error).message}`,
        error,
      );
    }
    // A read buffer the size of the file (at most 1 MiB): small files need no 1 MiB allocation each.
    let size: number;
    try {
      size = fstatSync(fd).size;
    } catch (error) {
      closeSync(fd);
      throw error;
    }
    return createReadStream('', { fd, highWaterMark: Math.min(Math.max(size, 1), maxReadBuffer) });
  };
}
