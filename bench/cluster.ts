/**
 * `deno task bench cluster`: a fresh local 3-node cluster (real processes,
 * fsync on) driven through the gRPC API by the bench engine of
 * `rustkvd-cli bench`. It measures write-only, linearizable and serializable
 * read-only and 80 % read workloads with 64 workers at 1 and several requests
 * in flight each, single-client sequential latency, leader failover (kill -9
 * under a 100/s writer, median of 3) and each node's RSS, then prints one
 * table with the seed's claims beside the figures and writes
 * `bench/RESULTS.md`.
 *
 * The load generator shares the machine with the three servers, as in the
 * etcd figures of shared/PERF-NOTES.md, so the numbers are comparable to
 * those and not to a dedicated client machine.
 *
 * Options: `--seconds N` per workload (default 5), `--quick` (2 s, 1 failover
 * round), `--no-results` (do not write bench/RESULTS.md).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type BenchResult, runBench } from "../lib/client/bench.ts";
import { KVClient } from "../lib/client/kv_client.ts";
import { TestCluster } from "../tests/e2e/cluster.ts";
import { rawFsyncRate } from "./storage.ts";

/** One measured row of the table. */
interface Row {
  workload: string;
  clients: string;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  errors: string;
  seed: string;
}

const valueSizeBytes = 64;
const workers = 64;
const keySpace = 10_000;
const deepInflight = 4;

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function fmtMs(n: number): string {
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}

/**
 * Reads a /proc file through `cat`: Deno grants /proc only with --allow-all,
 * and the bench runs with --allow-run instead.
 */
async function readProc(path: string): Promise<string> {
  try {
    const out = await new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "null" })
      .output();
    return out.success ? new TextDecoder().decode(out.stdout) : "";
  } catch {
    return "";
  }
}

async function cpuModel(): Promise<string> {
  const info = await readProc("/proc/cpuinfo");
  return info.match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? "unknown CPU";
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readProc(`/proc/${pid}/status`);
  return Number(status.match(/^VmRSS:\s+(\d+)\s+kB$/m)?.[1] ?? NaN) / 1024;
}

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function rowFrom(
  workload: string,
  r: BenchResult,
  kind: "reads" | "writes" | "all",
  seed: string,
): Row {
  const l = r[kind];
  return {
    workload,
    clients: `${r.setup.workers} x ${r.setup.inflightPerWorker}`,
    opsPerSec: r.opsPerSec,
    p50Ms: l.p50Ms,
    p99Ms: l.p99Ms,
    p999Ms: l.p999Ms,
    errors: Object.entries(r.errors).map(([k, v]) => `${k}=${v}`).join(" ") || "0",
    seed,
  };
}

/** Sequential latency of one client doing `ops` operations back to back. */
async function sequential(
  client: KVClient,
  op: "put" | "get",
  ops: number,
): Promise<{ opsPerSec: number; p50Ms: number; p99Ms: number; p999Ms: number }> {
  const value = "x".repeat(valueSizeBytes);
  const samples: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < ops; i++) {
    const key = `seq:${i % 1000}`;
    const s = performance.now();
    if (op === "put") await client.put(key, value);
    else await client.get(key);
    samples.push(performance.now() - s);
  }
  const secs = (performance.now() - t0) / 1000;
  samples.sort((a, b) => a - b);
  return {
    opsPerSec: ops / secs,
    p50Ms: percentile(samples, 0.5),
    p99Ms: percentile(samples, 0.99),
    p999Ms: percentile(samples, 0.999),
  };
}

/**
 * Kills the leader with SIGKILL while a writer puts at 100/s, and returns the
 * time from the kill to the first write acknowledged afterwards. The killed
 * node is restarted (and the cluster settles) before returning.
 */
async function failoverMs(cluster: TestCluster): Promise<number> {
  const leader = await cluster.waitForLeader(15_000);
  const client = new KVClient({ endpoints: cluster.nodes.map((n) => n.addr), timeoutMs: 2_000 });
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
          await client.put(`failover:${n++}`, "v");
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
    await cluster.node(leader).kill();
    await writer;
    stop = true;
    await cluster.node(leader).start();
    await cluster.waitForLeader(15_000);
    return firstOkAfterKill - killedAt;
  } finally {
    client.close();
  }
}

