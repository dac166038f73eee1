/**
 * Internal iterators over entries in internal-key order (user key ascending,
 * version descending), and the merging iterator that combines the memtables
 * and SSTables into one stream. Methods return a Promise only when they must
 * read a block, so the common case costs no microtask.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { compareKeys } from "./internal_key.ts";
import { encodeInternalKey, type Entry } from "./internal_key.ts";
import type { TableCache } from "./table_cache.ts";
import type { TableIterator } from "./table_reader.ts";
import type { FileMeta } from "./version_edit.ts";

/** The shape every source iterator has. */
export interface InternalIterator {
  /** True while positioned on an entry. */
  valid(): boolean;
  /** The current entry. Requires: valid(). The object stays unchanged after next(). */
  entry(): Entry;
  /** Moves to the first entry >= (key, version); key undefined = the first entry. */
  seek(key: Uint8Array | undefined, version?: number): void | Promise<void>;
  /** Moves to the next entry. Requires: valid(). */
  next(): void | Promise<void>;
  /** Releases resources (table references). */
  close(): void;
}

/** Orders two entries like their internal keys. */
export function compareEntry(a: Entry, b: Entry): number {
  const c = compareKeys(a.key, b.key);
  if (c !== 0) return c;
  return b.version - a.version;
}

/**
 * Merges children into one ordered stream. Children come newest source
 * first; equal (key, version) pairs surface in that order, so the first copy
 * seen is the one that shadows the rest.
 */
export class MergingIterator implements InternalIterator {
  #children: InternalIterator[];
  #heap: number[] = [];

  constructor(children: InternalIterator[]) {
    this.#children = children;
  }

  #less(i: number, j: number): boolean {
    const c = compareEntry(this.#children[i].entry(), this.#children[j].entry());
    return c < 0 || (c === 0 && i < j);
  }

  #siftDown(at: number): void {
    const h = this.#heap;
    for (;;) {
      const l = 2 * at + 1;
      if (l >= h.length) return;
      let m = l;
      if (l + 1 < h.length && this.#less(h[l + 1], h[l])) m = l + 1;
      if (!this.#less(h[m], h[at])) return;
      [h[m], h[at]] = [h[at], h[m]];
      at = m;
    }
  }

  #rebuild(): void {
    this.#heap = [];
    this.#children.forEach((c, i) => {
      if (c.valid()) this.#heap.push(i);
    });
    for (let i = (this.#heap.length >> 1) - 1; i >= 0; i--) this.#siftDown(i);
  }

  valid(): boolean {
    return this.#heap.length > 0;
  }

  entry(): Entry {
    assert(this.#heap.length > 0, "entry() on an exhausted iterator");
    return this.#children[this.#heap[0]].entry();
  }

  /** Which child (0 = newest source) the current entry comes from. */
  source(): number {
    return this.#heap[0];
  }

  async seek(key: Uint8Array | undefined, version?: number): Promise<void> {
    const pending: Promise<void>[] = [];
    for (const c of this.#children) {
      const p = c.seek(key, version);
      if (p !== undefined) pending.push(p);
    }
    if (pending.length > 0) await Promise.all(pending);
    this.#rebuild();
  }

  next(): void | Promise<void> {
    const top = this.#heap[0];
    const p = this.#children[top].next();
    if (p !== undefined) return p.then(() => this.#afterNext(top));
    this.#afterNext(top);
  }

  #afterNext(top: number): void {
    const h = this.#heap;
    if (!this.#children[top].valid()) {
      const last = h.pop()!;
      if (h.length === 0) return;
      h[0] = last;
    }
    this.#siftDown(0);
  }

  close(): void {
    for (const c of this.#children) c.close();
  }
}

/**
 * Concatenates the tables of one level L1+ (sorted, disjoint), opening each
 * through the table cache only when the iteration reaches it.
 */
export class LevelIterator implements InternalIterator {
  #files: readonly FileMeta[];
  #cache: TableCache;
  #fileIndex = 0;
  #it: TableIterator | undefined;

  constructor(files: readonly FileMeta[], cache: TableCache) {
    this.#files = files;
    this.#cache = cache;
  }

  valid(): boolean {
    return this.#it !== undefined && this.#it.valid();
  }

  entry(): Entry {
    return this.#it!.entry();
  }

  async #open(i: number): Promise<void> {
    this.#it?.close();
    this.#it = undefined;
    this.#fileIndex = i;
    if (i >= this.#files.length) return;
    const reader = await this.#cache.acquire(this.#files[i].number);
    try {
      this.#it = reader.iterator();
    } finally {
      reader.unref();
    }
  }

  async seek(key: Uint8Array | undefined, version = Number.MAX_SAFE_INTEGER): Promise<void> {
    let i = 0;
    if (key !== undefined) {
      const target = encodeInternalKey(key, version);
      let lo = 0;
      let hi = this.#files.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (compareKeys(this.#files[mid].largest, target) < 0) lo = mid + 1;
        else hi = mid;
      }
      i = lo;
    }
    await this.#open(i);
    if (this.#it === undefined) return;
    await this.#it.seek(key, version);
    await this.#skipEmpty();
  }

  async #skipEmpty(): Promise<void> {
    while (this.#it !== undefined && !this.#it.valid()) {
      await this.#open(this.#fileIndex + 1);
      if (this.#it !== undefined) await this.#it.seek(undefined);
    }
  }

  next(): void | Promise<void> {
    const p = this.#it!.next();
    if (p !== undefined) return p.then(() => this.#skipEmptyMaybe());
    return this.#skipEmptyMaybe();
  }

  #skipEmptyMaybe(): void | Promise<void> {
    if (this.#it !== undefined && !this.#it.valid()) return this.#skipEmpty();
  }

  close(): void {
    this.#it?.close();
    this.#it = undefined;
  }
}

/** A single table as an InternalIterator (for L0 files), opened on first seek. */
export class LazyTableIterator implements InternalIterator {
  #it: TableIterator | undefined;
  constructor(readonly file: FileMeta, readonly cache: TableCache) {}

  valid(): boolean {
    return this.#it !== undefined && this.#it.valid();
  }
  entry(): Entry {
    return this.#it!.entry();
  }
  async seek(key: Uint8Array | undefined, version?: number): Promise<void> {
    if (this.#it === undefined) {
      const reader = await this.cache.acquire(this.file.number);
      try {
        this.#it = reader.iterator();
      } finally {
        reader.unref();
      }
    }
    await this.#it.seek(key, version);
  }
  next(): void | Promise<void> {
    return this.#it!.next();
  }
  close(): void {
    this.#it?.close();
    this.#it = undefined;
  }
}
