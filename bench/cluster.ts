/**
 * `deno task bench cluster`: a fresh local 3-node cluster (real processes,
 * fsync on) driven through the gRPC API by the bench engine of
 * `rustkvd-cli bench`. It measures write-only, linearizable and serializable
 * read-only and 80 % read workloads with 64 workers at 1 and several requests
 * in flight each, single-client sequential latency, leader failover (kill -9
 * under a 100/s writer, median of 3) and each node's RSS, then prints one
 * table with the seed's claims beside the figures and writes it into its
 * section of `bench/RESULTS.md` (bench/results_file.ts).
 *
 * When an `etcd` binary is on PATH it then starts a fresh 3-member etcd
 * cluster (its defaults: fsync on) and runs the same workloads against it
 * with the same load generator through etcd's v3 gRPC API, and the table
 * gains etcd's figure and the ratio rustkvd/etcd per row: the one comparison
 * these noisy 2-core machines make meaningful is two stores measured in one
 * run. The two clusters never run at the same time.
 *
 * The load generator shares the machine with the three servers, as in the
 * etcd figures issue 10 quotes (a grpc-js load generator beside etcd 3.4 on
 * a 2-core machine), so the numbers are comparable to those and not to a
 * dedicated client machine.
 *
 * Options: `--seconds N` per workload (default 5), `--quick` (2 s, 1 failover
 * round, for both stores), `--no-results` (do not write bench/RESULTS.md),
 * `--no-etcd` (skip the etcd rows).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { connectKVClient } from "../lib/client/bench.ts";
import { TestCluster } from "../tests/e2e/cluster.ts";
import { type BenchSystem, load, type Measurements, measureSystem } from "./cluster_workloads.ts";
import { connectEtcd } from "./etcd_client.ts";
import { EtcdCluster, etcdVersion } from "./etcd_cluster.ts";
import { clusterSection, compareTable, etcdNotes, rssLine, soloTable } from "./cluster_report.ts";
import { fmtInt } from "./format.ts";
import { cpuModel } from "./proc.ts";
import { writeResultsSection } from "./results_file.ts";
import { rawFsyncRate } from "./storage.ts";

/** rustkvd's test cluster as the workloads see a cluster. */
function rustkvdSystem(cluster: TestCluster): BenchSystem {
  return {
    connect: connectKVClient,
    endpoints: cluster.nodes.map((n) => n.addr),
    waitForLeader: (timeoutMs) => cluster.waitForLeader(timeoutMs),
    addrOf: (id) => cluster.node(id).addr,
    kill: (id) => cluster.node(id).kill(),
    restart: (id) => cluster.node(id).start(),
    pids: () =>
      cluster.nodes.filter((n) => n.process).map((n) => ({ member: n.id, pid: n.process!.pid })),
  };
}

/** etcd's cluster as the workloads see a cluster. */
function etcdSystem(cluster: EtcdCluster): BenchSystem {
  return {
    connect: connectEtcd,
    endpoints: cluster.endpoints,
    waitForLeader: (timeoutMs) => cluster.waitForLeader(timeoutMs),
    addrOf: (name) => cluster.member(name).addr,
    kill: (name) => cluster.member(name).kill(),
    restart: (name) => Promise.resolve(cluster.member(name).start()),
    pids: () =>
      cluster.members.filter((m) => m.process).map((m) => ({
        member: m.name,
        pid: m.process!.pid,
      })),
  };
}

