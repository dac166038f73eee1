/**
 * The durable Raft log: hard state, entries and the snapshot (compaction)
 * point, in segment files of framed records (the storage WAL framing,
 * lib/storage/record_log.ts; layout in docs/FORMATS.md, "Raft log"). An
 * in-memory MemoryStorage mirrors what is on disk so the pure Raft core can
 * read the log synchronously.
 *
 * - One `save()` = one write and (when asked) one fsync, whatever the number
 *   of entries: the driver hands it a whole Ready, so proposals that arrive
 *   together share the fsync (group commit).
 * - A save may let a hard state whose commit index alone moved wait
 *   (`lazyCommit`): it is written with the store's next write, cut or close,
 *   or by `writeDeferredHardState`. A leader saves so, since its commit moves
 *   with every write: one file operation less per write. The commit index
 *   may then lag on disk; a restart re-learns it (and the driver raises it
 *   to the applied index).
 * - Entries appended at index i replace any entries >= i, on replay too, so a
 *   truncated conflicting suffix stays truncated across restarts.
 * - Each new segment starts by restating the snapshot, the hard state and the
 *   live entries, so the older ones can be deleted once it is in place. It is
 *   written beside later saves (under a temporary name) and takes over once it
 *   is durable, adding what changed meanwhile: the log is never held up for
 *   rewriting megabytes of entries or deleting files.
 * - The open segment keeps zero-filled space ahead of its appends, and a
 *   durable save is one durable write into it (on the real disk an O_DSYNC
 *   write by the durable-write thread): no file growth to commit (WalWriter).
 *   Unlike the engine, the log does not wake that thread ahead of a write
 *   (WalWriter.expectAppendDurable): the thread's wait awake costs CPU the
 *   other nodes on a small host need (3 nodes on 2 cores, 64 x 1 gRPC
 *   writes, three paired runs: 22,400 writes/s with it, 23,700 without).
 * - A torn tail or unused space of the newest segment is cut off at open;
 *   an older one (restated in full by the next) is read up to its last valid
 *   record. A damaged record that later records vouch for is a
 *   CorruptionError with file and offset.
 *
 * @module
 */

import { crashAt } from "../common/failpoints.ts";
import { raftLogPreallocateBytes, raftRecordBytes, raftSegmentBytes } from "../common/limits.ts";
import { assert } from "../common/assert.ts";
import { ByteReader, ByteWriter, concatBytes, DecodeError } from "../common/bytes.ts";
import { CorruptionError } from "../common/errors.ts";
import {
  decodeEntry,
  decodeHardState,
  decodeSnapshot,
  encodeEntry,
  encodeHardState,
  encodeSnapshot,
} from "../raft/codec.ts";
import { MemoryStorage, type RaftStorage } from "../raft/storage.ts";
import type { ConfState, Entry, HardState, Snapshot } from "../raft/types.ts";
import { type FileSystem, joinPath } from "../storage/fs.ts";
import { cutToValidEnd, frameRecord, scanRecords } from "../storage/record_log.ts";
import { WalWriter } from "../storage/wal_writer.ts";

/** Raft log record kinds. Never renumber. */
export const enum RaftRecordKind {
  Entries = 1,
  HardState = 2,
  Snapshot = 3,
}

const segmentSuffix = ".rlog";
/** A next segment still being written; deleted at open (the older segments hold it all). */
const preparingSuffix = `${segmentSuffix}.tmp`;
/** Entries restated per write while a next segment is prepared (the thread is yielded between). */
const restateChunkBytes = 256 * 1024;

function segmentName(n: number): string {
  return `${String(n).padStart(6, "0")}${segmentSuffix}`;
}

/** The name segment `n` has while it is prepared. */
function preparingName(n: number): string {
  return `${String(n).padStart(6, "0")}${preparingSuffix}`;
}

/** What the store holds after open (for the driver's recovery). */
export interface RecoveredLog {
  hardState: HardState;
  snapshot: Snapshot;
  firstIndex: number;
  lastIndex: number;
}

