/**
 * Incremental RESP2 request parser (docs/FORMATS.md, "RESP listener").
 * Pure: bytes in, commands out, no I/O. A connection feeds whatever a read
 * returned and takes complete commands until none is left; a frame split
 * anywhere (even inside a CRLF) is resumed on the next feed without
 * re-parsing what was already consumed. Every size is checked against
 * limits.ts before any byte of the frame is buffered beyond that size, so a
 * client cannot make the node allocate more than one bounded frame.
 *
 * @module
 */

import { allocBytes } from "../common/byte_pool.ts";
import { copyRange } from "../common/bytes.ts";
import { InvalidArgumentError } from "../common/errors.ts";
import {
  maxRespBulkBytes,
  maxRespFrameBytes,
  maxRespInlineBytes,
  maxRespMultibulkArgs,
} from "../common/limits.ts";

const CR = 13;
const LF = 10;

/**
 * A command argument copied out of the read buffer (which the next read
 * reuses), from the shared byte pool: a `slice` per argument was a backing
 * store from the system allocator, about a microsecond each in Deno.
 * Arguments are short-lived: a write copies them into its Raft entry.
 */
function copyArg(buf: Uint8Array, from: number, to: number): Uint8Array {
  const out = allocBytes(to - from);
  copyRange(out, 0, buf, from, to - from);
  return out;
}

/**
 * A malformed request. The connection answers `-ERR Protocol error: <message>`
 * and closes, because after a framing error the stream cannot be resynchronised.
 */
export class RespProtocolError extends InvalidArgumentError {
  override name = "RespProtocolError";
}

/** Parses a stream of RESP2 requests (multibulk and inline) into argument lists. */
export class RespParser {
  #buf = new Uint8Array(16 * 1024);
  #start = 0;
  #end = 0;
  /** Multibulk in progress: the arguments so far and how many are expected. */
  #args: Uint8Array[] | undefined;
  #expected = 0;
  /** Length of the bulk string whose payload is awaited, or -1 while reading its header. */
  #bulkLen = -1;
  /** Bytes of the current multibulk's arguments announced so far (maxRespFrameBytes). */
  #frameBytes = 0;

  /** Bytes received but not yet consumed (a partial frame). */
  get bufferedBytes(): number {
    return this.#end - this.#start;
  }

