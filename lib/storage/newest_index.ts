/**
 * The memtable's newest-entry index: a key hash -> the entry index of that
 * key's newest version, or `ambiguousEntry` when two keys share the hash.
 * Open addressing over one Int32Array of (hash + 1, entry) pairs: a lookup is
 * one or two cache lines and no heap object, where a Map of 100k+ numbers
 * cost about a microsecond per insert in profiles (most of it cache misses in
 * its chained buckets). Nothing is ever removed, so no tombstones.
 *
 * @module
 */

import { assert } from "../common/assert.ts";

/** Stored for a hash two keys share: those reads search the tree instead. */
export const ambiguousEntry = -1;

const firstSlots = 1024; // a power of two

/** Old-table pairs moved to the new one per `set` while a growth is in progress. */
const movesPerSet = 16;

/**
 * Hash -> entry map for hashes below 2^30 (see the module comment). Growth is
 * incremental: the doubled table starts empty and each `set` moves a few
 * pairs of the old one over (lookups read the new table, then the old), so
 * no single write pays for rehashing a large memtable's keys at once (28 ms
 * stalls at half a million keys).
 */
export class NewestIndex {
  /** Pairs: hash + 1 (0 = free slot), entry. */
  #slots = new Int32Array(2 * firstSlots);
  #mask = firstSlots - 1;
  #used = 0;
  /** The table before the last growth while its pairs are being moved over. */
  #old: Int32Array | undefined;
  #oldMask = 0;
  /** Next pair of #old to move. */
  #moveAt = 0;

  /** The entry stored for `hash`, or undefined. */
  get(hash: number): number | undefined {
    const found = find(this.#slots, this.#mask, hash);
    // The new table has every hash set since the growth, so the old one's answer is current.
    if (found !== undefined || this.#old === undefined) return found;
    return find(this.#old, this.#oldMask, hash);
  }

  /** Stores `entry` for `hash`, replacing what was there. */
  set(hash: number, entry: number): void {
    if (this.#old !== undefined) this.#move(movesPerSet);
    this.#put(hash, entry, true);
  }

  /** Stores into the current table; `replace` false keeps an entry already there. */
  #put(hash: number, entry: number, replace: boolean): void {
    const slots = this.#slots;
    const mask = this.#mask;
    const tag = hash + 1;
    for (let i = hash & mask;; i = (i + 1) & mask) {
      const t = slots[2 * i];
      if (t === tag) {
        if (replace) slots[2 * i + 1] = entry;
        return;
      }
      if (t === 0) {
        slots[2 * i] = tag;
        slots[2 * i + 1] = entry;
        if (++this.#used * 2 > mask + 1) this.#grow();
        return;
      }
    }
  }

  /** Moves up to `pairs` slots of the old table (keeping newer entries set since). */
  #move(pairs: number): void {
    const old = this.#old!;
    const end = Math.min(old.length, this.#moveAt + 2 * pairs);
    for (let i = this.#moveAt; i < end; i += 2) {
      if (old[i] !== 0) this.#put(old[i] - 1, old[i + 1], false);
    }
    this.#moveAt = end;
    if (end === old.length) this.#old = undefined;
  }

  #grow(): void {
    // A growth at S slots leaves S/2 old slots holding S/4 pairs: moved in S/32 sets, while
    // the new table (2S slots) grows again only past S pairs.
    assert(this.#old === undefined, "a growth finishes moving before the next");
    this.#old = this.#slots;
    this.#oldMask = this.#mask;
    this.#moveAt = 0;
    const count = 2 * (this.#mask + 1);
    this.#slots = new Int32Array(2 * count);
    this.#mask = count - 1;
    this.#used = 0;
  }
}

/** Linear-probing lookup of `hash` in a pairs table. */
function find(slots: Int32Array, mask: number, hash: number): number | undefined {
  const tag = hash + 1;
  for (let i = hash & mask;; i = (i + 1) & mask) {
    const t = slots[2 * i];
    if (t === tag) return slots[2 * i + 1];
    if (t === 0) return undefined;
  }
}
