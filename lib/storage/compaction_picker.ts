/**
 * What to compact next (pure: reads a Version, decides, does no I/O). L0 is
 * scored by file count against its trigger, L1..L5 by bytes against their
 * target (L1 target x 10 per level). The level with the highest score >= 1
 * wins. An L0 compaction takes every L0 file (they overlap) plus the L1 files
 * they touch; a deeper one takes the next file after the level's round-robin
 * pointer plus the files it overlaps one level down.
 *
 * @module
 */

import { compareBytes } from "../common/bytes.ts";
import { levelCount, levelSizeMultiplier } from "../common/limits.ts";
import type { Version } from "./version.ts";
import type { FileMeta } from "./version_edit.ts";

/** One planned compaction. */
export interface Compaction {
  level: number;
  outputLevel: number;
  /** Files from `level`. */
  inputs: FileMeta[];
  /** Files from `outputLevel` that overlap the inputs. */
  outputInputs: FileMeta[];
  /** No deeper level overlaps the compaction's key range. */
  bottommost: boolean;
  /** Moving one file down without rewriting it is enough. */
  trivialMove: boolean;
  /** Why it was picked (for logs and tests). */
  reason: string;
}

/** Picker tunables. */
export interface PickerOptions {
  l0CompactionTrigger: number;
  l1TargetBytes: number;
}

/** Target byte size of `level` (>= 1). */
export function levelTargetBytes(level: number, l1TargetBytes: number): number {
  return l1TargetBytes * Math.pow(levelSizeMultiplier, level - 1);
}

/** Compaction score of each level (index = level; the last level is never a source). */
export function levelScores(v: Version, o: PickerOptions): number[] {
  const scores: number[] = [];
  for (let l = 0; l < levelCount - 1; l++) {
    scores.push(
      l === 0
        ? v.levels[0].length / o.l0CompactionTrigger
        : v.levelBytes(l) / levelTargetBytes(l, o.l1TargetBytes),
    );
  }
  return scores;
}

/** Bytes above target summed over levels that need compaction. */
export function pendingCompactionBytes(v: Version, o: PickerOptions): number {
  let n = 0;
  if (v.levels[0].length >= o.l0CompactionTrigger) n += v.levelBytes(0);
  for (let l = 1; l < levelCount - 1; l++) {
    n += Math.max(0, v.levelBytes(l) - levelTargetBytes(l, o.l1TargetBytes));
  }
  return n;
}

function keyRange(files: FileMeta[]): { smallest: Uint8Array; largest: Uint8Array } {
  let smallest = files[0].smallestKey;
  let largest = files[0].largestKey;
  for (const f of files) {
    if (compareBytes(f.smallestKey, smallest) < 0) smallest = f.smallestKey;
    if (compareBytes(f.largestKey, largest) > 0) largest = f.largestKey;
  }
  return { smallest, largest };
}

/** Plans a compaction of `inputs` at `level` into `level + 1`. */
export function planCompaction(
  v: Version,
  level: number,
  inputs: FileMeta[],
  reason: string,
  allowTrivialMove: boolean,
): Compaction {
  const outputLevel = level + 1;
  const { smallest, largest } = keyRange(inputs);
  const outputInputs = v.overlapping(outputLevel, smallest, largest);
  // Widen the range to what the output-level files cover, for the bottommost check.
  const all = inputs.concat(outputInputs);
  const range = keyRange(all);
  let bottommost = true;
  for (let l = outputLevel + 1; l < levelCount; l++) {
    if (v.overlapping(l, range.smallest, range.largest).length > 0) bottommost = false;
  }
  return {
    level,
    outputLevel,
    inputs,
    outputInputs,
    bottommost,
    trivialMove: allowTrivialMove && inputs.length === 1 && outputInputs.length === 0,
    reason,
  };
}

/** The next automatic compaction, or undefined when every level is within bounds. */
export function pickCompaction(
  v: Version,
  o: PickerOptions,
  compactPointers: Map<number, Uint8Array>,
): Compaction | undefined {
  const scores = levelScores(v, o);
  let best = -1;
  for (let l = 0; l < scores.length; l++) {
    if (scores[l] >= 1 && (best < 0 || scores[l] > scores[best])) best = l;
  }
  if (best < 0) return undefined;
  if (best === 0) {
    return planCompaction(v, 0, v.levels[0].slice(), `L0 has ${v.levels[0].length} files`, true);
  }
  const files = v.levels[best];
  const ptr = compactPointers.get(best);
  let pick = files[0];
  if (ptr !== undefined) {
    pick = files.find((f) => compareBytes(f.smallest, ptr) > 0) ?? files[0];
  }
  return planCompaction(v, best, [pick], `L${best} score ${scores[best].toFixed(2)}`, true);
}
