/**
 * Where a memtable keeps its entries: key and value bytes copied into large
 * byte slabs, the other fields in typed-array columns, an entry named by its
 * index. Why not an object per entry: a memtable holds hundreds of
 * thousands of entries that all outlive a young-generation collection, and
 * every object among them (the entry, a view of its key, a view of its
 * value) was copied by a scavenge and then traced by every full collection.
 * A slab is one object per up to a MiB of entries, a column one per table.
 *
 * Bytes are never overwritten or freed before the whole memtable is dropped,
 * so a view handed to a reader stays valid.
 *
 * @module
 */

import { copyRange, emptyBytes } from "../common/bytes.ts";
import type { Entry, EntryKindValue } from "./internal_key.ts";

const firstSlabBytes = 4096;
const maxSlabBytes = 1 << 20;
/**
 * An entry larger than this gets a slab of its own, exactly its size: in the
 * shared slab it would end that slab early (up to 1 MiB wasted per entry of
 * 342 KiB to 1 MiB), and the memtable would hold up to twice what it charges.
 */
const ownSlabBytes = maxSlabBytes / 4;
const firstCapacity = 256;

function grownFloat64(a: Float64Array, capacity: number): Float64Array<ArrayBuffer> {
  const b = new Float64Array(capacity);
  b.set(a);
  return b;
}

function grownInt32(a: Int32Array, capacity: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(capacity);
  b.set(a);
  return b;
}

/** The entries of one memtable, by index (see the module comment). */
export class EntryStore {
  /** Byte slabs; an entry's key starts at `keyAt` of slab `slabOf`, its value follows the key. */
  readonly slabs: Uint8Array[] = [];
  slabOf = new Int32Array(firstCapacity);
  keyAt = new Int32Array(firstCapacity);
  keyLength = new Int32Array(firstCapacity);
  valueLength = new Int32Array(firstCapacity);
  version = new Float64Array(firstCapacity);
  expiresAtMs = new Float64Array(firstCapacity);
  kind = new Uint8Array(firstCapacity);
  /** Entries stored (the next index). */
  count = 0;
  #slab: Uint8Array = emptyBytes;
  /** Index of #slab in `slabs` (-1: none yet); large entries' own slabs come after it. */
  #slabIndex = -1;
  #slabUsed = 0;
  #nextSlabBytes = firstSlabBytes;

