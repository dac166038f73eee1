/**
 * The tail of the log that has not been persisted yet: entries (and maybe an
 * incoming snapshot) handed to the driver in a Ready but not yet acknowledged
 * by advance(). Kept apart from RaftStorage so the core can append and truncate
 * without I/O, and so "stable" is a precise notion.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import type { Entry, Snapshot } from "./types.ts";

/** Unpersisted entries starting at `offset`, and an unpersisted snapshot if any. */
export class Unstable {
  /** A snapshot received from the leader and not yet persisted. */
  snapshot: Snapshot | undefined = undefined;
  /** Unpersisted entries; entries[i] has index offset + i. */
  entries: Entry[] = [];
  /** Index of entries[0]. */
  offset: number;
  /**
   * Entries before this index were handed to the driver for persisting (a
   * write may still be in flight); the ones from here on were not.
   */
  offsetInProgress: number;

  constructor(offset: number) {
    this.offset = offset;
    this.offsetInProgress = offset;
  }

  /** Entries not yet handed to the driver for persisting. */
  entriesToPersist(): Entry[] {
    return this.entries.slice(this.offsetInProgress - this.offset);
  }

  /** True when some entries were not yet handed to the driver. */
  hasEntriesToPersist(): boolean {
    return this.offset + this.entries.length > this.offsetInProgress;
  }

  /** Marks every entry as handed to the driver. */
  acceptInProgress(): void {
    this.offsetInProgress = this.offset + this.entries.length;
  }

  /** Index of the first entry, known only when a snapshot is pending. */
  maybeFirstIndex(): number | undefined {
    return this.snapshot ? this.snapshot.meta.index + 1 : undefined;
  }

  /** Index of the last unstable entry (or the pending snapshot's index). */
  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot ? this.snapshot.meta.index : undefined;
  }

  /** Term at `index` when this tail knows it. */
  maybeTerm(index: number): number | undefined {
    if (index < this.offset) {
      if (this.snapshot && this.snapshot.meta.index === index) return this.snapshot.meta.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || index > last) return undefined;
    return this.entries[index - this.offset].term;
  }

  /**
   * Marks entries up to `index` as persisted, but only if the entry at `index`
   * still has `term` (a newer leader may have overwritten it meanwhile).
   */
  stableTo(index: number, term: number): void {
    const t = this.maybeTerm(index);
    if (t === undefined || t !== term || index < this.offset) return;
    const n = index + 1 - this.offset;
    this.entries = this.entries.slice(n);
    this.offset = index + 1;
    if (this.offsetInProgress < this.offset) this.offsetInProgress = this.offset;
  }

  /** Marks the pending snapshot at `index` as persisted. */
  stableSnapTo(index: number): void {
    if (this.snapshot && this.snapshot.meta.index === index) this.snapshot = undefined;
  }

  /** Replaces everything with an incoming snapshot. */
  restore(snap: Snapshot): void {
    this.offset = snap.meta.index + 1;
    this.offsetInProgress = this.offset;
    this.entries = [];
    this.snapshot = snap;
  }

  /** Appends `ents`, first truncating whatever conflicts with them (§5.3). */
  truncateAndAppend(ents: Entry[]): void {
    if (ents.length === 0) return;
    const after = ents[0].index;
    if (after === this.offset + this.entries.length) {
      for (const e of ents) this.entries.push(e);
    } else if (after <= this.offset) {
      // The whole unstable tail is replaced; storage's suffix is truncated by the driver.
      this.offset = after;
      this.entries = ents.slice();
    } else {
      this.entries = this.entries.slice(0, after - this.offset).concat(ents);
    }
    // Replaced entries must be persisted again, even if their old version is being written.
    if (after < this.offsetInProgress) this.offsetInProgress = after;
    assert(
      this.entries.length === 0 || this.entries[0].index === this.offset,
      "unstable entries are contiguous from offset",
    );
  }

  /** Unstable entries in [lo, hi). */
  slice(lo: number, hi: number): Entry[] {
    assert(
      lo >= this.offset && hi <= this.offset + this.entries.length,
      `unstable slice [${lo}, ${hi}) out of bounds`,
    );
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
