/**
 * Cluster membership as the leader runs it: a node that starts with
 * `--peers` asks to join and is added as a learner (it receives the log but
 * does not vote, so a slow newcomer cannot stall commits); once its log has
 * caught up with the leader's, the leader promotes it to voter. Operators add
 * and remove members the same way, one change at a time (the Raft core
 * refuses a second pending change). Removing the leader first hands
 * leadership to a caught-up voter, which then performs the removal.
 *
 * Every change goes through the Raft log (thesis ch. 4), so all replicas
 * agree on the member list and its addresses; this file only decides which
 * change to propose and when.
 *
 * @module
 */

import { InvalidArgumentError, isKVError, KVError, NotLeaderError } from "../common/errors.ts";
import type { Clock } from "../common/clock.ts";
import { validateMember } from "../server/validation.ts";
import type { Logger } from "./logger.ts";
import { memberChange, type Replica } from "./replica.ts";
import type { ConfChange } from "../raft/types.ts";
import type { MemberRecord } from "./state_machine.ts";
import type { PeerHealth } from "../cluster/failure_detector.ts";

/** A learner this close to the leader's last index is promoted to voter. */
export const promoteLagEntries = 16;

/** How often an operator's change is retried while another one is pending. */
const pendingRetryMs = 10;

/** What a joining node learns: whose cluster it joined and who is in it. */
export interface JoinResult {
  clusterId: string;
  members: MemberRecord[];
}

/** Membership decisions of one Raft group, taken on its leader. */
export class MembershipManager {
  #promoting = false;

  constructor(
    private readonly selfId: string,
    private readonly clusterId: () => string,
    private readonly replica: Replica,
    private readonly clock: Clock,
    private readonly log: Logger,
    /** How recently each peer was heard from (the transport's failure detector). */
    private readonly peerHealth: (id: string) => PeerHealth = () => "healthy",
  ) {}

  /** The members with their addresses, voters and learners, sorted by id. */
  members(): MemberRecord[] {
    return [...this.replica.members.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /**
   * Adds `id` at `addr` as a learner (promoted once caught up) and resolves
   * once the change is applied. Asking again for a learner that already has
   * that address and has never received the log succeeds without a change,
   * so a joiner that crashed mid-join can simply retry. A node asks only
   * while its data dir is empty: a voter (or a learner that has held the
   * log) asking again lost its data, and is refused (see #refuseEmptiedMember).
   * The same id under another address, or an address already used by another
   * id, is refused too.
   */
  async join(
    id: string | undefined,
    addr: string | undefined,
    clusterId: string | undefined,
    deadlineMs: number,
  ): Promise<JoinResult> {
    const m = validateMember(id, addr);
    if (clusterId && clusterId !== this.clusterId()) {
      throw new InvalidArgumentError(
        `${m.id} belongs to cluster ${clusterId}, this is cluster ${this.clusterId()}; ` +
          "start it with an empty --data-dir to join this cluster",
      );
    }
    this.#requireLeader();
    const existing = this.replica.members.get(m.id);
    if (existing) {
      if (existing.addr !== m.addr) {
        throw new InvalidArgumentError(
          `${m.id} is already a member at ${existing.addr}, not ${m.addr}; ` +
            "remove it first (member remove) or pick another --node-id",
        );
      }
      this.#refuseEmptiedMember(existing);
      return this.#result();
    }
    const clash = this.members().find((x) => x.addr === m.addr);
    if (clash) {
      throw new InvalidArgumentError(`address ${m.addr} is already used by member ${clash.id}`);
    }
    // A retried join may find its first attempt's change pending: once that applies, the
    // member is there and nothing more is proposed (a second addLearner would be refused).
    const added = await this.#proposeWhenNoneIsPending(
      memberChange("addLearner", m.id, m.addr),
      deadlineMs,
      () => this.replica.members.get(m.id)?.addr === m.addr,
    );
    if (added) this.log.info("added a learner", { member: m.id, addr: m.addr });
    return this.#result();
  }

  /**
   * A member that joins again with an empty data dir. Letting a voter back
   * in would count its empty log as the copy it had acknowledged, and an
   * election without the voters that still hold an acknowledged write could
   * then lose it (Raft's safety rests on every voter keeping its log). A
   * learner that has held part of the log would stay stuck: the leader
   * remembers its old match index and never sends the start again.
   */
  #refuseEmptiedMember(existing: MemberRecord): void {
    const match = this.replica.node.status().progress[existing.id]?.match ?? 0;
    if (!existing.learner || match > 0) {
      throw new InvalidArgumentError(
        `${existing.id} is already a ${
          existing.learner ? "learner that has received the log" : "voter"
        } of this cluster and asks to join with an empty data dir: its data is lost, and it ` +
          `cannot take its old place without what it had acknowledged; remove it ` +
          `(rustkvd-cli member remove ${existing.id}), then start it again with an empty --data-dir`,
      );
    }
  }

