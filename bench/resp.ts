/**
 * `deno task bench resp`: the Redis-protocol listener under `redis-benchmark`.
 * Starts a fresh 3-node cluster of real processes (fsync on), each with
 * --resp-addr, writes every key of the key space once, then measures SET and
 * GET without pipelining (-P 1) and with -P 16 in two placements: every
 * client on the leader, and the clients spread over all three nodes (one
 * redis-benchmark per node, run at once). Prints the setup and one table
 * with the seed's figures beside the rows, and writes them into the resp
 * section of bench/RESULTS.md.
 *
 * Unless `--requests` fixes it, each row's request count is scaled from a
 * short probe so the row lasts at least 3 s: a pipelined row over in a
 * fraction of a second measures connection setup, not the server.
 *
 * When redis-benchmark is missing it installs `redis-tools` with apt-get if
 * it may (root or passwordless sudo, bounded in time); otherwise it prints
 * one "skipped: ..." line and returns. Never part of the tests.
 *
 *   deno task bench resp [--quick] [--requests N] [--clients C] [--size BYTES]
 *                        [--keys K] [--no-results]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { TestCluster } from "../tests/e2e/cluster.ts";
import { fmtInt, fmtMs } from "./format.ts";
import { cpuModel } from "./proc.ts";
import { writeResultsSection } from "./results_file.ts";

const dec = new TextDecoder();
const enc = new TextEncoder();

type Test = "SET" | "GET";

/** The seed README's claims, printed beside the rows that measure the same operation. */
const seedClaims: Record<Test, string> = {
  SET: "writes 210,000/s p50 2.1 p99 6.3",
  GET: "reads 840,000/s p50 0.8 p99 2.1",
};

const pipelines = [1, 16];
const maxRequests = 20_000_000;
const installTimeoutMs = 180_000;

/** How long rows run: scaled to a duration, or a fixed request count. */
interface Plan {
  /** Requests per row when `--requests` fixes them. */
  fixedRequests?: number;
  /** Duration a scaled row aims for. */
  targetSeconds: number;
  /** Shortest duration a scaled row is accepted at. */
  minSeconds: number;
}

/** Where one redis-benchmark process sends its load. */
interface Target {
  port: number;
  clients: number;
}

/** One redis-benchmark process's figures for one test. */
interface Run {
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
}

/** One placement's figures for one test at one pipeline depth. */
interface Measured {
  requests: number;
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Error replies the nodes sent meanwhile (INFO total_error_replies); redis-benchmark counts them as requests done. */
  errors: number;
}

/** One table row: a measurement, or why it failed. */
interface Row {
  placement: string;
  test: Test;
  pipeline: number;
  clients: string;
  measured?: Measured;
  error?: string;
}

// ---------------------------------------------------------------------------
// Finding or installing redis-benchmark

async function runQuiet(cmd: string, args: string[], timeoutMs: number): Promise<
  { ok: boolean; out: string; err: string }
