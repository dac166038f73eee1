/**
 * Writes one SSTable (docs/FORMATS.md, "SSTable"): data blocks of about
 * `blockSizeBytes`, each with a type + CRC trailer, then the bloom block, the
 * index block and the fixed 48-byte footer. Output is buffered and appended
 * in large chunks; `finish` syncs the file before anyone may reference it.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { crc32 } from "../common/crc.ts";
import { bloomBitsPerKey } from "../common/limits.ts";
import { BlockBuilder } from "./block.ts";
import { bloomHash, buildBloom } from "./bloom.ts";
import type { FileHandle } from "./fs.ts";
import {
  compareRange,
  type Entry,
  type EntryKindValue,
  type EntryRanges,
  entryValueLength,
  internalKeyLength,
  writeEntryValue,
  writeInternalKey,
  writeU32,
  writeU64,
} from "./internal_key.ts";

/** Block types in trailers. On disk: never renumber. */
export const BlockType = { plain: 0 } as const;
/** Bytes after each block: type u8 + crc u32. */
export const blockTrailerBytes = 5;
/** Fixed footer size. */
export const footerBytes = 48;
/** Format version in the footer. */
export const tableFormatVersion = 1;
/** Footer magic, "rkvdSST1". */
export const tableMagic = new TextEncoder().encode("rkvdSST1");

const flushChunkBytes = 256 * 1024;
/**
 * Written bytes after which an fsync starts in the background: a table's
 * data reaches the disk as it is written instead of all at the final fsync,
 * which would hold the disk for the whole table (tens of megabytes) while a
 * Raft log's fsyncs wait behind it.
 */
const bytesPerSync = 1024 * 1024;

/** What a finished table holds (becomes a manifest FileMeta). */
export interface TableProperties {
  sizeBytes: number;
  entryCount: number;
  smallest: Uint8Array;
  largest: Uint8Array;
  maxVersion: number;
}

/** Streams sorted entries into an SSTable file. */
export class TableWriter {
  #file: FileHandle;
  #blockSizeBytes: number;
  #data = new BlockBuilder();
  #index = new BlockBuilder(4096);
  #hashes: number[] = [];
  /** The last user key added: `#lastKeyLength` bytes at `#lastKeyFrom` of `#lastKeyBytes`. */
  #lastKeyBytes: Uint8Array | undefined;
  #lastKeyFrom = 0;
  #lastKeyLength = 0;
  #lastVersion = 0;
  #smallest: Uint8Array | undefined;
  #offset = 0;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #entryCount = 0;
  #maxVersion = 0;
  /** Bytes handed to the file so far. */
  #writtenBytes = 0;
  /** Written bytes when the last background fsync started. */
  #syncStartedAt = 0;
  /** The background fsync in flight; it never rejects (its error is kept in #syncError). */
  #backgroundSync: Promise<void> | undefined;
  #syncError: unknown;

  constructor(file: FileHandle, blockSizeBytes: number) {
    this.#file = file;
    this.#blockSizeBytes = blockSizeBytes;
  }

  /** Bytes written or buffered so far (the table's size if finished now, minus metadata). */
  get estimatedBytes(): number {
    return this.#offset + this.#data.estimatedBytes;
  }

  /** Entries added. */
  get entryCount(): number {
    return this.#entryCount;
  }

