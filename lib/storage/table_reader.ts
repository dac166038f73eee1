/**
 * Reads one SSTable. Opening checks the footer (magic, format version, CRC)
 * and loads the index and bloom blocks into memory; data blocks are read on
 * demand through the shared block cache and checked against their CRC before
 * use, so a flipped bit becomes a CorruptionError, never a wrong value.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { crc32 } from "../common/crc.ts";
import { CorruptionError } from "../common/errors.ts";
import { Block, type EntryPos, newEntryPos } from "./block.ts";
import type { BlockCache, CacheNode } from "./block_cache.ts";
import { bloomMayContain } from "./bloom.ts";
import type { FileHandle, FileSystem } from "./fs.ts";
import {
  compareRange,
  encodeInternalKey,
  type Entry,
  internalKeyUserKey,
  internalKeyVersion,
  readEntryValue,
  readU32,
  readU64,
} from "./internal_key.ts";
import { blockTrailerBytes, footerBytes, tableFormatVersion, tableMagic } from "./table_writer.ts";

/** Returned by `getCached` when the block must be read from disk. */
export const blockNotCached: unique symbol = Symbol("blockNotCached");

/** An open SSTable with its index and bloom filter in memory. */
export class TableReader {
  #refs = 1;
  #closing = false;
  /** Block cache slots, one per data block. */
  readonly #slots: (CacheNode | undefined)[];
  readonly #pos: EntryPos = newEntryPos();

  private constructor(
    readonly fileNumber: number,
    readonly file: FileHandle,
    readonly index: Block,
    readonly bloom: Uint8Array,
    readonly entryCount: number,
    readonly cache: BlockCache,
  ) {
    this.#slots = new Array(index.count).fill(undefined);
  }

  /** Opens and validates the table at `path`. */
  static async open(
    fs: FileSystem,
    path: string,
    fileNumber: number,
    cache: BlockCache,
  ): Promise<TableReader> {
    const file = await fs.open(path);
    try {
      const size = await file.size();
      if (size < footerBytes) throw new CorruptionError(path, 0, `table too short (${size} bytes)`);
      const footerAt = size - footerBytes;
      const footer = await file.read(footerAt, footerBytes);
      for (let i = 0; i < 8; i++) {
        if (footer[40 + i] !== tableMagic[i]) {
          throw new CorruptionError(path, footerAt + 40, "bad table magic");
        }
      }
      if (crc32(footer.subarray(0, 36)) !== readU32(footer, 36)) {
        throw new CorruptionError(path, footerAt, "footer checksum mismatch");
      }
      const version = readU32(footer, 32);
      if (version !== tableFormatVersion) {
        throw new CorruptionError(path, footerAt + 32, `unknown table format version ${version}`);
      }
      const bloomOffset = readU64(footer, 0);
      const bloomSize = readU32(footer, 8);
      const indexOffset = readU64(footer, 12);
      const indexSize = readU32(footer, 20);
      const entryCount = readU64(footer, 24);
      const inFile = (o: number, n: number) => o >= 0 && o + n + blockTrailerBytes <= footerAt;
      if (!inFile(bloomOffset, bloomSize) || !inFile(indexOffset, indexSize) || entryCount < 1) {
        throw new CorruptionError(path, footerAt, "footer block handles out of range");
      }
      const bloom = await readCheckedBlock(file, bloomOffset, bloomSize);
      if (bloom.length < 2) throw new CorruptionError(path, bloomOffset, "bloom block too short");
      const index = new Block(
        await readCheckedBlock(file, indexOffset, indexSize),
        path,
        indexOffset,
      );
      return new TableReader(fileNumber, file, index, bloom, entryCount, cache);
    } catch (e) {
      await file.close();
      throw e;
    }
  }

