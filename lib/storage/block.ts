/**
 * Data and index blocks (docs/FORMATS.md, "SSTable"): entries of
 * `uvarint keyLength, uvarint valueLength, key, value`, then a u32 offset per
 * entry and a u32 entry count. The offset array lets a reader binary-search
 * every entry in place, without rebuilding prefix-compressed keys.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { CorruptionError } from "../common/errors.ts";
import {
  compareRange,
  internalKeyLength,
  readU32,
  writeInternalKey,
  writeU32,
} from "./internal_key.ts";

/** Accumulates sorted entries into one block. */
export class BlockBuilder {
  #buf: Uint8Array;
  #len = 0;
  #offsets: number[] = [];

  constructor(initialBytes = 8192) {
    this.#buf = new Uint8Array(initialBytes);
  }

  /** Entries added. */
  get count(): number {
    return this.#offsets.length;
  }

  /** Size the finished block would have. */
  get estimatedBytes(): number {
    return this.#len + 4 * this.#offsets.length + 4;
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    let cap = this.#buf.length * 2;
    while (cap < this.#len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }

  /**
   * Reserves room for an entry and returns the offset where its value must be
   * written; the key is copied now. Requires: keys are added in ascending order.
   */
  addReserve(key: Uint8Array, valueLength: number): number {
    const at = this.#entryHead(key.length, valueLength);
    this.#buf.set(key, at);
    return this.#endEntry(at + key.length, valueLength);
  }

  /**
   * Like addReserve for the internal key of (userKey, version), encoded
   * straight into the block: a table writer adds millions of entries, and a
   * separate key array for each was most of its garbage. The user key is
   * `length` bytes at `from` of `userKey`.
   */
  addInternalKeyReserve(
    userKey: Uint8Array,
    from: number,
    length: number,
    version: number,
    valueLength: number,
  ): number {
    const at = this.#entryHead(internalKeyLength(userKey, from, length), valueLength);
    const keyEnd = writeInternalKey(this.#buf, at, userKey, version, from, length);
    return this.#endEntry(keyEnd, valueLength);
  }

  /** Starts an entry (room, offset, both lengths); returns where its key goes. */
  #entryHead(keyLength: number, valueLength: number): number {
    this.#reserve(20 + keyLength + valueLength);
    this.#offsets.push(this.#len);
    this.#len = putUvarint(this.#buf, this.#len, keyLength);
    return putUvarint(this.#buf, this.#len, valueLength);
  }

  /** Ends an entry whose key ends at `keyEnd`; returns where its value goes. */
  #endEntry(keyEnd: number, valueLength: number): number {
    this.#len = keyEnd + valueLength;
    return keyEnd;
  }

  /** The builder's buffer, for writing a reserved value in place. */
  get buffer(): Uint8Array {
    return this.#buf;
  }

  /** Adds an entry with the given value bytes. */
  add(key: Uint8Array, value: Uint8Array): void {
    const at = this.addReserve(key, value.length);
    this.#buf.set(value, at);
  }

  /** The finished block bytes (a copy); the builder is reset. */
  finish(): Uint8Array {
    const n = this.#offsets.length;
    this.#reserve(4 * n + 4);
    for (const off of this.#offsets) {
      writeU32(this.#buf, this.#len, off);
      this.#len += 4;
    }
    writeU32(this.#buf, this.#len, n);
    this.#len += 4;
    const out = this.#buf.slice(0, this.#len);
    this.#len = 0;
    this.#offsets = [];
    return out;
  }
}

function putUvarint(out: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    out[at++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[at++] = v;
  return at;
}

/**
 * A parsed, immutable block. Entry positions are decoded lazily; `file` and
 * `offset` name the block in corruption errors.
 */
export class Block {
  readonly count: number;
  readonly #offsetsAt: number;
  #positions: Int32Array | undefined;
  /** Where the shared prefix can be read in `data` (a key that has it). */
  #commonAt = 0;
  #commonLength = 0;
  #prefixes: Float64Array = new Float64Array(0);

  constructor(readonly data: Uint8Array, readonly file: string, readonly offset: number) {
    if (data.length < 4) throw new CorruptionError(file, offset, "block shorter than its count");
    const n = readU32(data, data.length - 4);
    if (n * 4 + 4 > data.length || n === 0) {
      throw new CorruptionError(file, offset, `bad block entry count ${n}`);
    }
    this.count = n;
    this.#offsetsAt = data.length - 4 - 4 * n;
  }

  #fail(detail: string): never {
    throw new CorruptionError(this.file, this.offset, detail);
  }

  /**
   * Decodes every entry's position once (on first use), validating as it
   * goes, so searches afterwards are plain array loads.
   */
  #decodePositions(): Int32Array {
    const n = this.count;
    const out = new Int32Array(4 * n);
    const d = this.data;
    const limit = this.#offsetsAt;
    for (let i = 0; i < n; i++) {
      let at = readU32(d, limit + 4 * i);
      let kl = 0;
      let scale = 1;
      for (let s = 0;; s++) {
        if (at >= limit || s > 4) this.#fail("bad entry key length");
        const b = d[at++];
        kl += (b & 0x7f) * scale;
        if ((b & 0x80) === 0) break;
        scale *= 128;
      }
      let vl = 0;
      scale = 1;
      for (let s = 0;; s++) {
        if (at >= limit || s > 4) this.#fail("bad entry value length");
        const b = d[at++];
        vl += (b & 0x7f) * scale;
        if ((b & 0x80) === 0) break;
        scale *= 128;
      }
      if (at + kl + vl > limit) this.#fail("entry runs past the block");
      out[4 * i] = at;
      out[4 * i + 1] = kl;
      out[4 * i + 2] = at + kl;
      out[4 * i + 3] = vl;
    }
    // Search accelerator: a prefix most keys share (the one the first- and third-quartile
    // keys share, so a few keys of another kind at either end, as an index block of a
    // node's table has, do not shorten it to nothing), then the next 6 bytes of each key
    // that has it as a number. Keys without it sort before or after all that have it:
    // -1 and 2^53, which no target's number equals. Equal numbers fall back to a byte
    // comparison.
    const q1 = n >> 2;
    const q3 = n - 1 - q1;
    const q1At = out[4 * q1];
    const q3At = out[4 * q3];
    const maxCommon = Math.min(out[4 * q1 + 1], out[4 * q3 + 1]);
    let common = 0;
    while (common < maxCommon && d[q1At + common] === d[q3At + common]) common++;
    const nums = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const at = out[4 * i];
      const c = comparePrefix(d, at, out[4 * i + 1], d, q1At, common);
      nums[i] = c < 0
        ? -1
        : c > 0
        ? afterPrefix
        : prefixNumber(d, at + common, out[4 * i + 1] - common);
    }
    this.#commonAt = q1At;
    this.#commonLength = common;
    this.#prefixes = nums;
    this.#positions = out;
    return out;
  }

  /**
   * Position of entry `i`: fills `pos` with key start/length and value
   * start/length. Structural damage raises CorruptionError.
   */
  entryAt(i: number, pos: EntryPos): void {
    assert(i >= 0 && i < this.count, "entry index in range");
    const p = this.#positions ?? this.#decodePositions();
    const j = 4 * i;
    pos.keyAt = p[j];
    pos.keyLength = p[j + 1];
    pos.valueAt = p[j + 2];
    pos.valueLength = p[j + 3];
  }

  /** Index of the first entry whose key is >= `target` (count when none). */
  seek(target: Uint8Array): number {
    const p = this.#positions ?? this.#decodePositions();
    const d = this.data;
    const common = this.#commonLength;
    let lo = 0;
    let hi = this.count;
    // Compare the target with the shared prefix once.
    if (comparePrefix(target, 0, target.length, d, this.#commonAt, common) !== 0) {
      // Among the few keys without the prefix (or none): compare bytes.
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (compareRange(d, p[4 * mid], p[4 * mid + 1], target) < 0) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    }
    const tp = prefixNumber(target, common, target.length - common);
    const nums = this.#prefixes;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      let c = nums[mid] - tp;
      if (c === 0) c = compareRange(d, p[4 * mid], p[4 * mid + 1], target);
      if (c < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** The number of a key that sorts after every key with the shared prefix. */
const afterPrefix = 2 ** 53;

/**
 * How the `len` bytes at `a[at]` compare with the `prefixLength`-byte prefix
 * at `p[prefixAt]`: 0 when they start with it, else the sign of the first
 * difference (negative too when they are a proper prefix of it).
 */
function comparePrefix(
  a: Uint8Array,
  at: number,
  len: number,
  p: Uint8Array,
  prefixAt: number,
  prefixLength: number,
): number {
  const n = len < prefixLength ? len : prefixLength;
  for (let i = 0; i < n; i++) {
    const x = a[at + i];
    const y = p[prefixAt + i];
    if (x !== y) return x - y;
  }
  return len < prefixLength ? -1 : 0;
}

/** Up to 6 bytes of `buf` from `at` (at most `len`) as a number, zero-padded. */
function prefixNumber(buf: Uint8Array, at: number, len: number): number {
  let v = 0;
  for (let i = 0; i < 6; i++) v = v * 256 + (i < len ? buf[at + i] : 0);
  return v;
}

/** Where one entry's key and value sit inside a block. */
export interface EntryPos {
  keyAt: number;
  keyLength: number;
  valueAt: number;
  valueLength: number;
}

/** A fresh EntryPos to reuse across calls. */
export function newEntryPos(): EntryPos {
  return { keyAt: 0, keyLength: 0, valueAt: 0, valueLength: 0 };
}
