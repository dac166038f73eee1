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
  ) {}

  /** The members with their addresses, voters and learners, sorted by id. */
  members(): MemberRecord[] {
    return [...this.replica.members.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /**
   * Adds `id` at `addr` as a learner (promoted once caught up) and resolves
   * once the change is applied. Asking again for a member that already has
   * that address succeeds without a change, so a joiner that crashed
   * mid-join can simply retry. The same id under another address, or an
   * address already used by another id, is refused.
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
   * Removes `id`. On the leader removing itself, leadership moves first to
   * the most caught-up voter, and the caller is told to retry there.
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
    if (id === this.selfId) {
      const target = this.#mostCaughtUpVoter();
      if (!target) throw new KVError("NoQuorum", "no other voter is caught up to take over");
      this.replica.transferLeader(target);
      while (this.clock.nowMs() < deadlineMs) {
        const leader = this.replica.softState.leaderId;
        if (leader !== "" && leader !== this.selfId) {
          throw new NotLeaderError(leader, this.replica.members.get(leader)?.addr);
        }
        await this.clock.sleep(10);
      }
      throw new KVError("Timeout", `leadership did not move to ${target} before the deadline`);
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

  #mostCaughtUpVoter(): string | undefined {
    const progress = this.replica.node.status().progress;
    let best: string | undefined;
    let bestMatch = -1;
    for (const m of this.members()) {
      if (m.learner || m.id === this.selfId) continue;
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