  /** Takes a reference (the table cache closes the file when the last one is released). */
  ref(): this {
    assert(this.#refs > 0, "ref on a closed table");
    this.#refs++;
    return this;
  }

  /** Drops a reference. */
  unref(): void {
    assert(this.#refs > 0, "unref below zero");
    if (--this.#refs === 0) {
      this.cache.dropAll(this.#slots);
      void this.file.close();
    }
  }

  /** Marks the reader evicted: it closes once unused. */
  evict(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.unref();
  }

  /** The data block `i` of the index (through the cache). */
  async dataBlock(i: number): Promise<Block> {
    this.index.entryAt(i, this.#pos);
    const v = this.#pos.valueAt;
    if (this.#pos.valueLength !== 12) {
      throw new CorruptionError(this.file.path, this.index.offset, "bad index entry");
    }
    const offset = readU64(this.index.data, v);
    const size = readU32(this.index.data, v + 8);
    const cached = this.cache.get(this.#slots, i);
    if (cached !== undefined) return cached;
    const block = new Block(
      await readCheckedBlock(this.file, offset, size),
      this.file.path,
      offset,
    );
    this.cache.put(this.#slots, i, block);
    return block;
  }

  /** True when the bloom filter allows `hash`. */
  mayContain(hash: number): boolean {
    return bloomMayContain(this.bloom, hash);
  }

  /**
   * The newest entry of `userKey` with version <= the target's, or undefined.
   * `target` is encodeInternalKey(userKey, atVersion).
   */
  async get(userKey: Uint8Array, target: Uint8Array, hash: number): Promise<Entry | undefined> {
    if (!bloomMayContain(this.bloom, hash)) return undefined;
    const pos = this.#pos;
    const bi = this.index.seek(target);
    if (bi >= this.index.count) return undefined;
    const block = await this.dataBlock(bi);
    const ei = block.seek(target);
    if (ei >= block.count) return undefined;
    block.entryAt(ei, pos);
    return decodeEntryIfKey(block, pos, userKey);
  }

  /**
   * Like `get`, but only from the block cache: returns `blockNotCached` when
   * answering needs a read from disk. Lets warm point reads skip every await.
   */
  getCached(
    userKey: Uint8Array,
    target: Uint8Array,
    hash: number,
  ): Entry | undefined | typeof blockNotCached {
    if (!bloomMayContain(this.bloom, hash)) return undefined;
    const pos = this.#pos;
    const bi = this.index.seek(target);
    if (bi >= this.index.count) return undefined;
    const block = this.cache.get(this.#slots, bi);
    if (block === undefined) return blockNotCached;
    const ei = block.seek(target);
    if (ei >= block.count) return undefined;
    block.entryAt(ei, pos);
    return decodeEntryIfKey(block, pos, userKey);
  }

  /** A forward iterator over the table. */
  iterator(): TableIterator {
    return new TableIterator(this);
  }
}

async function readCheckedBlock(
  file: FileHandle,
  offset: number,
  size: number,
): Promise<Uint8Array> {
  const raw = await file.read(offset, size + blockTrailerBytes);
  if (raw.length !== size + blockTrailerBytes) {
    throw new CorruptionError(file.path, offset, "block runs past the end of the file");
  }
  const want = readU32(raw, size + 1);
  if (crc32(raw.subarray(size, size + 1), crc32(raw.subarray(0, size))) !== want) {
    throw new CorruptionError(file.path, offset, "block checksum mismatch");
  }
  if (raw[size] !== 0) {
    throw new CorruptionError(file.path, offset, `unknown block type ${raw[size]}`);
  }
  return raw.subarray(0, size);
}

/** Decodes the entry at `pos` when its user key equals `userKey`; else undefined. */
function decodeEntryIfKey(block: Block, pos: EntryPos, userKey: Uint8Array): Entry | undefined {
  const d = block.data;
  const kl = pos.keyLength;
  // Fast check: the internal key starts with the (unescaped, zero-free) user key + terminator.
  const key = internalKeyUserKey(d, pos.keyAt, kl);
  if (key === undefined) {
    throw new CorruptionError(block.file, block.offset, "malformed internal key");
  }
  if (key.length !== userKey.length || compareRange(key, 0, key.length, userKey) !== 0) {
    return undefined;
  }
  return decodeEntry(block, pos, key);
}

/** Builds an Entry from the entry at `pos` (key already decoded). */
export function decodeEntry(block: Block, pos: EntryPos, key: Uint8Array): Entry {
  const e: Entry = {
    key,
    version: internalKeyVersion(block.data, pos.keyAt, pos.keyLength),
    kind: 1,
    value: block.data,
    expiresAtMs: 0,
  };
  if (!readEntryValue(block.data, pos.valueAt, pos.valueLength, e)) {
    throw new CorruptionError(block.file, block.offset, "malformed entry value");
  }
  return e;
}

/** Forward iterator over one table; async only when it must load a block. */
export class TableIterator {
  #table: TableReader;
  #blockIndex = 0;
  #block: Block | undefined;
  #i = 0;
  #entry: Entry | undefined;
  #pos = newEntryPos();

  constructor(table: TableReader) {
    this.#table = table.ref();
  }

  valid(): boolean {
    return this.#entry !== undefined;
  }

  entry(): Entry {
    assert(this.#entry !== undefined, "entry() on an exhausted iterator");
    return this.#entry;
  }

  async seek(key: Uint8Array | undefined, version = Number.MAX_SAFE_INTEGER): Promise<void> {
    const t = this.#table;
    if (key === undefined) {
      this.#blockIndex = 0;
      await this.#load(0);
      return;
    }
    const target = encodeInternalKey(key, version);
    this.#blockIndex = t.index.seek(target);
    if (this.#blockIndex >= t.index.count) {
      this.#entry = undefined;
      return;
    }
    this.#block = await t.dataBlock(this.#blockIndex);
    this.#i = this.#block.seek(target);
    if (this.#i >= this.#block.count) {
      this.#blockIndex++;
      await this.#load(0);
    } else {
      this.#decode();
    }
  }

  async #load(i: number): Promise<void> {
    if (this.#blockIndex >= this.#table.index.count) {
      this.#entry = undefined;
      this.#block = undefined;
      return;
    }
    this.#block = await this.#table.dataBlock(this.#blockIndex);
    this.#i = i;
    this.#decode();
  }

  #decode(): void {
    const b = this.#block!;
    b.entryAt(this.#i, this.#pos);
    const key = internalKeyUserKey(b.data, this.#pos.keyAt, this.#pos.keyLength);
    if (key === undefined) throw new CorruptionError(b.file, b.offset, "malformed internal key");
    this.#entry = decodeEntry(b, this.#pos, key);
  }

  next(): void | Promise<void> {
    assert(this.#entry !== undefined, "next() on an exhausted iterator");
    this.#i++;
    if (this.#i < this.#block!.count) {
      this.#decode();
      return;
    }
    this.#blockIndex++;
    return this.#load(0);
  }

  close(): void {
    this.#table.unref();
  }
}
