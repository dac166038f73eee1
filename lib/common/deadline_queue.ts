/**
 * Deadlines of many in-flight calls behind one timer. Nearly every call ends
 * long before its deadline, so arming and clearing a runtime timer per call
 * (a few microseconds and an object each) is work thrown away; here a call
 * costs an array push and a swap-remove, and the one timer is armed for the
 * earliest deadline and re-armed only when it fires or an earlier deadline
 * arrives. An array, not a Set: entries deleted from a long-lived Set stayed
 * reachable until the next young collection, which promoted each call's
 * objects through its callback (lib/common/id_table.ts has the figures).
 *
 * @module
 */

import type { Clock, TimerHandle } from "./clock.ts";

/** The longest delay a runtime timer takes (about 24.8 days). */
const maxTimerDelayMs = 2 ** 31 - 1;

/** One registered deadline; pass it back to `remove` when the call ends first. */
export interface DeadlineEntry {
  readonly deadlineMs: number;
  readonly onExpire: () => void;
}

/** An entry with its place in the queue's array (-1 once removed). */
interface QueuedDeadline extends DeadlineEntry {
  index: number;
}

/** Fires each entry's callback once its deadline (on `clock.nowMs()`) has passed. */
export class DeadlineQueue {
  readonly #entries: QueuedDeadline[] = [];
  #timer: TimerHandle | undefined;
  #armedForMs = Infinity;

  constructor(private readonly clock: Clock) {}

  /** The time deadlines are measured in (the clock's `nowMs()`). */
  now(): number {
    return this.clock.nowMs();
  }

  /** Calls waiting for their deadline. */
  get size(): number {
    return this.#entries.length;
  }

  /** Registers `onExpire` to run once `deadlineMs` (clock.nowMs() time) has passed. */
  add(deadlineMs: number, onExpire: () => void): DeadlineEntry {
    const entry: QueuedDeadline = { deadlineMs, onExpire, index: this.#entries.length };
    this.#entries.push(entry);
    if (deadlineMs < this.#armedForMs) this.#arm(deadlineMs);
    return entry;
  }

  /** Forgets `entry` (its call ended); its callback will not run. */
  remove(entry: DeadlineEntry): void {
    this.#unlink(entry as QueuedDeadline);
    if (this.#entries.length === 0) this.#disarm();
  }

  /** Takes `entry` out of the array: the last entry moves into its place. */
  #unlink(entry: QueuedDeadline): void {
    const list = this.#entries;
    const i = entry.index;
    if (i < 0 || list[i] !== entry) return;
    const last = list.pop()!;
    if (last !== entry) {
      list[i] = last;
      last.index = i;
    }
    entry.index = -1;
  }

  #arm(atMs: number): void {
    this.#timer?.cancel();
    this.#armedForMs = atMs;
    // A runtime timer takes at most 2^31 - 1 ms (longer ones fire at once, over and over);
    // a deadline further away is re-armed when that one fires.
    this.#timer = this.clock.setTimeout(
      () => this.#fire(),
      Math.min(maxTimerDelayMs, Math.max(0, atMs - this.clock.nowMs())),
    );
  }

  #disarm(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#armedForMs = Infinity;
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedForMs = Infinity;
    const now = this.clock.nowMs();
    const expired: QueuedDeadline[] = [];
    let next = Infinity;
    for (const e of this.#entries) {
      if (e.deadlineMs <= now) expired.push(e);
      else if (e.deadlineMs < next) next = e.deadlineMs;
    }
    for (const e of expired) this.#unlink(e);
    if (next !== Infinity) this.#arm(next);
    for (const e of expired) e.onExpire();
  }
}