  /**
   * Adds an entry with room for its key and value (filled by `copyKey` and
   * `copyValue`); returns its index.
   */
  add(
    keyLength: number,
    valueLength: number,
    version: number,
    kind: EntryKindValue,
    expiresAtMs: number,
  ): number {
    const id = this.count;
    if (id === this.kind.length) this.#grow();
    const need = keyLength + valueLength;
    if (need > ownSlabBytes) {
      this.slabs.push(new Uint8Array(need));
      this.slabOf[id] = this.slabs.length - 1;
      this.keyAt[id] = 0;
    } else {
      // The first entry always gets a slab, even an empty one: its key view needs one.
      if (this.#slabIndex < 0 || this.#slabUsed + need > this.#slab.length) this.#newSlab(need);
      this.slabOf[id] = this.#slabIndex;
      this.keyAt[id] = this.#slabUsed;
      this.#slabUsed += need;
    }
    this.keyLength[id] = keyLength;
    this.valueLength[id] = valueLength;
    this.version[id] = version;
    this.expiresAtMs[id] = expiresAtMs;
    this.kind[id] = kind;
    this.count = id + 1;
    return id;
  }

  /** Copies entry `id`'s key from `source` at `from`. */
  copyKey(id: number, source: Uint8Array, from: number): void {
    copyRange(this.slabFor(id), this.keyAt[id], source, from, this.keyLength[id]);
  }

  /** Copies entry `id`'s value from `source` at `from`. */
  copyValue(id: number, source: Uint8Array, from: number): void {
    const at = this.keyAt[id] + this.keyLength[id];
    copyRange(this.slabFor(id), at, source, from, this.valueLength[id]);
  }

  /**
   * Makes entry `to` read the bytes, kind and expiry of `from` (the same key
   * and version written again), then forgets `from`, which must be the last.
   */
  replaceWithLast(to: number, from: number): void {
    this.slabOf[to] = this.slabOf[from];
    this.keyAt[to] = this.keyAt[from];
    this.valueLength[to] = this.valueLength[from];
    this.expiresAtMs[to] = this.expiresAtMs[from];
    this.kind[to] = this.kind[from];
    this.count = from; // its bytes stay in the slab, unused
  }

  /** The slab holding entry `id`. */
  slabFor(id: number): Uint8Array {
    return this.slabs[this.slabOf[id]];
  }

  /**
   * Compares entry `id`'s key with `key[from, from + length)` from byte
   * `skip` on (the caller knows the bytes before it are equal).
   */
  compareKey(id: number, key: Uint8Array, from: number, length: number, skip: number): number {
    const slab = this.slabs[this.slabOf[id]];
    const at = this.keyAt[id];
    const own = this.keyLength[id];
    const n = own < length ? own : length;
    for (let i = skip; i < n; i++) {
      const x = slab[at + i];
      const y = key[from + i];
      if (x !== y) return x - y;
    }
    return own - length;
  }

  /**
   * Loads into the CPU cache the columns, then the first and last bytes, of
   * the entries `ids[0..n)` (negative ids are skipped): a pipeline of reads
   * touches all of them before building any, so their cache misses overlap
   * instead of following one another.
   */
  touch(ids: Int32Array, n: number): void {
    const { slabOf, keyAt, keyLength, valueLength } = this;
    let touched = 0;
    for (let i = 0; i < n; i++) {
      const id = ids[i];
      if (id < 0) continue;
      touched ^= slabOf[id] ^ keyAt[id] ^ keyLength[id] ^ valueLength[id] ^ this.kind[id];
      touched ^= this.version[id] + this.expiresAtMs[id];
    }
    for (let i = 0; i < n; i++) {
      const id = ids[i];
      if (id < 0) continue;
      const slab = this.slabs[slabOf[id]];
      const end = keyAt[id] + keyLength[id] + valueLength[id];
      touched ^= slab[keyAt[id]] ^ slab[end > 0 ? end - 1 : 0];
    }
    this.touched ^= touched;
  }

  /** What `touch` read (kept so the reads are not optimized away). */
  touched = 0;

  /** A reader's snapshot of entry `id`. */
  entry(id: number): StoredEntry {
    return new StoredEntry(
      this.slabs[this.slabOf[id]],
      this.keyAt[id],
      this.keyLength[id],
      this.valueLength[id],
      this.version[id],
      this.kind[id] as EntryKindValue,
      this.expiresAtMs[id],
    );
  }

  #grow(): void {
    const capacity = this.kind.length * 2;
    this.slabOf = grownInt32(this.slabOf, capacity);
    this.keyAt = grownInt32(this.keyAt, capacity);
    this.keyLength = grownInt32(this.keyLength, capacity);
    this.valueLength = grownInt32(this.valueLength, capacity);
    this.version = grownFloat64(this.version, capacity);
    this.expiresAtMs = grownFloat64(this.expiresAtMs, capacity);
    const kind = new Uint8Array(capacity);
    kind.set(this.kind);
    this.kind = kind;
  }

  #newSlab(need: number): void {
    const size = Math.max(need, this.#nextSlabBytes);
    if (this.#nextSlabBytes < maxSlabBytes) this.#nextSlabBytes *= 2;
    this.#slab = new Uint8Array(size);
    this.#slabUsed = 0;
    this.#slabIndex = this.slabs.length;
    this.slabs.push(this.#slab);
  }
}

/**
 * One entry as readers see it: its fields copied, its key and value views of
 * the slab made on first use (a point read often needs only one of them).
 * It does not change when the same key and version are written again.
 */
export class StoredEntry implements Entry {
  #key: Uint8Array | undefined;
  #value: Uint8Array | undefined;
  constructor(
    readonly slab: Uint8Array,
    readonly at: number,
    readonly keyLength: number,
    readonly valueLength: number,
    readonly version: number,
    readonly kind: EntryKindValue,
    readonly expiresAtMs: number,
  ) {}

  get key(): Uint8Array {
    let k = this.#key;
    if (k === undefined) k = this.#key = this.slab.subarray(this.at, this.at + this.keyLength);
    return k;
  }

  get value(): Uint8Array {
    let v = this.#value;
    if (v === undefined) {
      const from = this.at + this.keyLength;
      v = this.#value = this.valueLength === 0
        ? emptyBytes
        : this.slab.subarray(from, from + this.valueLength);
    }
    return v;
  }
}
