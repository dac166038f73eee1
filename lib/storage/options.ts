/**
 * Engine options and the storage bounds that lib/common/limits.ts does not
 * (yet) name. Every tunable the engine reads lives here with its default, so a
 * test can shrink the memtable or the levels without touching the code.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import type { Clock } from "../common/clock.ts";
import { SystemClock } from "../common/clock.ts";
import * as limits from "../common/limits.ts";
import type { FileSystem } from "./fs.ts";
import { DenoFileSystem } from "./deno_fs.ts";

/** Immutable memtables waiting for a flush before writes stall (bounds memory). */
export const maxImmutableMemtables = 2;
/** Default size past which the live manifest is rewritten as one snapshot edit. */
export const defaultMaxManifestBytes = 4 * 1024 * 1024;
/** Default unsynced WAL bytes that start a background fsync (RocksDB's wal_bytes_per_sync). */
export const defaultWalBytesPerSync = 1024 * 1024;
/**
 * Default zero-filled space kept ahead of WAL appends. A durable append over
 * preallocated space writes data only; one that grows the file also commits
 * the file system's journal (6.4 KB: 120-145 against 205-240 us in probes on our disks).
 */
export const defaultWalPreallocateBytes = 1024 * 1024;
/**
 * Longest stretch a flush or compaction computes before the event loop gets
 * a turn (see TimeSlice).
 */
export const backgroundSliceMs = 2;
/** Deepest level index (L0..L6). */
export const maxLevel = limits.levelCount - 1;

/** Options accepted by `Engine.open`. Every field is optional. */
export interface EngineOptions {
  /** File system seam; defaults to the real disk. */
  fs?: FileSystem;
  /** Size at which the active memtable is rotated and flushed. */
  memtableBytes?: number;
  /** Byte budget of the LRU block cache. */
  blockCacheBytes?: number;
  /**
   * Byte budget of the row cache (lib/storage/row_cache.ts): the newest table
   * entry of recently read keys. 0 (the default) turns it off.
   */
  rowCacheBytes?: number;
  /** L0 file count that triggers an L0 -> L1 compaction. */
  l0CompactionTrigger?: number;
  /** L0 file count at which writes wait for compaction. */
  l0StopWritesTrigger?: number;
  /** Target size of L1; deeper levels are `levelSizeMultiplier` times larger each. */
  l1TargetBytes?: number;
  /** Target size of one SSTable written by compaction. */
  targetFileBytes?: number;
  /** Target size of one data block. */
  blockSizeBytes?: number;
  /** Most SSTables held open at once. */
  maxOpenTables?: number;
  /** Time source for TTL checks (wall clock). */
  clock?: Clock;
  /** Default for `write(batch, { sync })`. */
  syncWrites?: boolean;
  /**
   * WAL bytes of `sync: false` writes held in memory before they are written
   * (0, the default: written before the write resolves, so they survive a
   * process crash, as in LevelDB). Above 0, unsynced writes reach the file
   * only with the next synced write, `sync()`, a rotation, `close()` or once
   * this many bytes are held, and a process crash may lose them: for an
   * owner that keeps its own durable log (a Raft node replays it from the
   * engine's applied index) and saves a file write per unsynced write.
   */
  walBufferBytes?: number;
  /**
   * Unsynced WAL bytes after which an fsync starts in the background, beside
   * later writes (0: never). Bounds what any one later fsync (a rotation, a
   * `sync()` barrier) must write, so it cannot stall writes for long.
   */
  walBytesPerSync?: number;
  /**
   * Zero-filled bytes kept ahead of WAL appends, filled in the background
   * (0: none, every append grows the file). See WalWriter.
   */
  walPreallocateBytes?: number;
  /**
   * Pause of background work (flushes, compactions) after each slice of
   * `backgroundSliceMs`, while nothing waits for it: spreads its CPU out so
   * requests on the same thread keep a low tail latency. 0: no pause.
   */
  backgroundRestMs?: number;
  /** Run flushes and compactions in the background (tests may turn compaction off). */
  autoCompaction?: boolean;
  /** Size past which the manifest is rewritten as a snapshot (tests shrink it). */
  maxManifestBytes?: number;
}

/** EngineOptions with every default filled in. */
export interface ResolvedOptions {
  fs: FileSystem;
  memtableBytes: number;
  blockCacheBytes: number;
  rowCacheBytes: number;
  l0CompactionTrigger: number;
  l0StopWritesTrigger: number;
  l1TargetBytes: number;
  targetFileBytes: number;
  blockSizeBytes: number;
  maxOpenTables: number;
  clock: Clock;
  syncWrites: boolean;
  walBufferBytes: number;
  walBytesPerSync: number;
  walPreallocateBytes: number;
  backgroundRestMs: number;
  autoCompaction: boolean;
  maxManifestBytes: number;
}

/** Fills defaults and checks that the values relate sensibly. */
export function resolveOptions(o: EngineOptions = {}): ResolvedOptions {
  const r: ResolvedOptions = {
    fs: o.fs ?? new DenoFileSystem(),
    memtableBytes: o.memtableBytes ?? limits.defaultMemtableBytes,
    blockCacheBytes: o.blockCacheBytes ?? limits.defaultBlockCacheBytes,
    rowCacheBytes: o.rowCacheBytes ?? 0,
    l0CompactionTrigger: o.l0CompactionTrigger ?? limits.l0CompactionTrigger,
    l0StopWritesTrigger: o.l0StopWritesTrigger ??
      Math.max(limits.l0StopWritesTrigger, (o.l0CompactionTrigger ?? 0) * 3),
    l1TargetBytes: o.l1TargetBytes ?? limits.l1TargetBytes,
    targetFileBytes: o.targetFileBytes ?? limits.targetFileBytes,
    blockSizeBytes: o.blockSizeBytes ?? limits.blockSizeBytes,
    maxOpenTables: o.maxOpenTables ?? limits.maxOpenTables,
    clock: o.clock ?? new SystemClock(),
    syncWrites: o.syncWrites ?? true,
    walBufferBytes: o.walBufferBytes ?? 0,
    walBytesPerSync: o.walBytesPerSync ?? defaultWalBytesPerSync,
    walPreallocateBytes: o.walPreallocateBytes ?? defaultWalPreallocateBytes,
    backgroundRestMs: o.backgroundRestMs ?? backgroundSliceMs,
    autoCompaction: o.autoCompaction ?? true,
    maxManifestBytes: o.maxManifestBytes ?? defaultMaxManifestBytes,
  };
  assert(r.memtableBytes >= 1024, "memtableBytes must be at least 1 KiB");
  assert(r.l0CompactionTrigger >= 1, "l0CompactionTrigger must be >= 1");
  assert(r.l0StopWritesTrigger > r.l0CompactionTrigger, "writes stop after compaction starts");
  assert(r.blockSizeBytes >= 64, "blockSizeBytes must be at least 64");
  assert(r.targetFileBytes > r.blockSizeBytes, "a table holds many blocks");
  assert(r.maxOpenTables >= 4, "maxOpenTables must be at least 4");
  assert(r.blockCacheBytes >= 0, "blockCacheBytes must be >= 0");
  assert(r.rowCacheBytes >= 0, "rowCacheBytes must be >= 0");
  assert(r.walBufferBytes >= 0, "walBufferBytes must be >= 0");
  assert(r.walBytesPerSync >= 0, "walBytesPerSync must be >= 0");
  assert(r.walPreallocateBytes >= 0, "walPreallocateBytes must be >= 0");
  assert(r.backgroundRestMs >= 0, "backgroundRestMs must be >= 0");
  return r;
}
