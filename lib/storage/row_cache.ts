/**
 * The row cache: for recently read keys, the newest entry the tables hold
 * (RocksDB's row_cache). A point read of a key that is in no memtable
 * otherwise pays a bloom probe per candidate table, two binary searches
 * (index and data block) and a block-cache lookup: about 1-2 µs on a node,
 * where a hit here is one hash lookup.
 *
 * What it caches is only ever "the newest entry of this key in the tables",
 * so it stays true until the tables get a newer one: a memtable flush. The
 * engine clears it when a flushed memtable stops being read (its entries are
 * in a table from then on); compactions never add a newer entry (they drop
 * shadowed history and bottom-level tombstones, which read the same). Reads
 * check every memtable first, so writes need not touch it. A cached entry
 * answers a read at any version at or above its own.
 *
 * @module
 */

import { equalBytes } from "../common/bytes.ts";
import type { Entry } from "./internal_key.ts";

/** Bytes charged per cached entry beyond its key and value. */
const entryOverheadBytes = 96;

/**
 * A cached entry (a copy, never changed once cached) and the next one with
 * the same hash: one object, so a hit follows one pointer less.
 */
interface Row extends Entry {
  /** Another key with the same hash. */
  next: Row | undefined;
}

/** A byte-bounded map from user key to its newest table entry; oldest filled, first evicted. */
export class RowCache {
  readonly #rows = new Map<number, Row>();
  #bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly capacityBytes: number) {}

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The cached entry of `key` (whose bloomHash is `hash`), if any. */
  get(key: Uint8Array, hash: number): Entry | undefined {
    for (let r = this.#rows.get(hash); r !== undefined; r = r.next) {
      if (equalBytes(r.key, key)) {
        this.hits++;
        return r;
      }
    }
    this.misses++;
    return undefined;
  }

  /** Caches a copy of `e` (its bytes may belong to a block) as the newest table entry of its key. */
  put(hash: number, e: Entry): void {
    const cost = costOf(e);
    if (cost > this.capacityBytes) return;
    const head = this.#rows.get(hash);
    const row: Row = {
      key: e.key.slice(),
      version: e.version,
      kind: e.kind,
      value: e.value.slice(),
      expiresAtMs: e.expiresAtMs,
      next: undefined,
    };
    let replaced = false;
    for (let r = head, prev: Row | undefined; r !== undefined; prev = r, r = r.next) {
      if (!equalBytes(r.key, row.key)) continue;
      // Entries handed out stay as they were: the chain takes the new object instead.
      this.#bytes += cost - costOf(r);
      row.next = r.next;
      if (prev === undefined) this.#rows.set(hash, row);
      else prev.next = row;
      replaced = true;
      break;
    }
    if (!replaced) {
      if (head === undefined) this.#rows.set(hash, row);
      else {
        row.next = head.next;
        head.next = row;
      }
      this.#bytes += cost;
    }
    // A replacement may have grown the entry: the budget holds either way.
    // Oldest hash first (insertion order): drop whole chains until within budget.
    for (const [h, r] of this.#rows) {
      if (this.#bytes <= this.capacityBytes) break;
      this.#rows.delete(h);
      for (let x: Row | undefined = r; x !== undefined; x = x.next) this.#bytes -= costOf(x);
    }
  }

  /** Forgets everything (the tables got newer entries). */
  clear(): void {
    this.#rows.clear();
    this.#bytes = 0;
  }
}

function costOf(e: Entry): number {
  return e.key.length + e.value.length + entryOverheadBytes;
}
