/**
 * Configuration of one Raft node, with the defaults the seed specifies (10 ms
 * ticks: heartbeat 5 ticks = 50 ms, election 15 ticks = 150–300 ms randomized).
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import {
  defaultElectionMs,
  defaultHeartbeatMs,
  defaultTickMs,
  maxAppendBytes,
  maxInflightAppends,
} from "../common/limits.ts";
import type { Random } from "../common/random.ts";
import type { RaftStorage } from "./storage.ts";

/** Everything a RaftNode needs; time is counted in ticks and randomness is injected. */
export interface RaftConfig {
  /** This node's id ("node1"); never reused for another server. */
  id: string;
  /** The Raft group; carried on every message and entry. */
  groupId: number;
  /** The durable log and state the core reads (the driver writes it). */
  storage: RaftStorage;
  /** Source of election-timeout jitter (seeded in tests and the simulator). */
  random: Random;
  /** Base election timeout; the real one is drawn from [electionTicks, 2 x electionTicks). */
  electionTicks: number;
  /** Ticks between leader heartbeats; must be well below electionTicks. */
  heartbeatTicks: number;
  /** Run a PreVote round before a real election (thesis §9.6). */
  preVote: boolean;
  /** A leader steps down when it has not heard from a quorum for an election timeout. */
  checkQuorum: boolean;
  /**
   * Last index the state machine applied before a restart. Committed entries after
   * it are handed out again; storage's confState must be the membership at it.
   */
  applied?: number;
  /** Byte cap of the entries in one Append message. */
  maxSizePerMsg?: number;
  /** Appends in flight to one follower (pipelining window). */
  maxInflight?: number;
  /** Bytes of entries in flight to one follower (0 = no byte cap; default 32 MiB). */
  maxInflightBytes?: number;
  /** Bytes of proposed-but-uncommitted entries a leader accepts before dropping proposals. */
  maxUncommittedBytes?: number;
  /** Byte cap of the committed entries handed out in one Ready. */
  maxApplyBytesPerReady?: number;
  /**
   * A leader tells its followers about a new commit index with its next
   * Append or heartbeat, or at its next tick, instead of sending an empty
   * Append at once (etcd's behaviour, the default). Saves a message and its
   * answer per peer per write when writes come one at a time; followers
   * apply up to a tick later. Safety does not depend on it.
   */
  lazyCommitBroadcast?: boolean;
  /**
   * The leader serves linearizable reads from a lease (kept by the driver,
   * which has a clock): after a quorum acknowledges a heartbeat round, no
   * other leader can be elected for one election timeout, because a voter
   * that heard from its leader ignores (Pre)Votes for that long (checkQuorum,
   * required). For the lease to hold across restarts, a voter also ignores
   * them for one election timeout after it starts (it may have acknowledged
   * the round before it went down). `leaseEpoch` tells the driver when a
   * lease taken earlier no longer holds.
   */
  leaseReads?: boolean;
  /**
   * Ticks this node ignores (Pre)Votes for after it starts, at least (the
   * default, 0, adds nothing to leaseReads' one election timeout). A driver
   * whose previous run promised leaders a longer quiet period (it ran with
   * other settings) passes it here, so a lease that run acknowledged still
   * holds across the restart.
   */
  startQuietTicks?: number;
  /**
   * Called by a leader on the data of each client entry just before it
   * appends it (its own proposals and relayed ones, in log order); returns
   * the data to append. A driver that changes anything returns a new buffer,
   * never the same one rewritten: the proposer may propose it again, and an
   * earlier copy may already be an entry of this log. rustkvd raises the
   * command's timestamp to the leader's clock, so a write stamped before a
   * key expired but appended after a read saw it expire is judged at its
   * append time.
   */
  stampProposal?: (data: Uint8Array) => Uint8Array;
}

/** Default election timeout in ticks (150 ms at a 10 ms tick). */
export const defaultElectionTicks = defaultElectionMs / defaultTickMs;
/** Default heartbeat interval in ticks (50 ms at a 10 ms tick). */
export const defaultHeartbeatTicks = defaultHeartbeatMs / defaultTickMs;

/** A RaftConfig with every optional field filled in. */
export type ResolvedRaftConfig = Required<RaftConfig>;

/** Checks a config and fills in defaults; throws on a config that cannot work. */
export function resolveConfig(c: RaftConfig): ResolvedRaftConfig {
  assert(c.id !== "", "raft config: id must not be empty");
  assert(Number.isSafeInteger(c.groupId) && c.groupId >= 0, "raft config: bad group id");
  assert(c.heartbeatTicks > 0, "raft config: heartbeatTicks must be positive");
  assert(
    c.electionTicks > c.heartbeatTicks,
    "raft config: electionTicks must exceed heartbeatTicks",
  );
  const resolved: ResolvedRaftConfig = {
    ...c,
    applied: c.applied ?? 0,
    maxSizePerMsg: c.maxSizePerMsg ?? maxAppendBytes,
    maxInflight: c.maxInflight ?? maxInflightAppends,
    maxInflightBytes: c.maxInflightBytes ?? 8 * maxAppendBytes,
    maxUncommittedBytes: c.maxUncommittedBytes ?? 16 * maxAppendBytes,
    maxApplyBytesPerReady: c.maxApplyBytesPerReady ?? 16 * maxAppendBytes,
    lazyCommitBroadcast: c.lazyCommitBroadcast ?? false,
    leaseReads: c.leaseReads ?? false,
    startQuietTicks: c.startQuietTicks ?? 0,
    stampProposal: c.stampProposal ?? ((data) => data),
  };
  assert(!resolved.leaseReads || resolved.checkQuorum, "raft config: leaseReads needs checkQuorum");
  assert(resolved.maxInflight > 0 && resolved.maxSizePerMsg > 0, "raft config: bad caps");
  return resolved;
}