  /** Appends bytes read from the socket (copied; the caller may reuse its buffer). */
  feed(chunk: Uint8Array): void {
    const need = this.#end - this.#start + chunk.length;
    if (this.#end + chunk.length > this.#buf.length) {
      if (need <= this.#buf.length) {
        this.#buf.copyWithin(0, this.#start, this.#end);
      } else {
        const grown = new Uint8Array(Math.max(need, this.#buf.length * 2));
        grown.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf = grown;
      }
      this.#end -= this.#start;
      this.#start = 0;
    }
    this.#buf.set(chunk, this.#end);
    this.#end += chunk.length;
  }

  /**
   * The next complete command (its arguments, possibly empty for a blank
   * inline line), or undefined when more bytes are needed. Throws
   * RespProtocolError on malformed input; the parser is then unusable.
   */
  next(): Uint8Array[] | undefined {
    if (this.#args === undefined) {
      if (this.#start === this.#end) {
        this.#start = this.#end = 0;
        return undefined;
      }
      if (this.#buf[this.#start] !== 0x2a /* '*' */) return this.#inline();
      const line = this.#line("too big mbulk count string");
      if (line === undefined) return undefined;
      const n = parseInteger(this.#buf, line.from + 1, line.to);
      if (n === undefined || n > maxRespMultibulkArgs) {
        throw new RespProtocolError("invalid multibulk length");
      }
      if (n <= 0) return [];
      this.#args = [];
      this.#expected = n;
      this.#bulkLen = -1;
      this.#frameBytes = 0;
    }
    while (this.#args.length < this.#expected) {
      if (this.#bulkLen < 0) {
        if (this.#start === this.#end) return undefined;
        const first = this.#buf[this.#start];
        if (first !== 0x24 /* '$' */) {
          throw new RespProtocolError(`expected '$', got '${printable(first)}'`);
        }
        const line = this.#line("too big bulk count string");
        if (line === undefined) return undefined;
        const len = parseInteger(this.#buf, line.from + 1, line.to);
        if (len === undefined || len < 0 || len > maxRespBulkBytes) {
          throw new RespProtocolError("invalid bulk length");
        }
        this.#frameBytes += len;
        if (this.#frameBytes > maxRespFrameBytes) {
          throw new RespProtocolError(
            `the command's arguments exceed ${maxRespFrameBytes} bytes (maxRespFrameBytes)`,
          );
        }
        this.#bulkLen = len;
      }
      if (this.#end - this.#start < this.#bulkLen + 2) return undefined;
      const at = this.#start + this.#bulkLen;
      if (this.#buf[at] !== CR || this.#buf[at + 1] !== LF) {
        throw new RespProtocolError("bulk string not terminated by CRLF");
      }
      this.#args.push(copyArg(this.#buf, this.#start, at));
      this.#start = at + 2;
      this.#bulkLen = -1;
    }
    const args = this.#args;
    this.#args = undefined;
    return args;
  }

  /** One header line [from, to) without its CRLF, consumed; undefined when incomplete. */
  #line(tooBig: string): { from: number; to: number } | undefined {
    const from = this.#start;
    const limit = Math.min(this.#end, from + maxRespInlineBytes + 2);
    for (let i = from; i < limit; i++) {
      if (this.#buf[i] === LF) {
        if (i === from || this.#buf[i - 1] !== CR) {
          throw new RespProtocolError("header line not terminated by CRLF");
        }
        this.#start = i + 1;
        return { from, to: i - 1 };
      }
    }
    if (this.#end - from > maxRespInlineBytes) throw new RespProtocolError(tooBig);
    return undefined;
  }

  /** An inline command: one line of space-separated, optionally quoted arguments. */
  #inline(): Uint8Array[] | undefined {
    const from = this.#start;
    const limit = Math.min(this.#end, from + maxRespInlineBytes + 1);
    for (let i = from; i < limit; i++) {
      if (this.#buf[i] === LF) {
        const to = i > from && this.#buf[i - 1] === CR ? i - 1 : i;
        this.#start = i + 1;
        return splitInline(this.#buf.subarray(from, to));
      }
    }
    if (this.#end - from > maxRespInlineBytes) {
      throw new RespProtocolError("too big inline request");
    }
    return undefined;
  }
}

/** A strict decimal integer in buf[from, to), or undefined. */
export function parseInteger(buf: Uint8Array, from: number, to: number): number | undefined {
  let i = from;
  let negative = false;
  if (i < to && buf[i] === 0x2d /* '-' */) {
    negative = true;
    i++;
  }
  if (i >= to || to - i > 15) return undefined;
  let n = 0;
  for (; i < to; i++) {
    const d = buf[i] - 48;
    if (d < 0 || d > 9) return undefined;
    n = n * 10 + d;
  }
  return negative ? -n : n;
}

function printable(b: number): string {
  return b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`;
}

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === CR || b === LF || b === 0x0b || b === 0x0c;
}

function hexValue(b: number): number {
  if (b >= 48 && b <= 57) return b - 48;
  if (b >= 97 && b <= 102) return b - 87;
  if (b >= 65 && b <= 70) return b - 55;
  return -1;
}

/**
 * Splits an inline line like Redis' sdssplitargs: whitespace separates
 * arguments; "double quotes" take \n \r \t \b \a \\ \" and \xHH escapes;
 * 'single quotes' take \'; a closing quote must be followed by a space.
 */
export function splitInline(line: Uint8Array): Uint8Array[] {
  const args: Uint8Array[] = [];
  let i = 0;
  while (true) {
    while (i < line.length && isSpace(line[i])) i++;
    if (i >= line.length) return args;
    const out: number[] = [];
    const quote = line[i] === 0x22 ? 0x22 : line[i] === 0x27 ? 0x27 : 0;
    if (quote === 0) {
      while (i < line.length && !isSpace(line[i])) out.push(line[i++]);
      args.push(new Uint8Array(out));
      continue;
    }
    i++;
    let closed = false;
    while (i < line.length) {
      const b = line[i];
      if (b === quote) {
        closed = true;
        i++;
        break;
      }
      if (b === 0x5c /* '\' */ && i + 1 < line.length) {
        const e = line[i + 1];
        if (quote === 0x22) {
          if (e === 0x78 && i + 3 < line.length) {
            const hi = hexValue(line[i + 2]);
            const lo = hexValue(line[i + 3]);
            if (hi >= 0 && lo >= 0) {
              out.push(hi * 16 + lo);
              i += 4;
              continue;
            }
          }
          const map: Record<number, number> = { 110: LF, 114: CR, 116: 9, 98: 8, 97: 7 };
          out.push(map[e] ?? e);
          i += 2;
          continue;
        }
        if (e === 0x27) {
          out.push(0x27);
          i += 2;
          continue;
        }
      }
      out.push(b);
      i++;
    }
    if (!closed || (i < line.length && !isSpace(line[i]))) {
      throw new RespProtocolError("unbalanced quotes in request");
    }
    args.push(new Uint8Array(out));
  }
}
