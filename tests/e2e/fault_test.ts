/**
 * The short fault set of `deno task test` (TESTING.md layer 4): one schedule
 * per fault family against a real 3-node cluster with link proxies, each
 * checked for every invariant (see tests/e2e/chaos.ts). Longer random runs:
 * `deno task test:chaos`.
 */
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { type FaultKind, runSchedule } from "./chaos.ts";

const shortSet: Array<{ seed: number; faults: FaultKind[] }> = [
  { seed: 101, faults: ["kill-leader", "kill-follower"] },
  { seed: 102, faults: ["pause-leader"] },
  { seed: 103, faults: ["isolate-leader", "partition"] },
  { seed: 104, faults: ["bridge", "one-way-cut"] },
  { seed: 105, faults: ["kill-majority", "kill-all"] },
  { seed: 106, faults: ["flapping-links", "reset-links"] },
  { seed: 107, faults: ["snapshot-follower", "slow-links"] },
  { seed: 108, faults: ["replace-follower", "kill-leader"] },
];

for (const s of shortSet) {
  Deno.test({
    name: `fault schedule ${s.faults.join(" + ")} (seed ${s.seed}): no invariant broken`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const r = await runSchedule(s);
      assertEquals(r.violations, [], `replay: SEED=${s.seed} schedule ${s.faults.join(",")}`);
      assertTrue(r.acknowledgedWrites > 0, "the workload made progress");
      assertEquals(r.lostWrites, 0);
      assertEquals(r.crashes, 0);
    },
  });
}
