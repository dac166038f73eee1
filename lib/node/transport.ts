/**
 * Node-to-node Raft traffic over the native peer channel (lib/node/peer_frame.ts).
 *
 * Each node keeps one outgoing TCP connection per peer and sends on it only;
 * replies come back on the peer's own outgoing connection (like etcd's
 * stream transport), so neither side ever waits for the other. Messages
 * queued in one turn of the event loop leave as one frame with one write:
 * load turns into bigger frames, not more packets. Raft tolerates loss, so a
 * full queue, a refused or broken connection drops messages and tells the
 * driver the peer is unreachable; the core retries, and the channel
 * reconnects with backoff.
 *
 * The first frame on a connection names the sender and its cluster id; a
 * connection from another cluster is refused (with a reason) and logged.
 *
 * @module
 */

import { splitHostPort } from "../common/host_port.ts";
import net from "node:net";
import { maxAppendBytes, maxPeerQueueMessages, snapshotIdleTimeoutMs } from "../common/limits.ts";
import { concatBytes } from "../common/bytes.ts";
import { decodeMessage, encodeMessage } from "../raft/codec.ts";
import { type Message, MessageType } from "../raft/types.ts";
import type { Logger } from "./logger.ts";
import {
  encodeConnectionPreamble,
  encodeFrame,
  type PeerFrame,
  PeerFrameDecoder,
  PeerFrameKind,
} from "./peer_frame.ts";

/** What the transport delivers to and asks of its node. */
export interface TransportHost {
  /** This node's id. */
  readonly selfId: string;
  /** The cluster id peers must present ("" = not known yet: accept any). */
  clusterId(): string;
  /** How long this node ignores votes after hearing from its leader, announced in its Hello. */
  voteQuietMs(): number;
  /** A peer's Hello announced how long it ignores votes (lib/node/read_lease.ts). */
  peerVoteQuiet(nodeId: string, voteQuietMs: number): void;
  /** Where a peer listens, or undefined when unknown. */
  addressOf(nodeId: string): string | undefined;
  /** Delivers messages received from peers. */
  deliver(messages: Message[]): void;
  /** A peer could not be reached; the Raft core should back off from it. */
  unreachable(nodeId: string): void;
  /** Streams a snapshot to a peer (Snapshot messages do not travel in batches). */
  sendSnapshot(message: Message): void;
  /** Serves an incoming snapshot stream (the frames after its hello). */
  receiveSnapshot(
    from: string,
    frames: AsyncIterableIterator<PeerFrame>,
    reply: (f: PeerFrame) => void,
  ): Promise<void>;
}

/**
 * Flow control of a FrameQueue: `pause` once it holds `high` frames, and
 * `resume` when its consumer has taken it down to `low`, so that a fast
 * sender is held back by TCP (or HTTP/2) flow control instead of filling
 * memory with a snapshot the disk has not staged yet.
 */
export interface FrameQueueFlow {
  high: number;
  low: number;
  pause(): void;
  resume(): void;
}

/** Frames of one snapshot stream held before the receiver stops reading (about 8 MiB). */
export const snapshotQueueHighFrames = 8;

/** Frames pushed by a connection and pulled by an async consumer. */
export class FrameQueue implements AsyncIterableIterator<PeerFrame> {
  #items: PeerFrame[] = [];
  #ended = false;
  #wake: (() => void) | undefined;
  #paused = false;

  constructor(readonly flow?: FrameQueueFlow) {}

