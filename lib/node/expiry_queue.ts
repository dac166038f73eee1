/**
 * Keys written with a TTL, ordered by expiry: a binary min-heap every replica
 * fills at apply time (so a new leader has it at once). The leader pops what
 * has expired and proposes its deletion through Raft, so every replica
 * deletes at the same revision and watchers see a DELETE event. Expired keys
 * are already invisible to reads before that (reads pass the current time).
 *
 * @module
 */

/** One key scheduled to expire at `expiresAtMs` (as written at `version`). */
export interface Expiring {
  key: Uint8Array;
  version: number;
  expiresAtMs: number;
}

/** A min-heap by expiry time. */
export class ExpiryQueue {
  #heap: Expiring[] = [];

  /** Number of scheduled keys (stale entries included until popped). */
  get size(): number {
    return this.#heap.length;
  }

  /** Schedules a key. */
  push(item: Expiring): void {
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

  /** Removes and returns up to `max` items that expired at or before `nowMs`, earliest first. */
  popExpired(nowMs: number, max: number): Expiring[] {
    const out: Expiring[] = [];
    while (out.length < max && this.#heap.length > 0 && this.#heap[0].expiresAtMs <= nowMs) {
      out.push(this.#pop());
    }
    return out;
  }

  /** Forgets everything (a snapshot replaced the state). */
  clear(): void {
    this.#heap = [];
  }

  #pop(): Expiring {
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