/** Runs the cluster benchmark and prints its table. */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      seconds: { type: "string" },
      quick: { type: "boolean", default: false },
      "no-results": { type: "boolean", default: false },
      "no-etcd": { type: "boolean", default: false },
    },
  });
  const seconds = Number(values.seconds ?? (values.quick ? 2 : 5));
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 600) {
    throw new Error(`--seconds must be in (0, 600], got ${values.seconds}`);
  }
  const failoverRounds = values.quick ? 1 : 3;
  const log = (line: string) => console.log(line);

  const probeDir = await Deno.makeTempDir({ prefix: "rustkvd-bench-fsync-" });
  const fsyncRate = await rawFsyncRate(probeDir, 1_000);
  await Deno.remove(probeDir, { recursive: true });
  const etcd = values["no-etcd"] ? undefined : await etcdVersion();

  const cores = navigator.hardwareConcurrency;
  const machine = `${cores} cores, ${await cpuModel()}, Deno ${Deno.version.deno}`;
  console.log("rustkvd cluster benchmark");
  console.log(`  machine: ${machine}`);
  console.log(`  disk: ${fmtInt(fsyncRate)} raw 64 B write+fdatasync/s`);
  console.log(
    `  cluster: 3 nodes on 127.0.0.1 (real processes, fsync on); load generator on the same machine`,
  );
  console.log(
    `  load: ${load.workers} workers, ${load.valueSizeBytes}-byte values, ${load.keySpace} keys, ` +
      `${seconds} s per workload after ${load.warmupSecs} s warm-up, gRPC API`,
  );
  if (values["no-etcd"]) console.log("  etcd: skipped (--no-etcd)");
  else if (etcd === undefined) {
    console.log(
      "etcd not found on PATH; install the Debian package etcd-server for the side-by-side rows",
    );
  } else {
    console.log(
      `  etcd: ${etcd} on PATH; the same workloads on 3 etcd members afterwards ` +
        "(its defaults, fsync on)",
    );
  }

  const opts = { seconds, failoverRounds, log };
  let ours: Measurements;
  {
    console.log("rustkvd:");
    await using cluster = await TestCluster.start(3);
    ours = await measureSystem(rustkvdSystem(cluster), opts);
  }
  let theirs: Measurements | undefined;
  let etcdFailure: string | undefined;
  if (etcd !== undefined) {
    console.log(`etcd ${etcd}:`);
    try {
      await using cluster = await EtcdCluster.start(3);
      theirs = await measureSystem(etcdSystem(cluster), opts);
    } catch (e) {
      // The rustkvd rows took minutes to measure: report them without etcd rather than lose them.
      etcdFailure = (e as Error).message;
      console.log(`etcd side-by-side run failed; rustkvd rows only:\n${etcdFailure}`);
    }
  }

  const report = [
    `Machine: ${machine}. Disk: ${fmtInt(fsyncRate)} raw 64 B write+fdatasync/s.`,
    `Setup: 3 nodes on 127.0.0.1, fsync on, ${load.valueSizeBytes}-byte values, ` +
    `${load.keySpace} keys, ${seconds} s per workload after ${load.warmupSecs} s warm-up; ` +
    "the load generator (bench engine of `rustkvd-cli bench`, gRPC, " +
    `${load.connections} connections) runs on the same machine. It is closed-loop: a worker ` +
    "sends its next request when an answer comes, so a stall delays few samples (coordinated " +
    "omission): read the percentiles as those of answered requests, not of a fixed-rate load. " +
    "rustkvd runs with its defaults: 50 ms heartbeat, 150 ms election timeout (randomized up to " +
    "300 ms), linearizable reads served from the leader's read lease (no quorum round per read); " +
    "serializable reads go to the first endpoint (a follower or the leader, as elections fell). " +
    "The sequential rows time 2,000 puts and 5,000 gets after 100 untimed ones.",
    ...(theirs ? ["", ...etcdNotes(etcd!, theirs)] : []),
    ...(etcdFailure
      ? ["", `etcd ${etcd} was found but its run failed: ${etcdFailure.split("\n")[0]}`]
      : []),
    "",
    theirs ? compareTable(ours, theirs) : soloTable(ours),
    "",
    `Failover samples: ${ours.failoversMs.map((f) => `${fmtInt(f)} ms`).join(", ")}` +
    (theirs ? ` (etcd: ${theirs.failoversMs.map((f) => `${fmtInt(f)} ms`).join(", ")})` : "") +
    `. RSS after the load runs: ${rssLine(ours, theirs)}.`,
  ].join("\n");
  console.log(`\n${report}`);

  if (!values["no-results"]) {
    console.log(`\nwrote ${await writeResultsSection("cluster", clusterSection(report))}`);
  }
}

if (import.meta.main) await main(Deno.args);
