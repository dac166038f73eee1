/**
 * The memtable: a B+tree of entries ordered like internal keys (user key
 * ascending, version descending), O(log n) insert and lookup, ordered
 * iteration through linked leaves. A write of an existing (key, version)
 * replaces the entry in place (a Raft replay re-applies entries with their
 * original versions).
 *
 * Why a B+tree and not a skiplist: each tree node keeps the first 12 key
 * bytes of its entries as numbers in contiguous arrays, so a lookup touches a
 * handful of cache lines per level instead of one scattered node per step.
 *
 * Iterators survive concurrent inserts: an insert can shift entries within a
 * leaf or split it, so an iterator that sees the tree changed re-seeks to the
 * entry it stood on (entries are never removed) before stepping.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { compareKeys, type Entry, type EntryKindValue } from "./internal_key.ts";

const maxNodeEntries = 64;
const entryOverheadBytes = 64;

/**
 * The first 12 key bytes as two 48-bit numbers, zero-padded. If the prefixes
 * of two keys differ they order the keys (a zero pad sorts like "shorter");
 * only equal prefixes need the byte comparison.
 */
function prefixHi(k: Uint8Array): number {
  let p = 0;
  for (let i = 0; i < 6; i++) p = p * 256 + (i < k.length ? k[i] : 0);
  return p;
}

function prefixLo(k: Uint8Array): number {
  let p = 0;
  for (let i = 6; i < 12; i++) p = p * 256 + (i < k.length ? k[i] : 0);
  return p;
}

/** A stored entry (handed to readers as is: no copy per read). */
class Item implements Entry {
  constructor(
    public key: Uint8Array,
    public version: number,
    public kind: EntryKindValue,
    public value: Uint8Array,
    public expiresAtMs: number,
  ) {}
}

/** A leaf: sorted items, their key prefixes, and the next leaf in order. */
class Leaf {
  items: Item[] = [];
  p0: number[] = [];
  p1: number[] = [];
  next: Leaf | null = null;
}

/** An inner node: children and the first item of each child. */
class Inner {
  children: (Leaf | Inner)[] = [];
  firsts: Item[] = [];
  p0: number[] = [];
  p1: number[] = [];
}

/** A search target with its prefixes computed once. */
interface Target {
  key: Uint8Array;
  version: number;
  p0: number;
  p1: number;
}

/** Compares item `i` of a node with the target: <0 when the item sorts first. */
function cmpAt(
  p0: number[],
  p1: number[],
  items: Item[],
  i: number,
  t: Target,
): number {
  let c = p0[i] - t.p0;
  if (c !== 0) return c;
  c = p1[i] - t.p1;
  if (c !== 0) return c;
  const it = items[i];
  c = compareKeys(it.key, t.key);
  if (c !== 0) return c;
  return t.version - it.version;
}