/** A next segment being written beside saves (see `#prepareNext`). */
interface NextSegment {
  number: number;
  path: string;
  /** Last index its head restates. */
  restatedLast: number;
  /**
   * The log changed under the head since it was taken (a snapshot from the
   * leader, or a save that rewrote entries the head restates): it starts over.
   */
  stale: boolean;
  /** Set once the head is written and synced. */
  writer?: WalWriter;
  failed?: unknown;
  /** Settles once it is written and synced, or failed (never rejects). */
  written: Promise<void>;
  /** Settles once it also took over (or someone else dealt with it). */
  done: Promise<void>;
}

/** Durable RaftStorage. */
export class RaftLogStore implements RaftStorage {
  readonly memory: MemoryStorage;
  /** What opening repaired (a torn tail cut off the newest segment), for the owner to log. */
  readonly repairs: string[] = [];
  #fs: FileSystem;
  #dir: string;
  /** Numbers of the segment files on disk, oldest first; the last is open for appends. */
  #segments: number[];
  #writer: WalWriter;
  /** The hard state in memory has a newer commit index than the one last written. */
  #hardStateBehind = false;
  /**
   * Size of the open segment when it was started or opened: what it
   * restates. Growth beyond it is what rotation and compaction measure, so
   * a live log larger than a segment is not rewritten on every save.
   */
  #segmentBaseBytes: number;
  /** Size of the open segment at the last cut (or when it was started or opened). */
  #cutBaseBytes: number;
  #next: NextSegment | undefined;
  /** A failed switch to a next segment outside a save: the next save reports it. */
  #failure: unknown;
  /** Deletion of replaced segments, beside later saves. */
  #removals: Promise<void> = Promise.resolve();
  #writeBuffer = new ByteWriter(4096);
  /** Serializes save and compact: both append to (and compact rotates) the open segment. */
  #lock: Promise<unknown> = Promise.resolve();
  /** fsyncs issued (for stats and benchmarks). */
  syncCount = 0;
  /** Writes issued. */
  writeCount = 0;

  private constructor(
    fs: FileSystem,
    dir: string,
    memory: MemoryStorage,
    segments: number[],
    writer: WalWriter,
  ) {
    this.#fs = fs;
    this.#dir = dir;
    this.memory = memory;
    this.#segments = segments;
    this.#writer = writer;
    this.#segmentBaseBytes = writer.sizeBytes;
    this.#cutBaseBytes = writer.sizeBytes;
  }

  /**
   * Opens (or creates) the log in `dir`. `bootstrapConf` is the membership of
   * a brand-new log; an existing log keeps the one it recorded.
   */
  static async open(
    fs: FileSystem,
    dir: string,
    groupId: number,
    bootstrapConf: ConfState,
  ): Promise<RaftLogStore> {
    await fs.mkdir(dir);
    const repairs: string[] = [];
    const listed = await fs.list(dir);
    const unfinished = listed.filter((n) => n.endsWith(preparingSuffix));
    for (const name of unfinished) await fs.remove(joinPath(dir, name));
    if (unfinished.length > 0) await fs.syncDir(dir);
    // By number, not by name: 1000000.rlog comes after 999999.rlog.
    const numberOf = (name: string) => Number(name.slice(0, -segmentSuffix.length));
    const names = listed.filter((n) =>
      n.endsWith(segmentSuffix) && Number.isSafeInteger(numberOf(n))
    )
      .sort((a, b) => numberOf(a) - numberOf(b));
    const memory = new MemoryStorage(bootstrapConf, groupId);
    const segments: number[] = [];
    let lastHasMarkers = false;
    for (const [i, name] of names.entries()) {
      const number = numberOf(name);
      const path = joinPath(dir, name);
      const scan = scanRecords(await fs.readFile(path), path);
      const isLast = i === names.length - 1;
      // A segment followed by another is restated by it in full (see #switchToNext), so its
      // end may be unsealed: a torn write or preallocated zeros there lose nothing.
      if (isLast) lastHasMarkers = scan.markers;
      for (const rec of scan.records) {
        try {
          replayRecord(memory, rec.payload);
        } catch (e) {
          if (e instanceof DecodeError) {
            throw new CorruptionError(
              path,
              rec.offset,
              `undecodable raft log record: ${e.message}`,
            );
          }
          throw e;
        }
      }
      if (isLast) {
        const cut = await cutToValidEnd(fs, path, scan);
        if (cut) repairs.push(cut);
      }
      segments.push(number);
    }
    let writer: WalWriter;
    if (segments.length === 0) {
      segments.push(1);
      const file = await fs.create(joinPath(dir, segmentName(1)));
      await fs.syncDir(dir);
      writer = new WalWriter(1, file, 0, { preallocateBytes: raftLogPreallocateBytes });
    } else {
      const last = segments[segments.length - 1];
      const file = await fs.open(joinPath(dir, segmentName(last)));
      // What a killed process left in the page cache is made durable before anything is
      // appended after it: the writer takes the segment for durable, and a one-step durable
      // append (an O_DSYNC write) flushes only its own bytes, not an unsynced tail before them.
      await file.syncData();
      writer = new WalWriter(last, file, await file.size(), {
        preallocateBytes: raftLogPreallocateBytes,
        markers: lastHasMarkers,
      });
    }
    const store = new RaftLogStore(fs, dir, memory, segments, writer);
    store.repairs.push(...repairs);
    return store;
  }

