/**
 * Cooperative time slicing for long background loops (memtable flushes,
 * compactions). JavaScript runs them on the same thread as request handling:
 * a loop that only awaits promises that are already settled never lets the
 * event loop run, and every request, heartbeat and timer waits behind it. A
 * TimeSlice tells such a loop when it has run for a slice and gives the
 * event loop a turn, and (when nothing waits for the work) a pause.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** How many calls pass between clock reads (a clock read costs more than a call). */
const callsPerClockRead = 32;

/**
 * Longest stretch between two turns that poll I/O (see ioTurn) when a loop
 * takes its turns without pauses.
 */
export const ioTurnEveryMs = 8;

/**
 * A turn of the event loop in which the runtime also polls sockets and
 * files. Under Deno a chain of node:timers setImmediate (or MessageChannel)
 * callbacks runs before any I/O is polled: a TCP echo waited 240 ms behind
 * 2 ms slices separated by setImmediate, and 0.2 ms behind slices separated
 * by a zero-delay timer. A timer turn costs about 2 ms of waiting, so loops
 * take one every ioTurnEveryMs and cheaper setImmediate turns between.
 */
export function ioTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** How a background loop shares the thread (see TimeSlice). */
export interface SlicePolicy {
  /** Longest stretch of work between two turns of the event loop. */
  sliceMs: number;
  /**
   * Pause after each slice while the work is not urgent (0: just a turn).
   * Background work that runs flat out between turns still takes most of
   * the thread from requests; pausing spreads it out, at the cost of
   * finishing later.
   */
  restMs: number;
  /** True when someone waits for this work (then it takes only turns, no pauses). */
  urgent(): boolean;
}

/**
 * For loops over data already in memory (key walks, history replays, a
 * scan of every key): `due()` returns an ioTurn to await once ioTurnEveryMs
 * passed since the last one, and undefined otherwise (a clock read every
 * `callsPerClockRead` calls: 64 for items, 1 for pages of many items).
 */
export class IoTurns {
  #calls = 0;
  #last = performance.now();

  constructor(readonly callsPerClockRead = 64) {}

  /** Call once per item; await what it returns when it returns something. */
  due(): Promise<void> | undefined {
    if (++this.#calls % this.callsPerClockRead !== 0) return undefined;
    const now = performance.now();
    if (now - this.#last < ioTurnEveryMs) return undefined;
    return ioTurn().then(() => {
      this.#last = performance.now();
    });
  }
}

/** Yields to the event loop once a loop has run a slice without a turn. */
export class TimeSlice {
  #calls = 0;
  #sliceStart = performance.now();
  /** When the last turn that polled I/O began. */
  #lastIoTurn = performance.now();

  constructor(readonly policy: SlicePolicy) {}

  /**
   * Call once per loop step: returns a promise to await when the slice is
   * used up (it resolves after a turn of the event loop: timers, and at
   * least every ioTurnEveryMs pending I/O too), and undefined otherwise, so
   * the common case costs no promise.
   */
  check(): Promise<void> | undefined {
    if (++this.#calls < callsPerClockRead) return undefined;
    this.#calls = 0;
    const now = performance.now();
    if (now - this.#sliceStart < this.policy.sliceMs) return undefined;
    return new Promise<void>((resolve) => {
      const resume = () => {
        this.#sliceStart = performance.now();
        resolve();
      };
      if (this.policy.restMs > 0 && !this.policy.urgent()) {
        this.#lastIoTurn = now;
        setTimeout(resume, this.policy.restMs);
      } else if (now - this.#lastIoTurn >= ioTurnEveryMs) {
        this.#lastIoTurn = now;
        setTimeout(resume, 0);
      } else setImmediate(resume);
    });
  }
}
