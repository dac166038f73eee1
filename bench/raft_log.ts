/**
 * The durable Raft write path (`deno task bench raft-log`): real nodes in
 * this process — the Raft log on disk with fsync, the LSM state machine, the
 * native peer channel on loopback — driven through KVNode.put by concurrent
 * proposers, one write in flight each.
 *
 * 1. One node: appends per second, fsyncs per second and entries per fsync
 *    (group commit: proposals that arrive while an fsync runs share the next).
 * 2. Three nodes: commit throughput on the leader and where a write's time
 *    goes — persist (proposed -> in the leader's durable log), replicate
 *    (durable locally -> known committed, i.e. a follower's durable ack came
 *    back) and apply (committed -> applied to the state machine).
 *
 *   deno task bench raft-log [--seconds S] [--proposers N] [--size BYTES]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Histogram } from "../lib/client/histogram.ts";
import { KVNode } from "../lib/node/kv_node.ts";
import type { EntryTimingObserver } from "../lib/node/replica.ts";
import { Logger } from "../lib/node/logger.ts";
import { parseServerArgs } from "../lib/server/config.ts";
import { type RunningGrpcServer, startGrpcServer } from "../lib/server/grpc_server.ts";
import { rawFsyncRate } from "./storage.ts";

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function ms(us: number): string {
  return (us / 1000).toFixed(2);
}

/** Per-stage latencies of the leader's entries, in microseconds. */
class StageTimer implements EntryTimingObserver {
  readonly persist = new Histogram();
  readonly replicate = new Histogram();
  readonly apply = new Histogram();
  #waiting: Array<{ index: number; at: number }>[] = [[], [], []];

  proposed(index: number): void {
    this.#waiting[0].push({ index, at: performance.now() });
  }
  persisted(upTo: number): void {
    this.#move(0, upTo, this.persist);
  }
  committed(upTo: number): void {
    this.#move(1, upTo, this.replicate);
  }
  applied(upTo: number): void {
    this.#move(2, upTo, this.apply);
  }

  #move(stage: number, upTo: number, h: Histogram): void {
    const q = this.#waiting[stage];
    const now = performance.now();
    let n = 0;
    while (n < q.length && q[n].index <= upTo) {
      h.record((now - q[n].at) * 1000);
      if (stage < 2) this.#waiting[stage + 1].push({ index: q[n].index, at: now });
      n++;
    }
    q.splice(0, n);
  }
}

interface Started {
  node: KVNode;
  server: RunningGrpcServer;
}

async function startNode(
  id: string,
  port: number,
  dir: string,
  initialCluster: string | undefined,
): Promise<Started> {
  const parsed = parseServerArgs([
    "--node-id",
    id,
    "--addr",
    `127.0.0.1:${port}`,
    "--data-dir",
    `${dir}/${id}`,
    "--log-level",
    "warn",
    ...(initialCluster ? ["--initial-cluster", initialCluster] : []),
  ]);
  if (parsed.kind !== "run") throw new Error(`bad bench config: ${JSON.stringify(parsed)}`);
  const node = await KVNode.start(parsed.config, { log: new Logger(id, "warn") });
  const server = await startGrpcServer(node, parsed.config.listenAddr);
  return { node, server };
}

async function waitForLeader(nodes: KVNode[]): Promise<KVNode> {
  for (let i = 0; i < 500; i++) {
    const leader = nodes.find((n) => n.replica.isLeader);
    if (leader) return leader;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("no leader after 10 s");
}

interface LoadResult {
  ops: number;
  seconds: number;
  latency: Histogram;
  syncs: number;
}

/** `proposers` loops of KVNode.put for `seconds`, one write in flight each. */
async function load(
  node: KVNode,
  proposers: number,
  seconds: number,
  size: number,
): Promise<LoadResult> {
  const value = new Uint8Array(size).fill(97);
  const enc = new TextEncoder();
  const latency = new Histogram();
  const syncs0 = node.store.syncCount;
  let ops = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: proposers }, async (_, p) => {
      for (let i = 0; performance.now() < end; i++) {
        const key = enc.encode(`p${p}-${i % 1000}`);
        const s = performance.now();
        await node.put(key, value);
        latency.record((performance.now() - s) * 1000);
        ops++;
      }
    }),
  );
  return {
    ops,
    seconds: (performance.now() - t0) / 1000,
    latency,
    syncs: node.store.syncCount - syncs0,
  };
}