  /** What was recovered (hard state, snapshot point, index range). */
  recovered(): RecoveredLog {
    return {
      hardState: this.memory.hardState(),
      snapshot: this.memory.snapshot(),
      firstIndex: this.memory.firstIndex(),
      lastIndex: this.memory.lastIndex(),
    };
  }

  // RaftStorage, served from memory.
  initialState(): { hardState: HardState; confState: ConfState } {
    return this.memory.initialState();
  }
  entries(lo: number, hi: number, maxBytes?: number): Entry[] {
    return this.memory.entries(lo, hi, maxBytes);
  }
  term(index: number): number {
    return this.memory.term(index);
  }
  firstIndex(): number {
    return this.memory.firstIndex();
  }
  lastIndex(): number {
    return this.memory.lastIndex();
  }
  snapshot(): Snapshot {
    return this.memory.snapshot();
  }

  /**
   * Persists one Ready's worth of state with one write, and one fsync when
   * `sync`. The in-memory mirror is updated only after the write succeeded.
   * Order inside the write: snapshot, entries, hard state. `onWritten` runs
   * once the write is durable when `sync` (once it is written otherwise), a
   * little before the promise resolves.
   */
  save(
    rd: { hardState?: HardState; entries: Entry[]; snapshot?: Snapshot },
    sync: boolean,
    lazyCommit = false,
    onWritten?: () => void,
  ): Promise<void> {
    return this.#exclusive(() => this.#save(rd, sync, lazyCommit, onWritten));
  }

  /** A commit index saved with `lazyCommit` is not on disk yet. */
  get hardStateBehind(): boolean {
    return this.#hardStateBehind;
  }

  /** Writes (without a sync) a hard state that a `lazyCommit` save left in memory. */
  writeDeferredHardState(): Promise<void> {
    return this.#exclusive(async () => {
      if (!this.#hardStateBehind) return;
      if (this.#failure !== undefined) throw this.#failure;
      await this.#writeDeferred();
    });
  }

