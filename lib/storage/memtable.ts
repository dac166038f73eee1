/**
 * The memtable: the entries of recent writes in internal-key order (user key
 * ascending, version descending), with O(log n) insert and lookup and
 * ordered iteration. A write of an existing (key, version) replaces the
 * entry in place (a Raft replay re-applies entries with their original
 * versions). The entries themselves live in an EntryStore
 * (memtable_store.ts); this file orders them.
 *
 * Layout: a B+tree of key slots, one per distinct user key, and for each
 * slot a chain of its entries from the newest version down (an entry's next
 * older one is `older[entry]`). A new version of a key already present (the
 * common write: an update) is found through the newest-entry index (key hash
 * -> slot) and linked in front of its chain: the tree is not searched and
 * nothing in it moves. Measured, 1.5 million updates over 100,000 16-byte
 * keys: 1.6–1.9 µs each when every version was a tree entry (the descent and
 * the shift of half a leaf's summaries), 0.9–1.0 µs with the chains; a read
 * of the newest version 0.87 -> 0.6–0.77 µs.
 *
 * Why a B+tree and not a skiplist: each tree node keeps a summary of its
 * slots' keys in one contiguous array of numbers (the first 18 key bytes and
 * the key's length), so a lookup touches a handful of cache lines per level
 * instead of one scattered node per step, and it reads a key's bytes only
 * when two keys longer than 18 bytes share those bytes.
 *
 * Iterators survive concurrent inserts: a new key can shift slots within a
 * leaf or split it, so an iterator that sees the tree changed finds the slot
 * of the entry it stood on again (entries and slots are never removed)
 * before stepping. A version inserted in front of the entry an iterator
 * stands on is not seen by it: it is newer than any snapshot the iterator
 * reads at.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { emptyBytes } from "../common/bytes.ts";
import { type Entry, EntryKind, type EntryKindValue, type EntryRanges } from "./internal_key.ts";
import { EntryStore, type StoredEntry } from "./memtable_store.ts";
import { ambiguousEntry, NewestIndex } from "./newest_index.ts";

const maxNodeEntries = 64;
const entryOverheadBytes = 64;

/** Key bytes summarized per slot: three 48-bit words. */
const prefixWords = 3;
/** Key bytes the prefix words cover. */
const prefixBytes = 6 * prefixWords;
/** Numbers kept per slot in a node's summary array: the prefix words and the key's length. */
const stride = prefixWords + 1;

/** Numbers per slot in Memtable#slotInfo: the prefix words, the key's length, the newest version. */
const slotInfoStride = stride + 1;

/** `older` of an entry that is the oldest of its key. */
const noEntry = -1;
/** getMany's mark for a key whose hash two keys share: its slot comes from the tree. */
const lookInTree = -2;

/**
 * Key bytes [from + 6w, from + 6w + 6) as a 48-bit number, zero-padded past
 * `length`. If the prefixes of two keys differ they order the keys (a zero
 * pad sorts like "shorter"); only equal prefixes need more.
 */
function prefixWord(k: Uint8Array, from: number, length: number, w: number): number {
  let p = 0;
  const end = 6 * w + 6;
  for (let i = 6 * w; i < end; i++) p = p * 256 + (i < length ? k[from + i] : 0);
  return p;
}

/**
 * FNV-1a over the key's bytes: the newest-entry index's hash, cut to 30 bits
 * so it stays a small integer in V8 (a larger one is a heap number: an
 * allocation per lookup and a slower Map). Exported for tests.
 */
export function keyHash(key: Uint8Array, from = 0, length = key.length): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < length; i++) h = Math.imul(h ^ key[from + i], 0x01000193);
  return h & 0x3fff_ffff;
}

/** Slots a node holds at most: one more than `maxNodeEntries`, just before it splits. */
const nodeCapacity = maxNodeEntries + 1;

