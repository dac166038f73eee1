/**
 * The pipelining window of one follower: Append messages sent but not yet
 * acknowledged, bounded in count and bytes so a slow follower cannot make the
 * leader buffer without limit.
 *
 * @module
 */

import { assert } from "../common/assert.ts";

/** A ring of (last index, bytes) of in-flight Appends, oldest first. */
export class Inflights {
  #indexes: number[];
  #bytes: number[];
  #start = 0;
  #count = 0;
  #totalBytes = 0;

  constructor(readonly maxCount: number, readonly maxBytes: number) {
    assert(maxCount > 0, "inflight window must hold at least one message");
    this.#indexes = new Array(maxCount).fill(0);
    this.#bytes = new Array(maxCount).fill(0);
  }

  /** Number of Appends in flight. */
  get count(): number {
    return this.#count;
  }

  /** Bytes of entries in flight. */
  get bytes(): number {
    return this.#totalBytes;
  }

  /** True when no more Appends may be sent until some are acknowledged. */
  full(): boolean {
    return this.#count === this.maxCount ||
      (this.maxBytes > 0 && this.#totalBytes >= this.maxBytes);
  }

  /** Records an Append whose last entry is `index`. */
  add(index: number, bytes: number): void {
    assert(!this.full(), "inflights: add to a full window");
    const slot = (this.#start + this.#count) % this.maxCount;
    if (this.#count > 0) {
      const prev = this.#indexes[(slot + this.maxCount - 1) % this.maxCount];
      assert(index > prev, `inflights: index ${index} not after ${prev}`);
    }
    this.#indexes[slot] = index;
    this.#bytes[slot] = bytes;
    this.#count++;
    this.#totalBytes += bytes;
  }

  /** Forgets every Append whose last index is <= `index` (acknowledged). */
  freeLE(index: number): void {
    while (this.#count > 0 && this.#indexes[this.#start] <= index) {
      this.#totalBytes -= this.#bytes[this.#start];
      this.#start = (this.#start + 1) % this.maxCount;
      this.#count--;
    }
    if (this.#count === 0) this.#start = 0;
  }

  /** Empties the window (on a state change). */
  reset(): void {
    this.#start = 0;
    this.#count = 0;
    this.#totalBytes = 0;
  }
}
