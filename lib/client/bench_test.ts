import { assertEquals } from "../common/test_helpers.ts";
import { type BenchTarget, runBench } from "./bench.ts";

/** A store answering every call after `delayMs`, counting calls and open connections. */
function fakeStore(delayMs: number) {
  const counts = { calls: 0, open: 0 };
  const answer = () => {
    counts.calls++;
    return new Promise((r) => setTimeout(r, delayMs));
  };
  const connect = (): BenchTarget => {
    counts.open++;
    return {
      put: answer,
      get: answer,
      describe: () => Promise.resolve({ nodes: 3, fsyncMode: "fake" }),
      close: () => void counts.open--,
    };
  };
  return { counts, connect };
}

Deno.test("bench: --operations N counts exactly N, none of them begun in the warm-up", async () => {
  const store = fakeStore(5);
  const r = await runBench({
    endpoints: ["fake:1"],
    connect: store.connect,
    operations: 1_000,
    concurrency: 64,
    inflight: 4,
    connections: 4,
    valueSize: 8,
    readRatio: 0.5,
    keySpace: 100,
    warmupSecs: 0.1,
    consistency: "linearizable",
    timeoutMs: 1_000,
  });
  assertEquals(r.all.count, 1_000, "256 calls were in flight when the warm-up ended");
  assertEquals(r.reads.count + r.writes.count, 1_000);
  assertEquals(store.counts.open, 0, "every connection closed");
});
