/**
 * Membership changes one server at a time (thesis §4.1, §4.2.1): any two
 * configurations that differ by one voter have overlapping majorities, so no
 * joint consensus is needed. Learners receive the log but never vote; a new
 * server joins as a learner and is promoted once it has caught up.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import type { ConfChange, ConfState } from "./types.ts";

/**
 * Why `change` may not be proposed against `conf`, or undefined when it may.
 * Only changes that move at most one voter are valid.
 */
export function validateConfChange(conf: ConfState, change: ConfChange): string | undefined {
  if (change.nodeId === "") return "empty node id";
  const isVoter = conf.voters.includes(change.nodeId);
  const isLearner = conf.learners.includes(change.nodeId);
  switch (change.type) {
    case "addVoter":
      if (isVoter) return `${change.nodeId} is already a voter`;
      return undefined;
    case "addLearner":
      if (isLearner) return `${change.nodeId} is already a learner`;
      if (isVoter && conf.voters.length === 1) return "cannot demote the last voter";
      return undefined;
    case "removeNode":
      if (!isVoter && !isLearner) return `${change.nodeId} is not a member`;
      if (isVoter && conf.voters.length === 1) return "cannot remove the last voter";
      return undefined;
  }
}

/**
 * The membership after `change`. Tolerant: a change that no longer makes sense
 * (e.g. removing a node that is gone) leaves the config as it is, because every
 * replica must apply the same committed entry the same way.
 */
export function applyConfChangeTo(conf: ConfState, change: ConfChange): ConfState {
  const voters = conf.voters.filter((id) => id !== change.nodeId);
  const learners = conf.learners.filter((id) => id !== change.nodeId);
  switch (change.type) {
    case "addVoter":
      voters.push(change.nodeId);
      break;
    case "addLearner":
      learners.push(change.nodeId);
      break;
    case "removeNode":
      break;
  }
  if (voters.length === 0) return { voters: [...conf.voters], learners: [...conf.learners] };
  voters.sort();
  learners.sort();
  assert(!voters.some((v) => learners.includes(v)), "a node is never both voter and learner");
  return { voters, learners };
}

/** True when `id` is a voter or a learner of `conf`. */
export function isMember(conf: ConfState, id: string): boolean {
  return conf.voters.includes(id) || conf.learners.includes(id);
}
