/**
 * The gRPC front end of a node: KVStore (the client API), Admin and
 * RaftInternal on one listening address. Handlers only translate: they
 * decode a request, call the KVNode, and encode the answer; every error goes
 * through lib/server/status.ts.
 *
 * @module
 */

import type { ServiceDefinition } from "@grpc/proto-loader";
import { maxGrpcMessageBytes } from "../common/limits.ts";
import type { KVNode, NodeStatusInfo, ReadConsistency } from "../node/kv_node.ts";
import type { MemberRecord } from "../node/state_machine.ts";
import type { JoinResult } from "../node/membership.ts";
import type { Watcher } from "../node/watch_hub.ts";
import { loadRustkvdDefinition } from "./proto.ts";
import { leaderAddrKey, toGrpcError } from "./status.ts";
import {
  type GrpcCall,
  type GrpcMethod,
  type GrpcOutcome,
  GrpcRouter,
  type MethodCodec,
  type ServerStream,
} from "./h2/grpc.ts";
import {
  decodeGetRequest,
  decodePutRequest,
  encodeGetResponse,
  encodePutResponse,
} from "./kv_codec.ts";
import { H2ServerConnection } from "./h2/connection.ts";
import { outcomeToWire, txnFromWire } from "./txn_wire.ts";
import { keyValueToWire } from "./key_value_wire.ts";
import { FrameQueue, snapshotQueueHighFrames } from "../node/transport.ts";
import { type PeerFrame, PeerFrameKind } from "../node/peer_frame.ts";
import { decodeMessage } from "../raft/codec.ts";
import { listen } from "./listener.ts";
import { KVError } from "../common/errors.ts";
import { emptyBytes } from "../common/bytes.ts";
import { rustkvdVersion } from "../common/version.ts";

// deno-lint-ignore no-explicit-any
type Req = any;

function consistencyOf(c: string | undefined): ReadConsistency {
  return c === "SERIALIZABLE" ? "serializable" : "linearizable";
}

/** A unary call as the handlers below see it. */
interface UnaryCall {
  request: Req;
  remainingMs(): number | undefined;
  /** Adds trailing metadata to a successful reply. */
  setTrailer(name: string, value: string): void;
}

/** The handlers of one service, by method name. */
type ServiceHandlers = Record<string, GrpcMethod>;

function unary(fn: (call: UnaryCall) => Promise<Req>): GrpcMethod {
  return {
    kind: "unary",
    handle: (request: Req, call: GrpcCall) =>
      fn({
        request,
        remainingMs: () => call.remainingMs(),
        setTrailer: (name, value) => (call.trailers ??= {})[name] = value,
      }),
  };
}

/** Builds the service implementations bound to `node`. */
export function kvStoreHandlers(node: KVNode): ServiceHandlers {
  return {
    Get: unary(async (call) => {
      const r = call.request;
      const res = await node.get(r.key, {
        version: r.version,
        consistency: consistencyOf(r.consistency),
        timeoutMs: call.remainingMs(),
      });
      // A follower confirms a linearizable read with the leader; the leader answers it
      // from its lease. Tell the client where the leader is for its next reads.
      if (consistencyOf(r.consistency) === "linearizable" && !r.version && !node.replica.isLeader) {
        const leader = node.replica.leaderAddr();
        if (leader !== undefined) call.setTrailer(leaderAddrKey, leader);
      }
      return {
        found: res.kv !== undefined,
        value: res.kv?.value ?? emptyBytes,
        version: res.kv?.version ?? 0,
        revision: res.revision,
        expires_at_ms: res.kv?.expiresAtMs ?? 0,
      };
    }),
    Put: unary(async (call) => {
      const r = call.request;
      const res = await node.put(r.key, r.value, {
        ttlSecs: r.ttl_secs,
        ifVersion: r.if_version ?? undefined,
        prevKv: r.prev_kv,
        requestId: r.request_id,
        timeoutMs: call.remainingMs(),
      });
      return {
        version: res.version,
        prev: keyValueToWire(res.prev),
        has_prev: res.prev !== undefined,
      };
    }),
    Delete: unary(async (call) => {
      const r = call.request;
      const res = await node.delete(r.key, {
        ifVersion: r.if_version ?? undefined,
        prevKv: r.prev_kv,
        requestId: r.request_id,
        timeoutMs: call.remainingMs(),
      });
      return {
        version: res.version,
        deleted: res.deleted,
        prev: keyValueToWire(res.prev),
        has_prev: res.prev !== undefined,
      };
    }),
    Scan: unary(async (call) => {
      const r = call.request;
      const res = await node.scan({
        prefix: r.prefix,
        start: r.start,
        end: r.end,
        limit: r.limit,
        version: r.version,
        keysOnly: r.keys_only,
        consistency: consistencyOf(r.consistency),
        timeoutMs: call.remainingMs(),
      });
      return {
        kvs: res.kvs.map((kv) => keyValueToWire(kv, r.keys_only)),
        more: res.more,
        version: res.version,
      };
    }),
    Txn: unary(async (call) => {
      const r = call.request;
      const outcome = await node.txn(txnFromWire(r), {
        requestId: r.request_id,
        timeoutMs: call.remainingMs(),
      });
      return outcomeToWire(outcome);
    }),
    NodeStatus: unary(() => {
      const s = node.status();
      return Promise.resolve({
        node_id: s.nodeId,
        role: s.role,
        term: s.term,
        leader_id: s.leaderId,
        leader_addr: s.leaderAddr,
        commit_index: s.commitIndex,
        applied_index: s.appliedIndex,
        revision: s.revision,
        compacted_revision: s.compactedRevision,
        members: s.members.map(memberStatusWire),
        cluster_id: s.clusterId,
        version: rustkvdVersion,
        fsync_mode: "fsync",
        resp_addr: s.respAddr,
      });
    }),
    Watch: {
      kind: "serverStream",
      handle: (r: Req, stream: ServerStream) => watch(node, r, stream),
    },
  };
}

