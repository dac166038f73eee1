/**
 * The Raft log as one sequence: the durable part read through RaftStorage and the
 * unpersisted tail in Unstable, plus commitIndex and lastApplied (§5.3, Figure 2).
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { LogCompactedError, LogUnavailableError, type RaftStorage } from "./storage.ts";
import { Unstable } from "./log_unstable.ts";
import { type Entry, entrySize, type Snapshot } from "./types.ts";

/** The log, with commitIndex and lastApplied. */
export class RaftLog {
  readonly storage: RaftStorage;
  readonly unstable: Unstable;
  /** Highest index known to be committed (commitIndex). */
  committed: number;
  /** Highest index handed to the driver to apply (lastApplied). */
  applied: number;

  constructor(storage: RaftStorage) {
    this.storage = storage;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
  }

  /** First index still available (after the snapshot). */
  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  /** Index of the last entry, stable or not. */
  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /** Term at `index`, or undefined when compacted away or past the end. */
  term(index: number): number | undefined {
    if (index < this.firstIndex() - 1 || index > this.lastIndex()) return undefined;
    const t = this.unstable.maybeTerm(index);
    if (t !== undefined) return t;
    try {
      return this.storage.term(index);
    } catch (e) {
      if (e instanceof LogCompactedError || e instanceof LogUnavailableError) return undefined;
      throw e;
    }
  }

  /** Term of the last entry. */
  lastTerm(): number {
    const t = this.term(this.lastIndex());
    assert(t !== undefined, "the last entry always has a known term");
    return t;
  }

  /** True when the entry at `index` has `term` (the Append consistency check). */
  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /**
   * Index of the first entry of `ents` that is missing from or conflicts with the
   * log, or 0 when all of them are already present.
   */
  findConflict(ents: Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index <= `index` whose term is <= `term`, with that term: where a
   * log that has `term` at `index` can possibly match ours (fast backtracking).
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    for (; i >= 0; i--) {
      const t = this.term(i);
      if (t === undefined) return { index: i, term: 0 };
      if (t <= term) return { index: i, term: t };
    }
    return { index: 0, term: 0 };
  }

  /**
   * Follower side of Append (§5.3): if the log matches at (prevIndex, prevTerm),
   * appends `ents` (truncating a conflicting suffix), advances commit, and returns
   * the index of the last new entry; undefined when the consistency check fails.
   */
  maybeAppend(
    prevIndex: number,
    prevTerm: number,
    commit: number,
    ents: Entry[],
  ): number | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    const lastNew = prevIndex + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      assert(ci > this.committed, `entry ${ci} conflicts with committed entry ${this.committed}`);
      this.append(ents.slice(ci - (prevIndex + 1)));
    }
    this.commitTo(Math.min(commit, lastNew));
    return lastNew;
  }

  /** Appends entries to the unstable tail; returns the new last index. */
  append(ents: Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    assert(
      ents[0].index - 1 >= this.committed,
      `append after ${ents[0].index - 1} would truncate committed ${this.committed}`,
    );
    assert(ents[0].index <= this.lastIndex() + 1, `append leaves a gap at ${ents[0].index}`);
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /** Entries not yet handed out for persisting. */
  unstableEntries(): Entry[] {
    return this.unstable.entries;
  }

  /**
   * True when there are committed entries up to `upTo` the driver has not
   * been given yet.
   */
  hasNextCommittedEntries(upTo = Number.MAX_SAFE_INTEGER): boolean {
    return Math.min(this.committed, upTo) > Math.max(this.applied, this.firstIndex() - 1);
  }

  /** Committed entries not yet applied, up to `upTo`, at most about `maxBytes`. */
  nextCommittedEntries(maxBytes: number, upTo = Number.MAX_SAFE_INTEGER): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    const hi = Math.min(this.committed, upTo);
    if (hi + 1 <= lo) return [];
    return this.slice(lo, hi + 1, maxBytes);
  }

  /** The pending snapshot if any, else the storage's. */
  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  /** Moves commitIndex forward (never back). */
  commitTo(toCommit: number): void {
    if (this.committed >= toCommit) return;
    assert(
      toCommit <= this.lastIndex(),
      `commit ${toCommit} is past the last index ${this.lastIndex()}`,
    );
    this.committed = toCommit;
  }

  /** Records that the driver has applied up to `index`. */
  appliedTo(index: number): void {
    if (index === 0) return;
    assert(
      index <= this.committed && index >= this.applied,
      `applied ${index} out of [${this.applied}, ${this.committed}]`,
    );
    this.applied = index;
  }

  /** The driver persisted entries up to `index` (whose term was `term`). */
  stableTo(index: number, term: number): void {
    this.unstable.stableTo(index, term);
  }

  /** The driver persisted the snapshot at `index`. */
  stableSnapTo(index: number): void {
    this.unstable.stableSnapTo(index);
  }

  /** The voting rule's log comparison (§5.4.1): is (lastIndex, lastTerm) at least as new as ours? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Commits `maxIndex` if its entry is from `term`: a leader only commits entries of
   * its own term by counting replicas (§5.4.2, Figure 8).
   */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.term(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  /** Replaces the log with a snapshot (InstallSnapshot, §7). */
  restore(snap: Snapshot): void {
    this.committed = snap.meta.index;
    this.unstable.restore(snap);
  }

  /**
   * Entries in [lo, hi), at least one if lo < hi, at most about `maxBytes`. Throws
   * LogCompactedError when lo is below the first index.
   */
  slice(lo: number, hi: number, maxBytes = Number.MAX_SAFE_INTEGER): Entry[] {
    assert(lo <= hi, `slice: lo ${lo} > hi ${hi}`);
    const first = this.firstIndex();
    if (lo < first) throw new LogCompactedError(lo, first);
    assert(hi <= this.lastIndex() + 1, `slice: hi ${hi} past the last index ${this.lastIndex()}`);
    if (lo === hi) return [];
    const off = this.unstable.offset;
    let out: Entry[] = [];
    if (lo < off) {
      out = this.storage.entries(lo, Math.min(hi, off), maxBytes);
      if (out.length < Math.min(hi, off) - lo) return out; // cut by the byte cap
    }
    if (hi > off) {
      const tail = this.unstable.slice(Math.max(lo, off), hi);
      let bytes = 0;
      for (const e of out) bytes += entrySize(e);
      for (const e of tail) {
        bytes += entrySize(e);
        if (out.length > 0 && bytes > maxBytes) break;
        out.push(e);
      }
    }
    return out;
  }
}
