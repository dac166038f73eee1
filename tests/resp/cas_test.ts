/** readModifyWrite: a command's deadline runs from its arrival, queued time included. */
import { assertEquals } from "../../lib/common/test_helpers.ts";
import { readModifyWrite } from "../../lib/resp/cas.ts";
import { KeyQueue } from "../../lib/resp/key_queue.ts";
import type { RespStore } from "../../lib/resp/store.ts";

Deno.test("readModifyWrite: commands queued on a key past their deadline fail without running", async () => {
  let now = 0;
  const reads: Array<(e: Error) => void> = [];
  let started = 0;
  const store = {
    keyQueue: new KeyQueue(),
    requestDeadline: () => now + 100,
    node: { clock: { nowMs: () => now, sleep: () => Promise.resolve() } },
    get: () => {
      started++;
      return new Promise((_, reject) => reads.push(reject));
    },
  } as unknown as RespStore;
  const key = new TextEncoder().encode("hot");
  const decide = () => ({ action: { kind: "none" as const }, result: 1 });
  const outcomes = [0, 1, 2].map(() =>
    readModifyWrite(store, key, decide).then(() => "ok", (e) => (e as Error).message)
  );
  await new Promise((r) => setTimeout(r, 0));
  assertEquals([started, reads.length], [1, 1], "one at a time on the key");
  now = 150; // the first read stalls past every command's deadline (an election, say)
  reads[0](new Error("no quorum"));
  const results = await Promise.all(outcomes);
  assertEquals(results[0], "no quorum");
  assertEquals(results.slice(1), [
    "ERR timed out waiting behind other commands on this key; retry",
    "ERR timed out waiting behind other commands on this key; retry",
  ]);
  assertEquals(started, 1, "the queued commands never read");
});