  /** The hard state in memory as a record (every write after a `lazyCommit` save carries it). */
  #hardStateRecord(): Uint8Array {
    // A lazily saved commit index may cover entries not written yet (a write-behind leader's
    // held ones): on disk it never passes the log it is written with.
    const hs = this.memory.hardState();
    return frameRecord(
      hardStatePayload({ ...hs, commit: Math.min(hs.commit, this.memory.lastIndex()) }),
    );
  }

  /** Appends (unsynced) the hard state a `lazyCommit` save left in memory, if any. */
  async #writeDeferred(): Promise<void> {
    if (!this.#hardStateBehind) return;
    await this.#writer.append(this.#hardStateRecord(), 1);
    this.writeCount++;
    this.#hardStateBehind = false;
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => {});
    return run;
  }

  async #save(
    rd: { hardState?: HardState; entries: Entry[]; snapshot?: Snapshot },
    sync: boolean,
    lazyCommit: boolean,
    onWritten: (() => void) | undefined,
  ): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    if (
      lazyCommit && rd.hardState !== undefined && !sync && rd.entries.length === 0 &&
      rd.snapshot === undefined && onlyCommitMoved(this.memory.hardState(), rd.hardState)
    ) {
      this.memory.setHardState(rd.hardState);
      this.#hardStateBehind = true;
      return;
    }
    const w = this.#writeBuffer;
    const records: Uint8Array[] = [];
    if (rd.snapshot) records.push(frameRecord(snapshotPayload(rd.snapshot)));
    if (rd.entries.length > 0) records.push(...entryRecords(rd.entries, w));
    if (rd.hardState) records.push(frameRecord(hardStatePayload(rd.hardState)));
    else if (this.#hardStateBehind && records.length > 0) records.push(this.#hardStateRecord());
    if (records.length > 0) {
      const buf = records.length === 1 ? records[0] : concatBytes(...records);
      if (sync) {
        await this.#writer.appendDurable(buf, records.length, { onWritten });
        this.syncCount++;
      } else {
        await this.#writer.append(buf, records.length);
        onWritten?.();
      }
      if (rd.entries.length > 0) crashAt("crash-after-log-write");
      this.writeCount++;
      this.#hardStateBehind = false;
    }
    const next = this.#next;
    if (
      next !== undefined &&
      (rd.snapshot !== undefined ||
        (rd.entries.length > 0 && rd.entries[0].index <= next.restatedLast))
    ) {
      // Appending past the head is what the switch carries over; anything else outdates it.
      // A rewritten suffix the switch would restate from cannot be: a cut may since have
      // dropped its start, leaving stale head entries past the log's end (crash test seed
      // 4018193).
      next.stale = true;
    }
    if (rd.snapshot) this.memory.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) this.memory.append(rd.entries);
    if (rd.hardState) this.memory.setHardState(rd.hardState);
    if (this.#writer.sizeBytes - this.#segmentBaseBytes >= raftSegmentBytes) this.#prepareNext();
    if (this.#next?.writer !== undefined || this.#next?.failed !== undefined) {
      await this.#switchToNext();
    }
  }

  /**
   * Bytes appended to the open segment since the log was last cut (or the
   * segment was started or opened): the growth log compaction triggers on.
   */
  get bytesSinceCut(): number {
    return this.#writer.sizeBytes - this.#cutBaseBytes;
  }

  /**
   * Records a local snapshot at `index` (already applied by the state
   * machine) and drops the entries it covers from memory; durable before it
   * returns. A new segment is prepared beside later saves so that the old
   * ones can be deleted (`settle` waits for that).
   */
  compact(index: number, conf: ConfState, data: Uint8Array): Promise<Snapshot> {
    return this.#exclusive(() => this.#compact(index, conf, data));
  }

  async #compact(index: number, conf: ConfState, data: Uint8Array): Promise<Snapshot> {
    if (index <= this.memory.snapshot().meta.index) return this.memory.snapshot();
    const snap = this.memory.createSnapshot(index, conf, data);
    const records = [frameRecord(snapshotPayload(snap))];
    if (this.#hardStateBehind) records.push(this.#hardStateRecord());
    await this.#writer.appendDurable(concatBytes(...records), records.length);
    this.#hardStateBehind = false;
    this.syncCount++;
    this.memory.compact(index);
    this.#cutBaseBytes = this.#writer.sizeBytes;
    this.#prepareNext();
    return snap;
  }

  /**
   * Starts writing the next segment beside later saves, under a temporary
   * name: the snapshot, the hard state and the live entries as they are now,
   * then an fsync. Once written it takes over (`#switchToNext`), by itself
   * or at a save that finds it ready. Restating the entries (up to the
   * catch-up tail, 2 MiB) and syncing them took the log 20-60 ms when saves
   * waited for it.
   */
  #prepareNext(): void {
    if (this.#next !== undefined) return;
    const number = this.#segments[this.#segments.length - 1] + 1;
    const path = joinPath(this.#dir, preparingName(number));
    const snapshot = this.memory.snapshot();
    const hardState = this.memory.hardState();
    const first = this.memory.firstIndex();
    const last = this.memory.lastIndex();
    const live = last >= first ? this.memory.entries(first, last + 1) : [];
    const next: NextSegment = {
      number,
      path,
      restatedLast: last,
      stale: false,
      written: Promise.resolve(),
      done: Promise.resolve(),
    };
    next.written = (async () => {
      let writer: WalWriter | undefined;
      try {
        const file = await this.#fs.create(path);
        writer = new WalWriter(number, file, 0, { preallocateBytes: raftLogPreallocateBytes });
        const w = new ByteWriter(4096);
        await writer.append(
          concatBytes(
            frameRecord(snapshotPayload(snapshot)),
            frameRecord(hardStatePayload(hardState)),
          ),
          2,
        );
        for (let from = 0; from < live.length;) {
          let to = from;
          let bytes = 0;
          while (to < live.length && (to === from || bytes < restateChunkBytes)) {
            bytes += live[to++].data.length;
          }
          const chunk = entryRecords(live.slice(from, to), w);
          await writer.append(concatBytes(...chunk), chunk.length);
          from = to;
        }
        await writer.sync();
        next.writer = writer;
      } catch (e) {
        // Reported by the next save (see #switchToNext).
        next.failed = e;
        await writer?.close().catch(() => {});
        await this.#fs.remove(path).catch(() => {});
      }
    })();
    // Take over once written, also on a node that saves nothing more for a while (unless a
    // save or close got there first); an error here is reported by the next save.
    next.done = next.written.then(() => {
      if (next.failed !== undefined) return;
      return this.#exclusive(async () => {
        if (this.#next === next) await this.#switchToNext();
      }).catch((e) => {
        this.#failure ??= e;
      });
    });
    this.#next = next;
  }

  /**
   * Makes the prepared segment the open one: appends to it what changed
   * since its head was taken (the current snapshot, the entries appended
   * since, the hard state), syncs it, gives it its name and syncs the
   * directory; the older segments are then closed and deleted beside later
   * saves. A failed
   * preparation fails the save that finds it (a disk error stops the node,
   * as any failed log write does); an outdated one is dropped and started
   * again.
   */
  async #switchToNext(): Promise<void> {
    const next = this.#next!;
    this.#next = undefined;
    if (next.failed !== undefined || next.stale) {
      if (next.writer) {
        await next.writer.close().catch(() => {});
        await this.#fs.remove(next.path).catch(() => {});
      }
      if (next.failed !== undefined) throw next.failed;
      this.#prepareNext();
      return;
    }
    const writer = next.writer!;
    // Snapshot first: when the cut passed what the head restates, it resets the log there.
    const delta = [frameRecord(snapshotPayload(this.memory.snapshot()))];
    const from = Math.max(next.restatedLast + 1, this.memory.firstIndex());
    const last = this.memory.lastIndex();
    if (from <= last) {
      delta.push(...entryRecords(this.memory.entries(from, last + 1), this.#writeBuffer));
    }
    delta.push(this.#hardStateRecord());
    // Durable before it gets its name: a segment that follows another restates all of it, so
    // the older one is neither sealed nor synced again (recovery does not check its end).
    await writer.appendDurable(concatBytes(...delta), delta.length);
    await this.#fs.rename(next.path, joinPath(this.#dir, segmentName(next.number)));
    await this.#fs.syncDir(this.#dir);
    this.#hardStateBehind = false;
    const old = this.#writer;
    const replaced = this.#segments;
    this.#writer = writer;
    this.#segmentBaseBytes = writer.sizeBytes;
    this.#cutBaseBytes = writer.sizeBytes;
    this.#segments = [next.number];
    this.#removals = this.#removals.then(async () => {
      await old.close().catch(() => {});
      for (const n of replaced) await this.#fs.remove(joinPath(this.#dir, segmentName(n)));
      await this.#fs.syncDir(this.#dir);
    }).catch(() => {
      // Left for the next open: older segments replay before the new one, which restates them.
    });
  }

  /**
   * Waits for a next segment in preparation to take over and for replaced
   * segments to be deleted; rejects with the error of a failed one.
   */
  async settle(): Promise<void> {
    for (let next = this.#next; next !== undefined; next = this.#next) {
      await next.done;
      // It took over, or started over when outdated; only a failed one is still here.
      if (this.#next === next) throw next.failed;
    }
    if (this.#failure !== undefined) throw this.#failure;
    await this.#removals;
  }

  /** Number of segment files on disk. */
  get segmentCount(): number {
    return this.#segments.length;
  }

  /**
   * Syncs and closes the open segment (after any save or compaction in
   * progress); a next segment still in preparation is dropped.
   */
  close(): Promise<void> {
    return this.#exclusive(async () => {
      const next = this.#next;
      this.#next = undefined;
      if (next !== undefined) {
        await next.written; // Not `done`: its takeover waits for this lock.
        if (next.writer) {
          await next.writer.close();
          await this.#fs.remove(next.path);
        }
      }
      await this.#removals;
      await this.#writeDeferred();
      await this.#writer.close();
    });
  }
}

