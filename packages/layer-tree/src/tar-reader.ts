/** The raw-header tar reader lives in `@gantry/core/transport` (core's zstd:chunked writer reads tars too). */
export { type TarEntry, type TarEntryType, type TarHeader, TarStreamReader } from '@gantry/core/transport';
