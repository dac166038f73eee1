/**
 * The workloads of `deno task bench cluster`, run against any 3-member
 * cluster behind `BenchSystem`: rustkvd's, and etcd's beside it. Both get the
 * very same measurements — the load generator of `rustkvd-cli bench` (64
 * workers at 1 and 4 requests in flight, 64-byte values, 10,000 keys, a
 * warm-up), compare-and-swap transactions (64 workers, 1 in flight each),
 * single-client sequential puts and gets on the leader, RSS per
 * member after the load, and leader failover (kill -9 under a 100/s writer,
 * time to the first acknowledged write) — so their figures can be divided.
 *
 * @module
 */

import { type BenchConnect, type BenchResult, runBench } from "../lib/client/bench.ts";
import type { Consistency } from "../lib/client/kv_client.ts";
import { fmtInt, fmtMs } from "./format.ts";
import { rssMiB } from "./proc.ts";

/** A running cluster as the workloads need it: connect, find the leader, kill and restart it. */
export interface BenchSystem {
  /** How clients of this store are opened (KVClient for rustkvd, EtcdClient for etcd). */
  readonly connect: BenchConnect;
  /** host:port of every member's client API. */
  readonly endpoints: string[];
  /** Waits (bounded) until the running members agree on a leader; returns its name. */
  waitForLeader(timeoutMs: number): Promise<string>;
  /** host:port of a member's client API. */
  addrOf(member: string): string;
  /** kill -9 of one member; returns when the process is gone. */
  kill(member: string): Promise<void>;
  /** Starts a killed member again on the same ports and data. */
  restart(member: string): Promise<void>;
  /** Every running member's pid, for RSS. */
  pids(): Array<{ member: string; pid: number }>;
}

/** One measured row of the table. */
export interface Row {
  workload: string;
  clients: string;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  errors: string;
  /** What the seed README claimed for this workload ("–" for none). */
  seed: string;
}

/** Everything measured on one system, in the table's row order. */
export interface Measurements {
  rows: Row[];
  /** RSS after the load runs, before the failovers. */
  rss: Array<{ member: string; mib: number }>;
  /** Kill to first acknowledged write, per failover round, in run order. */
  failoversMs: number[];
}

/** How long to measure. */
export interface MeasureOptions {
  /** Per load workload, after a 1 s warm-up. */
  seconds: number;
  failoverRounds: number;
  /** Where progress lines go. */
  log: (line: string) => void;
}

/** Load shape shared by every system, so their figures divide. */
export const load = {
  valueSizeBytes: 64,
  workers: 64,
  keySpace: 10_000,
  deepInflight: 4,
  connections: 4,
  warmupSecs: 1,
  timeoutMs: 5_000,
} as const;

interface Workload {
  name: string;
  readRatio: number;
  consistency: Consistency;
  inflight: number;
  kind: "reads" | "writes" | "all";
  seed: string;
}

function workloads(): Workload[] {
  const list: Workload[] = [];
  for (const inflight of [1, load.deepInflight]) {
    list.push(
      {
        name: "write-only",
        readRatio: 0,
        consistency: "linearizable",
        inflight,
        kind: "writes",
        seed: "210,000/s p50 2.1 p99 6.3",
      },
      {
        name: "read-only, linearizable",
        readRatio: 1,
        consistency: "linearizable",
        inflight,
        kind: "reads",
        seed: "840,000/s p50 0.8 p99 2.1",
      },
      {
        name: "read-only, serializable",
        readRatio: 1,
        consistency: "serializable",
        inflight,
        kind: "reads",
        seed: "840,000/s p50 0.8 p99 2.1",
      },
      {
        name: "80 % reads (linearizable)",
        readRatio: 0.8,
        consistency: "linearizable",
        inflight,
        kind: "all",
        seed: "–",
      },
    );
  }
  return list;
}

/** The sample of rank ceil(q·n), the histogram's definition (lib/client/histogram.ts). */
function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil(Math.round(q * 1e6) * sorted.length / 1e6 - 1e-9);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** p50, p99 and p999 of latency samples in ms (sorts them). */
function latencies(samples: number[]): { p50Ms: number; p99Ms: number; p999Ms: number } {
  samples.sort((a, b) => a - b);
  return {
    p50Ms: percentile(samples, 0.5),
    p99Ms: percentile(samples, 0.99),
    p999Ms: percentile(samples, 0.999),
  };
}

