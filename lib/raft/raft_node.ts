/**
 * The public face of the Raft core (etcd's RawNode): inputs are tick(), step(),
 * propose(), readIndex(), transferLeader(), proposeMembershipChange(); the output
 * is a Ready batch the driver persists, sends and applies before advance(). The
 * exact contract is in lib/raft/README.md.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import type { RaftConfig } from "./config.ts";
import { Raft, type RejectReason } from "./raft.ts";
import type { ProgressState } from "./progress.ts";
import {
  cloneConfState,
  type ConfChange,
  type ConfState,
  type HardState,
  hardStateEqual,
  type Message,
  type RaftRole,
  type Ready,
  type SoftState,
} from "./types.ts";

/** A refusal: why, and who the leader is as far as we know ("" when unknown). */
export interface Rejection {
  /** Always false: nothing happened. */
  ok: false;
  /** Why; see RejectReason. */
  reason: RejectReason;
  /** Where to retry ("" when unknown). */
  leaderId: string;
  /** Extra explanation (e.g. why a membership change is invalid). */
  detail?: string;
}

/** Snapshot of a node's state for status pages, tests and the simulator. */
export interface RaftStatus {
  /** This node's id. */
  id: string;
  /** The group. */
  groupId: number;
  /** Current role. */
  role: RaftRole;
  /** currentTerm. */
  term: number;
  /** votedFor in `term` ("" = none). */
  vote: string;
  /** Known leader ("" = unknown). */
  leaderId: string;
  /** commitIndex. */
  commit: number;
  /** Highest index handed to the driver to apply and acknowledged by advance(). */
  applied: number;
  /** First index still in the log (after the snapshot). */
  firstIndex: number;
  /** Last index in the log, persisted or not. */
  lastIndex: number;
  /** Per member; meaningful on the leader only (empty elsewhere). */
  progress: Record<
    string,
    { match: number; next: number; state: ProgressState; recentActive: boolean }
  >;
  /** Current membership (as of the applied index). */
  conf: ConfState;
  /** Target of an ongoing leadership transfer ("" = none). */
  leadTransferee: string;
}

/** One Raft replica behind the Ready contract. */
export class RaftNode {
  readonly #raft: Raft;
  #prevSoft: SoftState;
  #prevHard: HardState;
  /** The Ready handed out and not yet advanced, with the self-addressed messages it held. */
  #outstanding: { rd: Ready; local: Message[] } | undefined;

  /** Loads the persisted state from `config.storage` and starts as a follower. */
  constructor(config: RaftConfig) {
    this.#raft = new Raft(config);
    this.#prevSoft = this.#softState();
    this.#prevHard = this.#hardState();
  }

  /** This node's id. */
  get id(): string {
    return this.#raft.id;
  }

  /** The group this node replicates. */
  get groupId(): number {
    return this.#raft.groupId;
  }

  #softState(): SoftState {
    return { role: this.#raft.role, leaderId: this.#raft.lead };
  }

  /**
   * With `holdEntries`, the commit index is capped below the first entry held back: a hard
   * state is written before the entries of a later Ready, and a commit index over entries the
   * log does not hold (or holds in an older, superseded version) must never become durable.
   */
  #hardState(holdEntries = false): HardState {
    const r = this.#raft;
    let commit = r.log.committed;
    const held = this.#firstHeld(holdEntries);
    if (held !== undefined) commit = Math.max(Math.min(commit, held - 1), this.#prevHard.commit);
    return { term: r.term, vote: r.vote, commit };
  }

