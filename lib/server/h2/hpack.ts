/**
 * HPACK (RFC 7541), the header compression of HTTP/2: a decoder with the
 * static and dynamic tables and Huffman strings, as gRPC clients send them;
 * a stateless encoder (literals that never touch the peer's dynamic table);
 * and a per-connection encoder that keeps the peer's dynamic table in step,
 * so the fields every call repeats (path, content-type, status, trailers)
 * cost one byte each after their first use and the peer decodes no string
 * for them. Pure: no I/O.
 *
 * @module
 */

import { copyBytes } from "../../common/byte_pool.ts";
import { isAscii } from "../../common/bytes.ts";

/** A header block could not be decoded: a connection error (COMPRESSION_ERROR). */
export class HpackError extends Error {
  override name = "HpackError";
}

/** One header field, name lowercase as HTTP/2 requires. */
export type HeaderField = [name: string, value: string];

/** RFC 7541 Appendix A: the static table (index 1 is the first entry). */
const staticTable: readonly HeaderField[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

/**
 * RFC 7541 Appendix B, as code lengths in bits for symbols 0..256 (256 is
 * EOS). The code is canonical — sorted by length, then symbol, each code
 * the previous one plus one, shifted left when the length grows — so the
 * lengths alone rebuild every code.
 */
// deno-fmt-ignore
const huffmanLengths: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

/** Decoding tree: node i has children at tree[2i] and tree[2i+1]; a leaf is ~symbol. */
const huffmanTree: Int32Array = buildHuffmanTree();
/** Per symbol: its code (right-aligned) for the encoder. */
const huffmanCodes: Uint32Array = canonicalCodes();

function canonicalCodes(): Uint32Array {
  const symbols = huffmanLengths.map((_, s) => s).sort((a, b) =>
    huffmanLengths[a] - huffmanLengths[b] || a - b
  );
  const codes = new Uint32Array(huffmanLengths.length);
  let code = 0;
  let previous = huffmanLengths[symbols[0]];
  symbols.forEach((s, i) => {
    const length = huffmanLengths[s];
    if (i > 0) code = (code + 1) * 2 ** (length - previous);
    previous = length;
    codes[s] = code;
  });
  return codes;
}

function buildHuffmanTree(): Int32Array {
  const codes = canonicalCodes();
  // 256 leaves need 255 inner nodes; index 0 is the root.
  const tree = new Int32Array(2 * 512).fill(0);
  let nodes = 1;
  for (let s = 0; s < huffmanLengths.length; s++) {
    let node = 0;
    for (let bit = huffmanLengths[s] - 1; bit >= 0; bit--) {
      const slot = 2 * node + ((codes[s] >>> bit) & 1);
      if (bit === 0) {
        tree[slot] = ~s;
      } else {
        if (tree[slot] === 0) tree[slot] = nodes++;
        node = tree[slot];
      }
    }
  }
  return tree;
}

const latin1 = new TextDecoder("latin1");

/**
 * Bytes as a string of one char per byte. Short strings (nearly every
 * header) are built in JS: a TextDecoder call costs more than the copy.
 */
function latin1String(bytes: Uint8Array): string {
  if (bytes.length > 64) return latin1.decode(bytes);
  let ascii = true;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] >= 0x80) {
      ascii = false;
      break;
    }
  }
  // Outside ASCII, WHATWG "latin1" is windows-1252: keep the decoder's mapping.
  return ascii
    ? String.fromCharCode.apply(null, bytes as unknown as number[])
    : latin1.decode(bytes);
}
const utf8Encoder = new TextEncoder();

/** Decodes a Huffman-coded string; padding must be under 8 bits, all ones (RFC 7541 5.2). */
export function huffmanDecode(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil((bytes.length * 8) / 5));
  let n = 0;
  let node = 0;
  let depth = 0;
  let allOnes = true;
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >>> bit) & 1;
      const next = huffmanTree[2 * node + b];
      depth++;
      allOnes &&= b === 1;
      if (next < 0) {
        const symbol = ~next;
        if (symbol === 256) throw new HpackError("Huffman string contains EOS");
        out[n++] = symbol;
        node = 0;
        depth = 0;
        allOnes = true;
      } else if (next === 0) {
        throw new HpackError("invalid Huffman code");
      } else {
        node = next;
      }
    }
  }
  if (depth > 7 || !allOnes) throw new HpackError("invalid Huffman padding");
  return out.subarray(0, n);
}

