/**
 * A limit on how far compressed data may expand when Gantry decompresses it (a decompression bomb: a
 * few kilobytes of gzip, xz or bzip2 that become gigabytes). Decompression is streamed, so memory stays
 * bounded anyway; the limit bounds the disk a spooled archive takes and the time a layer takes.
 *
 * Data may always decompress to `allowanceBytes`; past that, the decompressed size may be at most
 * `maxRatio` times the compressed bytes read so far. Real image data is far below it (tar files of
 * programs and libraries compress 2–5 : 1; a layer holding a large file of zeros may reach several
 * hundred : 1, which the allowance covers up to its size). The defaults are 100 : 1 and 1 GiB; the
 * environment sets others:
 * - `GANTRY_MAX_EXPANSION_RATIO`: the ratio (a positive number), `0` for no limit;
 * - `GANTRY_EXPANSION_ALLOWANCE_MIB`: the allowance in MiB (a non-negative number).
 * Data over the limit fails with a `GantryError` (the code the caller names) saying how far it expanded
 * and which setting raises the limit. Where it applies: compressed `docker-archive:` and `oci-archive:`
 * files (decompressed into a spool file before they are read), and layers the copy pipeline decompresses
 * for a destination (`docker-archive:`, `docker-daemon:`, containers-storage, ostree).
 */
import { Transform } from 'node:stream';
import { type ErrorCode, ErrorCodes, GantryError } from './errors.js';

/** How far compressed data may expand: see the module comment. */
export interface ExpansionLimit {
  /** Decompressed bytes allowed per compressed byte past the allowance; 0 (or Infinity) for no limit. */
  maxRatio: number;
  /** Decompressed bytes always allowed. */
  allowanceBytes: number;
}

/** 100 : 1 past the first GiB. */
export const defaultExpansionLimit: Readonly<ExpansionLimit> = Object.freeze({
  maxRatio: 100,
  allowanceBytes: 1024 * 1024 * 1024,
});

/**
 * The limit the environment sets (`GANTRY_MAX_EXPANSION_RATIO`, `GANTRY_EXPANSION_ALLOWANCE_MIB`), the
 * defaults for what it does not set. A value that is not a number in range is
 * `ERR_GANTRY_INVALID_CONFIGURATION` naming the variable.
 */
export function expansionLimitFromEnvironment(environment: NodeJS.ProcessEnv = process.env): ExpansionLimit {
  const read = (name: string): number | undefined => {
    const text = environment[name]?.trim();
    if (text === undefined || text === '') return undefined;
    const value = Number(text);
    if (!/^\d+(\.\d+)?$/.test(text) || !Number.isFinite(value)) {
      throw new GantryError(
        ErrorCodes.InvalidConfiguration,
        `${name}=${JSON.stringify(environment[name])}: not a non-negative number`,
      );
    }
    return value;
  };
  const ratio = read('GANTRY_MAX_EXPANSION_RATIO');
  const allowanceMiB = read('GANTRY_EXPANSION_ALLOWANCE_MIB');
  return {
    maxRatio: ratio ?? defaultExpansionLimit.maxRatio,
    allowanceBytes:
      allowanceMiB === undefined
        ? defaultExpansionLimit.allowanceBytes
        : Math.floor(allowanceMiB * 1024 * 1024),
  };
}

/** Counts compressed and decompressed bytes of one stream and throws once the limit is passed. */
export class ExpansionGuard {
  readonly #what: string;
  readonly #code: ErrorCode;
  readonly #limit: ExpansionLimit;
  #compressedBytes = 0;
  #decompressedBytes = 0;

  /**
   * `what` names the data in the error (`archive /x.tar.gz`, `blob sha256:…`); `code` is the error's
   * code; `limit` defaults to `expansionLimitFromEnvironment()`.
   */
  constructor(what: string, code: ErrorCode, limit: ExpansionLimit = expansionLimitFromEnvironment()) {
    this.#what = what;
    this.#code = code;
    this.#limit = limit;
  }

  /** Counts compressed bytes given to the decompressor. */
  compressed(bytes: number): void {
    this.#compressedBytes += bytes;
  }

  /** Counts decompressed bytes; throws when they pass the limit. */
  decompressed(bytes: number): void {
    this.#decompressedBytes += bytes;
    const { maxRatio, allowanceBytes } = this.#limit;
    if (!(maxRatio > 0) || maxRatio === Number.POSITIVE_INFINITY) return;
    if (this.#decompressedBytes <= Math.max(allowanceBytes, maxRatio * this.#compressedBytes)) return;
    throw new GantryError(
      this.#code,
      `${this.#what}: decompression bomb refused: ${this.#compressedBytes} compressed bytes expanded to at least ${this.#decompressedBytes} bytes, over the limit of ${maxRatio}:1 past the first ${formatMiB(allowanceBytes)} (GANTRY_MAX_EXPANSION_RATIO, GANTRY_EXPANSION_ALLOWANCE_MIB)`,
    );
  }

  /** Stream stages around a decompressor: `input` before it counts, `output` after it checks. */
  stages(): { input: Transform; output: Transform } {
    return {
      input: new Transform({
        transform: (chunk: Buffer, _encoding, callback) => {
          this.compressed(chunk.byteLength);
          callback(null, chunk);
        },
      }),
      output: new Transform({
        transform: (chunk: Buffer, _encoding, callback) => {
          try {
            this.decompressed(chunk.byteLength);
          } catch (error) {
            callback(error as Error);
            return;
          }
          callback(null, chunk);
        },
      }),
    };
  }
}

function formatMiB(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : `${bytes} bytes`;
}