function rowFrom(w: Workload, r: BenchResult): Row {
  const l = r[w.kind];
  return {
    workload: w.name,
    clients: `${r.setup.workers} x ${r.setup.inflightPerWorker}`,
    opsPerSec: r.opsPerSec,
    p50Ms: l.p50Ms,
    p99Ms: l.p99Ms,
    p999Ms: l.p999Ms,
    errors: Object.entries(r.errors).map(([k, v]) => `${k}=${v}`).join(" ") || "0",
    seed: w.seed,
  };
}

/** Operations a sequential row runs before it starts timing. */
const sequentialWarmupOps = 100;

/** Sequential latency of one client on the leader doing `ops` operations back to back. */
async function sequential(
  sys: BenchSystem,
  op: "put" | "get",
  ops: number,
): Promise<{ opsPerSec: number; p50Ms: number; p99Ms: number; p999Ms: number }> {
  const leader = await sys.waitForLeader(15_000);
  const client = sys.connect([sys.addrOf(leader)], load.timeoutMs);
  try {
    const value = new TextEncoder().encode("x".repeat(load.valueSizeBytes));
    // Untimed first: the connection's setup (and etcd's leader lookup) is not a put's latency.
    for (let i = 0; i < sequentialWarmupOps; i++) {
      if (op === "put") await client.put(`seq:${i % 1000}`, value);
      else await client.get(`seq:${i % 1000}`, "linearizable");
    }
    const samples: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < ops; i++) {
      const key = `seq:${i % 1000}`;
      const s = performance.now();
      if (op === "put") await client.put(key, value);
      else await client.get(key, "linearizable");
      samples.push(performance.now() - s);
    }
    const secs = (performance.now() - t0) / 1000;
    return { opsPerSec: ops / secs, ...latencies(samples) };
  } finally {
    client.close();
  }
}

/**
 * Compare-and-swap transactions: `load.workers` workers over `load.connections`
 * connections, one transaction in flight each, on random keys of the key
 * space. Each puts a new value if the key's version is the one it last saw,
 * else reads the key (and takes its version for the next try). Every
 * transaction counts, whichever list ran. 1 s warm-up, then `seconds`.
 */
async function casLoad(
  sys: BenchSystem,
  seconds: number,
): Promise<{ opsPerSec: number; p50Ms: number; p99Ms: number; p999Ms: number; errors: string }> {
  const targets = Array.from(
    { length: load.connections },
    () => sys.connect(sys.endpoints, load.timeoutMs),
  );
  const value = new TextEncoder().encode("x".repeat(load.valueSizeBytes));
  const seen = new Map<string, number>();
  const samples: number[] = [];
  const errors = new Map<string, number>();
  const startedAt = performance.now();
  const measureFrom = startedAt + load.warmupSecs * 1000;
  const endAt = measureFrom + seconds * 1000;
  let done = 0;
  try {
    await Promise.all(Array.from({ length: load.workers }, async (_, w) => {
      const target = targets[w % targets.length];
      for (let i = 0; i < 10_000_000 && performance.now() < endAt; i++) {
        const name = `cas:${Math.floor(Math.random() * load.keySpace)}`;
        const t0 = performance.now();
        try {
          const r = await target.casTxn!(name, seen.get(name) ?? 0, value);
          seen.set(name, r.version);
          if (t0 >= measureFrom && performance.now() <= endAt) {
            samples.push(performance.now() - t0);
            done++;
          }
        } catch (e) {
          // Counted over the same window as the transactions that succeeded.
          if (t0 < measureFrom || performance.now() > endAt) continue;
          const code = (e as { code?: string }).code ?? (e as Error).name;
          errors.set(code, (errors.get(code) ?? 0) + 1);
        }
      }
    }));
  } finally {
    for (const t of targets) t.close();
  }
  return {
    opsPerSec: done / seconds,
    ...latencies(samples),
    errors: [...errors].map(([k, v]) => `${k}=${v}`).join(" ") || "0",
  };
}

