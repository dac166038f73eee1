/**
 * Bad input for every RPC and garbage on the peer port (tests/e2e/fuzz.ts),
 * a short seeded run; `deno task test:chaos --fuzz N` runs more.
 */
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { fuzzedRpcs, runFuzz } from "./fuzz.ts";

Deno.test({
  name: "fuzzed requests to every RPC get a documented answer, change nothing, crash nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const seed = Number(Deno.env.get("SEED") ?? 20261204);
    const r = await runFuzz({ perRpc: 100, seed });
    assertEquals(r.violations, [], `replay: SEED=${seed}`);
    assertEquals(r.crashes, 0);
    for (const rpc of fuzzedRpcs) assertTrue((r.perRpc.get(rpc) ?? 0) === 100, rpc);
  },
});
