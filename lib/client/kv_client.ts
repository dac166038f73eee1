/**
 * KVClient: the library way to talk to a rustkvd cluster over gRPC.
 *
 * - Leader discovery: writes (and linearizable reads, for one hop less) go to
 *   the cached leader; a NotLeader answer carries the leader's address, which
 *   the client switches to at once.
 * - Retries within the deadline, with exponential backoff and jitter, on
 *   errors that are safe to retry: unavailable nodes, no leader yet, leader
 *   changes. Every write carries a request id generated once per logical
 *   write, so a retried write is applied at most once (the state machine
 *   deduplicates ids), even when the first attempt's outcome was unknown.
 * - Never retried: invalid arguments, compare-and-set conflicts, compacted or
 *   future versions.
 *
 * `await using client = new KVClient({ endpoints })` closes its channels.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { prefixEnd, utf8 } from "../common/bytes.ts";
import {
  CompactedError,
  InvalidArgumentError,
  KVError,
  NotLeaderError,
  TimeoutError,
} from "../common/errors.ts";
import { defaultRequestTimeoutMs, maxGrpcMessageBytes } from "../common/limits.ts";
import { loadRustkvdDefinition, loadRustkvdPackage } from "../server/proto.ts";
import { ChannelStatus, H2Channel, type UnaryMethod } from "./h2_channel.ts";
import { fromGrpcError, leaderAddrKey } from "../server/status.ts";
import { outcomeFromWire, txnToWire } from "../server/txn_wire.ts";
import { validateRange } from "../server/validation.ts";
import { keyValueFromWire } from "../server/key_value_wire.ts";
import type { CompareResult, TxnOp, TxnOutcome, TxnRequest } from "../node/txn.ts";

/** A key or value: bytes, or a string taken as UTF-8. */
export type Bytes = Uint8Array | string;

/**
 * Read consistency: linearizable (default) or serializable (from the node
 * asked, possibly stale; a client that fails over to a node further behind
 * may read an older revision than it read before, as with etcd).
 */
export type Consistency = "linearizable" | "serializable";

/** Options of a KVClient. */
export interface KVClientOptions {
  /** host:port of one or more cluster members. */
  endpoints: string[];
  /** Default deadline per call, retries included. */
  timeoutMs?: number;
  /** Stops every call (each call may also take its own signal). */
  signal?: AbortSignal;
  /**
   * Never let grpc-js close an idle connection (its default is after 30
   * minutes). For clients inside a server process that are kept for its
   * lifetime and never closed: a closing HTTP/2 client can abort a Deno
   * grpc-js server (denoland/deno#36788), so they let process exit close
   * their sockets instead.
   */
  neverIdle?: boolean;
}

/** Watch events a consumer may leave untaken before the stream is paused. */
const watchQueueHigh = 1_024;

/** grpc-js's largest idle timeout (a 32-bit timer): about 24.8 days. */
const maxIdleTimeoutMs = 2 ** 31 - 1;

/** A key-value pair with its MVCC version. */
export interface KeyValue {
  key: Uint8Array;
  value: Uint8Array;
  version: number;
  /** Absolute expiry (Unix ms), 0 = none. */
  expiresAtMs: number;
}

/** Per-call options. */
export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Options of `KVClient.scanPage`: one page of a prefix or range, at one version. */
export type ScanPageOptions = CallOptions & {
  prefix?: Bytes;
  start?: Bytes;
  end?: Bytes;
  limit?: number;
  version?: number;
  keysOnly?: boolean;
  consistency?: Consistency;
};

/** How long a watch waits for a node to accept it before trying another (no give-up set). */
const watchAnswerTimeoutMs = 5_000;
/** Idle time after which a watch's connection is pinged, and how long the answer may take. */
const watchKeepaliveMs = 5_000;
const watchKeepaliveTimeoutMs = 3_000;

/** One change delivered by watch(). */
export interface WatchEvent {
  type: "put" | "delete";
  kv: KeyValue;
  prev?: KeyValue;
  version: number;
}

function toWatchEvent(m: Msg): WatchEvent {
  return {
    type: m.type === "DELETE" ? "delete" : "put",
    kv: keyValueFromWire(m.kv),
    prev: m.has_prev ? keyValueFromWire(m.prev_kv) : undefined,
    version: Number(m.version),
  };
}

