/**
 * The storage engine: an LSM tree with MVCC. Writes go through a group-commit
 * queue into the WAL (one write + one fsync for many concurrent writers), then
 * into the memtable; a full memtable is rotated onto a new WAL segment and
 * flushed to an L0 SSTable in the background while writes continue; leveled
 * compaction keeps read amplification bounded. Reads see the newest version
 * at or below the requested one across memtables and levels.
 *
 * Invariant: for one user key, a newer source (memtable, then L0 newest
 * first, then L1..L6) never holds a lower version than an older source.
 * Requires (callers with explicit versions): per key, versions arrive in
 * non-decreasing order; re-writing the same (key, version) is allowed.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { emptyBytes, equalBytes, prefixEnd } from "../common/bytes.ts";
import {
  ClosedError,
  CompactedError,
  CorruptionError,
  InvalidArgumentError,
  KVError,
} from "../common/errors.ts";
import {
  levelCount,
  maxGroupCommitBytes,
  maxGroupCommitRecords,
  maxWalRecordBytes,
} from "../common/limits.ts";
import { BlockCache } from "./block_cache.ts";
import { RowCache } from "./row_cache.ts";
import { bloomHash } from "./bloom.ts";
import { runCompaction, type TableBuildContext, writeTables } from "./compaction.ts";
import {
  type Compaction,
  pendingCompactionBytes,
  pickCompaction,
  planCompaction,
} from "./compaction_picker.ts";
import { type FileHandle, type FileSystem, joinPath } from "./fs.ts";
import { DenoFileSystem } from "./deno_fs.ts";
import {
  compareKeys,
  encodeInternalKey,
  type Entry,
  EntryKind,
  internalKeyLength,
  writeInternalKey,
} from "./internal_key.ts";
import {
  type InternalIterator,
  LazyTableIterator,
  LevelIterator,
  MergingIterator,
} from "./iterator.ts";
import {
  applyScalars,
  emptyManifestState,
  type ManifestState,
  ManifestWriter,
  readCurrent,
  recoverManifest,
} from "./manifest.ts";
import { Memtable } from "./memtable.ts";
import {
  backgroundSliceMs,
  type EngineOptions,
  maxImmutableMemtables,
  maxLevel,
  type ResolvedOptions,
  resolveOptions,
} from "./options.ts";
import {
  cutToValidEnd,
  frameRecordInPlace,
  readRecords,
  recordHeaderBytes,
  requireSealedEnd,
} from "./record_log.ts";
import { TableCache, tableFileName } from "./table_cache.ts";
import { blockNotCached } from "./table_reader.ts";
import type { Version } from "./version.ts";
import type { Clock } from "../common/clock.ts";
import type { VersionEdit } from "./version_edit.ts";
import { WalWriter } from "./wal_writer.ts";
import {
  batchPayloadLength,
  decodeBatchPayload,
  type WriteBatch,
  writeBatchPayload,
} from "./write_batch.ts";

/**
 * A key-value pair as readers see it. `key` and `value` are read-only views
 * of engine memory (no copy per read): copy them before modifying.
 */
export interface KV {
  key: Uint8Array;
  value: Uint8Array;
  version: number;
  expiresAtMs?: number;
}

/** One stored version of a key, tombstones included (for watch replay). */
export interface HistoryEntry {
  key: Uint8Array;
  value: Uint8Array;
  version: number;
  deleted: boolean;
  expiresAtMs?: number;
}

/** Options of `write`. */
export interface WriteOptions {
  /** Durable before the promise resolves (default: the engine's `syncWrites`, true). */
  sync?: boolean;
  /** Opaque caller number persisted atomically with this batch (a Raft applied index). */
  appliedIndex?: number;
}

/** Options of `get`. */
export interface GetOptions {
  /** Read the newest version <= atVersion (default: the newest). */
  atVersion?: number;
  /** Wall-clock ms used for TTL checks (default: the engine clock; 0: no TTL check). */
  nowMs?: number;
  /**
   * Whether a read served by the tables may add the key to the row cache
   * (default true; RocksDB's fill_cache). Off for lookups that would only
   * crowd it out, such as a request id's dedupe check: nearly always of an
   * absent id, which is written right after.
   */
  fillCache?: boolean;
}

/** Options of `scan`. */
export interface ScanOptions {
  prefix?: Uint8Array;
  /** Inclusive start key. */
  start?: Uint8Array;
  /** Exclusive end key. */
  end?: Uint8Array;
  limit?: number;
  atVersion?: number;
  reverse?: boolean;
  keysOnly?: boolean;
  /** Wall-clock ms used for TTL checks (default: the engine clock; 0: no TTL check). */
  nowMs?: number;
}

/** What `Engine.getNow` returns when the answer needs a disk read. */
export const readNeedsIo: unique symbol = Symbol("readNeedsIo");

/** Options of `history`. */
export interface HistoryOptions {
  prefix?: Uint8Array;
  start?: Uint8Array;
  end?: Uint8Array;
  /** Only versions > afterVersion. */
  afterVersion?: number;
}

/** Per-level file counts and sizes. */
export interface LevelStats {
  level: number;
  files: number;
  bytes: number;
  /** Stored entries (versions and tombstones), from the tables' properties. */
  entries: number;
}

/** Counters and gauges for operators and benchmarks. */
export interface EngineStats {
  levels: LevelStats[];
  memtableBytes: number;
  immutableMemtables: number;
  currentVersion: number;
  compactedVersion: number;
  appliedIndex: number;
  /** User bytes written (keys + values). */
  userBytesWritten: number;
  walBytesWritten: number;
  walRecords: number;
  walSyncs: number;
  /** Average WAL records made durable per fsync. */
  recordsPerSync: number;
  flushes: number;
  flushBytesWritten: number;
  compactions: number;
  compactionBytesRead: number;
  compactionBytesWritten: number;
  /** (WAL + flush + compaction bytes written) / user bytes written. */
  writeAmplification: number;
  blockCacheBytes: number;
  blockCacheHitRate: number;
  /** Reads the row cache answered (0 when it is off). */
  rowCacheHits: number;
  rowCacheMisses: number;
  openTables: number;
  pendingCompactionBytes: number;
  backgroundError?: string;
}

interface PendingWrite {
  /** undefined = a barrier: rotate the memtable (flush) or only fsync the WAL (sync). */
  batch: WriteBatch | undefined;
  barrier?: "rotate" | "sync";
  sync: boolean;
  appliedIndex: number;
  resolve: (v: { version: number }) => void;
  reject: (e: unknown) => void;
}

function walFileName(n: number): string {
  return `${String(n).padStart(6, "0")}.log`;
}

function parseFileNumber(name: string): { kind: string; number: number } | undefined {
  let m = /^(\d+)\.(log|sst)$/.exec(name);
  if (m) return { kind: m[2], number: Number(m[1]) };
  m = /^MANIFEST-(\d+)$/.exec(name);
  if (m) return { kind: "manifest", number: Number(m[1]) };
  return undefined;
}

