/**
 * The simulator's state machine: a tiny string map driven by "put key value"
 * entries, with a rolling hash over everything applied so two replicas at the
 * same applied index can be compared in O(1).
 *
 * @module
 */

import { fromUtf8, utf8 } from "../../lib/common/bytes.ts";
import { assert } from "../../lib/common/assert.ts";

/** One key's value and the log index of the write that set it. */
export interface KvValue {
  value: string;
  index: number;
}

/** A replica's state machine. */
export class Kv {
  map = new Map<string, KvValue>();
  applied = 0;
  hash = 0;

  /** Applies the entry at `index` (data may be empty: a no-op or a conf change). */
  apply(index: number, data: Uint8Array): void {
    assert(index === this.applied + 1, `kv: applying ${index} after ${this.applied}`);
    this.applied = index;
    let h = this.hash ^ index;
    for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i], 0x01000193) >>> 0;
    this.hash = Math.imul(h, 0x85ebca6b) >>> 0;
    if (data.length === 0) return;
    const text = fromUtf8(data);
    if (!text.startsWith("put ")) return;
    const [, key, value] = text.split(" ");
    this.map.set(key, { value, index });
  }

  /** Serializes the whole state (the snapshot data). */
  serialize(): Uint8Array {
    return utf8(JSON.stringify({ a: this.applied, h: this.hash, m: [...this.map] }));
  }

  /** Replaces the state with a snapshot's. */
  restore(data: Uint8Array): void {
    if (data.length === 0) {
      this.map = new Map();
      this.applied = 0;
      this.hash = 0;
      return;
    }
    const o = JSON.parse(fromUtf8(data)) as { a: number; h: number; m: [string, KvValue][] };
    this.applied = o.a;
    this.hash = o.h;
    this.map = new Map(o.m);
  }

  /** A canonical rendering for comparing two replicas. */
  dump(): string {
    return JSON.stringify([...this.map].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
  }
}
