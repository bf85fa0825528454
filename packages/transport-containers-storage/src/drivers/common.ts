/**
 * What the built-in drivers share: layer ID checks, driver option parsing, ID mappings, and the
 * mapping of a layer-tree application result onto the driver contract's.
 */
import { ErrorCodes, GantryError } from '@gantry/core/transport';
import type { ApplyLayerResult } from '@gantry/layer-tree';
import type { ApplyDiffResult, IdMapping, StorageDriverOptions } from './driver.js';

const layerIdPattern = /^[0-9a-f]{64}$/;

/** Refuses anything but a 64-hex-digit layer ID (it becomes a path component). */
export function checkLayerId(id: string): string {
  if (!layerIdPattern.test(id))
    throw new GantryError(ErrorCodes.Internal, `storage driver: "${id}" is not a layer ID (64 hex digits)`);
  return id;
}

/**
 * The driver's own options from storage.conf / the reference: `<driver>.<key>=<value>` (or `<key>=<value>`),
 * keys lower-cased. Options of other drivers are ignored.
 */
export function driverOptions(driver: string, options: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const option of options) {
    const equals = option.indexOf('=');
    const rawKey = (equals === -1 ? option : option.slice(0, equals)).trim().toLowerCase();
    const value = equals === -1 ? '' : option.slice(equals + 1).trim();
    const dot = rawKey.indexOf('.');
    if (dot !== -1) {
      if (rawKey.slice(0, dot) !== driver) continue;
      out.set(rawKey.slice(dot + 1), value);
    } else {
      out.set(rawKey, value);
    }
  }
  return out;
}

export function isTrue(value: string | undefined): boolean {
  return value !== undefined && ['true', '1', 'yes'].includes(value.toLowerCase());
}

/** The host owner of the container's root (0:0 mapped), used for directories a driver makes. */
export function rootOwner(options: StorageDriverOptions): { uid: number; gid: number } {
  const map = (mappings: readonly IdMapping[] | undefined, id: number): number => {
    if (mappings === undefined || mappings.length === 0) return id;
    for (const range of mappings) {
      if (id >= range.containerId && id < range.containerId + range.size)
        return range.hostId + (id - range.containerId);
    }
    throw new GantryError(
      ErrorCodes.InvalidConfiguration,
      'storage driver: the ID mappings do not map the container root (0)',
    );
  };
  return { uid: map(options.uidMappings, 0), gid: map(options.gidMappings, 0) };
}

export function toApplyDiffResult(result: ApplyLayerResult): ApplyDiffResult {
  return {
    uncompressedDigest: result.uncompressedDigest,
    uncompressedSize: result.uncompressedSize,
    tarSplitGzip: result.tarSplitGzip,
    uids: result.uids,
    gids: result.gids,
  };
}
