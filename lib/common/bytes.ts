/**
 * Byte helpers shared by every codec: ordering, fixed-width and varint
 * integers, and a growable writer / bounds-checked reader pair. Codecs never
 * index raw buffers by hand; they go through these so a short or corrupt input
 * always becomes a DecodeError instead of `undefined` or a wrong number.
 *
 * @module
 */

import { allocBytes } from "./byte_pool.ts";

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: false });

/** UTF-8 bytes of a string. */
export function utf8(s: string): Uint8Array {
  return textEncoder.encode(s);
}

/** The string that UTF-8 `bytes` spell (invalid sequences become U+FFFD). */
export function fromUtf8(bytes: Uint8Array): string {
  // The empty string (a command's absent request id) skips the decoder's call into the runtime.
  return bytes.length === 0 ? "" : textDecoder.decode(bytes);
}

/** Lexicographic byte order: negative when a < b, 0 when equal, positive when a > b. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    const d = a[i] - b[i];
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/**
 * The bytes as a string of one char per byte, built in one call per 8 KiB
 * (a char-by-char concatenation made a string per byte): a Map key for a
 * binary key.
 */
export function byteString(bytes: Uint8Array): string {
  if (bytes.length <= 8192) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192) as unknown as number[]);
  }
  return s;
}

/** True when both arrays hold the same bytes. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** True when `bytes` begins with `prefix`. */
export function hasPrefix(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (prefix.length > bytes.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/** The smallest key after `key` (key + 0x00): [key, keySuccessor(key)) holds just `key`. */
export function keySuccessor(key: Uint8Array): Uint8Array {
  const out = new Uint8Array(key.length + 1);
  out.set(key);
  return out;
}

/**
 * The smallest key greater than every key that starts with `prefix`, or
 * undefined when there is none (the prefix is empty or all 0xff). Turns a
 * prefix scan into a half-open range scan.
 */
export function prefixEnd(prefix: Uint8Array): Uint8Array | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i] !== 0xff) {
      // Copy explicitly: on a Node Buffer, slice() is a view and would mutate the caller's prefix.
      const end = Uint8Array.prototype.slice.call(prefix, 0, i + 1);
      end[i]++;
      return end;
    }
  }
  return undefined;
}

/** One array holding all `parts` in order. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The bytes of `parts` in one array with a backing store of its own, for a
 * socket write. Handing a socket a view into a shared slab measured slower
 * (pipelined linearizable GETs over RESP: ~200,000/s against ~240,000/s when
 * Raft messages went out as slab views), so pooled bytes are joined into a
 * fresh array; a lone part that already owns its buffer goes as is.
 */
export function joinForWrite(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) {
    const p = parts[0];
    if (p.byteOffset === 0 && p.byteLength === p.buffer.byteLength) return p;
  }
  return concatBytes(...parts);
}

/** True when every char of `s` is ASCII (its UTF-8 bytes are its char codes). */
export function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
}

/** Lowercase hex rendering, for logs and test output. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Raised by ByteReader on short or malformed input; carries the offset it stopped at. */
export class DecodeError extends Error {
  override name = "DecodeError";
  constructor(message: string, readonly offset: number) {
    super(`${message} (at byte ${offset})`);
  }
}

const maxU64 = (1n << 64n) - 1n;

/** Number of bytes `putUvarint(value)` writes. */
export function uvarintLength(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    n++;
  }
  return n;
}

/**
 * The empty byte array, shared: in Deno every `new Uint8Array(0)` costs about
 * a microsecond (a backing store each), and an empty array cannot be changed.
 */
export const emptyBytes: Uint8Array = new Uint8Array(0);

/** Below this many bytes `copyRange` copies in a loop: a `subarray` + `set` costs more here. */
const loopCopyBytes = 48;

/**
 * Copies `length` bytes of `src` at `from` into `dst` at `at`, without
 * making a view of `src` for short ranges (a view is an object per copy).
 */
