/**
 * SCAN cursors. A cursor is the last key returned, so iteration is stable
 * across calls and across writes: the next page starts just after it in key
 * order, every key present for the whole iteration is returned exactly
 * once, and the server keeps no per-cursor state. Clients (redis-py,
 * redis-cli) parse cursors as unsigned integers, so the key is carried as
 * the decimal form of the big-endian number 0x01 || key ("0" = start/end).
 *
 * @module
 */

import { maxKeyBytes } from "../common/limits.ts";
import { ReplyError } from "./command_table.ts";

/** Encodes the key to resume after. */
export function encodeCursor(lastKey: Uint8Array): string {
  let hex = "01";
  for (const b of lastKey) hex += b.toString(16).padStart(2, "0");
  return BigInt("0x" + hex).toString(10);
}

/** Decodes a cursor: undefined for "0" (the start), else the key to resume after. */
export function decodeCursor(cursor: string): Uint8Array | undefined {
  if (cursor === "0") return undefined;
  // 0x01 || key of at most maxKeyBytes bytes has at most this many decimal digits.
  if (!/^[1-9]\d*$/.test(cursor) || cursor.length > Math.ceil((maxKeyBytes + 1) * 2.41) + 1) {
    throw new ReplyError("ERR invalid cursor");
  }
  const hex = "0" + BigInt(cursor).toString(16);
  if (hex.length % 2 !== 0 || !hex.startsWith("01")) throw new ReplyError("ERR invalid cursor");
  const key = new Uint8Array(hex.length / 2 - 1);
  for (let i = 0; i < key.length; i++) key[i] = parseInt(hex.slice(2 + 2 * i, 4 + 2 * i), 16);
  return key;
}
