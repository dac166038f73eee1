/**
 * A minimal etcd v3 client (KV.Put, KV.Range, Maintenance.Status,
 * Cluster.MemberList) for measuring etcd beside rustkvd in `deno task bench
 * cluster`. Its calls travel over the same HTTP/2 channel as KVClient's
 * (lib/client/h2_channel.ts) and it routes and retries the way KVClient
 * does, so the two stores see the same client behaviour and cost:
 *
 * - writes and linearizable reads go to the leader, found with
 *   Maintenance.Status (the member whose own id is the leader id it reports);
 *   etcd followers would forward them, but that extra hop would cost etcd
 *   throughput that KVClient's leader routing spares rustkvd;
 * - serializable reads go to the first endpoint that answers;
 * - unavailable members, leader changes and per-attempt timeouts are retried
 *   with jittered exponential backoff until the call's deadline; each attempt
 *   gets a slice of the deadline, so a dead member cannot use it all.
 *
 * It is a load generator's client, not a general one: no leases, watches,
 * transactions or TLS, and a retried Put may apply twice (etcd has no request
 * ids), which a benchmark overwriting random keys does not mind.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { BenchConnect, BenchTarget } from "../lib/client/bench.ts";
import type { Consistency } from "../lib/client/kv_client.ts";
import { H2Channel, type UnaryMethod } from "../lib/client/h2_channel.ts";

const protoPath = new URL("./etcd_rpc.proto", import.meta.url).pathname;

// deno-lint-ignore no-explicit-any
type Msg = any;
type Service = "kv" | "maintenance" | "cluster";

let cachedDefinition: protoLoader.PackageDefinition | undefined;

/** uint64 member ids do not fit a double, so longs load as decimal strings. */
function etcdMethod(service: Service, method: string): UnaryMethod {
  cachedDefinition ??= protoLoader.loadSync(protoPath, {
    keepCase: true,
    longs: String,
    defaults: true,
  });
  const name = { kv: "KV", maintenance: "Maintenance", cluster: "Cluster" }[service];
  return (cachedDefinition[`etcdserverpb.${name}`] as Record<string, UnaryMethod>)[method];
}

/**
 * A failed etcd call. Its name is the gRPC status name (`UNAVAILABLE`, ...),
 * so the bench's error counts say what went wrong the way rustkvd's codes do.
 */
export class EtcdError extends Error {
  constructor(readonly code: grpc.status, message: string) {
    super(message);
    this.name = grpc.status[code] ?? "UNKNOWN";
  }
}

/** What one member says about itself and the leader: enough to find and kill the leader. */
export interface EtcdMemberStatus {
  /** This member's id (decimal string: ids are uint64). */
  memberId: string;
  /** The leader this member knows of; "0" while there is none. */
  leaderId: string;
  raftTerm: number;
  version: string;
}

/** The two KVClient options the bench sets, so both stores' clients are opened alike. */
export interface EtcdClientOptions {
  /** host:port of the members' client URLs. */
  endpoints: string[];
  /** Deadline per call, retries included. */
  timeoutMs: number;
}

/** Worth another attempt: dead members, elections ("etcdserver: leader changed"), slow attempts. */
function retryable(code: grpc.status): boolean {
  return code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED ||
    code === grpc.status.UNKNOWN;
}

const encoder = new TextEncoder();

/** One connection to an etcd cluster, usable as a bench target. */
export class EtcdClient implements BenchTarget {
  readonly endpoints: string[];
  readonly timeoutMs: number;
  #channels = new Map<string, H2Channel>();
  #leader: string | undefined;
  #finding: Promise<string | undefined> | undefined;
  #next = 0;
  #closed = false;

  constructor(options: EtcdClientOptions) {
    if (options.endpoints.length === 0) throw new Error("EtcdClient needs at least one endpoint");
    this.endpoints = options.endpoints;
    this.timeoutMs = options.timeoutMs;
  }

