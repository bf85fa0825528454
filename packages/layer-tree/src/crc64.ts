/** CRC-64/ISO, as tar-split stores it, lives in `@gantry/core/transport` (core's zstd:chunked writer needs it). */
export { Crc64, crc64 } from '@gantry/core/transport';
