/**
 * The Raft state machine: roles, elections, replication, ReadIndex, leadership
 * transfer and membership, following the paper (§5, §6, §7) and the thesis
 * (ch. 3, 4, 6, 9). Pure: it reacts to tick() and step() by mutating its state and
 * queueing messages; RaftNode turns that into Ready batches for the driver.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { emptyBytes, equalBytes, fromUtf8, utf8 } from "../common/bytes.ts";
import { maxEntriesPerAppend, maxPendingProposals, maxPendingReads } from "../common/limits.ts";
import type { Random } from "../common/random.ts";
import { type RaftConfig, resolveConfig, type ResolvedRaftConfig } from "./config.ts";
import { RaftLog } from "./log.ts";
import { LogCompactedError } from "./storage.ts";
import { applyConfChangeTo, isMember, validateConfChange } from "./membership.ts";
import { Progress } from "./progress.ts";
import { committedIndex, voteResult } from "./quorum.ts";
import { decodeRound, encodeRound, ReadOnly } from "./read_only.ts";
import { encodeConfChange } from "./codec.ts";
import {
  cloneConfState,
  type ConfChange,
  type ConfState,
  type Entry,
  entrySize,
  EntryType,
  type Message,
  MessageType,
  newMessage,
  type RaftRole,
  type ReadState,
  type Snapshot,
} from "./types.ts";

/** Why a proposal, read or membership change was refused. */
export type RejectReason =
  | "notLeader"
  | "dropped"
  | "transferring"
  | "pendingConfChange"
  | "termNotCommitted"
  | "invalid";

/** Outcome of a proposal. */
export type ProposeResult =
  | { ok: true; index: number; term: number }
  | { ok: false; reason: RejectReason; leaderId: string; detail?: string };

/** Vote context marking an election started by leadership transfer (skips the lease check). */
const transferContext = utf8("transfer");

/** One Raft replica's protocol state. RaftNode is the public facade over it. */
export class Raft {
  readonly id: string;
  readonly groupId: number;
  readonly log: RaftLog;
  readonly cfg: ResolvedRaftConfig;
  readonly #random: Random;

  term = 0;
  vote = "";
  lead = "";
  role: RaftRole = "follower";
  conf: ConfState;
  /** Per-member replication progress (meaningful while leader). */
  progress = new Map<string, Progress>();
  /** Votes received in the current election (true = granted). */
  votes = new Map<string, boolean>();

  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;
  /** Target of an ongoing leadership transfer, "" when none. */
  leadTransferee = "";
  /**
   * The term in which this node last sent a TimeoutNow (0: never). The
   * forced election it starts ignores leases, and the message may arrive
   * late (a paused transferee), after the transfer timed out here: no read
   * lease is safe for the rest of that term.
   */
  timeoutNowTerm = 0;
  /**
   * Bumped whenever a read lease taken before may stop holding: a change of
   * term or role, the start of a leadership transfer (its forced election
   * ignores leases), a membership change (another quorum).
   */
  leaseEpoch = 0;
  /** Ticks left during which a just-started voter ignores (Pre)Votes (leaseReads). */
  #startQuietTicks = 0;
  /**
   * Ticks since a leader's Append, Heartbeat or Snapshot last reached us.
   * Unlike electionElapsed and `lead` it survives a change of term: a late
   * rejection carrying a higher term must not end the one election timeout
   * during which we ignore votes (a leader may hold a lease on our
   * acknowledgement).
   */
  #ticksSinceLeader = Number.MAX_SAFE_INTEGER;
  /**
   * True while the driver steps messages with its read lease holding (it
   * keeps the lease, with a clock): a follower's ReadIndex is then answered
   * at the commit index at once, without a heartbeat round.
   */
  leaseHolds = false;
  /** Index of the newest ConfChange entry proposed by this leader; none may follow until applied. */
  pendingConfIndex = 0;
  /** Bytes of entries proposed in this term and not yet applied. */
  uncommittedBytes = 0;

  readonly readOnly = new ReadOnly();
  /** Read requests waiting for the first commit of this leader's term. */
  pendingReadRequests: { context: Uint8Array; from: string }[] = [];

  /** Messages that may be sent now. */
  msgs: Message[] = [];
  /** Messages to send only after the current unstable state is persisted. */
  msgsAfterAppend: Message[] = [];
  readStates: ReadState[] = [];
  /** Peers that need an Append at the next flush; the value asks for one even if empty. */
  readonly #dirty = new Map<string, boolean>();