/** Runs both parts and prints their tables. */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      seconds: { type: "string", default: "5" },
      proposers: { type: "string", default: "64" },
      size: { type: "string", default: "64" },
    },
    allowPositionals: true,
  });
  const seconds = Number(values.seconds);
  const proposers = Number(values.proposers);
  const size = Number(values.size);
  const dir = await Deno.makeTempDir({ prefix: "rustkvd-bench-raftlog-" });
  console.log("rustkvd durable Raft write path (real nodes in this process)");
  console.log(
    `  deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, data in ${dir}`,
  );
  console.log(
    `  ${proposers} proposers, 1 write in flight each, ${size}-byte values, ${seconds} s per part, ` +
      "fsync on (fdatasync per Raft log write)",
  );
  const started: Started[] = [];
  try {
    const fsync = await rawFsyncRate(dir, 1_000);
    console.log(`  raw fsync rate of this disk: ${fmt(fsync)}/s (64 B write + fdatasync)`);

    const single = await startNode("solo", freePort(), dir, undefined);
    started.push(single);
    await waitForLeader([single.node]);
    const a = await load(single.node, proposers, seconds, size);
    await single.server.close();
    await single.node.close();
    started.length = 0;

    const ports = [freePort(), freePort(), freePort()];
    const spec = ports.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(",");
    for (let i = 0; i < 3; i++) started.push(await startNode(`n${i + 1}`, ports[i], dir, spec));
    const leader = await waitForLeader(started.map((s) => s.node));
    const timer = new StageTimer();
    leader.replica.timing = timer;
    const b = await load(leader, proposers, seconds, size);
    leader.replica.timing = undefined;

    const row = (name: string, r: LoadResult) =>
      `| ${name.padEnd(24)} | ${fmt(r.ops / r.seconds).padStart(9)} | ${
        fmt(r.syncs / r.seconds).padStart(8)
      } | ${(r.ops / Math.max(1, r.syncs)).toFixed(1).padStart(9)} | ${
        ms(r.latency.percentile(50)).padStart(6)
      } | ${ms(r.latency.percentile(99)).padStart(6)} | ${
        ms(r.latency.percentile(99.9)).padStart(6)
      } |`;
    console.log("");
    console.log(
      "| setup                    |  writes/s | fsyncs/s | per fsync | p50 ms | p99 ms | p999 ms |",
    );
    console.log(
      "|--------------------------|-----------|----------|-----------|--------|--------|---------|",
    );
    console.log(row("1 node", a));
    console.log(row("3 nodes (leader's fsyncs)", b));
    console.log(
      "  (the three nodes share this process's one JavaScript thread: a lower bound for 3 processes)",
    );
    console.log("");
    console.log("Time split of a write on the 3-node leader (ms):");
    console.log("| stage                                   |  mean |   p50 |   p99 |");
    console.log("|-----------------------------------------|-------|-------|-------|");
    const stage = (name: string, h: Histogram) =>
      console.log(
        `| ${name.padEnd(39)} | ${ms(h.mean).padStart(5)} | ${ms(h.percentile(50)).padStart(5)} | ${
          ms(h.percentile(99)).padStart(5)
        } |`,
      );
    stage("persist: proposed -> durable in our log", timer.persist);
    stage("replicate: durable -> known committed", timer.replicate);
    stage("apply: committed -> applied", timer.apply);
  } finally {
    for (const s of started) {
      await s.server.close().catch(() => {});
      await s.node.close().catch(() => {});
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main(Deno.args);