/**
 * A leaf: sorted slots, their summaries (`stride` numbers each), the next
 * leaf. Fixed-size typed arrays: a JavaScript array grown by pushes was
 * copied on every growth, and each copy was promoted by the next scavenge.
 */
class Leaf {
  /** Slots in use. */
  n = 0;
  slots = new Int32Array(nodeCapacity);
  px = new Float64Array(nodeCapacity * stride);
  next: Leaf | null = null;
}

/** An inner node: children and the first slot of each child, with its summary. */
class Inner {
  /** Children in use. */
  n = 0;
  children: (Leaf | Inner)[] = [];
  slots = new Int32Array(nodeCapacity);
  px = new Float64Array(nodeCapacity * stride);
}

/** A search target: a key as `length` bytes at `from` of `key`, with its summary words. */
interface Target {
  key: Uint8Array;
  from: number;
  length: number;
  w0: number;
  w1: number;
  w2: number;
}

function target(key: Uint8Array, from: number, length: number): Target {
  return {
    key,
    from,
    length,
    w0: prefixWord(key, from, length, 0),
    w1: prefixWord(key, from, length, 1),
    w2: prefixWord(key, from, length, 2),
  };
}

/** Opens a gap at `i` in a node's first `n` slots (slots and summaries). */
function openGap(slots: Int32Array, px: Float64Array, n: number, i: number): void {
  if (i === n) return;
  slots.copyWithin(i + 1, i, n);
  px.copyWithin((i + 1) * stride, i * stride, n * stride);
}

/** Writes `slot` with the target's summary at `i`. */
function writeAt(slots: Int32Array, px: Float64Array, i: number, slot: number, t: Target): void {
  slots[i] = slot;
  const at = i * stride;
  px[at] = t.w0;
  px[at + 1] = t.w1;
  px[at + 2] = t.w2;
  px[at + 3] = t.length;
}

/** Copies the summary of slot `from` of `src` to slot `to` of `dst`. */
function copySummary(dst: Float64Array, to: number, src: Float64Array, from: number): void {
  for (let w = 0; w < stride; w++) dst[to * stride + w] = src[from * stride + w];
}

function grownInt32(a: Int32Array, atLeast: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(Math.max(2 * a.length, atLeast));
  b.set(a);
  return b;
}

function grownFloat64(a: Float64Array, atLeast: number): Float64Array<ArrayBuffer> {
  const b = new Float64Array(Math.max(2 * a.length, atLeast));
  b.set(a);
  return b;
}

/**
 * A place in the table: the leaf and slot position, and the entry there
 * (noEntry: past the end). An iterator keeps one and moves it in place.
 */
interface Position {
  leaf: Leaf;
  index: number;
  entry: number;
}

/** Sorted in-memory table of recent writes. */
export class Memtable {
  readonly #store = new EntryStore();
  #root: Leaf | Inner = new Leaf();
  #first: Leaf;
  /** The newest entry of each slot, by slot. */
  #head = new Int32Array(256);
  /**
   * Per slot: its key's summary words and length (as in the tree's nodes)
   * and its newest entry's version, so an update touches this one array
   * instead of the chain head's columns and key bytes.
   */
  #slotInfo = new Float64Array(256 * slotInfoStride);
  /** The next older entry of the same key, by entry (noEntry for the oldest). */
  #older = new Int32Array(256);
  #slots = 0;
  #count = 0;
  /**
   * The slot of each key by a 30-bit hash of its bytes; `ambiguousEntry`
   * when two keys share the hash (those keys are found through the tree).
   */
  #latest = new NewestIndex();
  #bytes = 0;
  #maxVersion = 0;
  /** Bumped whenever slots move in the tree (iterators then find their slot again). */
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

  /** Inserts or replaces the entry (key, version); the bytes are copied. */
  put(
    key: Uint8Array,
    version: number,
    kind: EntryKindValue,
    value: Uint8Array,
    expiresAtMs: number,
  ): void {
    this.putFrom(key, 0, key.length, value, 0, value.length, version, kind, expiresAtMs);
  }