export function copyRange(
  dst: Uint8Array,
  at: number,
  src: Uint8Array,
  from: number,
  length: number,
): void {
  if (length <= loopCopyBytes) {
    for (let i = 0; i < length; i++) dst[at + i] = src[from + i];
  } else {
    dst.set(src.subarray(from, from + length), at);
  }
}

/** Writes a big-endian u32 (0 <= v < 2^32) at `at` (no DataView: no object per write). */
export function writeU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 24;
  out[at + 1] = (v >>> 16) & 0xff;
  out[at + 2] = (v >>> 8) & 0xff;
  out[at + 3] = v & 0xff;
}

/**
 * An append-only byte buffer that grows geometrically. Big-endian for fixed
 * widths (so encoded integers sort bytewise), LEB128 for varints.
 */
export class ByteWriter {
  #buf: Uint8Array;
  #len = 0;

  /** Small buffers come from the shared slabs (lib/common/byte_pool.ts): no allocation each. */
  constructor(initialCapacity = 256) {
    this.#buf = allocBytes(Math.max(16, initialCapacity));
  }

  /** Bytes written so far. */
  get length(): number {
    return this.#len;
  }

  #reserve(n: number): void {
    const need = this.#len + n;
    if (need <= this.#buf.length) return;
    let cap = this.#buf.length * 2;
    while (cap < need) cap *= 2;
    const next = allocBytes(cap);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }

  /** Appends one byte. */
  putU8(v: number): this {
    this.#reserve(1);
    this.#buf[this.#len++] = v & 0xff;
    return this;
  }

  /** Appends a big-endian u16. */
  putU16(v: number): this {
    this.#reserve(2);
    this.#buf[this.#len++] = (v >>> 8) & 0xff;
    this.#buf[this.#len++] = v & 0xff;
    return this;
  }