/**
 * `entries` as framed Entries records of at most `raftRecordBytes` each (a
 * larger entry alone in its record), so neither a big Ready nor the live log
 * restated by a rotation can exceed the largest record a reader accepts.
 */
function entryRecords(entries: Entry[], w: ByteWriter): Uint8Array[] {
  const out: Uint8Array[] = [];
  let from = 0;
  let bytes = 0;
  for (let i = 0; i < entries.length; i++) {
    const size = entries[i].data.length + 32;
    if (i > from && bytes + size > raftRecordBytes) {
      out.push(frameRecord(entriesPayload(entries.slice(from, i), w)));
      from = i;
      bytes = 0;
    }
    bytes += size;
  }
  out.push(frameRecord(entriesPayload(from === 0 ? entries : entries.slice(from), w)));
  return out;
}

function entriesPayload(entries: Entry[], w: ByteWriter): Uint8Array {
  w.reset();
  w.putU8(RaftRecordKind.Entries).putUvarint(entries.length);
  for (let i = 0; i < entries.length; i++) {
    assert(
      i === 0 || entries[i].index === entries[i - 1].index + 1,
      "raft log entries must be contiguous",
    );
    w.putLengthPrefixed(encodeEntry(entries[i]));
  }
  return w.finish();
}

/** True when `next` differs from `prev` in its commit index only. */
function onlyCommitMoved(prev: HardState, next: HardState): boolean {
  return next.term === prev.term && next.vote === prev.vote;
}

