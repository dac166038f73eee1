import { defaultMemtableBytes } from "../common/limits.ts";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { staggeredMemtableBytes, stateMachineEngineOptions } from "./engine_options.ts";

Deno.test("memtable sizes are staggered by node id, within a quarter of the default, stable", () => {
  const ids = ["n1", "n2", "n3", "node1", "node2", "node3", "a", "b", "c"];
  const sizes = ids.map((id) => staggeredMemtableBytes(id));
  for (const s of sizes) {
    assertTrue(s >= defaultMemtableBytes * 0.75 && s < defaultMemtableBytes * 1.25, `${s}`);
  }
  assertEquals(ids.map((id) => staggeredMemtableBytes(id)), sizes); // the same on every start
  // Spread over the whole range, so most pairs of nodes are far apart (each id's share is fixed).
  const factors = Array.from({ length: 1000 }, (_, i) => staggeredMemtableBytes(`node-${i}`))
    .map((s) => s / defaultMemtableBytes);
  const mean = factors.reduce((a, b) => a + b, 0) / factors.length;
  assertTrue(Math.min(...factors) < 0.77 && Math.max(...factors) > 1.23, "covers the range");
  assertTrue(Math.abs(mean - 1) < 0.03, `mean factor ${mean}`);
  assertEquals(new Set(["n1", "n2", "n3"].map((id) => staggeredMemtableBytes(id))).size, 3);
  assertEquals(stateMachineEngineOptions("n1").memtableBytes, staggeredMemtableBytes("n1"));
});
