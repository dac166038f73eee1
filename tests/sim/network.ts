/**
 * A simulated network: every message gets a delivery time (so delays reorder
 * them), may be dropped or duplicated, and links can be cut one way or both
 * (partitions, one-way cuts, bridges). Time is counted in simulator steps.
 *
 * @module
 */

import type { SeededRandom } from "../../lib/common/random.ts";
import type { Message } from "../../lib/raft/types.ts";

interface InFlight {
  at: number;
  seq: number;
  msg: Message;
}

/** Fault knobs; all can change during a run. */
export interface NetworkFaults {
  /** Probability that a message is lost. */
  dropRate: number;
  /** Probability that a message is delivered twice. */
  duplicateRate: number;
  /** Delivery delay in steps, uniform in [minDelay, maxDelay]. */
  minDelay: number;
  maxDelay: number;
}

/** Messages in flight between simulated nodes. */
export class Network {
  #queue: InFlight[] = [];
  #seq = 0;
  /** Directed links that are cut, as "from>to". */
  readonly cut = new Set<string>();
  faults: NetworkFaults = { dropRate: 0, duplicateRate: 0, minDelay: 1, maxDelay: 1 };
  sent = 0;
  dropped = 0;
  /** Called when a message is lost, so a sender can be told (e.g. reportSnapshot). */
  onDrop: ((m: Message) => void) | undefined;

  constructor(readonly rng: SeededRandom) {}

  /** True when `from` can currently reach `to`. */
  connected(from: string, to: string): boolean {
    return !this.cut.has(`${from}>${to}`);
  }

  /** Queues `m` for delivery at `now` plus a random delay, unless the network loses it. */
  send(m: Message, now: number): void {
    this.sent++;
    if (!this.connected(m.from, m.to) || this.rng.nextFloat() < this.faults.dropRate) {
      this.dropped++;
      this.onDrop?.(m);
      return;
    }
    const copies = this.rng.nextFloat() < this.faults.duplicateRate ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const span = this.faults.maxDelay - this.faults.minDelay + 1;
      const at = now + this.faults.minDelay + this.rng.nextInt(Math.max(1, span));
      this.#queue.push({ at, seq: this.#seq++, msg: m });
    }
  }

  /** Removes and returns the messages due at or before `now`, in delivery order. */
  due(now: number): Message[] {
    const ready: InFlight[] = [];
    const rest: InFlight[] = [];
    for (const f of this.#queue) (f.at <= now ? ready : rest).push(f);
    this.#queue = rest;
    ready.sort((a, b) => a.at - b.at || a.seq - b.seq);
    const out: Message[] = [];
    for (const f of ready) {
      // A cut made while the message was in flight loses it too.
      if (!this.connected(f.msg.from, f.msg.to)) {
        this.dropped++;
        this.onDrop?.(f.msg);
        continue;
      }
      out.push(f.msg);
    }
    return out;
  }

  /** Puts a message back in flight, to arrive at `at` (its target was paused). */
  requeue(m: Message, at: number): void {
    this.#queue.push({ at, seq: this.#seq++, msg: m });
  }

  /** Number of messages in flight. */
  get inFlight(): number {
    return this.#queue.length;
  }

  /** Cuts both directions between every node of `a` and every node of `b`. */
  partition(a: string[], b: string[]): void {
    for (const x of a) {
      for (const y of b) {
        this.cut.add(`${x}>${y}`);
        this.cut.add(`${y}>${x}`);
      }
    }
  }

  /** Cuts one direction only. */
  cutOneWay(from: string, to: string): void {
    this.cut.add(`${from}>${to}`);
  }

  /** Restores every link. */
  heal(): void {
    this.cut.clear();
  }

  /** Drops everything in flight to or from `id` (a crashed node's sockets close). */
  forget(id: string): void {
    const keep: InFlight[] = [];
    for (const f of this.#queue) {
      if (f.msg.to === id) this.onDrop?.(f.msg);
      else keep.push(f);
    }
    this.#queue = keep;
  }
}