/** Watch: CREATED, then the events, then CANCELED if the server ended the watch. */
function watch(node: KVNode, r: Req, stream: ServerStream): void {
  let watcher: Watcher;
  try {
    watcher = node.watch({
      key: r.key,
      prefix: r.prefix,
      startVersion: r.start_version,
      prevKv: r.prev_kv,
    });
  } catch (e) {
    stream.fail(e);
    return;
  }
  stream.call.onCancel(() => watcher.return());
  // CREATED carries the last version before the first event this watch delivers.
  stream.write({ type: "CREATED", version: watcher.lastVersion });
  (async () => {
    for await (const e of watcher) {
      const more = stream.write({
        type: e.type === "put" ? "PUT" : "DELETE",
        kv: keyValueToWire(e.kv),
        prev_kv: keyValueToWire(e.prev),
        has_prev: e.prev !== undefined,
        version: e.kv.version,
      });
      if (!more) await stream.drained();
      if (stream.call.cancelled) return;
    }
    const c = watcher.cancel;
    if (c && !stream.call.cancelled && c.reason !== "closed by the client") {
      stream.write({
        type: "CANCELED",
        cancel_reason: c.reason,
        version: c.lastVersion,
        compacted_version: c.compactedVersion ?? 0,
      });
    }
    stream.end();
  })().catch((e) => stream.fail(e));
}

/** A running front end: the listening port and how to stop it. */
export interface RunningGrpcServer {
  port: number;
  close(): Promise<void>;
}

/** How long a closing server lets calls in flight finish before it drops their connections. */
const shutdownGraceMs = 500;

/** A thrown value as the status, message and metadata a call ends with. */
function outcomeOf(e: unknown): GrpcOutcome {
  const wire = toGrpcError(e);
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(wire.metadata?.getMap() ?? {})) metadata[k] = String(v);
  return { code: wire.code ?? 13, details: wire.details ?? wire.message, metadata };
}

/** Hand-written codecs of the hottest calls (lib/server/kv_codec.ts), by method path. */
const fastCodecs: Record<string, MethodCodec> = {
  "/rustkvd.KVStore/Put": { decode: decodePutRequest, encode: encodePutResponse },
  "/rustkvd.KVStore/Get": { decode: decodeGetRequest, encode: encodeGetResponse },
};

/** Registers every method of `service` (a proto-loader service definition) with `router`. */
function addService(
  router: GrpcRouter,
  service: ServiceDefinition,
  handlers: ServiceHandlers,
): void {
  for (const [name, def] of Object.entries(service)) {
    const method = handlers[name];
    if (!method) continue; // answered UNIMPLEMENTED by the router
    router.add(
      def.path,
      fastCodecs[def.path] ?? {
        decode: (bytes) => def.requestDeserialize(bytes as Buffer),
        encode: (message) => def.responseSerialize(message),
      },
      method,
    );
  }
}