  /**
   * Removes `id`. On the leader removing itself, leadership moves first to
   * the most caught-up voter that is reachable, and the caller is told to
   * retry there. A removal that would leave fewer reachable voters than the
   * new configuration's quorum is refused (as etcd's strict reconfiguration
   * check does): the cluster would stop taking writes until a down voter
   * came back.
   */
  async remove(id: string, deadlineMs: number): Promise<JoinResult> {
    this.#requireLeader();
    const member = this.replica.members.get(id);
    if (!member) throw new InvalidArgumentError(`${JSON.stringify(id)} is not a member`);
    const voters = this.members().filter((x) => !x.learner);
    if (!member.learner && voters.length === 1) {
      throw new InvalidArgumentError(
        `${id} is the only voter; a cluster cannot remove its last one`,
      );
    }
    if (!member.learner) this.#requireQuorumWithout(id, voters);
    if (id === this.selfId) {
      const target = this.#mostCaughtUpVoter();
      if (!target) {
        throw new KVError("NoQuorum", "no other voter is healthy and caught up to take over");
      }
      this.replica.transferLeader(target);
      while (this.clock.nowMs() < deadlineMs) {
        const leader = this.replica.softState.leaderId;
        if (leader !== "" && leader !== this.selfId) {
          throw new NotLeaderError(leader, this.replica.members.get(leader)?.addr);
        }
        if (this.replica.isLeader && this.replica.node.status().leadTransferee === "") {
          // The transfer timed out (the target stopped answering): try the best one now.
          const next = this.#mostCaughtUpVoter();
          if (next) this.replica.transferLeader(next);
        }
        await this.clock.sleep(10);
      }
      throw new KVError("Timeout", "leadership did not move to another voter before the deadline");
    }
    await this.#proposeWhenNoneIsPending(memberChange("removeNode", id, member.addr), deadlineMs);
    this.log.info("removed a member", { member: id });
    return this.#result();
  }

  /**
   * Called periodically: on the leader, promotes one caught-up learner (the
   * Raft core allows one pending change, so one per round).
   */
  async promoteCaughtUpLearners(deadlineMs: number): Promise<void> {
    if (this.#promoting || !this.replica.isLeader) return;
    const status = this.replica.node.status();
    for (const m of this.members()) {
      if (!m.learner) continue;
      const pr = status.progress[m.id];
      if (!pr || pr.state !== "replicate" || pr.match + promoteLagEntries < status.lastIndex) {
        continue;
      }
      this.#promoting = true;
      try {
        await this.replica.proposeConfChange(memberChange("addVoter", m.id, m.addr), deadlineMs);
        this.log.info("promoted a learner to voter", { member: m.id, match: pr.match });
      } catch (e) {
        // Another change is pending or leadership moved: the next round retries.
        this.log.debug("promotion deferred", { member: m.id, reason: (e as Error).message });
      } finally {
        this.#promoting = false;
      }
      return;
    }
  }

  /**
   * Proposes an operator's change, waiting (until the deadline) while an
   * earlier change is still unapplied: the Raft core allows one at a time, and
   * an automatic promotion or a change that a new leader inherited from its
   * predecessor's log should delay an operator's request, not fail it.
   */
  async #proposeWhenNoneIsPending(
    change: ConfChange,
    deadlineMs: number,
    alreadyDone: () => boolean = () => false,
  ): Promise<boolean> {
    for (;;) {
      if (alreadyDone()) return false;
      try {
        await this.replica.proposeConfChange(change, deadlineMs);
        return true;
      } catch (e) {
        if (!isKVError(e, "Conflict") || this.clock.nowMs() + pendingRetryMs >= deadlineMs) throw e;
      }
      await this.clock.sleep(pendingRetryMs);
      this.#requireLeader();
    }
  }

  /** Refuses removing voter `id` when the voters left that answer the leader are no quorum. */
  #requireQuorumWithout(id: string, voters: MemberRecord[]): void {
    const left = voters.filter((v) => v.id !== id);
    const down = left.filter((v) => !this.#reachable(v.id)).map((v) => v.id);
    const quorum = Math.floor(left.length / 2) + 1;
    if (left.length - down.length < quorum) {
      throw new InvalidArgumentError(
        `removing ${id} would leave ${left.length} voters of which ${
          left.length - down.length
        } answer the leader (${down.join(", ")} not), fewer than the ${quorum} a quorum needs: ` +
          `the cluster would stop taking writes; bring ${down.join(", ")} back first, ` +
          "or remove a voter that is down",
      );
    }
  }

  /** The leader itself, or a peer heard from within the failure detector's "down" time. */
  #reachable(id: string): boolean {
    return id === this.selfId || this.peerHealth(id) !== "down";
  }

  #mostCaughtUpVoter(): string | undefined {
    const progress = this.replica.node.status().progress;
    let best: string | undefined;
    let bestMatch = -1;
    for (const m of this.members()) {
      // A leadership transfer to a peer not heard lately would only time out.
      if (m.learner || m.id === this.selfId || this.peerHealth(m.id) !== "healthy") continue;
      const match = progress[m.id]?.match ?? -1;
      if (match > bestMatch) {
        best = m.id;
        bestMatch = match;
      }
    }
    return best;
  }

  #requireLeader(): void {
    if (!this.replica.isLeader) throw this.replica.notLeader();
  }

  #result(): JoinResult {
    return { clusterId: this.clusterId(), members: this.members() };
  }
}
