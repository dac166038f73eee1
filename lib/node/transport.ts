/**
 * Node-to-node Raft traffic over gRPC (service RaftInternal). Per peer there
 * are two lanes: elections (votes, pre-votes, timeout-now) and replication
 * (appends, heartbeats, read-index). Each lane has a bounded queue and at
 * most one call in flight; whatever queues while a call is in flight leaves
 * together in the next call, so load turns into larger batches rather than
 * more calls. Raft tolerates loss, so a full queue or a failed call drops
 * messages and tells the driver the peer is unreachable; the core retries.
 *
 * Every batch carries the cluster id; a batch from another cluster is refused
 * and logged, never delivered.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { maxAppendBytes, maxPeerQueueMessages } from "../common/limits.ts";
import { decodeMessage, encodeMessage } from "../raft/codec.ts";
import { type Message, MessageType } from "../raft/types.ts";
import { loadRustkvdPackage } from "../server/proto.ts";
import type { Logger } from "./logger.ts";

/** What the transport delivers to and asks of its node. */
export interface TransportHost {
  /** This node's id. */
  readonly selfId: string;
  /** The cluster id batches must carry ("" = not known yet: accept any and adopt none). */
  clusterId(): string;
  /** Where a peer listens, or undefined when unknown. */
  addressOf(nodeId: string): string | undefined;
  /** Delivers messages received from peers. */
  deliver(messages: Message[]): void;
  /** A peer could not be reached; the Raft core should back off from it. */
  unreachable(nodeId: string): void;
  /** Streams a snapshot to a peer (Snapshot messages do not travel in batches). */
  sendSnapshot(message: Message): void;
}

/** Counters for status and benchmarks. */
export interface TransportStats {
  batchesSent: number;
  messagesSent: number;
  messagesDropped: number;
  batchesRefused: number;
}

interface RaftBatch {
  cluster_id: string;
  from: string;
  messages: Uint8Array[];
}

interface RaftAck {
  ok: boolean;
  reason: string;
}

type UnaryCall = (
  request: RaftBatch,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, ack?: RaftAck) => void,
) => void;

interface RaftInternalClient extends grpc.Client {
  AppendEntries: UnaryCall;
  RequestVote: UnaryCall;
}

const electionTypes = new Set<MessageType>([
  MessageType.Vote,
  MessageType.VoteResponse,
  MessageType.PreVote,
  MessageType.PreVoteResponse,
  MessageType.TimeoutNow,
  MessageType.TransferLeader,
]);

/** Deadline of one peer call: generous for a 4 MiB batch on loopback, short enough to notice a dead peer. */
const peerCallTimeoutMs = 2_000;

class Lane {
  queue: Uint8Array[] = [];
  queuedBytes = 0;
  inFlight = false;
  constructor(readonly method: "AppendEntries" | "RequestVote") {}
}

class Peer {
  client: RaftInternalClient | undefined;
  address = "";
  readonly election = new Lane("RequestVote");
  readonly replication = new Lane("AppendEntries");
  constructor(readonly id: string) {}
}

/** The client side (sending) and the RaftInternal service implementation (receiving). */
export class GrpcTransport {
  readonly stats: TransportStats = {
    batchesSent: 0,
    messagesSent: 0,
    messagesDropped: 0,
    batchesRefused: 0,
  };
  #peers = new Map<string, Peer>();
  #closed = false;

  constructor(readonly host: TransportHost, readonly log: Logger) {}

  /** Queues messages for their peers and starts a call on every idle lane. */
  send(messages: Message[]): void {
    if (this.#closed) return;
    const touched = new Set<Lane>();
    for (const m of messages) {
      if (m.to === this.host.selfId) continue;
      if (m.type === MessageType.Snapshot) {
        this.host.sendSnapshot(m);
        continue;
      }
      const peer = this.#peer(m.to);
      const lane = electionTypes.has(m.type) ? peer.election : peer.replication;
      if (lane.queue.length >= maxPeerQueueMessages) {
        this.stats.messagesDropped++;
        continue;
      }
      const bytes = encodeMessage(m);
      lane.queue.push(bytes);
      lane.queuedBytes += bytes.length;
      touched.add(lane);
    }
    for (const peer of this.#peers.values()) {
      if (touched.has(peer.election)) this.#pump(peer, peer.election);
      if (touched.has(peer.replication)) this.#pump(peer, peer.replication);
    }
  }

  #peer(id: string): Peer {
    let peer = this.#peers.get(id);
    if (!peer) {
      peer = new Peer(id);
      this.#peers.set(id, peer);
    }
    return peer;
  }