  push(f: PeerFrame): void {
    this.#items.push(f);
    this.#wake?.();
    if (this.flow && !this.#paused && this.#items.length >= this.flow.high) {
      this.#paused = true;
      this.flow.pause();
    }
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  async next(): Promise<IteratorResult<PeerFrame>> {
    while (this.#items.length === 0 && !this.#ended) {
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
    const f = this.#items.shift();
    if (this.flow && this.#paused && this.#items.length <= this.flow.low) {
      this.#paused = false;
      this.flow.resume();
    }
    return f ? { value: f, done: false } : { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<PeerFrame> {
    return this;
  }
}

/** Counters for status and benchmarks. */
export interface TransportStats {
  framesSent: number;
  messagesSent: number;
  messagesDropped: number;
  connectionsRefused: number;
  messagesReceived: number;
}

/** Socket bytes buffered towards a peer beyond which new messages are dropped. */
const maxBufferedBytesPerPeer = 16 * 1024 * 1024;
const initialBackoffMs = 25;
const maxBackoffMs = 1_000;

class PeerLink {
  socket: net.Socket | undefined;
  connected = false;
  address = "";
  queue: Uint8Array[] = [];
  queuedBytes = 0;
  flushScheduled = false;
  backoffMs = initialBackoffMs;
  nextAttemptMs = 0;
  /** An empty batch is owed to the peer so that it hears from us (keep-alive). */
  pingPending = false;
  /** When the oldest unanswered heartbeat went out (0: none), for the round-trip time. */
  heartbeatSentMs = 0;
  /** When the current connection was made (0: not connected). */
  connectedAtMs = 0;
  constructor(readonly id: string) {}
}

/**
 * A connection that lasted this long resets its link's backoff when it ends;
 * a shorter one (a peer that accepts, then refuses or closes) keeps doubling
 * it, instead of being redialled every 25 ms.
 */
const stableConnectionMs = 1_000;
/** A peer connection that sends nothing this long is dropped (peers ping every 250 ms). */
const peerIdleTimeoutMs = 10_000;
/** How long a snapshot sender may go on after its receiver answered and half-closed. */
const snapshotSenderGraceMs = 5_000;
/** An inbound connection silent this long when its peer dials again is taken for dead. */
const deadInboundSilenceMs = 1_000;

/** Sends Raft messages to peers and accepts their connections. */
export class PeerTransport {
  readonly stats: TransportStats = {
    framesSent: 0,
    messagesSent: 0,
    messagesDropped: 0,
    connectionsRefused: 0,
    messagesReceived: 0,
  };
  #links = new Map<string, PeerLink>();
  /** When each peer was last heard from (any accepted batch, keep-alives included). */
  #heardAtMs = new Map<string, number>();
  /** The last heartbeat round trip to each peer (measured on the leader). */
  #rttMs = new Map<string, number>();
  #incoming = new Set<net.Socket>();
  #closed = false;

  constructor(readonly host: TransportHost, readonly log: Logger) {}

  /** Queues messages for their peers; each peer's queue is flushed once per turn. */
  send(messages: Message[]): void {
    if (this.#closed) return;
    for (const m of messages) {
      if (m.to === this.host.selfId) continue;
      if (m.type === MessageType.Snapshot) {
        this.host.sendSnapshot(m);
        continue;
      }
      const link = this.#link(m.to);
      if (m.type === MessageType.Heartbeat && link.heartbeatSentMs === 0) {
        link.heartbeatSentMs = Date.now();
      }
      if (link.queue.length >= maxPeerQueueMessages) {
        this.stats.messagesDropped++;
        continue;
      }
      const bytes = encodeMessage(m);
      link.queue.push(bytes);
      link.queuedBytes += bytes.length;
      if (!link.flushScheduled) {
        link.flushScheduled = true;
        queueMicrotask(() => this.#flush(link));
      }
    }
  }

  /** Sends `id` an empty batch so it hears from us even when Raft has nothing to say to it. */
  ping(id: string): void {
    if (this.#closed || id === this.host.selfId) return;
    const link = this.#link(id);
    link.pingPending = true;
    if (!link.flushScheduled) {
      link.flushScheduled = true;
      queueMicrotask(() => this.#flush(link));
    }
  }

  /** What this node has heard of `id`: how long ago, and the last heartbeat round trip. */
  peerHealth(id: string): { silentMs: number | undefined; rttMs: number | undefined } {
    const heard = this.#heardAtMs.get(id);
    return {
      silentMs: heard === undefined ? undefined : Math.max(0, Date.now() - heard),
      rttMs: this.#rttMs.get(id),
    };
  }

  #link(id: string): PeerLink {
    let link = this.#links.get(id);
    if (!link) {
      link = new PeerLink(id);
      this.#links.set(id, link);
    }
    return link;
  }

  #drop(link: PeerLink): void {
    link.heartbeatSentMs = 0; // a dropped heartbeat is never answered: no round trip from it
    if (link.queue.length === 0) return;
    this.stats.messagesDropped += link.queue.length;
    link.queue = [];
    link.queuedBytes = 0;
    this.host.unreachable(link.id);
  }

  #flush(link: PeerLink): void {
    link.flushScheduled = false;
    const ping = link.pingPending;
    link.pingPending = false;
    if (this.#closed || (link.queue.length === 0 && !ping)) return;
    const address = this.host.addressOf(link.id);
    if (!address) {
      this.#drop(link);
      return;
    }
    if (link.socket && link.address !== address) this.#disconnect(link, "address changed");
    if (!link.socket) {
      if (Date.now() < link.nextAttemptMs) {
        this.#drop(link);
        return;
      }
      this.#connect(link, address);
    }
    if (!link.connected) return; // flushed once connected
    const socket = link.socket!;
    if (socket.writableLength > maxBufferedBytesPerPeer) {
      this.#drop(link);
      return;
    }
    // One frame per maxAppendBytes of messages; all frames in one write.
    const frames: Uint8Array[] = [];
    let batch: Uint8Array[] = [];
    let bytes = 0;
    for (const m of link.queue) {
      if (batch.length > 0 && bytes + m.length > maxAppendBytes) {
        frames.push(encodeFrame({ kind: PeerFrameKind.Batch, messages: batch }));
        batch = [];
        bytes = 0;
      }
      batch.push(m);
      bytes += m.length;
    }
    if (batch.length > 0 || frames.length === 0) {
      frames.push(encodeFrame({ kind: PeerFrameKind.Batch, messages: batch }));
    }
    this.stats.messagesSent += link.queue.length;
    this.stats.framesSent += frames.length;
    link.queue = [];
    link.queuedBytes = 0;
    socket.write(frames.length === 1 ? frames[0] : concatBytes(...frames));
  }

  #connect(link: PeerLink, address: string): void {
    const { host, port } = splitHostPort(address);
    const socket = net.connect({ host, port });
    link.socket = socket;
    link.address = address;
    link.connected = false;
    socket.setNoDelay(true);
    const decoder = new PeerFrameDecoder(false);
    socket.on("connect", () => {
      if (link.socket !== socket) return;
      socket.write(
        encodeConnectionPreamble(this.host.clusterId(), this.host.selfId, this.host.voteQuietMs()),
      );
      link.connected = true;
      link.connectedAtMs = Date.now();
      this.log.debug("peer connected", { peer: link.id, addr: address });
      this.#flush(link);
    });
    socket.on("data", (chunk: Uint8Array) => {
      try {
        for (const f of decoder.push(chunk)) {
          if (f.kind === PeerFrameKind.Refuse) {
            this.log.warn("peer refused our connection", { peer: link.id, reason: f.reason });
            this.#disconnect(link, f.reason);
          }
        }
      } catch (e) {
        this.#disconnect(link, (e as Error).message);
      }
    });
    socket.on("error", (e: Error) => {
      this.log.debug("peer connection error", { peer: link.id, error: e.message });
    });
    socket.on("close", () => {
      if (link.socket === socket) this.#disconnect(link, "closed");
    });
  }

  #disconnect(link: PeerLink, reason: string): void {
    const socket = link.socket;
    link.socket = undefined;
    link.connected = false;
    if (link.connectedAtMs !== 0 && Date.now() - link.connectedAtMs >= stableConnectionMs) {
      link.backoffMs = initialBackoffMs;
    }
    link.connectedAtMs = 0;
    link.nextAttemptMs = Date.now() + link.backoffMs;
    link.backoffMs = Math.min(maxBackoffMs, link.backoffMs * 2);
    socket?.destroy();
    this.log.debug("peer disconnected", { peer: link.id, reason });
    this.#drop(link);
  }

  /**
   * Takes over an accepted connection whose first bytes are the peer magic.
   * `firstChunk` holds the bytes already read while sniffing.
   */
  acceptPeer(socket: net.Socket, firstChunk: Uint8Array): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    this.#incoming.add(socket);
    socket.setNoDelay(true);
    // A peer sends a Hello at once and pings every 250 ms: silence means it is gone (or was
    // never a peer); a snapshot stream sets its own, longer limit below.
    socket.setTimeout(peerIdleTimeoutMs, () => socket.destroy());
    const decoder = new PeerFrameDecoder(true);
    let from = "";
    const refuse = (reason: string) => {
      this.stats.connectionsRefused++;
      this.log.warn("refused a peer connection", { from: from || "unknown", reason });
      socket.end(encodeFrame({ kind: PeerFrameKind.Refuse, reason }));
      socket.destroy();
    };
    let clusterId = "";
    let snapshotFrames: FrameQueue | undefined;
    const onFrames = (frames: PeerFrame[]) => {
      for (const f of frames) {
        if (snapshotFrames) {
          snapshotFrames.push(f);
          continue;
        }
        if (f.kind === PeerFrameKind.Hello) {
          from = f.from;
          clusterId = f.clusterId;
          const problem = this.#checkCluster(clusterId);
          if (problem) return refuse(problem);
          if (f.voteQuietMs !== undefined) {
            this.host.peerVoteQuiet(from, f.voteQuietMs);
            this.#newInboundFrom(from, socket); // snapshot connections carry no voteQuietMs
          }
        } else if (from === "") {
          return refuse("traffic before the hello frame");
        } else if (f.kind === PeerFrameKind.Batch) {
          const problem = this.receiveBatch(clusterId, from, f.messages);
          if (problem) return refuse(problem);
        } else if (f.kind === PeerFrameKind.SnapshotBegin) {
          // Not read further while the staging falls behind: TCP holds the sender back.
          const queue = new FrameQueue({
            high: snapshotQueueHighFrames,
            low: 2,
            pause: () => socket.pause(),
            resume: () => {
              socket.resume();
              socket.setTimeout(snapshotIdleTimeoutMs); // the pause was ours, not the sender's
            },
          });
          snapshotFrames = queue;
          queue.push(f);
          socket.on("close", () => queue.end());
          // A sender that vanished without a reset would hold this socket forever.
          socket.setTimeout(snapshotIdleTimeoutMs, () => socket.destroy());
          this.host.receiveSnapshot(from, queue, (reply) => {
            if (!socket.destroyed) socket.write(encodeFrame(reply));
          }).finally(() => {
            // A receive that ended early may have paused the socket: it must see the FIN.
            socket.resume();
            socket.end();
            // A sender still streaming after a refusal (it reads acknowledgements only at the
            // end) is cut off, so that it learns at once instead of after its idle timeout.
            const cut = setTimeout(() => socket.destroy(), snapshotSenderGraceMs);
            socket.once("close", () => clearTimeout(cut));
          });
        } else {
          return refuse(`unexpected frame kind ${f.kind}`);
        }
      }
    };
    const onData = (chunk: Uint8Array) => {
      this.#lastDataMs.set(socket, Date.now());
      try {
        onFrames(decoder.push(chunk));
      } catch (e) {
        refuse(`malformed peer traffic: ${(e as Error).message}`);
      }
    };
    socket.on("data", onData);
    socket.on("error", () => {});
    socket.on("close", () => {
      this.#incoming.delete(socket);
      if (this.#inboundFrom.get(from) === socket) this.#inboundFrom.delete(from);
    });
    onData(firstChunk);
  }

  /** Each peer's current incoming Raft connection. */
  #inboundFrom = new Map<string, net.Socket>();
  /** When each incoming connection last delivered bytes. */
  #lastDataMs = new WeakMap<net.Socket, number>();

  /**
   * A peer dialled us again while its earlier connection still looks open
   * to us: that one is dead without a reset (its host crashed or a middlebox
   * lost it), and our own connection to the peer, made as long ago, likely
   * is too; writes on it would wait for TCP to give up (minutes). Both are
   * dropped, and ours is dialled again on the next send.
   */
  #newInboundFrom(from: string, socket: net.Socket): void {
    const earlier = this.#inboundFrom.get(from);
    this.#inboundFrom.set(from, socket);
    if (
      earlier === undefined || earlier === socket || earlier.destroyed || earlier.readableEnded
    ) {
      return;
    }
    earlier.destroy();
    // An ordinary reconnect whose Hello overtook the old connection's close finds that one
    // busy until just now; a dead one has been silent through several keep-alives.
    const silentMs = Date.now() - (this.#lastDataMs.get(earlier) ?? 0);
    if (silentMs < deadInboundSilenceMs) return;
    const link = this.#links.get(from);
    if (link?.socket) {
      this.log.info("peer reconnected while its old connection looked open; redialling it", {
        peer: from,
      });
      this.#disconnect(link, "the peer reconnected");
      link.nextAttemptMs = 0; // at once, no backoff
    }
  }

  #checkCluster(clusterId: string): string | undefined {
    const ours = this.host.clusterId();
    if (ours !== "" && clusterId !== ours) {
      return `cluster id mismatch: ${this.host.selfId} belongs to cluster ${ours}, not ${clusterId}`;
    }
    return undefined;
  }

  /**
   * Serves a snapshot stream that arrived another way (gRPC InstallSnapshot):
   * the same cluster-id check as a native connection, then the receiver.
   * Returns the refusal reason, or undefined once the stream was served.
   */
  async receiveSnapshotStream(
    clusterId: string,
    from: string,
    frames: AsyncIterableIterator<PeerFrame>,
    reply: (f: PeerFrame) => void,
  ): Promise<string | undefined> {
    const problem = this.#checkCluster(clusterId);
    if (problem) {
      this.stats.connectionsRefused++;
      this.log.warn("refused a snapshot from another cluster", { from, theirCluster: clusterId });
      return problem;
    }
    await this.host.receiveSnapshot(from, frames, reply);
    return undefined;
  }

  /** Why a peer of cluster `clusterId` must be refused, or undefined. */
  checkClusterOf(clusterId: string): string | undefined {
    return this.#checkCluster(clusterId);
  }

  /**
   * Checks and delivers one batch of encoded messages (from the native
   * channel or the RaftInternal gRPC service). Returns why it was refused,
   * or undefined when delivered.
   */
  receiveBatch(clusterId: string, from: string, encoded: Uint8Array[]): string | undefined {
    const problem = this.#checkCluster(clusterId);
    if (problem) {
      this.stats.connectionsRefused++;
      this.log.warn("refused messages from another cluster", { from, theirCluster: clusterId });
      return problem;
    }
    const messages: Message[] = [];
    for (const bytes of encoded) {
      let m: Message;
      try {
        m = decodeMessage(bytes);
      } catch (e) {
        return `malformed raft message from ${from}: ${(e as Error).message}`;
      }
      if (m.to !== this.host.selfId) return `message for ${m.to} delivered to ${this.host.selfId}`;
      if (m.from !== from) return `message from ${m.from} on ${from}'s connection`;
      messages.push(m);
    }
    const now = Date.now();
    this.#heardAtMs.set(from, now);
    for (const m of messages) {
      if (m.type !== MessageType.HeartbeatResponse) continue;
      const link = this.#links.get(from);
      if (link && link.heartbeatSentMs !== 0) {
        this.#rttMs.set(from, now - link.heartbeatSentMs);
        link.heartbeatSentMs = 0;
      }
    }
    this.stats.messagesReceived += messages.length;
    if (messages.length > 0) this.host.deliver(messages);
    return undefined;
  }

  /** Drops a peer's connection (it was removed from the cluster). */
  forget(nodeId: string): void {
    const link = this.#links.get(nodeId);
    if (link) this.#disconnect(link, "forgotten");
    this.#links.delete(nodeId);
  }

  /** Closes every connection; queued messages are dropped. */
  close(): void {
    this.#closed = true;
    for (const link of this.#links.values()) link.socket?.destroy();
    this.#links.clear();
    for (const s of this.#incoming) s.destroy();
    this.#incoming.clear();
  }
}
