/**
 * A simulated cluster of the real Raft core: one RaftNode per server, a driver
 * that follows the Ready contract exactly (send `messages`, persist, then send
 * `persistedMessages`, apply, advance), crashes that keep only what was
 * persisted, and simple clients whose history is checked.
 *
 * @module
 */

import { assert } from "../../lib/common/assert.ts";
import { fromUtf8, utf8 } from "../../lib/common/bytes.ts";
import type { SeededRandom } from "../../lib/common/random.ts";
import { decodeConfChange } from "../../lib/raft/codec.ts";
import { RaftNode } from "../../lib/raft/raft_node.ts";
import { MemoryStorage } from "../../lib/raft/storage.ts";
import {
  type ConfChange,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  type Ready,
} from "../../lib/raft/types.ts";
import { Checker, InvariantError } from "./invariants.ts";
import { Kv } from "./kv.ts";
import { Network } from "./network.ts";
import { leaseDurationMs, ReadLease } from "../../lib/node/read_lease.ts";

/** Simulator steps per Raft tick (message delays are counted in steps). */
export const stepsPerTick = 4;
/** The election timeout of every simulated node, in ticks. */
const simElectionTicks = 15;

/** Knobs of one simulated cluster. */
export interface ClusterOptions {
  preVote: boolean;
  checkQuorum: boolean;
  /** Compact a replica's log once it holds this many applied entries (0 = never). */
  compactEvery: number;
  /** Entries kept behind the snapshot when compacting. */
  compactKeep: number;
  /** Probability that a crash strikes between sending a Ready's messages and persisting it. */
  midReadyCrashRate: number;
  maxSizePerMsg?: number;
  maxInflight?: number;
  /**
   * A leader in its steady state writes its entries behind the Ready loop
   * (as lib/node/replica.ts does): they become durable up to a few steps
   * later, and a crash before then loses them.
   */
  leaderWriteBehind?: boolean;
  /** Leaders announce commits lazily (RaftConfig.lazyCommitBroadcast). */
  lazyCommitBroadcast?: boolean;
  /**
   * Leaders serve reads from a lease (RaftConfig.leaseReads, needs
   * checkQuorum), kept by lib/node/read_lease.ts on the simulator's clock
   * (steps; a node ticks at most once per `stepsPerTick` steps, less when
   * paused), and checked for staleness like every read.
   */
  leaseReads?: boolean;
}

/** A leader's log write in flight (write-behind mode). */
interface WriteInFlight {
  entries: Entry[];
  hardState: HardState | undefined;
  persistedMessages: Message[];
  /** The step at which it is durable. */
  dueAt: number;
}

/** One simulated server. */
export class SimNode {
  raft: RaftNode | undefined;
  kv = new Kv();
  /** Membership as of kv.applied (what a snapshot records). */
  confAtApplied: ConfState;
  crashes = 0;
  /** Retired: removed from the cluster and shut down for good. */
  retired = false;
  /** When set, the step at which a removed server is shut down. */
  retireAt: number | undefined;
  /** The node is frozen (a long GC pause, SIGSTOP) until this step. */
  pausedUntil = 0;
  /** Its log writes in flight, oldest first (write-behind mode; lost in a crash). */
  writes: WriteInFlight[] = [];
  /** Readies whose committed entries wait for their local write (write-behind mode). */
  applies: Ready[] = [];
  /** The read lease while it leads (lease reads on); lost in a crash. */
  lease: ReadLease | undefined;

  constructor(readonly id: string, readonly storage: MemoryStorage, bootstrap: ConfState) {
    this.confAtApplied = bootstrap;
  }

  get alive(): boolean {
    return this.raft !== undefined;
  }
}

interface PendingWrite {
  node: string;
  key: string;
  value: string;
  index: number;
  term: number;
}

