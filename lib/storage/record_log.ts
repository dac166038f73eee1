/**
 * Framed records shared by the WAL and the manifest: `crc u32 | length u32 |
 * payload`, the CRC covering length and payload (docs/FORMATS.md, "Framed
 * records"). Writing frames many records into one buffer so group commit can
 * issue one write; reading classifies a bad record as a torn tail or as
 * corruption (a valid record after it means corruption, never a silent skip).
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { crc32 } from "../common/crc.ts";
import { CorruptionError } from "../common/errors.ts";
import { maxWalRecordBytes } from "../common/limits.ts";
import type { FileSystem } from "./fs.ts";
import { readU32, writeU32 } from "./internal_key.ts";

/** Bytes of a record header (crc + length). */
export const recordHeaderBytes = 8;

/**
 * Frames the payload already written at `buf[at+8, at+8+len)`: fills in the
 * header at `buf[at]`. Returns the end of the record.
 */
export function frameRecordInPlace(buf: Uint8Array, at: number, len: number): number {
  // A longer record would read back as corruption or a torn tail: refuse to write it.
  assert(len <= maxWalRecordBytes, `a ${len}-byte record exceeds ${maxWalRecordBytes} bytes`);
  writeU32(buf, at + 4, len);
  writeU32(buf, at, crc32(buf.subarray(at + 4, at + recordHeaderBytes + len)));
  return at + recordHeaderBytes + len;
}

/** A standalone framed record holding `payload`. */
export function frameRecord(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(recordHeaderBytes + payload.length);
  out.set(payload, recordHeaderBytes);
  frameRecordInPlace(out, 0, payload.length);
  return out;
}

/** True when a complete, checksum-valid record starts at `at`. */
function validAt(buf: Uint8Array, at: number): boolean {
  if (at + recordHeaderBytes > buf.length) return false;
  const len = readU32(buf, at + 4);
  if (len < 1 || len > maxWalRecordBytes || at + recordHeaderBytes + len > buf.length) return false;
  return crc32(buf.subarray(at + 4, at + recordHeaderBytes + len)) === readU32(buf, at);
}

/** True when a record header at `at` is whole, in range, and its payload fits the file. */
function completeAt(buf: Uint8Array, at: number): boolean {
  if (at + recordHeaderBytes > buf.length) return false;
  const len = readU32(buf, at + 4);
  return len >= 1 && len <= maxWalRecordBytes && at + recordHeaderBytes + len <= buf.length;
}

/** One record read back, with the offset of its header in the file. */
export interface ReadRecord {
  offset: number;
  payload: Uint8Array;
}

/** What reading a record file found. */
export interface RecordScan {
  records: ReadRecord[];
  /** End of the last valid record (where a torn tail starts). */
  validEndBytes: number;
  /** File size as read. */
  sizeBytes: number;
  /** True when bytes after `validEndBytes` were judged a torn tail. */
  tornTail: boolean;
}

/**
 * Reads every record of `path`. A bad record followed (at any later offset)
 * by a valid one raises CorruptionError naming the file and offset; a bad
 * tail with nothing valid after it is reported as `tornTail` for the caller
 * to truncate or reject. With `strictTail` (the manifest), a tail record that
 * is complete but fails its checksum is corruption too: only a record cut
 * short by the end of the file counts as torn.
 */
export async function readRecords(
  fs: FileSystem,
  path: string,
  strictTail = false,
): Promise<RecordScan> {
  const buf = await fs.readFile(path);
  return scanRecords(buf, path, strictTail);
}

/** The pure part of readRecords, over bytes already in memory. */
export function scanRecords(buf: Uint8Array, path: string, strictTail = false): RecordScan {
  const records: ReadRecord[] = [];
  let at = 0;
  while (at < buf.length) {
    if (!validAt(buf, at)) {
      for (let probe = at + 1; probe + recordHeaderBytes < buf.length; probe++) {
        if (validAt(buf, probe)) {
          throw new CorruptionError(
            path,
            at,
            `bad record (checksum or length) followed by a valid record at ${probe}`,
          );
        }
      }
      if (strictTail && completeAt(buf, at)) {
        throw new CorruptionError(path, at, "checksum mismatch in a complete record at the tail");
      }
      return { records, validEndBytes: at, sizeBytes: buf.length, tornTail: true };
    }
    const len = readU32(buf, at + 4);
    records.push({
      offset: at,
      payload: buf.subarray(at + recordHeaderBytes, at + recordHeaderBytes + len),
    });
    at += recordHeaderBytes + len;
  }
  return { records, validEndBytes: at, sizeBytes: buf.length, tornTail: false };
}
