/**
 * Cooperative time slicing for long background loops (memtable flushes,
 * compactions). JavaScript runs them on the same thread as request handling:
 * a loop that only awaits promises that are already settled never lets the
 * event loop run, and every request, heartbeat and timer waits behind it. A
 * TimeSlice tells such a loop when it has run for a slice and gives the
 * event loop a turn.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** How many calls pass between clock reads (a clock read costs more than a call). */
const callsPerClockRead = 32;

/** Yields to the event loop once a loop has run `sliceMs` without a turn. */
export class TimeSlice {
  #calls = 0;
  #sliceStart = performance.now();

  constructor(readonly sliceMs: number) {}

  /**
   * Call once per loop step: returns a promise to await when the slice is
   * used up (it resolves after pending I/O and timers had their turn), and
   * undefined otherwise, so the common case costs no promise.
   */
  check(): Promise<void> | undefined {
    if (++this.#calls < callsPerClockRead) return undefined;
    this.#calls = 0;
    const now = performance.now();
    if (now - this.#sliceStart < this.sliceMs) return undefined;
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        this.#sliceStart = performance.now();
        resolve();
      })
    );
  }
}
