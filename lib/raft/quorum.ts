/**
 * Majority arithmetic over the voter set: the committed index (the highest index
 * a majority has matched) and election tallies. Learners never count.
 *
 * @module
 */

import { assert } from "../common/assert.ts";

/** Size of a majority of `voters` voters. */
export function quorumSize(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

/**
 * The largest index that at least a majority of voters have matched: sort the
 * voters' match indices descending and take the quorum-th one.
 */
export function committedIndex(matches: number[]): number {
  assert(matches.length > 0, "committedIndex needs at least one voter");
  const sorted = matches.slice().sort((a, b) => b - a);
  return sorted[quorumSize(matches.length) - 1];
}

/** Outcome of an election tally so far. */
export type VoteResult = "won" | "lost" | "pending";

/** Tallies votes: `granted` and `rejected` count distinct voters out of `voters`. */
export function voteResult(voters: number, granted: number, rejected: number): VoteResult {
  const q = quorumSize(voters);
  if (granted >= q) return "won";
  if (voters - rejected < q) return "lost";
  return "pending";
}