/**
 * A directory without CURRENT is taken for a new engine, and opening it
 * deletes whatever engine files it holds; so it must hold no data. CURRENT
 * is written before the first write is taken, so a table or a WAL holding a
 * record without it means CURRENT was lost (a manifest alone may be left by a first
 * open that stopped before naming it: it describes an empty engine).
 */
async function requireNoEngineData(fs: FileSystem, dir: string): Promise<void> {
  for (const name of await fs.list(dir)) {
    const f = parseFileNumber(name);
    if (f === undefined || f.kind === "manifest") continue;
    // A WAL segment may be preallocated (zero-filled) before it holds anything.
    if (f.kind === "log" && (await readRecords(fs, joinPath(dir, name))).records.length === 0) {
      continue;
    }
    throw new CorruptionError(
      joinPath(dir, "CURRENT"),
      0,
      `CURRENT is missing, but the directory holds engine data (${name}); ` +
        "refusing to start it as a new, empty engine",
    );
  }
}

/**
 * Checks, before anything is rewritten, that the files the manifest relies
 * on are there: every live table, at the size it was written, and the WAL
 * segment it names. That segment is created before any manifest names it
 * and deleted only after a later edit moved past it, so its absence means
 * the WAL was lost, or the manifest lost an edit that a damaged tail made
 * look torn; either way data is missing, and opening would delete the tables
 * the lost edit added.
 */
async function requireNamedFiles(
  fs: FileSystem,
  dir: string,
  manifestPath: string,
  s: ManifestState,
): Promise<void> {
  for (const files of s.version.levels) {
    for (const meta of files) {
      const path = joinPath(dir, tableFileName(meta.number));
      const size = (await fs.stat(path))?.sizeBytes;
      if (size === undefined) {
        throw new CorruptionError(
          manifestPath,
          0,
          `the manifest names table ${path}, which is missing`,
        );
      }
      if (size !== meta.sizeBytes) {
        throw new CorruptionError(
          path,
          Math.min(size, meta.sizeBytes),
          `table is ${size} bytes; the manifest says it was written with ${meta.sizeBytes}`,
        );
      }
    }
  }
  if (s.logNumber > 0) {
    const wal = joinPath(dir, walFileName(s.logNumber));
    if ((await fs.stat(wal)) === undefined) {
      throw new CorruptionError(
        manifestPath,
        0,
        `the manifest's WAL segment ${wal} is missing: the WAL was lost, or the manifest lost ` +
          "its last edit",
      );
    }
  }
}

/** An embedded LSM key-value store with MVCC. Open with `Engine.open`. */
export class Engine implements AsyncDisposable {
  /** What opening repaired (a torn WAL tail cut off), for the owner to log. */
  readonly repairs: string[] = [];
  readonly #o: ResolvedOptions;
  readonly #fs: FileSystem;
  readonly #dir: string;
  #state: ManifestState;
  #manifest!: ManifestWriter;
  /** Serializes manifest edits (see #logAndApply). */
  #manifestQueue: Promise<unknown> = Promise.resolve();
  #wal!: WalWriter;
  #mem!: Memtable;
  #imm: Memtable[] = []; // oldest first
  #blockCache: BlockCache;
  /** Newest table entries of recently read keys (undefined: off). */
  #rowCache: RowCache | undefined;
  #tableCache: TableCache;

  #currentVersion = 0;
  #lastAssigned = 0;
  #appliedIndex = -1; // durable
  #pendingAppliedIndex = -1; // logged, maybe not synced

  #queue: PendingWrite[] = [];
  /** #insertGroup's scratch: the key length of each entry of a write group. */
  #keyLengths = new Int32Array(256);
  /** getManyNow's scratch for the active memtable's answers. */
  #foundScratch: (Entry | undefined)[] = [];
  #hashScratch: number[] = [];
  #commitLoop: Promise<void> | undefined;
  #writeError: Error | undefined;

  #bgLoop: Promise<void> | undefined;
  #bgError: Error | undefined;
  #lock: Promise<unknown> = Promise.resolve();
  #bgWaiters: (() => void)[] = [];
  #manualCompactions = 0;

  #closed = false;
  #closing = false;
  #pins = new Map<number, number>();
  #usedVersions = new Map<Version, number>();
  #obsoleteTables = new Set<number>();
  /** Reused buffer for the internal key of a point read (used synchronously only). */
  #scratch = new Uint8Array(256);

  // Stats.
  #userBytes = 0;
  #walBytes = 0;
  #walRecords = 0;
  #walSyncs = 0;
  #flushes = 0;
  #flushBytes = 0;
  #compactions = 0;
  #compactionRead = 0;
  #compactionWritten = 0;

  private constructor(dir: string, o: ResolvedOptions, state: ManifestState) {
    this.#o = o;
    this.#fs = o.fs;
    this.#dir = dir;
    this.#state = state;
    this.#blockCache = new BlockCache(o.blockCacheBytes);
    this.#rowCache = o.rowCacheBytes > 0 ? new RowCache(o.rowCacheBytes) : undefined;
    this.#tableCache = new TableCache(o.fs, dir, o.maxOpenTables, this.#blockCache);
  }

  /**
   * Opens (or creates) the engine in `dir`: replays the manifest, replays
   * the WAL (truncating a torn tail, refusing corruption), flushes what the
   * WAL held to L0, writes a fresh manifest, and deletes leftover files.
   */
  static async open(dir: string, options?: EngineOptions): Promise<Engine> {
    const o = resolveOptions(options);
    const fs = o.fs;
    await fs.mkdir(dir);
    const current = await readCurrent(fs, dir);
    let state: ManifestState;
    if (current === undefined) {
      await requireNoEngineData(fs, dir);
      state = emptyManifestState();
    } else {
      const manifestPath = joinPath(dir, current);
      state = await recoverManifest(fs, manifestPath);
      await requireNamedFiles(fs, dir, manifestPath, state);
    }
    const e = new Engine(dir, o, state);
    try {
      await e.#recover();
    } catch (err) {
      e.#tableCache.close();
      throw err;
    }
    return e;
  }

  /**
   * Deletes every engine file in `dir` (for a node that installs a Raft
   * snapshot into a clean store). Requires: no engine has `dir` open.
   */
  static async destroy(dir: string, options?: { fs?: FileSystem }): Promise<void> {
    const fs = options?.fs ?? new DenoFileSystem();
    if (
      (await fs.stat(dir)) === undefined &&
      (await fs.list(dir).catch(() => undefined)) === undefined
    ) {
      return;
    }
    for (const name of await fs.list(dir)) {
      if (parseFileNumber(name) !== undefined || name === "CURRENT" || name === "CURRENT.tmp") {
        await fs.remove(joinPath(dir, name));
      }
    }
    await fs.syncDir(dir);
  }

