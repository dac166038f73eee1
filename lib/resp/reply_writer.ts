/**
 * RESP2 reply encoder. Replies of one read batch accumulate in one growing
 * buffer so the connection answers a whole pipeline with one socket write
 * (docs/FORMATS.md, "RESP listener"). Pure: no I/O.
 *
 * @module
 */

import { allocBytes } from "../common/byte_pool.ts";

const encoder = new TextEncoder();
const CRLF = [13, 10];

/** Accumulates encoded replies; `take()` hands them over and starts afresh. */
export class ReplyWriter {
  #buf: Uint8Array;
  #len = 0;
  readonly #initialBytes: number;

  /**
   * `initialBytes`: small for the per-command writers of a concurrent batch.
   * `pooled`: start in the shared byte pool (lib/common/byte_pool.ts), for a
   * writer whose replies are moved to another writer and never written to a
   * socket from here (socket writes of pool views were measured slower).
   */
  constructor(initialBytes = 4096, pooled = false) {
    this.#initialBytes = initialBytes;
    this.#buf = pooled ? allocBytes(initialBytes) : new Uint8Array(initialBytes);
  }

  /** Bytes encoded and not yet taken. */
  get length(): number {
    return this.#len;
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const grown = new Uint8Array(Math.max(this.#len + n, this.#buf.length * 2));
    grown.set(this.#buf.subarray(0, this.#len));
    this.#buf = grown;
  }

  #ascii(s: string): void {
    this.#reserve(s.length);
    for (let i = 0; i < s.length; i++) this.#buf[this.#len++] = s.charCodeAt(i) & 0xff;
  }

  #crlf(): void {
    this.#reserve(2);
    this.#buf[this.#len++] = CRLF[0];
    this.#buf[this.#len++] = CRLF[1];
  }

  /** `+OK`-style status; CR and LF in `s` are replaced so the frame stays valid. */
  simple(s: string): this {
    this.#ascii("+" + s.replace(/[\r\n]/g, " "));
    this.#crlf();
    return this;
  }

  /** Error replies encoded since the last `reset` (moved along by `moveTo`). */
  errors = 0;

  /** `-ERR ...`: `s` starts with the error code word (ERR, WRONGTYPE, NOPROTO, READONLY). */
  error(s: string): this {
    this.errors++;
    const line = encoder.encode("-" + s.replace(/[\r\n]/g, " "));
    this.#reserve(line.length);
    this.#buf.set(line, this.#len);
    this.#len += line.length;
    this.#crlf();
    return this;
  }

  /** `:<n>` (a safe integer or a bigint for 64-bit counters). */
  integer(n: number | bigint): this {
    this.#ascii(":" + n.toString());
    this.#crlf();
    return this;
  }

  /** `$<len>` + bytes (strings are UTF-8 encoded). */
  bulk(b: Uint8Array | string): this {
    const bytes = typeof b === "string" ? encoder.encode(b) : b;
    this.#ascii("$" + bytes.length);
    this.#crlf();
    this.#reserve(bytes.length + 2);
    this.#buf.set(bytes, this.#len);
    this.#len += bytes.length;
    this.#crlf();
    return this;
  }

  /** `$-1`: the RESP2 nil bulk. */
  nil(): this {
    this.#ascii("$-1");
    this.#crlf();
    return this;
  }

  /** `*<n>`: the caller then writes `n` elements. */
  arrayHeader(n: number): this {
    this.#ascii("*" + n);
    this.#crlf();
    return this;
  }

  /** `*-1`: the RESP2 nil array. */
  nilArray(): this {
    this.#ascii("*-1");
    this.#crlf();
    return this;
  }

  /** An array of bulk strings (undefined elements become nil). */
  bulkArray(items: Array<Uint8Array | string | undefined>): this {
    this.arrayHeader(items.length);
    for (const item of items) {
      if (item === undefined) this.nil();
      else this.bulk(item);
    }
    return this;
  }

  /** Appends replies another writer encoded (a command run in a concurrent batch). */
  append(bytes: Uint8Array): this {
    this.#reserve(bytes.length);
    this.#buf.set(bytes, this.#len);
    this.#len += bytes.length;
    return this;
  }

  /**
   * The encoded replies so far, as a view of the writer's buffer: valid
   * until the next write or `reset` (write it out before encoding more).
   */
  view(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }

  /** Forgets the encoded replies, keeping the buffer (after `view` was written out). */
  reset(): void {
    if (this.#buf.length > 256 * 1024) this.#buf = new Uint8Array(this.#initialBytes);
    this.#len = 0;
    this.errors = 0;
  }

  /** Moves this writer's replies to the end of `to` and resets this one. */
  moveTo(to: ReplyWriter): void {
    to.append(this.view());
    to.errors += this.errors;
    this.#len = 0;
    this.errors = 0;
  }

  /** The encoded replies so far (a copy-free view); the writer is reset. */
  take(): Uint8Array {
    const out = this.#buf.subarray(0, this.#len);
    this.#buf = new Uint8Array(
      this.#buf.length > 64 * 1024 ? this.#initialBytes : Math.max(this.#buf.length, 16),
    );
    this.#len = 0;
    this.errors = 0;
    return out;
  }
}