function fromUtf8Latin(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
}

/** Cluster status as one node sees it. */
export interface NodeStatus {
  nodeId: string;
  role: string;
  term: number;
  leaderId: string;
  leaderAddr: string;
  commitIndex: number;
  appliedIndex: number;
  revision: number;
  compactedRevision: number;
  clusterId: string;
  version: string;
  fsyncMode: string;
  /** The node's RESP address ("" when it serves none). */
  respAddr: string;
  members: Array<
    {
      id: string;
      addr: string;
      role: string;
      health: string;
      lastHeardMsAgo: number;
      matchIndex: number;
      /** Last heartbeat round trip in ms (reported by the leader; 0 = unknown). */
      rttMs: number;
      /** Expected fraction of keys the member owns on the ring. */
      ringShare: number;
    }
  >;
}

/** The endpoints tried by a failed call and why each failed. */
export class UnreachableClusterError extends KVError {
  override name = "UnreachableClusterError";
  constructor(readonly attempts: Array<{ endpoint: string; error: string }>, deadlineMs: number) {
    super(
      "NoQuorum",
      `no answer from the cluster within ${deadlineMs} ms; tried ${describeAttempts(attempts)}`,
    );
  }
}

/** "a:1 (connection refused), b:2 (timed out)": the last error seen per endpoint, shortened. */
export function describeAttempts(attempts: Array<{ endpoint: string; error: string }>): string {
  const last = new Map<string, string>();
  for (const a of attempts) {
    const short = /ECONNREFUSED|connection refused/i.test(a.error)
      ? "connection refused"
      : /deadline exceeded/i.test(a.error)
      ? "no answer in time"
      : a.error.replace(/^unavailable: /, "");
    last.set(a.endpoint, short);
  }
  return [...last].map(([endpoint, error]) => `${endpoint} (${error})`).join(", ") || "nothing";
}

// deno-lint-ignore no-explicit-any
type Msg = any;
function toBytes(b: Bytes): Uint8Array {
  return typeof b === "string" ? utf8(b) : b;
}

let requestCounter = 0;
const clientTag = crypto.randomUUID().slice(0, 8);

/** A fresh request id: unique per client process and write. */
export function newRequestId(): string {
  return `${clientTag}-${Date.now().toString(36)}-${(++requestCounter).toString(36)}`;
}

/**
 * Retry pauses: doubling from 10 ms, at most 50 ms (with jitter, 50–150 %).
 * An election takes 150–300 ms here, so a client polls every 25–75 ms during
 * one and finds the new leader about 50 ms after it is elected (measured:
 * kill -9 of the leader to the next acknowledged write 257–354 ms, of which
 * 162–262 ms was the election, with a 100 ms cap); a longer cap made the first
 * write after a leader crash wait up to 0.75 s more. A poll is one cheap
 * refused connection or NotLeader answer, so polling this often is harmless.
 */
const firstBackoffMs = 10;
const maxBackoffMs = 50;

/** The error a closed client's calls end with (never retried). */
function clientClosed(): KVError {
  return new KVError("Closed", "the client is closed");
}

/** Methods that change the cluster: an attempt that timed out may have taken effect. */
const writeMethods = new Set([
  "Put",
  "Delete",
  "Txn",
  "Compact",
  "MemberAdd",
  "MemberRemove",
  "Join",
  "TransferLeader",
]);

/** What a timeout means for `method`: for a write, that it may have been applied. */
function outcomeUnknownNote(method: string): string {
  return writeMethods.has(method) ? " (an attempt that timed out may have been applied)" : "";
}

function retryable(e: KVError): boolean {
  return e.code === "NotLeader" || e.code === "NoQuorum" || e.code === "Timeout" ||
    e.code === "Closed";
}

/** One comparison of `KVClient.txn`: the key's version, or its value, against an operand. */
export type TxnCompareInput =
  & { key: Bytes; result?: CompareResult }
  & ({ version: number } | { value: Bytes });

/** One operation of `KVClient.txn`. */
export type TxnOpInput =
  | { put: Bytes; value: Bytes; ttlSecs?: number; prevKv?: boolean }
  | { delete: Bytes; prevKv?: boolean }
  | { get: Bytes };

