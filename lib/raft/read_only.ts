/**
 * Linearizable reads without writing to the log (thesis §6.4, ReadIndex). A read
 * is tagged with a round number; the leader broadcasts heartbeats carrying the
 * newest round, and releases every read whose round a quorum has acknowledged.
 * Many reads issued between two Ready cycles share one heartbeat round.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { maxPendingReads } from "../common/limits.ts";

/** A ReadIndex request waiting for leadership confirmation. */
export interface PendingRead {
  /** Heartbeat round that must be acknowledged by a quorum. */
  round: number;
  /** The leader's commit index when the request arrived: the read index. */
  index: number;
  context: Uint8Array;
  /** Requesting node ("" or the leader's own id for local reads). */
  from: string;
}

/** The leader's queue of reads waiting for a quorum of heartbeat acks. */
export class ReadOnly {
  /** Reads in round order. */
  #queue: PendingRead[] = [];
  #head = 0;
  /** Newest round number handed out. */
  lastRound = 0;
  /** True when a read joined since the last broadcast: a new round must be sent. */
  needBroadcast = false;

  /** Number of reads waiting. */
  get pending(): number {
    return this.#queue.length - this.#head;
  }

  /** Queues a read at `index`; returns false when the queue is full. */
  add(index: number, context: Uint8Array, from: string): boolean {
    if (this.pending >= maxPendingReads) return false;
    if (!this.needBroadcast) {
      this.lastRound++;
      this.needBroadcast = true;
    }
    this.#queue.push({ round: this.lastRound, index, context, from });
    return true;
  }

  /** Releases, in order, every read whose round is <= `ackedRound`. */
  release(ackedRound: number): PendingRead[] {
    const out: PendingRead[] = [];
    while (this.#head < this.#queue.length && this.#queue[this.#head].round <= ackedRound) {
      out.push(this.#queue[this.#head++]);
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    assert(this.#head <= this.#queue.length, "read queue head in bounds");
    return out;
  }

  /** Drops every pending read (leadership lost: a read index is never reused). */
  reset(): void {
    this.#queue = [];
    this.#head = 0;
    this.needBroadcast = false;
  }
}

/** Encodes a round number as a heartbeat context (8 bytes, big-endian). */
export function encodeRound(round: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(round));
  return out;
}

/** Decodes a heartbeat context back to a round number; 0 when absent or malformed. */
export function decodeRound(ctx: Uint8Array | undefined): number {
  if (!ctx || ctx.length !== 8) return 0;
  const v = new DataView(ctx.buffer, ctx.byteOffset, 8).getBigUint64(0);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? 0 : Number(v);
}
