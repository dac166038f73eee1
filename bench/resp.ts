/**
 * RESP listener benchmark (`deno task bench resp`): starts a fresh 3-node
 * cluster of real processes, each with --resp-addr, and drives the leader's
 * RESP port with `redis-benchmark` (SET and GET, 64 clients, 64-byte
 * values) without and with pipelining (-P 16). Prints the setup and
 * ops/s, p50 and p99 per row. Skips with a message when redis-benchmark is
 * not installed (`apt-get install -y redis-tools`); never part of the tests.
 *
 *   deno task bench resp [--requests N] [--clients C] [--size BYTES]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { freePort, TestCluster } from "../tests/e2e/cluster.ts";

/** One measured row. */
interface Row {
  test: string;
  pipeline: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
}

async function hasRedisBenchmark(): Promise<boolean> {
  try {
    const out = await new Deno.Command("redis-benchmark", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

/** Runs redis-benchmark once and parses its --csv output. */
async function run(
  port: number,
  opts: { requests: number; clients: number; size: number; pipeline: number },
): Promise<Row[]> {
  const out = await new Deno.Command("redis-benchmark", {
    args: [
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      "-c",
      String(opts.clients),
      "-n",
      String(opts.requests),
      "-d",
      String(opts.size),
      "-P",
      String(opts.pipeline),
      "-r",
      "100000",
      "-t",
      "set,get",
      "--csv",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`redis-benchmark failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  const rows: Row[] = [];
  for (const line of text.split("\n")) {
    const cells = line.split(",").map((c) => c.replace(/"/g, ""));
    if (cells.length < 7 || cells[0] === "test") continue;
    rows.push({
      test: cells[0],
      pipeline: opts.pipeline,
      rps: Number(cells[1]),
      p50Ms: Number(cells[4]),
      p99Ms: Number(cells[6]),
    });
  }
  return rows;
}

/** Entry point for bench/main.ts. */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      requests: { type: "string", default: "100000" },
      clients: { type: "string", default: "64" },
      size: { type: "string", default: "64" },
    },
  });
  if (!(await hasRedisBenchmark())) {
    console.log("skipped: redis-benchmark is not installed (apt-get install -y redis-tools)");
    return;
  }
  const requests = Number(values.requests);
  const clients = Number(values.clients);
  const size = Number(values.size);
  const respPorts = new Map<string, number>();
  await using cluster = await TestCluster.start(3, {
    extraArgs: ["--log-level", "warn"],
    nodeArgs: (id) => {
      const port = freePort();
      respPorts.set(id, port);
      return ["--resp-addr", `127.0.0.1:${port}`];
    },
  });
  const leader = await cluster.waitForLeader();
  console.log(
    `setup: 3 nodes (real processes, fsync on) on 127.0.0.1, ${navigator.hardwareConcurrency} cores; ` +
      `redis-benchmark against the leader ${leader}, -c ${clients} -n ${requests} -d ${size} -r 100000`,
  );
  const rows: Row[] = [];
  for (const pipeline of [1, 16]) {
    try {
      rows.push(...await run(respPorts.get(leader)!, { requests, clients, size, pipeline }));
    } catch (e) {
      console.log(`-P ${pipeline}: ${(e as Error).message}`);
    }
  }
  console.log("| test | -P | ops/s | p50 ms | p99 ms |");
  console.log("| --- | --- | --- | --- | --- |");
  for (const r of rows) {
    console.log(`| ${r.test} | ${r.pipeline} | ${Math.round(r.rps)} | ${r.p50Ms} | ${r.p99Ms} |`);
  }
}

if (import.meta.main) await main(Deno.args);