  async #recover(): Promise<void> {
    const fs = this.#fs;
    const s = this.#state;
    const names = await fs.list(this.#dir);
    let maxNumber = 0;
    const wals: number[] = [];
    for (const name of names) {
      const f = parseFileNumber(name);
      if (!f) continue;
      maxNumber = Math.max(maxNumber, f.number);
      if (f.kind === "log" && f.number >= s.logNumber) wals.push(f.number);
    }
    s.nextFileNumber = Math.max(s.nextFileNumber, maxNumber + 1);
    wals.sort((a, b) => a - b);
    this.#currentVersion = s.lastVersion;
    this.#appliedIndex = s.appliedIndex;

    // Replay the WAL into one memtable.
    const mem = new Memtable(0);
    for (let i = 0; i < wals.length; i++) {
      const path = joinPath(this.#dir, walFileName(wals[i]));
      const scan = await readRecords(fs, path);
      for (const r of scan.records) {
        const b = decodeBatchPayload(r.payload, path, r.offset);
        for (const op of b.ops) {
          mem.put(op.key, op.version, op.kind, op.value, op.expiresAtMs);
          if (op.version > this.#currentVersion) this.#currentVersion = op.version;
        }
        if (b.appliedIndex > mem.maxAppliedIndex) mem.maxAppliedIndex = b.appliedIndex;
      }
      if (i !== wals.length - 1) requireSealedEnd(scan, path, "WAL segment");
      else {
        const cut = await cutToValidEnd(fs, path, scan);
        if (cut) this.repairs.push(cut);
      }
    }
    this.#lastAssigned = this.#currentVersion;
    if (mem.maxAppliedIndex > this.#appliedIndex) this.#appliedIndex = mem.maxAppliedIndex;
    this.#pendingAppliedIndex = this.#appliedIndex;

    const ctx = this.#buildContext();
    const edit: VersionEdit = {};
    if (mem.count > 0) {
      const it = mem.iterator();
      it.seek(undefined);
      const r = await writeTables(ctx, it, undefined, Number.POSITIVE_INFINITY);
      edit.newFiles = r.files.map((meta) => ({ level: 0, meta }));
      this.#flushes++;
      this.#flushBytes += r.bytesWritten;
    }
    s.version = s.version.apply(edit);
    s.lastVersion = Math.max(s.lastVersion, this.#currentVersion);
    s.appliedIndex = Math.max(s.appliedIndex, this.#appliedIndex);

    // A new WAL segment, then a new manifest naming it (the manifest switch syncs the dir).
    const walNumber = s.nextFileNumber++;
    const walFile = await fs.create(joinPath(this.#dir, walFileName(walNumber)));
    this.#wal = this.#walWriter(walNumber, walFile);
    this.#mem = new Memtable(walNumber);
    s.logNumber = walNumber;
    const manifestNumber = s.nextFileNumber++;
    this.#manifest = await ManifestWriter.create(fs, this.#dir, manifestNumber, s);

    // Everything the new manifest does not name is obsolete.
    const live = new Set(s.version.fileNumbers());
    let removed = false;
    for (const name of await fs.list(this.#dir)) {
      const f = parseFileNumber(name);
      const stale = name === "CURRENT.tmp" ||
        (f !== undefined &&
          ((f.kind === "log" && f.number !== walNumber) ||
            (f.kind === "sst" && !live.has(f.number)) ||
            (f.kind === "manifest" && f.number !== manifestNumber)));
      if (stale) {
        await fs.remove(joinPath(this.#dir, name));
        removed = true;
      }
    }
    if (removed) await fs.syncDir(this.#dir);
    this.#scheduleBackground();
  }

  #buildContext(): TableBuildContext {
    return {
      fs: this.#fs,
      dir: this.#dir,
      blockSizeBytes: this.#o.blockSizeBytes,
      newFileNumber: () => this.#state.nextFileNumber++,
      slice: {
        sliceMs: backgroundSliceMs,
        restMs: this.#o.backgroundRestMs,
        // Someone waits for it: writers stalled on a full L0 or memtables, flush(), close().
        urgent: () => this.#bgWaiters.length > 0 || this.#manualCompactions > 0 || this.#closing,
      },
    };
  }

  // ---------------------------------------------------------------- writes

  /**
   * Applies `batch` atomically. Ops without an explicit version share one new
   * version (the engine's counter + 1); explicit versions are trusted. The
   * promise resolves after the batch is in the WAL (fsynced unless
   * `sync: false`) and visible to readers, with the batch's version.
   */
  write(batch: WriteBatch, opts?: WriteOptions): Promise<{ version: number }> {
    if (this.#closed || this.#closing) return Promise.reject(new ClosedError("storage engine"));
    if (this.#writeError) return Promise.reject(this.#writeError);
    const appliedIndex = opts?.appliedIndex ?? -1;
    if (
      opts?.appliedIndex !== undefined && (!Number.isSafeInteger(appliedIndex) || appliedIndex < 0)
    ) {
      return Promise.reject(
        new InvalidArgumentError(`appliedIndex must be a safe integer >= 0, got ${appliedIndex}`),
      );
    }
    if (batch.count === 0) return Promise.resolve({ version: this.#currentVersion });
    // byteSize counts 24 bytes of overhead per put; the record may need up to 31, plus a header.
    if (batch.byteSize + 8 * batch.count + 32 > maxWalRecordBytes) {
      return Promise.reject(
        new InvalidArgumentError(
          `a write batch of ${batch.byteSize} bytes exceeds the WAL record limit of ` +
            `${maxWalRecordBytes} bytes; split it`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({
        batch,
        sync: opts?.sync ?? this.#o.syncWrites,
        appliedIndex,
        resolve,
        reject,
      });
      if (this.#commitLoop === undefined) this.#commitLoop = this.#runCommitLoop();
    });
  }

  async #runCommitLoop(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        try {
          await this.#makeRoomForWrite();
        } catch (e) {
          for (const w of this.#queue.splice(0)) w.reject(e);
          break;
        }
        const head = this.#queue[0];
        if (head.batch === undefined) {
          this.#queue.shift();
          try {
            if (head.barrier === "sync") await this.#syncWal();
            else if (this.#mem.count > 0) await this.#rotate();
            head.resolve({ version: this.#currentVersion });
          } catch (e) {
            head.reject(e);
          }
          continue;
        }
        await this.#commitGroup();
        if (this.#mem.approximateBytes >= this.#o.memtableBytes) {
          try {
            await this.#rotate();
          } catch {
            // The old WAL and memtable stay in use; rotation is retried after the next write.
          }
        }
      }
    } finally {
      this.#commitLoop = undefined;
    }
  }

  async #commitGroup(): Promise<void> {
    const q = this.#queue;
    let n = 0;
    let bytes = 0;
    while (
      n < q.length && q[n].batch !== undefined && n < maxGroupCommitRecords &&
      (n === 0 || bytes + q[n].batch!.byteSize <= maxGroupCommitBytes)
    ) {
      bytes += q[n].batch!.byteSize;
      n++;
    }
    const group = q.splice(0, n);
    let sync = false;
    for (let i = 0; i < n && !sync; i++) sync = group[i].sync;
    if (sync) this.#wal.expectAppendDurable();
    // Assign versions in queue order and size the buffer.
    const versions = new Array<number>(n);
    let last = this.#lastAssigned;
    let total = 0;
    let lowest = Number.MAX_SAFE_INTEGER;
    for (let i = 0; i < n; i++) {
      const w = group[i];
      const b = w.batch!;
      const explicit = b.maxExplicitVersion;
      const v = b.needsVersion ? Math.max(last, explicit) + 1 : explicit;
      assert(Number.isSafeInteger(v), "version overflow");
      versions[i] = v;
      if (v > last) last = v;
      for (const ev of b.versions) if ((ev || v) < lowest) lowest = ev || v;
      total += recordHeaderBytes + batchPayloadLength(b, v, w.appliedIndex);
    }
    this.#lastAssigned = last;
    const buf = new Uint8Array(total);
    let at = 0;
    const positions: number[] = [];
    for (let i = 0; i < n; i++) {
      const end = writeBatchPayload(
        buf,
        at + recordHeaderBytes,
        group[i].batch!,
        versions[i],
        group[i].appliedIndex,
        positions,
      );
      at = frameRecordInPlace(buf, at, end - at - recordHeaderBytes);
    }
    assert(at === total, "group buffer filled exactly");
    // A durable group goes into the memtable while its write runs when every
    // version it carries is above the published #currentVersion: reads are
    // capped at that version, so none sees the group before it is
    // acknowledged. If that write fails, the WAL writer is broken and so are
    // the engine's writes (#writeError), so nothing ever publishes those
    // versions. (An explicit version at or below #currentVersion would be
    // visible at once; such a group waits for its write.)
    const early = sync && lowest > this.#currentVersion;
    const mem = this.#mem;
    const wal = this.#wal;
    try {
      if (early) {
        await wal.appendDurable(buf, n, {
          whileWriting: () => this.#insertGroup(mem, group, versions, buf, positions),
        });
      } else if (sync) await wal.appendDurable(buf, n);
      else if (this.#o.walBufferBytes === 0) await wal.append(buf, n);
      else {
        wal.appendBuffered(buf, n);
        if (wal.pendingBytes >= this.#o.walBufferBytes) await wal.writePending();
      }
    } catch (e) {
      if (wal.broken) this.#writeError = wal.broken;
      for (const w of group) w.reject(e);
      return;
    }
    this.#walBytes += total;
    this.#walRecords += n;
    if (sync) this.#walSyncs++;
    if (!early) this.#insertGroup(mem, group, versions, buf, positions);
    for (let i = 0; i < n; i++) {
      const w = group[i];
      // versions[i] is the batch's version: at least every explicit version in it.
      if (versions[i] > this.#currentVersion) this.#currentVersion = versions[i];
      if (w.appliedIndex > mem.maxAppliedIndex) mem.maxAppliedIndex = w.appliedIndex;
      if (w.appliedIndex > this.#pendingAppliedIndex) this.#pendingAppliedIndex = w.appliedIndex;
    }
    if (sync) this.#appliedIndex = this.#pendingAppliedIndex;
    for (let i = 0; i < n; i++) {
      group[i].resolve({ version: versions[i] });
    }
  }

  /**
   * Applies a logged group to the memtable, oldest first (it copies keys and
   * values from the logged buffer). Reads see it once #currentVersion covers
   * its versions.
   */
  #insertGroup(
    mem: Memtable,
    group: PendingWrite[],
    versions: number[],
    buf: Uint8Array,
    positions: number[],
  ): void {
    // Every key's memtable lookups first, so their cache misses overlap (Memtable.warm).
    let n = 0;
    for (let i = 0; i < group.length; i++) n += group[i].batch!.count;
    if (this.#keyLengths.length < n) {
      this.#keyLengths = new Int32Array(Math.max(n, 2 * this.#keyLengths.length));
    }
    const lengths = this.#keyLengths;
    for (let i = 0, k = 0; i < group.length; i++) {
      const b = group[i].batch!;
      for (let j = 0; j < b.count; j++) lengths[k++] = b.keys[j].length;
    }
    mem.warm(buf, positions, lengths, n);
    let p = 0;
    for (let i = 0; i < group.length; i++) {
      const b = group[i].batch!;
      const v = versions[i];
      for (let j = 0; j < b.count; j++) {
        const keyAt = positions[p++];
        const valueAt = positions[p++];
        const keyLength = b.keys[j].length;
        const valueLength = b.values[j].length;
        mem.putFrom(
          buf,
          keyAt,
          keyLength,
          buf,
          valueAt,
          valueLength,
          b.versions[j] || v,
          b.kinds[j],
          b.expiries[j],
        );
        this.#userBytes += keyLength + valueLength;
      }
    }
  }

  async #makeRoomForWrite(): Promise<void> {
    for (;;) {
      if (this.#bgError) throw this.#bgError;
      if (this.#writeError) throw this.#writeError;
      // Stall on L0 only while the background loop may compact it: during close() or a
      // compactAll() it does not, and a writer waiting on it would spin without end (close()
      // waits for that writer; compactAll() compacts L0 itself).
      const stalled = this.#imm.length >= maxImmutableMemtables ||
        (this.#compactsAutomatically() &&
          this.#state.version.levels[0].length >= this.#o.l0StopWritesTrigger);
      if (!stalled) return;
      this.#scheduleBackground();
      await this.#waitBackground();
    }
  }

  /** Fsyncs the current WAL segment: every write before it, and its applied index, is durable. */
  async #syncWal(): Promise<void> {
    await this.#wal.sync();
    this.#walSyncs++;
    this.#appliedIndex = this.#pendingAppliedIndex;
  }

  /** A writer for the new, empty WAL segment `file`. */
  #walWriter(number: number, file: FileHandle): WalWriter {
    return new WalWriter(number, file, 0, {
      bytesPerSync: this.#o.walBytesPerSync,
      preallocateBytes: this.#o.walPreallocateBytes,
    });
  }

  /** Seals the memtable onto a new WAL segment and queues it for flushing. */
  async #rotate(): Promise<void> {
    // Seal the old segment first (synced, unused preallocated space cut off):
    // once a newer segment exists on disk, recovery treats any bad record or
    // leftover byte in an older one as corruption, not a torn tail.
    await this.#wal.seal();
    const number = this.#state.nextFileNumber++;
    const path = joinPath(this.#dir, walFileName(number));
    const file = await this.#fs.create(path);
    try {
      await this.#fs.syncDir(this.#dir);
      await this.#wal.close();
    } catch (e) {
      // The new segment may reach the disk anyway, and then recovery takes the sealed one
      // for an older segment, where a torn append reads as corruption. So nothing more is
      // appended to it: the engine stops taking writes (a restart recovers what it holds).
      this.#writeError ??= e as Error;
      await file.close().catch(() => {});
      await this.#fs.remove(path).catch(() => {});
      throw e;
    }
    this.#appliedIndex = this.#pendingAppliedIndex;
    this.#wal = this.#walWriter(number, file);
    this.#imm.push(this.#mem);
    this.#mem = new Memtable(number);
    this.#scheduleBackground();
  }

  // ------------------------------------------------------------ background

  #withLock<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#lock.then(fn, fn);
    this.#lock = p.catch(() => {});
    return p;
  }

  #waitBackground(): Promise<void> {
    return new Promise((resolve) => this.#bgWaiters.push(resolve));
  }

  #notifyBackground(): void {
    const w = this.#bgWaiters;
    this.#bgWaiters = [];
    for (const f of w) f();
  }

  /** Whether the background loop picks compactions now (not while closing or during compactAll). */
  #compactsAutomatically(): boolean {
    return this.#o.autoCompaction && !this.#closing && this.#manualCompactions === 0;
  }

  #scheduleBackground(): void {
    if (this.#bgLoop !== undefined || this.#closed || this.#bgError) return;
    this.#bgLoop = this.#runBackground();
  }

  async #runBackground(): Promise<void> {
    // Yield first: a loop with nothing to do (no memtable to flush, automatic
    // compaction off) would otherwise end, and clear #bgLoop, before
    // #scheduleBackground stored it, leaving #bgLoop set forever and every
    // later flush() waiting for a loop that never runs.
    await Promise.resolve();
    try {
      for (;;) {
        if (this.#imm.length > 0) {
          await this.#withLock(() => this.#flushOldest());
        } else if (this.#compactsAutomatically()) {
          const did = await this.#withLock(async () => {
            const c = pickCompaction(this.#state.version, this.#o, this.#state.compactPointers);
            if (c === undefined) return false;
            await this.#compact(c);
            return true;
          });
          if (!did) break;
        } else {
          break;
        }
        this.#notifyBackground();
      }
    } catch (e) {
      this.#bgError = e instanceof Error ? e : new Error(String(e));
    } finally {
      this.#bgLoop = undefined;
      this.#notifyBackground();
    }
  }

  /**
   * Logs `edit` durably, then installs it. Edits go one at a time through
   * their own queue rather than the background-job lock: a flush or a
   * compaction holds that lock for seconds, and a history compaction (which
   * a node applies inside its Raft loop) must not wait that long.
   */
  #logAndApply(edit: VersionEdit): Promise<void> {
    const next = this.#manifestQueue.then(() => this.#logAndApplyNow(edit));
    this.#manifestQueue = next.catch(() => {});
    return next;
  }

  async #logAndApplyNow(edit: VersionEdit): Promise<void> {
    edit.nextFileNumber = this.#state.nextFileNumber;
    await this.#manifest.append(edit);
    const s = this.#state;
    s.version = s.version.apply(edit);
    applyScalars(s, edit);
    if (this.#manifest.sizeBytes > this.#o.maxManifestBytes) await this.#rollManifest();
  }

  /** Starts a new manifest holding the whole state; the old one goes once CURRENT moved. */
  async #rollManifest(): Promise<void> {
    const old = this.#manifest;
    const number = this.#state.nextFileNumber++;
    this.#manifest = await ManifestWriter.create(this.#fs, this.#dir, number, this.#state);
    await old.close();
    await this.#fs.remove(old.path);
    await this.#fs.syncDir(this.#dir);
  }

  async #flushOldest(): Promise<void> {
    const m = this.#imm[0];
    // History no reader may still ask for is left out here rather than written and compacted
    // away later: a key overwritten often has most of its memtable versions below the
    // horizon. Tombstones stay: older tables may hold what they delete.
    const it = m.iterator(this.#horizonVersion());
    it.seek(undefined);
    const r = await writeTables(this.#buildContext(), it, undefined, Number.POSITIVE_INFINITY);
    const successor = this.#imm[1] ?? this.#mem;
    const edit: VersionEdit = {
      newFiles: r.files.map((meta) => ({ level: 0, meta })),
      logNumber: successor.walNumber,
      lastVersion: Math.max(this.#state.lastVersion, m.maxVersion),
    };
    if (m.maxAppliedIndex >= 0) edit.appliedIndex = m.maxAppliedIndex;
    await this.#logAndApply(edit);
    this.#imm.shift();
    // Its keys are read from the new table now, which may hold newer entries than cached.
    this.#rowCache?.clear();
    this.#flushes++;
    this.#flushBytes += r.bytesWritten;
    // The manifest now covers the flushed data durably: the WAL segments before it can go.
    for (const name of await this.#fs.list(this.#dir)) {
      const f = parseFileNumber(name);
      if (f?.kind === "log" && f.number < successor.walNumber) {
        await this.#fs.remove(joinPath(this.#dir, name));
      }
    }
    await this.#fs.syncDir(this.#dir);
  }

  /** The oldest version any reader may still ask for. */
  #horizonVersion(): number {
    let h = this.#state.compactedVersion;
    for (const v of this.#pins.keys()) if (v < h) h = v;
    return h;
  }

  async #compact(c: Compaction): Promise<void> {
    const r = await runCompaction(
      this.#buildContext(),
      c,
      this.#tableCache,
      this.#horizonVersion(),
      this.#o.targetFileBytes,
    );
    if (c.level > 0 && c.inputs.length > 0) {
      r.edit.compactPointers = [{ level: c.level, key: c.inputs[c.inputs.length - 1].largest }];
    }
    await this.#logAndApply(r.edit);
    this.#compactions++;
    this.#compactionRead += r.bytesRead;
    this.#compactionWritten += r.bytesWritten;
    if (!c.trivialMove) {
      for (const f of [...c.inputs, ...c.outputInputs]) this.#obsoleteTables.add(f.number);
      await this.#deleteObsoleteTables();
    }
  }

  async #deleteObsoleteTables(): Promise<void> {
    if (this.#obsoleteTables.size === 0) return;
    const live = new Set(this.#state.version.fileNumbers());
    for (const v of this.#usedVersions.keys()) for (const n of v.fileNumbers()) live.add(n);
    let removed = false;
    for (const n of [...this.#obsoleteTables]) {
      if (live.has(n)) continue;
      this.#obsoleteTables.delete(n);
      this.#tableCache.evict(n);
      await this.#fs.remove(joinPath(this.#dir, `${String(n).padStart(6, "0")}.sst`));
      removed = true;
    }
    if (removed) await this.#fs.syncDir(this.#dir);
  }

  #refVersion(): Version {
    const v = this.#state.version;
    this.#usedVersions.set(v, (this.#usedVersions.get(v) ?? 0) + 1);
    return v;
  }

  #unrefVersion(v: Version): void {
    const n = (this.#usedVersions.get(v) ?? 0) - 1;
    if (n > 0) {
      this.#usedVersions.set(v, n);
      return;
    }
    this.#usedVersions.delete(v);
    if (v !== this.#state.version && this.#obsoleteTables.size > 0 && !this.#closed) {
      void this.#withLock(() => this.#deleteObsoleteTables()).catch(() => {});
    }
  }

  // ----------------------------------------------------------------- reads

  #checkReadable(atVersion: number): void {
    if (this.#closed) throw new ClosedError("storage engine");
    if (!Number.isSafeInteger(atVersion) || atVersion < 0) {
      throw new InvalidArgumentError(`atVersion must be a safe integer >= 0, got ${atVersion}`);
    }
    // The horizon is at most the compacted version: reads at or above it (nearly
    // all) skip the walk over pinned snapshots.
    if (atVersion >= this.#state.compactedVersion) return;
    const floor = this.#horizonVersion();
    if (atVersion < floor) throw new CompactedError(atVersion, this.#state.compactedVersion);
  }

  /**
   * The version a read at `atVersion` (default: the newest) reads at: never
   * above #currentVersion, so a durable group in the memtable before its
   * fsync stays invisible until it is acknowledged.
   */
  #readVersion(atVersion: number | undefined): number {
    const current = this.#currentVersion;
    this.#checkReadable(atVersion ?? current);
    return atVersion === undefined || atVersion > current ? current : atVersion;
  }

  /**
   * The raw newest entry of `key` at or below `atVersion` when it can be found
   * without any I/O (memtables, open tables, cached blocks); `blockNotCached`
   * when disk must be read.
   */
  #getEntryCached(
    key: Uint8Array,
    atVersion: number,
    fillCache: boolean,
  ): Entry | undefined | typeof blockNotCached {
    const e = this.#mem.get(key, atVersion);
    return e !== undefined ? e : this.#getOlderEntryCached(key, atVersion, fillCache);
  }

  /** #getEntryCached below the active memtable: immutable memtables, then tables. */
  #getOlderEntryCached(
    key: Uint8Array,
    atVersion: number,
    fillCache: boolean,
  ): Entry | undefined | typeof blockNotCached {
    let e: Entry | undefined;
    for (let i = this.#imm.length - 1; i >= 0; i--) {
      e = this.#imm[i].get(key, atVersion);
      if (e !== undefined) return e;
    }
    const rows = this.#rowCache;
    let hash = -1;
    // Only a read at or above every version the tables hold sees their newest entry.
    const fill = rows !== undefined && fillCache && atVersion >= this.#state.lastVersion;
    if (rows !== undefined) {
      hash = bloomHash(key);
      const cached = rows.get(key, hash);
      // The newest entry of the tables: the answer for any version at or above its own.
      if (cached !== undefined && cached.version <= atVersion) return cached;
    }
    const v = this.#state.version;
    let target: Uint8Array | undefined;
    for (let level = 0; level < levelCount; level++) {
      const files = v.levels[level];
      if (files.length === 0) continue;
      for (let i = 0; i < files.length; i++) {
        const f = level === 0 ? files[i] : v.fileForKey(level, key);
        if (f === undefined) break;
        if (
          level === 0 && (compareKeys(key, f.smallestKey) < 0 || compareKeys(key, f.largestKey) > 0)
        ) {
          continue;
        }
        const r = this.#tableCache.peek(f.number);
        if (r === undefined) return blockNotCached;
        if (hash < 0) hash = bloomHash(key);
        if (target === undefined) {
          if (internalKeyLength(key) <= this.#scratch.length) {
            target = this.#scratch.subarray(0, writeInternalKey(this.#scratch, 0, key, atVersion));
          } else {
            target = encodeInternalKey(key, atVersion);
          }
        }
        const got = r.getCached(key, target, hash);
        if (got !== undefined) {
          if (fill && got !== blockNotCached) rows!.put(hash, got);
          return got;
        }
        if (level > 0) break;
      }
    }
    // No table holds the key at any version: that is cached too, as a tombstone older than
    // everything (readers ask for absent keys as well, and each costs bloom probes and seeks).
    if (fill) rows!.put(hash, absentIn(key));
    return undefined;
  }

  /** The raw newest entry of `key` at or below `atVersion` (tombstones included). */
  async #getEntry(key: Uint8Array, atVersion: number): Promise<Entry | undefined> {
    let e = this.#mem.get(key, atVersion);
    if (e !== undefined) return e;
    for (let i = this.#imm.length - 1; i >= 0; i--) {
      e = this.#imm[i].get(key, atVersion);
      if (e !== undefined) return e;
    }
    const v = this.#refVersion();
    try {
      const hash = bloomHash(key);
      let target: Uint8Array | undefined;
      for (let level = 0; level < levelCount; level++) {
        const files = v.levels[level];
        if (files.length === 0) continue;
        if (level === 0) {
          for (const f of files) {
            if (compareKeys(key, f.smallestKey) < 0 || compareKeys(key, f.largestKey) > 0) {
              continue;
            }
            target ??= encodeInternalKey(key, atVersion);
            e = await this.#tableGet(f.number, key, target, hash);
            if (e !== undefined) return e;
          }
        } else {
          const f = v.fileForKey(level, key);
          if (f === undefined) continue;
          target ??= encodeInternalKey(key, atVersion);
          e = await this.#tableGet(f.number, key, target, hash);
          if (e !== undefined) return e;
        }
      }
      return undefined;
    } finally {
      this.#unrefVersion(v);
    }
  }

  async #tableGet(
    n: number,
    key: Uint8Array,
    target: Uint8Array,
    hash: number,
  ): Promise<Entry | undefined> {
    const r = await this.#tableCache.acquire(n);
    try {
      return await r.get(key, target, hash);
    } finally {
      r.unref();
    }
  }

  /**
   * `get` without waiting when no disk read is needed (memtables, open
   * tables, cached blocks): the value, or `readNeedsIo` when only the async
   * `get` can answer. Hot read paths use it to skip a promise per read.
   */
  getNow(key: Uint8Array, opts?: GetOptions): KV | undefined | typeof readNeedsIo {
    const at = this.#readVersion(opts?.atVersion);
    return this.#answerNow(this.#getEntryCached(key, at, opts?.fillCache ?? true), opts?.nowMs);
  }

  /** What getNow reports for a raw entry found without waiting. */
  #answerNow(
    e: Entry | undefined | typeof blockNotCached,
    nowMs: number | undefined,
  ): KV | undefined | typeof readNeedsIo {
    if (e === blockNotCached) return readNeedsIo;
    if (e === undefined || e.kind === EntryKind.delete) return undefined;
    return toKV(e, nowMs, this.#o.clock, false);
  }

  /**
   * `getNow` for many keys at one version (a pipeline of reads): the active
   * memtable looks all of them up together (Memtable.getMany: their cache
   * misses overlap), older memtables and tables one by one. `out[i]` answers
   * `keys[i]`.
   */
  getManyNow(
    keys: Uint8Array[],
    opts: GetOptions | undefined,
    out: (KV | undefined | typeof readNeedsIo)[],
  ): void {
    const at = this.#readVersion(opts?.atVersion);
    const found = this.#foundScratch;
    this.#mem.getMany(keys, at, found);
    const rows = this.#rowCache;
    if (rows !== undefined && this.#imm.length === 0) {
      // The keys no memtable has, looked up in the row cache together (their misses overlap).
      const hashes = this.#hashScratch;
      hashes.length = keys.length;
      for (let i = 0; i < keys.length; i++) {
        hashes[i] = found[i] === undefined ? bloomHash(keys[i]) : 0;
      }
      rows.getMany(keys, hashes, at, found);
    }
    out.length = keys.length;
    for (let i = 0; i < keys.length; i++) {
      const e = found[i] ?? this.#getOlderEntryCached(keys[i], at, opts?.fillCache ?? true);
      out[i] = this.#answerNow(e, opts?.nowMs);
    }
    found.length = 0;
  }

  /**
   * The newest version of `key` at or below `atVersion`, or undefined when it
   * is absent, deleted or expired. Below the compacted version: CompactedError.
   */
  async get(key: Uint8Array, opts?: GetOptions): Promise<KV | undefined> {
    const at = this.#readVersion(opts?.atVersion);
    let e = this.#getEntryCached(key, at, opts?.fillCache ?? true);
    if (e === blockNotCached) e = await this.#getEntry(key, at);
    if (e === undefined || e.kind === EntryKind.delete) return undefined;
    return toKV(e, opts?.nowMs, this.#o.clock, false);
  }

  #mergedIterator(v: Version): MergingIterator {
    const children: InternalIterator[] = [this.#mem.iterator()];
    for (let i = this.#imm.length - 1; i >= 0; i--) children.push(this.#imm[i].iterator());
    for (const f of v.levels[0]) children.push(new LazyTableIterator(f, this.#tableCache));
    for (let l = 1; l < levelCount; l++) {
      if (v.levels[l].length > 0) children.push(new LevelIterator(v.levels[l], this.#tableCache));
    }
    return new MergingIterator(children);
  }

  /**
   * Live keys in [start, end) (or under `prefix`) as of one version, in key
   * order (or reverse). The view is fixed when the scan starts: later writes
   * and compactions do not change what it returns.
   */
  async *scan(opts: ScanOptions = {}): AsyncIterableIterator<KV> {
    const at = this.#readVersion(opts.atVersion);
    const limit = opts.limit ?? Number.POSITIVE_INFINITY;
    if (!(limit > 0)) return;
    let start = opts.start;
    let end = opts.end;
    if (opts.prefix !== undefined && opts.prefix.length > 0) {
      if (start === undefined || compareKeys(start, opts.prefix) < 0) start = opts.prefix;
      const pe = prefixEnd(opts.prefix);
      if (pe !== undefined && (end === undefined || compareKeys(pe, end) < 0)) end = pe;
    }
    const now = opts.nowMs ?? this.#o.clock.wallMs();
    const clock = this.#o.clock;
    const keysOnly = opts.keysOnly ?? false;
    const v = this.#refVersion();
    const it = this.#mergedIterator(v);
    const reversed: KV[] = [];
    try {
      await it.seek(start, Number.MAX_SAFE_INTEGER);
      let lastKey: Uint8Array | undefined;
      let count = 0;
      while (it.valid()) {
        const e = it.entry();
        if (end !== undefined && compareKeys(e.key, end) >= 0) break;
        if (lastKey !== undefined && equalBytes(lastKey, e.key)) {
          // Already decided for this key.
        } else if (e.version <= at) {
          lastKey = e.key;
          if (e.kind !== EntryKind.delete) {
            const kv = toKV(e, now, clock, keysOnly);
            if (kv !== undefined) {
              if (opts.reverse) {
                reversed.push(kv);
                // Keep only the last `limit` (amortized: trim when twice as many).
                if (reversed.length >= 2 * limit) reversed.splice(0, reversed.length - limit);
              } else {
                yield kv;
                if (++count >= limit) break;
              }
            }
          }
        }
        const p = it.next();
        if (p !== undefined) await p;
      }
    } finally {
      it.close();
      this.#unrefVersion(v);
    }
    const stop = Math.max(0, reversed.length - limit);
    for (let i = reversed.length - 1; i >= stop; i--) yield reversed[i];
  }

  /**
   * Every stored version (tombstones included) of the keys in range with
   * version > afterVersion, in key order then newest first. A node sorts these
   * by version to replay watch history. Requires: afterVersion + 1 >= the
   * compacted version (older history may be gone: CompactedError).
   */
  async *history(opts: HistoryOptions = {}): AsyncIterableIterator<HistoryEntry> {
    const after = opts.afterVersion ?? Math.max(0, this.#horizonVersion() - 1);
    // Events after `after` start at after + 1, which must not be below the compacted version.
    this.#checkReadable(after + 1);
    let start = opts.start;
    let end = opts.end;
    if (opts.prefix !== undefined && opts.prefix.length > 0) {
      start = opts.prefix;
      end = prefixEnd(opts.prefix);
    }
    const upTo = this.#currentVersion; // not a durable group still being synced
    const v = this.#refVersion();
    const it = this.#mergedIterator(v);
    try {
      await it.seek(start);
      let lastKey: Uint8Array | undefined;
      let lastVersion = -1;
      while (it.valid()) {
        const e = it.entry();
        if (end !== undefined && compareKeys(e.key, end) >= 0) break;
        const dup = lastKey !== undefined && e.version === lastVersion &&
          equalBytes(lastKey, e.key);
        if (!dup && e.version > after && e.version <= upTo) {
          const h: HistoryEntry = {
            key: e.key,
            value: e.value,
            version: e.version,
            deleted: e.kind === EntryKind.delete,
          };
          if (e.expiresAtMs > 0) h.expiresAtMs = e.expiresAtMs;
          yield h;
        }
        lastKey = e.key;
        lastVersion = e.version;
        const p = it.next();
        if (p !== undefined) await p;
      }
    } finally {
      it.close();
      this.#unrefVersion(v);
    }
  }

  /** Pins the current version: compaction keeps what reads at it need until release(). */
  snapshot(): { version: number; release(): void } {
    if (this.#closed) throw new ClosedError("storage engine");
    const version = this.#currentVersion;
    this.#pins.set(version, (this.#pins.get(version) ?? 0) + 1);
    let released = false;
    return {
      version,
      release: () => {
        if (released) return;
        released = true;
        const n = (this.#pins.get(version) ?? 1) - 1;
        if (n === 0) this.#pins.delete(version);
        else this.#pins.set(version, n);
      },
    };
  }

  /**
   * Drops history older than `version` (the newest version <= it of each key
   * is kept); later reads below it fail with CompactedError. Durable on
   * return; space is reclaimed as compactions rewrite the data.
   */
  async compactHistory(version: number): Promise<void> {
    if (this.#closed) throw new ClosedError("storage engine");
    if (!Number.isSafeInteger(version) || version < 0 || version > this.#currentVersion) {
      throw new InvalidArgumentError(
        `compactHistory(${version}): must be between 0 and the current version ${this.#currentVersion}`,
      );
    }
    if (version <= this.#state.compactedVersion) return;
    // Make every write up to `version` durable first: a crash must never leave a
    // compacted version above the recovered current version.
    await this.#wal.sync();
    this.#appliedIndex = Math.max(this.#appliedIndex, this.#pendingAppliedIndex);
    await this.#logAndApply({ compactedVersion: version });
  }

  /**
   * Makes every write accepted so far durable, and with it the applied index
   * they carry, by fsyncing the WAL; unlike `flush` it writes no table, so a
   * caller that only needs durability (a node cutting its Raft log) does not
   * multiply compaction work.
   */
  async sync(): Promise<void> {
    await this.#barrier("sync");
  }

  #barrier(kind: "rotate" | "sync"): Promise<{ version: number }> {
    if (this.#closed || this.#closing) return Promise.reject(new ClosedError("storage engine"));
    return new Promise<{ version: number }>((resolve, reject) => {
      this.#queue.push({
        batch: undefined,
        barrier: kind,
        sync: true,
        appliedIndex: -1,
        resolve,
        reject,
      });
      if (this.#commitLoop === undefined) this.#commitLoop = this.#runCommitLoop();
    });
  }

  /** Flushes the memtable to an L0 table and waits for the flush. */
  async flush(): Promise<void> {
    await this.#barrier("rotate");
    while (this.#imm.length > 0) {
      if (this.#bgError) throw this.#bgError;
      this.#scheduleBackground();
      await this.#waitBackground();
    }
    if (this.#bgError) throw this.#bgError;
  }

  /**
   * Flushes, then compacts every level into the next one down to the deepest
   * non-empty level, so all data ends up rewritten once with history and
   * tombstones collapsed (tests and operators use it to force compaction).
   */
  async compactAll(): Promise<void> {
    await this.flush();
    this.#manualCompactions++;
    try {
      let deepest = 0;
      for (let l = 0; l < levelCount; l++) {
        if (this.#state.version.levels[l].length > 0) deepest = l;
      }
      const bottom = Math.max(1, deepest);
      for (let level = 0; level < bottom && level < maxLevel; level++) {
        await this.#withLock(async () => {
          const v = this.#state.version;
          if (v.levels[level].length === 0) return;
          const c = planCompaction(v, level, v.levels[level].slice(), "manual", false);
          await this.#compact(c);
        });
      }
    } finally {
      this.#manualCompactions--;
    }
    this.#scheduleBackground();
  }

  /** Waits until no flush or compaction is running or needed. */
  async waitForBackground(): Promise<void> {
    while (this.#bgLoop !== undefined) await this.#bgLoop;
    if (this.#bgError) throw this.#bgError;
  }

  /** Counters, gauges and per-level sizes. */
  stats(): EngineStats {
    const v = this.#state.version;
    const userBytes = this.#userBytes;
    const written = this.#walBytes + this.#flushBytes + this.#compactionWritten;
    const lookups = this.#blockCache.hits + this.#blockCache.misses;
    const s: EngineStats = {
      levels: v.levels.map((files, level) => ({
        level,
        files: files.length,
        bytes: v.levelBytes(level),
        entries: files.reduce((n, f) => n + f.entryCount, 0),
      })),
      memtableBytes: this.#mem.approximateBytes,
      immutableMemtables: this.#imm.length,
      currentVersion: this.#currentVersion,
      compactedVersion: this.#state.compactedVersion,
      appliedIndex: this.#appliedIndex,
      userBytesWritten: userBytes,
      walBytesWritten: this.#walBytes,
      walRecords: this.#walRecords,
      walSyncs: this.#walSyncs,
      recordsPerSync: this.#walSyncs === 0 ? 0 : this.#walRecords / this.#walSyncs,
      flushes: this.#flushes,
      flushBytesWritten: this.#flushBytes,
      compactions: this.#compactions,
      compactionBytesRead: this.#compactionRead,
      compactionBytesWritten: this.#compactionWritten,
      writeAmplification: userBytes === 0 ? 0 : written / userBytes,
      blockCacheBytes: this.#blockCache.bytes,
      blockCacheHitRate: lookups === 0 ? 0 : this.#blockCache.hits / lookups,
      rowCacheHits: this.#rowCache?.hits ?? 0,
      rowCacheMisses: this.#rowCache?.misses ?? 0,
      openTables: this.#tableCache.size,
      pendingCompactionBytes: pendingCompactionBytes(v, this.#o),
    };
    if (this.#bgError) s.backgroundError = this.#bgError.message;
    return s;
  }

  /** Multi-line description of the levels (for tests and debugging). */
  describeLevels(): string {
    return this.#state.version.describe();
  }

  /** Highest version written. */
  get currentVersion(): number {
    return this.#currentVersion;
  }

  /** Reads below this version fail with CompactedError. */
  get compactedVersion(): number {
    return this.#state.compactedVersion;
  }

  /** Applied index of the last durable write that carried one (-1 when none). */
  get appliedIndex(): number {
    return this.#appliedIndex;
  }

  /** Drains queued writes, stops background work, syncs the WAL and closes files. */
  async close(): Promise<void> {
    if (this.#closed || this.#closing) return;
    this.#closing = true;
    while (this.#commitLoop !== undefined) await this.#commitLoop;
    while (this.#bgLoop !== undefined) await this.#bgLoop;
    await this.#lock;
    await this.#manifestQueue;
    this.#closed = true;
    try {
      await this.#wal.close();
    } catch (e) {
      if (!(e instanceof KVError)) throw e;
    } finally {
      await this.#manifest.close();
      this.#tableCache.close();
    }
  }

  /** Same as close(), for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The row cache's entry for a key no table holds: a tombstone at version 0. */
function absentIn(key: Uint8Array): Entry {
  return { key, version: 0, kind: EntryKind.delete, value: emptyBytes, expiresAtMs: 0 };
}

/**
 * The reader-facing view of an entry, or undefined when it is a tombstone or
 * expired. Key and value are views of engine memory (immutable blocks or
 * logged buffers), not copies: callers must treat them as read-only.
 */
function toKV(
  e: Entry,
  nowMs: number | undefined,
  clock: Clock,
  keysOnly: boolean,
): KV | undefined {
  if (e.kind === EntryKind.delete) return undefined;
  if (e.expiresAtMs > 0 && e.expiresAtMs <= (nowMs ?? clock.wallMs())) return undefined;
  const kv: KV = { key: e.key, value: keysOnly ? emptyBytes : e.value, version: e.version };
  if (e.expiresAtMs > 0) kv.expiresAtMs = e.expiresAtMs;
  return kv;
}
