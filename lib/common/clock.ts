/**
 * The Clock seam. Everything outside the pure Raft core that needs the time or
 * a timer asks a Clock, so tests can drive time by hand and a simulation can
 * run hours of cluster time in milliseconds.
 *
 * @module
 */

/** Cancels a timer made by a Clock. */
export interface TimerHandle {
  cancel(): void;
}

/** Time and timers. */
export interface Clock {
  /** Monotonic milliseconds; only differences are meaningful. */
  nowMs(): number;
  /** Wall-clock milliseconds since the Unix epoch (for TTL expiry and logs). */
  wallMs(): number;
  /** Runs `fn` once after `delayMs`. */
  setTimeout(fn: () => void, delayMs: number): TimerHandle;
  /** Runs `fn` every `intervalMs` until cancelled. */
  setInterval(fn: () => void, intervalMs: number): TimerHandle;
  /** Resolves after `delayMs`, or rejects with the signal's reason when aborted. */
  sleep(delayMs: number, signal?: AbortSignal): Promise<void>;
}

/** The real clock: `performance.now()`, `Date.now()` and the runtime's timers. */
export class SystemClock implements Clock {
  nowMs(): number {
    return performance.now();
  }
  wallMs(): number {
    return Date.now();
  }
  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    const id = setTimeout(fn, delayMs);
    return { cancel: () => clearTimeout(id) };
  }
  setInterval(fn: () => void, intervalMs: number): TimerHandle {
    const id = setInterval(fn, intervalMs);
    return { cancel: () => clearInterval(id) };
  }
  sleep(delayMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        clearTimeout(id);
        reject(signal?.reason);
      };
      const id = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, delayMs);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}

interface ManualTimer {
  id: number;
  dueMs: number;
  intervalMs: number | undefined;
  fn: () => void;
}

/**
 * A clock that moves only when told to. `advance(ms)` fires every timer that
 * falls due, in due-time order (ties by creation order), so tests are exact.
 */
export class ManualClock implements Clock {
  #now: number;
  #wallOffset: number;
  #timers: ManualTimer[] = [];
  #nextId = 1;

  constructor(startMs = 0, wallEpochMs = 1_700_000_000_000) {
    this.#now = startMs;
    this.#wallOffset = wallEpochMs - startMs;
  }

  nowMs(): number {
    return this.#now;
  }
  wallMs(): number {
    return this.#now + this.#wallOffset;
  }

  #add(fn: () => void, delayMs: number, intervalMs: number | undefined): TimerHandle {
    const timer: ManualTimer = { id: this.#nextId++, dueMs: this.#now + delayMs, intervalMs, fn };
    this.#timers.push(timer);
    return { cancel: () => (this.#timers = this.#timers.filter((t) => t !== timer)) };
  }

  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    return this.#add(fn, Math.max(0, delayMs), undefined);
  }
  setInterval(fn: () => void, intervalMs: number): TimerHandle {
    if (!(intervalMs > 0)) throw new RangeError("interval must be positive");
    return this.#add(fn, intervalMs, intervalMs);
  }
  sleep(delayMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const handle = this.setTimeout(resolve, delayMs);
      signal?.addEventListener("abort", () => {
        handle.cancel();
        reject(signal.reason);
      }, { once: true });
    });
  }

  /** Number of timers still pending. */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  /** Moves time forward by `ms`, firing due timers in order. */
  advance(ms: number): void {
    if (ms < 0) throw new RangeError("time cannot go backwards");
    const target = this.#now + ms;
    for (;;) {
      let next: ManualTimer | undefined;
      for (const t of this.#timers) {
        if (
          t.dueMs <= target &&
          (!next || t.dueMs < next.dueMs || (t.dueMs === next.dueMs && t.id < next.id))
        ) {
          next = t;
        }
      }
      if (!next) break;
      this.#now = next.dueMs;
      if (next.intervalMs === undefined) {
        this.#timers = this.#timers.filter((t) => t !== next);
      } else {
        next.dueMs += next.intervalMs;
      }
      next.fn();
    }
    this.#now = target;
  }
}