/**
 * Starts the node's front end on `addr` (host:port; port 0 picks one): one
 * TCP listener whose HTTP/2 connections carry the KVStore, Admin and
 * RaftInternal services (served by lib/server/h2, not node:http2) and whose
 * peer connections go to the Raft transport.
 */
export async function startGrpcServer(
  node: KVNode,
  addr: string,
  /** The listener stopped accepting (see listen): the node cannot be reached any more. */
  onStuck: (reason: string) => void = () => {},
): Promise<RunningGrpcServer> {
  const definition = loadRustkvdDefinition();
  const service = (name: string) => definition[`rustkvd.${name}`] as ServiceDefinition;
  const router = new GrpcRouter(maxGrpcMessageBytes, outcomeOf);
  addService(router, service("KVStore"), kvStoreHandlers(node));
  addService(router, service("RaftInternal"), raftInternalHandlers(node));
  addService(router, service("Admin"), adminHandlers(node));
  const connections = new Set<H2ServerConnection>();
  const listener = await listen(addr, node.transport, (socket, head) => {
    const connection = new H2ServerConnection(socket, (stream) => router.serve(stream), head);
    connections.add(connection);
    socket.on("close", () => connections.delete(connection));
  }, onStuck);
  return {
    port: listener.port,
    close: async () => {
      // No new connections; GOAWAY on those open, so calls in flight can finish (bounded);
      // then drop everything.
      listener.stopAccepting();
      for (const c of connections) c.close();
      const deadline = Date.now() + shutdownGraceMs;
      while ([...connections].some((c) => c.activeStreams > 0) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await listener.close();
      for (const c of connections) c.destroy();
      connections.clear();
    },
  };
}

/** One member as NodeStatus and MemberList report it. */
function memberStatusWire(m: NodeStatusInfo["members"][number]) {
  return {
    id: m.id,
    addr: m.addr,
    role: m.role,
    health: m.health,
    last_heard_ms_ago: m.lastHeardMsAgo,
    match_index: m.matchIndex,
    ring_share: m.ringShare,
    rtt_ms: m.rttMs,
  };
}

function memberList(node: KVNode) {
  const s = node.status();
  return {
    leader_id: s.leaderId,
    members: s.members.map(memberStatusWire),
  };
}

/** The wire form of a member list (JoinResponse and MemberListResponse share it). */
function membersWire(members: MemberRecord[]) {
  return members.map((m) => ({ id: m.id, addr: m.addr, role: m.learner ? "learner" : "voter" }));
}

/** Cluster administration: member list, join, add, remove, leadership transfer, compaction. */
function adminHandlers(node: KVNode): ServiceHandlers {
  const listAfter = async (change: Promise<JoinResult>) => {
    await change;
    return memberList(node);
  };
  return {
    MemberList: unary(() => Promise.resolve(memberList(node))),
    Compact: unary(async (call) => ({
      compacted_version: await node.compact(call.request.version, call.remainingMs()),
    })),
    TransferLeader: unary(async (call) => ({
      leader_id: await node.transferLeader(call.request.id, call.remainingMs()),
    })),
    MemberAdd: unary((call) => {
      if (call.request.learner) {
        return Promise.reject(
          new KVError(
            "InvalidArgument",
            "permanent learners are not offered: a new member is a learner until it catches up, then a voter",
          ),
        );
      }
      return listAfter(node.addMember(call.request.id, call.request.addr, call.remainingMs()));
    }),
    MemberRemove: unary((call) =>
      listAfter(node.removeMember(call.request.id, call.remainingMs()))
    ),
    Join: unary(async (call) => {
      const r = call.request;
      const joined = await node.join(r.id, r.addr, r.cluster_id, call.remainingMs());
      return { cluster_id: joined.clusterId, members: membersWire(joined.members) };
    }),
  };
}

/**
 * A FrameQueue its producer awaits (`room()`) once it holds a few frames:
 * chunks are then pulled from the call only while the staging keeps up, and
 * HTTP/2 flow control holds the sender back instead of this node buffering
 * the whole snapshot.
 */
class GatedFrameQueue extends FrameQueue {
  #room: Promise<void> | undefined;
  #open = () => {};

  constructor() {
    super({
      high: snapshotQueueHighFrames,
      low: 2,
      pause: () => (this.#room = new Promise((r) => (this.#open = r))),
      resume: () => {
        this.#room = undefined;
        this.#open();
      },
    });
  }

  #released = false;

  /** Resolves once the queue has room again (at once when it has, or once released). */
  room(): Promise<void> {
    return this.#released ? Promise.resolve() : this.#room ?? Promise.resolve();
  }

  /** The consumer is done: the producer is never held again (it drains the call). */
  release(): void {
    this.#released = true;
    this.#open();
  }
}

/**
 * InstallSnapshot: the chunks become the native channel's snapshot frames
 * and go to the same receiver. A probe is answered from what is staged; a
 * stream is answered with the receiver's last acknowledgement.
 */
async function installSnapshot(
  node: KVNode,
  chunks: AsyncIterable<Req>,
): Promise<Req> {
  const frames = new GatedFrameQueue();
  let first: Req | undefined;
  let failure: Error | undefined;
  const onChunk = (c: Req) => {
    if (failure) return;
    try {
      if (first === undefined) {
        first = c;
        frames.push({
          kind: PeerFrameKind.SnapshotBegin,
          message: c.message ?? emptyBytes,
          revision: Number(c.revision ?? 0),
        });
      }
      if (c.data && c.data.length > 0) {
        frames.push({
          kind: PeerFrameKind.SnapshotData,
          firstRecord: Number(c.first_record ?? 0),
          count: c.record_count ?? 0,
          crc32: c.crc32 ?? 0,
          records: c.data,
        });
      }
      if (c.last) {
        frames.push({
          kind: PeerFrameKind.SnapshotEnd,
          totalRecords: Number(c.total_records ?? 0),
        });
      }
    } catch (e) {
      failure = e as Error;
    }
  };
  (async () => {
    for await (const c of chunks) {
      onChunk(c);
      await frames.room();
    }
  })().finally(() => frames.end());
  try {
    return await answerSnapshotCall(node, frames, () => first, () => failure);
  } finally {
    frames.release();
  }
}

/** Answers one InstallSnapshot call from its frames: a probe, or a stream for the receiver. */
async function answerSnapshotCall(
  node: KVNode,
  frames: GatedFrameQueue,
  firstChunk: () => Req | undefined,
  failed: () => Error | undefined,
): Promise<Req> {
  const begin = await frames.next();
  const first = firstChunk();
  if (begin.done || first === undefined) {
    throw new KVError("InvalidArgument", "an InstallSnapshot call needs a first chunk");
  }
  if (first.probe) {
    const problem = node.transport.checkClusterOf(first.cluster_id ?? "");
    if (problem) return { ok: false, records_held: 0, reason: problem };
    let m;
    try {
      m = decodeMessage(first.message ?? emptyBytes);
    } catch (e) {
      throw new KVError("InvalidArgument", `bad snapshot message: ${(e as Error).message}`);
    }
    const meta = m.snapshot?.meta;
    if (!meta) throw new KVError("InvalidArgument", "the first chunk holds no snapshot message");
    return {
      ok: true,
      records_held: node.snapshotReceiver.recordsHeld(meta.index, meta.term, m.from),
      reason: "",
    };
  }
  let last: Req = { ok: false, records_held: 0, reason: "no acknowledgement" };
  const problem = await node.transport.receiveSnapshotStream(
    first.cluster_id ?? "",
    first.from ?? "",
    startingWith(begin.value, frames), // the receiver reads the stream from its begin frame
    (f) => {
      if (f.kind === PeerFrameKind.SnapshotAck) {
        last = { ok: f.ok, records_held: f.recordsHeld, reason: f.reason };
      }
    },
  );
  if (problem) return { ok: false, records_held: 0, reason: problem };
  const failure = failed();
  if (failure) return { ok: false, records_held: 0, reason: failure.message };
  return last;
}

/** `first`, then what `rest` yields. */
async function* startingWith(
  first: PeerFrame,
  rest: AsyncIterable<PeerFrame>,
): AsyncIterableIterator<PeerFrame> {
  yield first;
  yield* rest;
}

/**
 * RaftInternal over gRPC, for tools and other implementations: batches go
 * through the same cluster-id check and decoding as the native channel.
 */
function raftInternalHandlers(node: KVNode): ServiceHandlers {
  const batch = unary(({ request: r }) => {
    const problem = node.transport.receiveBatch(r.cluster_id, r.from, r.messages ?? []);
    return Promise.resolve({ ok: problem === undefined, reason: problem ?? "" });
  });
  return {
    AppendEntries: batch,
    RequestVote: batch,
    InstallSnapshot: {
      kind: "clientStream",
      handle: (chunks: AsyncIterable<Req>) => installSnapshot(node, chunks),
    },
  };
}