  /** Appends a big-endian u32. */
  putU32(v: number): this {
    this.#reserve(4);
    writeU32(this.#buf, this.#len, v >>> 0);
    this.#len += 4;
    return this;
  }

  /** Appends a big-endian u64. */
  putU64(v: bigint): this {
    if (v < 0n || v > maxU64) throw new RangeError(`u64 out of range: ${v}`);
    this.#reserve(8);
    writeU32(this.#buf, this.#len, Number(v >> 32n));
    writeU32(this.#buf, this.#len + 4, Number(v & 0xffff_ffffn));
    this.#len += 8;
    return this;
  }

  /** Appends a non-negative safe integer as a big-endian u64, without a BigInt. */
  putU64Number(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`u64 out of range: ${v}`);
    this.#reserve(8);
    writeU32(this.#buf, this.#len, Math.floor(v / 0x1_0000_0000));
    writeU32(this.#buf, this.#len + 4, v >>> 0);
    this.#len += 8;
    return this;
  }

  /** Appends a non-negative safe integer as LEB128. */
  putUvarint(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`uvarint out of range: ${v}`);
    this.#reserve(10);
    while (v >= 0x80) {
      this.#buf[this.#len++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.#buf[this.#len++] = v;
    return this;
  }

  /** Appends raw bytes. */
  putBytes(b: Uint8Array): this {
    this.#reserve(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
    return this;
  }

  /** Appends a uvarint length followed by the bytes. */
  putLengthPrefixed(b: Uint8Array): this {
    return this.putUvarint(b.length).putBytes(b);
  }

  /** Appends a length-prefixed UTF-8 string. */
  putString(s: string): this {
    // ASCII (request ids, names) is copied char by char: TextEncoder.encode
    // costs about a microsecond in Deno, an allocation each.
    if (!isAscii(s)) return this.putLengthPrefixed(utf8(s));
    this.putUvarint(s.length);
    this.#reserve(s.length);
    for (let i = 0; i < s.length; i++) this.#buf[this.#len + i] = s.charCodeAt(i);
    this.#len += s.length;
    return this;
  }

  /** Overwrites a big-endian u32 at `offset` (for back-patched lengths and checksums). */
  setU32At(offset: number, v: number): void {
    if (offset + 4 > this.#len) throw new RangeError("setU32At past the end");
    writeU32(this.#buf, offset, v >>> 0);
  }

  /** A view of the bytes written (shares memory until the next write). */
  view(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }

  /**
   * A copy of the bytes written, in its own allocation: safe to keep for
   * long. (An encoding used once and dropped can take `view()` instead.)
   */
  finish(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }

  /** Forgets the contents but keeps the allocation, for reuse on hot paths. */
  reset(): void {
    this.#len = 0;
  }
}

/** Reads what ByteWriter wrote; every read is bounds-checked and raises DecodeError. */
export class ByteReader {
  #view: DataView;
  #pos: number;

  constructor(readonly bytes: Uint8Array, start = 0) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#pos = start;
  }

  /** Current read offset within `bytes`. */
  get offset(): number {
    return this.#pos;
  }

  /** Bytes left to read. */
  get remaining(): number {
    return this.bytes.length - this.#pos;
  }

  #need(n: number, what: string): void {
    if (n < 0 || this.#pos + n > this.bytes.length) {
      throw new DecodeError(
        `truncated ${what}: need ${n} bytes, have ${this.remaining}`,
        this.#pos,
      );
    }
  }

  /** Reads one byte. */
  u8(): number {
    this.#need(1, "u8");
    return this.bytes[this.#pos++];
  }

  /** Reads a big-endian u16. */
  u16(): number {
    this.#need(2, "u16");
    const v = this.#view.getUint16(this.#pos);
    this.#pos += 2;
    return v;
  }

  /** Reads a big-endian u32. */
  u32(): number {
    this.#need(4, "u32");
    const v = this.#view.getUint32(this.#pos);
    this.#pos += 4;
    return v;
  }

  /** Reads a big-endian u64. */
  u64(): bigint {
    this.#need(8, "u64");
    const v = this.#view.getBigUint64(this.#pos);
    this.#pos += 8;
    return v;
  }

  /** Reads a big-endian u64 that must fit a safe integer, without a BigInt. */
  u64Number(): number {
    const at = this.#pos;
    this.#need(8, "u64");
    const high = this.#view.getUint32(at);
    if (high > 0x1f_ffff) {
      throw new DecodeError(`u64 ${high} * 2^32 + ... is not a safe integer`, at);
    }
    const v = high * 0x1_0000_0000 + this.#view.getUint32(at + 4);
    this.#pos += 8;
    return v;
  }

  /** Reads a LEB128 varint that must fit a safe integer. */
  uvarint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      this.#need(1, "uvarint");
      const b = this.bytes[this.#pos++];
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (!Number.isSafeInteger(result)) break;
        return result;
      }
      scale *= 128;
    }
    throw new DecodeError("uvarint too long or out of range", this.#pos);
  }

  /** Reads `n` raw bytes (a view, no copy). */
  bytesView(n: number): Uint8Array {
    this.#need(n, "bytes");
    const v = this.bytes.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return v;
  }

  /** Reads a uvarint length and that many bytes (a view, no copy). */
  lengthPrefixed(maxLength = Number.MAX_SAFE_INTEGER): Uint8Array {
    const at = this.#pos;
    const n = this.uvarint();
    if (n > maxLength) throw new DecodeError(`length ${n} exceeds the limit ${maxLength}`, at);
    return this.bytesView(n);
  }

  /** Reads a length-prefixed UTF-8 string. */
  string(maxLength = 1 << 20): string {
    return fromUtf8(this.lengthPrefixed(maxLength));
  }

  /** Fails unless every byte has been consumed. */
  expectEnd(what = "record"): void {
    if (this.remaining !== 0) {
      throw new DecodeError(`${this.remaining} unexpected trailing bytes after ${what}`, this.#pos);
    }
  }
}