interface PendingRead {
  node: string;
  key: string;
  /** Index of the newest write to `key` acknowledged before the read was issued. */
  minIndex: number;
  readIndex: number;
  released: boolean;
}

/** Statistics of a run. */
export interface SimStats {
  steps: number;
  elections: number;
  committed: number;
  writesAcked: number;
  readsChecked: number;
  /** Reads a leader served from its lease (no heartbeat round). */
  leaseReads: number;
  crashes: number;
  snapshotsSent: number;
  compactions: number;
  confChanges: number;
  messages: number;
  dropped: number;
  checks: number;
}

/** The cluster, its network and its invariant checker. */
export class Cluster {
  readonly nodes = new Map<string, SimNode>();
  readonly net: Network;
  readonly checker = new Checker();
  readonly bootstrap: ConfState;
  /** Servers whose removal some replica has applied. */
  readonly removed = new Set<string>();
  now = 0;
  #nextNodeNo: number;
  #writeSeq = 0;
  #readSeq = 0;
  readonly #pendingWrites = new Map<string, PendingWrite>(); // by value
  readonly #pendingReads = new Map<string, PendingRead>(); // by context
  /** key -> highest log index of an acknowledged write. */
  readonly #ackedIndex = new Map<string, number>();
  readonly stats: SimStats = {
    steps: 0,
    elections: 0,
    committed: 0,
    writesAcked: 0,
    readsChecked: 0,
    leaseReads: 0,
    crashes: 0,
    snapshotsSent: 0,
    compactions: 0,
    confChanges: 0,
    messages: 0,
    dropped: 0,
    checks: 0,
  };
  /** Optional trace of notable events (printed when a seed fails with TRACE=1). */
  trace: string[] | undefined;

  /** Lease reads on: they need checkQuorum. */
  readonly #leaseReads: boolean;

  constructor(readonly rng: SeededRandom, size: number, public opts: ClusterOptions) {
    this.#leaseReads = opts.leaseReads === true && opts.checkQuorum;
    this.net = new Network(rng.fork());
    this.net.onDrop = (m) => this.#onDrop(m);
    const voters: string[] = [];
    for (let i = 1; i <= size; i++) voters.push(`n${i}`);
    this.bootstrap = { voters, learners: [] };
    this.#nextNodeNo = size + 1;
    for (const id of voters) this.#createNode(id);
  }

