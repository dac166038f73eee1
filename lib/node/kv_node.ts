/**
 * One rustkvd node: the data directory, the storage engine, the durable Raft
 * log, the state machine, the replica driver and the peer transport, plus the
 * data API every protocol front end (gRPC, RESP) calls. Validation, limits,
 * read consistency and error mapping happen here once, so the front ends
 * are only codecs.
 *
 * Data directory:
 *   IDENTITY   JSON {format, nodeId, clusterId}: refuses a dir of another node or cluster
 *   raft/      the durable Raft log (lib/node/raft_log_store.ts)
 *   kv/        the storage engine (lib/storage)
 *
 * @module
 */

import { IoTurns } from "../common/time_slice.ts";
import { failpoint } from "../common/failpoints.ts";
import { createHash } from "node:crypto";
import { type Clock, SystemClock } from "../common/clock.ts";
import { byteString, compareBytes, fromUtf8, keySuccessor, prefixEnd } from "../common/bytes.ts";
import {
  CompactedError,
  ConflictError,
  FutureVersionError,
  InvalidArgumentError,
  KVError,
  NoQuorumError,
  TimeoutError,
} from "../common/errors.ts";
import { systemRandom } from "../common/random.ts";
import {
  defaultHistoryRevisions,
  defaultRequestTimeoutMs,
  maxRequestTimeoutMs,
  maxScanResponseBytes,
} from "../common/limits.ts";
import { encodeConfChange } from "../raft/codec.ts";
import { type Entry, EntryType, type Message } from "../raft/types.ts";
import { DenoFileSystem } from "../storage/deno_fs.ts";
import { DataDirInUseError, DataDirLock } from "./data_dir_lock.ts";
import { Engine, type KV, readNeedsIo } from "../storage/engine.ts";
import { dirName, type FileSystem, joinPath } from "../storage/fs.ts";
import type { NodeConfig } from "../server/config.ts";
import {
  validateKey,
  validateRange,
  validateRequestId,
  validateScanLimit,
  validateTtlSecs,
  validateValue,
  validateVersion,
} from "../server/validation.ts";
import { CommandOp, encodeCommand } from "./command.ts";
import { Logger } from "./logger.ts";
import { RaftLogStore } from "./raft_log_store.ts";
import { memberChange, Replica } from "./replica.ts";
import {
  type ApplyResult,
  checkUserKey,
  type KeyValue,
  type MemberRecord,
  StateMachine,
  systemKeyByte,
} from "./state_machine.ts";
import { PeerTransport } from "./transport.ts";
import {
  type CapturedState,
  decodeSnapshotMeta,
  encodeSnapshotDescriptor,
  type SnapshotChannelFactory,
  snapshotMetaKey,
  SnapshotReceiver,
  SnapshotSender,
} from "./snapshot.ts";
import type { Snapshot } from "../raft/types.ts";
import { type Watcher, WatchHub, watchTarget } from "./watch_hub.ts";
import { ExpiryQueue } from "./expiry_queue.ts";
import { ProposalBatcher } from "./proposal_batcher.ts";
import {
  keysToRead,
  planTxn,
  txnMayWrite,
  type TxnOutcome,
  type TxnPlan,
  type TxnRead,
  type TxnRequest,
  validateTxn,
} from "./txn.ts";
import { stateMachineEngineOptions } from "./engine_options.ts";
import { type JoinResult, MembershipManager } from "./membership.ts";
import {
  classifyPeer,
  downAfterMs,
  keepAliveIntervalMs,
  type PeerHealth,
} from "../cluster/failure_detector.ts";
import { HashRing } from "../cluster/hash_ring.ts";
import type { TimerHandle } from "../common/clock.ts";
import { validateWatchTarget } from "../server/validation.ts";

/** The node's view of an engine read of `key`: expiry 0 when the key has none. */
function keyValueOf(key: Uint8Array, kv: KV): KeyValue {
  return { key, value: kv.value, version: kv.version, expiresAtMs: kv.expiresAtMs ?? 0 };
}

/** Read consistency (see proto Consistency). */
export type ReadConsistency = "linearizable" | "serializable";

/** What the data directory records about its owner. */
interface Identity {
  format: 1;
  nodeId: string;
  clusterId: string;
  /**
   * For a node that joined through --peers: the members it was told about,
   * so it can answer the leader before its log names anyone.
   */
  seeds?: MemberRecord[];
}

/** The first byte a user key may have; everything below is the system key space. */
const firstUserKey = new Uint8Array([systemKeyByte + 1]);

/** Raised at start-up for a problem the operator must fix (printed without a stack trace). */
export class StartupError extends Error {
  override name = "StartupError";
}

/**
 * A revision held readable (history compaction keeps it) until `release`,
 * and the time it was pinned at: reads at it judge TTLs by that time, so
 * a key that expires while a read made of many steps (MGET, EXEC, KEYS) is
 * under way answers as it did when the read began.
 */
export interface PinnedRevision {
  version: number;
  release(): void;
  ttlAtMs: number;
}

/** Options beyond the node config (tests inject clocks and file systems). */
export interface KVNodeOptions {
  clock?: Clock;
  fs?: FileSystem;
  log?: Logger;
  /** Called when the node hits an unrecoverable error (defaults to logging). */
  onFatal?: (e: Error) => void;
  /**
   * Joins an existing cluster through `config.peers` (asked only when the data
   * dir is new and --peers is given); the server layer supplies it.
   */
  join?: (config: NodeConfig) => Promise<JoinResult>;
  /**
   * The cluster id of the nodes at `config.peers` (undefined: none answered),
   * asked when a node with existing data is started with --peers.
   */
  clusterIdOfPeers?: (config: NodeConfig) => Promise<string | undefined>;
  /**
   * What the other members of a static cluster (--initial-cluster) report,
   * from those that answer within 3 s; asked before a node with an empty
   * data dir bootstraps (see refuseRebootstrap).
   */
  statusOfPeers?: (addrs: string[]) => Promise<PeerReport[]>;
  /** How snapshots reach lagging followers (default: the native peer channel). */
  snapshotChannel?: SnapshotChannelFactory;
}

/** The part of a peer's NodeStatus a starting node checks. */
export interface PeerReport {
  nodeId: string;
  clusterId: string;
  revision: number;
  /** Members as the peer knows them; matchIndex is known on the leader only (else 0). */
  members: Array<{ id: string; addr: string; matchIndex: number }>;
}

/** Status as NodeStatus reports it. */
export interface NodeStatusInfo {
  nodeId: string;
  clusterId: string;
  /** This node's RESP address ("" when it serves none). */
  respAddr: string;
  role: string;
  term: number;
  leaderId: string;
  leaderAddr: string;
  commitIndex: number;
  appliedIndex: number;
  revision: number;
  compactedRevision: number;
  members: Array<{
    id: string;
    addr: string;
    role: "voter" | "learner";
    matchIndex: number;
    /** "self" for this node, else what the failure detector says. */
    health: PeerHealth | "self";
    /** Milliseconds since this node last heard from the member (0 for itself). */
    lastHeardMsAgo: number;
    /** Last heartbeat round trip in ms (known on the leader), else 0. */
    rttMs: number;
    /** The member's expected share of keys on the ring over the voters. */
    ringShare: number;
  }>;
}