function txnOpOf(o: TxnOpInput): TxnOp {
  if ("put" in o) {
    return {
      kind: "put",
      key: toBytes(o.put),
      value: toBytes(o.value),
      ttlSecs: o.ttlSecs ?? 0,
      prevKv: o.prevKv ?? false,
    };
  }
  if ("delete" in o) return { kind: "delete", key: toBytes(o.delete), prevKv: o.prevKv ?? false };
  return { kind: "get", key: toBytes(o.get) };
}

/** A client for a rustkvd cluster. */
export class KVClient implements AsyncDisposable {
  readonly endpoints: string[];
  readonly timeoutMs: number;
  /** grpc-js clients, for Watch streams only. */
  #watchStubs = new Map<string, grpc.Client>();
  /** Watch streams open now (close() ends them). */
  #openWatches = new Set<grpc.ClientReadableStream<Msg>>();
  /**
   * Unary calls go over our own HTTP/2 client (lib/client/h2_channel.ts):
   * under Deno grpc-js cost the caller ~250 µs of CPU per call.
   */
  #channels = new Map<string, H2Channel>();
  #leader: string | undefined;
  #next = 0;
  #closed = false;
  #signal: AbortSignal | undefined;
  readonly #neverIdle: boolean;

  constructor(options: KVClientOptions) {
    this.#neverIdle = options.neverIdle ?? false;
    if (options.endpoints.length === 0) {
      throw new InvalidArgumentError("KVClient needs at least one endpoint");
    }
    this.endpoints = [
      ...new Set(options.endpoints.map(dialable)),
    ];
    this.timeoutMs = options.timeoutMs ?? defaultRequestTimeoutMs;
    this.#signal = options.signal;
  }

  /** The endpoint believed to be the leader, if any. */
  get leader(): string | undefined {
    return this.#leader;
  }

  #watchStubFor(endpoint: string): grpc.Client {
    let s = this.#watchStubs.get(endpoint);
    if (!s) {
      const pkg = loadRustkvdPackage();
      const opts = {
        "grpc.max_receive_message_length": maxGrpcMessageBytes,
        "grpc.max_send_message_length": maxGrpcMessageBytes,
        "grpc.initial_reconnect_backoff_ms": 50,
        "grpc.max_reconnect_backoff_ms": 1_000,
        // A watch waits on a silent stream: pings find a node that stopped answering (a
        // SIGSTOPped process, a dropped link) so the watch moves to another.
        "grpc.keepalive_time_ms": watchKeepaliveMs,
        "grpc.keepalive_timeout_ms": watchKeepaliveTimeoutMs,
        ...(this.#neverIdle ? { "grpc.client_idle_timeout_ms": maxIdleTimeoutMs } : {}),
      };
      const KV = pkg.KVStore as grpc.ServiceClientConstructor;
      s = new KV(endpoint, grpc.credentials.createInsecure(), opts);
      this.#watchStubs.set(endpoint, s);
    }
    return s;
  }

