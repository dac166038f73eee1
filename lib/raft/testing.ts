/**
 * A deterministic in-memory cluster for unit tests, scenario scripts and the
 * benchmark: real RaftNodes over MemoryStorage, a driver that follows the Ready
 * contract, and a message queue the caller delivers (all, some, or none) with
 * link filters for partitions. Pure: no clock, no I/O.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { fromUtf8 } from "../common/bytes.ts";
import { SeededRandom } from "../common/random.ts";
import { decodeConfChange } from "./codec.ts";
import type { RaftConfig } from "./config.ts";
import { RaftNode } from "./raft_node.ts";
import { MemoryStorage } from "./storage.ts";
import {
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  type Ready,
} from "./types.ts";

/** Options for nodes created by a TestCluster. */
export interface TestClusterOptions {
  preVote?: boolean;
  checkQuorum?: boolean;
  electionTicks?: number;
  heartbeatTicks?: number;
  seed?: number;
  maxSizePerMsg?: number;
  maxInflight?: number;
  lazyCommitBroadcast?: boolean;
  leaseReads?: boolean;
  /** RaftConfig.startQuietTicks for every node. */
  startQuietTicks?: number;
  /** RaftConfig.stampProposal for every node. */
  stampProposal?: (id: string, data: Uint8Array) => Uint8Array;
  /** Called with every Ready a node produces (scenario output, tracing). */
  onReady?: (id: string, rd: Ready) => void;
}

/** One member of a TestCluster. */
export interface TestPeer {
  id: string;
  node: RaftNode;
  storage: MemoryStorage;
  /** Committed entries applied so far, in order. */
  applied: Entry[];
  /** ReadStates received so far. */
  reads: { index: number; context: string }[];
}

/** A cluster whose messages move only when the test says so. */
export class TestCluster {
  readonly peers = new Map<string, TestPeer>();
  /** Messages sent and not yet delivered, in send order. */
  queue: Message[] = [];
  /** Directed links that drop messages, as "from>to". */
  readonly cut = new Set<string>();
  readonly rng: SeededRandom;
  readonly opts: TestClusterOptions;
  readonly bootstrap: ConfState;

  constructor(ids: string[], opts: TestClusterOptions = {}, learners: string[] = []) {
    this.opts = opts;
    this.rng = new SeededRandom(opts.seed ?? 1);
    this.bootstrap = { voters: ids.slice(), learners: learners.slice() };
    for (const id of ids.concat(learners)) this.addPeer(id);
  }

  /** Creates a node with an empty log (bootstrap membership) or the given storage. */
  addPeer(id: string, storage?: MemoryStorage, extra: Partial<RaftConfig> = {}): TestPeer {
    const st = storage ?? new MemoryStorage(this.bootstrap, 1);
    const node = new RaftNode({
      id,
      groupId: 1,
      storage: st,
      random: this.rng.fork(),
      electionTicks: this.opts.electionTicks ?? 10,
      heartbeatTicks: this.opts.heartbeatTicks ?? 1,
      preVote: this.opts.preVote ?? false,
      checkQuorum: this.opts.checkQuorum ?? false,
      maxSizePerMsg: this.opts.maxSizePerMsg,
      maxInflight: this.opts.maxInflight,
      lazyCommitBroadcast: this.opts.lazyCommitBroadcast,
      leaseReads: this.opts.leaseReads,
      startQuietTicks: this.opts.startQuietTicks,
      stampProposal: this.opts.stampProposal && ((d) => this.opts.stampProposal!(id, d)),
      applied: st.snapshot().meta.index,
      ...extra,
    });
    const peer: TestPeer = { id, node, storage: st, applied: [], reads: [] };
    this.peers.set(id, peer);
    return peer;
  }

  /** The peer `id` (which must exist). */
  peer(id: string): TestPeer {
    const p = this.peers.get(id);
    assert(p !== undefined, `no peer ${id}`);
    return p;
  }

  /** The node of peer `id`. */
  node(id: string): RaftNode {
    return this.peer(id).node;
  }