  constructor(config: RaftConfig) {
    this.cfg = resolveConfig(config);
    this.id = config.id;
    this.groupId = config.groupId;
    this.#random = config.random;
    this.log = new RaftLog(config.storage);
    const { hardState, confState } = config.storage.initialState();
    this.conf = cloneConfState(confState);
    if (hardState.term !== 0 || hardState.vote !== "" || hardState.commit !== 0) {
      assert(
        hardState.commit <= this.log.lastIndex(),
        `hard state commit ${hardState.commit} is past the last index ${this.log.lastIndex()}`,
      );
      // A snapshot holds committed state only, so commit is at least its index
      // (the hard state's commit may lag it: it is not synced on its own).
      this.log.committed = Math.max(
        hardState.commit,
        this.log.committed,
        config.storage.snapshot().meta.index,
      );
      this.term = hardState.term;
      this.vote = hardState.vote;
    }
    if (this.cfg.applied > 0) this.log.appliedTo(Math.max(this.cfg.applied, this.log.applied));
    this.becomeFollower(this.term, "");
    this.#startQuietTicks = Math.max(
      this.cfg.leaseReads ? this.cfg.electionTicks : 0,
      this.cfg.startQuietTicks,
    );
  }

  // ---- roles -------------------------------------------------------------

  /** True when this node may become leader: it is a voter of the current config. */
  promotable(): boolean {
    return this.conf.voters.includes(this.id);
  }

  #resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.cfg.electionTicks +
      this.#random.nextInt(this.cfg.electionTicks);
  }

  #reset(term: number): void {
    this.leaseEpoch++;
    if (this.term !== term) {
      this.term = term;
      this.vote = "";
    }
    this.lead = "";
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.#resetRandomizedElectionTimeout();
    this.leadTransferee = "";
    this.votes.clear();
    this.pendingConfIndex = 0;
    this.uncommittedBytes = 0;
    this.readOnly.reset();
    this.pendingReadRequests = [];
    this.#dirty.clear();
    this.#rebuildProgress();
  }

  #rebuildProgress(): void {
    const last = this.log.lastIndex();
    this.progress = new Map();
    const add = (id: string, learner: boolean) => {
      const pr = new Progress(last + 1, learner, this.cfg.maxInflight, this.cfg.maxInflightBytes);
      this.progress.set(id, pr);
    };
    for (const id of this.conf.voters) add(id, false);
    for (const id of this.conf.learners) add(id, true);
  }

  /** Steps down (or starts) as a follower of `lead` in `term`. */
  becomeFollower(term: number, lead: string): void {
    this.role = "follower";
    this.#reset(term);
    this.lead = lead;
  }

  /** Starts a PreVote round: no term change, no vote cast (thesis §9.6). */
  becomePreCandidate(): void {
    assert(this.role !== "leader", "a leader cannot become a precandidate");
    this.role = "precandidate";
    this.votes.clear();
    this.lead = "";
  }

  /** Starts a real election: new term, vote for self (§5.2). */
  becomeCandidate(): void {
    assert(this.role !== "leader", "a leader cannot become a candidate");
    this.#reset(this.term + 1);
    this.vote = this.id;
    this.role = "candidate";
  }

  /** Wins the election: resets progress and appends the term's no-op entry (§5.4.2, §8). */
  becomeLeader(): void {
    assert(this.role === "candidate", `becomeLeader from ${this.role}`);
    this.#reset(this.term);
    this.role = "leader";
    this.lead = this.id;
    const self = this.progress.get(this.id);
    assert(self !== undefined, "a leader is a voter");
    // Only what is durable counts as the leader's own replica (see selfAck).
    self.match = this.log.unstable.snapshot ? 0 : this.log.unstable.offset - 1;
    self.becomeReplicate();
    self.recentActive = true;
    for (const pr of this.progress.values()) pr.recentActive = pr === self;
    // Membership changes wait until everything before this term is applied.
    this.pendingConfIndex = this.log.lastIndex();
    this.#appendEntries([{
      index: 0,
      term: 0,
      type: EntryType.Normal,
      groupId: this.groupId,
      data: new Uint8Array(),
    }]);
  }

  // ---- sending ------------------------------------------------------------

  #send(m: Message): void {
    m.groupId = this.groupId;
    m.from = this.id;
    const t = m.type;
    const voteish = t === MessageType.Vote || t === MessageType.PreVote ||
      t === MessageType.VoteResponse || t === MessageType.PreVoteResponse;
    if (voteish) {
      assert(m.term > 0, "vote messages carry an explicit term");
    } else if (
      t !== MessageType.ReadIndex && t !== MessageType.TransferLeader && t !== MessageType.Propose
    ) {
      m.term = this.term;
    }
    if (
      t === MessageType.AppendResponse || t === MessageType.VoteResponse ||
      t === MessageType.PreVoteResponse
    ) {
      this.msgsAfterAppend.push(m);
    } else {
      this.msgs.push(m);
    }
  }

  #markDirty(to: string, sendIfEmpty: boolean): void {
    if (to === this.id) return;
    this.#dirty.set(to, (this.#dirty.get(to) ?? false) || sendIfEmpty);
  }

  #markAllDirty(sendIfEmpty: boolean): void {
    for (const id of this.progress.keys()) this.#markDirty(id, sendIfEmpty);
  }

  /**
   * The commit index moved: followers hear of it with an empty Append now, or
   * (lazyCommitBroadcast) with whatever goes to them next, at the latest at
   * the next tick (#tickHeartbeat); a follower that relayed a now committed
   * entry hears of it at once (its client waits for it to apply the entry).
   */
  #announceCommit(): void {
    if (!this.cfg.lazyCommitBroadcast) {
      this.#markAllDirty(true);
      return;
    }
    for (const [id, pr] of this.progress) {
      // A follower waiting for the commit of an entry it relayed hears of it now.
      const waiting = pr.sentCommit < pr.relayedUpTo && pr.relayedUpTo <= this.log.committed;
      this.#markDirty(id, waiting);
    }
  }

  /** True when a flush would send something (deferred Appends or a ReadIndex round). */
  needsFlush(): boolean {
    return this.role === "leader" && (this.#dirty.size > 0 || this.readOnly.needBroadcast);
  }

  /**
   * Sends what was deferred since the last Ready: one batch of Appends per peer
   * (all proposals since then, many entries per message) and one heartbeat round
   * for all new ReadIndex requests.
   */
  flush(): void {
    if (this.role !== "leader") {
      this.#dirty.clear();
      return;
    }
    for (const [to, ifEmpty] of this.#dirty) {
      if (!this.progress.has(to)) continue;
      let sent = this.#maybeSendAppend(to, ifEmpty);
      while (sent) sent = this.#maybeSendAppend(to, false);
    }
    this.#dirty.clear();
    if (this.readOnly.needBroadcast) this.#bcastHeartbeat();
  }

  /**
   * Sends one Append (or the snapshot) to `to` unless its progress is paused.
   * Returns true when a message carrying entries went out and more may follow.
   */
  #maybeSendAppend(to: string, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const last = this.log.lastIndex();
    let ents: Entry[] = [];
    if (prevTerm === undefined) return this.#maybeSendSnapshot(to, pr);
    if (pr.next <= last) {
      try {
        ents = this.log.slice(
          pr.next,
          Math.min(last + 1, pr.next + maxEntriesPerAppend),
          this.cfg.maxSizePerMsg,
        );
      } catch (e) {
        if (e instanceof LogCompactedError) return this.#maybeSendSnapshot(to, pr);
        throw e;
      }
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    let bytes = 0;
    for (const e of ents) bytes += entrySize(e);
    this.#send(newMessage({
      type: MessageType.Append,
      groupId: this.groupId,
      from: this.id,
      to,
      index: prevIndex,
      logTerm: prevTerm,
      entries: ents,
      commit: this.log.committed,
    }));
    pr.sentCommit = this.log.committed;
    pr.sentEntries(prevIndex + ents.length, ents.length, bytes);
    return ents.length > 0 && pr.state === "replicate";
  }

  #sendEmptyAppend(to: string, pr: Progress): void {
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined) {
      // Compacted meanwhile: start over from the match (which leads to a snapshot).
      pr.becomeProbe();
      this.#markDirty(to, true);
      return;
    }
    this.#send(newMessage({
      type: MessageType.Append,
      groupId: this.groupId,
      from: this.id,
      to,
      index: prevIndex,
      logTerm: prevTerm,
      commit: this.log.committed,
    }));
    pr.sentCommit = this.log.committed;
  }

  #maybeSendSnapshot(to: string, pr: Progress): boolean {
    if (!pr.recentActive) return false; // wait until the peer answers at all
    const snap: Snapshot = this.log.snapshot();
    assert(snap.meta.index > 0, "a compacted log always has a snapshot");
    this.#send(
      newMessage({
        type: MessageType.Snapshot,
        groupId: this.groupId,
        from: this.id,
        to,
        snapshot: snap,
      }),
    );
    pr.becomeSnapshot(snap.meta.index);
    return false;
  }

  #bcastHeartbeat(): void {
    let context: Uint8Array | undefined;
    if (this.readOnly.pending > 0) {
      context = encodeRound(this.readOnly.lastRound);
      this.readOnly.needBroadcast = false;
    }
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      const m = newMessage({
        type: MessageType.Heartbeat,
        groupId: this.groupId,
        from: this.id,
        to: id,
        commit: Math.min(pr.match, this.log.committed),
      });
      if (m.commit > pr.sentCommit) pr.sentCommit = m.commit;
      if (context) m.context = context;
      this.#send(m);
    }
    this.#maybeReleaseReads();
  }

  // ---- ticking ------------------------------------------------------------

  /** Advances logical time by one tick. */
  tick(): void {
    if (this.#startQuietTicks > 0) this.#startQuietTicks--;
    if (this.#ticksSinceLeader < Number.MAX_SAFE_INTEGER) this.#ticksSinceLeader++;
    if (this.role === "leader") this.#tickHeartbeat();
    else this.#tickElection();
  }

  #tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  #tickHeartbeat(): void {
    if (this.cfg.lazyCommitBroadcast) {
      for (const [id, pr] of this.progress) {
        if (id !== this.id && pr.sentCommit < this.log.committed) this.#markDirty(id, true);
      }
    }
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTicks) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum && !this.#quorumActive()) {
        this.becomeFollower(this.term, ""); // §6.2 / thesis §6.2: lost its quorum
        return;
      }
      if (this.leadTransferee !== "") this.leadTransferee = ""; // transfer timed out
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.#bcastHeartbeat();
    }
  }

  /** CheckQuorum: did a quorum of voters answer during the last election timeout? Resets the marks. */
  #quorumActive(): boolean {
    let active = 0;
    for (const id of this.conf.voters) {
      const pr = this.progress.get(id);
      if (id === this.id || pr?.recentActive) active++;
    }
    for (const [id, pr] of this.progress) pr.recentActive = id === this.id;
    return voteResult(this.conf.voters.length, active, 0) === "won";
  }

  // ---- elections ----------------------------------------------------------

  /** Committed but unapplied ConfChange entries (a node with one must not campaign). */
  #hasUnappliedConfChange(): boolean {
    if (this.log.committed <= this.log.applied) return false;
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    for (const e of this.log.slice(lo, this.log.committed + 1)) {
      if (e.type === EntryType.ConfChange) return true;
    }
    return false;
  }

  /** Starts an election now if this node may (election timeout or a TimeoutNow). */
  hup(transfer: boolean): void {
    if (this.role === "leader" || !this.promotable()) return;
    if (this.#hasUnappliedConfChange()) return;
    if (this.cfg.preVote && !transfer) this.#campaign("pre", false);
    else this.#campaign("real", transfer);
  }

  #campaign(kind: "pre" | "real", transfer: boolean): void {
    let term: number;
    let type: MessageType;
    if (kind === "pre") {
      this.becomePreCandidate();
      type = MessageType.PreVote;
      term = this.term + 1; // the term we would campaign in; ours does not change yet
      // A PreVote changes nothing durable, so our own grant counts at once.
      if (this.#poll(this.id, true) === "won") {
        this.#campaign("real", false);
        return;
      }
    } else {
      this.becomeCandidate();
      type = MessageType.Vote;
      term = this.term;
      // Our own vote counts only once it is durable: it arrives after the next Ready.
      this.msgsAfterAppend.push(newMessage({
        type: MessageType.VoteResponse,
        groupId: this.groupId,
        from: this.id,
        to: this.id,
        term,
      }));
    }
    for (const id of this.conf.voters) {
      if (id === this.id) continue;
      const m = newMessage({
        type,
        groupId: this.groupId,
        from: this.id,
        to: id,
        term,
        index: this.log.lastIndex(),
        logTerm: this.log.lastTerm(),
      });
      if (transfer) m.context = transferContext;
      this.#send(m);
    }
  }

  #poll(id: string, granted: boolean): "won" | "lost" | "pending" {
    if (!this.votes.has(id)) this.votes.set(id, granted);
    let g = 0;
    let r = 0;
    for (const v of this.conf.voters) {
      const x = this.votes.get(v);
      if (x === true) g++;
      else if (x === false) r++;
    }
    return voteResult(this.conf.voters.length, g, r);
  }

  // ---- stepping -----------------------------------------------------------

  /** Handles one message from a peer (or a self-addressed one after persistence). */
  step(m: Message): void {
    if (m.groupId !== this.groupId) return; // misrouted: not ours
    if (m.term === 0) {
      // Forwarded requests carry no term (they are local requests relayed).
    } else if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        const force = m.context !== undefined && equalBytes(m.context, transferContext);
        const inLease = this.cfg.checkQuorum &&
          ((this.lead !== "" && this.electionElapsed < this.cfg.electionTicks) ||
            this.#ticksSinceLeader < this.cfg.electionTicks || this.#startQuietTicks > 0);
        if (!force && inLease) return; // we heard from a leader recently: ignore (thesis §4.2.3)
      }
      if (m.type === MessageType.PreVote) {
        // A PreVote never changes our term.
      } else if (m.type === MessageType.PreVoteResponse && !m.reject) {
        // Granted PreVotes carry the future term; counted in stepCandidate.
      } else if (
        m.type === MessageType.Append || m.type === MessageType.Heartbeat ||
        m.type === MessageType.Snapshot
      ) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, "");
      }
    } else if (m.term < this.term) {
      if (
        (this.cfg.checkQuorum || this.cfg.preVote || !this.promotable()) &&
        (m.type === MessageType.Heartbeat || m.type === MessageType.Append)
      ) {
        // A stale leader (e.g. back from a partition) learns of the newer term. Without
        // checkQuorum and PreVote a voter ahead in term gets it there by campaigning; a
        // learner (a voter demoted after it campaigned) cannot, so it answers too.
        this.#send(
          newMessage({
            type: MessageType.AppendResponse,
            groupId: this.groupId,
            from: this.id,
            to: m.from,
          }),
        );
      } else if (m.type === MessageType.PreVote || m.type === MessageType.Vote) {
        // A candidate behind in term learns ours from the rejection (§5.1: the reply
        // carries currentTerm "for candidate to update itself"). Dropping a Vote silently
        // can leave a voter of a newer configuration that needs our vote unable ever to
        // reach our term: when our (stale) configuration does not count it as a voter,
        // nothing of ours goes to it, and its own timeouts race ours forever.
        this.#send(newMessage({
          type: m.type === MessageType.PreVote
            ? MessageType.PreVoteResponse
            : MessageType.VoteResponse,
          groupId: this.groupId,
          from: this.id,
          to: m.from,
          term: this.term,
          reject: true,
        }));
      }
      return; // everything else from an older term is ignored
    }

    if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
      this.#handleVoteRequest(m);
      return;
    }
    switch (this.role) {
      case "leader":
        this.#stepLeader(m);
        break;
      case "candidate":
      case "precandidate":
        this.#stepCandidate(m);
        break;
      case "follower":
        this.#stepFollower(m);
        break;
    }
  }

  /** One vote per term, only for candidates whose log is at least as up to date (§5.2, §5.4.1). */
  #handleVoteRequest(m: Message): void {
    const pre = m.type === MessageType.PreVote;
    const canVote = this.vote === m.from || (this.vote === "" && this.lead === "") ||
      (pre && m.term > this.term);
    const respType = pre ? MessageType.PreVoteResponse : MessageType.VoteResponse;
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      this.#send(
        newMessage({
          type: respType,
          groupId: this.groupId,
          from: this.id,
          to: m.from,
          term: m.term,
        }),
      );
      if (!pre) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.#send(newMessage({
        type: respType,
        groupId: this.groupId,
        from: this.id,
        to: m.from,
        term: this.term,
        reject: true,
      }));
    }
  }

  #stepCandidate(m: Message): void {
    switch (m.type) {
      case MessageType.Append:
        this.becomeFollower(m.term, m.from);
        this.#handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        this.#handleHeartbeat(m);
        return;
      case MessageType.Snapshot:
        this.becomeFollower(m.term, m.from);
        this.#handleSnapshot(m);
        return;
      case MessageType.PreVoteResponse:
      case MessageType.VoteResponse: {
        const mine = this.role === "precandidate"
          ? MessageType.PreVoteResponse
          : MessageType.VoteResponse;
        if (m.type !== mine) return;
        const res = this.#poll(m.from, !m.reject);
        if (res === "won") {
          if (this.role === "precandidate") {
            this.#campaign("real", false);
          } else {
            this.becomeLeader();
            this.#markAllDirty(true);
          }
        } else if (res === "lost") {
          this.becomeFollower(this.term, "");
        }
        return;
      }
      default:
        return;
    }
  }

  #stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.Append:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.#handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.#handleHeartbeat(m);
        return;
      case MessageType.Snapshot:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.#handleSnapshot(m);
        return;
      case MessageType.TimeoutNow:
        this.hup(true); // leadership transfer: campaign at once, skipping PreVote
        return;
      case MessageType.ReadIndexResponse:
        this.readStates.push({ index: m.index, context: m.context ?? emptyBytes });
        return;
      case MessageType.TransferLeader:
        if (this.lead !== "") this.#send({ ...m, to: this.lead, term: 0 });
        return;
      default:
        return;
    }
  }

  #stepLeader(m: Message): void {
    const pr = this.progress.get(m.from);
    switch (m.type) {
      case MessageType.AppendResponse:
        if (pr) this.#handleAppendResponse(m, pr);
        return;
      case MessageType.HeartbeatResponse:
        if (pr) this.#handleHeartbeatResponse(m, pr);
        return;
      case MessageType.ReadIndex:
        this.#leaderReadIndex(m.context ?? emptyBytes, m.from, this.leaseHolds);
        return;
      case MessageType.Propose:
        this.#handleForwardedProposal(m);
        return;
      case MessageType.TransferLeader: {
        const to = m.context ? fromUtf8(m.context) : "";
        this.transferLeader(to);
        return;
      }
      case MessageType.VoteResponse:
      case MessageType.PreVoteResponse:
        return; // a late answer from our own election
      default:
        return;
    }
  }

  // ---- follower handlers --------------------------------------------------

  #respondAppend(to: string, fields: Partial<Message>): void {
    this.#send(
      newMessage({
        type: MessageType.AppendResponse,
        groupId: this.groupId,
        from: this.id,
        to,
        ...fields,
      }),
    );
  }

  /** AppendEntries receiver (§5.3), with a conflict hint for fast backtracking. */
  #handleAppend(m: Message): void {
    this.#ticksSinceLeader = 0;
    if (m.index < this.log.committed) {
      this.#respondAppend(m.from, { index: this.log.committed });
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.#respondAppend(m.from, { index: lastNew });
      return;
    }
    const hintIndex = Math.min(m.index, this.log.lastIndex());
    const hint = this.log.findConflictByTerm(hintIndex, m.logTerm);
    this.#respondAppend(m.from, {
      index: m.index,
      reject: true,
      rejectHint: hint.index,
      logTerm: hint.term,
    });
  }

  #handleHeartbeat(m: Message): void {
    this.#ticksSinceLeader = 0;
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    const resp = newMessage({
      type: MessageType.HeartbeatResponse,
      groupId: this.groupId,
      from: this.id,
      to: m.from,
    });
    if (m.context) resp.context = m.context;
    this.#send(resp);
  }

  /** InstallSnapshot receiver (§7). */
  #handleSnapshot(m: Message): void {
    this.#ticksSinceLeader = 0;
    const snap = m.snapshot;
    if (!snap) return;
    if (this.#restore(snap)) {
      this.#respondAppend(m.from, { index: this.log.lastIndex() });
    } else {
      this.#respondAppend(m.from, { index: this.log.committed });
    }
  }

  #restore(snap: Snapshot): boolean {
    const { index, term, conf } = snap.meta;
    if (index <= this.log.committed) return false;
    if (this.log.matchTerm(index, term)) {
      this.log.commitTo(index); // we already have it: just fast-forward
      return false;
    }
    this.log.restore(snap);
    this.conf = cloneConfState(conf);
    this.#rebuildProgress();
    return true;
  }

  // ---- leader handlers ----------------------------------------------------

  #handleAppendResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    if (m.reject) {
      let nextProbe = m.rejectHint;
      if (m.logTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.#markDirty(m.from, true);
      }
      return;
    }
    const oldPaused = pr.isPaused();
    if (pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === "probe")) {
      if (pr.state === "probe") pr.becomeReplicate();
      else if (pr.state === "snapshot" && pr.match + 1 >= this.log.firstIndex()) {
        pr.becomeProbe();
        pr.becomeReplicate();
      } else if (pr.state === "replicate") pr.inflights.freeLE(m.index);
      if (this.#maybeCommit()) this.#announceCommit();
      else if (oldPaused || pr.next <= this.log.lastIndex()) this.#markDirty(m.from, false);
      if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
        this.#sendTimeoutNow(m.from);
      }
    }
  }

  #handleHeartbeatResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    pr.probeSent = false;
    if (pr.state === "replicate" && pr.inflights.full()) {
      // The whole window may have been lost: an empty Append at next-1 finds out
      // (the follower rejects it if it misses entries, and we fall back to probing).
      this.#sendEmptyAppend(m.from, pr);
    } else if (pr.match < this.log.lastIndex() || pr.state === "probe") {
      // An empty Append at next-1 also uncovers Appends lost while we thought it kept up.
      this.#markDirty(m.from, true);
    }
    const round = decodeRound(m.context);
    if (round > pr.readAck) {
      pr.readAck = round;
      this.#maybeReleaseReads();
    }
  }

  /** Advances commitIndex to what a quorum of voters has (durably) matched. */
  #maybeCommit(): boolean {
    const matches: number[] = [];
    for (const id of this.conf.voters) matches.push(this.progress.get(id)?.match ?? 0);
    const before = this.committedEntryInCurrentTerm();
    const moved = this.log.maybeCommit(committedIndex(matches), this.term);
    if (moved && !before) this.#releasePendingReadRequests();
    return moved;
  }

  /** The driver persisted the leader's log up to `index`: its own replica now counts. */
  selfAck(index: number): void {
    if (this.role !== "leader") return;
    const pr = this.progress.get(this.id);
    if (!pr) return;
    if (pr.maybeUpdate(index) && this.#maybeCommit()) this.#announceCommit();
  }

  /** True once an entry of the current term is committed (required before serving reads, §6.4). */
  committedEntryInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  #sendTimeoutNow(to: string): void {
    this.timeoutNowTerm = this.term;
    this.leaseEpoch++;
    this.#send(
      newMessage({ type: MessageType.TimeoutNow, groupId: this.groupId, from: this.id, to }),
    );
  }

  // ---- client requests ----------------------------------------------------

  #appendEntries(ents: Entry[]): number {
    let index = this.log.lastIndex();
    for (const e of ents) {
      index++;
      e.index = index;
      e.term = this.term;
      e.groupId = this.groupId;
      this.uncommittedBytes += e.data.length;
    }
    this.log.append(ents);
    this.#markAllDirty(false);
    return index;
  }

  #rejectIfNotAccepting(): ProposeResult | undefined {
    if (this.role !== "leader") return { ok: false, reason: "notLeader", leaderId: this.lead };
    if (this.leadTransferee !== "") {
      return { ok: false, reason: "transferring", leaderId: this.lead };
    }
    return undefined;
  }

  /** Appends client data as one entry if we are the leader. */
  propose(data: Uint8Array): ProposeResult {
    const no = this.#rejectIfNotAccepting();
    if (no) return no;
    if (
      this.log.lastIndex() - this.log.committed >= maxPendingProposals ||
      (this.uncommittedBytes > 0 &&
        this.uncommittedBytes + data.length > this.cfg.maxUncommittedBytes)
    ) {
      return { ok: false, reason: "dropped", leaderId: this.lead };
    }
    const index = this.#appendEntries([{
      index: 0,
      term: 0,
      type: EntryType.Normal,
      groupId: this.groupId,
      data: this.cfg.stampProposal(data),
    }]);
    return { ok: true, index, term: this.term };
  }

  /**
   * Proposes client data from any replica: the leader appends it at once, a
   * follower relays it to the leader in a Propose message (etcd's proposal
   * forwarding). A relayed proposal has no index yet and may be dropped on
   * the way (lost message, leader change, overload), so the proposer must
   * recognise its entry when it is applied and retry on a deadline with data
   * that applies at most once (a request id).
   */
  proposeAnywhere(data: Uint8Array): ProposeResult | { ok: true; forwardedTo: string } {
    if (this.role === "leader") return this.propose(data);
    if (this.lead === "" || this.role !== "follower") {
      return { ok: false, reason: "notLeader", leaderId: this.lead };
    }
    this.#send(
      newMessage({
        type: MessageType.Propose,
        groupId: this.groupId,
        from: this.id,
        to: this.lead,
        entries: [{ index: 0, term: 0, type: EntryType.Normal, groupId: this.groupId, data }],
      }),
    );
    return { ok: true, forwardedTo: this.lead };
  }

  /** A follower's relayed proposals: appended when we can accept them, else dropped. */
  #handleForwardedProposal(m: Message): void {
    const pr = this.progress.get(m.from);
    if (!pr) return; // only members relay proposals
    for (const e of m.entries) {
      if (e.type !== EntryType.Normal) continue; // membership changes are never relayed
      const r = this.propose(e.data); // a rejection drops it; the proposer retries on its deadline
      if (r.ok) pr.relayedUpTo = r.index;
    }
  }

  /** Proposes one membership change; at most one may be pending (thesis §4.1). */
  proposeMembershipChange(change: ConfChange): ProposeResult {
    const no = this.#rejectIfNotAccepting();
    if (no) return no;
    if (!this.committedEntryInCurrentTerm()) {
      return { ok: false, reason: "termNotCommitted", leaderId: this.lead };
    }
    if (this.pendingConfIndex > this.log.applied) {
      return { ok: false, reason: "pendingConfChange", leaderId: this.lead };
    }
    const why = validateConfChange(this.conf, change);
    if (why !== undefined) {
      return { ok: false, reason: "invalid", leaderId: this.lead, detail: why };
    }
    const data = encodeConfChange(change);
    const index = this.#appendEntries([{
      index: 0,
      term: 0,
      type: EntryType.ConfChange,
      groupId: this.groupId,
      data,
    }]);
    this.pendingConfIndex = index;
    return { ok: true, index, term: this.term };
  }

  /** Requests a linearizable read; the answer comes back as a ReadState. */
  readIndex(context: Uint8Array): ProposeResult | { ok: true } {
    if (this.role === "leader") {
      if (!this.#leaderReadIndex(context, this.id)) {
        return { ok: false, reason: "dropped", leaderId: this.lead };
      }
      return { ok: true };
    }
    if (this.lead === "") return { ok: false, reason: "notLeader", leaderId: "" };
    this.#send(
      newMessage({
        type: MessageType.ReadIndex,
        groupId: this.groupId,
        from: this.id,
        to: this.lead,
        context,
      }),
    );
    return { ok: true };
  }

  #leaderReadIndex(context: Uint8Array, from: string, leased = false): boolean {
    if (!this.committedEntryInCurrentTerm()) {
      // Our commit index may be stale until an entry of our term commits (§6.4 step 1).
      if (this.pendingReadRequests.length >= maxPendingReads) return false;
      this.pendingReadRequests.push({ context, from });
      return true;
    }
    const index = this.log.committed;
    if (this.conf.voters.length === 1 && this.promotable()) {
      this.#releaseRead(index, context, from); // a single voter is its own quorum
      return true;
    }
    // Not after a TimeoutNow of this term either (a transfer that timed out): its election
    // ignores leases, as leaseReadIndex() refuses too.
    if (
      leased && this.cfg.leaseReads && this.leadTransferee === "" &&
      this.timeoutNowTerm !== this.term
    ) {
      this.#releaseRead(index, context, from); // no other leader can exist yet
      return true;
    }
    return this.readOnly.add(index, context, from);
  }

  #releasePendingReadRequests(): void {
    const waiting = this.pendingReadRequests;
    this.pendingReadRequests = [];
    for (const r of waiting) this.#leaderReadIndex(r.context, r.from);
  }

  #releaseRead(index: number, context: Uint8Array, from: string): void {
    if (from === this.id) {
      this.readStates.push({ index, context });
    } else {
      this.#send(
        newMessage({
          type: MessageType.ReadIndexResponse,
          groupId: this.groupId,
          from: this.id,
          to: from,
          index,
          context,
        }),
      );
    }
  }

  /** Releases reads whose heartbeat round a quorum of voters acknowledged. */
  #maybeReleaseReads(): void {
    if (this.readOnly.pending === 0) return;
    const acks: number[] = [];
    for (const id of this.conf.voters) {
      acks.push(id === this.id ? this.readOnly.lastRound : this.progress.get(id)?.readAck ?? 0);
    }
    const acked = committedIndex(acks);
    for (const r of this.readOnly.release(acked)) this.#releaseRead(r.index, r.context, r.from);
  }

  /** Hands leadership to `to`: catch it up, then send TimeoutNow (thesis §3.10). */
  transferLeader(to: string): void {
    if (this.role !== "leader") {
      if (this.lead !== "") {
        this.#send(
          newMessage({
            type: MessageType.TransferLeader,
            groupId: this.groupId,
            from: this.id,
            to: this.lead,
            context: utf8(to),
          }),
        );
      }
      return;
    }
    const pr = this.progress.get(to);
    if (!pr || pr.isLearner || to === this.id) return;
    if (this.leadTransferee === to) return;
    this.leadTransferee = to;
    this.leaseEpoch++;
    this.electionElapsed = 0; // the transfer must finish within one election timeout
    if (pr.match === this.log.lastIndex()) this.#sendTimeoutNow(to);
    else this.#markDirty(to, true);
  }

  // ---- membership ---------------------------------------------------------

  /** Switches to the configuration after `change` (called when its entry is applied). */
  applyConfChange(change: ConfChange): ConfState {
    // pendingConfIndex stays: a new leader set it to its last index, and a change at or below
    // that may still be committed but not applied (it is checked against the applied index).
    this.leaseEpoch++;
    this.conf = applyConfChangeTo(this.conf, change);
    const last = this.log.lastIndex();
    for (const id of [...this.progress.keys()]) {
      if (!isMember(this.conf, id)) this.progress.delete(id);
    }
    for (const id of this.conf.voters.concat(this.conf.learners)) {
      const learner = this.conf.learners.includes(id);
      let pr = this.progress.get(id);
      if (!pr) {
        pr = new Progress(last + 1, learner, this.cfg.maxInflight, this.cfg.maxInflightBytes);
        this.progress.set(id, pr);
        if (this.role === "leader") this.#markDirty(id, true);
      }
      pr.isLearner = learner;
    }
    if (this.role === "leader") {
      if (!this.promotable()) {
        this.becomeFollower(this.term, ""); // removed or demoted: step down
      } else {
        if (this.leadTransferee !== "" && !this.conf.voters.includes(this.leadTransferee)) {
          this.leadTransferee = "";
        }
        if (this.#maybeCommit()) this.#markAllDirty(true);
      }
    }
    return cloneConfState(this.conf);
  }

  // ---- driver feedback ----------------------------------------------------

  /** The transport could not reach `to`: stop pipelining to it. */
  reportUnreachable(to: string): void {
    const pr = this.progress.get(to);
    if (this.role === "leader" && pr && pr.state === "replicate") pr.becomeProbe();
  }

  /** The snapshot sent to `to` was installed (or failed): resume probing. */
  reportSnapshot(to: string, success: boolean): void {
    const pr = this.progress.get(to);
    if (this.role !== "leader" || !pr || pr.state !== "snapshot") return;
    if (!success) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    pr.probeSent = true; // wait for the next heartbeat answer before sending again
  }

  /** Entries handed to the driver were applied: they no longer count as uncommitted. */
  reduceUncommitted(ents: Entry[]): void {
    if (this.role !== "leader") return;
    for (const e of ents) this.uncommittedBytes -= e.data.length;
    if (this.uncommittedBytes < 0) this.uncommittedBytes = 0;
  }
}