function hardStatePayload(hs: HardState): Uint8Array {
  const body = encodeHardState(hs);
  const out = new Uint8Array(1 + body.length);
  out[0] = RaftRecordKind.HardState;
  out.set(body, 1);
  return out;
}

function snapshotPayload(s: Snapshot): Uint8Array {
  const body = encodeSnapshot(s);
  const out = new Uint8Array(1 + body.length);
  out[0] = RaftRecordKind.Snapshot;
  out.set(body, 1);
  return out;
}

/** Applies one record to the mirror during recovery. */
function replayRecord(memory: MemoryStorage, payload: Uint8Array): void {
  const r = new ByteReader(payload);
  const kind = r.u8();
  switch (kind) {
    case RaftRecordKind.Entries: {
      const n = r.uvarint();
      const entries: Entry[] = [];
      for (let i = 0; i < n; i++) entries.push(decodeEntry(r.lengthPrefixed().slice()));
      r.expectEnd("raft entries record");
      if (entries.length === 0) return;
      const first = entries[0].index;
      if (first > memory.lastIndex() + 1) {
        throw new DecodeError(
          `entries start at ${first}, after a gap (last index ${memory.lastIndex()})`,
          0,
        );
      }
      memory.append(entries);
      return;
    }
    case RaftRecordKind.HardState:
      memory.setHardState(decodeHardState(payload.subarray(1)));
      return;
    case RaftRecordKind.Snapshot: {
      const snap = decodeSnapshot(payload.subarray(1));
      const { index, term } = snap.meta;
      const current = memory.snapshot().meta.index;
      if (index <= current) return;
      const covered = index >= memory.firstIndex() - 1 && index <= memory.lastIndex() &&
        memory.term(index) === term;
      if (covered) {
        memory.createSnapshot(index, snap.meta.conf, snap.data);
        memory.compact(index);
      } else {
        memory.applySnapshot(snap);
      }
      return;
    }
    default:
      throw new DecodeError(`unknown raft log record kind ${kind}`, 0);
  }
}
