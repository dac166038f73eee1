/**
 * CLI of the simulator (`deno task test:sim`): runs many seeds, or replays one.
 *
 *   deno task test:sim --seeds 1000 --nodes 5
 *   SEED=1234 deno task test:sim            # replay one seed (both sizes unless --nodes)
 *   SEED=1234 TRACE=1 deno task test:sim    # ... and print its event trace
 *
 * @module
 */

import { runSeed } from "./simulate.ts";

function arg(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i >= 0) return args[i + 1];
  const eq = args.find((a) => a.startsWith(name + "="));
  return eq?.slice(name.length + 1);
}

/** Runs the simulator over the given arguments; returns the number of failed seeds. */
export function main(args: string[]): number {
  const seedsArg = arg(args, "--seeds");
  const nodesArg = arg(args, "--nodes");
  const startArg = arg(args, "--start");
  const ticksArg = arg(args, "--ticks");
  const env = Deno.env.get("SEED");
  const trace = Deno.env.get("TRACE") === "1";
  const sizes: (3 | 5)[] = nodesArg === "3" ? [3] : nodesArg === "5" ? [5] : [3, 5];
  const seeds: number[] = [];
  if (env !== undefined && env !== "") {
    seeds.push(Number(env) >>> 0);
  } else {
    const n = Number(seedsArg ?? 100);
    const start = Number(startArg ?? (Date.now() % 1_000_000_000));
    for (let i = 0; i < n; i++) seeds.push(start + i);
  }
  let failed = 0;
  const t0 = performance.now();
  let committed = 0;
  let checks = 0;
  let reads = 0;
  let leaseReads = 0;
  for (const seed of seeds) {
    for (const nodes of sizes) {
      const r = runSeed({ seed, nodes, trace, ticks: ticksArg ? Number(ticksArg) : undefined });
      committed += r.stats.committed;
      checks += r.stats.checks;
      reads += r.stats.readsChecked;
      leaseReads += r.stats.leaseReads;
      if (seeds.length === 1 || !r.ok) {
        console.log(`seed ${seed} nodes ${nodes}: ${r.ok ? "ok" : "FAILED"} (${r.config})`);
        console.log(`  ${JSON.stringify(r.stats)}`);
      }
      if (!r.ok) {
        failed++;
        console.log(`  ${r.error}`);
        console.log(`  replay: SEED=${seed} deno task test:sim --nodes ${nodes}`);
        if (r.trace) { for (const line of r.trace.slice(-200)) console.log(`  ${line}`); }
      }
    }
  }
  const secs = (performance.now() - t0) / 1000;
  console.log(
    `${seeds.length} seeds x ${sizes.length} sizes: ${failed} failed, ${committed} entries committed, ` +
      `${checks} invariant checks, ${reads} reads checked (${leaseReads} from a lease), ` +
      `${secs.toFixed(1)} s`,
  );
  return failed;
}

if (import.meta.main) {
  const failed = main(Deno.args);
  if (failed > 0) Deno.exit(1);
}