  /**
   * `put` with the key and value given as ranges of larger buffers (a
   * write-ahead log record), so the caller makes no views; the bytes are copied.
   */
  putFrom(
    keySource: Uint8Array,
    keyFrom: number,
    keyLength: number,
    valueSource: Uint8Array,
    valueFrom: number,
    valueLength: number,
    version: number,
    kind: EntryKindValue,
    expiresAtMs: number,
  ): void {
    const store = this.#store;
    const id = store.add(keyLength, valueLength, version, kind, expiresAtMs);
    store.copyKey(id, keySource, keyFrom);
    store.copyValue(id, valueSource, valueFrom);
    this.#bytes += keyLength + valueLength;
    if (version > this.#maxVersion) this.#maxVersion = version;
    if (id >= this.#older.length) {
      this.#older = grownInt32(this.#older, id + 1);
    }
    const key = store.slabFor(id);
    const from = store.keyAt[id];
    const hash = keyHash(key, from, keyLength);
    // An update: the index names the key's slot (when no other key shares its hash).
    const known = this.#latest.get(hash);
    if (
      known !== undefined && known !== ambiguousEntry &&
      this.#slotHasKey(known, key, from, keyLength)
    ) {
      this.#addVersion(known, id, version);
      return;
    }
    const t = target(key, from, keyLength);
    if (known !== undefined) {
      // Another key has this hash: the tree tells whether this one is present.
      const p = this.#find(t);
      if (p.entry !== noEntry && this.#keyIs(p.leaf.slots[p.index], t)) {
        this.#addVersion(p.leaf.slots[p.index], id, version);
        return;
      }
    }
    // A new key: a new slot in the tree.
    const slot = this.#slots++;
    if (slot >= this.#head.length) this.#head = grownInt32(this.#head, slot + 1);
    this.#head[slot] = id;
    if ((slot + 1) * slotInfoStride > this.#slotInfo.length) {
      this.#slotInfo = grownFloat64(this.#slotInfo, (slot + 1) * slotInfoStride);
    }
    const info = this.#slotInfo;
    const at = slot * slotInfoStride;
    info[at] = t.w0;
    info[at + 1] = t.w1;
    info[at + 2] = t.w2;
    info[at + 3] = keyLength;
    info[at + 4] = version;
    this.#older[id] = noEntry;
    this.#count++;
    this.#bytes += entryOverheadBytes;
    if (known === undefined) this.#latest.set(hash, slot);
    else if (known !== ambiguousEntry) this.#latest.set(hash, ambiguousEntry);
    const split = this.#insert(this.#root, t, slot);
    if (split !== undefined) {
      const root = new Inner();
      for (const child of [this.#root, split]) {
        root.children.push(child);
        root.slots[root.n] = child.slots[0];
        copySummary(root.px, root.n, child.px, 0);
        root.n++;
      }
      this.#root = root;
    }
    this.modCount++;
  }

  /**
   * Links entry `id` (the last added) into the chain of `slot` by version,
   * or makes it replace the entry of the same version.
   */
  #addVersion(slot: number, id: number, version: number): void {
    const store = this.#store;
    const older = this.#older;
    const head = this.#head[slot];
    const newestAt = slot * slotInfoStride + 4;
    if (version > this.#slotInfo[newestAt]) {
      older[id] = head;
      this.#head[slot] = id;
      this.#slotInfo[newestAt] = version;
    } else {
      let prev = noEntry;
      let at = head;
      while (at !== noEntry && store.version[at] > version) {
        prev = at;
        at = older[at];
      }
      if (at !== noEntry && store.version[at] === version) {
        // In place: the chain and the tree keep naming the existing entry.
        store.replaceWithLast(at, id);
        return;
      }
      older[id] = at;
      if (prev === noEntry) {
        this.#head[slot] = id;
        this.#slotInfo[newestAt] = version;
      } else older[prev] = id;
    }
    this.#count++;
    this.#bytes += entryOverheadBytes;
  }

  /**
   * Whether `slot` holds the key at `key[from, from + length)`: compared
   * with the slot's summary first (one dense array, where the chain head's
   * columns and key bytes were several cache misses on every update), and
   * beyond the summarized bytes with the head's key.
   */
  #slotHasKey(slot: number, key: Uint8Array, from: number, length: number): boolean {
    const info = this.#slotInfo;
    const at = slot * slotInfoStride;
    if (info[at + 3] !== length || info[at] !== prefixWord(key, from, length, 0)) return false;
    if (length > 6 && info[at + 1] !== prefixWord(key, from, length, 1)) return false;
    if (length > 12 && info[at + 2] !== prefixWord(key, from, length, 2)) return false;
    return length <= prefixBytes ||
      this.#store.compareKey(this.#head[slot], key, from, length, prefixBytes) === 0;
  }

  /** Whether `slot` has the target's key. */
  #keyIs(slot: number, t: Target): boolean {
    return this.#store.compareKey(this.#head[slot], t.key, t.from, t.length, 0) === 0;
  }

