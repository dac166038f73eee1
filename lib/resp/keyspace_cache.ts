/**
 * INFO keyspace's figures without a walk of every key on every INFO. A
 * count reads every key (about 4 s for a million under load), and
 * monitoring agents send INFO every few seconds. A count that took T is
 * reused for the next 10 T, so INFO spends at most about a tenth of the
 * node's time counting; a count that took under 100 ms (a small key space)
 * is redone every time, so small key spaces are always counted exactly.
 * Calls that arrive while a count runs share it. DBSIZE always counts.
 *
 * @module
 */

import type { Clock } from "../common/clock.ts";

/** INFO keyspace's figures: keys, keys with a TTL, their mean time left in ms. */
export interface KeyspaceCounts {
  keys: number;
  expires: number;
  avgTtlMs: number;
}

/** A count is reused for this many times its own duration. */
const reuseFactor = 10;
/** Counts quicker than this are never reused. */
const minReusedCountMs = 100;

/** The latest keyspace count and when to count again (see the module comment). */
export class KeyspaceCache {
  #last: { counts: KeyspaceCounts; doneAtMs: number; tookMs: number } | undefined;
  #running: Promise<KeyspaceCounts> | undefined;

  constructor(
    readonly clock: Clock,
    readonly count: () => Promise<KeyspaceCounts>,
  ) {}

  /** The figures: a recent enough count's, or a new count's. */
  get(): Promise<KeyspaceCounts> {
    const last = this.#last;
    if (
      last !== undefined && last.tookMs >= minReusedCountMs &&
      this.clock.nowMs() - last.doneAtMs < reuseFactor * last.tookMs
    ) {
      return Promise.resolve(last.counts);
    }
    if (this.#running !== undefined) return this.#running;
    const startedMs = this.clock.nowMs();
    const running = this.count().then((counts) => {
      const doneAtMs = this.clock.nowMs();
      this.#last = { counts, doneAtMs, tookMs: doneAtMs - startedMs };
      return counts;
    });
    this.#running = running;
    const done = () => {
      if (this.#running === running) this.#running = undefined;
    };
    running.then(done, done);
    return running;
  }
}
