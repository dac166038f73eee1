/**
 * `deno task test:chaos [--schedules N] [--seed S] [--fuzz N]`: random fault
 * schedules (1–3 faults each, drawn from seed S + i) against fresh 3-node
 * clusters, then N fuzzed requests per RPC against one more cluster, and a
 * summary table: schedules by fault type, operations checked, acknowledged
 * writes verified, fuzzed requests per RPC, and violations, lost writes and
 * crashes (all must be 0). Exits 1 when anything failed; every failure names
 * the seed that replays it (`--seed S --schedules 1`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { faultKinds, randomSchedule, runSchedule } from "./e2e/chaos.ts";
import { runFuzz } from "./e2e/fuzz.ts";
import { killAllTestNodes } from "./e2e/cluster.ts";

// Interrupted (Ctrl-C, kill): no server process outlives the harness.
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(sig, () => {
    console.log(`${sig}: killed ${killAllTestNodes()} server processes`);
    Deno.exit(130);
  });
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    schedules: { type: "string", default: "20" },
    seed: { type: "string", default: String(Date.now() % 1_000_000) },
    fuzz: { type: "string", default: "1000" },
  },
});
const schedules = Number(values.schedules);
const seed = Number(values.seed);
const fuzzPerRpc = Number(values.fuzz);
console.log(
  `chaos: ${schedules} schedules from seed ${seed}, ${fuzzPerRpc} fuzzed requests per RPC`,
);

const byFault = new Map<string, { runs: number; failed: number }>(
  faultKinds.map((f) => [f, { runs: 0, failed: 0 }]),
);
let ops = 0;
let checked = 0;
let acked = 0;
let lost = 0;
let crashes = 0;
let failedSchedules = 0;
const started = performance.now();
for (let i = 0; i < schedules; i++) {
  const s = seed + i;
  const faults = randomSchedule(s);
  const r = await runSchedule({ seed: s, faults }).catch((e) => ({
    seed: s,
    faults,
    ops: 0,
    checkedOps: 0,
    acknowledgedWrites: 0,
    openWrites: 0,
    lostWrites: 0,
    crashes: 0,
    recoveryMs: 0,
    violations: [`harness: the schedule could not run: ${(e as Error).message}`],
  }));
  ops += r.ops;
  checked += r.checkedOps;
  acked += r.acknowledgedWrites;
  lost += r.lostWrites;
  crashes += r.crashes;
  const failed = r.violations.length > 0;
  if (failed) failedSchedules++;
  for (const f of new Set(faults)) {
    const row = byFault.get(f)!;
    row.runs++;
    if (failed) row.failed++;
  }
  console.log(
    `  seed ${s} ${faults.join("+").padEnd(48)} ops ${String(r.ops).padStart(5)} acked ${
      String(r.acknowledgedWrites).padStart(5)
    } open ${String(r.openWrites).padStart(3)} recovery ${Math.round(r.recoveryMs)} ms ${
      failed ? "FAILED" : "ok"
    }`,
  );
  for (const v of r.violations) console.log(`    ${v.split("\n").join("\n    ")}`);
}

const fuzz = fuzzPerRpc > 0
  ? await runFuzz({
    perRpc: fuzzPerRpc,
    seed,
    progress: (l) => console.log(`  ${l}`),
  })
  : undefined;

console.log("");
console.log("| fault type          | schedules | failed |");
console.log("|---------------------|-----------|--------|");
for (const [f, row] of byFault) {
  console.log(
    `| ${f.padEnd(19)} | ${String(row.runs).padStart(9)} | ${String(row.failed).padStart(6)} |`,
  );
}
console.log("");
console.log("| total                                   |        |");
console.log("|-----------------------------------------|--------|");
const line = (k: string, v: number | string) =>
  console.log(`| ${k.padEnd(39)} | ${String(v).padStart(6)} |`);
line("schedules run", schedules);
line("schedules with a violation", failedSchedules);
line("operations recorded", ops);
line("operations checked (linearizability)", checked);
line("acknowledged writes verified", acked);
line("lost acknowledged writes", lost);
line("server crashes", crashes + (fuzz?.crashes ?? 0));
if (fuzz) {
  for (const [rpc, n] of fuzz.perRpc) {
    const seconds = ((fuzz.elapsedMs.get(rpc) ?? 0) / 1000).toFixed(0);
    line(`fuzzed requests: ${rpc} (${seconds} s)`, n);
  }
  line("fuzz: wrong answers or state changes", fuzz.violations.length);
  for (const v of fuzz.violations.slice(0, 20)) console.log(`  fuzz: ${v}`);
}
console.log(`(${Math.round((performance.now() - started) / 1000)} s)`);
const bad = failedSchedules + lost + crashes + (fuzz ? fuzz.violations.length + fuzz.crashes : 0);
Deno.exit(bad === 0 ? 0 : 1);
