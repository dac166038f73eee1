/**
 * Keys written with a TTL, ordered by expiry: an indexed binary min-heap
 * every replica fills at apply time (so a new leader has it at once). The
 * leader pops what has expired and proposes its deletion through Raft, so
 * every replica deletes at the same revision and watchers see a DELETE
 * event. Expired keys are already invisible to reads before that (reads pass
 * the current time).
 *
 * One item per key, which knows its place in the heap: a new TTL for the
 * key moves it, and a write without TTL, a delete, or the key's applied
 * ExpireKey removes it. So the queue holds exactly the keys whose newest
 * version expires, each item holds a copy of its key (not a view into the
 * Raft entry it came from), and popping N due keys costs O(N log n) however
 * often those keys were rewritten (an earlier heap that kept outdated
 * schedules as stale items stalled a leader for 0.5 s when 200,000 of them
 * came due at once).
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

/** A heap item: the schedule, its map id and its index in the heap array. */
interface Item extends Expiring {
  id: string;
  at: number;
}

/** An indexed min-heap by expiry time, one item per key. */
export class ExpiryQueue {
  #heap: Item[] = [];
  /** Each key's item, by byteString of the key. */
  #byKey = new Map<string, Item>();

  /** Keys scheduled to expire. */
  get size(): number {
    return this.#byKey.size;
  }

  /** Items held (equal to `size`: no outdated schedule is kept; for tests of the bound). */
  get heldItems(): number {
    return this.#heap.length;
  }

  /**
   * The key's version `version` expires at `expiresAtMs`, or never (0: it
   * was written without TTL, or deleted). An older version's schedule is
   * replaced or dropped; a call about a version older than the one held is
   * ignored (a failed expiry proposal put back after the key was rewritten).
   */
  push(item: Expiring): void {
    const id = byteString(item.key);
    const current = this.#byKey.get(id);
    if (current !== undefined && current.version > item.version) return;
    if (item.expiresAtMs === 0) {
      if (current !== undefined) this.#remove(current);
      return;
    }
    if (current === undefined) {
      const own: Item = {
        key: item.key.slice(),
        version: item.version,
        expiresAtMs: item.expiresAtMs,
        id,
        at: this.#heap.length,
      };
      this.#byKey.set(id, own);
      this.#heap.push(own);
      this.#up(own.at);
      return;
    }
    const earlier = item.expiresAtMs < current.expiresAtMs;
    current.version = item.version;
    current.expiresAtMs = item.expiresAtMs;
    if (earlier) this.#up(current.at);
    else this.#down(current.at);
  }

  /** No key is scheduled (a write without TTL has nothing to drop). */
  get empty(): boolean {
    return this.#heap.length === 0;
  }

  /**
   * The ExpireKey entry for `key` at `version` was applied (deleting it, or
   * finding it rewritten): its schedule is settled.
   */
  settled(key: Uint8Array, version: number): void {
    const current = this.#byKey.get(byteString(key));
    if (current?.version === version) this.#remove(current);
  }

  /** Removes and returns up to `max` items that expired at or before `nowMs`, earliest first. */
  popExpired(nowMs: number, max: number): Expiring[] {
    const out: Expiring[] = [];
    const h = this.#heap;
    while (out.length < max && h.length > 0 && h[0].expiresAtMs <= nowMs) {
      const top = h[0];
      this.#remove(top);
      out.push({ key: top.key, version: top.version, expiresAtMs: top.expiresAtMs });
    }
    return out;
  }

  /** Forgets everything (a snapshot replaced the state). */
  clear(): void {
    this.#heap = [];
    this.#byKey.clear();
  }

  #remove(item: Item): void {
    const h = this.#heap;
    const at = item.at;
    const last = h.pop()!;
    this.#byKey.delete(item.id);
    if (last === item) return;
    h[at] = last;
    last.at = at;
    this.#up(at);
    this.#down(last.at);
  }

  #up(i: number): void {
    const h = this.#heap;
    const item = h[i];
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent].expiresAtMs <= item.expiresAtMs) break;
      h[i] = h[parent];
      h[i].at = i;
      i = parent;
    }
    h[i] = item;
    item.at = i;
  }

  #down(i: number): void {
    const h = this.#heap;
    const item = h[i];
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const child = r < h.length && h[r].expiresAtMs < h[l].expiresAtMs ? r : l;
      if (h[child].expiresAtMs >= item.expiresAtMs) break;
      h[i] = h[child];
      h[i].at = i;
      i = child;
    }
    h[i] = item;
    item.at = i;
  }
}