/** Huffman-codes `bytes` (the encoder does not use it; tests and tools do). */
export function huffmanEncode(bytes: Uint8Array): Uint8Array {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    const length = huffmanLengths[b];
    const code = huffmanCodes[b];
    for (let i = length - 1; i >= 0; i--) {
      acc = (acc << 1) | ((code >>> i) & 1);
      if (++bits === 8) {
        out.push(acc);
        acc = 0;
        bits = 0;
      }
    }
  }
  if (bits > 0) out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) & 0xff);
  return Uint8Array.from(out);
}

/** Per RFC 7541 4.1: an entry costs its name and value lengths plus 32. */
function entrySize(name: string, value: string): number {
  return name.length + value.length + 32;
}

/**
 * Decodes header blocks of one connection. The dynamic table persists
 * across blocks, so every block of the connection must go through the same
 * decoder, in order, even blocks whose stream is then refused.
 */
export class HpackDecoder {
  #dynamic: HeaderField[] = []; // newest first
  #size = 0;
  #maxSize: number;
  readonly #limit: number;

  /** `maxTableSize` is what we announced as SETTINGS_HEADER_TABLE_SIZE. */
  constructor(maxTableSize = 4096) {
    this.#maxSize = maxTableSize;
    this.#limit = maxTableSize;
  }

  /**
   * Decodes one complete header block (HEADERS plus CONTINUATION payloads).
   * A decoded list over `maxListBytes` (names, values and 32 bytes per field,
   * as SETTINGS_MAX_HEADER_LIST_SIZE counts) is an error: a small block can
   * name a large table entry over and over.
   */
  decode(block: Uint8Array, maxListBytes = Infinity): HeaderField[] {
    const fields: HeaderField[] = [];
    let listBytes = 0;
    const add = (field: HeaderField) => {
      listBytes += field[0].length + field[1].length + 32;
      if (listBytes > maxListBytes) {
        throw new HpackError(`header list over ${maxListBytes} bytes`);
      }
      fields.push(field);
    };
    let pos = 0;
    const integer = (prefixBits: number): number => {
      const mask = (1 << prefixBits) - 1;
      let value = block[pos++] & mask;
      if (value < mask) return value;
      let shift = 0;
      for (;;) {
        if (pos >= block.length) throw new HpackError("truncated integer");
        const b = block[pos++];
        value += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if ((b & 0x80) === 0) break;
        if (shift > 28) throw new HpackError("integer too large");
      }
      return value;
    };
    const string = (): string => {
      if (pos >= block.length) throw new HpackError("truncated string");
      const huffman = (block[pos] & 0x80) !== 0;
      const length = integer(7);
      if (pos + length > block.length) throw new HpackError("truncated string");
      const raw = block.subarray(pos, pos + length);
      pos += length;
      return latin1String(huffman ? huffmanDecode(raw) : raw);
    };
    let sawField = false;
    while (pos < block.length) {
      const b = block[pos];
      if (b & 0x80) {
        const index = integer(7);
        add(this.#lookup(index));
        sawField = true;
      } else if (b & 0x40) {
        const index = integer(6);
        const name = index === 0 ? string() : this.#lookup(index)[0];
        const value = string();
        add([name, value]);
        this.#insert(name, value);
        sawField = true;
      } else if (b & 0x20) {
        if (sawField) throw new HpackError("table size update after a header field");
        const size = integer(5);
        if (size > this.#limit) {
          throw new HpackError(`table size update ${size} above the limit ${this.#limit}`);
        }
        this.#maxSize = size;
        this.#evict();
      } else {
        // Literal without indexing (0000) or never indexed (0001).
        const index = integer(4);
        const name = index === 0 ? string() : this.#lookup(index)[0];
        add([name, string()]);
        sawField = true;
      }
    }
    return fields;
  }

  #lookup(index: number): HeaderField {
    if (index === 0) throw new HpackError("header index 0");
    if (index <= staticTable.length) return staticTable[index - 1];
    const entry = this.#dynamic[index - staticTable.length - 1];
    if (!entry) throw new HpackError(`header index ${index} beyond the tables`);
    return entry;
  }