  /**
   * One unary call to one endpoint (no retries). A follower that answered a
   * linearizable read names the leader: `onLeaderHint` gets its address.
   */
  async #call(
    endpoint: string,
    service: "kv" | "admin",
    method: string,
    req: Msg,
    deadline: number,
    signal?: AbortSignal,
    onLeaderHint?: (addr: string) => void,
  ): Promise<Msg> {
    const def = unaryMethod(service, method);
    const bytes = def.requestSerialize(req);
    if (bytes.length > maxGrpcMessageBytes) {
      throw new InvalidArgumentError(
        `a ${method} request of ${bytes.length} bytes exceeds the message limit of ` +
          `${maxGrpcMessageBytes} bytes`,
      );
    }
    if (this.#closed) throw clientClosed();
    let channel = this.#channels.get(endpoint);
    if (!channel) {
      channel = new H2Channel(endpoint);
      this.#channels.set(endpoint, channel);
    }
    const r = await channel.unary(def.path, bytes, deadline, signal);
    if (r.code === 0) {
      const leader = r.metadata.get(leaderAddrKey);
      if (leader !== undefined) onLeaderHint?.(leader);
      return def.responseDeserialize(r.response!);
    }
    if (this.#closed) throw clientClosed();
    if (
      r.maybeProcessed &&
      (r.code === ChannelStatus.Unavailable || r.code === ChannelStatus.Cancelled)
    ) {
      // Lost after it went out: the node may have acted on it, so the outcome is unknown
      // (retrying with the same request id is safe; reporting "unreachable" would not be).
      throw new TimeoutError(`${method} to ${endpoint}: ${r.details} after the request was sent`);
    }
    const metadata = { get: (key: string) => r.metadata.has(key) ? [r.metadata.get(key)!] : [] };
    throw fromGrpcError({ code: r.code, details: r.details, metadata });
  }

  /**
   * Runs one logical call with leader routing and retries until the deadline.
   * `toLeader` routes to the cached leader first.
   */
  async #invoke(
    service: "kv" | "admin",
    method: string,
    req: Msg,
    toLeader: boolean,
    opts: CallOptions & { retryIfBehind?: boolean } = {},
  ): Promise<Msg> {
    if (this.#closed) throw clientClosed();
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const deadline = Date.now() + timeoutMs;
    const signal = opts.signal ?? this.#signal;
    const attempts: Array<{ endpoint: string; error: string }> = [];
    // An attempt that timed out may have been applied: the outcome is unknown, not refused.
    let timedOut = false;
    let backoffMs = firstBackoffMs;
    for (let attempt = 0; attempt < 1_000; attempt++) {
      signal?.throwIfAborted();
      const endpoint = toLeader && this.#leader
        ? this.#leader
        : this.endpoints[this.#next % this.endpoints.length];
      // One attempt gets a slice of the deadline, so a dead endpoint cannot use it all.
      const attemptDeadline = Math.min(deadline, Date.now() + Math.max(500, timeoutMs / 3));
      try {
        let leader = endpoint;
        const res = await this.#call(
          endpoint,
          service,
          method,
          req,
          attemptDeadline,
          signal,
          (addr) => (leader = dialable(addr)),
        );
        if (toLeader) this.#leader = leader;
        return res;
      } catch (e) {
        signal?.throwIfAborted();
        if (this.#closed) throw clientClosed();
        const err = e instanceof KVError ? e : new KVError("Internal", String(e));
        attempts.push({ endpoint, error: err.message });
        if (err.code === "Timeout") timedOut = true;
        // A later page of a scan pinned at a revision a lagging node has not reached yet.
        const behind = opts.retryIfBehind === true && err.code === "FutureVersion";
        if (!retryable(err) && !behind) throw err;
        if (err instanceof NotLeaderError && err.leaderAddr) {
          this.#leader = dialable(err.leaderAddr);
          if (!toLeader) this.#next = Math.max(0, this.endpoints.indexOf(this.#leader));
          if (Date.now() < deadline && attempt < 3) continue; // follow the hint at once
        } else {
          if (this.#leader === endpoint) this.#leader = undefined;
          this.#next++;
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          if (timedOut) {
            throw new TimeoutError(
              `${method}: no answer within ${timeoutMs} ms${outcomeUnknownNote(method)}; tried ${
                describeAttempts(attempts)
              }`,
            );
          }
          throw new UnreachableClusterError(attempts, timeoutMs);
        }
        const sleep = Math.min(remaining, backoffMs / 2 + Math.random() * backoffMs);
        backoffMs = Math.min(backoffMs * 2, maxBackoffMs);
        await new Promise((r) => setTimeout(r, sleep));
      }
    }
    if (timedOut) {
      throw new TimeoutError(
        `${method}: gave up after ${attempts.length} attempts${outcomeUnknownNote(method)}; tried ${
          describeAttempts(attempts)
        }`,
      );
    }
    throw new UnreachableClusterError(attempts, timeoutMs);
  }

  /** Writes `key`; returns the new version (and the previous pair when `prevKv`). */
  async put(
    key: Bytes,
    value: Bytes,
    opts: CallOptions & {
      ttlSecs?: number;
      ifVersion?: number;
      prevKv?: boolean;
      requestId?: string;
    } = {},
  ): Promise<{ version: number; prev?: KeyValue }> {
    const req: Msg = {
      key: toBytes(key),
      value: toBytes(value),
      ttl_secs: opts.ttlSecs ?? 0,
      prev_kv: opts.prevKv ?? false,
      request_id: opts.requestId ?? newRequestId(),
    };
    if (opts.ifVersion !== undefined) req.if_version = opts.ifVersion;
    const res = await this.#invoke("kv", "Put", req, true, opts);
    return {
      version: Number(res.version),
      prev: res.has_prev ? keyValueFromWire(res.prev) : undefined,
    };
  }

  /** Deletes `key`; `deleted` is false when it did not exist. */
  async delete(
    key: Bytes,
    opts: CallOptions & { ifVersion?: number; prevKv?: boolean; requestId?: string } = {},
  ): Promise<{ version: number; deleted: boolean; prev?: KeyValue }> {
    const req: Msg = {
      key: toBytes(key),
      prev_kv: opts.prevKv ?? false,
      request_id: opts.requestId ?? newRequestId(),
    };
    if (opts.ifVersion !== undefined) req.if_version = opts.ifVersion;
    const res = await this.#invoke("kv", "Delete", req, true, opts);
    return {
      version: Number(res.version),
      deleted: res.deleted,
      prev: res.has_prev ? keyValueFromWire(res.prev) : undefined,
    };
  }

  /**
   * Runs a transaction: if every comparison holds, the `success`
   * operations, else the `failure` ones, atomically and linearizably (one
   * revision, one write). A key appears in at most one operation of a list.
   * For example, take a lock unless someone holds it:
   * `txn({ compare: [{ key: "lock", version: 0 }], success: [{ put: "lock",
   * value: "me", ttlSecs: 10 }], failure: [{ get: "lock" }] })`.
   * Retried like a put, with one request id: at most one attempt commits,
   * and a retry of one that did gets its answer.
   */
  async txn(
    t: { compare?: TxnCompareInput[]; success?: TxnOpInput[]; failure?: TxnOpInput[] },
    opts: CallOptions & { requestId?: string } = {},
  ): Promise<TxnOutcome> {
    const txn: TxnRequest = {
      compares: (t.compare ?? []).map((c) => ({
        key: toBytes(c.key),
        target: "value" in c ? "value" : "version",
        result: c.result ?? "equal",
        version: "version" in c ? c.version : 0,
        value: "value" in c ? toBytes(c.value) : new Uint8Array(),
      })),
      success: (t.success ?? []).map(txnOpOf),
      failure: (t.failure ?? []).map(txnOpOf),
    };
    // Only a transaction that may write needs an id to be retried safely; one that only
    // reads is answered without a Raft round when it has none.
    const writes = [...txn.success, ...txn.failure].some((op) => op.kind !== "get");
    const requestId = opts.requestId ?? (writes ? newRequestId() : "");
    const res = await this.#invoke("kv", "Txn", txnToWire(txn, requestId), true, opts);
    const ran = res.succeeded ? txn.success : txn.failure;
    return outcomeFromWire(res, ran.map((op) => op.key));
  }

  /** Reads `key` (as of `version` when given); undefined when absent. */
  async get(
    key: Bytes,
    opts: CallOptions & { version?: number; consistency?: Consistency } = {},
  ): Promise<KeyValue | undefined> {
    const consistency = opts.consistency ?? "linearizable";
    const res = await this.#invoke(
      "kv",
      "Get",
      {
        key: toBytes(key),
        version: opts.version ?? 0,
        consistency: consistency === "serializable" ? "SERIALIZABLE" : "LINEARIZABLE",
      },
      consistency === "linearizable",
      opts,
    );
    if (!res.found) return undefined;
    return {
      key: toBytes(key),
      value: new Uint8Array(res.value),
      version: Number(res.version),
      expiresAtMs: Number(res.expires_at_ms),
    };
  }

  /** One page of keys in a prefix or range, at one version. */
  scanPage(
    opts: ScanPageOptions = {},
  ): Promise<{ kvs: KeyValue[]; more: boolean; version: number }> {
    return this.#scanPage(opts, false);
  }

  /**
   * `retryIfBehind`: a page after the first, pinned at the first page's
   * revision, may reach a node that has not applied it yet (a serializable
   * scan failing over to a lagging follower): try again, elsewhere or later.
   */
  async #scanPage(
    opts: ScanPageOptions,
    retryIfBehind: boolean,
  ): Promise<{ kvs: KeyValue[]; more: boolean; version: number }> {
    const consistency = opts.consistency ?? "linearizable";
    const res = await this.#invoke(
      "kv",
      "Scan",
      {
        prefix: opts.prefix === undefined ? new Uint8Array() : toBytes(opts.prefix),
        start: opts.start === undefined ? new Uint8Array() : toBytes(opts.start),
        end: opts.end === undefined ? new Uint8Array() : toBytes(opts.end),
        limit: opts.limit ?? 0,
        version: opts.version ?? 0,
        keys_only: opts.keysOnly ?? false,
        consistency: consistency === "serializable" ? "SERIALIZABLE" : "LINEARIZABLE",
      },
      consistency === "linearizable",
      { ...opts, retryIfBehind },
    );
    return {
      kvs: (res.kvs ?? []).map(keyValueFromWire),
      more: res.more,
      version: Number(res.version),
    };
  }

  /**
   * Every key of a prefix or range, page by page, all at the revision of the
   * first page (a consistent view even while writes go on).
   */
  async *scan(
    opts: CallOptions & {
      prefix?: Bytes;
      start?: Bytes;
      end?: Bytes;
      pageSize?: number;
      keysOnly?: boolean;
      consistency?: Consistency;
      /** Read as of this revision (MVCC time travel); 0 or unset = the first page's revision. */
      version?: number;
    } = {},
  ): AsyncIterableIterator<KeyValue> {
    const prefix = opts.prefix === undefined ? undefined : toBytes(opts.prefix);
    // The node's own check: the pages below are ranges, so a prefix is refused with a range here.
    const range = validateRange(
      prefix,
      opts.start === undefined ? undefined : toBytes(opts.start),
      opts.end === undefined ? undefined : toBytes(opts.end),
    );
    let start = "prefix" in range ? range.prefix : range.start;
    const end = "prefix" in range ? prefixEnd(range.prefix) : range.end;
    let version = opts.version ?? 0;
    for (let page = 0; page < 1_000_000; page++) {
      const res = await this.#scanPage({
        ...opts,
        prefix: undefined,
        start,
        end,
        limit: opts.pageSize ?? 1_000,
        version,
      }, page > 0);
      version = res.version;
      for (const kv of res.kvs) yield kv;
      if (!res.more || res.kvs.length === 0) return;
      const last = res.kvs[res.kvs.length - 1].key;
      start = new Uint8Array(last.length + 1);
      start.set(last);
    }
  }

  /**
   * Streams changes under a key or prefix until `signal` aborts. With
   * `startVersion` the stream begins with history from that version. After a
   * disconnect it reconnects (any endpoint) and resumes exactly where it
   * stopped: no event is lost or repeated. Ends with a CompactedError when
   * the history it needs was compacted, and with an UnreachableClusterError
   * when `giveUpAfterMs` is set and no node has accepted the watch for that
   * long (by default it keeps trying, as etcd's watchers do).
   */
  async *watch(
    opts: {
      key?: Bytes;
      prefix?: Bytes;
      startVersion?: number;
      prevKv?: boolean;
      signal?: AbortSignal;
      giveUpAfterMs?: number;
    },
  ): AsyncIterableIterator<WatchEvent> {
    const signal = opts.signal ?? this.#signal;
    const key = opts.key === undefined ? new Uint8Array() : toBytes(opts.key);
    const prefix = opts.prefix === undefined ? new Uint8Array() : toBytes(opts.prefix);
    // Resume point: the version to ask for, and the keys already delivered at
    // it (a transaction writes several keys at one version).
    let from = opts.startVersion ?? 0;
    let deliveredAt = new Set<string>();
    let backoffMs = 50;
    // Since when no node has been serving this watch, and what each attempt met meanwhile.
    let downSinceMs: number | undefined = Date.now();
    const failures: Array<{ endpoint: string; error: string }> = [];
    const giveUpAfterMs = opts.giveUpAfterMs;
    for (let attempt = 0; !this.#closed && !signal?.aborted; attempt++) {
      if (
        giveUpAfterMs !== undefined && downSinceMs !== undefined &&
        Date.now() - downSinceMs >= giveUpAfterMs
      ) {
        throw new UnreachableClusterError(failures, giveUpAfterMs);
      }
      const endpoint = this.endpoints[(this.#next + attempt) % this.endpoints.length];
      const stub = this.#watchStubFor(endpoint) as unknown as Record<
        string,
        (req: Msg) => grpc.ClientReadableStream<Msg>
      >;
      const call = stub.Watch.call(stub, {
        key,
        prefix,
        start_version: from,
        prev_kv: opts.prevKv ?? false,
      });
      const onAbort = () => call.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#openWatches.add(call);
      // A node that takes the connection and never answers is given up on like a refusal,
      // after its share of the give-up budget (so every endpoint is tried within it).
      let unanswered = false;
      const answerMs = giveUpAfterMs === undefined ? watchAnswerTimeoutMs : Math.min(
        giveUpAfterMs - (Date.now() - (downSinceMs ?? Date.now())),
        Math.max(500, giveUpAfterMs / this.endpoints.length),
      );
      const answerTimer = setTimeout(() => {
        unanswered = true;
        call.cancel();
      }, Math.max(1, answerMs));
      const queue: Array<{ msg?: Msg; error?: unknown; end?: boolean }> = [];
      let wake: (() => void) | undefined;
      let paused = false;
      call.on("data", (msg: Msg) => {
        queue.push({ msg });
        // A consumer that stops taking events stops the stream here, so flow control reaches
        // the node, which cuts a watcher that falls too far behind (and we resume after it).
        if (!paused && queue.length >= watchQueueHigh) {
          paused = true;
          call.pause();
        }
        wake?.();
      });
      call.on("error", (error: unknown) => {
        queue.push({ error });
        wake?.();
      });
      call.on("end", () => {
        queue.push({ end: true });
        wake?.();
      });
      try {
        for (;;) {
          while (queue.length === 0) {
            await new Promise<void>((r) => (wake = r));
            wake = undefined;
          }
          const item = queue.shift()!;
          if (paused && queue.length <= watchQueueHigh / 4) {
            paused = false;
            call.resume();
          }
          if (item.error !== undefined) {
            if (signal?.aborted || this.#closed) return;
            if (unanswered) {
              failures.push({ endpoint, error: "no answer in time" });
              break;
            }
            const err = fromGrpcError(item.error);
            if (!retryable(err)) throw err;
            failures.push({ endpoint, error: err.message });
            break;
          }
          if (item.end) break;
          const m = item.msg;
          if (m.type === "CREATED") {
            clearTimeout(answerTimer);
            downSinceMs = undefined;
            failures.length = 0;
            backoffMs = 50;
            if (from === 0) from = Number(m.version) + 1;
            continue;
          }
          if (m.type === "CANCELED") {
            if (Number(m.compacted_version) > 0) {
              throw new CompactedError(from, Number(m.compacted_version));
            }
            const reason = String(m.cancel_reason ?? "");
            // A replay the node refuses (too long) would be refused again from the same start.
            if (reason.startsWith("history replay failed")) {
              throw new KVError("InvalidArgument", `watch from version ${from}: ${reason}`);
            }
            break; // fell behind or the node closed: resume from where we are
          }
          const event = toWatchEvent(m);
          const id = fromUtf8Latin(event.kv.key);
          if (event.version < from || (event.version === from && deliveredAt.has(id))) continue;
          if (event.version > from) {
            from = event.version;
            deliveredAt = new Set();
          }
          deliveredAt.add(id);
          yield event;
        }
      } finally {
        clearTimeout(answerTimer);
        signal?.removeEventListener("abort", onAbort);
        this.#openWatches.delete(call);
        call.cancel();
      }
      downSinceMs ??= Date.now();
      if (signal?.aborted || this.#closed) return;
      await new Promise((r) => setTimeout(r, backoffMs / 2 + Math.random() * backoffMs));
      backoffMs = Math.min(1_000, backoffMs * 2);
    }
  }

  /** Status of one node (default: the first endpoint that answers). */
  async status(opts: CallOptions & { endpoint?: string } = {}): Promise<NodeStatus> {
    const res = opts.endpoint
      ? await this.#call(
        opts.endpoint,
        "kv",
        "NodeStatus",
        {},
        Date.now() + (opts.timeoutMs ?? this.timeoutMs),
        opts.signal,
      )
      : await this.#invoke("kv", "NodeStatus", {}, false, opts);
    return {
      nodeId: res.node_id,
      role: res.role,
      term: Number(res.term),
      leaderId: res.leader_id,
      leaderAddr: res.leader_addr,
      commitIndex: Number(res.commit_index),
      appliedIndex: Number(res.applied_index),
      revision: Number(res.revision),
      compactedRevision: Number(res.compacted_revision),
      clusterId: res.cluster_id,
      version: res.version,
      fsyncMode: res.fsync_mode,
      respAddr: res.resp_addr ?? "",
      members: (res.members ?? []).map(memberFrom),
    };
  }

  /** The cluster's members as the leader sees them. */
  async memberList(
    opts: CallOptions = {},
  ): Promise<{ leaderId: string; members: NodeStatus["members"] }> {
    const res = await this.#invoke("admin", "MemberList", {}, true, opts);
    return memberListFrom(res);
  }

  /**
   * Asks the cluster to take `id` at `addr` as a new member (what a node
   * started with --peers does); safe to retry: a member with the same
   * address is answered without a second change.
   */
  async join(
    id: string,
    addr: string,
    clusterId = "",
    opts: CallOptions = {},
  ): Promise<{ clusterId: string; members: { id: string; addr: string; learner: boolean }[] }> {
    const res = await this.#invoke(
      "admin",
      "Join",
      { id, addr, cluster_id: clusterId },
      true,
      opts,
    );
    return {
      clusterId: res.cluster_id,
      members: (res.members ?? []).map((m: Msg) => ({
        id: m.id,
        addr: m.addr,
        learner: m.role === "learner",
      })),
    };
  }

  /** Adds a member (a learner until it catches up, then a voter); returns the new member list. */
  async memberAdd(
    id: string,
    addr: string,
    opts: CallOptions & { learner?: boolean } = {},
  ): Promise<{ leaderId: string; members: NodeStatus["members"] }> {
    const res = await this.#invoke(
      "admin",
      "MemberAdd",
      { id, addr, learner: opts.learner ?? false },
      true,
      opts,
    );
    return memberListFrom(res);
  }

  /** Removes a member (leadership moves first when the leader is removed); returns the new list. */
  async memberRemove(
    id: string,
    opts: CallOptions = {},
  ): Promise<{ leaderId: string; members: NodeStatus["members"] }> {
    const res = await this.#invoke("admin", "MemberRemove", { id }, true, opts);
    return memberListFrom(res);
  }

  /** Drops MVCC history older than `version` on every node; returns the compacted version. */
  async compact(version: number, opts: CallOptions = {}): Promise<number> {
    const res = await this.#invoke("admin", "Compact", { version }, true, opts);
    return Number(res.compacted_version);
  }

  /** Moves leadership to `nodeId`; returns the new leader's id. */
  async transferLeader(nodeId: string, opts: CallOptions = {}): Promise<string> {
    const res = await this.#invoke("admin", "TransferLeader", { id: nodeId }, true, opts);
    return res.leader_id;
  }

  /** Closes every channel. */
  close(): void {
    this.#closed = true;
    for (const call of this.#openWatches) call.cancel();
    this.#openWatches.clear();
    for (const c of this.#watchStubs.values()) c.close();
    this.#watchStubs.clear();
    for (const c of this.#channels.values()) c.close();
    this.#channels.clear();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/** `addr` with `localhost` spelled 127.0.0.1, so it matches the endpoints the client keeps. */
function dialable(addr: string): string {
  return addr.replace(/^localhost:/, "127.0.0.1:");
}

/** A method of proto/kvstore.proto: path and codecs from the definition grpc-js also uses. */
function unaryMethod(service: "kv" | "admin", method: string): UnaryMethod {
  const serviceName = service === "kv" ? "rustkvd.KVStore" : "rustkvd.Admin";
  const m = (loadRustkvdDefinition()[serviceName] as Record<string, UnaryMethod>)[method];
  if (!m) throw new KVError("Internal", `no method ${serviceName}/${method} in the proto`);
  return m;
}

/** A MemberListResponse in client form. */
function memberListFrom(res: Msg): { leaderId: string; members: NodeStatus["members"] } {
  return {
    leaderId: res.leader_id,
    members: (res.members ?? []).map(memberFrom),
  };
}

/** A MemberStatus in client form. */
function memberFrom(m: Msg): NodeStatus["members"][number] {
  return {
    id: m.id,
    addr: m.addr,
    role: m.role,
    health: m.health,
    lastHeardMsAgo: Number(m.last_heard_ms_ago),
    matchIndex: Number(m.match_index),
    rttMs: Number(m.rtt_ms ?? 0),
    ringShare: Number(m.ring_share ?? 0),
  };
}
