/**
 * The load generator behind `rustkvd-cli bench`: a closed loop of
 * `concurrency` workers, each keeping `inflight` requests outstanding, over
 * `connections` client connections, with a warm-up that is not measured.
 * It reports its setup (so a figure can be reproduced) and ops/s with
 * latency percentiles per operation kind and errors by kind.
 *
 * The loop drives a `BenchTarget`, by default a rustkvd `KVClient`; `deno task
 * bench cluster` passes an etcd client instead, so both stores are measured by
 * the very same loop.
 *
 * @module
 */

import { type Consistency, KVClient } from "./kv_client.ts";
import { Histogram } from "./histogram.ts";
import { isKVError } from "../common/errors.ts";

/**
 * One client connection as the load generator sees it: the two operations it
 * issues, what it reports about the cluster, and close — small enough that
 * another store's client fits, so it is measured by the same loop as rustkvd.
 */
export interface BenchTarget {
  put(key: string, value: Uint8Array): Promise<unknown>;
  /** Resolves whether or not the key exists: a miss is a completed read. */
  get(key: string, consistency: Consistency): Promise<unknown>;
  /**
   * A compare-and-swap transaction: put `value` if the key's version is
   * `ifVersion` (0: absent), else read it; answers whether it wrote and the
   * key's version after. Optional: only `deno task bench cluster` uses it.
   */
  casTxn?(key: string, ifVersion: number, value: Uint8Array): Promise<
    { ok: boolean; version: number }
  >;
  /** Cluster facts for the report's setup line (asked of one connection, before the run). */
  describe(): Promise<{ nodes: number; fsyncMode: string }>;
  close(): void;
}

/** Opens one connection to `endpoints`; runBench calls it `connections` times. */
export type BenchConnect = (endpoints: string[], timeoutMs: number) => BenchTarget;

/** The default target: a rustkvd KVClient (leader routing and retries included). */
export const connectKVClient: BenchConnect = (endpoints, timeoutMs) => {
  const client = new KVClient({ endpoints, timeoutMs });
  return {
    put: (key, value) => client.put(key, value),
    get: (key, consistency) => client.get(key, { consistency }),
    casTxn: async (key, ifVersion, value) => {
      const r = await client.txn({
        compare: [{ key, version: ifVersion }],
        success: [{ put: key, value }],
        failure: [{ get: key }],
      });
      const read = r.results[0];
      return r.succeeded
        ? { ok: true, version: r.revision }
        : { ok: false, version: read.kind === "get" ? read.kv?.version ?? 0 : 0 };
    },
    describe: async () => {
      const status = await client.status();
      return { nodes: status.members.length, fsyncMode: status.fsyncMode };
    },
    close: () => client.close(),
  };
};

/** What to run. */
export interface BenchOptions {
  endpoints: string[];
  /** How to open a connection; default connectKVClient (rustkvd). */
  connect?: BenchConnect;
  /** Measured operations (after warm-up); or give durationSecs. */
  operations?: number;
  durationSecs?: number;
  concurrency: number;
  inflight: number;
  connections: number;
  valueSize: number;
  readRatio: number;
  keySpace: number;
  warmupSecs: number;
  consistency: Consistency;
  timeoutMs: number;
  /** Called about once a second while measuring. */
  onProgress?: (done: number, opsPerSec: number) => void;
}

/** Percentiles of one operation kind, in milliseconds. */
export interface LatencySummary {
  count: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  meanMs: number;
}

/** The outcome of a run. */
export interface BenchResult {
  setup: {
    nodes: number;
    endpoints: string[];
    workers: number;
    inflightPerWorker: number;
    totalInflight: number;
    connections: number;
    valueSizeBytes: number;
    readRatio: number;
    keySpace: number;
    fsyncMode: string;
    consistency: string;
    warmupSecs: number;
  };
  seconds: number;
  operations: number;
  opsPerSec: number;
  reads: LatencySummary;
  writes: LatencySummary;
  all: LatencySummary;
  errors: Record<string, number>;
}

function summarize(h: Histogram, seconds: number): LatencySummary {
  return {
    count: h.count,
    opsPerSec: seconds > 0 ? h.count / seconds : 0,
    p50Ms: h.percentile(50) / 1000,
    p99Ms: h.percentile(99) / 1000,
    p999Ms: h.percentile(99.9) / 1000,
    maxMs: h.max / 1000,
    meanMs: h.mean / 1000,
  };
}

