/**
 * CRC-32 (IEEE, the zlib polynomial) from `node:zlib`, which is native and
 * fast. Used on every record and block we write.
 *
 * @module
 */

import { crc32 as zlibCrc32 } from "node:zlib";

/** CRC-32 of `data`, optionally continuing from a previous value (for data in pieces). */
export function crc32(data: Uint8Array, previous = 0): number {
  return zlibCrc32(data, previous) >>> 0;
}
