/**
 * LRU cache of parsed SSTable blocks with a byte budget. Each open table
 * keeps a slot array indexed by block number, so a hit is one array load and
 * a few pointer moves (no hashing); the cache itself is a doubly linked list
 * in recency order that evicts from the cold end and clears the owner's slot.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import type { Block } from "./block.ts";

/** One cached block; `slots[index]` points back at it while cached. */
export class CacheNode {
  prev: CacheNode | null = null;
  next: CacheNode | null = null;
  constructor(
    readonly block: Block,
    readonly slots: (CacheNode | undefined)[],
    readonly index: number,
  ) {}
}

/** Byte-budgeted LRU of blocks shared by every table. */
export class BlockCache {
  #head: CacheNode | null = null; // most recent
  #tail: CacheNode | null = null; // least recent
  #bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly capacityBytes: number) {
    assert(capacityBytes >= 0, "capacity must be >= 0");
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  #unlink(n: CacheNode): void {
    if (n.prev) n.prev.next = n.next;
    else this.#head = n.next;
    if (n.next) n.next.prev = n.prev;
    else this.#tail = n.prev;
    n.prev = n.next = null;
  }

  #pushFront(n: CacheNode): void {
    n.next = this.#head;
    n.prev = null;
    if (this.#head) this.#head.prev = n;
    this.#head = n;
    if (this.#tail === null) this.#tail = n;
  }

  /** The block cached in `slots[index]`, marked most recently used, or undefined. */
  get(slots: (CacheNode | undefined)[], index: number): Block | undefined {
    const n = slots[index];
    if (n === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    if (this.#head !== n) {
      this.#unlink(n);
      this.#pushFront(n);
    }
    return n.block;
  }

  /** Caches `block` as `slots[index]`, evicting cold blocks beyond the budget. */
  put(slots: (CacheNode | undefined)[], index: number, block: Block): void {
    const charge = block.data.length;
    if (charge > this.capacityBytes) return;
    const old = slots[index];
    if (old !== undefined) this.#remove(old);
    const n = new CacheNode(block, slots, index);
    slots[index] = n;
    this.#pushFront(n);
    this.#bytes += charge;
    while (this.#bytes > this.capacityBytes && this.#tail !== null) this.#remove(this.#tail);
  }

  #remove(n: CacheNode): void {
    this.#unlink(n);
    if (n.slots[n.index] === n) n.slots[n.index] = undefined;
    this.#bytes -= n.block.data.length;
  }

  /** Drops every block cached in `slots` (the table was closed or deleted). */
  dropAll(slots: (CacheNode | undefined)[]): void {
    for (const n of slots) if (n !== undefined) this.#remove(n);
  }
}