  #log(s: string): void {
    this.trace?.push(`[${this.now}] ${s}`);
  }

  #createNode(id: string): SimNode {
    const node = new SimNode(id, new MemoryStorage(this.bootstrap, 1), this.bootstrap);
    this.nodes.set(id, node);
    this.#start(node);
    return node;
  }

  #start(node: SimNode): void {
    const snap = node.storage.snapshot();
    node.kv = new Kv();
    node.kv.restore(snap.data);
    node.confAtApplied = snap.meta.conf;
    node.raft = new RaftNode({
      id: node.id,
      groupId: 1,
      storage: node.storage,
      random: this.rng.fork(),
      electionTicks: simElectionTicks,
      heartbeatTicks: 5,
      preVote: this.opts.preVote,
      checkQuorum: this.opts.checkQuorum,
      applied: snap.meta.index,
      maxSizePerMsg: this.opts.maxSizePerMsg,
      maxInflight: this.opts.maxInflight,
      lazyCommitBroadcast: this.opts.lazyCommitBroadcast,
      leaseReads: this.#leaseReads,
    });
    node.lease = this.#leaseReads
      ? new ReadLease(leaseDurationMs(simElectionTicks, stepsPerTick))
      : undefined;
    this.checker.restarted(node.id, node.raft.status().commit);
  }

  /** Ids of running, non-retired nodes. */
  liveIds(): string[] {
    return [...this.nodes.values()].filter((n) => n.alive).map((n) => n.id);
  }

  /** The live nodes that currently think they lead, highest term first. */
  leaders(): SimNode[] {
    const out: SimNode[] = [];
    for (const n of this.nodes.values()) {
      if (n.raft && n.raft.status().role === "leader") out.push(n);
    }
    out.sort((a, b) => b.raft!.status().term - a.raft!.status().term);
    return out;
  }

  /** Crashes `id`: everything not persisted is gone. */
  crash(id: string): void {
    const node = this.nodes.get(id);
    if (!node?.raft) return;
    this.#log(`crash ${id}`);
    node.raft = undefined;
    node.writes = [];
    node.applies = [];
    node.crashes++;
    this.stats.crashes++;
    this.net.forget(id);
    for (const [ctx, r] of this.#pendingReads) if (r.node === id) this.#pendingReads.delete(ctx);
    for (const [v, w] of this.#pendingWrites) if (w.node === id) this.#pendingWrites.delete(v);
  }

  /** Restarts a crashed node from its persisted state. */
  restart(id: string): void {
    const node = this.nodes.get(id);
    if (!node || node.raft || node.retired) return;
    this.#log(`restart ${id}`);
    this.#start(node);
  }

  /** Stops a node for good (after it was removed from the cluster). */
  retire(id: string): void {
    this.crash(id);
    const node = this.nodes.get(id);
    if (node) node.retired = true;
  }

  /** Starts a brand-new server (empty log) that a leader may add as a learner. */
  addServer(): string {
    const id = `n${this.#nextNodeNo++}`;
    this.#log(`new server ${id}`);
    this.#createNode(id);
    return id;
  }

  /** One tick for every live, running node. */
  tickAll(): void {
    for (const n of this.nodes.values()) if (n.pausedUntil <= this.now) n.raft?.tick();
  }

  /** Freezes `id` for `steps` steps: no ticks, no Ready processing, messages wait. */
  pause(id: string, steps: number): void {
    const n = this.nodes.get(id);
    if (!n?.raft) return;
    this.#log(`pause ${id} for ${steps} steps`);
    n.pausedUntil = this.now + steps;
  }

  /** Delivers the messages due now, then drains every node's Ready. */
  deliverAndProcess(): void {
    for (const m of this.net.due(this.now)) {
      const to = this.nodes.get(m.to);
      if (!to?.raft) {
        this.#onDrop(m);
        continue;
      }
      if (to.pausedUntil > this.now) {
        this.net.requeue(m, to.pausedUntil);
        continue;
      }
      if (m.type === MessageType.Snapshot) {
        // The driver streams the snapshot; once it arrives the sender learns it worked.
        this.nodes.get(m.from)?.raft?.reportSnapshot(m.to, true);
      }
      if (m.type === MessageType.ReadIndex && to.lease !== undefined) {
        // A leader holding its lease answers a follower's read at once.
        const holds = this.#leaseReadIndex(to) >= 0;
        if (holds) this.stats.leaseReads++;
        to.raft.stepLeased(m, holds);
      } else to.raft.step(m);
    }
    for (const n of this.nodes.values()) {
      while (n.raft && n.writes.length > 0 && n.writes[0].dueAt <= this.now) this.#completeWrite(n);
    }
    this.processAll();
  }

  /** Runs every node's Ready loop until none has work. */
  processAll(): void {
    for (let round = 0; round < 8; round++) {
      let any = false;
      for (const n of this.nodes.values()) {
        if (n.pausedUntil <= this.now && n.raft?.hasReady(n.writes.length > 0)) {
          this.#handleReady(n);
          any = true;
        }
      }
      if (!any) return;
    }
  }

  #send(msgs: Message[]): void {
    for (const m of msgs) {
      this.stats.messages++;
      if (m.type === MessageType.Snapshot) this.stats.snapshotsSent++;
      this.net.send(m, this.now);
    }
  }

  #onDrop(m: Message): void {
    this.stats.dropped++;
    const sender = this.nodes.get(m.from)?.raft;
    if (m.type === MessageType.Snapshot) sender?.reportSnapshot(m.to, false);
    // A cut link or a dead peer is what a transport notices (the connection fails).
    if (!this.net.connected(m.from, m.to) || !this.nodes.get(m.to)?.raft) {
      sender?.reportUnreachable(m.to);
    }
  }

  /** Persists what a log write in flight carries, then tells the core and sends its acks. */
  #completeWrite(node: SimNode): void {
    const w = node.writes.shift()!;
    this.#persistEntries(node, w.entries);
    if (w.hardState) {
      node.storage.setHardState(w.hardState);
      this.checker.commitPersisted(node.id, w.hardState.commit, w.hardState.term);
    }
    const last = w.entries.at(-1);
    if (last) node.raft!.persisted(last.index, last.term);
    this.#send(w.persistedMessages);
    // Committed entries that waited for this write are applied now, in order.
    while (node.applies.length > 0 && this.#written(node, node.applies[0])) {
      this.#applyCommitted(node, node.applies.shift()!);
    }
  }

  /** The node's log holds every committed entry of `rd` (the leader applies no further). */
  #written(node: SimNode, rd: Ready): boolean {
    const c = rd.committedEntries;
    return c.length === 0 || c[c.length - 1].index <= node.storage.lastIndex();
  }

  #persistEntries(node: SimNode, entries: Entry[]): void {
    if (entries.length === 0) return;
    const st = node.storage;
    st.append(entries);
    for (const e of entries) {
      let prevTerm: number | undefined;
      try {
        prevTerm = st.term(e.index - 1);
      } catch {
        prevTerm = undefined;
      }
      this.checker.entryPersisted(node.id, e, prevTerm);
    }
  }

  /** A steady-state leader's Ready, whose writes may go behind the loop (as the replica's). */
  #canWriteBehind(node: SimNode, rd: Ready): boolean {
    if (!this.opts.leaderWriteBehind || rd.softState || rd.snapshot) return false;
    if (node.raft!.status().role !== "leader") return false;
    const hs = rd.hardState;
    const synced = node.writes.at(-1)?.hardState ?? node.storage.hardState();
    if (hs && (hs.term !== synced.term || hs.vote !== synced.vote)) return false;
    if (rd.committedEntries.some((e) => e.type === EntryType.ConfChange)) return false;
    const c = rd.committedEntries;
    return rd.entries.length === 0 || c.length === 0 || c[c.length - 1].index < rd.entries[0].index;
  }

  /** The driver: exactly the order of lib/raft/README.md. */
  #handleReady(node: SimNode): void {
    const raft = node.raft!;
    const rd: Ready = raft.ready(node.writes.length > 0);
    if (this.#canWriteBehind(node, rd)) {
      this.#send(rd.messages);
      if (rd.entries.length > 0 || rd.hardState || rd.persistedMessages.length > 0) {
        node.writes.push({
          entries: rd.entries,
          hardState: rd.hardState,
          persistedMessages: rd.persistedMessages,
          dueAt: this.now + this.rng.nextInt(4),
        });
      }
      if (node.applies.length === 0 && this.#written(node, rd)) this.#applyCommitted(node, rd);
      else node.applies.push(rd);
      raft.advanceBeforePersisted(rd);
      this.#serveReads(node);
      this.#maybeCompact(node);
      return;
    }
    // Anything else waits for the writes in flight (and the applies waiting for them).
    while (node.writes.length > 0) this.#completeWrite(node);
    assert(node.applies.length === 0, "every waiting apply ran once the writes landed");
    if (rd.softState?.role === "leader") this.#onLeader(node);
    // 1. Messages that need no persistence may leave at once.
    this.#send(rd.messages);
    // A crash here loses this Ready's writes, but its early messages are out.
    if (rd.mustSync && this.rng.nextFloat() < this.opts.midReadyCrashRate) {
      this.crash(node.id);
      return;
    }
    // 2. Persist: snapshot, then entries, then hard state (fsync when mustSync).
    const st = node.storage;
    if (rd.snapshot) {
      st.applySnapshot(rd.snapshot);
      node.kv.restore(rd.snapshot.data);
      node.confAtApplied = rd.snapshot.meta.conf;
      this.checker.snapshotInstalled(node.id, rd.snapshot.meta.index, rd.snapshot.meta.term);
      this.checker.stateAt(node.id, node.kv.applied, node.kv.hash);
    }
    this.#persistEntries(node, rd.entries);
    if (rd.hardState) {
      st.setHardState(rd.hardState);
      this.checker.commitPersisted(node.id, rd.hardState.commit, rd.hardState.term);
    }
    // 3. Now the messages that promise durable state.
    this.#send(rd.persistedMessages);
    // 4. Apply.
    this.#applyCommitted(node, rd);
    raft.advance(rd);
    this.#serveReads(node);
    this.#maybeCompact(node);
  }

  /** Applies a Ready's committed entries and records its read states. */
  #applyCommitted(node: SimNode, rd: Ready): void {
    const raft = node.raft!;
    for (const e of rd.committedEntries) {
      if (e.index <= node.kv.applied) continue; // covered by a snapshot
      if (e.index > node.storage.lastIndex()) {
        throw new InvariantError(`${node.id} applied ${e.index} before its log held it`);
      }
      if (e.type === EntryType.ConfChange) {
        const cc: ConfChange = decodeConfChange(e.data);
        node.confAtApplied = raft.applyConfChange(cc);
        if (cc.type === "removeNode") this.removed.add(cc.nodeId);
        this.stats.confChanges++;
        this.#log(`${node.id} applied ${cc.type} ${cc.nodeId} -> ${node.confAtApplied.voters}`);
        node.kv.apply(e.index, new Uint8Array());
      } else {
        node.kv.apply(e.index, e.data);
      }
      this.checker.entryApplied(node.id, e, node.kv.hash);
      if (e.index > this.stats.committed) this.stats.committed = e.index;
      this.#ackWrite(node, e.index, e.term, e.data);
    }
    for (const rs of rd.readStates) {
      const ctx = fromUtf8(rs.context);
      node.lease?.confirmed(Number(ctx.slice(1)), node.raft!.leaseEpoch);
      const r = this.#pendingReads.get(ctx);
      if (r && r.node === node.id) {
        r.readIndex = rs.index;
        r.released = true;
      }
    }
  }

  #onLeader(node: SimNode): void {
    const raft = node.raft!;
    const s = raft.status();
    this.stats.elections++;
    this.#log(`${node.id} leader t${s.term}`);
    this.checker.leaderElected(node.id, s.term);
    this.checker.leaderComplete(node.id, s.term, s.firstIndex, (i) => raft.logTerm(i));
  }

  #maybeCompact(node: SimNode): void {
    const every = this.opts.compactEvery;
    if (every <= 0) return;
    const st = node.storage;
    const applied = node.kv.applied;
    if (applied - st.firstIndex() + 1 < every || applied <= st.snapshot().meta.index) return;
    // A write-behind leader may have applied entries its log write still carries.
    if (applied > st.lastIndex()) return;
    st.createSnapshot(applied, node.confAtApplied, node.kv.serialize());
    st.compact(Math.max(st.firstIndex() - 1, applied - this.opts.compactKeep));
    this.stats.compactions++;
  }

  // ---- clients ----------------------------------------------------------------

  /** A client write of a unique value through node `id`; true if it was accepted. */
  write(id: string, key: string): boolean {
    const raft = this.nodes.get(id)?.raft;
    if (!raft) return false;
    const value = `v${++this.#writeSeq}`;
    const res = raft.propose(utf8(`put ${key} ${value}`));
    if (!res.ok) return false;
    this.#pendingWrites.set(value, { node: id, key, value, index: res.index, term: res.term });
    return true;
  }

  #ackWrite(node: SimNode, index: number, term: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const text = fromUtf8(data);
    const value = text.split(" ")[2];
    const w = this.#pendingWrites.get(value);
    if (!w || w.node !== node.id) return;
    this.#pendingWrites.delete(value);
    assert(
      w.index === index && w.term === term,
      `write ${value} committed at ${term}/${index}, proposed at ${w.term}/${w.index}`,
    );
    this.stats.writesAcked++;
    if ((this.#ackedIndex.get(w.key) ?? 0) < index) this.#ackedIndex.set(w.key, index);
  }

  /** The index `node` may serve a read at from its lease now, or -1 (as Replica does). */
  #leaseReadIndex(node: SimNode): number {
    const raft = node.raft;
    if (!raft || !node.lease?.holds(this.now, raft.leaseEpoch)) return -1;
    return raft.leaseReadIndex();
  }

  /**
   * A client linearizable read of `key` through node `id`: from the lease
   * when `id` leads and holds one, else confirmed by a ReadIndex round.
   */
  read(id: string, key: string): boolean {
    const node = this.nodes.get(id);
    const raft = node?.raft;
    if (!node || !raft) return false;
    const seq = ++this.#readSeq;
    const minIndex = this.#ackedIndex.get(key) ?? 0;
    const readIndex = this.#leaseReadIndex(node);
    if (readIndex >= 0) {
      this.stats.leaseReads++;
      this.#pendingReads.set(`l${seq}`, { node: id, key, minIndex, readIndex, released: true });
      return true;
    }
    const ctx = `r${seq}`;
    const epoch = raft.leaseEpoch;
    const res = raft.readIndex(utf8(ctx));
    if (!res.ok) return false;
    if (raft.status().role === "leader") node.lease?.asked(seq, this.now, epoch);
    this.#pendingReads.set(ctx, { node: id, key, minIndex, readIndex: 0, released: false });
    return true;
  }

  /** Serves released reads once the replica applied their read index; checks freshness. */
  #serveReads(node: SimNode): void {
    for (const [ctx, r] of this.#pendingReads) {
      if (r.node !== node.id || !r.released || node.kv.applied < r.readIndex) continue;
      this.#pendingReads.delete(ctx);
      const got = node.kv.map.get(r.key);
      const gotIndex = got?.index ?? 0;
      if (gotIndex < r.minIndex) {
        throw new InvariantError(
          `${node.id}: stale read of ${r.key}: saw the write at index ${gotIndex}, ` +
            `but the write at ${r.minIndex} was acknowledged before the read began (read index ${r.readIndex})`,
        );
      }
      this.stats.readsChecked++;
    }
  }

  /** Drops client requests that can no longer complete (timeouts in a real client). */
  expireClients(): void {
    if (this.#pendingReads.size > 2000) this.#pendingReads.clear();
    if (this.#pendingWrites.size > 5000) this.#pendingWrites.clear();
  }

  /** Final comparison: replicas at the same applied index hold identical maps. */
  compareReplicas(): void {
    const byApplied = new Map<number, string>();
    for (const n of this.nodes.values()) {
      if (!n.raft) continue;
      const dump = n.kv.dump();
      const prev = byApplied.get(n.kv.applied);
      if (prev !== undefined && prev !== dump) {
        throw new InvariantError(
          `${n.id}: state differs from another replica at applied ${n.kv.applied}`,
        );
      }
      byApplied.set(n.kv.applied, dump);
    }
  }

  /** Advances one step: deliver, process, and every `stepsPerTick` steps, tick. */
  step(stepsPerTick: number): void {
    this.now++;
    this.stats.steps++;
    this.deliverAndProcess();
    if (this.now % stepsPerTick === 0) {
      this.tickAll();
      this.processAll();
    }
    this.stats.checks = this.checker.checks;
  }
}
