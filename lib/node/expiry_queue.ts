/**
 * Keys written with a TTL, ordered by expiry: a binary min-heap every replica
 * fills at apply time (so a new leader has it at once). The leader pops what
 * has expired and proposes its deletion through Raft, so every replica
 * deletes at the same revision and watchers see a DELETE event. Expired keys
 * are already invisible to reads before that (reads pass the current time).
 *
 * Bounded by the keys that have a TTL, not by the writes that gave them one:
 * only a key's newest schedule is live (an older one, or one its ExpireKey
 * entry settled, is stale and skipped), stale items are swept out once they
 * outnumber the live ones, and each item holds a copy of its key, not a view
 * into the Raft entry it came from.
 *
 * @module
 */

import { byteString } from "../common/bytes.ts";

/** One key scheduled to expire at `expiresAtMs` (as written at `version`). */
export interface Expiring {
  key: Uint8Array;
  version: number;
  expiresAtMs: number;
}

/** Stale items tolerated before a sweep, whatever the live count. */
const minSweepStale = 1_024;

/** A min-heap by expiry time, one live schedule per key. */
export class ExpiryQueue {
  #heap: Expiring[] = [];
  /** Each key's newest schedule (by byteString of the key): the only live item of that key. */
  #live = new Map<string, Expiring>();

  /** Keys scheduled to expire (live items). */
  get size(): number {
    return this.#live.size;
  }

  /** Items held, stale ones included (for tests of the bound). */
  get heldItems(): number {
    return this.#heap.length;
  }

  /** Schedules a key; an older schedule of the same key becomes stale. */
  push(item: Expiring): void {
    const id = byteString(item.key);
    const current = this.#live.get(id);
    if (current !== undefined && current.version > item.version) return; // a newer one holds
    const own: Expiring = {
      key: item.key.slice(),
      version: item.version,
      expiresAtMs: item.expiresAtMs,
    };
    this.#live.set(id, own);
    this.#heapPush(own);
    this.#maybeSweep();
  }

  /**
   * The ExpireKey entry for `key` at `version` was applied (deleting it, or
   * finding it rewritten): its schedule is settled.
   */
  settled(key: Uint8Array, version: number): void {
    const id = byteString(key);
    if (this.#live.get(id)?.version === version) {
      this.#live.delete(id);
      this.#maybeSweep();
    }
  }

  /** Removes and returns up to `max` live items that expired at or before `nowMs`, earliest first. */
  popExpired(nowMs: number, max: number): Expiring[] {
    const out: Expiring[] = [];
    const h = this.#heap;
    while (out.length < max && h.length > 0 && h[0].expiresAtMs <= nowMs) {
      const top = this.#heapPop();
      const id = byteString(top.key);
      if (this.#live.get(id) !== top) continue; // stale
      this.#live.delete(id);
      out.push(top);
    }
    return out;
  }

  /** Forgets everything (a snapshot replaced the state). */
  clear(): void {
    this.#heap = [];
    this.#live.clear();
  }

  /** Rebuilds the heap from the live items once stale ones outnumber them. */
  #maybeSweep(): void {
    const stale = this.#heap.length - this.#live.size;
    if (stale < minSweepStale || stale <= this.#live.size) return;
    const items = [...this.#live.values()].sort((a, b) => a.expiresAtMs - b.expiresAtMs);
    this.#heap = items; // sorted by expiry: already a valid min-heap
  }

  #heapPush(item: Expiring): void {
    const h = this.#heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent].expiresAtMs <= h[i].expiresAtMs) break;
      [h[parent], h[i]] = [h[i], h[parent]];
      i = parent;
    }
  }

  #heapPop(): Expiring {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && h[l].expiresAtMs < h[m].expiresAtMs) m = l;
        if (r < h.length && h[r].expiresAtMs < h[m].expiresAtMs) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i], h[m]];
        i = m;
      }
    }
    return top;
  }
}