/** Runs the cluster benchmark and prints its table. */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      seconds: { type: "string" },
      quick: { type: "boolean", default: false },
      "no-results": { type: "boolean", default: false },
    },
  });
  const seconds = Number(values.seconds ?? (values.quick ? 2 : 5));
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 600) {
    throw new Error(`--seconds must be in (0, 600], got ${values.seconds}`);
  }
  const failoverRounds = values.quick ? 1 : 3;

  const probeDir = await Deno.makeTempDir({ prefix: "rustkvd-bench-fsync-" });
  const fsyncRate = await rawFsyncRate(probeDir, 1_000);
  await Deno.remove(probeDir, { recursive: true });

  const cores = navigator.hardwareConcurrency;
  const machine = `${cores} cores, ${await cpuModel()}, Deno ${Deno.version.deno}`;
  console.log("rustkvd cluster benchmark");
  console.log(`  machine: ${machine}`);
  console.log(`  disk: ${fmtInt(fsyncRate)} raw 64 B write+fdatasync/s`);
  console.log(
    `  cluster: 3 nodes on 127.0.0.1 (real processes, fsync on); load generator on the same machine`,
  );
  console.log(
    `  load: ${workers} workers, ${valueSizeBytes}-byte values, ${keySpace} keys, ` +
      `${seconds} s per workload after 1 s warm-up, gRPC API`,
  );

  await using cluster = await TestCluster.start(3);
  const leader = await cluster.waitForLeader(15_000);
  const endpoints = cluster.nodes.map((n) => n.addr);
  const rows: Row[] = [];

  const workloads: {
    name: string;
    readRatio: number;
    consistency: "linearizable" | "serializable";
    inflight: number;
    kind: "reads" | "writes" | "all";
    seed: string;
  }[] = [];
  for (const inflight of [1, deepInflight]) {
    workloads.push(
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
  for (const w of workloads) {
    const r = await runBench({
      endpoints,
      durationSecs: seconds,
      concurrency: workers,
      inflight: w.inflight,
      connections: 4,
      valueSize: valueSizeBytes,
      readRatio: w.readRatio,
      keySpace,
      warmupSecs: 1,
      consistency: w.consistency,
      timeoutMs: 5_000,
    });
    const row = rowFrom(w.name, r, w.kind, w.seed);
    rows.push(row);
    console.log(
      `  ${w.name.padEnd(26)} ${row.clients.padEnd(7)} ${fmtInt(row.opsPerSec).padStart(8)} ops/s` +
        `  p50 ${fmtMs(row.p50Ms)} ms  p99 ${fmtMs(row.p99Ms)} ms  errors ${row.errors}`,
    );
  }

  const single = new KVClient({ endpoints: [cluster.node(leader).addr], timeoutMs: 5_000 });
  try {
    for (const op of ["put", "get"] as const) {
      const s = await sequential(single, op, op === "put" ? 2_000 : 5_000);
      rows.push({
        workload: `sequential ${op} (1 client)`,
        clients: "1 x 1",
        ...s,
        errors: "0",
        seed: "–",
      });
      console.log(
        `  sequential ${op}: ${fmtInt(s.opsPerSec)} ops/s p50 ${fmtMs(s.p50Ms)} ms`,
      );
    }
  } finally {
    single.close();
  }

  const rss = await Promise.all(
    cluster.nodes.map(async (n) => `${n.id} ${(await rssMiB(n.process!.pid)).toFixed(0)} MiB`),
  );

  const failovers: number[] = [];
  for (let i = 0; i < failoverRounds; i++) {
    const ms = await failoverMs(cluster);
    failovers.push(ms);
    console.log(`  failover ${i + 1}: ${fmtInt(ms)} ms`);
  }
  failovers.sort((a, b) => a - b);
  const failoverMedian = failovers[Math.floor(failovers.length / 2)];

  const table = [
    `| workload | workers x in-flight | ops/s | p50 ms | p99 ms | p999 ms | errors | seed's claim |`,
    `|---|---|---:|---:|---:|---:|---|---|`,
    ...rows.map((r) =>
      `| ${r.workload} | ${r.clients} | ${fmtInt(r.opsPerSec)} | ${fmtMs(r.p50Ms)} | ${
        fmtMs(r.p99Ms)
      } | ${fmtMs(r.p999Ms)} | ${r.errors} | ${r.seed} |`
    ),
    `| leader failover (kill -9, 100/s writer) | median of ${failovers.length} | – | ${
      fmtInt(failoverMedian)
    } ms | – | – | – | election < 5 ms |`,
  ].join("\n");
  const report = [
    `Machine: ${machine}. Disk: ${fmtInt(fsyncRate)} raw 64 B write+fdatasync/s.`,
    `Setup: 3 nodes on 127.0.0.1, fsync on, ${valueSizeBytes}-byte values, ${keySpace} keys, ` +
    `${seconds} s per workload after 1 s warm-up; the load generator (bench engine of ` +
    "`rustkvd-cli bench`, gRPC, 4 connections) runs on the same machine.",
    "",
    table,
    "",
    `Failover samples: ${failovers.map((f) => `${fmtInt(f)} ms`).join(", ")}. ` +
    `RSS after the load runs: ${rss.join(", ")}.`,
  ].join("\n");
  console.log(`\n${report}`);

  if (!values["no-results"]) {
    const path = new URL("./RESULTS.md", import.meta.url);
    await Deno.writeTextFile(
      path,
      [
        "# Cluster benchmark results",
        "",
        `Written by \`deno task bench cluster\` on ${new Date().toISOString().slice(0, 10)}.`,
        "Rerun it to replace this file; compare ratios measured in one run, not absolutes across machines.",
        "",
        report,
        "",
      ].join("\n"),
    );
    // Formatted as the repository's `deno fmt --check` expects, so a fresh run can be committed.
    await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", path.pathname] }).output();
    console.log(`\nwrote ${path.pathname}`);
  }
}

if (import.meta.main) await main(Deno.args);