  /**
   * Adds the next entry. Requires: strictly ascending internal-key order
   * (checked). Returns a promise only when buffered blocks are being written
   * out: most adds complete at once, without a promise and a turn each.
   */
  add(e: Entry): Promise<void> | undefined {
    const last = this.#lastKeyBytes;
    // Internal keys order by user key, then newest version first (docs/FORMATS.md).
    const order = last === undefined
      ? 1
      : -compareRange(last, this.#lastKeyFrom, this.#lastKeyLength, e.key);
    assert(
      order > 0 || (order === 0 && e.version < this.#lastVersion),
      "table entries must be strictly ascending",
    );
    const value = e.value;
    return this.#append(
      e.key,
      0,
      e.key.length,
      e.version,
      e.kind,
      value,
      0,
      value.length,
      e.expiresAtMs,
      order !== 0,
    );
  }

  /**
   * `add` for an entry given as ranges (a memtable's), where the caller
   * vouches for the order: `newKey` says whether its user key differs from
   * the previous entry's (a memtable walk knows, from stepping to the next
   * key). No keys are compared: in a flush the comparison was a fifth of the
   * work. Only the version order within a key is checked.
   */
  addRanges(r: EntryRanges, newKey: boolean): Promise<void> | undefined {
    assert(
      this.#entryCount === 0
        ? newKey
        : newKey || (r.version < this.#lastVersion && r.keyLength === this.#lastKeyLength),
      "table entries must be strictly ascending",
    );
    return this.#append(
      r.bytes,
      r.keyFrom,
      r.keyLength,
      r.version,
      r.kind,
      r.bytes,
      r.valueFrom,
      r.valueLength,
      r.expiresAtMs,
      newKey,
    );
  }

  #append(
    key: Uint8Array,
    keyFrom: number,
    keyLength: number,
    version: number,
    kind: EntryKindValue,
    value: Uint8Array,
    valueFrom: number,
    valueLength: number,
    expiresAtMs: number,
    newKey: boolean,
  ): Promise<void> | undefined {
    if (this.#entryCount === 0) {
      this.#smallest = this.#internalKey(key, keyFrom, keyLength, version);
    }
    if (newKey) this.#hashes.push(bloomHash(key, keyFrom, keyLength));
    this.#lastKeyBytes = key;
    this.#lastKeyFrom = keyFrom;
    this.#lastKeyLength = keyLength;
    this.#lastVersion = version;
    const data = this.#data;
    const at = data.addInternalKeyReserve(
      key,
      keyFrom,
      keyLength,
      version,
      entryValueLength(kind, valueLength),
    );
    writeEntryValue(data.buffer, at, kind, expiresAtMs, value, valueFrom, valueLength);
    this.#entryCount++;
    if (version > this.#maxVersion) this.#maxVersion = version;
    if (data.estimatedBytes >= this.#blockSizeBytes) {
      this.#finishDataBlock();
      if (this.#pendingBytes >= flushChunkBytes) return this.#flushPending();
    }
    return undefined;
  }

  /** The internal key of `length` bytes at `from` of `key` at `version`, in its own array. */
  #internalKey(key: Uint8Array, from: number, length: number, version: number): Uint8Array {
    const out = new Uint8Array(internalKeyLength(key, from, length));
    writeInternalKey(out, 0, key, version, from, length);
    return out;
  }

  /** The internal key of the last entry added. */
  #lastInternalKey(): Uint8Array {
    return this.#internalKey(
      this.#lastKeyBytes!,
      this.#lastKeyFrom,
      this.#lastKeyLength,
      this.#lastVersion,
    );
  }

  #writeBlock(block: Uint8Array): { offset: number; size: number } {
    const trailer = new Uint8Array(blockTrailerBytes);
    trailer[0] = BlockType.plain;
    writeU32(trailer, 1, crc32(trailer.subarray(0, 1), crc32(block)));
    const handle = { offset: this.#offset, size: block.length };
    this.#pending.push(block, trailer);
    this.#pendingBytes += block.length + blockTrailerBytes;
    this.#offset += block.length + blockTrailerBytes;
    return handle;
  }

  #finishDataBlock(): void {
    if (this.#data.count === 0) return;
    const h = this.#writeBlock(this.#data.finish());
    const v = new Uint8Array(12);
    writeU64(v, 0, h.offset);
    writeU32(v, 8, h.size);
    this.#index.add(this.#lastInternalKey(), v);
  }

  async #flushPending(): Promise<void> {
    if (this.#pending.length === 0) return;
    const out = new Uint8Array(this.#pendingBytes);
    let at = 0;
    for (const p of this.#pending) {
      out.set(p, at);
      at += p.length;
    }
    this.#pending = [];
    this.#pendingBytes = 0;
    await this.#file.append(out);
    this.#writtenBytes += out.length;
    if (this.#syncError !== undefined) throw this.#syncError;
    if (
      this.#backgroundSync === undefined && this.#writtenBytes - this.#syncStartedAt >= bytesPerSync
    ) {
      this.#syncStartedAt = this.#writtenBytes;
      this.#backgroundSync = this.#file.syncData().then(
        () => {},
        (e) => (this.#syncError ??= e),
      ).finally(() => (this.#backgroundSync = undefined));
    }
  }

  /** Waits for the background fsync, if any, and reports its failure. */
  async #settleBackgroundSync(): Promise<void> {
    if (this.#backgroundSync !== undefined) await this.#backgroundSync;
    if (this.#syncError !== undefined) throw this.#syncError;
  }

  /** Writes bloom, index and footer, syncs, closes. Requires: at least one entry. */
  async finish(): Promise<TableProperties> {
    assert(this.#entryCount > 0, "a table holds at least one entry");
    this.#finishDataBlock();
    const bloom = this.#writeBlock(buildBloom(this.#hashes, bloomBitsPerKey));
    const index = this.#writeBlock(this.#index.finish());
    const footer = new Uint8Array(footerBytes);
    writeU64(footer, 0, bloom.offset);
    writeU32(footer, 8, bloom.size);
    writeU64(footer, 12, index.offset);
    writeU32(footer, 20, index.size);
    writeU64(footer, 24, this.#entryCount);
    writeU32(footer, 32, tableFormatVersion);
    writeU32(footer, 36, crc32(footer.subarray(0, 36)));
    footer.set(tableMagic, 40);
    this.#pending.push(footer);
    this.#pendingBytes += footerBytes;
    this.#offset += footerBytes;
    await this.#flushPending();
    await this.#settleBackgroundSync();
    await this.#file.syncData();
    await this.#file.close();
    return {
      sizeBytes: this.#offset,
      entryCount: this.#entryCount,
      smallest: this.#smallest!,
      largest: this.#lastInternalKey(),
      maxVersion: this.#maxVersion,
    };
  }

  /** Gives up on the table (the caller deletes the file). */
  async abandon(): Promise<void> {
    await this.#backgroundSync;
    await this.#file.close();
  }
}
