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

/** Stored for a hash two keys share: those reads search the tree instead. */
export const ambiguousEntry = -1;

const firstSlots = 1024; // a power of two

/** Hash -> entry map for hashes below 2^30 (see the module comment). */
export class NewestIndex {
  /** Pairs: hash + 1 (0 = free slot), entry. */
  #slots = new Int32Array(2 * firstSlots);
  #mask = firstSlots - 1;
  #used = 0;

  /** The entry stored for `hash`, or undefined. */
  get(hash: number): number | undefined {
    const slots = this.#slots;
    const mask = this.#mask;
    const tag = hash + 1;
    for (let i = hash & mask;; i = (i + 1) & mask) {
      const t = slots[2 * i];
      if (t === tag) return slots[2 * i + 1];
      if (t === 0) return undefined;
    }
  }

  /** Stores `entry` for `hash`, replacing what was there. */
  set(hash: number, entry: number): void {
    const slots = this.#slots;
    const mask = this.#mask;
    const tag = hash + 1;
    for (let i = hash & mask;; i = (i + 1) & mask) {
      const t = slots[2 * i];
      if (t === tag) {
        slots[2 * i + 1] = entry;
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

  #grow(): void {
    const old = this.#slots;
    const count = 2 * (this.#mask + 1);
    this.#slots = new Int32Array(2 * count);
    this.#mask = count - 1;
    this.#used = 0;
    for (let i = 0; i < old.length; i += 2) {
      if (old[i] !== 0) this.set(old[i] - 1, old[i + 1]);
    }
  }
}
