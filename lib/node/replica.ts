/**
 * The driver loop of one Raft group (lib/raft/README.md, "The Ready
 * contract"): it feeds the pure core with ticks, peer messages, proposals and
 * read requests, and carries out each Ready in order —
 *
 *   1. send `messages` (safe before persisting),
 *   2. persist snapshot, entries and hard state with one write and, when
 *      `mustSync`, one fsync (every proposal gathered since the last Ready
 *      shares it: group commit),
 *   3. send `persistedMessages` (votes and acks that promise durability),
 *   4. hand committed entries to the apply queue, which applies them to the
 *      state machine in log order, answers proposers and releases ReadIndex
 *      reads whose index it reached,
 *   5. advance.
 *
 * A leader in its steady state does not wait for its own write either
 * (Raft thesis §10.2.1): steps 1-5 run at once while the write goes on in
 * the background, one at a time (entries proposed meanwhile wait for the
 * next one: group commit stays), and the entries count as the leader's
 * copy only once durable. So a commit needs any two of three copies, not
 * the leader's and one more: the slowest fsync of the three no longer
 * decides a write's latency. Committed entries are handed out to apply
 * once the leader's own copy is durable too (`applyUpTo`): the engine may
 * make its applied index durable at any time (a memtable switch, a history
 * compaction), and it must never be ahead of the local log after a power
 * loss (KVNode refuses to start from such a state). With the one-step
 * O_DSYNC append that costs nothing; the leader's copy still does not
 * decide when an entry commits.
 *
 * The loop does not wait for the apply queue (etcd's raft and apply loops
 * are split the same way): a slow apply (the engine waiting for a flush, a
 * read from disk) delays answers, but heartbeats, replication and commits
 * go on, so it cannot cost the leader its leadership. Membership changes
 * are the exception: they change the Raft core, so the loop drains the
 * queue and applies them itself before advancing. The queue is bounded
 * (maxQueuedApplyEntries); past that the loop waits for it.
 *
 * Everything between awaits is synchronous; one loop runs at a time.
 *
 * @module
 */

import { crashAt, failpoint } from "../common/failpoints.ts";
import { assert } from "../common/assert.ts";
import type { Clock, TimerHandle } from "../common/clock.ts";
import {
  ClosedError,
  InvalidArgumentError,
  KVError,
  NoQuorumError,
  NotLeaderError,
  TimeoutError,
} from "../common/errors.ts";
import {
  maxEntryBytes,
  maxPendingProposals,
  maxPendingReads,
  raftCatchUpBytes,
  raftCatchUpEntries,
  raftLogCompactBytes,
} from "../common/limits.ts";
import type { Random } from "../common/random.ts";
import { fromUtf8, utf8 } from "../common/bytes.ts";
import { IdTable } from "../common/id_table.ts";
import { decodeConfChange, encodeConfChange } from "../raft/codec.ts";
import { RaftNode, type Rejection } from "../raft/raft_node.ts";
import {
  type ConfChange,
  type Entry,
  EntryType,
  type Message,
  MessageType,
  type Ready,
  type Snapshot,
  type SoftState,
} from "../raft/types.ts";
import type { RaftLogStore } from "./raft_log_store.ts";
import { requestIdOf, withTimestampAtLeast } from "./command.ts";
import type { ApplyEntry, ApplyResult, MemberRecord, StateMachine } from "./state_machine.ts";
import type { Logger } from "./logger.ts";
import { leaseDurationMs, leaseLimitMs, ReadLease, voteQuietMs } from "./read_lease.ts";

/**
 * Observes when entries pass each stage of the write path (benchmarks: the
 * time split of a commit). `upTo` is the highest index that reached it.
 */
export interface EntryTimingObserver {
  proposed(index: number): void;
  persisted(upTo: number): void;
  committed(upTo: number): void;
  applied(upTo: number): void;
}

/** How the replica reaches its peers. */
export interface ReplicaTransport {
  send(messages: Message[]): void;
}

/** Settings of a replica (times in ticks). */
export interface ReplicaOptions {
  nodeId: string;
  groupId: number;
  store: RaftLogStore;
  stateMachine: StateMachine;
  clock: Clock;
  random: Random;
  log: Logger;
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  /** Member table at start (ids, addresses, learner flags). */
  members: MemberRecord[];
  /** Called when the replica cannot go on (a failed fsync): the process must stop. */
  onFatal: (e: Error) => void;
  /** Replaces the state machine's contents with a received snapshot (before it is logged). */
  installSnapshot: (snapshot: Snapshot) => Promise<void>;
  /** Log entries between two compactions of the log (behind a durable applied index). */
  snapshotEntries: number;
  /** Serve linearizable reads on the leader from a lease (lib/node/read_lease.ts). */
  leaseReads?: boolean;
  /**
   * How long the previous run of this node promised leaders it would ignore
   * votes (read_lease.ts voteQuietMs, kept in the data dir): this run stays
   * quiet at least that long after it starts, whatever its own settings.
   */
  previousVoteQuietMs?: number;
}

/**
 * A ReadIndex context: `r<boot>.<round>`. The boot part is random per
 * Replica, so an answer to a round that a previous run of this node asked
 * (a leader keeps unanswered rounds across our restart) is never taken for
 * the same-numbered round of this run, whose reads may need a later index.
 */
export function readContext(boot: string, round: number): Uint8Array {
  return utf8(`r${boot}.${round}`);
}

/** The round number of a ReadIndex context this run made (see readContext); -1 for any other. */
export function readRoundOf(boot: string, context: Uint8Array): number {
  const text = fromUtf8(context);
  const prefix = `r${boot}.`;
  if (!text.startsWith(prefix)) return -1;
  const n = Number(text.slice(prefix.length));
  return Number.isSafeInteger(n) && n > 0 ? n : -1;
}