  #insert(name: string, value: string): void {
    const size = entrySize(name, value);
    if (size > this.#maxSize) {
      this.#dynamic = [];
      this.#size = 0;
      return;
    }
    this.#dynamic.unshift([name, value]);
    this.#size += size;
    this.#evict();
  }

  #evict(): void {
    while (this.#size > this.#maxSize) {
      const [name, value] = this.#dynamic.pop()!;
      this.#size -= entrySize(name, value);
    }
  }
}

const staticNameIndex = new Map<string, number>();
staticTable.forEach(([name], i) => {
  if (!staticNameIndex.has(name)) staticNameIndex.set(name, i + 1);
});
const staticFieldIndex = new Map<string, number>();
staticTable.forEach(([name, value], i) => staticFieldIndex.set(`${name}\0${value}`, i + 1));

function pushInteger(out: number[], value: number, prefixBits: number, flags: number): void {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    out.push(flags | value);
    return;
  }
  out.push(flags | mask);
  value -= mask;
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
}

function pushString(out: number[], s: string): void {
  const bytes = utf8Encoder.encode(s);
  pushInteger(out, bytes.length, 7, 0);
  for (const b of bytes) out.push(b);
}

/**
 * Encodes header fields without touching the dynamic table: a field in the
 * static table by index, any other as a literal without indexing (with the
 * static name index when there is one).
 */
export function encodeHeaders(fields: readonly HeaderField[]): Uint8Array {
  const out: number[] = [];
  for (const [name, value] of fields) {
    const full = staticFieldIndex.get(`${name}\0${value}`);
    if (full !== undefined) {
      pushInteger(out, full, 7, 0x80);
      continue;
    }
    const nameIndex = staticNameIndex.get(name);
    if (nameIndex !== undefined) {
      pushInteger(out, nameIndex, 4, 0);
    } else {
      out.push(0);
      pushString(out, name);
    }
    pushString(out, value);
  }
  return Uint8Array.from(out);
}

/** Fields never put in the dynamic table: per-call values that would only churn it. */
const neverIndexedNames = new Set(["grpc-timeout", "grpc-message", "authorization"]);

/** The largest entry worth a table slot (a larger one would evict everything else). */
const maxIndexedEntryBytes = 256;

/**
 * Encodes the header blocks of one connection, in the order they go on the
 * wire, keeping a copy of the peer decoder's dynamic table: a field already
 * in a table is sent as its index; a new field worth keeping is sent as a
 * literal with incremental indexing (and remembered); per-call values
 * (`grpc-timeout`, `grpc-message`, large values) stay plain literals.
 * Every block this encoder makes must reach the peer, in order.
 */
export class HpackEncoder {
  /** Entries, oldest first; entry i was the (#inserted - length + i)-th insert. */
  #table: { key: string; size: number }[] = [];
  /** Newest insert number of each `name\0value` still in the table. */
  #byKey = new Map<string, number>();
  #inserted = 0;
  #size = 0;
  #maxSize: number;
  /** A table size update owed at the start of the next block. */
  #pendingSizeUpdate: number | undefined;
  #out = new Uint8Array(256);
  #len = 0;
  /**
   * Encodings of frozen field lists (a server's constant response headers
   * and trailers), valid while no entry was inserted since: then every field
   * refers to the same table index, so the bytes are the same.
   */
  #frozen = new Map<readonly HeaderField[], { bytes: Uint8Array; inserted: number }>();

  /** `maxTableSize`: what the peer's decoder allows (SETTINGS_HEADER_TABLE_SIZE, 4096 by default). */
  constructor(maxTableSize = 4096) {
    this.#maxSize = Math.min(maxTableSize, 4096);
  }

