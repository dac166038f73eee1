/**
 * What the Raft core reads from durable storage, and an in-memory implementation
 * used by tests, the simulator and the benchmark. The core only reads through
 * this interface; the driver writes (append, hard state, snapshot, compaction)
 * after each Ready, so the core never performs I/O itself.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import {
  cloneConfState,
  type ConfState,
  emptyHardState,
  type Entry,
  entrySize,
  type HardState,
  type Snapshot,
} from "./types.ts";

/** Asked for log entries or a term below the first index: the log was compacted. */
export class LogCompactedError extends Error {
  /** The class name, for logs. */
  override name = "LogCompactedError";
  /** `index` was asked for; the log now starts at `firstIndex`. */
  constructor(readonly index: number, readonly firstIndex: number) {
    super(`raft log index ${index} is compacted (first index ${firstIndex})`);
  }
}

/** Asked for log entries or a term past the last index. */
export class LogUnavailableError extends Error {
  /** The class name, for logs. */
  override name = "LogUnavailableError";
  /** `index` was asked for; the log ends at `lastIndex`. */
  constructor(readonly index: number, readonly lastIndex: number) {
    super(`raft log index ${index} is past the last index ${lastIndex}`);
  }
}

/**
 * The durable log as the core sees it. Synchronous: the node's durable store keeps
 * an in-memory copy of the uncompacted log. Indices in [firstIndex()-1, lastIndex()]
 * have a known term (firstIndex()-1 is the snapshot's index).
 */
export interface RaftStorage {
  /** State saved before the last restart: hard state and the current membership. */
  initialState(): { hardState: HardState; confState: ConfState };
  /**
   * Entries in [lo, hi), at least one when lo < hi, cut when their total size
   * would pass `maxBytes`. Throws LogCompactedError / LogUnavailableError.
   */
  entries(lo: number, hi: number, maxBytes?: number): Entry[];
  /** Term of the entry at `index` for firstIndex()-1 <= index <= lastIndex(). */
  term(index: number): number;
  /** Index of the first entry still stored (snapshot index + 1). */
  firstIndex(): number;
  /** Index of the last stored entry (the snapshot index when the log is empty). */
  lastIndex(): number;
  /** The newest snapshot (index 0 when there is none yet). */
  snapshot(): Snapshot;
}

/**
 * An in-memory RaftStorage. `ents[0]` is a dummy entry holding the snapshot's
 * index and term so term(firstIndex()-1) needs no special case.
 */
export class MemoryStorage implements RaftStorage {
  #hardState: HardState = emptyHardState();
  #snapshot: Snapshot;
  #ents: Entry[];

  /** `conf` is the bootstrap membership (the config of a brand-new cluster). */
  constructor(conf: ConfState = { voters: [], learners: [] }, readonly groupId = 0) {
    this.#snapshot = {
      meta: { index: 0, term: 0, conf: cloneConfState(conf) },
      data: new Uint8Array(),
    };
    this.#ents = [this.#dummy(0, 0)];
  }

  #dummy(index: number, term: number): Entry {
    return { index, term, type: 0, groupId: this.groupId, data: new Uint8Array() };
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return {
      hardState: { ...this.#hardState },
      confState: cloneConfState(this.#snapshot.meta.conf),
    };
  }

  /** The last hard state written. */
  hardState(): HardState {
    return { ...this.#hardState };
  }

  /** Records the hard state of a Ready. */
  setHardState(hs: HardState): void {
    this.#hardState = { ...hs };
  }

  /** Records the membership that initialState() reports (the driver tracks config changes). */
  setConfState(conf: ConfState): void {
    this.#snapshot = {
      ...this.#snapshot,
      meta: { ...this.#snapshot.meta, conf: cloneConfState(conf) },
    };
  }

  entries(lo: number, hi: number, maxBytes = Number.MAX_SAFE_INTEGER): Entry[] {
    const offset = this.#ents[0].index;
    if (lo <= offset) throw new LogCompactedError(lo, offset + 1);
    if (hi > this.lastIndex() + 1) throw new LogUnavailableError(hi - 1, this.lastIndex());
    assert(lo <= hi, `entries: lo ${lo} > hi ${hi}`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.#ents[i - offset];
      bytes += entrySize(e);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  term(index: number): number {
    const offset = this.#ents[0].index;
    if (index < offset) throw new LogCompactedError(index, offset + 1);
    if (index - offset >= this.#ents.length) throw new LogUnavailableError(index, this.lastIndex());
    return this.#ents[index - offset].term;
  }

  firstIndex(): number {
    return this.#ents[0].index + 1;
  }

  lastIndex(): number {
    return this.#ents[0].index + this.#ents.length - 1;
  }

  snapshot(): Snapshot {
    return this.#snapshot;
  }

  /** Installs a snapshot received from the leader, dropping the whole log. */
  applySnapshot(snap: Snapshot): void {
    if (snap.meta.index <= this.#snapshot.meta.index) return; // older: nothing to do
    this.#snapshot = {
      meta: { ...snap.meta, conf: cloneConfState(snap.meta.conf) },
      data: snap.data,
    };
    this.#ents = [this.#dummy(snap.meta.index, snap.meta.term)];
  }

  /**
   * Makes a snapshot of the applied state at `index` (the driver calls it once the
   * state machine has applied `index`); `conf` is the membership at that index.
   */
  createSnapshot(index: number, conf: ConfState, data: Uint8Array): Snapshot {
    assert(
      index >= this.#snapshot.meta.index,
      `createSnapshot: ${index} is older than the snapshot`,
    );
    assert(index <= this.lastIndex(), `createSnapshot: ${index} is past the last index`);
    const term = this.term(index);
    this.#snapshot = { meta: { index, term, conf: cloneConfState(conf) }, data };
    return this.#snapshot;
  }

  /** Drops entries up to and including `index` (which must be covered by a snapshot). */
  compact(index: number): void {
    const offset = this.#ents[0].index;
    if (index <= offset) return;
    assert(index <= this.lastIndex(), `compact: ${index} is past the last index`);
    const keep = this.#ents[index - offset];
    this.#ents = [this.#dummy(keep.index, keep.term), ...this.#ents.slice(index - offset + 1)];
  }

  /** Appends entries, truncating a conflicting suffix first (entries are contiguous). */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    let ents = entries;
    if (ents[ents.length - 1].index < first) return; // all compacted already
    if (ents[0].index < first) ents = ents.slice(first - ents[0].index);
    const offset = ents[0].index - this.#ents[0].index;
    assert(offset <= this.#ents.length, `append: gap before index ${ents[0].index}`);
    this.#ents.length = offset;
    for (const e of ents) this.#ents.push(e);
  }
}