> {
  try {
    const r = await new Deno.Command(cmd, {
      args,
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(timeoutMs),
    }).output();
    return { ok: r.success, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
  } catch (e) {
    return { ok: false, out: "", err: (e as Error).message };
  }
}

async function benchmarkVersion(): Promise<string | undefined> {
  const r = await runQuiet("redis-benchmark", ["--version"], 10_000);
  return r.ok ? r.out.trim() : undefined;
}

/** The command prefix that runs apt-get as root, or undefined when we may not. */
async function asRoot(): Promise<string[] | undefined> {
  if (Deno.build.os !== "linux") return undefined;
  if (Deno.uid() === 0) return [];
  return (await runQuiet("sudo", ["-n", "true"], 5_000)).ok ? ["sudo", "-n"] : undefined;
}

/** Installs redis-tools with apt-get (updating the lists once if needed); returns why it could not. */
async function installRedisTools(): Promise<string | undefined> {
  const prefix = await asRoot();
  if (!prefix) return "not root and no passwordless sudo, so redis-tools cannot be installed";
  const deadline = Date.now() + installTimeoutMs;
  const apt = (args: string[]) => {
    const [cmd, ...rest] = [...prefix, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", ...args];
    return runQuiet(cmd, rest, Math.max(1_000, deadline - Date.now()));
  };
  console.log("redis-benchmark not found; installing redis-tools with apt-get ...");
  let r = await apt(["install", "-y", "-q", "redis-tools"]);
  if (!r.ok && Date.now() < deadline) {
    await apt(["update", "-q"]);
    r = await apt(["install", "-y", "-q", "redis-tools"]);
  }
  if (r.ok) return undefined;
  const why = r.err.trim().split("\n").at(-1) || "no output";
  return Date.now() >= deadline
    ? `apt-get install redis-tools did not finish within ${installTimeoutMs / 1000} s`
    : `apt-get install redis-tools failed: ${why}`;
}

/** redis-benchmark's version, installing it first when missing and allowed; else why not. */
async function ensureRedisBenchmark(): Promise<{ version: string } | { skip: string }> {
  const found = await benchmarkVersion();
  if (found) return { version: found };
  const failure = await installRedisTools();
  if (failure) return { skip: `redis-benchmark is not installed and ${failure}` };
  const installed = await benchmarkVersion();
  return installed
    ? { version: installed }
    : { skip: "redis-tools was installed but redis-benchmark is still not on PATH" };
}

// ---------------------------------------------------------------------------
// Writing the key space once (a minimal RESP client)

function respCommand(args: string[]): Uint8Array {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) parts.push(`$${enc.encode(a).length}\r\n${a}\r\n`);
  return enc.encode(parts.join(""));
}

/** The key redis-benchmark's `-r` expands `key:__rand_int__` to: 12 digits. */
function benchKey(i: number): string {
  return `key:${String(i).padStart(12, "0")}`;
}

/**
 * Writes every key of redis-benchmark's key space through the leader's RESP
 * port with MSET, one command at a time, and returns DBSIZE afterwards, so
 * the GET rows read existing keys rather than misses.
 */
async function populate(port: number, keys: number, size: number, timeoutMs = 300_000): Promise<
  { perCommand: number; dbsize: number }
> {
  const perCommand = Math.max(1, Math.min(1_000, Math.floor((256 * 1024) / (size + 40))));
  const value = "x".repeat(size);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  const buf = new Uint8Array(64 * 1024);
  let pending = "";
  const reply = async (): Promise<string> => {
    while (!pending.includes("\r\n")) {
      const n = await conn.read(buf);
      if (n === null) throw new Error("RESP connection closed while populating");
      pending += dec.decode(buf.subarray(0, n));
    }
    const end = pending.indexOf("\r\n");
    const line = pending.slice(0, end);
    pending = pending.slice(end + 2);
    if (line.startsWith("-")) throw new Error(`populating failed: ${line.slice(1)}`);
    return line;
  };
  const send = async (args: string[]): Promise<string> => {
    const bytes = respCommand(args);
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
    return await reply();
  };
  try {
    for (let first = 0; first < keys; first += perCommand) {
      const args = ["MSET"];
      for (let i = first; i < Math.min(keys, first + perCommand); i++) {
        args.push(benchKey(i), value);
      }
      await send(args);
    }
    const dbsize = Number((await send(["DBSIZE"])).slice(1));
    return { perCommand, dbsize };
  } catch (e) {
    throw new Error(`populating the key space: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timeout */ }
  }
}

// ---------------------------------------------------------------------------
// Running redis-benchmark

/** A node's count of error replies so far (INFO stats total_error_replies). */
async function errorReplies(port: number, timeoutMs = 10_000): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    const bytes = respCommand(["INFO", "stats"]);
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
    const buf = new Uint8Array(64 * 1024);
    let text = "";
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) throw new Error("RESP connection closed during INFO");
      text += dec.decode(buf.subarray(0, n));
      const head = /^\$(\d+)\r\n/.exec(text);
      if (text.startsWith("-")) throw new Error(`INFO failed: ${text.trim()}`);
      if (head && text.length >= head[0].length + Number(head[1])) break;
    }
    const count = /^total_error_replies:(\d+)\r$/m.exec(text);
    if (!count) throw new Error(`no total_error_replies in INFO stats of port ${port}`);
    return Number(count[1]);
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timeout */ }
  }
}

/** Parses `--csv` output by its header, so a column added in a later release does not shift ours. */
function parseCsv(text: string): { rps: number; p50Ms: number; p99Ms: number } {
  const lines = text.split("\n").filter((l) => l.startsWith('"')).map((l) =>
    l.split(",").map((c) => c.replace(/"/g, ""))
  );
  const header = lines.find((cells) => cells[0] === "test");
  const row = lines.find((cells) => cells[0] !== "test");
  if (!header || !row) throw new Error(`no CSV result in redis-benchmark output: ${text.trim()}`);
  const col = (name: string) => {
    const i = header.indexOf(name);
    const v = Number(row[i]);
    if (i < 0 || !Number.isFinite(v)) throw new Error(`no ${name} in: ${row.join(",")}`);
    return v;
  };
  if (col("rps") <= 0) throw new Error(`redis-benchmark reported 0 requests/s: ${row.join(",")}`);
  return { rps: col("rps"), p50Ms: col("p50_latency_ms"), p99Ms: col("p99_latency_ms") };
}

/** One redis-benchmark process; killed (and awaited) when `signal` aborts. */
async function runBenchmark(
  target: Target,
  o: { test: Test; requests: number; pipeline: number; size: number; keys: number },
  signal: AbortSignal,
): Promise<Run> {
  signal.throwIfAborted();
  const args = [
    ...["-h", "127.0.0.1", "-p", String(target.port), "-c", String(target.clients)],
    ...["-n", String(o.requests), "-d", String(o.size), "-P", String(o.pipeline)],
    ...["-r", String(o.keys), "-t", o.test.toLowerCase(), "--csv"],
  ];
  const child = new Deno.Command("redis-benchmark", { args, stdout: "piped", stderr: "piped" })
    .spawn();
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
  };
  signal.addEventListener("abort", kill);
  try {
    const out = await child.output();
    if (signal.aborted) throw signal.reason;
    const text = dec.decode(out.stdout);
    if (!out.success) {
      const err = (dec.decode(out.stderr).trim() || text.trim()).split("\n").at(-1);
      throw new Error(`redis-benchmark on port ${target.port} exited with ${out.code}: ${err}`);
    }
    return { requests: o.requests, ...parseCsv(text) };
  } finally {
    signal.removeEventListener("abort", kill);
  }
}

/**
 * Runs one redis-benchmark per target at once, the requests split like the
 * clients. ops/s is all requests over the slowest process's time (at most
 * the sum of the processes' ops/s, which would count the tail where the
 * others already stopped); p50 and p99 are the worst of the processes.
 */
async function measure(
  targets: Target[],
  o: { test: Test; requests: number; pipeline: number; size: number; keys: number },
  timeoutMs: number,
): Promise<Measured> {
  const clients = targets.reduce((s, t) => s + t.clients, 0);
  const errorsBefore = await Promise.all(targets.map((t) => errorReplies(t.port)));
  const ctl = new AbortController();
  const timer = setTimeout(
    () => ctl.abort(new Error(`redis-benchmark did not finish within ${timeoutMs / 1000} s`)),
    timeoutMs,
  );
  const settled = await Promise.allSettled(targets.map((t) => {
    const requests = Math.max(t.clients, Math.round((o.requests * t.clients) / clients));
    return runBenchmark(t, { ...o, requests }, ctl.signal).catch((e) => {
      ctl.abort(e); // the others are killed, not left running against a failed row
      throw e;
    });
  }));
  clearTimeout(timer);
  const failed = settled.find((s) => s.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
  const runs = settled.map((s) => (s as PromiseFulfilledResult<Run>).value);
  const requests = runs.reduce((s, r) => s + r.requests, 0);
  const seconds = Math.max(...runs.map((r) => r.requests / r.rps));
  const errorsAfter = await Promise.all(targets.map((t) => errorReplies(t.port)));
  return {
    errors: errorsAfter.reduce((s, n, i) => s + n - errorsBefore[i], 0),
    requests,
    seconds,
    opsPerSec: requests / seconds,
    p50Ms: Math.max(...runs.map((r) => r.p50Ms)),
    p99Ms: Math.max(...runs.map((r) => r.p99Ms)),
  };
}

/**
 * One row: at a fixed request count, or from a short probe (or the ops/s of
 * the same test in the other placement) scaled until the row lasts
 * `plan.minSeconds`.
 */
async function measureRow(
  targets: Target[],
  o: { test: Test; pipeline: number; size: number; keys: number },
  plan: Plan,
  estimateOpsPerSec: number | undefined,
): Promise<Measured> {
  if (plan.fixedRequests !== undefined) {
    return await measure(targets, { ...o, requests: plan.fixedRequests }, 1_800_000);
  }
  const clients = targets.reduce((s, t) => s + t.clients, 0);
  const floor = clients * o.pipeline * 2;
  let requests = estimateOpsPerSec
    ? Math.ceil(estimateOpsPerSec * plan.targetSeconds)
    : clients * o.pipeline * 10;
  const timeoutMs = Math.max(60_000, plan.targetSeconds * 20_000);
  for (let attempt = 1;; attempt++) {
    requests = Math.min(maxRequests, Math.max(floor, requests));
    const m = await measure(targets, { ...o, requests }, timeoutMs);
    if (m.seconds >= plan.minSeconds || attempt === 4 || requests === maxRequests) return m;
    requests = Math.ceil(m.requests * plan.targetSeconds / Math.max(m.seconds, 0.01));
  }
}

// ---------------------------------------------------------------------------
// Report

function splitClients(clients: number, parts: number): number[] {
  return Array.from(
    { length: parts },
    (_, i) => Math.floor(clients / parts) + (i < clients % parts ? 1 : 0),
  );
}

function tableLines(rows: Row[]): string[] {
  return [
    "| placement | test | -P | clients | requests | s | ops/s | p50 ms | p99 ms | errors | seed's figure |",
    "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ...rows.map((r) => {
      const m = r.measured;
      const cells = m
        ? [fmtInt(m.requests), m.seconds.toFixed(1), fmtInt(m.opsPerSec), fmtMs(m.p50Ms)]
          .concat(fmtMs(m.p99Ms), fmtInt(m.errors))
        : ["–", "–", "failed", "–", "–", "–"];
      return `| ${r.placement} | ${r.test} | ${r.pipeline} | ${r.clients} | ${
        cells.join(" | ")
      } | ${seedClaims[r.test]} |`;
    }),
  ];
}

function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  const n = Number(raw ?? fallback);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer`);
  return n;
}

/** Runs the RESP benchmark, prints its setup and table, and records them in bench/RESULTS.md. */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      requests: { type: "string" },
      clients: { type: "string" },
      size: { type: "string" },
      keys: { type: "string" },
      quick: { type: "boolean", default: false },
      "no-results": { type: "boolean", default: false },
    },
  });
  const quick = values.quick;
  const clients = positiveInt("clients", values.clients, 64);
  const size = positiveInt("size", values.size, 64);
  const keys = positiveInt("keys", values.keys, quick ? 10_000 : 100_000);
  const plan: Plan = {
    fixedRequests: values.requests === undefined
      ? undefined
      : positiveInt("requests", values.requests, 0),
    targetSeconds: quick ? 0.5 : 5,
    minSeconds: quick ? 0.3 : 3,
  };
  if (clients < 3) throw new Error("--clients must be at least 3 (a third per node when spread)");

  const found = await ensureRedisBenchmark();
  if ("skip" in found) {
    console.log(`skipped: ${found.skip}; install redis-tools (apt-get install -y redis-tools)`);
    return;
  }
  const spread = splitClients(clients, 3);
  const setup: Array<[string, string]> = [
    [
      "machine",
      `${navigator.hardwareConcurrency} cores, ${await cpuModel()}, Deno ${Deno.version.deno}`,
    ],
    [
      "cluster",
      "3 nodes on 127.0.0.1 (real processes, fsync on), each with --resp-addr; " +
      `${found.version} on the same machine`,
    ],
    [
      "load",
      `${clients} clients, pipeline depth ${pipelines.join(" and ")} (-P), ${size}-byte values ` +
      `(-d), ${fmtInt(keys)} keys (-r); GET is linearizable (the RESP default: the leader ` +
      "answers from its read lease, a follower asks the leader for its read index), SET goes " +
      "through Raft (followers relay it to the leader); redis-benchmark is closed-loop per " +
      "client and counts an error reply as a request done, so errors = the error replies the " +
      "nodes sent during the row (INFO total_error_replies)",
    ],
    [
      "requests per test",
      plan.fixedRequests !== undefined
        ? `${fmtInt(plan.fixedRequests)} per row (--requests; split like the clients when spread)`
        : `scaled from a short probe so each row lasts at least ${plan.minSeconds} s ` +
          `(aiming at ${plan.targetSeconds} s); the count is in the table`,
    ],
    [
      "placements",
      "leader: every client on the leader's RESP port; all 3 nodes: one redis-benchmark per " +
      `node at once with ${spread.join("/")} clients and the requests split alike, ops/s = all ` +
      "requests / the slowest process's time (at most the sum of the three), p50 and p99 = the " +
      "worst of the three",
    ],
    [
      "keys",
      `every key of the key space written once with MSET through the leader before the first ` +
      "row, so GETs hit existing keys",
    ],
  ];
  console.log(`rustkvd RESP benchmark${quick ? " (--quick)" : ""}`);
  for (const [k, v] of setup) console.log(`  ${k}: ${v}`);

  const rows: Row[] = [];
  {
    // Port 0: each node binds a free RESP port and prints it ("serving RESP on").
    await using cluster = await TestCluster.start(3, {
      extraArgs: ["--log-level", "warn", "--resp-addr", "127.0.0.1:0"],
    });
    const respPorts = new Map(cluster.nodes.map((n) => [n.id, n.respPort!]));
    const first = await cluster.waitForLeader();
    const began = performance.now();
    const filled = await populate(respPorts.get(first)!, keys, size);
    const fillSecs = (performance.now() - began) / 1000;
    if (filled.dbsize < keys) {
      throw new Error(`populated ${fmtInt(keys)} keys but DBSIZE is ${filled.dbsize}`);
    }
    const filledLine = `populated ${fmtInt(keys)} keys in ${fillSecs.toFixed(1)} s ` +
      `(MSET, ${fmtInt(filled.perCommand)} keys per command; DBSIZE ${fmtInt(filled.dbsize)})`;
    console.log(`  ${filledLine}`);
    setup.push(["populated", filledLine.replace(/^populated /, "")]);

    const estimates = new Map<string, number>();
    for (const placement of ["leader", "spread"] as const) {
      for (const pipeline of pipelines) {
        for (const test of ["SET", "GET"] as const) {
          let name = "all 3 nodes";
          let targets = cluster.nodes.map((n, i) => ({
            port: respPorts.get(n.id)!,
            clients: spread[i],
          }));
          if (placement === "leader") {
            const leader = await cluster.waitForLeader();
            name = `leader (${leader})`;
            targets = [{ port: respPorts.get(leader)!, clients }];
          }
          const row: Row = {
            placement: name,
            test,
            pipeline,
            clients: targets.map((t) => t.clients).join("/"),
          };
          const key = `${test}/${pipeline}`;
          try {
            const m = await measureRow(
              targets,
              { test, pipeline, size, keys },
              plan,
              estimates.get(key),
            );
            row.measured = m;
            estimates.set(key, m.opsPerSec);
            console.log(
              `  ${name} ${test} -P ${pipeline}: ${fmtInt(m.opsPerSec)} ops/s, p50 ${
                fmtMs(m.p50Ms)
              } ` +
                `ms, p99 ${fmtMs(m.p99Ms)} ms (${fmtInt(m.requests)} requests, ${
                  m.seconds.toFixed(1)
                } s)`,
            );
          } catch (e) {
            row.error = (e as Error).message;
            console.log(`  ${name} ${test} -P ${pipeline}: failed: ${row.error}`);
          }
          rows.push(row);
        }
      }
    }
  }

  const failures = rows.filter((r) => r.error)
    .map((r) => `${r.placement} ${r.test} -P ${r.pipeline}: ${r.error}`);
  const table = tableLines(rows);
  const notes = failures.length > 0 ? ["", "Failed rows:", ...failures.map((f) => `- ${f}`)] : [];
  console.log(["", ...table, ...notes].join("\n"));
  if (!values["no-results"]) {
    const body = [
      "## RESP: `deno task bench resp`",
      "",
      `Written by \`deno task bench resp${quick ? " --quick" : ""}\` on ` +
      `${new Date().toISOString().slice(0, 10)}; rerun it to replace this section.`,
      "",
      ...setup.map(([k, v]) => `- ${k}: ${v}`),
      "",
      ...table,
      ...notes,
    ].join("\n");
    console.log(`\nwrote ${await writeResultsSection("resp", body)}`);
  }
}

if (import.meta.main) await main(Deno.args);
