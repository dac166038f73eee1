/**
 * SCAN cursors. Clients parse a cursor as an unsigned 64-bit integer
 * (redis-cli with strtoull, go-redis with ParseUint, redis-rs as u64), so a
 * cursor cannot carry the key to resume after, which may be 4 KiB long.
 * Each page's cursor is instead a random number in [2^62, 2^63) that this
 * node maps to that key. The next page starts just after the key in key
 * order, so iteration is stable across calls and writes: every key present
 * for the whole iteration is returned exactly once. Cursors are kept until
 * the table's bounds push the least recently used out (a retried call may
 * reuse a cursor); one that is gone, or came from another node or an
 * earlier run of this one, is answered with "ERR invalid cursor".
 *
 * @module
 */

import { maxRespScanCursorBytes, maxRespScanCursors } from "../common/limits.ts";
import { ReplyError } from "./command_table.ts";

/** Bytes a cursor costs beyond its key (map entry, id string). */
const cursorOverheadBytes = 96;

/** The cursors a node handed out, and the keys they resume after. */
export class ScanCursors {
  /** Cursor -> key; insertion order is use order (a use moves the entry to the end). */
  readonly #keys = new Map<string, Uint8Array>();
  #bytes = 0;

  constructor(
    readonly maxCursors = maxRespScanCursors,
    readonly maxBytes = maxRespScanCursorBytes,
  ) {}

  /** Cursors held. */
  get size(): number {
    return this.#keys.size;
  }

  /** A new cursor for a page that ended at `lastKey`. */
  issue(lastKey: Uint8Array): string {
    let cursor = randomCursor();
    while (this.#keys.has(cursor)) cursor = randomCursor();
    this.#keys.set(cursor, lastKey.slice());
    this.#bytes += lastKey.length + cursorOverheadBytes;
    for (const [oldest, key] of this.#keys) {
      const within = this.#keys.size <= this.maxCursors && this.#bytes <= this.maxBytes;
      if (within || oldest === cursor) break;
      this.#keys.delete(oldest);
      this.#bytes -= key.length + cursorOverheadBytes;
    }
    return cursor;
  }

  /** The key to resume after: undefined for "0" (the start); unknown cursors are refused. */
  resume(cursor: string): Uint8Array | undefined {
    if (cursor === "0") return undefined;
    const key = this.#keys.get(cursor);
    if (key === undefined) throw new ReplyError("ERR invalid cursor");
    this.#keys.delete(cursor);
    this.#keys.set(cursor, key);
    return key;
  }
}

/** A decimal number in [2^62, 2^63): below every client's signed and unsigned 64-bit limits. */
function randomCursor(): string {
  const [high, low] = crypto.getRandomValues(new Uint32Array(2));
  return ((1n << 62n) | (BigInt(high & 0x3fff_ffff) << 32n) | BigInt(low)).toString();
}