/** First index whose item is >= target (length when none). */
function lowerBound(p0: number[], p1: number[], items: Item[], t: Target): number {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cmpAt(p0, p1, items, mid, t) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the child of `n` that may hold the target. */
function childIndex(n: Inner, t: Target): number {
  const i = lowerBound(n.p0, n.p1, n.firsts, t);
  if (i < n.firsts.length && cmpAt(n.p0, n.p1, n.firsts, i, t) === 0) return i;
  return i === 0 ? 0 : i - 1;
}

/** Sorted in-memory table of recent writes. */
export class Memtable {
  #root: Leaf | Inner = new Leaf();
  #first: Leaf;
  #count = 0;
  #bytes = 0;
  #maxVersion = 0;
  /** Bumped by every insert, which may shift items (iterators re-seek when it changes). */
  modCount = 0;
  /** Largest applied index carried by a batch in this memtable (-1 = none). */
  maxAppliedIndex = -1;

  /** `walNumber`: first WAL segment whose records belong to this memtable. */
  constructor(readonly walNumber: number) {
    this.#first = this.#root as Leaf;
  }

  /** Entries stored. */
  get count(): number {
    return this.#count;
  }

  /** Approximate bytes used (keys, values and per-entry overhead). */
  get approximateBytes(): number {
    return this.#bytes;
  }

  /** Highest version stored. */
  get maxVersion(): number {
    return this.#maxVersion;
  }

  /** Inserts or replaces the entry (key, version). */
  put(
    key: Uint8Array,
    version: number,
    kind: EntryKindValue,
    value: Uint8Array,
    expiresAtMs: number,
  ): void {
    const t: Target = { key, version, p0: prefixHi(key), p1: prefixLo(key) };
    const split = this.#insert(this.#root, t, kind, value, expiresAtMs);
    if (split !== undefined) {
      const root = new Inner();
      for (const child of [this.#root, split]) {
        const first = child instanceof Leaf ? child.items[0] : child.firsts[0];
        root.children.push(child);
        root.firsts.push(first);
        root.p0.push(child.p0[0]);
        root.p1.push(child.p1[0]);
      }
      this.#root = root;
    }
    if (version > this.#maxVersion) this.#maxVersion = version;
  }

  /** Inserts below `n`; returns a new right sibling when `n` split. */
  #insert(
    n: Leaf | Inner,
    t: Target,
    kind: EntryKindValue,
    value: Uint8Array,
    expiresAtMs: number,
  ): Leaf | Inner | undefined {
    if (n instanceof Leaf) {
      const i = lowerBound(n.p0, n.p1, n.items, t);
      if (i < n.items.length && cmpAt(n.p0, n.p1, n.items, i, t) === 0) {
        const it = n.items[i];
        this.#bytes += value.length - it.value.length;
        it.kind = kind;
        it.value = value;
        it.expiresAtMs = expiresAtMs;
        return undefined;
      }
      n.items.splice(i, 0, new Item(t.key, t.version, kind, value, expiresAtMs));
      n.p0.splice(i, 0, t.p0);
      n.p1.splice(i, 0, t.p1);
      this.#count++;
      this.#bytes += t.key.length + value.length + entryOverheadBytes;
      this.modCount++;
      if (n.items.length <= maxNodeEntries) return undefined;
      const right = new Leaf();
      const half = n.items.length >>> 1;
      right.items = n.items.splice(half);
      right.p0 = n.p0.splice(half);
      right.p1 = n.p1.splice(half);
      right.next = n.next;
      n.next = right;
      return right;
    }
    const ci = childIndex(n, t);
    const child = n.children[ci];
    const split = this.#insert(child, t, kind, value, expiresAtMs);
    // The child's first item may have changed (an insert before everything).
    n.firsts[ci] = child instanceof Leaf ? child.items[0] : child.firsts[0];
    n.p0[ci] = child.p0[0];
    n.p1[ci] = child.p1[0];
    if (split === undefined) return undefined;
    n.children.splice(ci + 1, 0, split);
    n.firsts.splice(ci + 1, 0, split instanceof Leaf ? split.items[0] : split.firsts[0]);
    n.p0.splice(ci + 1, 0, split.p0[0]);
    n.p1.splice(ci + 1, 0, split.p1[0]);
    if (n.children.length <= maxNodeEntries) return undefined;
    const right = new Inner();
    const half = n.children.length >>> 1;
    right.children = n.children.splice(half);
    right.firsts = n.firsts.splice(half);
    right.p0 = n.p0.splice(half);
    right.p1 = n.p1.splice(half);
    return right;
  }

  /** @internal The leaf and index of the first item >= (key, version). */
  seekPosition(key: Uint8Array, version: number): { leaf: Leaf; index: number } {
    const t: Target = { key, version, p0: prefixHi(key), p1: prefixLo(key) };
    let n = this.#root;
    while (n instanceof Inner) n = n.children[childIndex(n, t)];
    return { leaf: n, index: lowerBound(n.p0, n.p1, n.items, t) };
  }

  /**
   * The newest entry of `key` with version <= atVersion (tombstones included),
   * or undefined.
   */
  get(key: Uint8Array, atVersion: number): Entry | undefined {
    if (this.#count === 0) return undefined;
    let { leaf, index } = this.seekPosition(key, atVersion);
    if (index >= leaf.items.length) {
      if (leaf.next === null) return undefined;
      leaf = leaf.next;
      index = 0;
    }
    const it = leaf.items[index];
    return compareKeys(it.key, key) === 0 ? it : undefined;
  }

  /** An iterator over all entries in internal-key order. */
  iterator(): MemtableIterator {
    return new MemtableIterator(this);
  }

  /** @internal The leftmost leaf. */
  firstLeaf(): Leaf {
    return this.#first;
  }
}

/** Forward iterator over a memtable (an InternalIterator, see iterator.ts). */
export class MemtableIterator {
  #leaf: Leaf | null = null;
  #index = 0;
  #mod = -1;
  #current: Item | undefined;

  constructor(readonly table: Memtable) {}

  #normalize(): void {
    while (this.#leaf !== null && this.#index >= this.#leaf.items.length) {
      this.#leaf = this.#leaf.next;
      this.#index = 0;
    }
    this.#current = this.#leaf === null ? undefined : this.#leaf.items[this.#index];
  }

  valid(): boolean {
    return this.#leaf !== null;
  }

  entry(): Entry {
    assert(this.#current !== undefined, "entry() on an exhausted iterator");
    return this.#current;
  }

  seek(key: Uint8Array | undefined, version = Number.MAX_SAFE_INTEGER): void {
    this.#mod = this.table.modCount;
    if (key === undefined) {
      this.#leaf = this.table.firstLeaf();
      this.#index = 0;
    } else {
      const p = this.table.seekPosition(key, version);
      this.#leaf = p.leaf;
      this.#index = p.index;
    }
    this.#normalize();
  }

  next(): void {
    assert(this.#leaf !== null, "next() on an exhausted iterator");
    if (this.#mod !== this.table.modCount) {
      // An insert may have moved our item: find it again (items are never removed).
      const cur = this.#current!;
      this.seek(cur.key, cur.version);
    }
    this.#index++;
    this.#normalize();
  }

  close(): void {}
}