/**
 * Kills the leader with SIGKILL while a writer puts at 100/s, and returns the
 * time from the kill to the first write acknowledged afterwards. The killed
 * member is restarted (and the cluster settles) before returning.
 */
async function failoverMs(sys: BenchSystem): Promise<number> {
  const leader = await sys.waitForLeader(15_000);
  const client = sys.connect(sys.endpoints, 2_000);
  const value = new TextEncoder().encode("v");
  try {
    let stop = false;
    let killedAt = Infinity;
    let firstOkAfterKill = NaN;
    let n = 0;
    const writer = (async () => {
      const deadline = performance.now() + 20_000;
      while (!stop && performance.now() < deadline) {
        const started = performance.now();
        try {
          await client.put(`failover:${n++}`, value);
          if (started > killedAt && Number.isNaN(firstOkAfterKill)) {
            firstOkAfterKill = performance.now();
            return;
          }
        } catch {
          // unavailable during the election: keep going at the same rate
        }
        const wait = 10 - (performance.now() - started);
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    killedAt = performance.now();
    await sys.kill(leader);
    await writer;
    stop = true;
    await sys.restart(leader);
    await sys.waitForLeader(15_000);
    if (Number.isNaN(firstOkAfterKill)) {
      throw new Error("failover: no write was acknowledged within 20 s of killing the leader");
    }
    return firstOkAfterKill - killedAt;
  } finally {
    client.close();
  }
}

/** Runs every workload on `sys`, logging one line per result. */
export async function measureSystem(sys: BenchSystem, o: MeasureOptions): Promise<Measurements> {
  await sys.waitForLeader(15_000);
  const rows: Row[] = [];
  for (const w of workloads()) {
    const r = await runBench({
      endpoints: sys.endpoints,
      connect: sys.connect,
      durationSecs: o.seconds,
      concurrency: load.workers,
      inflight: w.inflight,
      connections: load.connections,
      valueSize: load.valueSizeBytes,
      readRatio: w.readRatio,
      keySpace: load.keySpace,
      warmupSecs: load.warmupSecs,
      consistency: w.consistency,
      timeoutMs: load.timeoutMs,
    });
    const row = rowFrom(w, r);
    rows.push(row);
    o.log(
      `  ${w.name.padEnd(26)} ${row.clients.padEnd(7)} ${fmtInt(row.opsPerSec).padStart(8)} ops/s` +
        `  p50 ${fmtMs(row.p50Ms)} ms  p99 ${fmtMs(row.p99Ms)} ms  errors ${row.errors}`,
    );
  }

  const cas = await casLoad(sys, o.seconds);
  rows.push({
    workload: "compare-and-swap (Txn)",
    clients: `${load.workers} x 1`,
    ...cas,
    seed: "–",
  });
  o.log(
    `  compare-and-swap (Txn)     ${load.workers} x 1  ${fmtInt(cas.opsPerSec).padStart(8)} ops/s` +
      `  p50 ${fmtMs(cas.p50Ms)} ms  p99 ${fmtMs(cas.p99Ms)} ms  errors ${cas.errors}`,
  );

  for (const op of ["put", "get"] as const) {
    const s = await sequential(sys, op, op === "put" ? 2_000 : 5_000);
    rows.push({
      workload: `sequential ${op} (1 client)`,
      clients: "1 x 1",
      ...s,
      errors: "0",
      seed: "–",
    });
    o.log(`  sequential ${op}: ${fmtInt(s.opsPerSec)} ops/s p50 ${fmtMs(s.p50Ms)} ms`);
  }

  const rss = await Promise.all(
    sys.pids().map(async ({ member, pid }) => ({ member, mib: await rssMiB(pid) })),
  );

  const failoversMs: number[] = [];
  for (let i = 0; i < o.failoverRounds; i++) {
    const ms = await failoverMs(sys);
    failoversMs.push(ms);
    o.log(`  failover ${i + 1}: ${fmtInt(ms)} ms`);
  }
  return { rows, rss, failoversMs };
}

/** The median failover time (the upper middle of an even count). */
export function medianMs(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}
