/**
 * SCAN cursors. Clients parse a cursor as an unsigned 64-bit integer
 * (redis-cli with strtoull, go-redis with ParseUint, redis-rs as u64), so a
 * cursor cannot carry the key to resume after, which may be 4 KiB long.
 * Each page's cursor is instead a random number in [2^62, 2^63) that this
 * node maps to that key. The next page starts just after the key in key
 * order, so iteration is stable across calls and writes: every key present
 * for the whole iteration is returned exactly once. Cursors are kept until
 * the next page's cursor is used or the table's bounds push the least
 * recently used out (a retried call may reuse a cursor); one that is gone,
 * or came from another node or an earlier run of this one, is answered with
 * "ERR invalid cursor".
 *
 * @module
 */

import { maxRespScanCursorBytes, maxRespScanCursors } from "../common/limits.ts";
import { ReplyError } from "./command_table.ts";

/** Bytes a cursor costs beyond its key (map entry, id string). */
const cursorOverheadBytes = 96;

/** The cursors a node handed out, and the keys they resume after. */
export class ScanCursors {
  /**
   * Cursor -> the key it resumes after, and the cursor whose page issued it
   * ("0" for a first page); insertion order is use order (a use moves the
   * entry to the end).
   */
  readonly #keys = new Map<string, { key: Uint8Array; from: string }>();
  #bytes = 0;

  constructor(
    readonly maxCursors = maxRespScanCursors,
    readonly maxBytes = maxRespScanCursorBytes,
  ) {}

  /** Cursors held. */
  get size(): number {
    return this.#keys.size;
  }

  /**
   * A new cursor for a page that ended at `lastKey`, asked for with cursor
   * `from` ("0" for a first page).
   */
  issue(lastKey: Uint8Array, from = "0"): string {
    let cursor = randomCursor();
    while (this.#keys.has(cursor)) cursor = randomCursor();
    this.#keys.set(cursor, { key: lastKey.slice(), from });
    this.#bytes += lastKey.length + cursorOverheadBytes;
    for (const [oldest, entry] of this.#keys) {
      const within = this.#keys.size <= this.maxCursors && this.#bytes <= this.maxBytes;
      if (within || oldest === cursor) break;
      this.#drop(oldest, entry.key);
    }
    return cursor;
  }

  /**
   * The key to resume after: undefined for "0" (the start); unknown cursors
   * are refused. Using a cursor retires the one before it in its iteration
   * (the client has its page), so a scan holds two cursors, not one per page.
   */
  resume(cursor: string): Uint8Array | undefined {
    if (cursor === "0") return undefined;
    const entry = this.#keys.get(cursor);
    if (entry === undefined) throw new ReplyError("ERR invalid cursor");
    this.#keys.delete(cursor);
    this.#keys.set(cursor, entry);
    const before = this.#keys.get(entry.from);
    if (before !== undefined) this.#drop(entry.from, before.key);
    return entry.key;
  }

  #drop(cursor: string, key: Uint8Array): void {
    this.#keys.delete(cursor);
    this.#bytes -= key.length + cursorOverheadBytes;
  }
}

/** A decimal number in [2^62, 2^63): below every client's signed and unsigned 64-bit limits. */
function randomCursor(): string {
  const [high, low] = crypto.getRandomValues(new Uint32Array(2));
  return ((1n << 62n) | (BigInt(high & 0x3fff_ffff) << 32n) | BigInt(low)).toString();
}
