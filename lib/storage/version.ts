/**
 * A Version is an immutable snapshot of the file set: which SSTables live at
 * which level. Edits produce new Versions; readers and iterators hold the
 * Version they started with, so a compaction never pulls a file from under
 * them (files are deleted only when no live Version names them).
 *
 * Invariant: L0 is ordered newest file first (file number descending); each
 * of L1..L6 is sorted by smallest key with disjoint user-key ranges.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { toHex } from "../common/bytes.ts";
import { compareKeys } from "./internal_key.ts";
import { levelCount } from "../common/limits.ts";
import type { FileMeta, VersionEdit } from "./version_edit.ts";

/** An immutable file set. */
export class Version {
  /** Readers using this version (held by iterators and gets). */
  refs = 0;

  constructor(readonly levels: readonly (readonly FileMeta[])[]) {
    assert(levels.length === levelCount, "one list per level");
  }

  /** The empty file set. */
  static empty(): Version {
    return new Version(Array.from({ length: levelCount }, () => []));
  }

  /** The Version this edit produces. */
  apply(edit: VersionEdit): Version {
    const levels = this.levels.map((l) => l.slice());
    for (const d of edit.deletedFiles ?? []) {
      const i = levels[d.level].findIndex((f) => f.number === d.number);
      assert(i >= 0, `deleting file ${d.number} missing from L${d.level}`);
      levels[d.level].splice(i, 1);
    }
    for (const { level, meta } of edit.newFiles ?? []) levels[level].push(meta);
    levels[0].sort((a, b) => b.number - a.number);
    for (let l = 1; l < levelCount; l++) {
      levels[l].sort((a, b) => compareKeys(a.smallest, b.smallest));
    }
    const v = new Version(levels);
    v.checkInvariants();
    return v;
  }

  /** Asserts the level invariants (cheap: one pass). */
  checkInvariants(): void {
    for (let l = 1; l < levelCount; l++) {
      const files = this.levels[l];
      for (let i = 1; i < files.length; i++) {
        assert(
          compareKeys(files[i - 1].largestKey, files[i].smallestKey) < 0,
          `L${l} files ${files[i - 1].number} and ${files[i].number} overlap`,
        );
      }
    }
  }

  /** Every file number in this version. */
  fileNumbers(): number[] {
    return this.levels.flatMap((l) => l.map((f) => f.number));
  }

  /** Total bytes at `level`. */
  levelBytes(level: number): number {
    let n = 0;
    for (const f of this.levels[level]) n += f.sizeBytes;
    return n;
  }

  /**
   * Files at `level` whose user-key range intersects [smallest, largest]
   * (undefined bounds are open).
   */
  overlapping(level: number, smallest?: Uint8Array, largest?: Uint8Array): FileMeta[] {
    return this.levels[level].filter((f) =>
      (largest === undefined || compareKeys(f.smallestKey, largest) <= 0) &&
      (smallest === undefined || compareKeys(f.largestKey, smallest) >= 0)
    );
  }

  /** For L1+: the only file that may hold `key`, or undefined. */
  fileForKey(level: number, key: Uint8Array): FileMeta | undefined {
    assert(level > 0, "L0 files overlap; use levels[0]");
    const files = this.levels[level];
    let lo = 0;
    let hi = files.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareKeys(files[mid].largestKey, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= files.length) return undefined;
    const f = files[lo];
    return compareKeys(f.smallestKey, key) <= 0 ? f : undefined;
  }

  /** Multi-line rendering: one line per non-empty level. */
  describe(): string {
    const lines: string[] = [];
    this.levels.forEach((files, l) => {
      if (files.length === 0) return;
      lines.push(
        `L${l}: ` +
          files.map((f) => `${f.number}[${toHex(f.smallestKey)}..${toHex(f.largestKey)}]`).join(
            " ",
          ),
      );
    });
    return lines.join("\n");
  }
}
