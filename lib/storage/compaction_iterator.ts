/**
 * How entries collapse during compaction (pure: no I/O, no clock). Input is
 * the merged stream in internal-key order, newest source first on ties.
 * For each user key, versions above the horizon (the oldest version any
 * reader may still ask for) are all kept; of those at or below it only the
 * newest survives, since it alone is visible at the horizon; and at the
 * bottom level a surviving tombstone below the horizon is dropped too,
 * because nothing older remains for it to hide (one at the horizon stays:
 * a history read from the horizon on must list it).
 *
 * Requires (engine invariant): for one user key, newer sources never hold
 * lower versions than older sources (see docs/FORMATS.md, "Internal keys").
 *
 * @module
 */

import { equalBytes } from "../common/bytes.ts";
import { type Entry, EntryKind } from "./internal_key.ts";

/** Parameters of one compaction's collapsing rule. */
export interface CollapseOptions {
  /** Oldest version a reader may still ask for: min(compacted version, oldest snapshot). */
  horizonVersion: number;
  /** True when no deeper level holds any key of this compaction's range. */
  bottommost: boolean;
}

/** Decides, entry by entry, what a compaction keeps. */
export class CompactionFilter {
  #lastKey: Uint8Array | undefined;
  #lastVersion = -1;
  #horizonReached = false;
  /** Entries dropped so far (for stats and tests). */
  dropped = 0;

  constructor(readonly options: CollapseOptions) {}

  /** True when `e` (the next entry of the merged stream) belongs in the output. */
  keep(e: Entry): boolean {
    const sameKey = this.#lastKey !== undefined && equalBytes(this.#lastKey, e.key);
    if (!sameKey) {
      this.#lastKey = e.key;
      this.#lastVersion = -1;
      this.#horizonReached = false;
    }
    if (sameKey && e.version === this.#lastVersion) {
      this.dropped++; // An older copy of the same (key, version): shadowed.
      return false;
    }
    this.#lastVersion = e.version;
    if (e.version > this.options.horizonVersion) return true;
    if (this.#horizonReached) {
      this.dropped++;
      return false;
    }
    this.#horizonReached = true;
    // A tombstone at the horizon itself stays: history from the horizon on lists it.
    if (
      this.options.bottommost && e.kind === EntryKind.delete &&
      e.version < this.options.horizonVersion
    ) {
      this.dropped++;
      return false;
    }
    return true;
  }
}

/** Applies the rule to a whole list (for tests and small inputs). */
export function collapse(entries: Iterable<Entry>, options: CollapseOptions): Entry[] {
  const f = new CompactionFilter(options);
  const out: Entry[] = [];
  for (const e of entries) if (f.keep(e)) out.push(e);
  return out;
}