  /** Compares slot `i` of a node with the target key: <0 when the slot's key sorts first. */
  #cmpAt(px: Float64Array, slots: Int32Array, i: number, t: Target): number {
    const at = i * stride;
    let c = px[at] - t.w0;
    if (c !== 0) return c;
    c = px[at + 1] - t.w1;
    if (c !== 0) return c;
    c = px[at + 2] - t.w2;
    if (c !== 0) return c;
    const length = px[at + 3];
    if (length > prefixBytes && t.length > prefixBytes) {
      return this.#store.compareKey(
        this.#head[slots[i]],
        t.key,
        t.from,
        t.length,
        prefixBytes,
      );
    }
    // Equal padded prefixes and one key within them: the shorter is a prefix of the longer.
    return length - t.length;
  }

  /** First index in [0, n) whose slot's key is >= the target (n when none). */
  #lowerBound(px: Float64Array, slots: Int32Array, n: number, t: Target): number {
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#cmpAt(px, slots, mid, t) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index of the child of `n` that may hold the target. */
  #childIndex(n: Inner, t: Target): number {
    const i = this.#lowerBound(n.px, n.slots, n.n, t);
    if (i < n.n && this.#cmpAt(n.px, n.slots, i, t) === 0) return i;
    return i === 0 ? 0 : i - 1;
  }

  /** The first slot whose key is >= the target, with its newest entry (noEntry: none). */
  #find(t: Target): Position {
    let n = this.#root;
    while (n instanceof Inner) n = n.children[this.#childIndex(n, t)];
    let leaf = n;
    let index = this.#lowerBound(leaf.px, leaf.slots, leaf.n, t);
    if (index >= leaf.n && leaf.next !== null) {
      leaf = leaf.next;
      index = 0;
    }
    const entry = index < leaf.n ? this.#head[leaf.slots[index]] : noEntry;
    return { leaf, index, entry };
  }

  /** Inserts `slot` (the target) below `n`; returns a new right sibling when `n` split. */
  #insert(n: Leaf | Inner, t: Target, slot: number): Leaf | Inner | undefined {
    if (n instanceof Leaf) {
      const i = this.#lowerBound(n.px, n.slots, n.n, t);
      openGap(n.slots, n.px, n.n, i);
      writeAt(n.slots, n.px, i, slot, t);
      n.n++;
      if (n.n <= maxNodeEntries) return undefined;
      const right = new Leaf();
      const half = n.n >>> 1;
      right.slots.set(n.slots.subarray(half, n.n));
      right.px.set(n.px.subarray(half * stride, n.n * stride));
      right.n = n.n - half;
      n.n = half;
      right.next = n.next;
      n.next = right;
      return right;
    }
    const ci = this.#childIndex(n, t);
    const child = n.children[ci];
    const split = this.#insert(child, t, slot);
    // The child's first slot may have changed (an insert before everything).
    n.slots[ci] = child.slots[0];
    copySummary(n.px, ci, child.px, 0);
    if (split === undefined) return undefined;
    n.children.splice(ci + 1, 0, split);
    openGap(n.slots, n.px, n.n, ci + 1);
    n.slots[ci + 1] = split.slots[0];
    copySummary(n.px, ci + 1, split.px, 0);
    n.n++;
    if (n.n <= maxNodeEntries) return undefined;
    const right = new Inner();
    const half = n.n >>> 1;
    right.children = n.children.splice(half);
    right.slots.set(n.slots.subarray(half, n.n));
    right.px.set(n.px.subarray(half * stride, n.n * stride));
    right.n = n.n - half;
    n.n = half;
    return right;
  }

  /** The newest entry of `slot` with version <= atVersion, or noEntry. */
  #visibleIn(slot: number, atVersion: number): number {
    const version = this.#store.version;
    let at = this.#head[slot];
    while (at !== noEntry && version[at] > atVersion) at = this.#older[at];
    return at;
  }

  /**
   * @internal The first entry >= (key, version) in internal-key order: in the
   * key's own chain if it has a version <= `version`, else the next key's newest.
   */
  seekPosition(key: Uint8Array, version: number): Position {
    const t = target(key, 0, key.length);
    const p = this.#find(t);
    if (p.entry === noEntry || !this.#keyIs(p.leaf.slots[p.index], t)) return p;
    const visible = this.#visibleIn(p.leaf.slots[p.index], version);
    if (visible !== noEntry) p.entry = visible;
    else this.#nextSlot(p);
    return p;
  }

  /** Moves `p` to the newest entry of the slot after it (entry noEntry past the end). */
  #nextSlot(p: Position): void {
    let leaf = p.leaf;
    let i = p.index + 1;
    while (i >= leaf.n) {
      if (leaf.next === null) {
        p.leaf = leaf;
        p.index = leaf.n;
        p.entry = noEntry;
        return;
      }
      leaf = leaf.next;
      i = 0;
    }
    p.leaf = leaf;
    p.index = i;
    p.entry = this.#head[leaf.slots[i]];
  }

  /**
   * @internal Moves `p` to the next entry: the same key's older version, else
   * the next key. True when it moved to another key.
   */
  step(p: Position): boolean {
    const older = this.#older[p.entry];
    if (older !== noEntry) {
      p.entry = older;
      return false;
    }
    this.#nextSlot(p);
    return true;
  }

  /** @internal Moves `p` to the newest entry of the next key, past the rest of this key's. */
  stepKey(p: Position): void {
    this.#nextSlot(p);
  }

  /** @internal The version of entry `id`. */
  versionAt(id: number): number {
    return this.#store.version[id];
  }

  /** @internal Where the slot of entry `id` sits now (an iterator finding its place again). */
  positionOf(id: number): Position {
    const store = this.#store;
    const t = target(store.slabFor(id), store.keyAt[id], store.keyLength[id]);
    const p = this.#find(t);
    assert(p.entry !== noEntry && this.#keyIs(p.leaf.slots[p.index], t), "entry's slot found");
    return { leaf: p.leaf, index: p.index, entry: id };
  }

  /** @internal The first entry of the table (entry noEntry when empty). */
  firstPosition(): Position {
    const leaf = this.#first;
    return { leaf, index: 0, entry: leaf.n > 0 ? this.#head[leaf.slots[0]] : noEntry };
  }

  /** @internal A reader's snapshot of entry `id`. */
  entryAt(id: number): StoredEntry {
    return this.#store.entry(id);
  }

  /** @internal Points `out` at entry `id`'s bytes and fields (no object or view made). */
  rangesAt(id: number, out: EntryRanges): EntryRanges {
    const store = this.#store;
    out.bytes = store.slabFor(id);
    out.keyFrom = store.keyAt[id];
    out.keyLength = store.keyLength[id];
    out.valueFrom = out.keyFrom + out.keyLength;
    out.valueLength = store.valueLength[id];
    out.version = store.version[id];
    out.kind = store.kind[id] as EntryKindValue;
    out.expiresAtMs = store.expiresAtMs[id];
    return out;
  }

  /**
   * The newest entry of `key` with version <= atVersion (tombstones included),
   * or undefined.
   */
  get(key: Uint8Array, atVersion: number): Entry | undefined {
    if (this.#count === 0) return undefined;
    const store = this.#store;
    // The common read: the key's slot is one hash lookup away.
    const known = this.#latest.get(keyHash(key));
    if (known === undefined) return undefined;
    let slot = known;
    if (known === ambiguousEntry) {
      const t = target(key, 0, key.length);
      const p = this.#find(t);
      if (p.entry === noEntry || !this.#keyIs(p.leaf.slots[p.index], t)) return undefined;
      slot = p.leaf.slots[p.index];
    } else if (store.compareKey(this.#head[slot], key, 0, key.length, 0) !== 0) {
      // The only key with this hash is another one.
      return undefined;
    }
    const at = this.#visibleIn(slot, atVersion);
    return at === noEntry ? undefined : store.entry(at);
  }

  /**
   * `get` for many keys at once: `out[i]` is the entry of `keys[i]` (the
   * newest with version <= atVersion, tombstones included) or undefined.
   * A lookup is a chain of cache misses (index slot, chain head, the entry's
   * columns, its key bytes), each needing the one before. One key after
   * another, they add up; here each step is taken for every key before the
   * next step, so the misses of different keys overlap in the CPU.
   */
  getMany(keys: Uint8Array[], atVersion: number, out: (Entry | undefined)[]): void {
    const n = keys.length;
    out.length = n;
    if (this.#count === 0) {
      out.fill(undefined);
      return;
    }
    const store = this.#store;
    if (this.#batchIds.length < n) this.#batchIds = new Int32Array(n);
    const ids = this.#batchIds;
    // 1. Every key's hash (no memory beyond the keys), then every index slot.
    for (let i = 0; i < n; i++) ids[i] = keyHash(keys[i]);
    for (let i = 0; i < n; i++) {
      const known = this.#latest.get(ids[i]);
      ids[i] = known === undefined ? noEntry : known === ambiguousEntry ? lookInTree : known;
    }
    // 2. The head of every chain (keys sharing a hash: a tree search).
    for (let i = 0; i < n; i++) {
      const slot = ids[i];
      if (slot >= 0) ids[i] = this.#head[slot];
      else if (slot === lookInTree) {
        const t = target(keys[i], 0, keys[i].length);
        const p = this.#find(t);
        const found = p.entry !== noEntry && this.#keyIs(p.leaf.slots[p.index], t);
        ids[i] = found ? p.entry : noEntry;
      }
    }
    // 3. Touch each head's columns, then its key's and value's bytes.
    store.touch(ids, n);
    // 4. Compare the keys, walk to the visible version.
    for (let i = 0; i < n; i++) {
      const id = ids[i];
      if (id === noEntry || store.compareKey(id, keys[i], 0, keys[i].length, 0) !== 0) {
        out[i] = undefined;
        continue;
      }
      let at = id;
      while (at !== noEntry && store.version[at] > atVersion) at = this.#older[at];
      out[i] = at === noEntry ? undefined : store.entry(at);
    }
  }

  /**
   * Loads into the CPU cache what putFrom will read for the keys of a write
   * group before any of them is put: entry i's key is `lengths[i]` bytes at
   * `positions[2 * i]` of `source` (the engine's WAL-record positions, key
   * and value offsets in pairs). Like getMany, each step is taken for every
   * key before the next (hashes, then index slots, then the slots' summaries),
   * so the cache misses of different keys overlap. An update of a random key
   * among 100,000 spent about 0.7 of its 0.9–1.0 µs waiting for memory.
   */
  warm(source: Uint8Array, positions: ArrayLike<number>, lengths: Int32Array, n: number): void {
    if (this.#count === 0) return;
    if (this.#batchIds.length < n) this.#batchIds = new Int32Array(n);
    const ids = this.#batchIds;
    for (let i = 0; i < n; i++) ids[i] = keyHash(source, positions[2 * i], lengths[i]);
    for (let i = 0; i < n; i++) {
      const known = this.#latest.get(ids[i]);
      ids[i] = known === undefined ? noEntry : known;
    }
    const info = this.#slotInfo;
    const head = this.#head;
    let touched = 0;
    for (let i = 0; i < n; i++) {
      const slot = ids[i];
      // A slot's summary may straddle two cache lines: its first and last numbers.
      const at = slot * slotInfoStride;
      if (slot >= 0) touched ^= info[at] + info[at + slotInfoStride - 1] + head[slot];
    }
    this.touched = touched;
  }

  /** Written by warm so its cache-warming reads are not optimized away. */
  touched = 0;
  /** getMany's and warm's scratch: slots, then chain heads. */
  #batchIds = new Int32Array(64);

  /**
   * An iterator over every entry in internal-key order; with `horizon`, of
   * each key only the versions above it and the newest at or below it (what
   * a reader may still ask for, see CompactionFilter): a flush then never
   * even visits the rest. The horizon applies from where a seek lands, so a
   * full pass starts with `seek(undefined)`.
   */
  iterator(horizon = -1): MemtableIterator {
    return new MemtableIterator(this, horizon);
  }
}

/** Forward iterator over a memtable (an InternalIterator, see iterator.ts). */
export class MemtableIterator {
  #p: Position | undefined;
  #mod = -1;
  #current: StoredEntry | undefined;
  #newKey = true;
  #ranges: EntryRanges = {
    bytes: emptyBytes,
    keyFrom: 0,
    keyLength: 0,
    valueFrom: 0,
    valueLength: 0,
    version: 0,
    kind: EntryKind.put,
    expiresAtMs: 0,
  };

  constructor(readonly table: Memtable, readonly horizon = -1) {}

  #at(p: Position, newKey: boolean): void {
    this.#p = p.entry === noEntry ? undefined : p;
    this.#current = undefined;
    this.#newKey = newKey;
  }

  valid(): boolean {
    return this.#p !== undefined;
  }

  entry(): Entry {
    const p = this.#p;
    assert(p !== undefined, "entry() on an exhausted iterator");
    let e = this.#current;
    if (e === undefined) e = this.#current = this.table.entryAt(p.entry);
    return e;
  }

  /**
   * The current entry as ranges of the memtable's bytes, in one object that
   * the next call reuses (a flush writes it at once; see TableWriter.addRanges).
   */
  ranges(): EntryRanges {
    const p = this.#p;
    assert(p !== undefined, "ranges() on an exhausted iterator");
    return this.table.rangesAt(p.entry, this.#ranges);
  }

  /** Whether the current entry is the first this iterator shows of its key. */
  atNewKey(): boolean {
    return this.#newKey;
  }

  seek(key: Uint8Array | undefined, version = Number.MAX_SAFE_INTEGER): void {
    this.#mod = this.table.modCount;
    this.#at(
      key === undefined ? this.table.firstPosition() : this.table.seekPosition(key, version),
      true,
    );
  }

  next(): void {
    let p = this.#p;
    assert(p !== undefined, "next() on an exhausted iterator");
    if (this.#mod !== this.table.modCount) {
      // A new key may have moved our slot: find it again (slots are never removed).
      this.#mod = this.table.modCount;
      p = this.table.positionOf(p.entry);
    }
    let newKey = true;
    if (this.horizon >= 0 && this.table.versionAt(p.entry) <= this.horizon) this.table.stepKey(p);
    else newKey = this.table.step(p);
    this.#at(p, newKey);
  }

  close(): void {}
}