  #channelFor(endpoint: string): H2Channel {
    let c = this.#channels.get(endpoint);
    if (!c) {
      c = new H2Channel(endpoint);
      this.#channels.set(endpoint, c);
    }
    return c;
  }

  async #call(endpoint: string, service: Service, method: string, req: Msg, deadline: number) {
    const def = etcdMethod(service, method);
    const r = await this.#channelFor(endpoint).unary(def.path, def.requestSerialize(req), deadline);
    if (r.code === 0) return def.responseDeserialize(r.response!);
    throw new EtcdError(r.code, `${endpoint} ${method}: ${r.details}`);
  }

  /** One member's status, no retries (dead members must fail fast when looking for the leader). */
  async status(endpoint: string, timeoutMs = this.timeoutMs): Promise<EtcdMemberStatus> {
    const res = await this.#call(endpoint, "maintenance", "Status", {}, Date.now() + timeoutMs);
    return {
      memberId: String(res.header?.member_id ?? "0"),
      leaderId: String(res.leader),
      raftTerm: Number(res.raftTerm),
      version: res.version,
    };
  }

  /**
   * The endpoint of the member that says it leads, or undefined during an
   * election. Concurrent callers share one round of Status calls.
   */
  findLeader(): Promise<string | undefined> {
    this.#finding ??= (async () => {
      const views = await Promise.all(
        this.endpoints.map((endpoint) =>
          this.status(endpoint, 300).then((s) => ({ endpoint, s }), () => undefined)
        ),
      );
      const leader = views.find((v) => v && v.s.leaderId !== "0" && v.s.leaderId === v.s.memberId);
      this.#leader = leader?.endpoint;
      return this.#leader;
    })().finally(() => (this.#finding = undefined));
    return this.#finding;
  }

  /** One logical call: leader routing (when `toLeader`) and retries until the deadline. */
  async #invoke(service: Service, method: string, req: Msg, toLeader: boolean): Promise<Msg> {
    if (this.#closed) throw new EtcdError(grpc.status.CANCELLED, "the client is closed");
    const deadline = Date.now() + this.timeoutMs;
    let backoffMs = 10; // the same pauses as KVClient (lib/client/kv_client.ts): a fair failover row
    for (;;) {
      let endpoint = toLeader ? this.#leader ?? await this.findLeader() : undefined;
      endpoint ??= this.endpoints[this.#next % this.endpoints.length];
      const attemptDeadline = Math.min(deadline, Date.now() + Math.max(500, this.timeoutMs / 3));
      try {
        return await this.#call(endpoint, service, method, req, attemptDeadline);
      } catch (e) {
        const err = e as EtcdError;
        if (this.#leader === endpoint) this.#leader = undefined;
        this.#next++;
        const remaining = deadline - Date.now();
        if (!retryable(err.code) || remaining <= 0 || this.#closed) throw err;
        const sleep = Math.min(remaining, backoffMs / 2 + Math.random() * backoffMs);
        backoffMs = Math.min(backoffMs * 2, 50);
        await new Promise((r) => setTimeout(r, sleep));
      }
    }
  }

  /** KV.Put through the leader. */
  async put(key: string, value: Uint8Array): Promise<void> {
    await this.#invoke("kv", "Put", { key: encoder.encode(key), value }, true);
  }

  /** KV.Range of one key; `serializable` reads answer from the member's local state. */
  async get(key: string, consistency: Consistency): Promise<Uint8Array | undefined> {
    const linearizable = consistency === "linearizable";
    const res = await this.#invoke(
      "kv",
      "Range",
      { key: encoder.encode(key), serializable: !linearizable },
      linearizable,
    );
    return res.kvs?.[0]?.value;
  }

  /**
   * KV.Txn as a compare-and-swap: put `value` if the key's last write is at
   * revision `ifVersion` (0: absent), else read the key. Answers whether it
   * wrote, and the key's revision after (the new one, or the one read).
   */
  async casTxn(
    key: string,
    ifVersion: number,
    value: Uint8Array,
  ): Promise<{ ok: boolean; version: number }> {
    const k = encoder.encode(key);
    const res = await this.#invoke("kv", "Txn", {
      compare: [{ result: 0, target: 2, key: k, mod_revision: ifVersion }],
      success: [{ request_put: { key: k, value } }],
      failure: [{ request_range: { key: k } }],
    }, true);
    if (res.succeeded) return { ok: true, version: Number(res.header?.revision ?? 0) };
    const kv = res.responses?.[0]?.response_range?.kvs?.[0];
    return { ok: false, version: Number(kv?.mod_revision ?? 0) };
  }

  /** Members in the cluster (Cluster.MemberList); etcd fsyncs every commit unless told not to. */
  async describe(): Promise<{ nodes: number; fsyncMode: string }> {
    const res = await this.#invoke("cluster", "MemberList", {}, false);
    return { nodes: (res.members ?? []).length, fsyncMode: "fsync" };
  }

  /** Closes every channel. */
  close(): void {
    this.#closed = true;
    for (const c of this.#channels.values()) c.close();
    this.#channels.clear();
  }
}

/** Opens EtcdClients for `runBench`, as `connectKVClient` opens rustkvd clients. */
export const connectEtcd: BenchConnect = (endpoints, timeoutMs) =>
  new EtcdClient({ endpoints, timeoutMs });
