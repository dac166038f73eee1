/**
 * The row cache: for recently read keys, the newest entry the tables hold
 * (RocksDB's row_cache). A point read of a key that is in no memtable
 * otherwise pays a bloom probe per candidate table, two binary searches
 * (index and data block) and a block-cache lookup: about 1-2 µs on a node,
 * where a hit here is one hash probe.
 *
 * What it caches is only ever "the newest entry of this key in the tables",
 * so it stays true until the tables get a newer one: a memtable flush. The
 * engine clears it when a flushed memtable stops being read (its entries are
 * in a table from then on); compactions never add a newer entry (they drop
 * shadowed history and bottom-level tombstones, which read the same). Reads
 * check every memtable first, so writes need not touch it. A cached entry
 * answers a read at any version at or above its own. A key no table holds
 * is cached as a tombstone at version 0 (the engine's `absentIn`).
 *
 * Layout: two generations, each an EntryStore (the memtable's: bytes in
 * slabs, fields in typed-array columns) with a hash index. New entries go to
 * the current one; when it holds half the budget, the previous generation is
 * dropped whole and the current one takes its place. A hit in the previous
 * generation is copied into the current one, so keys still being read
 * survive the drop: roughly least-recently-used, with no per-entry links.
 * The first version kept an object per row (the row, a key array, a value
 * array): about 400 bytes each, spread over the heap, so 100,000 cached keys
 * outgrew the CPU's last-level cache, every hit was several cache misses,
 * and every full collection traced all of them. Here a row is its bytes in a
 * slab plus a few column cells.
 *
 * Keys whose hashes collide (30 bits) evict each other; a cache may forget.
 *
 * @module
 */

import { EntryStore } from "./memtable_store.ts";
import type { Entry } from "./internal_key.ts";
import { NewestIndex } from "./newest_index.ts";

/**
 * Bytes charged per cached entry beyond its key and value: its column cells
 * (33 bytes) and its share of the index (16-32 bytes at the index's load).
 */
const entryOverheadBytes = 72;

/**
 * The index is keyed by 30 bits of the hash: a larger number is a heap
 * number in V8 (an allocation per lookup), as in the memtable's index.
 */
const smallIntMask = 0x3fff_ffff;

/** No entry (an index miss or a different key under the same hash). */
const noRow = -1;

/** One generation: its entries, their index by hash, the bytes charged for them. */
class Generation {
  readonly store = new EntryStore();
  readonly index = new NewestIndex();
  bytes = 0;

  /** The entry of `key` under `hash` (already masked), or noRow. */
  find(key: Uint8Array, hash: number): number {
    const id = this.index.get(hash) ?? noRow;
    if (id === noRow) return noRow;
    return this.store.compareKey(id, key, 0, key.length, 0) === 0 ? id : noRow;
  }

  /** Adds a copy of `e` (the index then names it for its hash). */
  add(hash: number, e: Entry): number {
    const store = this.store;
    const id = store.add(e.key.length, e.value.length, e.version, e.kind, e.expiresAtMs);
    store.copyKey(id, e.key, 0);
    store.copyValue(id, e.value, 0);
    this.index.set(hash, id);
    this.bytes += costOf(e);
    return id;
  }
}

/** A byte-bounded map from user key to its newest table entry (see the module comment). */
export class RowCache {
  #current = new Generation();
  #previous: Generation | undefined;
  hits = 0;
  misses = 0;

  constructor(readonly capacityBytes: number) {}

  /** Bytes charged for what is held (both generations). */
  get bytes(): number {
    return this.#current.bytes + (this.#previous?.bytes ?? 0);
  }

  /** The cached entry of `key` (whose bloomHash is `hash`), if any. */
  get(key: Uint8Array, hash: number): Entry | undefined {
    const e = this.#lookUp(key, hash & smallIntMask);
    if (e !== undefined) this.hits++;
    else this.misses++;
    return e;
  }

  #lookUp(key: Uint8Array, hash: number): Entry | undefined {
    const current = this.#current;
    const id = current.find(key, hash);
    if (id !== noRow) return current.store.entry(id);
    const previous = this.#previous;
    if (previous === undefined) return undefined;
    const old = previous.find(key, hash);
    if (old === noRow) return undefined;
    // Still read: carried into the current generation before the previous one goes.
    const e = previous.store.entry(old);
    this.#add(hash, e);
    return e;
  }

  /**
   * `get` for the keys of a pipeline of reads that `found` has no entry for
   * yet (`hashes[i]` is keys[i]'s bloomHash): sets found[i] to the cached
   * entry when it answers a read at `atVersion`. Each step is done for all
   * keys before the next (probe the index, load the columns, load the
   * bytes), so the cache misses of different keys overlap instead of
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
    if (this.#ids.length < n) this.#ids = new Int32Array(n);
    const ids = this.#ids;
    const current = this.#current;
    const { index, store } = current;
    for (let i = 0; i < n; i++) {
      ids[i] = found[i] === undefined ? index.get(hashes[i] & smallIntMask) ?? noRow : noRow;
    }
    store.touch(ids, n);
    const version = store.version;
    for (let i = 0; i < n; i++) {
      if (found[i] !== undefined) continue;
      const key = keys[i];
      const id = ids[i];
      let e: Entry | undefined;
      // A promotion below may have rotated the generations: then the rest go through #lookUp,
      // which carries them forward too (getMany answers exactly what get would).
      if (
        id !== noRow && this.#current === current &&
        store.compareKey(id, key, 0, key.length, 0) === 0
      ) {
        e = version[id] <= atVersion ? store.entry(id) : undefined;
      } else if (this.#previous !== undefined) {
        e = this.#lookUp(key, hashes[i] & smallIntMask);
        if (e !== undefined && e.version > atVersion) e = undefined;
      }
      if (e === undefined) continue;
      found[i] = e;
      this.hits++;
    }
  }

  /** getMany's scratch: the current generation's entry of each key. */
  #ids = new Int32Array(64);

  /** Caches a copy of `e` (its bytes may belong to a block) as the newest table entry of its key. */
  put(fullHash: number, e: Entry): void {
    if (costOf(e) > this.capacityBytes / 2) return;
    this.#add(fullHash & smallIntMask, e);
  }

  #add(hash: number, e: Entry): void {
    if (this.#current.bytes + costOf(e) > this.capacityBytes / 2) {
      this.#previous = this.#current;
      this.#current = new Generation();
    }
    this.#current.add(hash, e);
    // The previous generation may hold an older entry of this key; once a later key under the
    // same hash replaced this one in the current index, a lookup would fall through to it.
    const previous = this.#previous?.index;
    if (previous?.get(hash) !== undefined) previous.set(hash, noRow);
  }

  /** Forgets everything (the tables got newer entries). */
  clear(): void {
    this.#current = new Generation();
    this.#previous = undefined;
  }
}

function costOf(e: Entry): number {
  return e.key.length + e.value.length + entryOverheadBytes;
}