/** Runs the benchmark and returns its figures. */
export async function runBench(o: BenchOptions): Promise<BenchResult> {
  const connect = o.connect ?? connectKVClient;
  const clients = Array.from({ length: o.connections }, () => connect(o.endpoints, o.timeoutMs));
  let store: Awaited<ReturnType<BenchTarget["describe"]>>;
  try {
    store = await clients[0].describe();
  } catch (e) {
    for (const c of clients) c.close();
    throw e;
  }
  const value = new Uint8Array(o.valueSize);
  for (let i = 0; i < value.length; i++) value[i] = 97 + (i % 26);
  const keyWidth = String(Math.max(1, o.keySpace - 1)).length;
  const key = () =>
    `bench:${String(Math.floor(Math.random() * o.keySpace)).padStart(keyWidth, "0")}`;

  const reads = new Histogram();
  const writes = new Histogram();
  const errors: Record<string, number> = {};
  let measuring = false;
  let stop = false;
  let started = 0;
  let done = 0;
  const target = o.operations;
  const endAt =
    () => (o.durationSecs !== undefined ? measureStart + o.durationSecs * 1000 : Infinity);
  let measureStart = 0;

  // An operation counts when it started while measuring: one begun during the warm-up and
  // finished after it is left out, like its start was.
  const oneOp = async (client: BenchTarget, counted: boolean) => {
    const isRead = Math.random() < o.readRatio;
    const t0 = performance.now();
    try {
      if (isRead) await client.get(key(), o.consistency);
      else await client.put(key(), value);
      if (counted) (isRead ? reads : writes).record((performance.now() - t0) * 1000);
    } catch (e) {
      if (counted) {
        const kind = isKVError(e) ? e.code : (e as Error).name;
        errors[kind] = (errors[kind] ?? 0) + 1;
      }
    }
  };

  const loop = async (client: BenchTarget) => {
    while (!stop) {
      const counted = measuring;
      if (counted) {
        if (target !== undefined && started >= target) return;
        if (performance.now() >= endAt()) return;
        started++;
      }
      await oneOp(client, counted);
      if (counted) done++;
    }
  };

  const warmup = o.warmupSecs > 0;
  if (!warmup) {
    measuring = true;
    measureStart = performance.now();
  }
  const loops: Promise<void>[] = [];
  for (let w = 0; w < o.concurrency; w++) {
    for (let d = 0; d < o.inflight; d++) loops.push(loop(clients[w % clients.length]));
  }
  if (warmup) {
    await new Promise((r) => setTimeout(r, o.warmupSecs * 1000));
    measuring = true;
    measureStart = performance.now();
  }
  let lastDone = 0;
  const progress = setInterval(() => {
    o.onProgress?.(done, done - lastDone);
    lastDone = done;
  }, 1000);
  await Promise.all(loops);
  clearInterval(progress);
  stop = true;
  const seconds = (performance.now() - measureStart) / 1000;
  for (const c of clients) c.close();
  const all = new Histogram();
  all.merge(reads);
  all.merge(writes);
  return {
    setup: {
      nodes: store.nodes,
      endpoints: o.endpoints,
      workers: o.concurrency,
      inflightPerWorker: o.inflight,
      totalInflight: o.concurrency * o.inflight,
      connections: o.connections,
      valueSizeBytes: o.valueSize,
      readRatio: o.readRatio,
      keySpace: o.keySpace,
      fsyncMode: store.fsyncMode,
      consistency: o.consistency,
      warmupSecs: o.warmupSecs,
    },
    seconds,
    operations: all.count,
    opsPerSec: seconds > 0 ? all.count / seconds : 0,
    reads: summarize(reads, seconds),
    writes: summarize(writes, seconds),
    all: summarize(all, seconds),
    errors,
  };
}

/** The human-readable report. */
export function formatBench(r: BenchResult): string {
  const s = r.setup;
  const fmt = (n: number) => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
  const row = (name: string, l: LatencySummary) =>
    `| ${name.padEnd(5)} | ${String(l.count).padStart(9)} | ${fmt(l.opsPerSec).padStart(9)} | ${
      fmt(l.p50Ms).padStart(7)
    } | ${fmt(l.p99Ms).padStart(7)} | ${fmt(l.p999Ms).padStart(7)} | ${fmt(l.maxMs).padStart(7)} |`;
  const errors = Object.entries(r.errors).map(([k, v]) => `${k}=${v}`).join(" ") || "none";
  return [
    `setup: nodes=${s.nodes} workers=${s.workers} in-flight/worker=${s.inflightPerWorker} (total ${s.totalInflight}) ` +
    `connections=${s.connections} value=${s.valueSizeBytes}B read-ratio=${s.readRatio} keys=${s.keySpace} ` +
    `fsync=${s.fsyncMode} reads=${s.consistency} warm-up=${s.warmupSecs}s`,
    `result: ${r.operations} ops in ${r.seconds.toFixed(2)} s = ${
      fmt(r.opsPerSec)
    } ops/s, errors: ${errors}`,
    `| op    |       ops |     ops/s | p50 ms  | p99 ms  | p999 ms | max ms  |`,
    `|-------|-----------|-----------|---------|---------|---------|---------|`,
    ...(r.reads.count > 0 ? [row("read", r.reads)] : []),
    ...(r.writes.count > 0 ? [row("write", r.writes)] : []),
    row("all", r.all),
  ].join("\n");
}