  /** Simulates a crash and restart: only what was persisted survives. */
  restart(id: string): TestPeer {
    const old = this.peer(id);
    this.queue = this.queue.filter((m) => m.to !== id);
    const p = this.addPeer(id, old.storage);
    p.applied = old.applied.filter((e) => e.index <= old.storage.snapshot().meta.index);
    return p;
  }

  /** Runs one Ready cycle for `id` exactly as a driver would; returns it, or undefined. */
  processReady(id: string): Ready | undefined {
    const p = this.peer(id);
    if (!p.node.hasReady()) return undefined;
    const rd = p.node.ready();
    this.opts.onReady?.(id, rd);
    this.queue.push(...rd.messages);
    if (rd.snapshot) p.storage.applySnapshot(rd.snapshot);
    p.storage.append(rd.entries);
    if (rd.hardState) p.storage.setHardState(rd.hardState);
    this.queue.push(...rd.persistedMessages);
    for (const e of rd.committedEntries) {
      if (e.type === EntryType.ConfChange) p.node.applyConfChange(decodeConfChange(e.data));
      p.applied.push(e);
    }
    for (const r of rd.readStates) {
      p.reads.push({ index: r.index, context: fromUtf8(r.context) });
    }
    p.node.advance(rd);
    return rd;
  }

  /** Processes every peer's Ready once; true if any had one. */
  processAll(): boolean {
    let any = false;
    for (const id of this.peers.keys()) if (this.processReady(id)) any = true;
    return any;
  }

  /** Delivers queued messages (those matching `filter`, default all); returns them. */
  deliver(filter: (m: Message) => boolean = () => true): Message[] {
    const now = this.queue.filter(filter);
    this.queue = this.queue.filter((m) => !filter(m));
    const delivered: Message[] = [];
    for (const m of now) {
      if (this.cut.has(`${m.from}>${m.to}`)) continue;
      const p = this.peers.get(m.to);
      if (!p) continue;
      p.node.step(m);
      delivered.push(m);
    }
    return delivered;
  }

  /** Processes Readies and delivers messages until nothing moves (bounded). */
  stabilize(maxRounds = 1000): void {
    for (let i = 0; i < maxRounds; i++) {
      const any = this.processAll();
      if (this.queue.length === 0 && !any) return;
      this.deliver();
    }
    assert(false, "stabilize did not converge");
  }

  /** Ticks node `id` `n` times. */
  tick(id: string, n = 1): void {
    for (let i = 0; i < n; i++) this.node(id).tick();
  }

  /** Ticks every node `n` times, stabilizing after each tick. */
  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const p of this.peers.values()) p.node.tick();
      this.stabilize();
    }
  }

  /** Cuts both directions between each node of `a` and each of `b`. */
  partition(a: string[], b: string[]): void {
    for (const x of a) {
      for (const y of b) {
        this.cut.add(`${x}>${y}`);
        this.cut.add(`${y}>${x}`);
      }
    }
  }

  /** Cuts every link to and from `id`. */
  isolate(id: string): void {
    this.partition([id], [...this.peers.keys()].filter((x) => x !== id));
  }

  /** Restores every link. */
  heal(): void {
    this.cut.clear();
  }

  /** Makes `id` campaign and runs the cluster until quiet. */
  elect(id: string): void {
    this.node(id).campaign();
    this.stabilize();
  }

  /** Ids of the nodes that currently consider themselves leader. */
  leaders(): string[] {
    return [...this.peers.values()].filter((p) => p.node.status().role === "leader").map((p) =>
      p.id
    );
  }
}

/** A storage holding entries of the given terms (index 1..n) and a hard state. */
export function storageWith(
  voters: string[],
  terms: number[],
  hs?: Partial<HardState>,
): MemoryStorage {
  const st = new MemoryStorage({ voters, learners: [] }, 1);
  const ents: Entry[] = terms.map((term, i) => ({
    index: i + 1,
    term,
    type: EntryType.Normal,
    groupId: 1,
    data: new Uint8Array([i + 1]),
  }));
  st.append(ents);
  st.setHardState({ term: terms.at(-1) ?? 0, vote: "", commit: 0, ...hs });
  return st;
}
