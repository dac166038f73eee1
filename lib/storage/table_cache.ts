/**
 * A bounded cache of open SSTable readers (each holds a file handle plus its
 * index and bloom filter). Readers are reference counted: an evicted reader
 * closes its file only when the last iterator or read using it lets go.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { ClosedError } from "../common/errors.ts";
import type { BlockCache } from "./block_cache.ts";
import { type FileSystem, joinPath } from "./fs.ts";
import { TableReader } from "./table_reader.ts";

/** File name of table `n`. */
export function tableFileName(n: number): string {
  return `${String(n).padStart(6, "0")}.sst`;
}

/** LRU of open tables, at most `capacity` of them (plus those still in use). */
export class TableCache {
  #open = new Map<number, TableReader>();
  #opening = new Map<number, Promise<TableReader>>();
  #closed = false;

  constructor(
    readonly fs: FileSystem,
    readonly dir: string,
    readonly capacity: number,
    readonly blockCache: BlockCache,
  ) {
    assert(capacity >= 1, "table cache capacity >= 1");
  }

  /** Open tables held by the cache. */
  get size(): number {
    return this.#open.size;
  }

  /**
   * The open reader for table `n` without a reference or recency update, or
   * undefined. Valid only until the caller next awaits (hot read path).
   */
  peek(n: number): TableReader | undefined {
    return this.#open.get(n);
  }

  /**
   * A referenced reader for table `n`; the caller must `unref()` it. Refused
   * once the cache is closed: a reader of a closed engine would reopen its
   * tables by file name (perhaps another engine's by then) and never close them.
   */
  async acquire(n: number): Promise<TableReader> {
    if (this.#closed) throw new ClosedError("storage engine");
    const r = this.#open.get(n);
    if (r !== undefined) {
      this.#open.delete(n);
      this.#open.set(n, r);
      return r.ref();
    }
    const pending = this.#opening.get(n);
    if (pending !== undefined) {
      await pending;
      return this.acquire(n);
    }
    const p = TableReader.open(this.fs, joinPath(this.dir, tableFileName(n)), n, this.blockCache);
    this.#opening.set(n, p);
    try {
      const reader = await p;
      if (this.#closed) {
        reader.evict();
        throw new ClosedError("storage engine");
      }
      this.#open.set(n, reader);
      reader.ref();
      this.#trim();
      return reader;
    } finally {
      this.#opening.delete(n);
    }
  }

  #trim(): void {
    while (this.#open.size > this.capacity) {
      const oldest = this.#open.keys().next().value as number;
      const r = this.#open.get(oldest)!;
      this.#open.delete(oldest);
      r.evict();
    }
  }

  /** Forgets table `n` (its file is being deleted). */
  evict(n: number): void {
    const r = this.#open.get(n);
    if (r !== undefined) {
      this.#open.delete(n);
      r.evict();
    }
  }

  /** Evicts every reader; later acquires are refused. */
  close(): void {
    this.#closed = true;
    for (const r of this.#open.values()) r.evict();
    this.#open.clear();
  }
}