  #clientFor(peer: Peer): RaftInternalClient | undefined {
    const address = this.host.addressOf(peer.id);
    if (!address) return undefined;
    if (peer.client && peer.address === address) return peer.client;
    peer.client?.close();
    const RaftInternal = loadRustkvdPackage()
      .RaftInternal as unknown as grpc.ServiceClientConstructor;
    peer.client = new RaftInternal(address, grpc.credentials.createInsecure(), {
      "grpc.max_send_message_length": maxAppendBytes * 2,
      "grpc.max_receive_message_length": maxAppendBytes * 2,
      "grpc.initial_reconnect_backoff_ms": 50,
      "grpc.max_reconnect_backoff_ms": 1_000,
      "grpc.keepalive_time_ms": 10_000,
    }) as unknown as RaftInternalClient;
    peer.address = address;
    return peer.client;
  }

  #pump(peer: Peer, lane: Lane): void {
    if (lane.inFlight || lane.queue.length === 0 || this.#closed) return;
    const client = this.#clientFor(peer);
    if (!client) {
      this.stats.messagesDropped += lane.queue.length;
      lane.queue = [];
      lane.queuedBytes = 0;
      this.host.unreachable(peer.id);
      return;
    }
    // Take as many queued messages as fit one call.
    let take = 0;
    let bytes = 0;
    while (
      take < lane.queue.length && (take === 0 || bytes + lane.queue[take].length <= maxAppendBytes)
    ) {
      bytes += lane.queue[take].length;
      take++;
    }
    const batch = lane.queue.splice(0, take);
    lane.queuedBytes -= bytes;
    lane.inFlight = true;
    this.stats.batchesSent++;
    this.stats.messagesSent += batch.length;
    const request: RaftBatch = {
      cluster_id: this.host.clusterId(),
      from: this.host.selfId,
      messages: batch,
    };
    client[lane.method](request, { deadline: Date.now() + peerCallTimeoutMs }, (err, ack) => {
      lane.inFlight = false;
      if (this.#closed) return;
      if (err) {
        this.stats.messagesDropped += batch.length;
        this.log.debug("peer call failed", { peer: peer.id, error: err.details ?? err.message });
        this.host.unreachable(peer.id);
      } else if (ack && !ack.ok) {
        this.log.warn("peer refused our messages", { peer: peer.id, reason: ack.reason });
      }
      this.#pump(peer, lane);
    });
  }

  /** Handles one incoming batch: checks the cluster id, decodes, delivers. */
  receive(batch: RaftBatch): RaftAck {
    const ours = this.host.clusterId();
    if (ours !== "" && batch.cluster_id !== ours) {
      this.stats.batchesRefused++;
      this.log.warn("refused messages from another cluster", {
        from: batch.from,
        theirCluster: batch.cluster_id,
        ourCluster: ours,
      });
      return { ok: false, reason: `cluster id mismatch: this node belongs to cluster ${ours}` };
    }
    const messages: Message[] = [];
    for (const bytes of batch.messages ?? []) {
      try {
        const m = decodeMessage(bytes);
        if (m.to !== this.host.selfId) {
          return { ok: false, reason: `message for ${m.to} delivered to ${this.host.selfId}` };
        }
        messages.push(m);
      } catch (e) {
        this.stats.batchesRefused++;
        this.log.warn("refused a malformed raft message", {
          from: batch.from,
          error: (e as Error).message,
        });
        return { ok: false, reason: `malformed raft message: ${(e as Error).message}` };
      }
    }
    if (messages.length > 0) this.host.deliver(messages);
    return { ok: true, reason: "" };
  }

  /** Unary handlers for AppendEntries and RequestVote (InstallSnapshot is added by the snapshot code). */
  unaryHandlers(): Record<string, grpc.handleUnaryCall<RaftBatch, RaftAck>> {
    const handle: grpc.handleUnaryCall<RaftBatch, RaftAck> = (call, callback) => {
      callback(null, this.receive(call.request));
    };
    return { AppendEntries: handle, RequestVote: handle };
  }

  /** Drops a peer's connection (it was removed from the cluster). */
  forget(nodeId: string): void {
    this.#peers.get(nodeId)?.client?.close();
    this.#peers.delete(nodeId);
  }

  /** Closes every connection; queued messages are dropped. */
  close(): void {
    this.#closed = true;
    for (const peer of this.#peers.values()) peer.client?.close();
    this.#peers.clear();
  }
}
