/**
 * The row cache: for recently read keys, the newest entry the tables hold
 * (RocksDB's row_cache). A point read of a key that is in no memtable
 * otherwise pays a bloom probe per candidate table, two binary searches
 * (index and data block) and a block-cache lookup: about 1-2 µs on a node,
 * where a hit here is one hash lookup.
 *
 * What it caches is only ever "the newest entry of this key in the tables",
 * so it stays true until the tables get a newer one: a memtable flush. The
 * engine clears it when a flushed memtable stops being read (its entries are
 * in a table from then on); compactions never add a newer entry (they drop
 * shadowed history and bottom-level tombstones, which read the same). Reads
 * check every memtable first, so writes need not touch it. A cached entry
 * answers a read at any version at or above its own.
 *
 * @module
 */

import { equalBytes } from "../common/bytes.ts";
import type { Entry } from "./internal_key.ts";

/** Bytes charged per cached entry beyond its key and value. */
const entryOverheadBytes = 96;

/**
 * A cached entry (a copy, never changed once cached) and the next one with
 * the same hash: one object, so a hit follows one pointer less. It also
 * holds its key's first 16 bytes as four numbers: a key that short is
 * matched without loading its bytes, which are elsewhere in the heap (each
 * load of a cold object costs a cache miss; a hit was 4 of them).
 */
interface Row extends Entry {
  /** Another key with the same hash. */
  next: Row | undefined;
  /** key.length, kept beside the words. */
  keyLength: number;
  w0: number;
  w1: number;
  w2: number;
  w3: number;
}

/** Big-endian 32-bit word `w` of the key's first 16 bytes, zero past its end. */
function keyWord(key: Uint8Array, w: number): number {
  const at = 4 * w;
  const n = key.length;
  return ((at < n ? key[at] << 24 : 0) | (at + 1 < n ? key[at + 1] << 16 : 0) |
    (at + 2 < n ? key[at + 2] << 8 : 0) | (at + 3 < n ? key[at + 3] : 0));
}

/** Bytes of a key its row's words hold. */
const wordBytes = 16;

/** The row of `key` in the chain starting at `r`, if any. */
function findInChain(r: Row | undefined, key: Uint8Array): Row | undefined {
  if (r === undefined) return undefined;
  const w0 = keyWord(key, 0), w1 = keyWord(key, 1), w2 = keyWord(key, 2), w3 = keyWord(key, 3);
  for (; r !== undefined; r = r.next) {
    if (r.w0 !== w0 || r.w1 !== w1 || r.w2 !== w2 || r.w3 !== w3) continue;
    // The words pad with zeros: the lengths tell "ab" from "ab\0"; past 16 bytes, the rest.
    if (r.keyLength !== key.length) continue;
    if (key.length <= wordBytes || equalBytes(r.key, key)) return r;
  }
  return undefined;
}

/**
 * The Map is keyed by 30 bits of the hash: a larger number is a heap number
 * in V8 (an allocation per lookup and a slower Map), as in the memtable's index.
 */
const smallIntMask = 0x3fff_ffff;

/** A byte-bounded map from user key to its newest table entry; oldest filled, first evicted. */
export class RowCache {
  readonly #rows = new Map<number, Row>();
  #bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly capacityBytes: number) {}

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The cached entry of `key` (whose bloomHash is `hash`), if any. */
  get(key: Uint8Array, hash: number): Entry | undefined {
    const r = findInChain(this.#rows.get(hash & smallIntMask), key);
    if (r !== undefined) this.hits++;
    else this.misses++;
    return r;
  }

  /**
   * `get` for the keys of a pipeline of reads that `found` has no entry for
   * yet (`hashes[i]` is keys[i]'s bloomHash): sets found[i] to the cached
   * entry when it answers a read at `atVersion`. Each step is done for all
   * keys before the next (find the chains, match the rows, touch the
   * values), so the cache misses of different keys overlap instead of
   * following one another. Misses are not counted: the caller looks those
   * keys up one by one.
   */
  getMany(
    keys: Uint8Array[],
    hashes: Int32Array | number[],
    atVersion: number,
    found: (Entry | undefined)[],
  ): void {
    const n = keys.length;
    const chains = this.#chains;
    chains.length = n;
    for (let i = 0; i < n; i++) {
      chains[i] = found[i] === undefined ? this.#rows.get(hashes[i] & smallIntMask) : undefined;
    }
    for (let i = 0; i < n; i++) {
      const r = findInChain(chains[i], keys[i]);
      chains[i] = r !== undefined && r.version <= atVersion ? r : undefined;
    }
    let touched = 0;
    for (let i = 0; i < n; i++) {
      const r = chains[i];
      if (r === undefined) continue;
      // The reply copies the value next: have its bytes on their way now.
      if (r.value.length > 0) touched += r.value[0];
      found[i] = r;
      this.hits++;
    }
    this.#touched ^= touched;
    chains.length = 0;
  }

  /** Rows getMany found, by key (reused). */
  readonly #chains: (Row | undefined)[] = [];
  /** What touching the values read (kept so the reads are not optimized away). */
  #touched = 0;

  /** Caches a copy of `e` (its bytes may belong to a block) as the newest table entry of its key. */
  put(fullHash: number, e: Entry): void {
    const hash = fullHash & smallIntMask;
    const cost = costOf(e);
    if (cost > this.capacityBytes) return;
    const head = this.#rows.get(hash);
    const key = e.key.slice();
    const row: Row = {
      key,
      version: e.version,
      kind: e.kind,
      value: e.value.slice(),
      expiresAtMs: e.expiresAtMs,
      next: undefined,
      keyLength: key.length,
      w0: keyWord(key, 0),
      w1: keyWord(key, 1),
      w2: keyWord(key, 2),
      w3: keyWord(key, 3),
    };
    let replaced = false;
    for (let r = head, prev: Row | undefined; r !== undefined; prev = r, r = r.next) {
      if (!equalBytes(r.key, row.key)) continue;
      // Entries handed out stay as they were: the chain takes the new object instead.
      this.#bytes += cost - costOf(r);
      row.next = r.next;
      if (prev === undefined) this.#rows.set(hash, row);
      else prev.next = row;
      replaced = true;
      break;
    }
    if (!replaced) {
      if (head === undefined) this.#rows.set(hash, row);
      else {
        row.next = head.next;
        head.next = row;
      }
      this.#bytes += cost;
    }
    // A replacement may have grown the entry: the budget holds either way.
    // Oldest hash first (insertion order): drop whole chains until within budget.
    for (const [h, r] of this.#rows) {
      if (this.#bytes <= this.capacityBytes) break;
      this.#rows.delete(h);
      for (let x: Row | undefined = r; x !== undefined; x = x.next) this.#bytes -= costOf(x);
    }
  }

  /** Forgets everything (the tables got newer entries). */
  clear(): void {
    this.#rows.clear();
    this.#bytes = 0;
  }
}

function costOf(e: Entry): number {
  return e.key.length + e.value.length + entryOverheadBytes;
}