/** A running node. */
export class KVNode {
  readonly transport: PeerTransport;
  readonly snapshotSender: SnapshotSender;
  readonly snapshotReceiver: SnapshotReceiver;
  #closed = false;
  /** Held from start to close: no other process uses the data dir meanwhile. */
  #dataDirLock: DataDirLock | undefined;
  /** getLocalManyNow's scratch for the engine's answers. */
  #manyScratch: (KV | undefined | typeof readNeedsIo)[] = [];
  /** Captures whose transfer failed, kept pinned so a retry can resume. */
  #retryCaptures = new Map<string, CapturedState>();
  /** Open watches, fed by the state machine. */
  readonly watches: WatchHub;
  /** Keys with a TTL, by expiry; the leader proposes their deletion. */
  readonly expiries = new ExpiryQueue();
  #expiryTimer: TimerHandle | undefined;
  /** Lowers the recorded vote-quiet promise once the previous run's has lapsed. */
  #quietTimer: TimerHandle | undefined;
  #expiring = false;
  #retentionTimer: TimerHandle | undefined;
  #compacting = false;
  /** Join, add, remove and learner promotion (decided on the leader). */
  readonly membership: MembershipManager;
  /**
   * Client writes that arrive together share one Raft entry. Each keeps its
   * own request id (a client's retry is deduplicated per write), and the
   * batch is proposed once: a failure goes back to the clients, who retry.
   */
  readonly #writes = new ProposalBatcher({
    propose: (data, _requestId, deadlineMs) => this.replica.propose(data, deadlineMs),
    wallMs: () => this.clock.wallMs(),
  });
  #promotionTimer: TimerHandle | undefined;
  #keepAliveTimer: TimerHandle | undefined;
  /** Addresses learned when joining, used until the log names the members. */
  readonly #seeds: Map<string, string>;

  private constructor(
    readonly config: NodeConfig,
    readonly clusterId: string,
    readonly store: RaftLogStore,
    readonly stateMachine: StateMachine,
    readonly replica: Replica,
    readonly clock: Clock,
    readonly log: Logger,
    readonly fs: FileSystem,
    seeds: MemberRecord[],
    snapshotChannel: SnapshotChannelFactory | undefined,
  ) {
    this.#seeds = new Map(seeds.map((m) => [m.id, m.addr]));
    const startedAtMs = clock.nowMs();
    this.membership = new MembershipManager(
      config.nodeId,
      () => this.clusterId,
      replica,
      clock,
      log,
      (id) => {
        const silentMs = this.transport.peerHealth(id).silentMs;
        // Not heard since this process started: unknown, not down, until it could have been.
        if (silentMs === undefined && clock.nowMs() - startedAtMs < downAfterMs) return "suspect";
        return classifyPeer(silentMs);
      },
    );
    this.snapshotSender = new SnapshotSender(
      config.nodeId,
      () => this.clusterId,
      log,
      snapshotChannel,
    );
    this.snapshotReceiver = new SnapshotReceiver({
      openStaging: () => Engine.open(stagingDir(config), { fs }),
      discardStaging: () => removeDir(stagingDir(config)),
      deliver: (m) => {
        replica.step([m]);
        const pending = replica.node.pendingSnapshot();
        return pending?.index === m.snapshot!.meta.index && pending.term === m.snapshot!.meta.term;
      },
    }, log);
    this.transport = new PeerTransport({
      selfId: config.nodeId,
      clusterId: () => this.clusterId,
      voteQuietMs: () => replica.voteQuietMs,
      peerVoteQuiet: (id, ms) => replica.notePeerVoteQuiet(id, ms),
      addressOf: (id) => this.#peerAddr(id),
      deliver: (messages) => replica.step(messages),
      unreachable: (id) => replica.reportUnreachable(id),
      sendSnapshot: (m) => this.#sendSnapshot(m),
      receiveSnapshot: (from, frames, reply) => this.snapshotReceiver.serve(from, frames, reply),
    }, log);
    replica.transport = this.transport;
    this.watches = new WatchHub(
      () => stateMachine.engine,
      () => stateMachine.publishedRevision,
      (f) => stateMachine.atRest(f),
    );
    stateMachine.onChange = (events) => this.watches.publish(events);
    stateMachine.wantPrevForEvents = () => this.watches.wantsPrev;
    stateMachine.onExpiry = (key, version, expiresAtMs) => {
      // Most writes have no TTL, and with no key scheduled there is nothing for them to drop.
      if (expiresAtMs === 0 && this.expiries.empty) return;
      this.expiries.push({ key, version, expiresAtMs });
    };
    stateMachine.onExpirySettled = (key, version) => this.expiries.settled(key, version);
  }

  /**
   * Where Raft traffic to `id` goes: its member address, unless the fault
   * tests route this node's link to `id` through a proxy (failpoint
   * `peer-route:<id>=host:port`).
   */
  #peerAddr(id: string): string | undefined {
    return failpoint(`peer-route:${id}`) ?? this.replica.members.get(id)?.addr ??
      this.#seeds.get(id);
  }

  /** The engine holding the applied state (replaced by snapshot installs). */
  get engine(): Engine {
    return this.stateMachine.engine;
  }

  /**
   * Streams the applied state to a follower that needs a snapshot. The
   * replica loop runs while an apply may be under way, so the capture waits
   * for a point between applies: there index, term, revision and the
   * engine's contents are one consistent state.
   */
  #sendSnapshot(m: Message): void {
    this.stateMachine.atRest(() => this.#sendSnapshotNow(m));
  }

  #sendSnapshotNow(m: Message): void {
    if (this.#closed) return;
    const addr = this.replica.members.get(m.to) ? this.#peerAddr(m.to) : undefined;
    if (!addr || this.snapshotSender.busy(m.to)) return;
    let state = this.#retryCaptures.get(m.to);
    this.#retryCaptures.delete(m.to);
    const usable = state !== undefined &&
      this.clock.nowMs() - state.capturedAtMs < snapshotRetryWindowMs &&
      state.index >= this.store.firstIndex() - 1 && state.engine === this.stateMachine.engine;
    if (!usable) {
      state?.release();
      const sm = this.stateMachine;
      const index = sm.appliedIndex;
      const pin = sm.engine.snapshot();
      state = {
        index,
        term: this.replica.node.logTerm(index) ?? this.store.snapshot().meta.term,
        conf: this.replica.node.status().conf,
        revision: sm.revision,
        engine: sm.engine,
        release: () => pin.release(),
        capturedAtMs: this.clock.nowMs(),
      };
    }
    const captured = state!;
    this.log.info("sending a snapshot", {
      peer: m.to,
      index: captured.index,
      term: captured.term,
      revision: captured.revision,
    });
    this.snapshotSender.send(m.to, addr, m, captured).then((ok) => {
      if (ok || this.#closed) captured.release();
      else this.#retryCaptures.set(m.to, captured);
      this.replica.reportSnapshot(m.to, ok);
    });
  }

  /** How long without a leader ends watches: 2 s, or four election timeouts when longer. */
  #watchWithoutLeaderMs(): number {
    return Math.max(watchWithoutLeaderMs, 4 * this.config.electionMs);
  }

  /** Since when this node has known no leader (undefined: it knows one). */
  #leaderlessSinceMs: number | undefined;

  /** How long this node has known no leader (0 while it knows one). */
  #leaderlessForMs(): number {
    const now = this.clock.nowMs();
    if (this.replica.softState.leaderId !== "") {
      this.#leaderlessSinceMs = undefined;
      return 0;
    }
    this.#leaderlessSinceMs ??= now;
    return now - this.#leaderlessSinceMs;
  }

  /**
   * Ends the watches of a node that has known no leader for a while (as
   * etcd's require-leader watches end): cut off from the cluster, it applies
   * nothing, and its watchers would wait without a word while writes go on
   * elsewhere. They are told why and resume on another node.
   */
  #endWatchesWithoutLeader(): void {
    const silent = this.#leaderlessForMs();
    if (silent < this.#watchWithoutLeaderMs() || this.watches.size === 0) return;
    this.log.warn("ending watches: no leader known", { watches: this.watches.size, ms: silent });
    this.watches.closeAll(
      `this node has known no leader for ${silent} ms; reconnect to resume on another node`,
    );
  }

  /**
   * Releases the kept capture of a failed snapshot transfer once it can no
   * longer be resumed (too old) or its peer is no longer a member. Its pin
   * holds the history horizon, so MVCC garbage above it would otherwise
   * stay on disk for good.
   */
  #releaseStaleCaptures(): void {
    const now = this.clock.nowMs();
    for (const [peer, capture] of this.#retryCaptures) {
      if (now - capture.capturedAtMs < snapshotRetryWindowMs && this.replica.members.has(peer)) {
        continue;
      }
      this.#retryCaptures.delete(peer);
      capture.release();
      this.log.info("released the state kept to resume a snapshot transfer", {
        peer,
        reason: this.replica.members.has(peer) ? "too old to resume" : "no longer a member",
      });
    }
  }

  /**
   * Swaps in the staging engine holding a received snapshot. Crash-safe
   * order: the staged engine is complete and closed; kv -> kv.old,
   * kv.staging -> kv, fsync the data dir, delete kv.old. `recoverDirs`
   * finishes or undoes an interrupted swap at start.
   */
  async #installSnapshot(snapshot: Snapshot): Promise<void> {
    const { index, term } = snapshot.meta;
    const staged = this.snapshotReceiver.takeForInstall(index, term);
    if (!staged) {
      throw new KVError("Internal", `snapshot ${index}/${term} to install is not staged`);
    }
    await staged.close();
    await this.#stopExpiryWalk();
    await this.stateMachine.engine.close();
    const dir = this.config.dataDir;
    await Deno.rename(joinPath(dir, "kv"), joinPath(dir, "kv.old"));
    await Deno.rename(stagingDir(this.config), joinPath(dir, "kv"));
    await this.fs.syncDir(dir);
    await removeDir(joinPath(dir, "kv.old"));
    const engine = await Engine.open(joinPath(dir, "kv"), {
      ...stateMachineEngineOptions(this.config.nodeId),
      fs: this.fs,
    });
    this.snapshotReceiver.adopted();
    this.stateMachine.reset(engine);
    this.watches.closeAll("the node installed a snapshot; reconnect to resume");
    this.expiries.clear();
    this.#loadExpiries();
  }

  /**
   * Schedules every key that carries a TTL (at start and after a snapshot
   * install), in the background: reads hide expired keys by themselves, and
   * only the leader's expiry rounds need the queue, so the node serves
   * meanwhile. The walk reads every key: awaited at start, it held a node
   * with 865,000 keys off the cluster for 1.6 s (4 s with a cold page cache).
   * A queue entry that is stale or doubled by a write applied meanwhile is
   * harmless: an expiry names the version that expired.
   */
  #loadExpiries(): void {
    const load = ++this.#expiryLoads;
    const engine = this.engine;
    const superseded = () => load !== this.#expiryLoads || this.#closed;
    const walk = async () => {
      const turns = new IoTurns();
      for await (const kv of engine.scan({ start: firstUserKey, nowMs: 0 })) {
        const turn = turns.due();
        if (turn !== undefined) await turn;
        if (superseded()) return;
        if (kv.expiresAtMs) {
          this.expiries.push({
            key: kv.key.slice(),
            version: kv.version,
            expiresAtMs: kv.expiresAtMs,
          });
        }
      }
      this.log.info("loaded the expiry queue", { keys: this.expiries.size });
    };
    this.#expiryWalk = walk().catch((e) => {
      if (!superseded()) this.log.error("loading the expiry queue failed", { error: String(e) });
    });
  }

  /**
   * Stops the expiry walk before its engine closes: it would read on, and
   * reopen tables by file name (after a snapshot install, the new engine's).
   * Waits for its current step at most.
   */
  async #stopExpiryWalk(): Promise<void> {
    this.#expiryLoads++;
    await this.#expiryWalk;
  }

  /** Bumped by each start of #loadExpiries and by #stopExpiryWalk: an older walk stops. */
  #expiryLoads = 0;
  /** The latest walk (it never rejects); awaited before its engine closes. */
  #expiryWalk: Promise<void> | undefined;

  /**
   * On the leader: proposes the deletion of keys whose TTL passed, at most
   * a bounded batch per round. A key rewritten since is left alone (the
   * command carries the version that expired).
   */
  async #expireRound(): Promise<void> {
    if (this.#expiring || !this.replica.isLeader) return;
    this.#expiring = true;
    try {
      const due = this.expiries.popExpired(this.clock.wallMs(), 1_000);
      await Promise.all(due.map(async (e) => {
        const data = encodeCommand({
          op: CommandOp.ExpireKey,
          timestampMs: this.clock.wallMs(),
          key: e.key,
          version: e.version,
        });
        try {
          await this.replica.propose(data, this.#deadline(undefined));
        } catch (err) {
          // Not deleted (leadership moved, or a timeout): schedule it again, unless the key
          // moved on meanwhile (a new leader's ExpireKey, or a rewrite, applied here).
          this.log.debug("expiry proposal failed", { error: (err as Error).message });
          const now = await this.engine.get(e.key, { nowMs: 0 }).catch(() => undefined);
          if (now?.version === e.version) this.expiries.push(e);
        }
      }));
    } finally {
      this.#expiring = false;
    }
  }

  /**
   * Opens a watch on a key or prefix, optionally replaying history from
   * `startVersion`. Served from this replica's applied state.
   */
  watch(
    opts: { key?: Uint8Array; prefix?: Uint8Array; startVersion?: number; prevKv?: boolean },
  ): Watcher {
    validateWatchTarget(opts.key, opts.prefix);
    const startVersion = validateVersion(opts.startVersion, "start_version");
    const silent = this.#leaderlessForMs();
    if (silent >= this.#watchWithoutLeaderMs()) {
      throw new NoQuorumError(
        `this node has known no leader for ${silent} ms (cut off from the cluster?): its ` +
          "watches would miss every write; watch through another node",
      );
    }
    return this.watches.watch(watchTarget(opts.key, opts.prefix), {
      startVersion,
      prevKv: opts.prevKv,
    });
  }

  /** Opens (or creates) the data directory and starts the replica. */
  static async start(config: NodeConfig, opts: KVNodeOptions = {}): Promise<KVNode> {
    const fs = opts.fs ?? new DenoFileSystem();
    const clock = opts.clock ?? new SystemClock();
    const log = opts.log ?? new Logger(config.nodeId, config.logLevel);
    let lock: DataDirLock;
    try {
      await fs.mkdir(config.dataDir);
      lock = await DataDirLock.acquire(config.dataDir);
    } catch (e) {
      if (e instanceof DataDirInUseError) throw new StartupError(e.message);
      throw new StartupError(`cannot use data dir ${config.dataDir}: ${(e as Error).message}`);
    }
    try {
      const node = await KVNode.#startLocked(config, opts, fs, clock, log);
      node.#dataDirLock = lock;
      return node;
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  static async #startLocked(
    config: NodeConfig,
    opts: KVNodeOptions,
    fs: FileSystem,
    clock: Clock,
    log: Logger,
  ): Promise<KVNode> {
    let identity = await readIdentity(fs, config.dataDir);
    const fresh = identity === undefined;
    if (fresh) {
      // IDENTITY is written before kv/ and raft/ are created: data without it means it was lost,
      // and starting as a new node would give this data another cluster id.
      for (const sub of ["kv", "raft"]) {
        const names = await fs.list(joinPath(config.dataDir, sub)).catch(() => [] as string[]);
        if (names.length > 0) {
          throw new StartupError(
            `${joinPath(config.dataDir, "IDENTITY")} is missing, but ${
              joinPath(config.dataDir, sub)
            } holds data; restore IDENTITY, or start with an empty --data-dir`,
          );
        }
      }
    }
    if (identity && identity.nodeId !== config.nodeId) {
      throw new StartupError(
        `data dir ${config.dataDir} belongs to node ${identity.nodeId}, not ${config.nodeId}; use that --node-id or another --data-dir`,
      );
    }
    if (identity && config.peers.length > 0 && opts.clusterIdOfPeers) {
      const theirs = await opts.clusterIdOfPeers(config);
      if (theirs !== undefined && theirs !== identity.clusterId) {
        throw new StartupError(
          `data dir ${config.dataDir} belongs to cluster ${identity.clusterId}, but --peers ${
            config.peers.join(",")
          } are cluster ${theirs}; start with an empty --data-dir to join that cluster`,
        );
      }
    }
    if (!identity) {
      if (config.peers.length > 0) {
        if (!opts.join) throw new StartupError("this build cannot join a cluster through --peers");
        const joined = await opts.join(config);
        identity = {
          format: 1,
          nodeId: config.nodeId,
          clusterId: joined.clusterId,
          seeds: joined.members,
        };
        log.info("joined a cluster", {
          cluster: joined.clusterId,
          members: joined.members.map((m) => m.id).join(","),
        });
      } else {
        identity = { format: 1, nodeId: config.nodeId, clusterId: newClusterId(config) };
        if (config.initialCluster && opts.statusOfPeers) {
          await refuseRebootstrap(config, identity.clusterId, opts.statusOfPeers);
        }
      }
      await writeIdentity(fs, config.dataDir, identity);
      // The data dir itself may be new: its entry in the parent must last too.
      await fs.syncDir(dirName(config.dataDir.replace(/(.)\/+$/, "$1")));
    }
    await recoverDirs(config, fs);
    const engine = await Engine.open(joinPath(config.dataDir, "kv"), {
      ...stateMachineEngineOptions(config.nodeId),
      fs,
    });
    const store = await RaftLogStore.open(fs, joinPath(config.dataDir, "raft"), 0, {
      voters: [],
      learners: [],
    });
    for (const repair of [...engine.repairs, ...store.repairs]) {
      log.warn("repaired at open", { repair });
    }
    // kv/ and raft/ may have just been created, and recoverDirs may have renamed: make those
    // directory entries durable before the node votes or acknowledges anything.
    await fs.syncDir(config.dataDir);
    // A crash between installing a snapshot's data and logging it leaves the engine ahead
    // of the log, or the log holding entries the snapshot replaced (another term at its
    // index, which would stay committed and block catching up): log the snapshot point now.
    const metaKv = await engine.get(snapshotMetaKey);
    const meta = metaKv && decodeSnapshotMeta(metaKv.value);
    if (Math.max(0, engine.appliedIndex) > store.lastIndex() && !meta) {
      await store.close();
      await engine.close();
      throw new StartupError(
        `the state in ${config.dataDir}/kv is at index ${engine.appliedIndex}, past the raft log (${store.lastIndex()}), with no snapshot record`,
      );
    }
    if (meta && meta.index > store.snapshot().meta.index && !logHolds(store, meta)) {
      const snapshot = {
        meta: { index: meta.index, term: meta.term, conf: meta.conf },
        data: encodeSnapshotDescriptor(meta.revision),
      };
      await store.save({ snapshot, entries: [] }, true);
      log.info("logged the snapshot installed before the last stop", { index: meta.index });
    }
    // Entries up to the log's start are gone from the log: the engine must hold them already.
    const logStart = store.snapshot().meta.index;
    if (Math.max(0, engine.appliedIndex) < logStart) {
      await store.close();
      await engine.close();
      throw new StartupError(
        `the state in ${config.dataDir}/kv is at index ${engine.appliedIndex}, behind the start ` +
          `of the raft log (${logStart}): applied entries were lost from kv/ (a damaged or ` +
          "deleted WAL segment or table) and the log no longer holds them; remove this member " +
          "and join again with an empty --data-dir",
      );
    }
    // A new node bootstraps; so does one that stopped between writing IDENTITY and the first
    // entries (nothing in its log or its engine, no seeds it joined through).
    const neverBootstrapped = store.snapshot().meta.index === 0 && engine.appliedIndex < 0;
    if (store.lastIndex() === 0 && !identity.seeds && (fresh || neverBootstrapped)) {
      const boot = bootstrapEntries(config);
      await store.save(
        { entries: boot, hardState: { term: 1, vote: "", commit: boot.length } },
        true,
      );
      log.info("bootstrapped a new cluster", { cluster: identity.clusterId, members: boot.length });
    }
    const stateMachine = new StateMachine(engine);
    const members = (await stateMachine.members()) ?? [];
    const promised = await readVoteQuiet(fs, config.dataDir);
    const recorded = members.find((m) => m.id === config.nodeId)?.addr;
    const reachedAt = config.initialCluster?.get(config.nodeId) ?? config.advertiseAddr;
    if (recorded !== undefined && recorded !== reachedAt) {
      await store.close();
      await engine.close();
      throw new StartupError(
        `${config.nodeId} is a member at ${recorded}, where its peers keep sending to it, but ` +
          `this start would serve at ${reachedAt}; restart with --advertise-addr ${recorded} ` +
          `(and an --addr that it reaches), or remove the member (rustkvd-cli member remove ` +
          `${config.nodeId}) and join again with an empty --data-dir`,
      );
    }
    store.memory.setConfState({
      voters: members.filter((m) => !m.learner).map((m) => m.id),
      learners: members.filter((m) => m.learner).map((m) => m.id),
    });
    log.info("starting", {
      addr: config.listenAddr,
      cluster: identity.clusterId,
      applied: stateMachine.appliedIndex,
      lastIndex: store.lastIndex(),
      revision: stateMachine.revision,
    });
    const replica = new Replica({
      nodeId: config.nodeId,
      groupId: 0,
      store,
      stateMachine,
      clock,
      random: systemRandom(),
      log,
      tickMs: config.tickMs,
      electionTicks: Math.max(2, Math.round(config.electionMs / config.tickMs)),
      heartbeatTicks: Math.max(1, Math.round(config.heartbeatMs / config.tickMs)),
      members,
      onFatal: opts.onFatal ?? ((e) => log.error("fatal", { error: e.message })),
      installSnapshot: (snapshot) => node.#installSnapshot(snapshot),
      snapshotEntries: config.snapshotEntries,
      leaseReads: config.readLease ?? true,
      previousVoteQuietMs: promised,
    });
    // Until the previous run's promise has lapsed, a crash must find it again: keep the larger.
    const promising = replica.voteQuietMs;
    await writeVoteQuiet(fs, config.dataDir, Math.max(promised, promising));
    const node: KVNode = new KVNode(
      config,
      identity.clusterId,
      store,
      stateMachine,
      replica,
      clock,
      log,
      fs,
      identity.seeds ?? [],
      opts.snapshotChannel,
    );
    replica.start();
    if (promised > promising) {
      node.#quietTimer = clock.setTimeout(() => {
        if (node.#closed) return;
        writeVoteQuiet(fs, config.dataDir, promising).catch((e) =>
          log.warn("could not record this run's vote-quiet period", { error: (e as Error).message })
        );
      }, promised);
    }
    node.#loadExpiries();
    node.#expiryTimer = clock.setInterval(() => void node.#expireRound(), expiryCheckIntervalMs);
    node.#retentionTimer = clock.setInterval(
      () => void node.#retentionRound(),
      retentionCheckIntervalMs,
    );
    node.#keepAliveTimer = clock.setInterval(() => {
      for (const id of node.replica.members.keys()) node.transport.ping(id);
      node.#endWatchesWithoutLeader();
    }, keepAliveIntervalMs);
    node.#promotionTimer = clock.setInterval(
      () => void node.membership.promoteCaughtUpLearners(node.#deadline(undefined)),
      promotionCheckIntervalMs,
    );
    return node;
  }

  /** When a call gives up: its own timeout (default 5 s), at most maxRequestTimeoutMs. */
  #deadline(timeoutMs: number | undefined): number {
    const ms = timeoutMs && timeoutMs > 0
      ? Math.min(timeoutMs, maxRequestTimeoutMs)
      : defaultRequestTimeoutMs;
    return this.clock.nowMs() + ms;
  }

  #requireLeader(): void {
    if (!this.replica.isLeader) throw this.replica.notLeader();
  }

  /** Writes a key through Raft; returns its version and, when asked, the previous value. */
  async put(
    key: Uint8Array,
    value: Uint8Array,
    opts: {
      ttlSecs?: number;
      ifVersion?: number;
      prevKv?: boolean;
      requestId?: string;
      timeoutMs?: number;
    } = {},
  ): Promise<{ version: number; prev?: KeyValue }> {
    validateKey(key);
    checkUserKey(key);
    validateValue(value);
    const ttl = validateTtlSecs(opts.ttlSecs);
    const requestId = validateRequestId(opts.requestId);
    const ifVersion = opts.ifVersion === undefined
      ? undefined
      : validateVersion(opts.ifVersion, "if_version");
    this.#requireLeader();
    const now = this.clock.wallMs();
    const r = await this.#writes.submit({
      op: CommandOp.Put,
      timestampMs: now,
      requestId,
      key,
      value,
      expiresAtMs: ttl > 0 ? now + ttl * 1000 : 0,
      ifVersion,
      wantPrev: opts.prevKv,
    }, this.#deadline(opts.timeoutMs));
    return { version: r.revision, prev: opts.prevKv ? await this.#prevOf(key, r) : undefined };
  }

  /**
   * The previous value a write replaced: from its apply, or for a retry of
   * one already applied (same request id), rebuilt from the history just
   * before its revision, with expiry judged at the first apply's time.
   */
  async #prevOf(key: Uint8Array, r: ApplyResult): Promise<KeyValue | undefined> {
    if (!r.deduplicated) return r.prev;
    if (!r.changed) return undefined;
    const commit = { revision: r.revision, appliedAtMs: r.appliedAtMs ?? 0 };
    const state = await this.#readBefore(
      [key],
      commit,
      "this write",
      "the value it replaced can no longer be read",
    );
    return state(key);
  }

  /** Deletes a key through Raft. */
  async delete(
    key: Uint8Array,
    opts: { ifVersion?: number; prevKv?: boolean; requestId?: string; timeoutMs?: number } = {},
  ): Promise<{ version: number; deleted: boolean; prev?: KeyValue }> {
    validateKey(key);
    checkUserKey(key);
    const requestId = validateRequestId(opts.requestId);
    const ifVersion = opts.ifVersion === undefined
      ? undefined
      : validateVersion(opts.ifVersion, "if_version");
    this.#requireLeader();
    const r = await this.#writes.submit({
      op: CommandOp.Delete,
      timestampMs: this.clock.wallMs(),
      requestId,
      key,
      ifVersion,
    }, this.#deadline(opts.timeoutMs));
    return {
      version: r.revision,
      deleted: r.changed,
      prev: opts.prevKv ? await this.#prevOf(key, r) : undefined,
    };
  }

  /**
   * Runs a transaction (lib/node/txn.ts): plans it at a linearizable
   * revision, commits its writes as one conditional Txn command, and plans
   * it again, at a newer revision, while a key its outcome depends on
   * changed in between. A retry of a committed transaction (same request
   * id) gets the first answer back, rebuilt from the history just before
   * that commit.
   */
  async txn(
    txn: TxnRequest,
    opts: { requestId?: string; timeoutMs?: number } = {},
  ): Promise<TxnOutcome> {
    validateTxn(txn, {
      key: (key) => {
        validateKey(key);
        checkUserKey(key);
      },
      value: (value) => validateValue(value),
      ttlSecs: (ttl) => validateTtlSecs(ttl),
    });
    const clientId = validateRequestId(opts.requestId);
    // Only an attempt that may write has to be settled through the log against another
    // attempt with its id; one that only reads is answered like a read, at no revision.
    const settledId = txnMayWrite(txn) ? clientId : "";
    this.#requireLeader();
    const deadline = this.#deadline(opts.timeoutMs);
    const keys = keysToRead(txn);
    for (let attempt = 1;; attempt++) {
      await this.replica.readBarrier(deadline);
      const nowMs = this.clock.wallMs();
      // A retry of an attempt that committed (its answer was lost on the way back).
      const done = await this.stateMachine.appliedRequest(clientId, nowMs);
      if (done) return this.#txnAnswerOf(txn, keys, done);
      const pin = this.engine.snapshot();
      let plan: TxnPlan | undefined;
      let refused: unknown;
      try {
        plan = planTxn(txn, await this.#readKeysAt(keys, pin.version, nowMs), nowMs);
      } catch (e) {
        // An answer too large to send. With an id, an earlier attempt (planned when the values
        // were smaller) may still commit: settle which one goes first, through the log (an
        // empty transaction with the id), and refuse only if this one did.
        if (settledId === "" || !(e instanceof InvalidArgumentError)) throw e;
        refused = e;
      } finally {
        pin.release();
      }
      // An outcome that writes nothing is answered at once, unless the client may send it
      // again: an earlier attempt with its id may still be on its way to a commit, with another
      // outcome. Committed as conditions alone, with the id, one of the two commits and the
      // other is answered from it (the log orders them).
      if (plan && !plan.writesKeys && settledId === "") return plan.outcome(pin.version);
      try {
        const r = await this.#writes.submit({
          op: CommandOp.Txn,
          timestampMs: nowMs,
          requestId: clientId,
          writes: plan?.writes ?? [],
        }, deadline);
        if (r.deduplicated) {
          return this.#txnAnswerOf(txn, keys, {
            revision: r.revision,
            appliedAtMs: r.appliedAtMs ?? nowMs,
          });
        }
        if (refused !== undefined) throw refused;
        return plan!.outcome(r.revision);
      } catch (e) {
        if (!(e instanceof ConflictError)) throw e;
        if (this.clock.nowMs() >= deadline) {
          throw new TimeoutError(
            `the keys this transaction depends on kept changing: ${attempt} attempts, none ` +
              `committed`,
          );
        }
      }
    }
  }

  /**
   * The answer of a transaction that committed at `revision`, at leader
   * time `appliedAtMs`: planned again just before that commit, by that
   * clock. Every key its outcome depended on held there what it held when
   * it was planned (its conditions said so), so the answer is the same.
   */
  async #txnAnswerOf(
    txn: TxnRequest,
    keys: Uint8Array[],
    commit: { revision: number; appliedAtMs: number },
  ): Promise<TxnOutcome> {
    const state = await this.#readBefore(
      keys,
      commit,
      "this transaction",
      "its answer can no longer be rebuilt",
    );
    return planTxn(txn, state, commit.appliedAtMs).outcome(commit.revision);
  }

  /**
   * The keys as a write committed at `commit.revision` found them (expiry
   * judged at the leader time it ran at): what a retry's answer is rebuilt
   * from. A compacted history is a CompactedError naming the commit.
   */
  async #readBefore(
    keys: Uint8Array[],
    commit: { revision: number; appliedAtMs: number },
    what: string,
    lost: string,
  ): Promise<TxnRead> {
    try {
      return await this.#readKeysAt(keys, commit.revision - 1, commit.appliedAtMs);
    } catch (e) {
      if (!(e instanceof CompactedError)) throw e;
      throw Object.assign(new CompactedError(e.requested, e.compacted), {
        message: `${what} committed at revision ${commit.revision}, but ${lost}: the ` +
          `history before it was compacted (${e.message})`,
      });
    }
  }

  /** The latest state of each key at `version` (expiry judged at `nowMs`), by key. */
  async #readKeysAt(keys: Uint8Array[], version: number, nowMs: number): Promise<TxnRead> {
    const state = new Map<string, KeyValue>();
    for (const key of keys) {
      const kv = await this.engine.get(key, { atVersion: version, nowMs });
      if (kv) state.set(byteString(key), keyValueOf(key, kv));
    }
    return (key) => state.get(byteString(key));
  }

  /** Makes the next read see every write committed before this call (unless serializable). */
  async #readFence(consistency: ReadConsistency, timeoutMs: number | undefined): Promise<void> {
    if (consistency === "linearizable") await this.replica.readBarrier(this.#deadline(timeoutMs));
  }

  /**
   * The newest revision reads may see: what the engine holds. The state
   * machine's own revision runs ahead of it while an apply writes its batch.
   */
  get #readableRevision(): number {
    return this.engine.currentVersion;
  }

  #checkVersion(version: number): void {
    const current = this.#readableRevision;
    if (version > current) throw new FutureVersionError(version, current);
  }

  /**
   * A serializable read of the latest version answered without waiting when
   * the engine needs no disk read; `readNeedsIo` otherwise (use `get`).
   */
  getLocalNow(key: Uint8Array): KeyValue | undefined | typeof readNeedsIo {
    validateKey(key);
    checkUserKey(key);
    const kv = this.engine.getNow(key, {
      atVersion: this.#readableRevision,
      nowMs: this.clock.wallMs(),
    });
    if (kv === readNeedsIo || kv === undefined) return kv;
    return keyValueOf(key, kv);
  }

  /**
   * getLocalNow for many keys at one revision (a pipeline of reads), with
   * the engine's batched memtable lookup. False, with `out` untouched, when
   * some key is not a valid user key: the caller then reads them one by one
   * and reports that key's error.
   */
  getLocalManyNow(
    keys: Uint8Array[],
    out: (KeyValue | undefined | typeof readNeedsIo)[],
  ): boolean {
    for (const key of keys) {
      try {
        validateKey(key);
        checkUserKey(key);
      } catch {
        return false;
      }
    }
    const kvs = this.#manyScratch;
    this.engine.getManyNow(keys, {
      atVersion: this.#readableRevision,
      nowMs: this.clock.wallMs(),
    }, kvs);
    out.length = keys.length;
    for (let i = 0; i < keys.length; i++) {
      const kv = kvs[i];
      out[i] = kv === readNeedsIo || kv === undefined ? kv : keyValueOf(keys[i], kv);
    }
    kvs.length = 0;
    return true;
  }

  /** Reads a key (latest, or as of `version`). */
  async get(
    key: Uint8Array,
    opts: {
      version?: number;
      consistency?: ReadConsistency;
      timeoutMs?: number;
      /** Judge TTLs at this time: a read at a revision pinned here (PinnedRevision.ttlAtMs). */
      ttlAtMs?: number;
    } = {},
  ): Promise<{ kv?: KeyValue; revision: number }> {
    validateKey(key);
    checkUserKey(key);
    const version = validateVersion(opts.version);
    await this.#readFence(opts.consistency ?? "linearizable", opts.timeoutMs);
    if (version > 0) this.#checkVersion(version);
    const revision = version > 0 ? version : this.#readableRevision;
    const kv = await this.engine.get(key, {
      atVersion: revision,
      nowMs: opts.ttlAtMs ?? this.#ttlClockAt(version),
    });
    return {
      kv: kv ? keyValueOf(key, kv) : undefined,
      revision,
    };
  }

  /**
   * The time a read judges TTLs by. A read of the newest state (no version
   * asked for): now, so a key past its expiry is gone before the leader's
   * delete of it applies. A read at a version the caller names: none (0),
   * the read answers what the history holds there, where a key with a TTL
   * lives until the revision of that delete; the same read then gives the
   * same answer whenever it is made, also once that version is no longer
   * the newest (as a watch replayed from there does, and as etcd's reads at a
   * revision do).
   */
  #ttlClockAt(askedVersion: number): number {
    return askedVersion > 0 ? 0 : this.clock.wallMs();
  }

  /**
   * Fences a read of `consistency` and pins this replica's revision there:
   * history compaction keeps what reads at it need until `release`, so a
   * read made of many scans (KEYS, DBSIZE) sees one revision however far
   * the retention window moves meanwhile. Release it in a `finally`.
   */
  async pinRevision(
    consistency: ReadConsistency,
    timeoutMs?: number,
  ): Promise<PinnedRevision> {
    await this.#readFence(consistency, timeoutMs);
    const pin = this.engine.snapshot();
    return { version: pin.version, release: () => pin.release(), ttlAtMs: this.clock.wallMs() };
  }

  /**
   * Whether `key` was put at a revision in (after, upto] on this replica:
   * what tells a key absent at both ends apart from one created (and deleted
   * again) in between (Redis WATCH). A delete alone does not count: a key
   * absent at `after` can only be deleted after being created, or when it had
   * expired and its ExpireKey lands (not a change, as in Redis 7). True when
   * that history was compacted away (the caller cannot tell, so it assumes a
   * change).
   */
  async keyCreatedBetween(key: Uint8Array, after: number, upto: number): Promise<boolean> {
    try {
      const end = keySuccessor(key);
      for await (const h of this.engine.history({ start: key, end, afterVersion: after })) {
        if (h.version <= upto && !h.deleted) return true;
      }
      return false;
    } catch (e) {
      if (e instanceof CompactedError) return true;
      throw e;
    }
  }

  /** Lists keys of a prefix or range at one revision. */
  async scan(
    opts: {
      prefix?: Uint8Array;
      start?: Uint8Array;
      end?: Uint8Array;
      limit?: number;
      version?: number;
      keysOnly?: boolean;
      consistency?: ReadConsistency;
      timeoutMs?: number;
      /** Judge TTLs at this time: a read at a revision pinned here (PinnedRevision.ttlAtMs). */
      ttlAtMs?: number;
    } = {},
  ): Promise<{ kvs: KeyValue[]; more: boolean; version: number }> {
    const range = validateRange(opts.prefix, opts.start, opts.end);
    const limit = validateScanLimit(opts.limit);
    const version = validateVersion(opts.version);
    if ("prefix" in range) checkUserKey(range.prefix);
    await this.#readFence(opts.consistency ?? "linearizable", opts.timeoutMs);
    if (version > 0) this.#checkVersion(version);
    const at = version > 0 ? version : this.#readableRevision;
    let start: Uint8Array;
    let end: Uint8Array | undefined;
    if ("prefix" in range) {
      start = range.prefix;
      end = prefixEnd(range.prefix);
    } else {
      start = compareBytes(range.start, firstUserKey) < 0 ? firstUserKey : range.start;
      end = range.end;
    }
    const kvs: KeyValue[] = [];
    let more = false;
    let bytes = 0;
    for await (
      const kv of this.engine.scan({
        start,
        end,
        limit: limit + 1,
        atVersion: at,
        keysOnly: opts.keysOnly,
        nowMs: opts.ttlAtMs ?? this.#ttlClockAt(version),
      })
    ) {
      // A page ends at `limit` keys or at maxScanResponseBytes (one key always fits).
      bytes += kv.key.length + kv.value.length;
      if (kvs.length === limit || (kvs.length > 0 && bytes > maxScanResponseBytes)) {
        more = true;
        break;
      }
      kvs.push(keyValueOf(kv.key, kv));
    }
    return { kvs, more, version: at };
  }

  /**
   * On the leader: once history is longer than the retention window by a
   * tenth of it, compacts it back to the window (one Raft entry, so every
   * replica drops the same versions). Batching by a tenth keeps this to one
   * compaction per window/10 writes.
   */
  async #retentionRound(): Promise<void> {
    this.#releaseStaleCaptures();
    const keep = this.config.historyRevisions ?? defaultHistoryRevisions;
    if (keep === 0 || this.#compacting || !this.replica.isLeader) return;
    const revision = this.stateMachine.revision;
    const target = revision - keep;
    if (target < 1 || target - this.engine.compactedVersion < Math.max(1, Math.floor(keep / 10))) {
      return;
    }
    this.#compacting = true;
    try {
      await this.compact(target);
      this.log.info("compacted MVCC history", { revision: target, keep });
    } catch (e) {
      this.log.debug("history compaction deferred", { error: (e as Error).message });
    } finally {
      this.#compacting = false;
    }
  }

  /** Drops MVCC history older than `revision` on every replica (through Raft). */
  async compact(revision: number, timeoutMs?: number): Promise<number> {
    validateVersion(revision, "version");
    if (revision < 1) throw new InvalidArgumentError("version must be at least 1");
    this.#requireLeader();
    const current = this.#readableRevision;
    if (revision > current) throw new FutureVersionError(revision, current);
    const data = encodeCommand({
      op: CommandOp.CompactHistory,
      timestampMs: this.clock.wallMs(),
      revision,
    });
    await this.replica.propose(data, this.#deadline(timeoutMs));
    return this.engine.compactedVersion;
  }

  /**
   * Hands leadership to `nodeId` (must be a voter) and waits, bounded by the
   * deadline, until the cluster reports a leader; returns its id.
   */
  async transferLeader(nodeId: string, timeoutMs?: number): Promise<string> {
    const member = this.replica.members.get(nodeId);
    if (!member || member.learner) {
      throw new InvalidArgumentError(`${JSON.stringify(nodeId)} is not a voting member`);
    }
    this.#requireLeader();
    if (nodeId === this.config.nodeId) return nodeId;
    this.replica.transferLeader(nodeId);
    const deadline = this.#deadline(timeoutMs);
    while (this.clock.nowMs() < deadline) {
      const leader = this.replica.softState.leaderId;
      if (leader !== "" && leader !== this.config.nodeId) return leader;
      await this.clock.sleep(this.config.tickMs);
    }
    throw new KVError("Timeout", `leadership did not move to ${nodeId} before the deadline`);
  }

  /** Adds a node that asked to join (see MembershipManager.join); leader only. */
  join(id: string, addr: string, clusterId: string, timeoutMs?: number): Promise<JoinResult> {
    return this.membership.join(id, addr, clusterId, this.#deadline(timeoutMs));
  }

  /** Adds a member by hand: a learner, promoted to voter once it catches up. */
  addMember(id: string, addr: string, timeoutMs?: number): Promise<JoinResult> {
    return this.membership.join(id, addr, undefined, this.#deadline(timeoutMs));
  }

  /** Removes a member (the leader hands over leadership first when it is the one removed). */
  removeMember(id: string, timeoutMs?: number): Promise<JoinResult> {
    return this.membership.remove(id, this.#deadline(timeoutMs));
  }

  /** This node's view of the cluster. */
  status(): NodeStatusInfo {
    const s = this.replica.node.status();
    const voters = [...this.replica.members.values()].filter((m) => !m.learner).map((m) => m.id);
    const shares = new Map(
      new HashRing(voters).describeOwnership().map((o) => [o.nodeId, o.share]),
    );
    const soft = this.replica.softState;
    return {
      nodeId: this.config.nodeId,
      clusterId: this.clusterId,
      respAddr: this.respAddr,
      role: soft.role,
      term: s.term,
      leaderId: soft.leaderId,
      leaderAddr: this.replica.leaderAddr() ?? "",
      commitIndex: s.commit,
      appliedIndex: this.stateMachine.appliedIndex,
      revision: this.#readableRevision,
      compactedRevision: this.engine.compactedVersion,
      members: [...this.replica.members.values()].map((m) => {
        const self = m.id === this.config.nodeId;
        const heard = this.transport.peerHealth(m.id);
        return {
          id: m.id,
          addr: m.addr,
          role: m.learner ? "learner" : "voter",
          matchIndex: s.progress[m.id]?.match ?? 0,
          health: self ? "self" : classifyPeer(heard.silentMs),
          lastHeardMsAgo: self ? 0 : heard.silentMs ?? 0,
          rttMs: heard.rttMs ?? 0,
          ringShare: shares.get(m.id) ?? 0,
        };
      }),
    };
  }

  /**
   * The address this node serves RESP on, set by its RESP listener once
   * bound ("" when off): NodeStatus reports it, so peers can tell Redis
   * clients where each member listens (ROLE).
   */
  respAddr = "";

  /** Graceful stop: no new work, finish the loop, fsync and close files. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#expiryTimer?.cancel();
    this.#quietTimer?.cancel();
    this.#promotionTimer?.cancel();
    this.#keepAliveTimer?.cancel();
    this.#retentionTimer?.cancel();
    this.watches.shutDown("the node is shutting down; reconnect to resume");
    await this.replica.stop();
    for (const c of this.#retryCaptures.values()) c.release();
    this.#retryCaptures.clear();
    this.transport.close();
    await this.#stopExpiryWalk();
    await this.store.close();
    await this.engine.close();
    await this.snapshotReceiver.close();
    this.#dataDirLock?.release();
    this.log.info("stopped");
  }
}

/** How often the leader checks the MVCC history against its retention window. */
const retentionCheckIntervalMs = 1_000;

/** How often the leader looks for expired keys. */
const expiryCheckIntervalMs = 100;

/** How often the leader looks for learners that have caught up. */
const promotionCheckIntervalMs = 200;

/**
 * How long a node may know no leader before it ends its watches and refuses
 * new ones (at least; four election timeouts when that is longer): well past
 * an election (150-300 ms by default), so a leader change alone does not move
 * every watcher.
 */
const watchWithoutLeaderMs = 2_000;

/** How long a failed snapshot transfer may be resumed from the same capture. */
const snapshotRetryWindowMs = 60_000;

/** Where a received snapshot is staged before it replaces kv/. */
function stagingDir(config: NodeConfig): string {
  return joinPath(config.dataDir, "kv.staging");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function removeDir(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
}

/** Whether the log has the entry at `point`'s index, of `point`'s term (so it agrees with it). */
function logHolds(store: RaftLogStore, point: { index: number; term: number }): boolean {
  if (point.index > store.lastIndex() || point.index < store.firstIndex()) return false;
  return store.term(point.index) === point.term;
}

/** Finishes or undoes a snapshot swap that a crash interrupted (see #installSnapshot). */
async function recoverDirs(config: NodeConfig, fs: FileSystem): Promise<void> {
  const kv = joinPath(config.dataDir, "kv");
  const old = joinPath(config.dataDir, "kv.old");
  const staging = stagingDir(config);
  if (!(await exists(kv)) && (await exists(old))) {
    // Crashed between the two renames: the staging engine was complete; move it in.
    if (await exists(staging)) await Deno.rename(staging, kv);
    else await Deno.rename(old, kv);
  }
  // The renames (this start's or the swap's own) must be on disk before the deletions below:
  // if only they reached it, the next start would find neither kv nor kv.old and discard the
  // staging copy, the only one.
  if (await exists(old)) await fs.syncDir(config.dataDir);
  await removeDir(old);
  await removeDir(staging);
}

/** The bootstrap log: one committed addVoter per initial member, identical on every initial member. */
function bootstrapEntries(config: NodeConfig): Entry[] {
  const members = config.initialCluster
    ? [...config.initialCluster.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    : [[config.nodeId, config.advertiseAddr] as [string, string]];
  return members.map(([id, addr], i) => ({
    index: i + 1,
    term: 1,
    type: EntryType.ConfChange,
    groupId: 0,
    data: encodeConfChange(memberChange("addVoter", id, addr)),
  }));
}

/**
 * A static member whose data dir is empty bootstraps only into a cluster
 * that has not moved on: every member derives the same cluster id from the
 * same --initial-cluster, so a member whose data was lost would otherwise
 * come back as a voter with an empty log, and an election counting it could
 * lose a write it had acknowledged (etcd refuses a member that "has already
 * been bootstrapped"). Moved on: a peer of that cluster reports writes past
 * the bootstrap's member records, other members, or (its leader) that this
 * node has held the log. The cluster keeps no record of which members ever
 * ran, so a member started late for the first time is refused too (it can
 * join through --peers), and one wiped before any write or membership change
 * is not caught unless the leader still counts its entries. Each peer gets
 * up to 3 s to answer (a refused connection answers at once, so a whole
 * cluster starting together is not held up).
 */
async function refuseRebootstrap(
  config: NodeConfig,
  clusterId: string,
  statusOfPeers: (addrs: string[]) => Promise<PeerReport[]>,
): Promise<void> {
  const initial = config.initialCluster!;
  const others = [...initial].filter(([id]) => id !== config.nodeId).map(([, addr]) => addr);
  const bootRevision = bootstrapEntries(config).length;
  for (const peer of await statusOfPeers(others)) {
    if (peer.clusterId !== clusterId) continue;
    const self = peer.members.find((m) => m.id === config.nodeId);
    const sameMembers = peer.members.length === initial.size &&
      peer.members.every((m) => initial.get(m.id) === m.addr);
    const why = (self?.matchIndex ?? 0) > 0
      ? `its leader ${peer.nodeId} has had entries up to ${self!.matchIndex} from this node`
      : !sameMembers
      ? `${peer.nodeId} reports other members (${peer.members.map((m) => m.id).join(", ")})`
      : peer.revision > bootRevision
      ? `${peer.nodeId} reports writes (revision ${peer.revision})`
      : undefined;
    if (why === undefined) continue;
    throw new StartupError(
      `cluster ${clusterId} has moved on without this member (${why}), and its data dir ` +
        `${config.dataDir} is empty. A member that ran before and lost its data must not take ` +
        `its old place as a voter without what it had acknowledged, and one that never ran ` +
        `cannot be told apart from it here: remove it (rustkvd-cli member remove ` +
        `${config.nodeId}), then start it with --peers and an empty --data-dir`,
    );
  }
}

/** A new cluster's id: random for a bootstrapped node, derived from the member list for a static cluster. */
function newClusterId(config: NodeConfig): string {
  if (config.initialCluster) {
    const spec = [...config.initialCluster.entries()].map(([id, addr]) => `${id}=${addr}`).sort()
      .join(",");
    return createHash("sha256").update(spec).digest("hex").slice(0, 16);
  }
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function readIdentity(fs: FileSystem, dir: string): Promise<Identity | undefined> {
  const path = joinPath(dir, "IDENTITY");
  if (!(await fs.stat(path))) return undefined;
  try {
    const parsed = JSON.parse(new TextDecoder().decode(await fs.readFile(path))) as Identity;
    if (
      parsed.format !== 1 || typeof parsed.nodeId !== "string" ||
      typeof parsed.clusterId !== "string"
    ) {
      throw new Error("unknown format");
    }
    return parsed;
  } catch (e) {
    throw new StartupError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

/** The file holding how long this node promised leaders to ignore votes (see readVoteQuiet). */
const voteQuietFile = "VOTE_QUIET";

/**
 * What the previous run of this node promised leaders (ms it ignores votes
 * after hearing from one or starting; read_lease.ts voteQuietMs), or 0. A
 * leader may hold a lease on that promise when this node restarts with
 * other settings, so the new run stays quiet at least that long.
 */
async function readVoteQuiet(fs: FileSystem, dir: string): Promise<number> {
  const path = joinPath(dir, voteQuietFile);
  if ((await fs.stat(path)) === undefined) return 0;
  const text = fromUtf8(await fs.readFile(path));
  const ms = Number(text.trim());
  if (!/^\d+\n$/.test(text) || !Number.isSafeInteger(ms)) {
    throw new StartupError(
      `${path} is damaged: expected a number of milliseconds, got ${JSON.stringify(text)}`,
    );
  }
  return ms;
}

/** Records this node's promise durably (write, sync, rename, sync the directory). */
async function writeVoteQuiet(fs: FileSystem, dir: string, ms: number): Promise<void> {
  const tmp = joinPath(dir, `${voteQuietFile}.tmp`);
  const file = await fs.create(tmp);
  await file.append(new TextEncoder().encode(`${Math.floor(ms)}\n`));
  await file.syncData();
  await file.close();
  await fs.rename(tmp, joinPath(dir, voteQuietFile));
  await fs.syncDir(dir);
}

async function writeIdentity(fs: FileSystem, dir: string, identity: Identity): Promise<void> {
  const tmp = joinPath(dir, "IDENTITY.tmp");
  const file = await fs.create(tmp);
  await file.append(new TextEncoder().encode(JSON.stringify(identity) + "\n"));
  await file.syncData();
  await file.close();
  await fs.rename(tmp, joinPath(dir, "IDENTITY"));
  await fs.syncDir(dir);
}

/** Re-exported so front ends need one import. */
export { KVError };
export type { MemberRecord };