  /**
   * Applies the peer's SETTINGS_HEADER_TABLE_SIZE. We never use more than
   * 4096 bytes; a smaller limit evicts entries and is announced at the
   * start of the next block, as RFC 7541 6.3 requires.
   */
  setMaxTableSize(peerLimit: number): void {
    const size = Math.min(peerLimit, 4096);
    if (size === this.#maxSize) return;
    this.#maxSize = size;
    this.#pendingSizeUpdate = size;
    this.#evict();
    this.#frozen.clear(); // they may name evicted entries
  }

  /** Encodes one header block. */
  encode(fields: readonly HeaderField[]): Uint8Array {
    const frozen = Object.isFrozen(fields);
    if (frozen && this.#pendingSizeUpdate === undefined) {
      const hit = this.#frozen.get(fields);
      if (hit !== undefined && hit.inserted === this.#inserted) return copyBytes(hit.bytes);
    }
    const insertedBefore = this.#inserted;
    const sizeUpdate = this.#pendingSizeUpdate !== undefined;
    this.#len = 0;
    if (this.#pendingSizeUpdate !== undefined) {
      this.#integer(this.#pendingSizeUpdate, 5, 0x20);
      this.#pendingSizeUpdate = undefined;
    }
    for (const [name, value] of fields) {
      const key = `${name}\0${value}`;
      const full = staticFieldIndex.get(key);
      if (full !== undefined) {
        this.#integer(full, 7, 0x80);
        continue;
      }
      const seq = this.#byKey.get(key);
      if (seq !== undefined) {
        this.#integer(staticTable.length + 1 + this.#inserted - seq, 7, 0x80);
        continue;
      }
      const nameIndex = staticNameIndex.get(name) ?? 0;
      const size = entrySize(name, value);
      if (!neverIndexedNames.has(name) && size <= maxIndexedEntryBytes && size <= this.#maxSize) {
        this.#integer(nameIndex, 6, 0x40);
        if (nameIndex === 0) this.#string(name);
        this.#string(value);
        this.#insert(key, size);
      } else {
        this.#integer(nameIndex, 4, 0);
        if (nameIndex === 0) this.#string(name);
        this.#string(value);
      }
    }
    // Only an encoding that inserted nothing can be sent again: replayed, an insert would
    // grow the peer's table a second time and its indexes would drift from ours.
    if (frozen && !sizeUpdate && this.#inserted === insertedBefore && this.#len > 0) {
      const bytes = this.#out.slice(0, this.#len);
      const hit = this.#frozen.get(fields);
      if (hit !== undefined) {
        hit.bytes = bytes;
        hit.inserted = this.#inserted;
      } else if (this.#frozen.size < 16) {
        this.#frozen.set(fields, { bytes, inserted: this.#inserted });
      }
    }
    return copyBytes(this.#out.subarray(0, this.#len));
  }

  #insert(key: string, size: number): void {
    this.#table.push({ key, size });
    this.#byKey.set(key, ++this.#inserted);
    this.#size += size;
    this.#evict();
  }

  #evict(): void {
    while (this.#size > this.#maxSize) {
      const oldest = this.#table.shift()!;
      this.#size -= oldest.size;
      const seq = this.#inserted - this.#table.length;
      if (this.#byKey.get(oldest.key) === seq) this.#byKey.delete(oldest.key);
    }
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#out.length) return;
    const next = new Uint8Array(Math.max(this.#out.length * 2, this.#len + n));
    next.set(this.#out.subarray(0, this.#len));
    this.#out = next;
  }

  #integer(value: number, prefixBits: number, flags: number): void {
    this.#reserve(6);
    const mask = (1 << prefixBits) - 1;
    if (value < mask) {
      this.#out[this.#len++] = flags | value;
      return;
    }
    this.#out[this.#len++] = flags | mask;
    value -= mask;
    while (value >= 0x80) {
      this.#out[this.#len++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    this.#out[this.#len++] = value;
  }

  #string(s: string): void {
    const bytes = isAscii(s) ? undefined : utf8Encoder.encode(s);
    const length = bytes ? bytes.length : s.length;
    this.#integer(length, 7, 0);
    this.#reserve(length);
    if (bytes) this.#out.set(bytes, this.#len);
    else for (let i = 0; i < length; i++) this.#out[this.#len + i] = s.charCodeAt(i);
    this.#len += length;
  }
}