  /**
   * The first entry a Ready asked with `holdEntries` holds back, if it holds
   * any: nothing that promises it or what follows (an acknowledgement, a
   * commit index, an apply) may go out with that Ready.
   */
  #firstHeld(holdEntries: boolean): number | undefined {
    const unstable = this.#raft.log.unstable;
    return holdEntries && unstable.hasEntriesToPersist() ? unstable.offsetInProgress : undefined;
  }

  /** Advances logical time by one tick (the driver calls it every tick interval). */
  tick(): void {
    this.#raft.tick();
  }

  /** Feeds a message received from a peer. Messages for another group are ignored. */
  step(m: Message): void {
    this.#raft.step(m);
  }

  /**
   * `step` for a driver that keeps a read lease (RaftConfig.leaseReads):
   * `leaseHolds` says whether it holds now, and when it does a follower's
   * ReadIndex request is answered at once from the commit index.
   */
  stepLeased(m: Message, leaseHolds: boolean): void {
    const r = this.#raft;
    r.leaseHolds = leaseHolds;
    try {
      r.step(m);
    } finally {
      r.leaseHolds = false;
    }
  }

  /** Starts an election now (bootstrapping and tests; normally the election timer does it). */
  campaign(): void {
    this.#raft.hup(false);
  }

  /** Proposes client data; on success it will be committed at `index` if `term` survives. */
  propose(data: Uint8Array): { ok: true; index: number; term: number } | Rejection {
    return this.#raft.propose(data);
  }

  /**
   * Proposes client data on any replica: appended here when we lead, relayed
   * to the leader otherwise (the result then names it; no index is known).
   */
  proposeAnywhere(
    data: Uint8Array,
  ): { ok: true; index: number; term: number } | { ok: true; forwardedTo: string } | Rejection {
    return this.#raft.proposeAnywhere(data);
  }

  /**
   * Changes whenever a read lease taken before may no longer hold (see
   * RaftConfig.leaseReads): the driver keeps a lease only while this stays
   * what it was when the lease's heartbeat round was asked for.
   */
  get leaseEpoch(): number {
    return this.#raft.leaseEpoch;
  }

  /**
   * The index a leader may serve a read at without a heartbeat round while
   * it holds a lease (its commit index), or -1 when it may not: not the
   * leader, no entry of its term committed yet (its commit index may be
   * stale), or a leadership transfer under way or started in this term
   * (its TimeoutNow may still arrive and start an election that ignores
   * leases).
   */
  leaseReadIndex(): number {
    const r = this.#raft;
    if (
      r.role !== "leader" || r.leadTransferee !== "" || r.timeoutNowTerm === r.term ||
      !r.committedEntryInCurrentTerm()
    ) {
      return -1;
    }
    return r.log.committed;
  }

  /** Requests a linearizable read; the result arrives as a ReadState in a later Ready. */
  readIndex(context: Uint8Array): { ok: true } | Rejection {
    return this.#raft.readIndex(context);
  }

  /** Asks the leader to hand leadership to `to` (forwarded when we are a follower). */
  transferLeader(to: string): void {
    this.#raft.transferLeader(to);
  }

  /** Proposes one membership change (a ConfChange entry); one may be pending at a time. */
  proposeMembershipChange(
    change: ConfChange,
  ): { ok: true; index: number; term: number } | Rejection {
    return this.#raft.proposeMembershipChange(change);
  }

  /**
   * Switches membership. The driver calls it when it applies a committed
   * ConfChange entry (decodeConfChange(entry.data)), in log order, before advance().
   */
  applyConfChange(change: ConfChange): ConfState {
    return this.#raft.applyConfChange(change);
  }

  /** The transport failed to deliver to `to`. */
  reportUnreachable(to: string): void {
    this.#raft.reportUnreachable(to);
  }

  /** The driver finished (or gave up) streaming a snapshot to `to`. */
  reportSnapshot(to: string, success: boolean): void {
    this.#raft.reportSnapshot(to, success);
  }

  /**
   * True when ready() would return something to do. With `holdEntries`, new
   * entries alone are not work (the driver takes them with a later Ready);
   * committed entries past `applyUpTo` are not handed out yet.
   */
  hasReady(holdEntries = false, applyUpTo = Number.MAX_SAFE_INTEGER): boolean {
    if (this.#outstanding) return false;
    const r = this.#raft;
    if (r.needsFlush()) return true;
    const soft = this.#softState();
    if (soft.role !== this.#prevSoft.role || soft.leaderId !== this.#prevSoft.leaderId) return true;
    if (!hardStateEqual(this.#hardState(holdEntries), this.#prevHard)) return true;
    if (r.log.unstable.snapshot || (!holdEntries && r.log.unstable.hasEntriesToPersist())) {
      return true;
    }
    const held = this.#firstHeld(holdEntries);
    if (held !== undefined) applyUpTo = Math.min(applyUpTo, held - 1);
    const acksHeld = held !== undefined;
    if (
      r.msgs.length > 0 || (!acksHeld && r.msgsAfterAppend.length > 0) || r.readStates.length > 0
    ) {
      return true;
    }
    return r.log.hasNextCommittedEntries(applyUpTo);
  }

  /**
   * The next batch of work. Call advance(rd) (or advanceBeforePersisted) once
   * it is done before calling ready() again; steps and ticks in between are
   * allowed. Entries are handed out once: with `holdEntries` none are, and
   * a later Ready carries them. Committed entries are handed out up to
   * `applyUpTo` (a write-behind leader's written log).
   */
  ready(holdEntries = false, applyUpTo = Number.MAX_SAFE_INTEGER): Ready {
    assert(this.#outstanding === undefined, "ready() called again before advance()");
    const r = this.#raft;
    r.flush();
    const soft = this.#softState();
    const hard = this.#hardState(holdEntries);
    const persisted: Message[] = [];
    const local: Message[] = [];
    // Acks may promise entries held back: they leave with the Ready that writes them. Nor is
    // a held entry (or one below it replacing a durable one) handed out to apply.
    const held = this.#firstHeld(holdEntries);
    if (held !== undefined) applyUpTo = Math.min(applyUpTo, held - 1);
    const acksHeld = held !== undefined;
    if (!acksHeld) {
      for (const m of r.msgsAfterAppend) {
        (m.to === r.id ? local : persisted).push(m);
      }
    }
    const rd: Ready = {
      entries: holdEntries ? [] : r.log.unstable.entriesToPersist(),
      committedEntries: r.log.hasNextCommittedEntries(applyUpTo)
        ? r.log.nextCommittedEntries(r.cfg.maxApplyBytesPerReady, applyUpTo)
        : [],
      messages: r.msgs,
      persistedMessages: persisted,
      readStates: r.readStates,
      mustSync: false,
    };
    if (soft.role !== this.#prevSoft.role || soft.leaderId !== this.#prevSoft.leaderId) {
      rd.softState = soft;
      this.#prevSoft = soft;
    }
    if (!hardStateEqual(hard, this.#prevHard)) {
      rd.hardState = hard;
      this.#prevHard = hard;
    }
    if (r.log.unstable.snapshot) rd.snapshot = r.log.unstable.snapshot;
    // Commit is synced too, so the commit index never moves back across a restart.
    rd.mustSync = rd.entries.length > 0 || rd.snapshot !== undefined || rd.hardState !== undefined;
    r.msgs = [];
    if (!acksHeld) r.msgsAfterAppend = [];
    r.readStates = [];
    if (!holdEntries) r.log.unstable.acceptInProgress();
    this.#outstanding = { rd, local };
    return rd;
  }

  /** The driver persisted, sent and applied `rd`: marks it done. */
  advance(rd: Ready): void {
    this.#advance(rd, true);
  }

  /**
   * The driver sent and applied `rd` and is still writing its entries (a
   * leader: it may commit with its followers' copies before its own is
   * durable, Raft thesis §10.2.1). They count as this node's only once
   * `persisted` reports them. Not for a Ready with a snapshot.
   */
  advanceBeforePersisted(rd: Ready): void {
    assert(rd.snapshot === undefined, "a snapshot is persisted before advance()");
    this.#advance(rd, false);
  }

  /** The driver's write of the entries up to `index` (of `term`) is durable. */
  persisted(index: number, term: number): void {
    const r = this.#raft;
    r.log.stableTo(index, term);
    if (!r.log.unstable.snapshot) r.selfAck(r.log.unstable.offset - 1);
  }

  #advance(rd: Ready, entriesPersisted: boolean): void {
    const out = this.#outstanding;
    assert(out !== undefined && out.rd === rd, "advance() without the matching ready()");
    this.#outstanding = undefined;
    const r = this.#raft;
    if (rd.snapshot) r.log.stableSnapTo(rd.snapshot.meta.index);
    if (entriesPersisted && rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1];
      r.log.stableTo(last.index, last.term);
    }
    let applied = rd.snapshot ? rd.snapshot.meta.index : 0;
    if (rd.committedEntries.length > 0) {
      applied = Math.max(applied, rd.committedEntries[rd.committedEntries.length - 1].index);
      r.reduceUncommitted(rd.committedEntries);
    }
    if (applied > r.log.applied) r.log.appliedTo(applied);
    if (!r.log.unstable.snapshot) r.selfAck(r.log.unstable.offset - 1);
    for (const m of out.local) r.step(m);
  }

  /**
   * The snapshot the core has taken to install and not yet handed out as
   * persisted (undefined: none): a receiver keeps its copy until then.
   */
  pendingSnapshot(): { index: number; term: number } | undefined {
    const snap = this.#raft.log.unstable.snapshot;
    // One already handed out in the Ready being processed is being installed (or is): a
    // copy delivered now is not the one that Ready installs.
    if (!snap || this.#outstanding?.rd.snapshot === snap) return undefined;
    return { index: snap.meta.index, term: snap.meta.term };
  }

  /** A point-in-time view of this node. */
  status(): RaftStatus {
    const r = this.#raft;
    const progress: RaftStatus["progress"] = {};
    if (r.role === "leader") {
      for (const [id, pr] of r.progress) {
        progress[id] = {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          recentActive: pr.recentActive,
        };
      }
    }
    return {
      id: r.id,
      groupId: r.groupId,
      role: r.role,
      term: r.term,
      vote: r.vote,
      leaderId: r.lead,
      commit: r.log.committed,
      applied: r.log.applied,
      firstIndex: r.log.firstIndex(),
      lastIndex: r.log.lastIndex(),
      progress,
      conf: cloneConfState(r.conf),
      leadTransferee: r.leadTransferee,
    };
  }

  /** The term of the entry at `index` in this node's log (stable or not); undefined if unknown. */
  logTerm(index: number): number | undefined {
    return this.#raft.log.term(index);
  }
}