/** A random identifier of this run's read rounds (12 hex digits). */
export function newReadBoot(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

interface PendingProposal {
  term: number;
  /** The command of a relayed write, sent again when the leader changes. */
  data?: Uint8Array;
  /** The request id of a relayed write. */
  requestId?: string;
  deadlineMs: number;
  resolve: (r: ApplyResult) => void;
  reject: (e: Error) => void;
}

interface PendingRead {
  deadlineMs: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * Committed entries the apply queue may hold before the Raft loop waits for
 * it: bounds memory when applying falls behind for long.
 */
export const maxQueuedApplyEntries = 10_000;

/** A read that got its read index and waits for the apply loop to reach it. */
interface ReadAtIndex {
  index: number;
  reads: PendingRead[];
}

/** One Raft group on this node: core + durable log + state machine. */
export class Replica {
  readonly node: RaftNode;
  readonly members = new Map<string, MemberRecord>();
  transport: ReplicaTransport | undefined;
  /** Called after entries are applied (watchers, expiry scheduling). */
  onApplied: ((appliedIndex: number) => void) | undefined;
  /** Called on every role or leader change. */
  onSoftState: ((soft: SoftState) => void) | undefined;
  /** Set by benchmarks to time each stage of the write path. */
  timing: EntryTimingObserver | undefined;

  #opts: ReplicaOptions;
  #soft: SoftState = { role: "follower", leaderId: "" };
  /**
   * Proposals by log index. This and the tables below hold the resolvers of
   * every write and read in flight, so they are IdTables, not Maps: values
   * deleted from a long-lived Map were still promoted by the next young
   * collection (lib/common/id_table.ts).
   */
  #proposals = new IdTable<PendingProposal>();
  /** Writes relayed to the leader until their entry is applied here, by relay number. */
  #relayed = new IdTable<PendingProposal>();
  /** The relay number of each relayed write's request id. */
  #relayNumbers = new Map<string, number>();
  #relaySeq = 0;
  #readQueue: PendingRead[] = [];
  /** Reads waiting for their ReadIndex round, by the round's number (see readContext). */
  #readsByRound = new IdTable<PendingRead[]>();
  #readsAtIndex: ReadAtIndex[] = [];
  #readSeq = 0;
  readonly #readBoot = newReadBoot();
  /** See #appendTimeMs. */
  #lastAppendTimeMs = 0;
  /** The leader's read lease; undefined when lease reads are off. */
  #lease: ReadLease | undefined;
  /** A round that only extends the lease is wanted (issued by the loop). */
  #renewLease = false;
  /** What each peer announced it promises (read_lease.ts voteQuietMs), by node id. */
  #peerQuietMs = new Map<string, number>();
  /** The lease epoch the lease's limit was worked out under; -1: work it out again. */
  #leaseLimitEpoch = -1;
  /** When the last tick ran (ticks closer than 0.9 tickMs are skipped: the lease relies on it). */
  #lastTickMs = Number.NEGATIVE_INFINITY;
  #running = false;
  #again = false;
  #stopped = false;
  #ticker: TimerHandle | undefined;
  #sweepCountdown = 0;
  #compacting = false;
  #idle: Promise<void> = Promise.resolve();
  /** The apply queue: applies chained in log order (see the module doc). */
  #applyChain: Promise<void> = Promise.resolve();
  /** Entries handed to the apply queue and not applied yet. */
  #queuedApplyEntries = 0;
  /** Set once a fatal error stopped the node (reported once). */
  #failed = false;
  /** The apply-stall failpoint fired (it fires once). */
  #applyStalled = false;
  /**
   * The leader's background log write, if one is in flight (it never
   * rejects: a failed write stops the node).
   */
  #leaderWrite: Promise<void> | undefined;
  /**
   * Last index the leader's background writes have made durable: while one
   * is in flight, no committed entry past it is handed out to apply, so no
   * crash leaves the state machine ahead of the log.
   */
  #leaderWritten = 0;
  /** Term and vote as last made durable: a change of either needs an fsync. */
  #syncedTerm: number;
  #syncedVote: string;
  #idleResolve: (() => void) | undefined;

  constructor(opts: ReplicaOptions) {
    this.#opts = opts;
    for (const m of opts.members) this.members.set(m.id, { ...m });
    // Every applied entry was committed, so a commit index behind the applied
    // index (its last write was not synced) can be raised to it, up to the
    // log's end: a state machine ahead of the log (which KVNode does not let
    // happen) would skip the entries it has when they arrive again.
    const hs = opts.store.memory.hardState();
    const applied = Math.min(opts.stateMachine.appliedIndex, opts.store.lastIndex());
    if (hs.commit < applied) opts.store.memory.setHardState({ ...hs, commit: applied });
    this.#syncedTerm = hs.term;
    this.#syncedVote = hs.vote;
    this.node = new RaftNode({
      id: opts.nodeId,
      groupId: opts.groupId,
      storage: opts.store,
      random: opts.random,
      electionTicks: opts.electionTicks,
      heartbeatTicks: opts.heartbeatTicks,
      preVote: true,
      checkQuorum: true,
      lazyCommitBroadcast: true,
      applied,
      leaseReads: opts.leaseReads === true,
      // Ticks at least 0.9 tickMs apart, the first possibly at once: n ticks span (n-1)·0.9·tickMs.
      startQuietTicks: (opts.previousVoteQuietMs ?? 0) > 0
        ? Math.ceil(opts.previousVoteQuietMs! / (0.9 * opts.tickMs)) + 1
        : 0,
      stampProposal: (data) => withTimestampAtLeast(data, this.#appendTimeMs()),
    });
    const leaseMs = leaseDurationMs(opts.electionTicks, opts.tickMs);
    if (opts.leaseReads === true && leaseMs > 0) this.#lease = new ReadLease(leaseMs);
  }

  /**
   * The leader's clock for the entries it appends, never going back (a wall
   * clock may step back): every time decision of an entry is at least as late
   * as those of the entries before it.
   */
  #appendTimeMs(): number {
    const now = this.#opts.clock.wallMs();
    if (now > this.#lastAppendTimeMs) this.#lastAppendTimeMs = now;
    return this.#lastAppendTimeMs;
  }

  /** Starts ticking and processing. */
  start(): void {
    assert(!this.#ticker, "replica started twice");
    this.#ticker = this.#opts.clock.setInterval(() => this.#tick(), this.#opts.tickMs);
    this.#kick();
  }

  /** Current role and leader as of the last Ready. */
  get softState(): SoftState {
    return this.#soft;
  }

  /** True when this node leads its group. */
  get isLeader(): boolean {
    return this.#soft.role === "leader";
  }

  /** Address of the current leader, when known. */
  leaderAddr(): string | undefined {
    return this.members.get(this.#soft.leaderId)?.addr;
  }

  /** The error a non-leader answers with. */
  notLeader(): NotLeaderError {
    const leader = this.#soft.leaderId;
    return new NotLeaderError(leader || undefined, leader ? this.leaderAddr() : undefined);
  }

  /** Messages from peers. */
  step(messages: Message[]): void {
    if (this.#stopped) return;
    for (const m of messages) {
      // A follower's ReadIndex is answered from the lease while it holds.
      if (m.type === MessageType.ReadIndex && this.#lease !== undefined) {
        this.node.stepLeased(m, this.#leaseReadIndex() >= 0);
      } else this.node.step(m);
    }
    this.#kick();
  }

  /**
   * How long this node promises to ignore votes after hearing from its
   * leader, announced to its peers so that no leader's lease outlasts it.
   */
  get voteQuietMs(): number {
    return voteQuietMs(this.#opts.electionTicks, this.#opts.tickMs, this.#opts.leaseReads === true);
  }

  /**
   * A peer announced how long it ignores votes. When a voter promises less
   * than our lease assumes (it runs with a shorter election timeout or tick,
   * or without lease reads), our lease is cut to what it promises.
   */
  notePeerVoteQuiet(nodeId: string, ms: number): void {
    if (this.#peerQuietMs.get(nodeId) === ms) return;
    this.#peerQuietMs.set(nodeId, ms);
    this.#leaseLimitEpoch = -1;
  }

  /**
   * Bounds the lease by the least any voter promises (voters that never
   * announced one are left out: their acknowledgements come over the
   * connection that begins with the announcement). Worked out again after a
   * new announcement or a change of lease epoch (which a membership change
   * makes).
   */
  #limitLease(lease: ReadLease): void {
    const epoch = this.node.leaseEpoch;
    if (this.#leaseLimitEpoch === epoch) return;
    this.#leaseLimitEpoch = epoch;
    let limit = Number.POSITIVE_INFINITY;
    let by = "";
    for (const id of this.node.status().conf.voters) {
      const quiet = id === this.#opts.nodeId ? undefined : this.#peerQuietMs.get(id);
      if (quiet === undefined) continue;
      const ms = leaseLimitMs(quiet, this.#opts.tickMs);
      if (ms < limit) [limit, by] = [ms, id];
    }
    const before = lease.effectiveMs;
    lease.limitTo(limit, this.#opts.clock.nowMs());
    if (lease.effectiveMs < lease.durationMs && lease.effectiveMs !== before) {
      this.#opts.log.warn(
        "read lease shortened: a voter ignores votes for less time than ours assumes",
        {
          voter: by,
          voterQuietMs: this.#peerQuietMs.get(by),
          leaseMs: lease.effectiveMs,
          configuredLeaseMs: lease.durationMs,
          hint: "run every node with the same --election-ms, --tick-ms and --read-lease",
        },
      );
    }
  }

  /** A peer could not be reached. */
  reportUnreachable(nodeId: string): void {
    if (this.#stopped) return;
    this.node.reportUnreachable(nodeId);
  }

  /** A snapshot transfer to `nodeId` ended. */
  reportSnapshot(nodeId: string, ok: boolean): void {
    if (this.#stopped) return;
    this.node.reportSnapshot(nodeId, ok);
    this.#kick();
  }

  /**
   * Compacts the Raft log once `snapshotEntries` entries were added since it
   * was last cut, or it grew by `raftLogCompactBytes` (large values): the
   * engine's WAL is fsynced so its applied index is durable, then the log is
   * cut there, minus a catch-up tail (`#catchUpEntries` entries, at most
   * `raftCatchUpBytes`) so that a follower a little behind at the cut still
   * catches up from the log rather than by a snapshot. Only a sync, not a
   * memtable flush: flushing every `snapshotEntries` entries made small
   * tables and most of a follower's CPU went into compacting them. Runs
   * beside the loop.
   */
  #maybeCompactLog(): void {
    const store = this.#opts.store;
    const tail = this.#catchUpEntries;
    if (
      this.#compacting ||
      (store.lastIndex() - store.firstIndex() + 1 <= this.#opts.snapshotEntries + tail &&
        store.bytesSinceCut < raftLogCompactBytes)
    ) return;
    const sm = this.#opts.stateMachine;
    // Nothing applied beyond the last cut and its tail (a follower still catching up): nothing
    // to cut yet. The tail is capped in bytes too, so a log of few large entries is still cut.
    // The state machine's index, not the engine's: the engine's counts only what is synced,
    // and the sync below is what makes it durable.
    if (
      this.#cutBelowTail(Math.min(sm.appliedIndex, store.lastIndex()), tail) <=
        store.snapshot().meta.index
    ) return;
    this.#compacting = true;
    (async () => {
      // The sync makes applied entries durable in the engine: not before the log holds them.
      if (this.#leaderWrite) await this.#leaderWrite;
      await sm.engine.sync();
      const applied = Math.min(sm.engine.appliedIndex, store.lastIndex());
      const index = this.#cutBelowTail(applied, tail);
      if (index < store.firstIndex() || this.#stopped) return;
      const snap = await store.compact(index, this.node.status().conf, new Uint8Array());
      this.#opts.log.info("compacted the raft log", {
        index: snap.meta.index,
        term: snap.meta.term,
        firstIndex: store.firstIndex(),
      });
    })().catch((e) => this.#opts.log.warn("log compaction failed", { error: (e as Error).message }))
      .finally(() => (this.#compacting = false));
  }

  /** Entries a log compaction leaves behind the applied index for slow followers. */
  get #catchUpEntries(): number {
    return Math.min(raftCatchUpEntries, Math.floor(this.#opts.snapshotEntries / 2));
  }

  /**
   * Where to cut the log so that (cut, applied] keeps at most `tail` entries
   * and `raftCatchUpBytes` of entry data.
   */
  #cutBelowTail(applied: number, tail: number): number {
    const store = this.#opts.store;
    const from = Math.max(store.firstIndex(), applied - tail + 1);
    if (from > applied) return applied;
    const kept = store.entries(from, applied + 1);
    let bytes = 0;
    for (let i = kept.length - 1; i >= 0; i--) {
      bytes += kept[i].data.length;
      if (bytes > raftCatchUpBytes) return kept[i].index;
    }
    return from - 1;
  }

  /**
   * Proposes an encoded command and resolves with its apply result once it is
   * committed and applied. Rejects with NotLeader (not proposed: safe to
   * retry elsewhere), or with Timeout at the deadline (outcome unknown).
   */
  propose(data: Uint8Array, deadlineMs: number): Promise<ApplyResult> {
    if (this.#stopped) return Promise.reject(new ClosedError("node"));
    if (data.length > maxEntryBytes) return Promise.reject(entryTooLarge(data));
    if (this.#proposals.size >= maxPendingProposals) {
      return Promise.reject(
        new KVError(
          "NoQuorum",
          `too many writes in flight (limit ${maxPendingProposals}); retry later`,
        ),
      );
    }
    const r = this.node.propose(data);
    if (!r.ok) return Promise.reject(this.#rejection(r));
    return this.#track(r.index, r.term, deadlineMs);
  }

  /**
   * Proposes an encoded Put, Delete or Txn from any replica. On the leader it
   * is `propose`; on a follower the core relays it to the leader, and the
   * write resolves when this replica applies the entry carrying `requestId`
   * (so the answer is this replica's own, identical apply result). A relayed
   * write may be lost on the way (leader change, dropped message): it then
   * times out at `deadlineMs` with an unknown outcome, and the caller retries
   * with the same request id, which the state machine applies at most once.
   */
  proposeAnywhere(data: Uint8Array, requestId: string, deadlineMs: number): Promise<ApplyResult> {
    if (this.#stopped) return Promise.reject(new ClosedError("node"));
    if (data.length > maxEntryBytes) return Promise.reject(entryTooLarge(data));
    assert(requestId !== "" && requestIdOf(data) === requestId, "relayed writes carry their id");
    if (this.#proposals.size + this.#relayed.size >= maxPendingProposals) {
      return Promise.reject(
        new KVError(
          "NoQuorum",
          `too many writes in flight (limit ${maxPendingProposals}); retry later`,
        ),
      );
    }
    if (this.#relayNumbers.has(requestId)) {
      return Promise.reject(new KVError("Internal", `request id ${requestId} is already pending`));
    }
    const r = this.node.proposeAnywhere(data);
    if (!r.ok) return Promise.reject(this.#rejection(r));
    if ("index" in r) return this.#track(r.index, r.term, deadlineMs);
    const p = new Promise<ApplyResult>((resolve, reject) => {
      const n = ++this.#relaySeq;
      this.#relayed.set(n, { term: 0, data, requestId, deadlineMs, resolve, reject });
      this.#relayNumbers.set(requestId, n);
    });
    this.#kick();
    return p;
  }

  /** Proposes a membership change; resolves once it is applied. */
  proposeConfChange(change: ConfChange, deadlineMs: number): Promise<ApplyResult> {
    if (this.#stopped) return Promise.reject(new ClosedError("node"));
    const r = this.node.proposeMembershipChange(change);
    if (!r.ok) return Promise.reject(this.#rejection(r));
    return this.#track(r.index, r.term, deadlineMs);
  }

  #track(index: number, term: number, deadlineMs: number): Promise<ApplyResult> {
    const p = new Promise<ApplyResult>((resolve, reject) => {
      this.#proposals.set(index, { term, deadlineMs, resolve, reject });
    });
    this.timing?.proposed(index);
    this.#kick();
    return p;
  }

  #rejection(r: Rejection): Error {
    switch (r.reason) {
      case "notLeader":
        return new NotLeaderError(
          r.leaderId || undefined,
          r.leaderId ? this.members.get(r.leaderId)?.addr : undefined,
        );
      case "transferring":
        return new KVError("NoQuorum", "leadership is being transferred; retry shortly");
      case "dropped":
        return new KVError(
          "NoQuorum",
          "the proposal was dropped (the leader is overloaded or stepping down); retry",
        );
      case "pendingConfChange":
        return new KVError(
          "Conflict",
          `another membership change is in progress${r.detail ? `: ${r.detail}` : ""}`,
        );
      case "termNotCommitted":
        return new KVError(
          "NoQuorum",
          "the new leader has not committed an entry of its term yet; retry shortly",
        );
      case "invalid":
        return new KVError("InvalidArgument", r.detail ?? "invalid membership change");
    }
  }

  /**
   * Linearizable read barrier (ReadIndex): resolves once this replica has
   * applied everything committed before the call, as confirmed by the leader
   * with a heartbeat round. Reads arriving together share one round. A
   * leader holding a read lease skips the round and waits only for its
   * commit index to be applied.
   */
  readBarrier(deadlineMs: number): Promise<void> {
    if (this.#stopped) return Promise.reject(new ClosedError("node"));
    const leased = this.#leaseReadIndex();
    if (leased >= 0) {
      if (leased <= this.#opts.stateMachine.appliedIndex) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const last = this.#readsAtIndex.at(-1);
        const read = { deadlineMs, resolve, reject };
        if (last !== undefined && last.index === leased) last.reads.push(read);
        else this.#readsAtIndex.push({ index: leased, reads: [read] });
      });
    }
    if (this.#readQueue.length + this.#readsByRound.size >= maxPendingReads) {
      return Promise.reject(
        new KVError("NoQuorum", `too many reads in flight (limit ${maxPendingReads}); retry later`),
      );
    }
    return new Promise((resolve, reject) => {
      this.#readQueue.push({ deadlineMs, resolve, reject });
      this.#kick();
    });
  }

  /**
   * The index a read may be served at from the lease now, or -1 when it
   * needs a heartbeat round. Asks for a round that extends the lease when it
   * runs low, so a steady stream of reads never waits for one.
   */
  #leaseReadIndex(): number {
    const lease = this.#lease;
    if (lease === undefined || this.#soft.role !== "leader") return -1;
    this.#limitLease(lease);
    const now = this.#opts.clock.nowMs();
    const epoch = this.node.leaseEpoch;
    if (!this.#renewLease && lease.wantsRenewal(now, epoch)) {
      this.#renewLease = true;
      this.#kick();
    }
    return lease.holds(now, epoch) ? this.node.leaseReadIndex() : -1;
  }

  /** Asks the leader to hand leadership to `nodeId`. */
  transferLeader(nodeId: string): void {
    this.node.transferLeader(nodeId);
    this.#kick();
  }

  /** Resolves when the loop, the leader's log write and the apply queue have no work left. */
  async idle(): Promise<void> {
    for (let i = 0; i < 1_000 && (this.#running || this.#leaderWrite); i++) {
      await (this.#running ? this.#idle : this.#leaderWrite);
    }
    await this.#applyChain.catch(() => {});
  }

  #tick(): void {
    if (this.#stopped) return;
    const now = this.#opts.clock.nowMs();
    // Voters count election timeouts in ticks, and a leader's read lease trusts
    // that they never come faster than this (a timer firing early or in a burst).
    if (now - this.#lastTickMs < 0.9 * this.#opts.tickMs) return;
    this.#lastTickMs = now;
    this.node.tick();
    // A leader's commit index waits for its next log write; when none came within a tick, it
    // is written now, so a restart soon after replays what this node had applied.
    if (this.#leaderWrite === undefined && this.#opts.store.hardStateBehind) {
      this.#opts.store.writeDeferredHardState().catch((e) => this.#fatal(e));
    }
    if (--this.#sweepCountdown <= 0) {
      this.#sweepCountdown = 10;
      this.#expireDeadlines();
    }
    this.#kick();
  }

  #kick(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    this.#idle = new Promise((r) => (this.#idleResolve = r));
    queueMicrotask(() => this.#loop());
  }

  async #loop(): Promise<void> {
    try {
      do {
        this.#again = false;
        this.#issueReadIndex();
        // While the leader's write is in flight, new entries wait for the next one, and
        // committed entries past what it has written wait to be applied.
        while (
          !this.#stopped && this.node.hasReady(this.#leaderWrite !== undefined, this.#applyUpTo())
        ) {
          await this.#handleReady(
            this.node.ready(this.#leaderWrite !== undefined, this.#applyUpTo()),
          );
        }
      } while (this.#again && !this.#stopped);
    } catch (e) {
      this.#fatal(e);
    } finally {
      this.#running = false;
      this.#idleResolve?.();
    }
  }

  /** Stops the node after an error the loop or the apply queue cannot recover from. */
  #fatal(e: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    const err = e instanceof Error ? e : new Error(String(e));
    this.#opts.log.error("replica loop failed; stopping the node", { error: err.message });
    this.#stopped = true;
    this.#failAll(err instanceof KVError ? err : new KVError("Internal", err.message));
    this.#opts.onFatal(err);
  }

  /** Queues committed entries for applying after everything queued before them. */
  #queueApply(entries: Entry[]): void {
    this.#queuedApplyEntries += entries.length;
    const next = this.#applyChain.then(async () => {
      // Stopped: the entries are in the durable log; a restart applies them.
      if (this.#stopped) return;
      await this.#applyCommitted(entries);
      this.#queuedApplyEntries -= entries.length;
      this.#releaseReads();
    });
    this.#applyChain = next;
    next.catch((e) => this.#fatal(e));
  }

  #issueReadIndex(): void {
    if (this.#readQueue.length === 0 && !this.#renewLease) return;
    this.#renewLease = false;
    const reads = this.#readQueue;
    this.#readQueue = [];
    const round = ++this.#readSeq;
    const ctx = readContext(this.#readBoot, round);
    const askedAtMs = this.#opts.clock.nowMs();
    const epoch = this.node.leaseEpoch;
    const r = this.node.readIndex(ctx);
    if (!r.ok) {
      const err = r.reason === "notLeader" && !r.leaderId
        ? new NoQuorumError("no leader is known; the read cannot be confirmed")
        : this.#rejection(r);
      for (const read of reads) read.reject(err);
      return;
    }
    // Only a leader's own rounds make a lease (a follower's go to the leader).
    if (this.#soft.role === "leader") this.#lease?.asked(round, askedAtMs, epoch);
    if (reads.length > 0) this.#readsByRound.set(round, reads);
  }

  async #handleReady(rd: Ready): Promise<void> {
    if (this.#leaderCanWriteBehind(rd)) return this.#handleLeaderReady(rd);
    // Everything else waits for the leader's write (a step down, a new term).
    if (this.#leaderWrite) await this.#leaderWrite;
    const { log, store } = { log: this.#opts.log, store: this.#opts.store };
    if (rd.softState) this.#onSoftState(rd.softState);
    if (rd.hardState && rd.hardState.term !== log.term) log.term = rd.hardState.term;
    this.transport?.send(rd.messages);
    if (rd.snapshot) {
      await this.#applyChain; // what was committed before the snapshot goes to the old state first
      await this.#opts.installSnapshot(rd.snapshot);
      this.members.clear();
      for (const m of (await this.#opts.stateMachine.members()) ?? []) {
        this.members.set(m.id, { ...m });
      }
      this.#opts.log.info("installed a snapshot", {
        index: rd.snapshot.meta.index,
        term: rd.snapshot.meta.term,
      });
    }
    // fsync what Raft's safety rests on: new entries, a snapshot, a new term or vote.
    // A commit-only change is written but not synced: after a crash the commit
    // index is re-learned, and it is raised to the applied index at start.
    const hs = rd.hardState;
    const termOrVote = hs !== undefined &&
      (hs.term !== this.#syncedTerm || hs.vote !== this.#syncedVote);
    const sync = rd.mustSync && (rd.entries.length > 0 || rd.snapshot !== undefined || termOrVote);
    // Committed entries already in our durable log (every earlier Ready was persisted) are
    // applied while this Ready's entries are written and synced, as etcd does: the fsync
    // and the apply overlap instead of adding up. Entries that arrive in this Ready (a
    // follower's) are applied only once they are durable here too.
    const committed = rd.committedEntries;
    const applyEarly = committed.length > 0 && rd.snapshot === undefined &&
      (rd.entries.length === 0 || committed[committed.length - 1].index < rd.entries[0].index);
    // A membership change is applied here, after everything queued (see the module doc).
    const inLoop = committed.some((e) => e.type === EntryType.ConfChange);
    if (inLoop) await this.#applyChain;
    let applying: Promise<void> | undefined;
    if (applyEarly) {
      if (inLoop) applying = this.#applyCommitted(committed);
      else this.#queueApply(committed);
    }
    try {
      await store.save({ hardState: hs, entries: rd.entries, snapshot: rd.snapshot }, sync);
    } catch (e) {
      // The save's error is the one reported.
      await Promise.all([applying?.catch(() => {}), this.#applyChain.catch(() => {})]);
      throw e;
    }
    if (sync && hs) {
      this.#syncedTerm = hs.term;
      this.#syncedVote = hs.vote;
    }
    if (this.timing && rd.entries.length > 0) {
      this.timing.persisted(rd.entries[rd.entries.length - 1].index);
    }
    this.transport?.send(rd.persistedMessages);
    if (applying) await applying;
    else if (committed.length > 0 && !applyEarly) {
      if (inLoop) await this.#applyCommitted(committed);
      else this.#queueApply(committed);
    }
    this.#takeReadStates(rd);
    if (this.#queuedApplyEntries > maxQueuedApplyEntries) await this.#applyChain;
    this.node.advance(rd);
  }

  /**
   * A Ready of a leader in its steady state: no change of role, term or
   * vote, no snapshot, no membership change to apply. Its entries may be
   * written behind the loop.
   */
  #leaderCanWriteBehind(rd: Ready): boolean {
    if (this.#soft.role !== "leader" || rd.softState || rd.snapshot) return false;
    const hs = rd.hardState;
    if (hs && (hs.term !== this.#syncedTerm || hs.vote !== this.#syncedVote)) return false;
    const committed = rd.committedEntries;
    if (committed.some((e) => e.type === EntryType.ConfChange)) return false;
    // Committing entries before this node ever wrote them would be a core bug: take the safe path.
    return rd.entries.length === 0 || committed.length === 0 ||
      committed[committed.length - 1].index < rd.entries[0].index;
  }

  /**
   * Carries out a steady-state leader's Ready without waiting for its log
   * write (see the module doc): messages out, the write started behind any
   * in flight, committed entries to the apply queue, advance. Acks that
   * promise durability (a leader's refusals) go out after the write.
   */
  async #handleLeaderReady(rd: Ready): Promise<void> {
    this.transport?.send(rd.messages);
    if (rd.committedEntries.length > 0) this.#queueApply(rd.committedEntries);
    if (rd.entries.length > 0 || rd.hardState || rd.persistedMessages.length > 0) {
      const before = this.#leaderWrite ?? Promise.resolve();
      const last = rd.entries.at(-1);
      const saved = rd.entries.length > 0 || rd.hardState
        ? this.#opts.store.save(
          { hardState: rd.hardState, entries: rd.entries },
          rd.entries.length > 0,
          true,
          last && (() => this.#wrote(last.index)),
        )
        : Promise.resolve();
      // Its failure is handled below, once the writes before it are done; never "unhandled".
      saved.catch(() => {});
      const write: Promise<void> = before.then(() => saved).then(() => {
        if (this.#leaderWrite === write) this.#leaderWrite = undefined;
        if (this.#stopped) return;
        if (last) {
          this.timing?.persisted(last.index);
          this.node.persisted(last.index, last.term);
        }
        this.transport?.send(rd.persistedMessages);
        this.#kick();
      }, (e) => {
        if (this.#leaderWrite === write) this.#leaderWrite = undefined;
        this.#fatal(e);
      });
      this.#leaderWrite = write;
    }
    this.#takeReadStates(rd);
    if (this.#queuedApplyEntries > maxQueuedApplyEntries) await this.#applyChain;
    this.node.advanceBeforePersisted(rd);
  }

  /** Queues the reads whose ReadIndex round a Ready confirmed, and serves those already applied. */
  #takeReadStates(rd: Ready): void {
    for (const rs of rd.readStates) {
      const round = readRoundOf(this.#readBoot, rs.context);
      this.#lease?.confirmed(round, this.node.leaseEpoch);
      const reads = this.#readsByRound.get(round);
      if (!reads) continue;
      this.#readsByRound.delete(round);
      this.#readsAtIndex.push({ index: rs.index, reads });
    }
    this.#releaseReads();
  }

  /**
   * The last committed index the loop may hand out to apply: on a leader,
   * what its log holds durably (its followers may commit entries it has not
   * written yet, even ones it still holds back; and what it applies may
   * become durable in the state machine at any time); elsewhere all (a
   * Ready's entries are persisted before its committed ones are applied).
   */
  #applyUpTo(): number {
    if (this.#soft.role !== "leader") return Number.MAX_SAFE_INTEGER;
    return Math.max(this.#leaderWritten, this.#opts.store.lastIndex());
  }

  /** The leader's background write of entries up to `index` is durable (DurableAppendHooks.onWritten). */
  #wrote(index: number): void {
    if (index > this.#leaderWritten) this.#leaderWritten = index;
    this.#kick();
  }

  #onSoftState(soft: SoftState): void {
    const prev = this.#soft;
    this.#soft = soft;
    // Its writes are done (the loop waited for them); a later term may rewrite those indexes.
    this.#leaderWritten = 0;
    if (prev.leaderId !== soft.leaderId || prev.role !== soft.role) {
      this.#opts.log.info(soft.role === "leader" ? "became leader" : "role changed", {
        role: soft.role,
        leader: soft.leaderId || "none",
      });
    }
    if (prev.leaderId !== soft.leaderId && this.#readsByRound.size > 0) {
      // A read index is never reused across a leader change: fail the waiting rounds (safe to retry).
      const err = new NoQuorumError("the leader changed while confirming a read; retry");
      for (const reads of this.#readsByRound.values()) for (const r of reads) r.reject(err);
      this.#readsByRound.clear();
    }
    if (prev.leaderId !== soft.leaderId && soft.leaderId !== "" && this.#relayed.size > 0) {
      // The old leader may have dropped them: relay again to the new one (after this Ready).
      queueMicrotask(() => this.#relayAgain());
    }
    this.onSoftState?.(soft);
  }

  /** Sends every pending relayed write again; the state machine applies each id at most once. */
  #relayAgain(): void {
    if (this.#stopped) return;
    for (const [n, p] of this.#relayed.entries()) {
      const r = this.node.proposeAnywhere(p.data!);
      if (r.ok && "index" in r) {
        // We are the leader now: track it by index like a local proposal.
        this.#forgetRelayed(n, p);
        this.#proposals.set(r.index, {
          term: r.term,
          deadlineMs: p.deadlineMs,
          resolve: p.resolve,
          reject: p.reject,
        });
      }
    }
    this.#kick();
  }

  /** Applies committed entries, with the failpoint and timing marks around them. */
  async #applyCommitted(entries: Entry[]): Promise<void> {
    const last = entries[entries.length - 1].index;
    this.timing?.committed(last);
    crashAt("crash-before-apply");
    await this.#applyStallFailpoint(last);
    await this.#apply(entries);
    this.timing?.applied(last);
  }

  /**
   * Failpoint `apply-stall=INDEX:MS`: the first apply reaching INDEX waits MS
   * first, once per process (a state machine on a disk that stalls).
   */
  async #applyStallFailpoint(last: number): Promise<void> {
    if (this.#applyStalled) return;
    const spec = failpoint("apply-stall");
    if (spec === undefined) return;
    const [index, ms] = spec.split(":").map(Number);
    if (last < index) return;
    this.#applyStalled = true;
    await new Promise((r) => setTimeout(r, ms));
  }

  async #apply(entries: Entry[]): Promise<void> {
    const list: ApplyEntry[] = [];
    for (const e of entries) {
      if (e.type === EntryType.ConfChange) {
        const change = decodeConfChange(e.data);
        const conf = this.node.applyConfChange(change);
        this.#applyMemberChange(change);
        this.#opts.log.info("membership changed", {
          change: change.type,
          node: change.nodeId,
          voters: conf.voters.join(","),
          learners: conf.learners.join(","),
        });
        list.push({ index: e.index, data: new Uint8Array(), members: [...this.members.values()] });
      } else {
        list.push({ index: e.index, data: e.data });
      }
    }
    const results = await this.#opts.stateMachine.apply(list);
    if (this.#relayed.size > 0) this.#answerRelayed(entries, results);
    for (const e of entries) {
      const p = this.#proposals.get(e.index);
      if (!p) continue;
      this.#proposals.delete(e.index);
      if (p.term !== e.term) {
        p.reject(
          new KVError(
            "NoQuorum",
            "the write was superseded by a new leader and not applied; retry",
          ),
        );
        continue;
      }
      const result = results.get(e.index);
      if (!result) p.reject(new KVError("Internal", `no apply result for index ${e.index}`));
      else if (result.error) p.reject(result.error);
      else p.resolve(result);
    }
    // Proposals at indexes the log has moved past without applying them were overwritten.
    const last = entries[entries.length - 1].index;
    for (const [index, p] of this.#proposals.entries()) {
      if (index > last) break;
      this.#proposals.delete(index);
      p.reject(
        new KVError("NoQuorum", "the write was superseded by a new leader and not applied; retry"),
      );
    }
    this.onApplied?.(this.#opts.stateMachine.appliedIndex);
    this.#maybeCompactLog();
  }

  #forgetRelayed(n: number, p: PendingProposal): void {
    this.#relayed.delete(n);
    this.#relayNumbers.delete(p.requestId!);
  }

  #answerRelayed(entries: Entry[], results: Map<number, ApplyResult>): void {
    if (this.#relayed.size === 0) return;
    for (const e of entries) {
      if (e.type !== EntryType.Normal || e.data.length === 0) continue;
      const id = requestIdOf(e.data);
      const n = id === "" ? undefined : this.#relayNumbers.get(id);
      const p = n === undefined ? undefined : this.#relayed.get(n);
      if (!p) continue;
      this.#forgetRelayed(n!, p);
      const result = results.get(e.index);
      if (!result) p.reject(new KVError("Internal", `no apply result for index ${e.index}`));
      else if (result.error) p.reject(result.error);
      else p.resolve(result);
    }
  }

  #applyMemberChange(change: ConfChange): void {
    const addr = change.context
      ? fromUtf8(change.context)
      : this.members.get(change.nodeId)?.addr ?? "";
    switch (change.type) {
      case "addVoter":
        this.members.set(change.nodeId, { id: change.nodeId, addr, learner: false });
        break;
      case "addLearner":
        this.members.set(change.nodeId, { id: change.nodeId, addr, learner: true });
        break;
      case "removeNode":
        this.members.delete(change.nodeId);
        break;
    }
  }

  #releaseReads(): void {
    if (this.#readsAtIndex.length === 0) return;
    const applied = this.#opts.stateMachine.appliedIndex;
    const waiting: ReadAtIndex[] = [];
    for (const r of this.#readsAtIndex) {
      if (r.index <= applied) { for (const read of r.reads) read.resolve(); }
      else waiting.push(r);
    }
    this.#readsAtIndex = waiting;
  }

  #expireDeadlines(): void {
    const now = this.#opts.clock.nowMs();
    for (const [index, p] of this.#proposals.entries()) {
      if (p.deadlineMs <= now) {
        this.#proposals.delete(index);
        p.reject(
          new TimeoutError(
            "the write was not committed before its deadline; its outcome is unknown",
          ),
        );
      }
    }
    for (const [n, p] of this.#relayed.entries()) {
      if (p.deadlineMs <= now) {
        this.#forgetRelayed(n, p);
        p.reject(
          new TimeoutError(
            "the write relayed to the leader was not applied before its deadline; " +
              "its outcome is unknown",
          ),
        );
      }
    }
    const timeout = (reads: PendingRead[]) =>
      reads.filter((r) => {
        if (r.deadlineMs > now) return true;
        r.reject(
          new NoQuorumError("the read could not be confirmed by a quorum before its deadline"),
        );
        return false;
      });
    for (const [round, reads] of this.#readsByRound.entries()) {
      const left = timeout(reads);
      if (left.length === 0) this.#readsByRound.delete(round);
      else this.#readsByRound.set(round, left);
    }
    this.#readsAtIndex = this.#readsAtIndex.map((r) => ({
      index: r.index,
      reads: timeout(r.reads),
    })).filter((r) => r.reads.length > 0);
  }

  #failAll(e: Error): void {
    for (const p of this.#proposals.values()) p.reject(e);
    this.#proposals.clear();
    for (const p of this.#relayed.values()) p.reject(e);
    this.#relayed.clear();
    this.#relayNumbers.clear();
    for (const r of this.#readQueue) r.reject(e);
    this.#readQueue = [];
    for (const reads of this.#readsByRound.values()) for (const r of reads) r.reject(e);
    this.#readsByRound.clear();
    for (const ra of this.#readsAtIndex) for (const r of ra.reads) r.reject(e);
    this.#readsAtIndex = [];
  }

  /** Stops ticking, waits for the loop, fails whatever is still waiting. */
  async stop(): Promise<void> {
    this.#ticker?.cancel();
    await this.idle();
    this.#stopped = true;
    this.#failAll(new ClosedError("node"));
  }
}

/** Encodes a membership change whose context is the node's address. */
export function memberChange(type: ConfChange["type"], nodeId: string, addr: string): ConfChange {
  return { type, nodeId, context: utf8(addr) };
}

/** Re-exported for the admin service. */
export { encodeConfChange };

/** The refusal of a command too large for one Raft entry (see maxEntryBytes). */
function entryTooLarge(data: Uint8Array): InvalidArgumentError {
  return new InvalidArgumentError(
    `the write is ${data.length} bytes encoded; one Raft entry holds at most ${maxEntryBytes}`,
  );
}
