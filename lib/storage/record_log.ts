/**
 * Framed records shared by the WAL, the Raft log and the manifest: `crc u32 |
 * length u32 | payload`, the CRC covering length and payload (docs/FORMATS.md,
 * "Framed records"). Writing frames many records into one buffer so group
 * commit can issue one write; reading classifies a bad record as a torn tail
 * or as corruption, never a silent skip.
 *
 * A file written in place over zero-filled (preallocated) space also holds
 * sync markers: a frame flagged in its length field that records how far the
 * writer knew the file to be durable when it issued the write the marker
 * starts. Such a file can tear in any order (a later sector of an unsynced
 * write on disk, an earlier one still zero), so there a bad record is
 * corruption only when a later marker proves it was durable.
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

/** Payload bytes of a sync marker: the durable offset, u64 big-endian. */
const markerPayloadBytes = 8;
/**
 * The length field of a sync marker: the top bit (never set in a record's
 * length, which stays below maxWalRecordBytes) plus the payload size.
 */
const markerLengthField = 0x8000_0000 + markerPayloadBytes;
/** Bytes of a whole sync marker frame. */
export const syncMarkerBytes = recordHeaderBytes + markerPayloadBytes;

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

/**
 * A sync marker saying that the first `durableBytes` bytes of the file were
 * durable when the write it starts was issued.
 */
export function frameSyncMarker(durableBytes: number): Uint8Array {
  assert(Number.isSafeInteger(durableBytes) && durableBytes >= 0, "durable offset out of range");
  const out = new Uint8Array(syncMarkerBytes);
  writeU32(out, 8, Math.floor(durableBytes / 0x1_0000_0000));
  writeU32(out, 12, durableBytes >>> 0);
  writeU32(out, 4, markerLengthField);
  writeU32(out, 0, crc32(out.subarray(4)));
  return out;
}

/** The durable offset of the valid sync marker at `at`, or -1 when none starts there. */
function markerAt(buf: Uint8Array, at: number): number {
  if (at + syncMarkerBytes > buf.length) return -1;
  if (readU32(buf, at + 4) !== markerLengthField) return -1;
  if (crc32(buf.subarray(at + 4, at + syncMarkerBytes)) !== readU32(buf, at)) return -1;
  return readU32(buf, at + 8) * 0x1_0000_0000 + readU32(buf, at + 12);
}

/** True when a complete, checksum-valid record (not a marker) starts at `at`. */
function validAt(buf: Uint8Array, at: number): boolean {
  if (at + recordHeaderBytes > buf.length) return false;
  const len = readU32(buf, at + 4);
  if (len < 1 || len > maxWalRecordBytes || at + recordHeaderBytes + len > buf.length) return false;
  return crc32(buf.subarray(at + 4, at + recordHeaderBytes + len)) === readU32(buf, at);
}

/** True when every byte from `at` on is zero (preallocated space never written). */
function zeroFrom(buf: Uint8Array, at: number): boolean {
  for (let i = at; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
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
  /**
   * True when the file starts with a sync marker: it was written in place
   * over preallocated space, and the writer that continues it must keep
   * writing markers.
   */
  markers: boolean;
  /** True when the bytes after `validEndBytes` are all zero (unused preallocated space). */
  zeroTail: boolean;
}

/**
 * Reads every record of `path` (see scanRecords for how a bad one is judged).
 * With `strictTail` (the manifest), a tail record that is complete but fails
 * its checksum is corruption too: only a record cut short by the end of the
 * file counts as torn.
 */
export async function readRecords(
  fs: FileSystem,
  path: string,
  strictTail = false,
): Promise<RecordScan> {
  const buf = await fs.readFile(path);
  return scanRecords(buf, path, strictTail);
}

/**
 * The pure part of readRecords, over bytes already in memory. Records are
 * read from offset 0; at the first bad one, at offset X:
 * - only zero bytes from X on: the end of the data (`zeroTail`), not torn;
 * - in a file without markers, a valid record anywhere after X is
 *   CorruptionError naming the file and X (appends reach the disk in order,
 *   so a good record after a bad one means the bad one was damaged);
 * - in a file with markers, CorruptionError when a valid marker after X
 *   says X was durable before a later write began;
 * - otherwise a torn tail: X is where the caller truncates.
 */
export function scanRecords(buf: Uint8Array, path: string, strictTail = false): RecordScan {
  const records: ReadRecord[] = [];
  const markers = markerAt(buf, 0) >= 0;
  let at = 0;
  while (at < buf.length) {
    if (markers && markerAt(buf, at) >= 0) {
      at += syncMarkerBytes;
      continue;
    }
    if (!validAt(buf, at)) {
      const found = { records, validEndBytes: at, sizeBytes: buf.length, markers };
      if (zeroFrom(buf, at)) return { ...found, tornTail: false, zeroTail: true };
      for (let probe = at + 1; probe + recordHeaderBytes < buf.length; probe++) {
        if (markers) {
          const durable = markerAt(buf, probe);
          if (durable > at) {
            throw new CorruptionError(
              path,
              at,
              `bad record (checksum or length) that the sync marker at ${probe} says was durable`,
            );
          }
        } else if (validAt(buf, probe)) {
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
      return { ...found, tornTail: true, zeroTail: false };
    }
    const len = readU32(buf, at + 4);
    records.push({
      offset: at,
      payload: buf.subarray(at + recordHeaderBytes, at + recordHeaderBytes + len),
    });
    at += recordHeaderBytes + len;
  }
  return {
    records,
    validEndBytes: at,
    sizeBytes: buf.length,
    tornTail: false,
    markers,
    zeroTail: false,
  };
}

/**
 * For a segment that is done (a newer one exists, so it was sealed: synced,
 * unused preallocated space cut off): CorruptionError unless it ends exactly
 * at its last valid record. `what` names the kind of segment in the message.
 */
export function requireSealedEnd(scan: RecordScan, path: string, what: string): void {
  if (scan.validEndBytes === scan.sizeBytes) return;
  throw new CorruptionError(
    path,
    scan.validEndBytes,
    scan.zeroTail
      ? `zero bytes after the last record of a sealed ${what}`
      : `bad record in a sealed ${what}`,
  );
}

/**
 * For the newest segment: cuts a torn tail, or preallocated space never
 * written, off the file durably, so appends continue at its last record.
 * Returns what was cut when it held data (a torn tail: an operator should
 * hear of it), undefined when nothing or only zeros were.
 */
export async function cutToValidEnd(
  fs: FileSystem,
  path: string,
  scan: RecordScan,
): Promise<string | undefined> {
  if (scan.validEndBytes === scan.sizeBytes) return undefined;
  const file = await fs.open(path);
  try {
    await file.truncate(scan.validEndBytes);
    await file.syncData();
  } finally {
    await file.close();
  }
  if (scan.zeroTail) return undefined;
  return `cut a torn tail off ${path} at byte offset ${scan.validEndBytes} ` +
    `(${scan.sizeBytes - scan.validEndBytes} bytes of an unfinished write)`;
}
